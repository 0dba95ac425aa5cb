//! Which NetworkManager connections fleetOS made, so it removes only those
//! (`/var/lib/fleet/net-import.json`). A connection not listed here is the user's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name below the fleet state directory.
pub const STATE_FILE: &str = "net-import.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not a net import state file: {error}", path.display())]
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] fleet_fs::FsError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedConnections {
    /// Boot-partition keyfile name → UUID of the connection it became.
    #[serde(default)]
    pub keyfiles: BTreeMap<String, String>,
    /// Keyfiles whose current copy NetworkManager refused to load: not retried until the file
    /// changes, so a rerun stays free of D-Bus writes.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub refused: BTreeSet<String>,
    /// config.json Wi-Fi SSID → what was applied.
    #[serde(default)]
    pub wifi: BTreeMap<String, WifiRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WifiRecord {
    pub uuid: String,
    /// SHA-256 of the settings sent (a fingerprint: the PSK itself is never stored here).
    pub fingerprint: String,
}

impl OwnedConnections {
    /// Reads the state; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| StateError::Parse {
                path: path.into(),
                error,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(StateError::Read {
                path: path.into(),
                error,
            }),
        }
    }

    /// Writes the state atomically, only when it changed.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        // Nothing owned and no file yet: a device without imports keeps no state file.
        if *self == Self::default() && !path.exists() {
            return Ok(());
        }
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|error| StateError::Parse {
            path: path.into(),
            error,
        })?;
        bytes.push(b'\n');
        fleet_fs::write_if_changed(path, &bytes, 0o600)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join(STATE_FILE);
        assert_eq!(
            OwnedConnections::load(&p).unwrap(),
            OwnedConnections::default()
        );
        let mut s = OwnedConnections::default();
        s.keyfiles.insert("a".into(), "u1".into());
        s.wifi.insert(
            "net".into(),
            WifiRecord {
                uuid: "u2".into(),
                fingerprint: "f".into(),
            },
        );
        s.save(&p).unwrap();
        assert_eq!(OwnedConnections::load(&p).unwrap(), s);
        std::fs::write(&p, b"{").unwrap();
        assert!(OwnedConnections::load(&p).is_err());
    }
}
