//! `PATCH /v2/device/tags`, as balena's supervisor (`src/api-binder/tags.ts`): the tags are
//! queued (kept in the data directory, so a restart does not lose them), answered `202`, and
//! sent to the server's `PATCH <apiEndpoint>/device/v3/tags` as `{<uuid>: {key: value}}`
//! with the device key, only those that differ from what was last reported, at most every
//! 10 s, retried after 15 s doubling up to the poll interval while the server fails. A
//! server without that route (open-balena-api v43.7.7 answers 404, tried by hand) keeps
//! them on the device until they change again.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Reconciler;
use super::backoff::Backoff;
use super::cloud::request::{call, snippet};
use super::message::{Request, Response};
use super::params::Params;
use super::state::Shared;

const BAD_BODY: &str = "Invalid tags body, must be an object like `{[tagKey: string]: string}`";
const MIN_GAP: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(15);
const TIMEOUT: Duration = Duration::from_secs(30);
const PATH: &str = "/device/v3/tags";

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
            Err(NotSent::Unsupported) => {
                log::info!("the server has no {PATH} (404): device tags are kept on the device");
                return;
            }
            Err(NotSent::Failed(e)) => {
                let wait = backoff.failed();
                log::warn!("device tags: {e}; next try in {}s", wait.as_secs());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Why tags were not delivered.
enum NotSent {
    /// The server has no tags endpoint (open-balena-api v43.7.7 answers 404): kept locally,
    /// tried again when tags change.
    Unsupported,
    Failed(String),
}

async fn send<R>(shared: &Shared<R>, diff: &BTreeMap<String, String>) -> Result<(), NotSent> {
    if shared.settings.api_endpoint.is_none() {
        return Err(NotSent::Failed(
            "no apiEndpoint: device tags are kept by a server".into(),
        ));
    }
    let Some(identity) = shared.identity.borrow().clone() else {
        return Err(NotSent::Failed("the device is not registered yet".into()));
    };
    let body = json!({ identity.uuid.as_str(): diff }).to_string();
    let answer = call(
        shared,
        fleet_http::client::Method::PATCH,
        PATH,
        &identity.device_api_key,
        &[],
        body.as_bytes(),
        TIMEOUT,
    )
    .await
    .map_err(NotSent::Failed)?;
    match answer.status {
        200..=299 => Ok(()),
        404 => Err(NotSent::Unsupported),
        status => Err(NotSent::Failed(format!(
            "{PATH}: HTTP {status}: {}",
            snippet(&answer.body)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::tag_queue::tests::tags;

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
