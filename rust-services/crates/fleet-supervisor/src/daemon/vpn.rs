//! The VPN as balena's supervisor sees it, on fleetOS's `fleet-vpn.service` (balenaOS's
//! `openvpn.service`): `GET /v2/device/vpn`, and `SUPERVISOR_VPN_CONTROL` starting or
//! stopping the unit over the host's D-Bus.

use std::path::Path;
use std::time::{Duration, Instant};

use fleet_log::error::one_line;
use serde_json::json;

use super::device_api::config_var;
use super::host_units::{self, Job, VPN_UNIT};
use super::message::Response;
use super::state::Shared;

const NET_CLASS: &str = "/sys/class/net";
/// balena switches the VPN at most once an hour (systemd does not wait for the unit, so a
/// tighter loop would pile up jobs).
const SWITCH_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// balena's "VPN enabled": the unit is up or coming up (its `ActiveState` is neither
/// `inactive` nor `deactivating`); no such unit is `false`.
fn enabled(state: Option<&str>) -> bool {
    state.is_some_and(|s| !matches!(s, "inactive" | "deactivating"))
}

/// `GET /v2/device/vpn`: `{status, vpn: {enabled, connected}}`; `connected` is the unit
/// `active` with its tunnel up (a tun device exists: balenaOS's OpenVPN `up` script marks the
/// same moment). `503` with the reason when systemd cannot be asked, as balena's error
/// handler answers.
pub async fn v2_device_vpn() -> Response {
    let state = match host_units::active_state(VPN_UNIT).await {
        Ok(state) => state,
        Err(e) => {
            return Response::json(503, &json!({ "status": "failed", "message": one_line(&e) }));
        }
    };
    let connected = state.as_deref() == Some("active") && tun_device_exists(Path::new(NET_CLASS));
    let vpn = json!({ "enabled": enabled(state.as_deref()), "connected": connected });
    Response::json(200, &json!({ "status": "success", "vpn": vpn }))
}

/// A tun/tap interface is there (the kernel gives only those a `tun_flags` attribute).
fn tun_device_exists(net_class: &Path) -> bool {
    std::fs::read_dir(net_class).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().join("tun_flags").exists())
    })
}

/// `SUPERVISOR_VPN_CONTROL` applied as balena applies it: with a server (not in local mode),
/// when the target names it and it differs from the unit's state, the unit is started or
/// stopped, at most once an hour. On fleetOS the unit also needs config.json's
/// `fleet.vpn.enabled` (its start condition): a start without it leaves the unit inactive.
#[derive(Debug, Default)]
pub struct Control {
    last_switch: Option<Instant>,
}

impl Control {
    pub async fn apply<R>(&mut self, shared: &Shared<R>) {
        if !shared.settings.remote() {
            return;
        }
        let Some(wanted) = config_var(shared, "SUPERVISOR_VPN_CONTROL").filter(|v| !v.is_empty())
        else {
            return;
        };
        let wanted = ["1", "true", "on"].contains(&wanted.to_ascii_lowercase().as_str());
        if self
            .last_switch
            .is_some_and(|t| t.elapsed() < SWITCH_INTERVAL)
        {
            return;
        }
        let current = match host_units::active_state(VPN_UNIT).await {
            Ok(state) => enabled(state.as_deref()),
            Err(e) => {
                log::warn!("SUPERVISOR_VPN_CONTROL: {}", one_line(&e));
                return;
            }
        };
        if current == wanted {
            return;
        }
        self.last_switch = Some(Instant::now());
        let job = if wanted { Job::Start } else { Job::Stop };
        match host_units::run(job, VPN_UNIT).await {
            Ok(()) => log::info!("SUPERVISOR_VPN_CONTROL={wanted}: {job:?} {VPN_UNIT} queued"),
            Err(e) => log::warn!("SUPERVISOR_VPN_CONTROL={wanted}: {}", one_line(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_as_balena_reads_the_active_state() {
        for (state, on) in [
            (Some("active"), true),
            (Some("activating"), true),
            (Some("reloading"), true),
            (Some("failed"), true),
            (Some("inactive"), false),
            (Some("deactivating"), false),
            (None, false),
        ] {
            assert_eq!(enabled(state), on, "{state:?}");
        }
    }

    #[test]
    fn only_tun_devices_count() {
        let net = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(net.path().join("eth0")).unwrap();
        assert!(!tun_device_exists(net.path()));
        assert!(!tun_device_exists(&net.path().join("missing")));
        std::fs::create_dir_all(net.path().join("tun0")).unwrap();
        std::fs::write(net.path().join("tun0/tun_flags"), "0x1001\n").unwrap();
        assert!(tun_device_exists(net.path()));
    }
}
