//! The device's side of a fleet server's device API, as openBalena (balena's open-source
//! API) serves it: registration with a provisioning key ([`provision`]), the target poll
//! with `If-None-Match` ([`poll`]), the current-state report ([`report`]), the log stream
//! ([`logs`]) and the OS service configuration ([`os_config`]). Every call goes through
//! [`call`]: the apiEndpoint, its TLS roots, the proxy from the environment, a time limit.

pub mod host_info;
pub mod logs;
pub mod os_config;
pub mod poll;
pub mod provision;
pub mod report;

use std::rc::Rc;
use std::time::Duration;

use fleet_http::client::Method;

use super::Reconciler;
use super::client::{self, Response, Route};
use super::local::BALENA_SUPERVISOR_API;
use super::state::Shared;

/// The balenaOS release whose device API this one matches: open-balena-api refuses a
/// multicontainer fleet to an `os_version` below 2.11.0 and one that is not semver.
pub const BALENA_OS_COMPAT: &str = "2.95.0";

/// The device's identity on the server once registered: its UUID and the key it
/// authenticates with (`Authorization: Bearer`, `d_<uuid>` at the registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uuid: String,
    pub device_api_key: String,
}

impl Identity {
    pub fn registry_login(&self) -> fleet_engine::RegistryLogin {
        fleet_engine::RegistryLogin {
            username: format!("d_{}", self.uuid),
            password: self.device_api_key.clone(),
        }
    }
}

/// `os_version` as the server checks it: balena's name and API level, fleetOS's own
/// version as semver build metadata (`balenaOS 2.95.0+fleetos.0.1.0`).
pub fn os_version(fleet_version: Option<&str>) -> String {
    let build: String = fleet_version
        .unwrap_or("unknown")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "balenaOS {BALENA_OS_COMPAT}+fleetos.{}",
        build.trim_matches('.')
    )
}

/// `supervisor_version`: balena's supervisor API level with fleetOS's build (the server
/// keeps at most 20 characters).
pub fn supervisor_version() -> String {
    let full = format!(
        "{BALENA_SUPERVISOR_API}+fleet.{}",
        env!("CARGO_PKG_VERSION")
    );
    if full.len() <= 20 {
        full
    } else {
        BALENA_SUPERVISOR_API.to_string()
    }
}

/// `os_variant`: balena's words for a development and a production device.
pub fn os_variant(development_mode: bool) -> &'static str {
    if development_mode { "dev" } else { "prod" }
}

/// The cloud side, beside the API server and the reconcile loop: registration when
/// config.json asks for it, then the OS configuration and the log stream. Never returns.
pub async fn run<R: Reconciler + 'static>(shared: Rc<Shared<R>>) {
    if shared.settings.remote() {
        provision::until_registered(&shared).await;
        if shared.identity.borrow().is_some() {
            match os_config::fetch(&shared).await {
                Ok(w) if !w.files.is_empty() => log::info!(
                    "OS configuration: wrote {} file(s) under {}",
                    w.files.len(),
                    os_config::DIR
                ),
                Ok(_) => {}
                Err(e) => log::warn!("OS configuration not fetched: {e}"),
            }
            logs::run(shared).await;
        }
    }
    std::future::pending::<()>().await;
}

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

/// A random lower-case hex string of `bytes` random bytes (balena's UUIDs and keys).
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_satisfy_the_servers_checks() {
        assert_eq!(os_version(Some("0.1.0")), "balenaOS 2.95.0+fleetos.0.1.0");
        assert_eq!(
            os_version(Some("1.0 beta")),
            "balenaOS 2.95.0+fleetos.1.0-beta"
        );
        assert_eq!(os_version(None), "balenaOS 2.95.0+fleetos.unknown");
        assert!(supervisor_version().len() <= 20);
        assert!(supervisor_version().starts_with(BALENA_SUPERVISOR_API));
    }

    #[test]
    fn random_keys_are_hex_of_the_asked_length() {
        let k = random_hex(16).unwrap();
        assert_eq!(k.len(), 32);
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(k, random_hex(16).unwrap());
    }
}
