//! State shared by the API handlers and the reconcile loop (one thread: `RefCell`s).

use std::cell::{Cell, RefCell};
use std::time::{Instant, SystemTime};

use fleet_log::error::{Chain, one_line};
use serde::Serialize;
use tokio::sync::{Mutex, Notify};

use super::api_keys::ApiKeys;
use super::cloud::identity::Identity;
use super::cloud::log_buffer::LogBuffer;
use super::cloud::report_state::ReportState;
use super::settings::Settings;
use super::tag_queue::TagQueue;
use super::tls::{Tls, TrustSource};
use super::{ApplySummary, Reconciler, Subnet, Timing};
use fleet_release::target_state::TargetState;

/// The target in force: the validated state and the document it came from.
#[derive(Debug, Clone)]
pub struct Target {
    pub state: TargetState,
    pub document: serde_json::Value,
}

/// The last apply, as `/v2/state/status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyRecord {
    /// Seconds since the Unix epoch when it ended.
    pub finished: u64,
    pub release: Option<String>,
    #[serde(flatten)]
    pub summary: ApplySummary,
    pub error: Option<String>,
}

pub struct Shared<R> {
    pub settings: Settings,
    /// The supervisor API keys in force: the global one (`settings.api_key` until
    /// `POST /v1/regenerate-api-key` replaces it) and the services' scoped ones.
    pub api_keys: RefCell<ApiKeys>,
    pub reconciler: R,
    pub timing: Timing,
    /// Serialises engine actions: an apply and an API restart never interleave.
    pub actions: Mutex<()>,
    pub target: RefCell<Option<Target>>,
    pub applying: Cell<bool>,
    pub last_apply: RefCell<Option<ApplyRecord>>,
    /// app id → the release last applied to it in full (balena's commit store, behind
    /// `commit` of `/v1/device` and `/v2/applications/:appId/state`), kept in
    /// [`APPLIED_COMMITS_FILE`] as balena keeps it in its database.
    pub applied_commits: RefCell<std::collections::BTreeMap<u64, String>>,
    /// Last time the reconcile loop made progress (woke up or finished an apply).
    pub heartbeat: Cell<Instant>,
    /// Wakes the loop early; `force_pending` says whether the woken apply is forced.
    pub wake: Notify,
    /// `POST /v1/update` with `cancel`: the apply in flight is dropped (balena aborts it),
    /// and the loop fetches and applies again at once.
    pub cancel_apply: Notify,
    pub force_pending: Cell<bool>,
    /// Poll the server on the next wake even if the poll interval has not passed.
    pub poll_pending: Cell<bool>,
    /// TLS for an `https://` apiEndpoint (`None` for `http://` or local mode); an error
    /// says why no connection can be trusted and is reported at each poll.
    pub tls: Option<Result<Tls, String>>,
    /// The engine's bridge subnets as last read, and when (API access).
    pub subnets: RefCell<Vec<Subnet>>,
    pub subnets_read: Cell<Option<Instant>>,
    /// Rate limit of the "refused a connection" log line.
    pub refusal_logged: Cell<Option<Instant>>,
    pub refusals_unlogged: Cell<u64>,
    /// The device's identity on the server (registered), `None` before.
    pub identity: RefCell<Option<Identity>>,
    /// The ETag of the target in force, for the next poll's `If-None-Match`.
    pub poll_etag: RefCell<Option<String>>,
    /// Polls failed in a row (backoff).
    pub poll_failures: Cell<u32>,
    /// Applies failed in a row (backoff).
    pub apply_failures: Cell<u32>,
    /// The state report to the server: what was sent last and when the next may go.
    pub report: RefCell<ReportState>,
    /// Log lines for the server, not yet delivered.
    pub cloud_logs: RefCell<LogBuffer>,
    /// Device tags queued by `PATCH /v2/device/tags`, and the wake-up of their sender.
    pub tags: RefCell<TagQueue>,
    pub tags_wake: Notify,
}

