//! Executing plans against the container engine (through the shared `fleet-engine`
//! client): read the current state back from the engine, plan, run each step with the
//! effect `plan::simulate` defines, holding the apps' update locks while doing so.
//!
//! Nothing is remembered between runs: a supervisor killed mid-apply reads the engine's
//! real state when it comes back and plans again from there.

mod create;
mod reconciler;
pub mod report;
mod state;
#[cfg(test)]
mod tests;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet_engine::{CreateNetwork, CreateVolume, Engine};

pub use create::{CreateRequest, create_request};
pub use state::{Observed, status as engine_status};

use crate::lock::{self, AppLock, LockError};
use fleet_release::labels::{HostContext, UpdateStrategy};
use fleet_release::plan::{
    self, ContainerConfig, ContainerStatus, CurrentState, Held, LABEL_APP, LABEL_NAME,
    LABEL_SUPERVISED, Owned, PlanOptions, Step,
};
use fleet_release::target_state::TargetState;
use fleet_release::update_lock;

/// How often a hand-over checks for the new container's signal.
const HANDOVER_POLL: Duration = Duration::from_millis(100);
/// Plan-and-run rounds per apply: the second one picks up what the engine changed under
/// the first (a container that died meanwhile); more would only hide a bug.
const MAX_ROUNDS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{action}")]
    Engine {
        action: String,
        #[source]
        error: fleet_engine::Error,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "image {image}: not on the engine after fetching it (no {tarball} and the pull gave nothing)"
    )]
    ImageMissing { image: String, tarball: String },
    #[error(
        "image {image}: not on the engine; pushed images (local_image_*) are never pulled: push again"
    )]
    LocalImageMissing { image: String },
    #[error("app {app}: no container of service `{service}`")]
    NoSuchService { app: String, service: String },
    #[error("concurrent create/start task failed: {reason}")]
    Task { reason: String },
    #[error("app {app}: no containers")]
    NoSuchApp { app: String },
    #[error("app {app} holds its update lock (updates.lock); use force to override")]
    Locked { app: String },
    #[error(
        "create {0}: a container not made by the supervisor has that name; remove or rename it"
    )]
    NameTaken(String),
}

impl ExecError {
    fn engine(action: impl Into<String>) -> impl FnOnce(fleet_engine::Error) -> ExecError {
        let action = action.into();
        move |error| ExecError::Engine { action, error }
    }
}

/// What an [`Executor::apply`] did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Steps run, in order.
    pub steps: Vec<Step>,
    /// Updates held back because the app holds its update lock.
    pub held: Vec<Held>,
    /// Steps that could not complete but do not stop the rest (an old image still used by
    /// a container the supervisor does not own).
    pub warnings: Vec<String>,
}

/// A step in one line, for logs and the CLI.
pub fn describe(step: &Step) -> String {
    match step {
        Step::FetchImage { image } => format!("fetch-image {image}"),
        Step::RemoveImage { image } => format!("remove-image {image}"),
        Step::CreateNetwork { network, .. } => format!("create-network {}", network.engine_name()),
        Step::RemoveNetwork { network } => format!("remove-network {}", network.engine_name()),
        Step::CreateVolume { volume, .. } => format!("create-volume {}", volume.engine_name()),
        Step::Stop { container } => format!("stop {container}"),
        Step::Remove { container } => format!("remove {container}"),
        Step::Create { config } => format!(
            "create {} ({}/{} release {})",
            config.name, config.app, config.service, config.release
        ),
        Step::Start { container } => format!("start {container}"),
        Step::Rename { container, to } => format!("rename {container} {to}"),
        Step::HandoverKill {
            container,
            timeout_ms,
        } => format!("handover-kill {container} (timeout {timeout_ms} ms)"),
    }
}

/// File name of an image's tarball in the image directory: the reference with `/`, `:`
/// and `@` turned into `_`, plus `.tar` (`registry.example/app:5521` →
/// `registry.example_app_5521.tar`).
pub fn image_tarball_name(reference: &str) -> String {
    let mut name: String = reference
        .chars()
        .map(|c| if matches!(c, '/' | ':' | '@') { '_' } else { c })
        .collect();
    name.push_str(".tar");
    name
}

