//! The host's systemd over the system D-Bus (`org.freedesktop.systemd1`), as balena's
//! supervisor drives balenaOS's units: the container has the host's `/run/dbus` bound, or
//! `DBUS_SYSTEM_BUS_ADDRESS` names the bus.

use zbus::OwnedObjectPath;

/// The unit that applies config.json (hostname included) on fleetOS: restarting it applies
/// a new hostname at once, as balenaOS's config.json watcher restarts its hostname service.
pub const PROVISION_UNIT: &str = "fleet-provision.service";
/// The image's system proxy: redsocks on the boot partition's `system-proxy/redsocks.conf`
/// and its iptables redirect (balenaOS's `redsocks.service` and `balena-proxy-config.service`).
pub const PROXY_UNIT: &str = "fleet-proxy.service";
/// The image's VPN client (balenaOS's `openvpn.service`).
pub const VPN_UNIT: &str = "fleet-vpn.service";

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
}

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("cannot reach systemd on the system D-Bus")]
    Bus(#[source] zbus::Error),
    #[error("systemd {call} {unit}")]
    Call {
        call: &'static str,
        unit: String,
        #[source]
        error: zbus::Error,
    },
}

async fn manager() -> Result<ManagerProxy<'static>, UnitError> {
    let bus = zbus::Connection::system().await.map_err(UnitError::Bus)?;
    ManagerProxy::new(&bus).await.map_err(UnitError::Bus)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Start,
    Stop,
    Restart,
}

impl Job {
    fn call(self) -> &'static str {
        match self {
            Job::Start => "StartUnit",
            Job::Stop => "StopUnit",
            Job::Restart => "RestartUnit",
        }
    }
}

/// Queues `job` for `unit` (mode `replace`); returns once systemd queued it.
pub async fn run(job: Job, unit: &str) -> Result<(), UnitError> {
    let manager = manager().await?;
    let queued = match job {
        Job::Start => manager.start_unit(unit, "replace").await,
        Job::Stop => manager.stop_unit(unit, "replace").await,
        Job::Restart => manager.restart_unit(unit, "replace").await,
    };
    queued.map(drop).map_err(|error| UnitError::Call {
        call: job.call(),
        unit: unit.to_string(),
        error,
    })
}

/// The unit's `ActiveState` (`active`, `inactive`, `activating`, …); `None` when systemd
/// has no such unit (balena's "unit not loaded").
pub async fn active_state(unit: &str) -> Result<Option<String>, UnitError> {
    let manager = manager().await?;
    let call = |call, error| UnitError::Call {
        call,
        unit: unit.to_string(),
        error,
    };
    let path = manager
        .load_unit(unit)
        .await
        .map_err(|e| call("LoadUnit", e))?;
    let proxy = UnitProxy::builder(manager.inner().connection())
        .path(path)
        .build()
        .await
        .map_err(|e| call("LoadUnit", e))?;
    let load = proxy.load_state().await.map_err(|e| call("LoadState", e))?;
    if load == "not-found" {
        return Ok(None);
    }
    proxy
        .active_state()
        .await
        .map(Some)
        .map_err(|e| call("ActiveState", e))
}
