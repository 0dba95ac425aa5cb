//! `PATCH /v2/device/tags`, as balena's supervisor (`src/api-binder/tags.ts`): the tags are
//! queued (kept in the data directory, so a restart does not lose them), answered `202`, and
//! sent to the server's `PATCH <apiEndpoint>/device/v3/tags` as `{<uuid>: {key: value}}`
//! with the device key, only those that differ from what was last reported, at most every
//! 10 s, retried after 15 s doubling up to the poll interval while the server fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use fleet_log::error::one_line;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::backoff::Backoff;
use super::message::{Request, Response};
use super::params::Params;
use super::state::Shared;
use super::{Reconciler, client};

/// The queue in the data directory (host `/mnt/data/fleet-supervisor/device-tags.json`).
pub const TAGS_FILE: &str = "device-tags.json";
const BAD_BODY: &str = "Invalid tags body, must be an object like `{[tagKey: string]: string}`";
const MIN_GAP: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(15);
const TIMEOUT: Duration = Duration::from_secs(30);

/// Tags last reported to the server and tags still to send (balena's `reportedTags`,
/// `targetTags`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagQueue {
    pub reported: BTreeMap<String, String>,
    pub target: BTreeMap<String, String>,
}

impl TagQueue {
    pub fn load(data_dir: &Path) -> TagQueue {
        std::fs::read(data_dir.join(TAGS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, data_dir: &Path) {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let saved = fleet_fs::ensure_dir(data_dir)
            .and_then(|()| fleet_fs::atomic_write(&data_dir.join(TAGS_FILE), &bytes, 0o600));
        if let Err(e) = saved {
            log::error!("device tags: cannot keep the queue: {}", one_line(&e));
        }
    }

    /// Queues `tags`; a tag set back to its reported value and not queued is skipped, as
    /// balena. Returns whether anything was queued.
    pub fn set(&mut self, tags: BTreeMap<String, String>) -> bool {
        let mut changed = false;
        for (key, value) in tags {
            if self.target.get(&key) == Some(&value) {
                continue;
            }
            if !self.target.contains_key(&key) && self.reported.get(&key) == Some(&value) {
                continue;
            }
            self.target.insert(key, value);
            changed = true;
        }
        changed
    }

    /// What still differs from the reported tags (queued tags equal to them are dropped).
    pub fn diff(&mut self) -> BTreeMap<String, String> {
        let reported = &self.reported;
        self.target.retain(|k, v| reported.get(k) != Some(v));
        self.target.clone()
    }

    /// `sent` reached the server.
    pub fn reported(&mut self, sent: &BTreeMap<String, String>) {
        for (k, v) in sent {
            self.reported.insert(k.clone(), v.clone());
            if self.target.get(k) == Some(v) {
                self.target.remove(k);
            }
        }
    }
}

/// A body balena accepts: an object of string values whose keys hold no white space.
pub fn parse(req: &Request) -> Result<BTreeMap<String, String>, String> {
    let params = Params::of(req).map_err(|_| BAD_BODY.to_string())?;
    let mut tags = BTreeMap::new();
    for (key, value) in params.fields() {
        let Value::String(value) = value else {
            return Err(BAD_BODY.into());
        };
        if key.chars().any(char::is_whitespace) {
            return Err("Tag keys cannot contain whitespace".into());
        }
        tags.insert(key.clone(), value.clone());
    }
    Ok(tags)
}

/// `PATCH /v2/device/tags`: `202 {"status":"success"}`, `400 {"status":"failed","message"}`.
pub fn patch<R>(shared: &Shared<R>, req: &Request) -> Response {
    let tags = match parse(req) {
        Ok(t) => t,
        Err(message) => {
            return Response::json(400, &json!({ "status": "failed", "message": message }));
        }
    };
    let changed = shared.tags.borrow_mut().set(tags);
    if changed {
        shared.tags.borrow().save(&shared.settings.data_dir);
        shared.tags_wake.notify_one();
    }
    Response::json(202, &json!({ "status": "success" }))
}

/// Sends queued tags whenever there are some (at start: what a restart left queued).
pub async fn report_loop<R: Reconciler>(shared: Rc<Shared<R>>) {
    loop {
        report_until_done(&shared).await;
        shared.tags_wake.notified().await;
    }
}

async fn report_until_done<R: Reconciler>(shared: &Shared<R>) {
    let cap =
        super::cloud::poll::poll_interval(shared.target.borrow().as_ref().map(|t| &t.document));
    let mut backoff = Backoff::new(FIRST_RETRY, cap);
    loop {
        let diff = shared.tags.borrow_mut().diff();
        if diff.is_empty() {
            return;
        }
        match send(shared, &diff).await {
            Ok(()) => {
                backoff.succeeded();
                shared.tags.borrow_mut().reported(&diff);
                shared.tags.borrow().save(&shared.settings.data_dir);
                log::info!("Reported device tags to the cloud");
                tokio::time::sleep(MIN_GAP).await;
            }
            Err(e) => {
                let wait = backoff.failed();
                log::warn!("device tags: {e}; next try in {}s", wait.as_secs());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn send<R>(shared: &Shared<R>, diff: &BTreeMap<String, String>) -> Result<(), String> {
    let Some(endpoint) = shared.settings.api_endpoint.clone() else {
        return Err("no apiEndpoint: device tags are kept by a server".into());
    };
    let Some(identity) = shared.identity.borrow().clone() else {
        return Err("the device is not registered yet".into());
    };
    let url = format!("{}/device/v3/tags", endpoint.trim_end_matches('/'));
    let tls = shared
        .endpoint_tls()
        .map_err(|e| format!("{url}: TLS: {e}"))?;
    let auth = format!("Bearer {}", identity.device_api_key);
    let body = json!({ identity.uuid.as_str(): diff }).to_string();
    let answer = client::request(
        fleet_http::client::Method::PATCH,
        &url,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
        tls,
        client::Route::ProxyFromEnv,
        TIMEOUT,
    )
    .await
    .map_err(|e| one_line(&e))?;
    if (200..300).contains(&answer.status) {
        Ok(())
    } else {
        Err(format!("{url}: HTTP {}", answer.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_queue_sends_only_what_differs_from_the_reported_tags() {
        let mut q = TagQueue::default();
        assert!(q.set(tags(&[("room", "lab"), ("rack", "3")])));
        assert_eq!(q.diff(), tags(&[("rack", "3"), ("room", "lab")]));
        q.reported(&tags(&[("rack", "3"), ("room", "lab")]));
        assert!(q.diff().is_empty());
        // Setting a tag back to its reported value queues nothing.
        assert!(!q.set(tags(&[("room", "lab")])));
        assert!(q.set(tags(&[("room", "hall")])));
        assert_eq!(q.diff(), tags(&[("room", "hall")]));
        // Queued then set back: nothing left to send.
        q.set(tags(&[("room", "lab")]));
        assert!(q.diff().is_empty());
    }

    #[test]
    fn bodies_balena_refuses() {
        let req = |body: &str| Request {
            method: "PATCH".into(),
            path: "/v2/device/tags".into(),
            query: vec![],
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(parse(&req(r#"{"a":"1"}"#)).unwrap(), tags(&[("a", "1")]));
        assert_eq!(parse(&req(r#"{"a":1}"#)).unwrap_err(), BAD_BODY);
        assert_eq!(parse(&req("[1]")).unwrap_err(), BAD_BODY);
        assert_eq!(
            parse(&req(r#"{"a b":"1"}"#)).unwrap_err(),
            "Tag keys cannot contain whitespace"
        );
    }
}
