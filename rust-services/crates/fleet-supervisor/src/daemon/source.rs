//! Where the target comes from (the local file, the server's `/device/v3/<uuid>/state`) and
//! the loop that applies it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use fleet_log::error::{Chain, one_line};

use super::Reconciler;
use super::api_keys;
use super::backoff::doubling;
use super::cloud::{self, poll};
use super::state::{ApplyRecord, Shared, Target, record_applied_commits, unix_now};
use super::{host_os, target, vpn};
use fleet_release::target_state::{self, TargetState};

/// Reads the target file when its content changed since `last_seen` (local mode: a tool or
/// a person may replace it at any time; at start: the last good target). A bad file is
/// reported once and changes nothing.
fn reload_file<R>(shared: &Shared<R>, last_seen: &mut Option<Vec<u8>>) {
    let path = shared.settings.target_file();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if last_seen.is_none() {
                log::info!("no target yet ({} does not exist)", path.display());
                *last_seen = Some(Vec::new());
            }
            return;
        }
        Err(e) => {
            log::error!("{}: {e}", path.display(), e = Chain(&e));
            return;
        }
    };
    if last_seen.as_ref() == Some(&bytes) {
        return;
    }
    let parsed = target_state::parse(&bytes).and_then(|state| {
        serde_json::from_slice(&bytes)
            .map(|document| Target { state, document })
            .map_err(|e| target_state::TargetError {
                problems: vec![fleet_release::Problem::new("(file)", e.to_string())],
            })
    });
    match parsed {
        Ok(t) => {
            let changed = shared
                .target
                .borrow()
                .as_ref()
                .is_none_or(|old| old.document != t.document);
            if changed {
                log::info!("target from {}", path.display());
                shared.target.replace(Some(t));
            }
        }
        Err(e) => log::error!(
            "{}: {e}; keeping the last good target",
            path.display(),
            e = Chain(&e)
        ),
    }
    *last_seen = Some(bytes);
}

/// Longest wait between tries of a failing update.
const RETRY_CAP: Duration = Duration::from_secs(5 * 60);

/// Applies the target once; returns how soon to come back. With a server, polls go on while
/// the apply runs (`next_poll`), and a changed target drops the apply in flight so the new
/// one is applied at once, as balena cancels its apply on a new target.
async fn apply_once<R: Reconciler>(
    shared: &Shared<R>,
    force: bool,
    next_poll: &mut Instant,
) -> Duration {
    let Some(target) = shared.target.borrow().clone() else {
        return shared.timing.reconcile;
    };
    let _actions = shared.actions.lock().await;
    hand_out_api_keys(shared, &target.state);
    shared.applying.set(true);
    let mut woken = false;
    // Dropping the apply at one of its awaits is no worse than a supervisor killed there:
    // the next apply converges from whatever the engine has.
    let outcome = tokio::select! {
        result = shared.reconciler.apply(&target.state, force) => Some(result),
        _ = shared.cancel_apply.notified() => {
            log::info!("apply cancelled (POST /v1/update with cancel): fetching and applying again");
            None
        }
        _ = target_changes(shared, &target.document, next_poll, &mut woken),
            if shared.settings.remote() => {
            log::info!("apply cancelled: the server sent a new target; applying it");
            None
        }
        _ = cloud::report::while_applying(shared), if shared.settings.remote() => None,
    };
    shared.applying.set(false);
    if woken {
        // The watcher took a wake-up meant for the loop (a request's poll or force).
        shared.wake.notify_one();
    }
    let Some(result) = outcome else {
        return Duration::ZERO;
    };
    let releases: Vec<String> = target
        .state
        .apps
        .values()
        .filter_map(|a| a.release.as_ref().map(|r| r.uuid.clone()))
        .collect();
    let (summary, error) = match result {
        Ok(summary) => (summary, None),
        Err(e) => (Default::default(), Some(one_line(&e))),
    };
    // A failing update is retried with backoff (a broken release is not pulled every few
    // seconds forever), and said once to the server until its error changes.
    let failures = match &error {
        Some(_) => shared.apply_failures.get().saturating_add(1),
        None => 0,
    };
    shared.apply_failures.set(failures);
    let again = if error.is_some() {
        doubling(shared.timing.retry, RETRY_CAP, failures)
    } else if !summary.held.is_empty() {
        shared.timing.retry
    } else {
        shared.timing.reconcile
    };
    let previous_error = shared
        .last_apply
        .borrow()
        .as_ref()
        .and_then(|l| l.error.clone());
    if let Some(e) = &error {
        log::error!("apply failed: {e}; next try in {}s", again.as_secs());
        if previous_error.as_ref() != Some(e) {
            cloud::logs::system(
                shared,
                &format!("Update failed, the running services are kept: {e}"),
            );
        }
    } else if summary.steps > 0 {
        log::info!("applied {} step(s)", summary.steps);
        let release = releases.join(",");
        cloud::logs::system(
            shared,
            &format!("Applied release {release} ({} step(s))", summary.steps),
        );
    }
    for held in &summary.held {
        log::info!(
            "update of {}/{} held by its update lock",
            held.app,
            held.service
        );
    }
    if error.is_none() && summary.held.is_empty() {
        let applied = target
            .state
            .apps
            .values()
            .filter_map(|a| Some((a.id, a.release.as_ref()?.uuid.clone())));
        record_applied_commits(shared, applied);
    }
    shared.last_apply.replace(Some(ApplyRecord {
        finished: unix_now(),
        release: (!releases.is_empty()).then(|| releases.join(",")),
        summary,
        error,
    }));
    again
}

