//! The device's current state reported to the server (`PATCH <apiEndpoint>/device/v3/state`,
//! balena's v3 report shape): after each apply, sent when it changed or every
//! [`REFRESH`]; a failure is logged and retried with backoff, never fatal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::state::Shared;
use super::{Reconciler, ServiceState, client};

/// An unchanged report is sent again this often (the server sees the device alive).
pub const REFRESH: Duration = Duration::from_secs(15 * 60);
/// Backoff after a failed report: first wait, then doubled up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_secs(10);
const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// balena's service status words for the engine's.
fn status_word(engine: &str) -> &str {
    match engine {
        "running" => "Running",
        "created" => "Installed",
        "restarting" => "Restarting",
        "paused" => "Paused",
        "exited" => "Exited",
        "dead" => "Dead",
        "removing" => "Removing",
        other => other,
    }
}

/// The report body for the device `uuid`.
pub fn body<R>(shared: &Shared<R>, uuid: &str, states: &[ServiceState]) -> Value {
    let target = shared.target.borrow();
    let target_apps = target.as_ref().map(|t| &t.state.apps);
    let last = shared.last_apply.borrow();
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
    let mut apps = serde_json::Map::new();
    for (app_uuid, containers) in by_app {
        let target_release = target_apps
            .and_then(|a| a.get(app_uuid))
            .and_then(|a| a.release.as_ref())
            .map(|r| r.uuid.as_str());
        // Two containers of one service exist during a hand-over: the target release's wins.
        let mut services: BTreeMap<&str, &ServiceState> = BTreeMap::new();
        for c in containers {
            let keep = services
                .get(c.service.as_str())
                .is_some_and(|old| Some(old.release.as_str()) == target_release);
            if !keep {
                services.insert(&c.service, c);
            }
        }
        let releases: Vec<&str> = services.values().map(|s| s.release.as_str()).collect();
        // One release when all services run it; none while they differ (mid-update).
        let release_uuid = match releases.first() {
            Some(first) if releases.iter().all(|r| r == first) => Some(first.to_string()),
            _ => None,
        };
        let services: serde_json::Map<String, Value> = services
            .into_iter()
            .map(|(name, s)| {
                (
                    name.to_string(),
                    json!({
                        "image": s.image,
                        "status": status_word(&s.status),
                        "download_progress": null,
                    }),
                )
            })
            .collect();
        apps.insert(
            app_uuid.to_string(),
            json!({ "release_uuid": release_uuid, "services": services }),
        );
    }
    let failed = last.as_ref().is_some_and(|l| l.error.is_some());
    let held = last.as_ref().is_some_and(|l| !l.summary.held.is_empty());
    let pending = shared.applying.get() || failed || held || (target.is_some() && last.is_none());
    // What the target asks for that this device does not do (balena's API keeps only the
    // fields it knows: extra ones are dropped, not refused).
    let warnings: Vec<String> = target
        .as_ref()
        .map(|t| t.state.notes.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    json!({
        uuid: {
            "api_port": shared.settings.listen_port,
            "os_version": shared.settings.os_version,
            "supervisor_version": env!("CARGO_PKG_VERSION"),
            "update_pending": pending,
            "update_downloaded": held,
            "update_failed": failed,
            "apps": apps,
            "warnings": warnings,
        }
    })
}

/// Sends the report when it is due; every problem is logged and retried later.
pub async fn send_if_due<R: Reconciler>(shared: &Shared<R>) {
    let s = &shared.settings;
    let (Some(endpoint), Some(uuid), Some(key)) = (&s.api_endpoint, &s.uuid, &s.device_api_key)
    else {
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
    let body = body(shared, uuid, &states);
    {
        let report = shared.report.borrow();
        let fresh = report.sent_at.is_some_and(|at| at.elapsed() < REFRESH);
        if fresh && report.last_sent.as_ref() == Some(&body) {
            return;
        }
    }
    let url = format!("{}/device/v3/state", endpoint.trim_end_matches('/'));
    let tls = match shared.endpoint_tls() {
        Ok(tls) => tls,
        Err(e) => {
            let e = format!("{url}: TLS: {e}");
            failed(shared, &e);
            return;
        }
    };
    let auth = format!("Bearer {key}");
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let sent = client::request(
        fleet_http::client::Method::PATCH,
        &url,
        &headers,
        &bytes,
        tls,
        client::Route::ProxyFromEnv,
        REPORT_TIMEOUT,
    )
    .await;
    let problem = match sent {
        Err(e) => Some(fleet_log::error::one_line(&e)),
        Ok(r) if (200..300).contains(&r.status) => None,
        Ok(r) => Some(format!("{url}: HTTP {}", r.status)),
    };
    match problem {
        None => {
            log::debug!("state reported to {url}");
            let mut report = shared.report.borrow_mut();
            report.last_sent = Some(body);
            report.sent_at = Some(Instant::now());
            report.backoff = Duration::ZERO;
        }
        Some(problem) => failed(shared, &problem),
    }
}

/// Logs a failed report and backs off.
fn failed<R>(shared: &Shared<R>, problem: &str) {
    let mut report = shared.report.borrow_mut();
    report.backoff = (report.backoff * 2).clamp(BACKOFF_FIRST, BACKOFF_CAP);
    report.not_before = Instant::now() + report.backoff;
    log::warn!(
        "state report failed: {problem}; next try in {}s",
        report.backoff.as_secs()
    );
}