pub struct Executor {
    engine: Engine,
    /// The host as the planner sees it; the API key changes on `/v1/regenerate-api-key`.
    host: std::cell::RefCell<HostContext>,
    lock_root: PathBuf,
    image_dir: Option<PathBuf>,
    /// Credentials for registry pulls; set once the device has its cloud identity.
    registry_login: std::cell::RefCell<Option<fleet_engine::RegistryLogin>>,
    /// Pulls under way (image → percent) and whether one finished since the last
    /// successful apply: `GET /v1/device` reports them as balena does.
    downloads: std::cell::RefCell<crate::daemon::Downloads>,
}

impl Executor {
    /// `lock_root` holds the apps' lock directories as the engine's host sees them
    /// (normally [`update_lock::HOST_LOCK_ROOT`]); they are bound into every container.
    pub fn new(engine: Engine, host: HostContext, lock_root: PathBuf) -> Self {
        Executor {
            engine,
            host: std::cell::RefCell::new(host),
            lock_root,
            image_dir: None,
            registry_login: std::cell::RefCell::new(None),
            downloads: std::cell::RefCell::new(crate::daemon::Downloads::default()),
        }
    }

    /// The pulls under way and whether an image was fetched since the last apply that
    /// finished.
    pub fn downloads(&self) -> crate::daemon::Downloads {
        self.downloads.borrow().clone()
    }

    /// Pulls from now on present `login` to the registry (balena's `d_<uuid>` and device key).
    pub fn set_registry_login(&self, login: fleet_engine::RegistryLogin) {
        self.registry_login.replace(Some(login));
    }

    /// A directory of `docker save` tarballs ([`image_tarball_name`]) to load images from
    /// before trying a registry pull (preloaded or side-loaded releases).
    pub fn with_image_dir(mut self, dir: PathBuf) -> Self {
        self.image_dir = Some(dir);
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn host(&self) -> HostContext {
        self.host.borrow().clone()
    }

    /// Containers with `features.supervisor-api` get `key` from the next apply on (their
    /// environment changes, so the planner recreates them).
    pub fn set_service_api_keys(&self, keys: &crate::daemon::api_keys::ServiceKeys) {
        self.host.borrow_mut().service_api_keys = keys.clone();
    }

    pub fn lock_dir(&self, app: &str) -> PathBuf {
        update_lock::app_lock_dir(&self.lock_root, app)
    }

    /// The current state, with the apps whose update lock is held by one of their
    /// processes.
    pub async fn current_state(&self) -> Result<CurrentState, ExecError> {
        let (mut state, _) = state::read(&self.engine).await?;
        let apps: BTreeSet<String> = state.containers.iter().map(|c| c.app.clone()).collect();
        for app in apps {
            if lock::is_held(&self.lock_dir(&app))? {
                state.locked_apps.insert(app);
            }
        }
        Ok(state)
    }

    /// Supervised containers with their app id and creation time (for the API).
    pub async fn observed(&self) -> Result<Vec<Observed>, ExecError> {
        state::containers(&self.engine).await
    }

    /// Takes the update lock of every app not held by its own processes (kept until the
    /// returned guards drop, so an app cannot take it mid-update); apps whose lock is held
    /// go into `locked_apps`.
    fn take_locks<'a>(
        &self,
        apps: impl IntoIterator<Item = &'a String>,
        state: &mut CurrentState,
    ) -> Result<Vec<AppLock>, ExecError> {
        let mut guards = Vec::new();
        for app in apps {
            let dir = lock::ensure_app_lock_dir(&self.lock_root, app)?;
            match lock::try_take(&dir)? {
                Some(guard) => guards.push(guard),
                None => {
                    state.locked_apps.insert(app.clone());
                }
            }
        }
        Ok(guards)
    }

