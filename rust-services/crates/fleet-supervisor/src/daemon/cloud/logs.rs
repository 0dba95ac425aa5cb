//! Logs to the server: what the supervisor itself says about the apps (system lines) and
//! every service's output go to `POST /device/v2/<uuid>/log-stream` as NDJSON (`message`,
//! `timestamp` in ms, `isSystem`, `isStdErr`, `serviceId`), one request per flush. While
//! the server cannot be reached they wait in a buffer of at most [`BUFFER_BYTES`]; beyond
//! that the oldest lines go first, and the next delivery says how many were dropped.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use fleet_http::client::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::call;
use crate::daemon::Reconciler;
use crate::daemon::backoff::Backoff;
use crate::daemon::local::now_ms;
use crate::daemon::service_logs::{self, ServiceLine};
use crate::daemon::state::{Shared, unix_now};

/// Memory for lines not yet delivered.
pub const BUFFER_BYTES: usize = 256 * 1024;
/// How often buffered lines are sent.
const FLUSH: Duration = Duration::from_secs(1);
/// Largest request body; the rest waits for the next flush.
const MAX_REQUEST: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);
/// Waits after failed deliveries.
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(5 * 60));

/// Lines waiting for delivery, oldest first, each a JSON object and its newline.
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Lines dropped to stay within the budget since the last delivery.
    dropped: u64,
}

impl LogBuffer {
    pub fn push(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.bytes > BUFFER_BYTES {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            self.dropped += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest lines, up to `max` bytes (at least one): the body and how many lines.
    fn batch(&self, max: usize) -> (Vec<u8>, usize) {
        let mut body = Vec::new();
        let mut n = 0;
        for line in &self.lines {
            if n > 0 && body.len() + line.len() > max {
                break;
            }
            body.extend_from_slice(line);
            n += 1;
        }
        (body, n)
    }

    /// Forgets the `n` oldest lines (delivered).
    fn delivered(&mut self, n: usize) {
        for line in self.lines.drain(..n.min(self.lines.len())) {
            self.bytes -= line.len();
        }
    }
}

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
            return Err(format!(
                "{path}: HTTP {}: {}",
                r.status,
                super::provision::snippet(&r.body)
            ));
        }
        shared.cloud_logs.borrow_mut().delivered(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_drops_the_oldest_beyond_its_budget() {
        let mut b = LogBuffer::default();
        let line = |i: usize| json!({ "message": format!("{i:0>1000}"), "timestamp": i });
        let per_line = serde_json::to_vec(&line(0)).unwrap().len() + 1;
        let fits = BUFFER_BYTES / per_line;
        for i in 0..fits + 10 {
            b.push(&line(i));
        }
        assert!(b.bytes() <= BUFFER_BYTES);
        assert_eq!(b.len(), fits);
        assert_eq!(b.dropped, 10);
        let (body, n) = b.batch(MAX_REQUEST);
        assert_eq!(n, MAX_REQUEST / per_line);
        let first: Value =
            serde_json::from_slice(body.split(|c| *c == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["timestamp"], json!(10), "the oldest kept is the 11th");
        b.delivered(n);
        assert_eq!(b.len(), fits - n);
    }

    #[test]
    fn one_line_larger_than_a_request_still_goes() {
        let mut b = LogBuffer::default();
        b.push(&json!({ "message": "x".repeat(MAX_REQUEST + 10) }));
        let (_, n) = b.batch(MAX_REQUEST);
        assert_eq!(n, 1);
    }
}
