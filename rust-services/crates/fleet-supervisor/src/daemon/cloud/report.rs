//! The device's current state reported to the server: `PATCH <apiEndpoint>/device/v3/state`
//! in balena's v3 shape, which open-balena-api stores (device fields, `is_running__release`,
//! one image install per service):
//!
//! ```text
//! { <uuid>: { api_port, os_version, os_variant, supervisor_version, ip_address, mac_address,
//!             is_online, memory_usage, …,
//!             apps: { <app uuid>: { release_uuid,
//!                     releases: { <commit>: { update_status,
//!                                 services: { <name>: { image, status, download_progress? } } } } } } } }
//! ```
//!
//! The server checks every release and image named against its database and refuses the
//! whole report when one is unknown, so only releases a target from it named are reported.
//! Throttled as balena's: at most one report every [`MIN_INTERVAL`], sent when something
//! changed (metrics alone count only every [`METRICS_INTERVAL`]) or every [`REFRESH`]; a
//! failure backs off and is never fatal.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fleet_http::client::Method;
use serde_json::{Map, Value, json};

use super::host_info;
pub use super::report_state::ReportState;
use super::request::{call, snippet};
use crate::daemon::legacy_state::{self, ImageState, status_word};
use crate::daemon::state::Shared;
use crate::daemon::versions::{os_variant, os_version, supervisor_version};
use crate::daemon::{Reconciler, ServiceState};

