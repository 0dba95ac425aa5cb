//! The target poll: `GET /device/v3/<uuid>/state` with `If-None-Match` (a `304` means
//! nothing changed), at the interval the target's config asks for, with jitter so a fleet
//! does not poll in step, and with backoff while the server fails. A failure, a bad answer
//! or a refused target keeps the last good target running; the refusal is logged to the
//! server too.

use std::time::Duration;

use fleet_http::client::Method;
use serde_json::Value;

use super::logs;
use super::request::call;
use crate::daemon::backoff::doubling;
use crate::daemon::state::Shared;
use crate::daemon::target::accept;
use fleet_release::target_state;

/// balena's default `SUPERVISOR_POLL_INTERVAL` (15 min) and its lower bound.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(900_000);
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10_000);
/// A poll that takes longer than this has failed.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// The poll interval a target document asks for (`<uuid>.config.SUPERVISOR_POLL_INTERVAL`,
/// milliseconds, as a string or a number, balena's prefixes honoured), within bounds.
pub fn poll_interval(document: Option<&Value>) -> Duration {
    let ms = document
        .and_then(|d| target_state::config_var(d, "SUPERVISOR_POLL_INTERVAL"))
        .and_then(|v| match v {
            Value::String(s) => s.trim().parse::<u64>().ok(),
            other => other.as_u64(),
        });
    ms.map(Duration::from_millis)
        .unwrap_or(DEFAULT_POLL_INTERVAL)
        .max(MIN_POLL_INTERVAL)
}

/// The first retry after a failed poll; doubled per failure up to the poll interval.
const BACKOFF_FIRST: Duration = Duration::from_secs(15);

/// What one poll saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    New,
    Unchanged,
    /// The server failed or answered what cannot be the target.
    Failed,
    /// Not registered yet: nothing to ask.
    NoIdentity,
}

/// Polls once; returns how long until the next poll.
pub async fn poll<R>(shared: &Shared<R>) -> Duration {
    let polled = poll_once(shared).await;
    let interval = poll_interval(shared.target.borrow().as_ref().map(|t| &t.document));
    // Not registered yet: the regular interval (registration triggers a poll when done).
    let failures = match polled {
        Polled::Failed => shared.poll_failures.get() + 1,
        Polled::New | Polled::Unchanged | Polled::NoIdentity => 0,
    };
    shared.poll_failures.set(failures);
    jitter(match failures {
        0 => interval,
        n => doubling(BACKOFF_FIRST, interval, n),
    })
}

/// ±10 %, from the clock's nanoseconds (enough to spread a fleet).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let permille = 900 + u64::from(nanos % 201);
    Duration::from_millis((d.as_millis() as u64).saturating_mul(permille) / 1000)
}

async fn poll_once<R>(shared: &Shared<R>) -> Polled {
    let Some(identity) = shared.identity.borrow().clone() else {
        return Polled::NoIdentity;
    };
    let path = format!("/device/v3/{}/state", identity.uuid);
    let etag = shared.poll_etag.borrow().clone();
    let headers: Vec<(&str, &str)> = etag.iter().map(|e| ("If-None-Match", e.as_str())).collect();
    let r = match call(
        shared,
        Method::GET,
        &path,
        &identity.device_api_key,
        &headers,
        b"",
        POLL_TIMEOUT,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            log::warn!("target poll failed: {e}; keeping the last good target");
            return Polled::Failed;
        }
    };
    match r.status {
        304 => {
            log::debug!("target unchanged (304)");
            return Polled::Unchanged;
        }
        200 => {}
        status => {
            log::warn!("target poll {path}: HTTP {status}; keeping the last good target");
            return Polled::Failed;
        }
    }
    match accept(shared, &r.body) {
        Ok(changed) => {
            if changed {
                log::info!("new target from {path}");
            }
            shared.poll_etag.replace(r.etag);
            if changed {
                Polled::New
            } else {
                Polled::Unchanged
            }
        }
        Err(e) => {
            let line = format!("Target state refused, keeping the last good one: {e}");
            log::error!("{line}");
            logs::system(shared, &line);
            // Asked for again next time (no ETag kept): the server may have fixed it.
            shared.poll_etag.replace(None);
            Polled::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..50 {
            let j = jitter(Duration::from_secs(100)).as_millis();
            assert!((90_000..=110_000).contains(&j), "{j}");
        }
    }
}
