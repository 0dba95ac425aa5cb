//! Logs to the server: what the supervisor itself says about the apps (system lines) and
//! every service's output go to `POST /device/v2/<uuid>/log-stream` as NDJSON (`message`,
//! `timestamp` in ms, `isSystem`, `isStdErr`, `serviceId`), one request per flush. While
//! the server cannot be reached they wait in a buffer of at most [`BUFFER_BYTES`]; beyond
//! that the oldest lines go first, and the next delivery says how many were dropped.

use std::rc::Rc;
use std::time::{Duration, Instant};

use fleet_http::client::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::request::{call, snippet};
use crate::daemon::Reconciler;
use crate::daemon::backoff::Backoff;
use crate::daemon::service_logs::{self, ServiceLine};
use crate::daemon::state::{Shared, now_ms, unix_now};

/// How often buffered lines are sent.
const FLUSH: Duration = Duration::from_secs(1);
/// Largest request body; the rest waits for the next flush.
const MAX_REQUEST: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);
/// Waits after failed deliveries.
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(5 * 60));

/// A system line (the supervisor speaking about the apps), for the server.
pub fn system<R>(shared: &Shared<R>, message: &str) {
    if shared.settings.api_endpoint.is_none() {
        return;
    }
    shared.cloud_logs.borrow_mut().push(&json!({
        "message": message,
        "timestamp": now_ms(),
        "isSystem": true,
        "isStdErr": false,
    }));
}

/// A service's line, with its `serviceId` from the target when it has one.
fn service_line<R>(shared: &Shared<R>, l: &ServiceLine) -> Value {
    let service_id = shared.target.borrow().as_ref().and_then(|t| {
        let release = t.state.apps.get(&l.app)?.release.as_ref()?;
        release.service_ids.get(&l.service).copied()
    });
    let mut v = json!({
        "message": l.line.message,
        "timestamp": now_ms(),
        "isSystem": false,
        "isStdErr": l.line.stderr,
    });
    if let Some(id) = service_id {
        v["serviceId"] = id.into();
    }
    v
}

/// Follows the services' output and delivers the buffer, forever.
pub async fn run<R: Reconciler + 'static>(shared: Rc<Shared<R>>) {
    let (tx, mut lines) = mpsc::channel::<ServiceLine>(256);
    let follower =
        tokio::task::spawn_local(service_logs::follow_all(shared.clone(), unix_now(), tx));
    let mut flush = tokio::time::interval(FLUSH);
    let mut not_before = Instant::now();
    let mut backoff = BACKOFF;
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let v = service_line(&shared, &line);
                shared.cloud_logs.borrow_mut().push(&v);
            }
            _ = flush.tick() => {
                if Instant::now() < not_before {
                    continue;
                }
                match deliver(&shared).await {
                    Ok(()) => backoff.succeeded(),
                    Err(e) => {
                        let wait = backoff.failed();
                        not_before = Instant::now() + wait;
                        let b = shared.cloud_logs.borrow();
                        log::warn!(
                            "log delivery failed: {e}; {} line(s), {} bytes kept, next try in {}s",
                            b.len(), b.bytes(), wait.as_secs()
                        );
                    }
                }
            }
        }
    }
    follower.abort();
}

/// Sends what is buffered, a request at a time.
async fn deliver<R>(shared: &Shared<R>) -> Result<(), String> {
    let Some(identity) = shared.identity.borrow().clone() else {
        return Ok(());
    };
    let dropped = std::mem::take(&mut shared.cloud_logs.borrow_mut().dropped);
    if dropped > 0 {
        let note =
            format!("{dropped} log line(s) were dropped while the server could not be reached");
        log::warn!("{note}");
        system(shared, &note);
    }
    let path = format!("/device/v2/{}/log-stream", identity.uuid);
    loop {
        let (body, n) = shared.cloud_logs.borrow().batch(MAX_REQUEST);
        if n == 0 {
            return Ok(());
        }
        let headers = [("Content-Type", "application/x-ndjson")];
        let r = call(
            shared,
            Method::POST,
            &path,
            &identity.device_api_key,
            &headers,
            &body,
            TIMEOUT,
        )
        .await?;
        if !(200..300).contains(&r.status) {
            return Err(format!("{path}: HTTP {}: {}", r.status, snippet(&r.body)));
        }
        shared.cloud_logs.borrow_mut().delivered(n);
    }
}