/// An unchanged report is sent again this often (the server sees the device alive).
pub const REFRESH: Duration = Duration::from_secs(15 * 60);
/// Reports are at least this far apart.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Metrics that changed alone make a report at most this often.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(5 * 60);
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a running apply looks for a change to report (sent at most every
/// [`MIN_INTERVAL`]).
const DURING_APPLY_TICK: Duration = Duration::from_secs(2);

/// The report body for the device `uuid`, without metrics. `pending`: the target services
/// with no container yet ([`legacy_state::pending`]), reported as balena does: `Downloading`
/// with the pull's percent (0 before it starts), `Downloaded` once the image is there.
pub fn body<R>(
    shared: &Shared<R>,
    uuid: &str,
    states: &[ServiceState],
    pending: &[legacy_state::Pending],
) -> Value {
    let target = shared.target.borrow();
    let target_apps = target.as_ref().map(|t| &t.state.apps);
    let mut report = shared.report.borrow_mut();
    if let Some(apps) = target_apps {
        for (app, t) in apps {
            if let Some(r) = &t.release {
                report
                    .known_releases
                    .entry(app.clone())
                    .or_default()
                    .insert(r.uuid.clone());
            }
        }
    }
    let last = shared.last_apply.borrow();
    let failed = last.as_ref().is_some_and(|l| l.error.is_some());
    let held = last.as_ref().is_some_and(|l| !l.summary.held.is_empty());
    let applying = shared.applying.get() || (target.is_some() && last.is_none());
    let mut by_app: BTreeMap<&str, Vec<&ServiceState>> = BTreeMap::new();
    for s in states {
        by_app.entry(&s.app).or_default().push(s);
    }
    if let Some(apps) = target_apps {
        // Host OS apps were dropped when the target was parsed.
        for uuid in apps.keys() {
            by_app.entry(uuid).or_default();
        }
    }
    let mut apps = Map::new();
    for (app_uuid, containers) in by_app {
        let known = report.known_releases.get(app_uuid);
        let target_release = target_apps
            .and_then(|a| a.get(app_uuid))
            .and_then(|a| a.release.as_ref())
            .map(|r| r.uuid.as_str());
        let mut releases: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for c in containers
            .iter()
            .filter(|c| known.is_some_and(|k| k.contains(&c.release)))
        {
            releases.entry(&c.release).or_default().insert(
                c.service.clone(),
                json!({ "image": c.image, "status": status_word(&c.status) }),
            );
        }
        let mut downloading = false;
        for p in pending.iter().filter(|p| p.app_uuid == app_uuid) {
            let service = match p.state {
                ImageState::Pulling(percent) => {
                    downloading |= percent < 100;
                    json!({ "image": p.image, "status": "Downloading", "download_progress": percent })
                }
                ImageState::Missing => {
                    downloading = true;
                    json!({ "image": p.image, "status": "Downloading", "download_progress": 0 })
                }
                ImageState::Present => json!({ "image": p.image, "status": "Downloaded" }),
            };
            releases
                .entry(&p.release_uuid)
                .or_default()
                .insert(p.service.clone(), service);
        }
        // The release the app runs: the one all its services run (none mid-update).
        let running: BTreeSet<&str> = containers.iter().map(|c| c.release.as_str()).collect();
        let release_uuid = match (running.len(), running.first()) {
            (1, Some(r)) if known.is_some_and(|k| k.contains(*r)) => Some(r.to_string()),
            _ => None,
        };
        let mut out = Map::new();
        for (commit, services) in releases {
            let mut release = Map::new();
            if Some(commit) == target_release {
                release.insert(
                    "update_status".into(),
                    update_status(
                        applying,
                        held,
                        failed,
                        downloading,
                        release_uuid.as_deref() == Some(commit),
                    )
                    .into(),
                );
            }
            release.insert("services".into(), Value::Object(services));
            out.insert(commit.to_string(), Value::Object(release));
        }
        if let Some(commit) = target_release
            && !out.contains_key(commit)
        {
            // Nothing of the target release runs yet.
            out.insert(
                commit.to_string(),
                json!({ "update_status": update_status(applying, held, failed, downloading, false), "services": {} }),
            );
        }
        apps.insert(
            app_uuid.to_string(),
            json!({ "release_uuid": release_uuid, "releases": out }),
        );
    }
    let s = &shared.settings;
    let (ip_address, mac_address) = host_info::addresses();
    // What the target asks for that this device does not do (the server drops fields it
    // does not know, so this is for the record of what was sent).
    let warnings: Vec<String> = target
        .as_ref()
        .map(|t| t.state.notes.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    json!({
        uuid: {
            "api_port": s.listen_port,
            // The global key, with which the server calls the device's API (balena reports
            // it at start and again when it is regenerated).
            "api_secret": shared.api_keys.borrow().global(),
            "os_version": os_version(s.os_version.as_deref()),
            "os_variant": os_variant(s.development_mode),
            "supervisor_version": supervisor_version(),
            "ip_address": ip_address,
            "mac_address": mac_address,
            "is_online": true,
            "apps": apps,
            "warnings": warnings,
        }
    })
}

/// balena's `update_status` of the target release, in balena's precedence: aborted,
/// downloading (a service's download under way), downloaded, applying changes, done.
fn update_status(
    applying: bool,
    held: bool,
    failed: bool,
    downloading: bool,
    running_it: bool,
) -> &'static str {
    if failed {
        "aborted"
    } else if downloading {
        "downloading"
    } else if held {
        "downloaded"
    } else if applying || !running_it {
        "applying changes"
    } else {
        "done"
    }
}

/// The target services without a container, and where their images are (the engine's image
/// list is read only when there is such a service).
pub(crate) async fn pending_services<R: Reconciler>(
    shared: &Shared<R>,
    states: &[ServiceState],
) -> Result<Vec<legacy_state::Pending>, crate::daemon::ReconcileError> {
    let downloads = shared.reconciler.downloads();
    let none = BTreeSet::new();
    let without = {
        let target = shared.target.borrow();
        legacy_state::pending(target.as_ref().map(|t| &t.state), states, &downloads, &none)
    };
    if without.is_empty() {
        return Ok(without);
    }
    let present = shared.reconciler.image_refs().await?;
    let target = shared.target.borrow();
    Ok(legacy_state::pending(
        target.as_ref().map(|t| &t.state),
        states,
        &downloads,
        &present,
    ))
}

/// Reports while an apply runs, so the server sees downloads progress (balena reports each
/// change of a pull's progress, throttled as every report is). Never returns: the apply's
/// `select!` drops it.
pub async fn while_applying<R: Reconciler>(shared: &Shared<R>) {
    loop {
        tokio::time::sleep(DURING_APPLY_TICK).await;
        send_if_due(shared).await;
    }
}

/// Sends the report when it is due; every problem is logged and retried later.
pub async fn send_if_due<R: Reconciler>(shared: &Shared<R>) {
    let Some(identity) = shared.identity.borrow().clone() else {
        return;
    };
    if Instant::now() < shared.report.borrow().not_before {
        return;
    }
    let states = match shared.reconciler.service_states().await {
        Ok(states) => states,
        Err(e) => {
            log::debug!("state report: no service states: {e}");
            return;
        }
    };
    let pending = match pending_services(shared, &states).await {
        Ok(p) => p,
        Err(e) => {
            log::debug!("state report: no image list: {e}");
            return;
        }
    };
    let mut body = body(shared, &identity.uuid, &states, &pending);
    let metrics_due = {
        let mut report = shared.report.borrow_mut();
        let changed = report.last_sent.as_ref() != Some(&body);
        let stale = report.sent_at.is_none_or(|at| at.elapsed() >= REFRESH);
        let metrics_due = report
            .metrics_at
            .is_none_or(|at| at.elapsed() >= METRICS_INTERVAL);
        if !changed && !stale && !metrics_due {
            return;
        }
        if metrics_due {
            let data_dir = shared.settings.data_dir.clone();
            let metrics = report.metrics.read(&data_dir);
            if let Some(device) = body[&identity.uuid].as_object_mut() {
                device.extend(metrics);
            }
        }
        metrics_due
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let sent = call(
        shared,
        Method::PATCH,
        "/device/v3/state",
        &identity.device_api_key,
        &[],
        &bytes,
        REPORT_TIMEOUT,
    )
    .await;
    let problem = match sent {
        Err(e) => Some(e),
        Ok(r) if (200..300).contains(&r.status) => None,
        Ok(r) => Some(format!(
            "/device/v3/state: HTTP {}: {}",
            r.status,
            snippet(&r.body)
        )),
    };
    let mut report = shared.report.borrow_mut();
    match problem {
        None => {
            log::debug!("state reported");
            if let Some(device) = body[&identity.uuid].as_object_mut() {
                for key in host_info::METRIC_KEYS {
                    device.shift_remove(*key);
                }
            }
            report.last_sent = Some(body);
            report.sent_at = Some(Instant::now());
            if metrics_due {
                report.metrics_at = report.sent_at;
            }
            report.backoff.succeeded();
            report.not_before = Instant::now() + MIN_INTERVAL;
        }
        Some(problem) => {
            let wait = report.backoff.failed();
            report.not_before = Instant::now() + wait;
            log::warn!(
                "state report failed: {problem}; next try in {}s",
                wait.as_secs()
            );
        }
    }
}