/// Polls while an apply runs, when due or asked (`POST /v1/update`); returns once the server
/// sent a target other than `applying`.
async fn target_changes<R>(
    shared: &Shared<R>,
    applying: &serde_json::Value,
    next_poll: &mut Instant,
    woken: &mut bool,
) {
    loop {
        if !shared.poll_pending.get() {
            tokio::select! {
                _ = tokio::time::sleep(next_poll.saturating_duration_since(Instant::now())) => {}
                _ = shared.wake.notified() => *woken = true,
            }
        }
        if shared.poll_pending.get() || Instant::now() >= *next_poll {
            shared.poll_pending.set(false);
            *next_poll = Instant::now() + poll::poll(shared).await;
        }
        let changed = shared
            .target
            .borrow()
            .as_ref()
            .is_some_and(|t| t.document != *applying);
        if changed {
            return;
        }
    }
}

/// Polls (remote mode) and applies, on change, on request and periodically; forever.
pub async fn reconcile_loop<R: Reconciler>(shared: Rc<Shared<R>>) {
    target::preload(&shared);
    let mut last_seen = None;
    reload_file(&shared, &mut last_seen);
    let mut next_poll = Instant::now();
    let mut vpn = vpn::Control::default();
    let mut host_os = host_os::HandOver::default();
    loop {
        shared.heartbeat.set(Instant::now());
        let force = shared.force_pending.replace(false);
        let poll_now = shared.poll_pending.replace(false);
        if !shared.settings.remote() {
            reload_file(&shared, &mut last_seen);
        }
        if shared.settings.remote() && (poll_now || Instant::now() >= next_poll) {
            next_poll = Instant::now() + poll::poll(&shared).await;
        }
        let mut delay = apply_once(&shared, force, &mut next_poll).await;
        vpn.apply(&shared).await;
        host_os.apply(&shared).await;
        shared.heartbeat.set(Instant::now());
        if shared.settings.remote() {
            cloud::report::send_if_due(&shared).await;
        }
        if shared.settings.remote() {
            delay = delay.min(next_poll.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

/// Before an apply: makes the keys the target's services lack (balena makes a service's key
/// when it configures the service) and hands every service's key to the engine side. A key
/// that cannot be kept is logged; the service then gets none of its own this time (the
/// planner falls back to the global key) and the next apply tries again.
fn hand_out_api_keys<R: Reconciler>(shared: &Shared<R>, target: &TargetState) {
    let mut keys = shared.api_keys.borrow_mut();
    if let Err(e) = keys.ensure(api_keys::wanted(target)) {
        log::error!("supervisor API keys: {}", Chain(&e));
    }
    shared.reconciler.set_service_api_keys(keys.services());
}