    /// Moves the engine to `target` once: plan from the engine's real state, run the steps.
    /// `force` updates apps that hold their update lock.
    pub async fn apply(&self, target: &TargetState, force: bool) -> Result<ApplyReport, ExecError> {
        let mut report = ApplyReport::default();
        for _ in 0..MAX_ROUNDS {
            let (mut current, _) = state::read(&self.engine).await?;
            let apps: BTreeSet<String> = current
                .containers
                .iter()
                .map(|c| c.app.clone())
                .chain(target.apps.keys().cloned())
                .collect();
            let _guards = self.take_locks(&apps, &mut current)?;
            self.drop_half_created(&mut current, target).await?;
            let p = plan::plan(&current, target, &self.host(), PlanOptions { force });
            report.held = p.held.clone();
            if p.steps.is_empty() {
                break;
            }
            let apps_of: BTreeMap<String, String> = current
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.app.clone()))
                .collect();
            let mut rest = p.steps.as_slice();
            while let Some(step) = rest.first() {
                let batch = independent_pairs(rest, target);
                if batch > 0 {
                    self.run_concurrently(&rest[..batch]).await?;
                    report.steps.extend_from_slice(&rest[..batch]);
                    rest = &rest[batch..];
                } else {
                    self.run_step(step, &apps_of, &mut report).await?;
                    report.steps.push(step.clone());
                    rest = &rest[1..];
                }
            }
        }
        // Applied in full: nothing downloaded waits any more (balena clears
        // update_downloaded here; an app holding its lock keeps it set).
        if report.held.is_empty() {
            self.downloads.borrow_mut().downloaded = false;
        }
        Ok(report)
    }

    /// A create step is two engine calls when a service has several networks (create, then
    /// connect). A supervisor killed between them leaves a created container short of a
    /// network; the planner would only start it, so it is removed here and created again.
    async fn drop_half_created(
        &self,
        current: &mut CurrentState,
        target: &TargetState,
    ) -> Result<(), ExecError> {
        let desired = plan::desired_containers(target, &self.host());
        let mut dropped = BTreeSet::new();
        for c in &current.containers {
            if c.status != ContainerStatus::Created {
                continue;
            }
            let Some(d) = desired
                .iter()
                .find(|d| d.name == c.name && d.digest == c.digest)
            else {
                continue;
            };
            let attached: BTreeSet<String> = c
                .networks
                .iter()
                .map(|n| Owned::new(&c.app, n).engine_name())
                .collect();
            if d.networks.keys().any(|n| !attached.contains(n)) {
                self.engine
                    .remove_container(&c.name, true)
                    .await
                    .map_err(ExecError::engine(format!("remove half-created {}", c.name)))?;
                dropped.insert(c.name.clone());
            }
        }
        current.containers.retain(|c| !dropped.contains(&c.name));
        Ok(())
    }

    /// Create+start pairs (see [`independent_pairs`]) at once; the first error wins, after
    /// every pair has finished.
    async fn run_concurrently(&self, pairs: &[Step]) -> Result<(), ExecError> {
        let mut tasks = tokio::task::JoinSet::new();
        for step in pairs {
            if let Step::Create { config } = step {
                tasks.spawn(create_and_start(
                    self.engine.clone(),
                    self.lock_root.clone(),
                    (**config).clone(),
                ));
            }
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(ExecError::Task {
                    reason: e.to_string(),
                })
            });
            if let (Err(e), None) = (result, &first_error) {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn run_step(
        &self,
        step: &Step,
        apps_of: &BTreeMap<String, String>,
        report: &mut ApplyReport,
    ) -> Result<(), ExecError> {
        let what = describe(step);
        let engine = &self.engine;
        match step {
            Step::FetchImage { image } => self.fetch_image(image).await?,
            Step::RemoveImage { image } => match engine.remove_image(image).await {
                Err(fleet_engine::Error::Api {
                    status: 409,
                    message,
                    ..
                }) => {
                    report.warnings.push(format!("{what}: {message}"));
                }
                r => r.map_err(ExecError::engine(what))?,
            },
            Step::CreateNetwork { network, options } => engine
                .create_network(&network_spec(network, options))
                .await
                .map_err(ExecError::engine(what))?,
            Step::RemoveNetwork { network } => engine
                .remove_network(&network.engine_name())
                .await
                .map_err(ExecError::engine(what))?,
            Step::CreateVolume { volume, options } => engine
                .create_volume(&CreateVolume {
                    name: volume.engine_name(),
                    driver: "local".to_string(),
                    driver_opts: options.driver_opts.clone(),
                    // The compose file's labels, then the supervisor's (which win).
                    labels: options
                        .labels
                        .clone()
                        .into_iter()
                        .chain(owned_labels(volume))
                        .collect(),
                })
                .await
                .map_err(ExecError::engine(what))?,
            Step::Stop { container } => engine
                .stop_container_default(container)
                .await
                .map_err(ExecError::engine(what))?,
            Step::Remove { container } => engine
                .remove_container(container, false)
                .await
                .map_err(ExecError::engine(what))?,
            Step::Create { config } => create(engine, &self.lock_root, config).await?,
            Step::Start { container } => engine
                .start_container_idempotent(container)
                .await
                .map_err(ExecError::engine(what))?,
            Step::Rename { container, to } => engine
                .rename_container(container, to)
                .await
                .map_err(ExecError::engine(what))?,
            Step::HandoverKill {
                container,
                timeout_ms,
            } => {
                let dir = apps_of.get(container).map(|app| self.lock_dir(app));
                self.wait_for_handover(dir.as_deref(), *timeout_ms).await;
                engine
                    .stop_container_default(container)
                    .await
                    .map_err(ExecError::engine(what))?;
                if let Some(dir) = &dir {
                    lock::clear_handover(dir)?;
                }
            }
        }
        Ok(())
    }

    /// Until the new container signals it took over, or the timeout.
    async fn wait_for_handover(&self, dir: Option<&Path>, timeout_ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        while Instant::now() < deadline {
            if dir.is_some_and(lock::handover_signalled) {
                return;
            }
            tokio::time::sleep(HANDOVER_POLL.min(deadline - Instant::now())).await;
        }
    }

    /// Present → nothing; else load `<image_dir>/<tarball>`; else pull.
    async fn fetch_image(&self, image: &str) -> Result<(), ExecError> {
        let inspect = |action: &'static str| async move {
            self.engine
                .inspect_image(image)
                .await
                .map_err(ExecError::engine(format!("{action} {image}")))
        };
        if inspect("inspect image").await?.is_some() {
            return Ok(());
        }
        let tarball_name = image_tarball_name(image);
        let tarball = self.image_dir.as_ref().map(|d| d.join(&tarball_name));
        match &tarball {
            Some(path) if path.is_file() => {
                self.engine
                    .load_image(path)
                    .await
                    .map_err(ExecError::engine(format!("load {}", path.display())))?;
            }
            // Built on the device by `balena push`: no registry has it.
            _ if image.starts_with(crate::daemon::local::LOCAL_IMAGE_PREFIX) => {
                return Err(ExecError::LocalImageMissing {
                    image: image.to_string(),
                });
            }
            _ => {
                let login = self.registry_login.borrow().clone();
                let track = |percent: u8| {
                    let mut downloads = self.downloads.borrow_mut();
                    downloads.pulling.insert(image.to_string(), percent);
                };
                track(0);
                // A dropped apply (a new target, `/v1/update` with `cancel`) ends the pull
                // here: the guard takes it off the list then too, as balena's abort does.
                let _pulling = PullingGuard {
                    downloads: &self.downloads,
                    image,
                };
                let pulled = self
                    .engine
                    .pull_image_reporting(image, login.as_ref(), track)
                    .await;
                self.downloads.borrow_mut().downloaded |= pulled.is_ok();
                pulled.map_err(ExecError::engine(format!("pull {image}")))?
            }
        }
        if inspect("inspect fetched image").await?.is_none() {
            return Err(ExecError::ImageMissing {
                image: image.to_string(),
                tarball: tarball
                    .map(|p| p.display().to_string())
                    .unwrap_or(tarball_name),
            });
        }
        Ok(())
    }

    /// The containers of `app` (UUID or numeric id), optionally of one service, in the
    /// order they were created (the executor creates them in depends_on order).
    async fn app_containers(
        &self,
        app: &str,
        service: Option<&str>,
    ) -> Result<(String, Vec<Observed>), ExecError> {
        let mut found: Vec<Observed> = self
            .observed()
            .await?
            .into_iter()
            .filter(|o| o.container.app == app || o.app_id.as_deref() == Some(app))
            .collect();
        let Some(uuid) = found.first().map(|o| o.container.app.clone()) else {
            return Err(match service {
                Some(s) => ExecError::NoSuchService {
                    app: app.to_string(),
                    service: s.to_string(),
                },
                None => ExecError::NoSuchApp {
                    app: app.to_string(),
                },
            });
        };
        if let Some(s) = service {
            found.retain(|o| o.container.service == s);
            if found.is_empty() {
                return Err(ExecError::NoSuchService {
                    app: app.to_string(),
                    service: s.to_string(),
                });
            }
        }
        found.sort_by(|a, b| a.created.cmp(&b.created));
        Ok((uuid, found))
    }

    /// The app's lock for a stop or restart: held by the app → refused unless `force`.
    fn lock_for_kill(&self, app: &str, force: bool) -> Result<Option<AppLock>, ExecError> {
        let dir = lock::ensure_app_lock_dir(&self.lock_root, app)?;
        match lock::try_take(&dir)? {
            Some(guard) => Ok(Some(guard)),
            None if force => Ok(None),
            None => Err(ExecError::Locked {
                app: app.to_string(),
            }),
        }
    }

    async fn stop_all(&self, containers: &[Observed]) -> Result<(), ExecError> {
        for o in containers.iter().rev() {
            if o.container.status == ContainerStatus::Running {
                self.engine
                    .stop_container_default(&o.container.name)
                    .await
                    .map_err(ExecError::engine(format!("stop {}", o.container.name)))?;
            }
        }
        Ok(())
    }

    async fn start_all(&self, containers: &[Observed]) -> Result<(), ExecError> {
        for o in containers {
            self.engine
                .start_container_idempotent(&o.container.name)
                .await
                .map_err(ExecError::engine(format!("start {}", o.container.name)))?;
        }
        Ok(())
    }

    /// Stops a service's containers (they stay stopped until started: the planner leaves
    /// stopped containers alone). Refused while the app holds its lock, unless `force`.
    /// Returns the container names.
    pub async fn stop_service(
        &self,
        app: &str,
        service: &str,
        force: bool,
    ) -> Result<Vec<String>, ExecError> {
        let (uuid, containers) = self.app_containers(app, Some(service)).await?;
        let _guard = self.lock_for_kill(&uuid, force)?;
        self.stop_all(&containers).await?;
        Ok(names(&containers))
    }

    /// Starts a service's containers (no lock needed: nothing is killed).
    pub async fn start_service(
        &self,
        app: &str,
        service: &str,
        _force: bool,
    ) -> Result<Vec<String>, ExecError> {
        let (_, containers) = self.app_containers(app, Some(service)).await?;
        self.start_all(&containers).await?;
        Ok(names(&containers))
    }

    pub async fn restart_service(
        &self,
        app: &str,
        service: &str,
        force: bool,
    ) -> Result<Vec<String>, ExecError> {
        let (uuid, containers) = self.app_containers(app, Some(service)).await?;
        let _guard = self.lock_for_kill(&uuid, force)?;
        self.stop_all(&containers).await?;
        self.start_all(&containers).await?;
        Ok(names(&containers))
    }

    /// Restarts every container of the app: stopped in reverse creation order, started in
    /// creation order (= depends_on order).
    pub async fn restart_app(&self, app: &str, force: bool) -> Result<Vec<String>, ExecError> {
        let (uuid, containers) = self.app_containers(app, None).await?;
        let _guard = self.lock_for_kill(&uuid, force)?;
        self.stop_all(&containers).await?;
        self.start_all(&containers).await?;
        Ok(names(&containers))
    }
}

