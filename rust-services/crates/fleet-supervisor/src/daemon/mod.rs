//! The supervisor daemon (`fleet-supervisor run`): keeps a target state (local file or polled
//! from `<apiEndpoint>/device/v3/<uuid>/state`), reconciles the engine towards it on change
//! and periodically, and serves the supervisor HTTP API on `listenPort`.
//!
//! The daemon drives the engine only through the [`Reconciler`] trait, so the HTTP layer and
//! the loops do not depend on how steps are executed.

mod access;
mod api;
pub mod api_keys;
mod auth;
mod backoff;
pub mod client;
pub mod cloud;
mod device_api;
mod host_config;
mod host_os;
mod host_units;
mod legacy_state;
pub mod local;
#[cfg(test)]
mod local_tests;
mod message;
mod params;
mod power;
mod server;
mod service_logs;
mod settings;
mod source;
mod state;
mod tag_queue;
mod tags;
mod target;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod versions;
mod vpn;

use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;

pub use access::Subnet;
pub use settings::{DEFAULT_LISTEN_PORT, RunArgs, Settings, SettingsError};

use fleet_release::plan::{CurrentState, Held};
use fleet_release::target_state::TargetState;
use state::Shared;

/// What the daemon needs from the engine side. `app` is always the app UUID (the key of
/// `apps` in the target state, the `io.fleet.app-uuid` label).
// Current-thread runtime: the futures never cross threads, so no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait Reconciler {
    /// Supervised containers, images, app volumes/networks and held update locks.
    async fn current_state(&self) -> Result<CurrentState, ReconcileError>;
    /// One entry per supervised container, for the state endpoints
    /// ([`crate::exec::report::from_engine`] reads them from the Engine API).
    async fn service_states(&self) -> Result<Vec<ServiceState>, ReconcileError>;
    /// Plans from the current state to `target` and runs the steps.
    async fn apply(
        &self,
        target: &TargetState,
        force: bool,
    ) -> Result<ApplySummary, ReconcileError>;
    async fn restart_service(
        &self,
        app: &str,
        service: &str,
        force: bool,
    ) -> Result<(), ReconcileError>;
    async fn stop_service(
        &self,
        app: &str,
        service: &str,
        force: bool,
    ) -> Result<(), ReconcileError>;
    async fn start_service(
        &self,
        app: &str,
        service: &str,
        force: bool,
    ) -> Result<(), ReconcileError>;
    async fn restart_app(&self, app: &str, force: bool) -> Result<(), ReconcileError>;
    /// Removes the app's containers and volumes (its data); the next apply recreates them.
    async fn purge_app(&self, app: &str, _force: bool) -> Result<(), ReconcileError> {
        Err(ReconcileError::NoSuchApp {
            app: app.to_string(),
        })
    }
    /// Removes the supervisor's volumes not in `keep` (only those of `apps`, by UUID, when
    /// given); returns the engine names removed.
    async fn remove_orphan_volumes(
        &self,
        _keep: &std::collections::BTreeSet<fleet_release::plan::Owned>,
        _apps: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<Vec<String>, ReconcileError> {
        Ok(Vec::new())
    }
    /// Subnets of the engine's bridge networks (the default bridge and the apps'), whose
    /// containers may reach the API ([`crate::exec::report::bridge_subnets`] reads them).
    async fn bridge_subnets(&self) -> Result<Vec<Subnet>, ReconcileError> {
        Ok(Vec::new())
    }
    /// The engine's ID of an image, `None` when it has no such image (local mode pins
    /// pushed images by it).
    async fn image_id(&self, image: &str) -> Result<Option<String>, ReconcileError> {
        let _ = image;
        Ok(None)
    }
    /// The supervisor API keys handed to containers with `features.supervisor-api` from now
    /// on: each service's own key (app id → service → key), made before each apply and
    /// replaced by `POST /v1/regenerate-api-key`; a changed key recreates the container.
    fn set_service_api_keys(&self, keys: &api_keys::ServiceKeys) {
        let _ = keys;
    }
    /// Registry credentials for later pulls (the device's cloud identity).
    fn set_registry_login(&self, login: fleet_engine::RegistryLogin) {
        let _ = login;
    }
    /// Every name the engine's images answer to (tags, `repo@sha256:…`): a target service
    /// with no container whose image is here is balena's `Downloaded`.
    async fn image_refs(&self) -> Result<std::collections::BTreeSet<String>, ReconcileError> {
        Ok(Default::default())
    }
    /// The pulls under way and whether an apply fetched an image it has not finished
    /// applying (balena's `download_progress`, `update_downloaded`).
    fn downloads(&self) -> Downloads {
        Downloads::default()
    }
    /// Sends a container's output from `since` (Unix seconds) on, one line at a time, until
    /// the output ends or `out` is closed (`/v2/local/logs`).
    async fn follow_logs(
        &self,
        container_id: &str,
        since: u64,
        out: tokio::sync::mpsc::Sender<LogLine>,
    ) -> Result<(), ReconcileError> {
        let _ = (container_id, since, out);
        Ok(())
    }
}

