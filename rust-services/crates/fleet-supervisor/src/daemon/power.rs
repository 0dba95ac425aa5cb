//! Reboot and power-off through systemd-logind on the host's system bus
//! (`org.freedesktop.login1.Manager`). The supervisor container needs the host's
//! `/run/dbus/system_bus_socket` bound at the same path (fleetd's container spec does that)
//! or `DBUS_SYSTEM_BUS_ADDRESS` naming where it is.

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
trait Manager {
    fn reboot(&self, interactive: bool) -> zbus::Result<()>;
    fn power_off(&self, interactive: bool) -> zbus::Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Reboot,
    PowerOff,
}

impl PowerAction {
    pub fn verb(self) -> &'static str {
        match self {
            PowerAction::Reboot => "reboot",
            PowerAction::PowerOff => "shutdown",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("cannot reach the system D-Bus for logind")]
    Bus(#[source] zbus::Error),
    #[error("logind {call}")]
    Call {
        call: &'static str,
        #[source]
        error: zbus::Error,
    },
}

/// Asks logind to reboot or power off; returns once logind accepted the job.
pub async fn request(action: PowerAction) -> Result<(), PowerError> {
    let bus = zbus::Connection::system().await.map_err(PowerError::Bus)?;
    let manager = ManagerProxy::new(&bus).await.map_err(PowerError::Bus)?;
    // `interactive = false`: no polkit prompt; the supervisor runs as root.
    let (call, result) = match action {
        PowerAction::Reboot => ("Reboot", manager.reboot(false).await),
        PowerAction::PowerOff => ("PowerOff", manager.power_off(false).await),
    };
    result.map_err(|error| PowerError::Call { call, error })
}