/// How often [`create`] clears a taken name before giving up.
const NAME_CLEAR_ROUNDS: u64 = 8;

/// The create step: lock directory, container, further networks.
async fn create(
    engine: &Engine,
    lock_root: &Path,
    config: &ContainerConfig,
) -> Result<(), ExecError> {
    let what = format!("create {}", config.name);
    let dir = lock::ensure_app_lock_dir(lock_root, &config.app)?;
    if config.strategy == UpdateStrategy::HandOver {
        // A signal left from an earlier start must not end this hand-over early.
        lock::clear_handover(&dir)?;
    }
    let request = create_request(config, lock_root);
    // The name is taken by a container the state did not list: one whose create was cut
    // short by a kill, or one of ours. The name is balena's, made for this release: it is
    // cleared and the create runs once more. A foreign container of that name is left and
    // refused. The engine finishes a killed client's create on its own, so the name can be
    // reserved before the container is listed: then clearing finds nothing and the next
    // create meets the name again; a few rounds, a little apart, let that create land.
    let mut round = 0;
    while let Err(e) = engine.create_container(&config.name, &request.body).await {
        let fleet_engine::Error::Api { status: 409, .. } = e else {
            return Err(ExecError::engine(what.clone())(e));
        };
        round += 1;
        if round > NAME_CLEAR_ROUNDS {
            return Err(ExecError::engine(format!("{what}: clear the name"))(e));
        }
        let holder = engine
            .inspect_container(&config.name)
            .await
            .map_err(ExecError::engine(what.clone()))?;
        match holder {
            Some(h) if !h.config.labels.contains_key(LABEL_SUPERVISED) => {
                return Err(ExecError::NameTaken(config.name.clone()));
            }
            Some(_) => engine
                .remove_container(&config.name, true)
                .await
                .map_err(ExecError::engine(format!("{what}: clear the name")))?,
            None => tokio::time::sleep(Duration::from_millis(250 * round)).await,
        }
    }
    for (network, endpoint) in &request.extra_networks {
        engine
            .connect_network(network, &config.name, endpoint)
            .await
            .map_err(ExecError::engine(format!("{what}: connect {network}")))?;
    }
    Ok(())
}

