//! The OS service configuration from the server (`GET /os/v1/config`, what balenaOS's
//! os-config fetches): the OpenVPN client's settings are written where the image's VPN
//! client reads them. The VPN stays off unless config.json enables it (`fleet.vpn` is not
//! this module's business): writing the files never starts anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_http::client::Method;
use serde_json::Value;

use super::request::call;
use crate::daemon::state::Shared;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Where the files go, under the data directory (the host's
/// `/mnt/data/fleet-supervisor/os-config/openvpn/`).
pub const DIR: &str = "os-config/openvpn";

/// What was written.
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

/// Fetches and writes the OpenVPN settings; an answer without them changes nothing.
pub async fn fetch<R>(shared: &Shared<R>) -> Result<Written, String> {
    let Some(identity) = shared.identity.borrow().clone() else {
        return Err("not registered".into());
    };
    let r = call(
        shared,
        Method::GET,
        "/os/v1/config",
        &identity.device_api_key,
        &[],
        b"",
        TIMEOUT,
    )
    .await?;
    if r.status != 200 {
        return Err(format!("/os/v1/config: HTTP {}", r.status));
    }
    let doc: Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("/os/v1/config: not JSON: {e}"))?;
    write(&shared.settings.data_dir.join(DIR), &doc)
}

/// Writes `services.openvpn.config` as `openvpn.conf` and `services.openvpn.ca` as `ca.crt`
/// (atomically; unchanged files are not rewritten).
pub fn write(dir: &Path, doc: &Value) -> Result<Written, String> {
    let openvpn = doc.pointer("/services/openvpn").and_then(Value::as_object);
    let Some(openvpn) = openvpn else {
        return Err("/os/v1/config: no services.openvpn".into());
    };
    let mut files = Vec::new();
    for (key, name) in [("config", "openvpn.conf"), ("ca", "ca.crt")] {
        let Some(text) = openvpn.get(key).and_then(Value::as_str) else {
            continue;
        };
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        fleet_fs::ensure_dir(dir)
            .and_then(|()| fleet_fs::atomic_write(&path, text.as_bytes(), 0o600))
            .map_err(|e| fleet_log::error::one_line(&e))?;
        files.push(path);
    }
    Ok(Written { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openvpn_settings_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let doc = serde_json::json!({"services": {"openvpn": {"config": "client\nremote vpn 443\n", "ca": "-----BEGIN CERTIFICATE-----\n"}, "ssh": {"authorized_keys": ""}}, "schema_version": "1.0.0"});
        let w = write(dir.path(), &doc).unwrap();
        assert_eq!(w.files.len(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("openvpn.conf")).unwrap(),
            "client\nremote vpn 443\n"
        );
        assert!(
            write(dir.path(), &doc).unwrap().files.is_empty(),
            "unchanged: not rewritten"
        );
        let err = write(dir.path(), &serde_json::json!({"services": {}})).unwrap_err();
        assert!(err.contains("services.openvpn"), "{err}");
    }
}
