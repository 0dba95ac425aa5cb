//! The OS service configuration from the server (`GET /os/v1/config`, what balenaOS's
//! os-config fetches): the OpenVPN client's settings, made to work on fleetOS and written
//! where the image's `fleet-vpn.service` reads them. Writing never starts anything: the VPN
//! runs only when config.json says `"fleet": {"vpn": {"enabled": true}}` (fleetd provision
//! turns that into `/run/fleet/vpn-enabled`, a condition of the unit).
//!
//! The server's config is balenaOS's: files under `/etc/openvpn` and `/var/volatile`, `up` and
//! `down` scripts and an `openvpn` user that exist only there. Rewritten here:
//! - `ca` and `auth-user-pass` name the files written beside it, relative to this directory
//!   (the supervisor sees it as `/data/…`, the host as `/mnt/data/fleet-supervisor/…`; the
//!   unit runs `openvpn --cd` here, so relative names are right on both sides);
//! - `up`, `down`, `up-restart` and `script-security` are dropped (no scripts to run);
//! - `user`/`group` become `nobody`/`nogroup`, which every image has;
//! - `remote` takes config.json's `vpnEndpoint`/`vpnPort` when set (as balena's
//!   prepare-openvpn once did).
//!
//! The credentials go in `vpn-auth` (mode 0600), as balena's prepare-openvpn writes
//! `/var/volatile/vpn-auth`: the device uuid, then the device key. It stays on the data
//! partition, never on the boot partition.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_fs::Change;
use fleet_http::client::Method;
use serde_json::Value;

use super::identity::Identity;
use super::request::call;
use crate::daemon::state::Shared;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Where the files go, under the data directory (the host's
/// `/mnt/data/fleet-supervisor/os-config/openvpn/`).
pub const DIR: &str = "os-config/openvpn";
pub const CONFIG_FILE: &str = "openvpn.conf";
pub const CA_FILE: &str = "ca.crt";
pub const AUTH_FILE: &str = "vpn-auth";
/// Directives dropped: they run balenaOS's scripts, which fleetOS does not have.
const DROPPED: &[&str] = &["up", "down", "up-restart", "script-security"];

/// config.json's `vpnEndpoint` and `vpnPort`: where the device connects instead of the
/// server-supplied `remote`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remote<'a> {
    pub host: Option<&'a str>,
    pub port: Option<u16>,
}

/// What was written.
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

/// Fetches and writes the OpenVPN settings.
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
    let s = &shared.settings;
    let remote = Remote {
        host: s.vpn_endpoint.as_deref(),
        port: s.vpn_port,
    };
    write(&s.data_dir.join(DIR), &doc, &identity, remote)
}

/// Writes `ca.crt`, `vpn-auth` and then `openvpn.conf` (last: `fleet-vpn.path` waits for
/// it), atomically; unchanged files are not rewritten. An answer without
/// `services.openvpn.config` changes nothing.
pub fn write(
    dir: &Path,
    doc: &Value,
    identity: &Identity,
    remote: Remote<'_>,
) -> Result<Written, String> {
    let openvpn = doc.pointer("/services/openvpn").and_then(Value::as_object);
    let Some(config) = openvpn
        .and_then(|o| o.get("config"))
        .and_then(Value::as_str)
    else {
        return Err("/os/v1/config: no services.openvpn.config".into());
    };
    let ca = openvpn.and_then(|o| o.get("ca")).and_then(Value::as_str);
    let Some(ca) = ca else {
        return Err("/os/v1/config: no services.openvpn.ca".into());
    };
    let auth = format!("{}\n{}\n", identity.uuid, identity.device_api_key);
    let config = rewrite(config, remote);
    let mut files = Vec::new();
    for (name, text) in [(CA_FILE, ca), (AUTH_FILE, &auth), (CONFIG_FILE, &config)] {
        let path = dir.join(name);
        let change = fleet_fs::write_if_changed(&path, text.as_bytes(), 0o600)
            .map_err(|e| fleet_log::error::one_line(&e))?;
        if change == Change::Written {
            files.push(path);
        }
    }
    Ok(Written { files })
}

