//! The few NetworkManager D-Bus calls the import needs (API: NetworkManager 1.22+).

use std::collections::HashMap;

use zbus::{Connection, OwnedObjectPath, OwnedVariant, Variant};

use super::wifi::ConnectionSettings;

pub const NM_SERVICE: &str = "org.freedesktop.NetworkManager";

/// `NM_SETTINGS_ADD_CONNECTION2_FLAG_TO_DISK` / `NM_SETTINGS_UPDATE2_FLAG_TO_DISK`: persist the
/// profile as a keyfile, so it survives a reboot.
pub const FLAG_TO_DISK: u32 = 0x1;

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Settings",
    default_service = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager/Settings"
)]
pub trait Settings {
    fn load_connections(&self, filenames: &[&str]) -> zbus::Result<(bool, Vec<String>)>;

    fn get_connection_by_uuid(&self, uuid: &str) -> zbus::Result<OwnedObjectPath>;

    fn add_connection2(
        &self,
        settings: &ConnectionSettings<'_>,
        flags: u32,
        args: &HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<(OwnedObjectPath, HashMap<String, OwnedVariant>)>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Settings.Connection",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait SettingsConnection {
    fn update2(
        &self,
        settings: &ConnectionSettings<'_>,
        flags: u32,
        args: &HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<HashMap<String, OwnedVariant>>;

    fn delete(&self) -> zbus::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum NmError {
    #[error("cannot reach the system D-Bus")]
    Bus(#[source] zbus::Error),
    #[error("NetworkManager is not running ({NM_SERVICE} has no owner on the system bus)")]
    NotRunning,
    #[error("NetworkManager {call}")]
    Call {
        call: &'static str,
        #[source]
        error: zbus::Error,
    },
}

fn call(name: &'static str) -> impl FnOnce(zbus::Error) -> NmError {
    move |error| NmError::Call { call: name, error }
}

/// The reply of a service that owns its name but has not exported the object yet. zbus
/// reports the standard D-Bus error names as `Error::FDO`, never as `MethodError`.
fn not_exported_yet(error: &zbus::Error) -> bool {
    use zbus::fdo::Error as Fdo;
    match error {
        zbus::Error::FDO(e) => matches!(**e, Fdo::UnknownMethod(_) | Fdo::UnknownObject(_)),
        zbus::Error::MethodError(name, _, _) => matches!(
            name.as_str(),
            "org.freedesktop.DBus.Error.UnknownMethod" | "org.freedesktop.DBus.Error.UnknownObject"
        ),
        _ => false,
    }
}

/// A connection to NetworkManager's settings service on the system bus
/// (`DBUS_SYSTEM_BUS_ADDRESS` when set).
pub struct Nm {
    bus: Connection,
    settings: SettingsProxy<'static>,
}

impl Nm {
    pub async fn connect() -> Result<Self, NmError> {
        let bus = Connection::system().await.map_err(NmError::Bus)?;
        let dbus = zbus::fdo::DBusProxy::new(&bus)
            .await
            .map_err(NmError::Bus)?;
        let name = zbus::names::BusName::try_from(NM_SERVICE).map_err(NmError::Bus)?;
        if !dbus
            .name_has_owner(name)
            .await
            .map_err(|e| NmError::Bus(e.into()))?
        {
            return Err(NmError::NotRunning);
        }
        let settings = SettingsProxy::new(&bus).await.map_err(call("Settings"))?;
        let nm = Nm { bus, settings };
        nm.wait_for_settings().await?;
        Ok(nm)
    }

    /// NetworkManager takes its bus name before it exports the Settings object (seen on a
    /// TCG boot: 4 s apart); calls in between fail with UnknownMethod. Waits up to 30 s.
    async fn wait_for_settings(&self) -> Result<(), NmError> {
        const NO_SUCH_UUID: &str = "00000000-0000-0000-0000-000000000000";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match self.settings.get_connection_by_uuid(NO_SUCH_UUID).await {
                Ok(_) => return Ok(()),
                Err(zbus::Error::MethodError(name, _, _))
                    if name.as_str().ends_with(".Settings.InvalidConnection") =>
                {
                    return Ok(());
                }
                Err(e) if not_exported_yet(&e) && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(call("GetConnectionByUuid")(e)),
            }
        }
    }

    /// The object path of the connection with `uuid`, `None` when NetworkManager has none.
    pub async fn find(&self, uuid: &str) -> Result<Option<OwnedObjectPath>, NmError> {
        match self.settings.get_connection_by_uuid(uuid).await {
            Ok(path) => Ok(Some(path)),
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str().ends_with(".Settings.InvalidConnection") =>
            {
                Ok(None)
            }
            Err(e) => Err(call("GetConnectionByUuid")(e)),
        }
    }

    /// Loads or reloads keyfiles; returns the files NetworkManager refused.
    pub async fn load(&self, files: &[&str]) -> Result<Vec<String>, NmError> {
        let (_, failures) = self
            .settings
            .load_connections(files)
            .await
            .map_err(call("LoadConnections"))?;
        Ok(failures)
    }

    pub async fn add(&self, settings: &ConnectionSettings<'_>) -> Result<(), NmError> {
        self.settings
            .add_connection2(settings, FLAG_TO_DISK, &HashMap::new())
            .await
            .map_err(call("AddConnection2"))?;
        Ok(())
    }

    pub async fn update(
        &self,
        path: &OwnedObjectPath,
        settings: &ConnectionSettings<'_>,
    ) -> Result<(), NmError> {
        self.connection(path)
            .await?
            .update2(settings, FLAG_TO_DISK, &HashMap::new())
            .await
            .map_err(call("Update2"))?;
        Ok(())
    }

    pub async fn delete(&self, path: &OwnedObjectPath) -> Result<(), NmError> {
        self.connection(path)
            .await?
            .delete()
            .await
            .map_err(call("Delete"))
    }

    async fn connection(
        &self,
        path: &OwnedObjectPath,
    ) -> Result<SettingsConnectionProxy<'static>, NmError> {
        SettingsConnectionProxy::builder(&self.bus)
            .path(path.clone())
            .build()
            .await
            .map_err(call("Settings.Connection"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_exported_yet_matches_how_zbus_reports_it() {
        let unknown_method = zbus::fdo::Error::UnknownMethod(
            "Object does not exist at path \"/org/freedesktop/NetworkManager/Settings\"".into(),
        );
        assert!(not_exported_yet(&zbus::Error::FDO(Box::new(
            unknown_method
        ))));
        let unknown_object = zbus::fdo::Error::UnknownObject("no".into());
        assert!(not_exported_yet(&zbus::Error::FDO(Box::new(
            unknown_object
        ))));
        let denied = zbus::fdo::Error::AccessDenied("no".into());
        assert!(!not_exported_yet(&zbus::Error::FDO(Box::new(denied))));
        assert!(!not_exported_yet(&zbus::Error::InvalidReply));
    }
}
