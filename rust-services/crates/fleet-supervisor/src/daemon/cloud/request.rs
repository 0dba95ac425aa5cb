//! One request to the fleet server: the apiEndpoint, its TLS roots, the proxy from the
//! environment, the device's key, a time limit.

use std::time::Duration;

use fleet_http::client::Method;

use crate::daemon::client::{self, Response, Route};
use crate::daemon::state::Shared;

/// One request to `<apiEndpoint><path>` with `Authorization: Bearer <key>` and extra
/// headers; a failure is one line naming the URL and why.
pub async fn call<R>(
    shared: &Shared<R>,
    method: Method,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let Some(endpoint) = &shared.settings.api_endpoint else {
        return Err("no apiEndpoint".into());
    };
    let url = format!("{}{path}", endpoint.trim_end_matches('/'));
    let tls = shared
        .endpoint_tls()
        .map_err(|e| format!("{url}: TLS: {e}"))?;
    let auth = format!("Bearer {key}");
    let mut all = vec![("Authorization", auth.as_str())];
    let typed = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !typed {
        all.push(("Content-Type", "application/json"));
    }
    all.extend_from_slice(headers);
    client::request(method, &url, &all, body, tls, Route::ProxyFromEnv, timeout)
        .await
        .map_err(|e| fleet_log::error::one_line(&e))
}

/// The start of an answer body, for an error line.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
