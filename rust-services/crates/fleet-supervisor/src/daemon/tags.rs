//! `PATCH /v2/device/tags`, as balena's supervisor (`src/api-binder/tags.ts`): the tags are
//! queued (kept in the data directory, so a restart does not lose them), answered `202`, and
//! sent to the server's `PATCH <apiEndpoint>/device/v3/tags` as `{<uuid>: {key: value}}`
//! with the device key, only those that differ from what was last reported, at most every
//! 10 s, retried after 15 s doubling up to the poll interval while the server fails.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use fleet_log::error::one_line;
use serde_json::{Value, json};

use super::backoff::Backoff;
use super::message::{Request, Response};
use super::params::Params;
use super::state::Shared;
use super::{Reconciler, client};

const BAD_BODY: &str = "Invalid tags body, must be an object like `{[tagKey: string]: string}`";
const MIN_GAP: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(15);
const TIMEOUT: Duration = Duration::from_secs(30);

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