/// The server's (balenaOS) OpenVPN config, made to work on fleetOS (see the module docs).
pub fn rewrite(config: &str, remote: Remote<'_>) -> String {
    let mut out = String::from(
        "# fleetOS: written by the supervisor from GET /os/v1/config; file names are relative\n\
         # to this directory (fleet-vpn.service runs openvpn --cd here).\n",
    );
    for line in config.lines() {
        let mut words = line.split_whitespace();
        let directive = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let rewritten = match directive {
            d if DROPPED.contains(&d) => continue,
            "ca" => format!("ca {CA_FILE}"),
            "auth-user-pass" => format!("auth-user-pass {AUTH_FILE}"),
            "user" => "user nobody".to_string(),
            "group" => "group nogroup".to_string(),
            "remote" => {
                let host = remote.host.or(args.first().copied()).unwrap_or("");
                let port = remote.port.map(|p| p.to_string());
                let port = port.as_deref().or(args.get(1).copied());
                let mut r = vec!["remote", host];
                r.extend(port);
                r.extend(args.iter().skip(2));
                r.join(" ")
            }
            _ => line.to_string(),
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const RECORDED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/openbalena/recorded/91-os-config-device-key.json"
    ));

    fn recorded_answer() -> Value {
        let rec: Value = serde_json::from_str(RECORDED).unwrap();
        rec["response"]["body"].clone()
    }

    fn identity() -> Identity {
        Identity {
            uuid: "f3c7b1a0e4d24b7d9a8e6c5b4a3f2e1d".into(),
            device_api_key: "72819b6cf0e84c9788332e05a9903350".into(),
        }
    }

    fn directives(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn recorded_answer_is_rewritten_for_fleetos() {
        let dir = tempfile::tempdir().unwrap();
        let w = write(
            dir.path(),
            &recorded_answer(),
            &identity(),
            Remote::default(),
        )
        .unwrap();
        let names: Vec<_> = w.files.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, [CA_FILE, AUTH_FILE, CONFIG_FILE]);
        let conf = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        let lines = directives(&conf);
        // Kept as served, then rewritten for fleetOS.
        for want in [
            "client",
            "remote vpn.balenadev.io 5433",
            "remote-cert-tls server",
            "dev resin-vpn",
            "proto tcp",
            "comp-lzo",
            "ca ca.crt",
            "auth-user-pass vpn-auth",
            "user nobody",
            "group nogroup",
        ] {
            assert!(lines.contains(&want), "{want:?} missing:\n{conf}");
        }
        for gone in [
            "/etc/",
            "/var/volatile",
            "upscript",
            "downscript",
            "up-restart",
        ] {
            assert!(!conf.contains(gone), "{gone:?} left in:\n{conf}");
        }
        assert!(!lines.iter().any(|l| l.starts_with("script-security")));
        let ca = std::fs::read_to_string(dir.path().join(CA_FILE)).unwrap();
        assert!(
            ca.starts_with("-----BEGIN CERTIFICATE-----\nMIICWDCCAcGgAwIBAgIJAPSxvaHnsjuiMA0G")
        );
        let auth = dir.path().join(AUTH_FILE);
        assert_eq!(
            std::fs::read_to_string(&auth).unwrap(),
            "f3c7b1a0e4d24b7d9a8e6c5b4a3f2e1d\n72819b6cf0e84c9788332e05a9903350\n"
        );
        for name in [AUTH_FILE, CA_FILE, CONFIG_FILE] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let again = write(
            dir.path(),
            &recorded_answer(),
            &identity(),
            Remote::default(),
        );
        assert!(again.unwrap().files.is_empty(), "unchanged: not rewritten");
    }

    #[test]
    fn config_json_endpoint_and_port_replace_the_remote() {
        let config = "client\nremote vpn.balenadev.io 5433\nremote-cert-tls server\n";
        let with = |host, port| directives(&rewrite(config, Remote { host, port })).join("|");
        assert_eq!(
            with(Some("10.9.0.1"), Some(1194)),
            "client|remote 10.9.0.1 1194|remote-cert-tls server"
        );
        assert!(with(None, Some(443)).contains("|remote vpn.balenadev.io 443|"));
        assert!(with(Some("10.9.0.1"), None).contains("|remote 10.9.0.1 5433|"));
    }

    #[test]
    fn a_new_device_key_rewrites_only_the_auth_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &recorded_answer(),
            &identity(),
            Remote::default(),
        )
        .unwrap();
        let rotated = Identity {
            device_api_key: "0123456789abcdef".into(),
            ..identity()
        };
        let w = write(dir.path(), &recorded_answer(), &rotated, Remote::default()).unwrap();
        assert_eq!(w.files, [dir.path().join(AUTH_FILE)]);
    }

    #[test]
    fn an_answer_without_openvpn_settings_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let doc = serde_json::json!({"services": {"ssh": {"authorized_keys": ""}}});
        let err = write(dir.path(), &doc, &identity(), Remote::default()).unwrap_err();
        assert!(err.contains("services.openvpn.config"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