async fn create_and_start(
    engine: Engine,
    lock_root: PathBuf,
    config: ContainerConfig,
) -> Result<(), ExecError> {
    create(&engine, &lock_root, &config).await?;
    engine
        .start_container_idempotent(&config.name)
        .await
        .map_err(ExecError::engine(format!("start {}", config.name)))
}

/// How many steps from the start of `steps` are create+start pairs of one app's services
/// that do not depend on one another, so they may run at once (as docker-compose does);
/// 0 when fewer than two such pairs lead.
fn independent_pairs(steps: &[Step], target: &TargetState) -> usize {
    let mut services: BTreeSet<&str> = BTreeSet::new();
    let mut app: Option<&str> = None;
    let mut n = 0;
    while let [Step::Create { config }, Step::Start { container }, ..] = &steps[n..] {
        if container != &config.name || app.is_some_and(|a| a != config.app) {
            break;
        }
        let depends_on = target
            .apps
            .get(&config.app)
            .and_then(|a| a.release.as_ref())
            .and_then(|r| r.compose.services.get(&config.service))
            .map(|s| s.depends_on.as_slice())
            .unwrap_or_default();
        if depends_on.iter().any(|d| services.contains(d.as_str())) {
            break;
        }
        services.insert(&config.service);
        app = Some(&config.app);
        n += 2;
    }
    if n >= 4 { n } else { 0 }
}

