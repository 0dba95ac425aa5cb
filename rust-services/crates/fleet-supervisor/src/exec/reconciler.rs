//! The daemon's engine side: [`Executor`] is the [`Reconciler`] `fleet-supervisor run` drives.

use super::{ExecError, Executor, report};
use crate::daemon::{ApplySummary, LogLine, ReconcileError, Reconciler, ServiceState, Subnet};
use std::collections::BTreeSet;

use fleet_release::plan::{CurrentState, Owned};
use fleet_release::target_state::TargetState;

/// Locks become HTTP 423, unknown apps/services 404, everything else 503.
fn reconcile_error(e: ExecError) -> ReconcileError {
    match e {
        ExecError::Locked { app } => ReconcileError::Locked { app },
        ExecError::NoSuchApp { app } => ReconcileError::NoSuchApp { app },
        ExecError::NoSuchService { app, service } => ReconcileError::NoSuchService { app, service },
        other => ReconcileError::failed(other),
    }
}

impl Reconciler for Executor {
    async fn current_state(&self) -> Result<CurrentState, ReconcileError> {
        Executor::current_state(self).await.map_err(reconcile_error)
    }

    async fn service_states(&self) -> Result<Vec<ServiceState>, ReconcileError> {
        report::from_engine(self.engine()).await
    }

    fn set_service_api_keys(&self, keys: &crate::daemon::api_keys::ServiceKeys) {
        Executor::set_service_api_keys(self, keys);
    }

    fn set_registry_login(&self, login: fleet_engine::RegistryLogin) {
        Executor::set_registry_login(self, login);
    }

    async fn image_refs(&self) -> Result<BTreeSet<String>, ReconcileError> {
        report::image_refs(self.engine()).await
    }

    fn downloads(&self) -> crate::daemon::Downloads {
        Executor::downloads(self)
    }

    async fn bridge_subnets(&self) -> Result<Vec<Subnet>, ReconcileError> {
        report::bridge_subnets(self.engine()).await
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, ReconcileError> {
        let inspect = self.engine().inspect_image(image).await;
        Ok(inspect.map_err(ReconcileError::failed)?.map(|i| i.id))
    }

    async fn follow_logs(
        &self,
        container_id: &str,
        since: u64,
        out: tokio::sync::mpsc::Sender<LogLine>,
    ) -> Result<(), ReconcileError> {
        let engine = self.engine();
        let Some(inspect) = engine
            .inspect_container(container_id)
            .await
            .map_err(ReconcileError::failed)?
        else {
            return Ok(());
        };
        let mut lines = engine
            .follow_logs(container_id, since, inspect.config.tty)
            .await
            .map_err(ReconcileError::failed)?;
        while let Some((stream, message)) =
            lines.next_line().await.map_err(ReconcileError::failed)?
        {
            let line = LogLine {
                container_id: container_id.to_string(),
                message,
                stderr: stream == fleet_engine::Stream::Stderr,
            };
            if out.send(line).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    async fn apply(
        &self,
        target: &TargetState,
        force: bool,
    ) -> Result<ApplySummary, ReconcileError> {
        let report = Executor::apply(self, target, force)
            .await
            .map_err(reconcile_error)?;
        for step in &report.steps {
            log::info!("{}", super::describe(step));
        }
        for warning in &report.warnings {
            log::warn!("{warning}");
        }
        Ok(ApplySummary {
            steps: report.steps.len(),
            held: report.held,
        })
    }

    async fn restart_service(
        &self,
        app: &str,
        service: &str,
        force: bool,
    ) -> Result<(), ReconcileError> {
        Executor::restart_service(self, app, service, force)
            .await
            .map(drop)
            .map_err(reconcile_error)
    }

    async fn stop_service(
        &self,
        app: &str,
        service: &str,
        force: bool,
    ) -> Result<(), ReconcileError> {
        Executor::stop_service(self, app, service, force)
            .await
            .map(drop)
            .map_err(reconcile_error)
    }

    async fn start_service(
        &self,
        app: &str,
        service: &str,
        force: bool,
    ) -> Result<(), ReconcileError> {
        Executor::start_service(self, app, service, force)
            .await
            .map(drop)
            .map_err(reconcile_error)
    }

    async fn restart_app(&self, app: &str, force: bool) -> Result<(), ReconcileError> {
        Executor::restart_app(self, app, force)
            .await
            .map(drop)
            .map_err(reconcile_error)
    }

    async fn purge_app(&self, app: &str, force: bool) -> Result<(), ReconcileError> {
        Executor::purge_app(self, app, force)
            .await
            .map(drop)
            .map_err(reconcile_error)
    }

    async fn remove_orphan_volumes(
        &self,
        keep: &BTreeSet<Owned>,
        apps: Option<&BTreeSet<String>>,
    ) -> Result<Vec<String>, ReconcileError> {
        Executor::remove_orphan_volumes(self, keep, apps)
            .await
            .map_err(reconcile_error)
    }
}