impl<R: Reconciler> Shared<R> {
    pub fn new(settings: Settings, reconciler: R, timing: Timing) -> Self {
        let tls = settings
            .api_endpoint
            .as_ref()
            .filter(|e| e.to_ascii_lowercase().starts_with("https://"))
            .map(|_| load_tls(&settings));
        if let Some(identity) = settings.identity() {
            reconciler.set_registry_login(identity.registry_login());
        }
        Shared {
            api_keys: RefCell::new(ApiKeys::new(
                &settings.data_dir,
                &settings.api_key,
                settings.service_api_keys.clone(),
            )),
            reconciler,
            timing,
            actions: Mutex::new(()),
            target: RefCell::new(None),
            applying: Cell::new(false),
            last_apply: RefCell::new(None),
            applied_commits: RefCell::new(load_applied_commits(&settings.data_dir)),
            heartbeat: Cell::new(Instant::now()),
            wake: Notify::new(),
            cancel_apply: Notify::new(),
            force_pending: Cell::new(false),
            poll_pending: Cell::new(false),
            tls,
            subnets: RefCell::new(Vec::new()),
            subnets_read: Cell::new(None),
            refusal_logged: Cell::new(None),
            refusals_unlogged: Cell::new(0),
            identity: RefCell::new(settings.identity()),
            poll_etag: RefCell::new(None),
            poll_failures: Cell::new(0),
            apply_failures: Cell::new(0),
            report: RefCell::new(ReportState::default()),
            cloud_logs: RefCell::new(LogBuffer::default()),
            tags: RefCell::new(TagQueue::load(&settings.data_dir)),
            tags_wake: Notify::new(),
            settings,
        }
    }

    /// Asks the loop to poll (remote mode) and apply now.
    pub fn trigger(&self, force: bool) {
        self.trigger_cancelling(force, false);
    }

    /// [`Shared::trigger`]; with `cancel`, an apply in flight is dropped first (its engine
    /// requests end with it, as balena's abort ends an image pull).
    pub fn trigger_cancelling(&self, force: bool, cancel: bool) {
        if cancel && self.applying.get() {
            // Only the apply waiting now: no permit is kept for a later one.
            self.cancel_apply.notify_waiters();
        }
        if force {
            self.force_pending.set(true);
        }
        self.poll_pending.set(true);
        self.wake.notify_one();
    }

    /// The app UUID for an API `appId`: the numeric id of an app in the target, or its UUID.
    pub fn app_uuid(&self, app_id: &str) -> Option<String> {
        let target = self.target.borrow();
        let apps = &target.as_ref()?.state.apps;
        if let Ok(id) = app_id.parse::<u64>()
            && let Some(app) = apps.values().find(|a| a.id == id)
        {
            return Some(app.uuid.clone());
        }
        apps.contains_key(app_id).then(|| app_id.to_string())
    }
}

impl<R> Shared<R> {
    /// The TLS configuration for requests to the apiEndpoint: `None` for `http://`, an error
    /// (why nothing can be trusted) for an `https://` endpoint without usable roots.
    pub fn endpoint_tls(&self) -> Result<Option<&Tls>, &str> {
        match &self.tls {
            None => Ok(None),
            Some(Ok(tls)) => Ok(Some(tls)),
            Some(Err(e)) => Err(e),
        }
    }
}

/// The trust roots for an `https://` apiEndpoint: the system bundle under the root prefix
/// (`FLEET_ROOT`, `/` in the container) plus config.json's CA.
fn load_tls(settings: &Settings) -> Result<Tls, String> {
    let root = fleet_fs::Root::from_arg_or_env(None);
    let source = TrustSource::new(root.dir(), settings.root_ca.clone());
    match Tls::load(&source) {
        Ok(tls) => {
            log::info!(
                "TLS trust roots: {} from {}, {} from config.json{}",
                tls.bundle_roots,
                source.system_bundle.display(),
                tls.config_roots,
                source
                    .extra_ca
                    .as_ref()
                    .map_or(String::new(), |(k, _)| format!(" {k}"))
            );
            Ok(tls)
        }
        Err(e) => {
            log::error!("TLS: {}", Chain(&e));
            Err(one_line(&e))
        }
    }
}

/// Milliseconds since the Unix epoch (balena's log timestamps).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The applied commits in the data directory (host
/// `/mnt/data/fleet-supervisor/applied-commits.json`).
pub const APPLIED_COMMITS_FILE: &str = "applied-commits.json";

fn load_applied_commits(data_dir: &std::path::Path) -> std::collections::BTreeMap<u64, String> {
    std::fs::read(data_dir.join(APPLIED_COMMITS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records `commits` as applied in full; kept only when they changed.
pub fn record_applied_commits<R>(
    shared: &Shared<R>,
    commits: impl IntoIterator<Item = (u64, String)>,
) {
    let mut kept = shared.applied_commits.borrow_mut();
    let before = kept.clone();
    kept.extend(commits);
    if *kept == before {
        return;
    }
    let dir = &shared.settings.data_dir;
    let bytes = serde_json::to_vec(&*kept).unwrap_or_default();
    let saved = fleet_fs::ensure_dir(dir)
        .and_then(|()| fleet_fs::atomic_write(&dir.join(APPLIED_COMMITS_FILE), &bytes, 0o600));
    if let Err(e) = saved {
        log::error!("applied commits: cannot keep them: {}", one_line(&e));
    }
}