fn names(containers: &[Observed]) -> Vec<String> {
    containers
        .iter()
        .map(|o| o.container.name.clone())
        .collect()
}

/// The engine's network create body: the compose file's options, the supervisor's labels.
pub(crate) fn network_spec(
    network: &Owned,
    options: &fleet_release::compose::NetworkOptions,
) -> CreateNetwork {
    CreateNetwork {
        name: network.engine_name(),
        driver: "bridge".to_string(),
        check_duplicate: true,
        labels: options
            .labels
            .clone()
            .into_iter()
            .chain(owned_labels(network))
            .collect(),
        options: options.driver_opts.clone(),
        internal: options.internal,
        enable_ipv6: options.enable_ipv6,
        ipam: (!options.ipam.is_empty()).then(|| fleet_engine::CreateIpam {
            driver: "default".to_string(),
            config: options
                .ipam
                .iter()
                .map(|p| fleet_engine::IpamPoolConfig {
                    subnet: p.subnet.clone(),
                    ip_range: p.ip_range.clone(),
                    gateway: p.gateway.clone(),
                    aux_address: p.aux_addresses.clone(),
                })
                .collect(),
        }),
    }
}

fn owned_labels(o: &Owned) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_SUPERVISED.to_string(), "1".to_string()),
        (LABEL_APP.to_string(), o.app.clone()),
        (LABEL_NAME.to_string(), o.name.clone()),
    ])
}

/// Takes an image off the pulls under way when its pull ends or is dropped.
struct PullingGuard<'a> {
    downloads: &'a std::cell::RefCell<crate::daemon::Downloads>,
    image: &'a str,
}

impl Drop for PullingGuard<'_> {
    fn drop(&mut self) {
        self.downloads.borrow_mut().pulling.remove(self.image);
    }
}
