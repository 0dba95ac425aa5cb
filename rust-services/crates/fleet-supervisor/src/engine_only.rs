//! The daemon's [`Reconciler`] until the step executor is wired in: it reads the service
//! states from the engine (so the API reports real containers) and refuses every action
//! with a clear error. Merge point: replace it with `fleet_supervisor::exec::Executor`.

use std::path::Path;

use fleet_engine::Engine;
use fleet_supervisor::daemon::{ApplySummary, ReconcileError, Reconciler, ServiceState, report};
use fleet_supervisor::plan::CurrentState;
use fleet_supervisor::target::TargetState;

pub struct EngineOnly {
    engine: Engine,
}

impl EngineOnly {
    pub fn new(socket: &Path) -> Self {
        EngineOnly {
            engine: Engine::new(socket),
        }
    }
}

fn not_wired() -> ReconcileError {
    ReconcileError::Failed("this build has no step executor yet".into())
}

impl Reconciler for EngineOnly {
    async fn current_state(&self) -> Result<CurrentState, ReconcileError> {
        Err(not_wired())
    }

    async fn service_states(&self) -> Result<Vec<ServiceState>, ReconcileError> {
        report::from_engine(&self.engine).await
    }

    async fn apply(&self, _: &TargetState, _: bool) -> Result<ApplySummary, ReconcileError> {
        Err(not_wired())
    }

    async fn restart_service(&self, _: &str, _: &str, _: bool) -> Result<(), ReconcileError> {
        Err(not_wired())
    }

    async fn stop_service(&self, _: &str, _: &str, _: bool) -> Result<(), ReconcileError> {
        Err(not_wired())
    }

    async fn start_service(&self, _: &str, _: &str, _: bool) -> Result<(), ReconcileError> {
        Err(not_wired())
    }

    async fn restart_app(&self, _: &str, _: bool) -> Result<(), ReconcileError> {
        Err(not_wired())
    }
}