/// Image pulls as balena reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Downloads {
    /// image → whole percent, for each pull under way.
    pub pulling: std::collections::BTreeMap<String, u8>,
    /// An image was fetched since the last apply that finished (balena's
    /// `update_downloaded`: true once any image is downloaded, false again after a
    /// successful apply).
    pub downloaded: bool,
}

/// One line a supervised container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub container_id: String,
    pub message: String,
    pub stderr: bool,
}

/// The outcome of one [`Reconciler::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplySummary {
    /// Steps run.
    pub steps: usize,
    /// Updates held back by an update lock (retried soon).
    pub held: Vec<Held>,
}

/// Why a [`Reconciler`] call failed; the API maps each kind to its status code.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The app holds its update lock and `force` was not given (HTTP 423).
    #[error("app {app} holds its update lock (updates.lock); use force to override")]
    Locked { app: String },
    /// No such app, or no container of the service (HTTP 404).
    #[error("app {app}: no containers")]
    NoSuchApp { app: String },
    #[error("app {app}: no container of service `{service}`")]
    NoSuchService { app: String, service: String },
    /// Anything else (HTTP 503): the executor's or the engine's error, with its causes.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl ReconcileError {
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ReconcileError::Failed(Box::new(e))
    }
}

/// A supervised container as the state endpoints report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    pub app: String,
    pub service: String,
    pub release: String,
    /// The image reference the container was created with.
    pub image: String,
    pub container_id: String,
    /// The engine's status word: `created`, `running`, `restarting`, `exited`, `paused`, `dead`.
    pub status: String,
    /// How often the engine restarted it under its restart policy.
    pub restart_count: u64,
    /// balena's ids from the container's name `<service>_<imageId>_<releaseId>_<commit>` and
    /// its `io.fleet.app-id` label (`None` for a container named otherwise).
    pub ids: Option<LegacyIds>,
}

/// The numeric ids balena keys its legacy state by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LegacyIds {
    pub app_id: u64,
    pub image_id: u64,
    pub release_id: u64,
}

/// Loop timings; the defaults suit a device, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Reconcile this often even when the target did not change (heals drift).
    pub reconcile: Duration,
    /// Retry this soon after a failed apply or one held by an update lock.
    pub retry: Duration,
    /// `/v1/healthy` fails when the loop made no progress for this long.
    pub stall_limit: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            reconcile: Duration::from_secs(60),
            retry: Duration::from_secs(10),
            stall_limit: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot install the signal handlers")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run<R: Reconciler + 'static>(
    settings: Settings,
    reconciler: R,
    timing: Timing,
) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let addr = format!("{}:{}", settings.listen_address, settings.listen_port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: addr.clone(),
            source,
        })?;
    log::info!(
        "supervisor API on {addr}; target from {}",
        settings.source_description()
    );
    let shared = Rc::new(Shared::new(settings, reconciler, timing));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            tokio::select! {
                _ = server::serve(listener, shared.clone(), server::limits()) => {}
                _ = source::reconcile_loop(shared.clone()) => {}
                _ = cloud::run(shared.clone()) => {}
                _ = tags::report_loop(shared.clone()) => {}
                _ = term.recv() => log::info!("SIGTERM: exiting"),
                _ = int.recv() => log::info!("SIGINT: exiting"),
            }
        })
        .await;
    Ok(())
}

/// Serves the API and runs the loops on an already bound listener (tests).
#[cfg(test)]
pub(crate) async fn run_on<R: Reconciler + 'static>(listener: TcpListener, shared: Rc<Shared<R>>) {
    tokio::select! {
        _ = server::serve(listener, shared.clone(), server::limits()) => {}
        _ = source::reconcile_loop(shared.clone()) => {}
        _ = tags::report_loop(shared.clone()) => {}
        _ = cloud::run(shared) => {}
    }
}
