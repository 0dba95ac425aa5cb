//! `fleetd net import` — NetworkManager connections from the boot partition and config.json.
//!
//! 1. Keyfiles in `/mnt/boot/system-connections/` are checked ([`keyfile`]) and copied
//!    atomically to `/etc/NetworkManager/system-connections/` (0600), before NetworkManager is
//!    asked anything, so they are in place for its own start even when it is down now.
//! 2. NetworkManager loads new or changed files (`LoadConnections`); config.json Wi-Fi entries
//!    become profiles through `AddConnection2` / `Update2` ([`wifi`]).
//! 3. What fleetOS made is recorded ([`state`]); what disappeared from the boot partition or
//!    config.json is deleted. Nothing else is touched, and an unchanged input makes no D-Bus
//!    write at all.

pub mod keyfile;
pub mod nm;
pub mod state;
pub mod wifi;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use fleet_config::{Config, ConfigError, FAT_NEW_SUFFIX, FAT_OLD_SUFFIX, FAT_TMP_SUFFIX};
use fleet_fs::Root;
use fleet_fs::root::BOOT_CONNECTIONS;
use fleet_fs::{Change, FsError};

use keyfile::{Keyfile, MAX_KEYFILE_BYTES};
use nm::{Nm, NmError};
use state::{OwnedConnections, STATE_FILE, StateError, WifiRecord};
use wifi::WifiProfile;

/// Where NetworkManager's keyfile plugin keeps system connections.
pub const NM_CONNECTIONS: &str = "/etc/NetworkManager/system-connections";

/// Keyfiles `fleetd provision` wrote this boot (one name per line), for `fleetd net import` to
/// load: when provisioning runs while NetworkManager is already up, NetworkManager has the old
/// copy. On tmpfs: after a reboot NetworkManager reads the files itself.
pub const PENDING_LOAD: &str = "/run/fleet/net-keyfiles-pending";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import /mnt/boot/system-connections/* and fleet.network.wifi into NetworkManager.
    Import,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Nm(#[from] NmError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: cannot read", path.display())]
    ReadPending {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{}: cannot list", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// config.json is unreadable or invalid: the Wi-Fi profiles were left as they were.
    #[error("Wi-Fi from config.json not applied")]
    Config(#[source] ConfigError),
}

pub async fn run(root: &Root, cmd: Command) -> Result<(), NetError> {
    match cmd {
        Command::Import => import(root).await.map(|_| ()),
    }
}

/// What an import did; tests and the log read it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub keyfiles_written: usize,
    pub keyfiles_skipped: usize,
    pub loaded: usize,
    pub load_failures: usize,
    pub wifi_added: usize,
    pub wifi_updated: usize,
    pub deleted: usize,
}

/// The disk phase's result: what NetworkManager must be told afterwards.
pub struct InstalledKeyfiles {
    owned: OwnedConnections,
    installed: Vec<(String, Keyfile, Change)>,
    gone: BTreeMap<String, String>,
    summary: Summary,
}

/// Step 1 alone, without NetworkManager: `fleetd provision` runs it before NetworkManager
/// starts, so a keyfile new on the boot partition is there when NetworkManager first looks
/// at the devices. Imported only later, the device would already be activating
/// NetworkManager's own "Wired connection N" (DHCP) and keep it.
pub fn install_keyfiles(root: &Root) -> Result<InstalledKeyfiles, NetError> {
    let state_path = root.state_dir().join(STATE_FILE);
    let mut owned = OwnedConnections::load(&state_path)?;
    let mut summary = Summary::default();

    // Disk first: NetworkManager reads these files itself when it starts.
    let boot_dir = root.path(BOOT_CONNECTIONS);
    let nm_dir = root.path(NM_CONNECTIONS);
    let boot = read_boot_keyfiles(&boot_dir)?;
    let mut installed: Vec<(String, Keyfile, Change)> = Vec::new();
    let mut still_present = BTreeSet::new();
    for (name, parsed) in boot {
        // A file that is there but bad keeps what it imported before (last good state).
        still_present.insert(name.clone());
        let kf = match parsed {
            Ok(kf) => kf,
            Err(reason) => {
                summary.keyfiles_skipped += 1;
                log::warn!(file = name.as_str(); "{}: skipped: {reason}", boot_dir.join(&name).display());
                continue;
            }
        };
        let target = nm_dir.join(&name);
        if !owned.keyfiles.contains_key(&name)
            && std::fs::read(&target).is_ok_and(|old| old != kf.text.as_bytes())
        {
            summary.keyfiles_skipped += 1;
            log::warn!(file = name.as_str(); "{}: skipped: {} exists and was not made by fleetOS", boot_dir.join(&name).display(), target.display());
            continue;
        }
        owned.keyfiles.insert(name.clone(), kf.uuid.clone());
        // Ownership is recorded before the write, so a crash in between cannot orphan a file.
        owned.save(&state_path)?;
        let change = fleet_fs::write_if_changed(&target, kf.text.as_bytes(), 0o600)?;
        if change == Change::Written {
            summary.keyfiles_written += 1;
            log::info!(file = name.as_str(), uuid = kf.uuid.as_str(); "installed keyfile {} ({}, {})", target.display(), kf.id, kf.kind);
        }
        installed.push((name, kf, change));
    }
    let gone: BTreeMap<String, String> = owned
        .keyfiles
        .iter()
        .filter(|(name, _)| !still_present.contains(*name))
        .map(|(n, u)| (n.clone(), u.clone()))
        .collect();
    for name in gone.keys() {
        let target = nm_dir.join(name);
        if fleet_fs::remove_if_exists(&target)? == Change::Written {
            log::info!(file = name.as_str(); "removed {}: gone from the boot partition", target.display());
        }
    }
    owned.save(&state_path)?;
    Ok(InstalledKeyfiles {
        owned,
        installed,
        gone,
        summary,
    })
}

/// `fleetd provision`'s part: [`install_keyfiles`], noting what it wrote in [`PENDING_LOAD`].
pub fn install_keyfiles_before_networkmanager(root: &Root) -> Result<Summary, NetError> {
    let done = install_keyfiles(root)?;
    let written: Vec<&str> = done
        .installed
        .iter()
        .filter(|(_, _, change)| *change == Change::Written)
        .map(|(name, _, _)| name.as_str())
        .collect();
    if !written.is_empty() {
        let path = root.path(PENDING_LOAD);
        let mut pending = read_pending(&path)?;
        pending.extend(written.iter().map(|n| n.to_string()));
        let text: String = pending.iter().map(|n| format!("{n}\n")).collect();
        fleet_fs::write_if_changed(&path, text.as_bytes(), 0o600)?;
    }
    Ok(done.summary)
}

fn read_pending(path: &Path) -> Result<BTreeSet<String>, NetError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(error) => Err(NetError::ReadPending {
            path: path.into(),
            error,
        }),
    }
}

pub async fn import(root: &Root) -> Result<Summary, NetError> {
    let state_path = root.state_dir().join(STATE_FILE);
    let InstalledKeyfiles {
        mut owned,
        installed,
        gone,
        mut summary,
    } = install_keyfiles(root)?;
    let nm_dir = root.path(NM_CONNECTIONS);
    let pending_path = root.path(PENDING_LOAD);
    let pending = read_pending(&pending_path)?;

    // config.json is read before talking to NetworkManager; a bad one leaves Wi-Fi alone.
    let wifi_wanted = match Config::load(&root.config_json()) {
        Ok(cfg) => Ok(cfg
            .map(|c| {
                c.settings()
                    .fleet
                    .wifi
                    .iter()
                    .map(WifiProfile::from_config)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()),
        Err(e) => Err(e),
    };

    let nm = Nm::connect().await?;

    // Keyfiles: (re)load what changed on disk or what NetworkManager does not know yet.
    let mut to_load = Vec::new();
    for (name, kf, change) in &installed {
        let written = *change == Change::Written || pending.contains(name);
        if written {
            owned.refused.remove(name);
        } else if owned.refused.contains(name) {
            log::warn!(file = name.as_str(); "{}: NetworkManager refused this file before; not retried until it changes", nm_dir.join(name).display());
            continue;
        }
        if written || nm.find(&kf.uuid).await?.is_none() {
            to_load.push((name.as_str(), nm_dir.join(name)));
        }
    }
    if !to_load.is_empty() {
        let paths: Vec<String> = to_load
            .iter()
            .map(|(_, p)| p.to_string_lossy().into_owned())
            .collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let failures = nm.load(&refs).await?;
        for f in &failures {
            log::warn!(file = f.as_str(); "NetworkManager refused {f} (its own log has the reason)");
            if let Some((name, _)) = to_load.iter().find(|(_, p)| p.as_os_str() == f.as_str()) {
                owned.refused.insert(name.to_string());
            }
        }
        summary.load_failures = failures.len();
        summary.loaded = to_load.len() - failures.len();
        if summary.loaded > 0 {
            log::info!("NetworkManager loaded {} keyfile(s)", summary.loaded);
        }
    }
    for (name, uuid) in &gone {
        if let Some(path) = nm.find(uuid).await? {
            nm.delete(&path).await?;
            summary.deleted += 1;
            log::info!(file = name.as_str(), uuid = uuid.as_str(); "deleted connection of {name}: gone from the boot partition");
        }
        owned.keyfiles.remove(name);
        owned.refused.remove(name);
    }
    owned.save(&state_path)?;
    if !pending.is_empty() {
        fleet_fs::remove_if_exists(&pending_path)?;
    }

    // Wi-Fi from config.json.
    let wanted = match wifi_wanted {
        Ok(w) => w,
        Err(e) => {
            log::info!(
                "{} keyfile(s) written, {} skipped, {} deleted",
                summary.keyfiles_written,
                summary.keyfiles_skipped,
                summary.deleted
            );
            return Err(NetError::Config(e));
        }
    };
    let wanted_ssids: BTreeSet<&str> = wanted.iter().map(|p| p.ssid.as_str()).collect();
    for profile in &wanted {
        let fingerprint = profile.fingerprint();
        let existing = nm.find(&profile.uuid).await?;
        let recorded = owned.wifi.get(&profile.ssid);
        match existing {
            Some(_) if recorded.is_some_and(|r| r.fingerprint == fingerprint) => {}
            Some(path) => {
                nm.update(&path, &profile.settings()).await?;
                summary.wifi_updated += 1;
                log::info!(ssid = profile.ssid.as_str(), uuid = profile.uuid.as_str(); "updated Wi-Fi connection {}", profile.id);
            }
            None => {
                nm.add(&profile.settings()).await?;
                summary.wifi_added += 1;
                log::info!(ssid = profile.ssid.as_str(), uuid = profile.uuid.as_str(); "added Wi-Fi connection {}", profile.id);
            }
        }
        owned.wifi.insert(
            profile.ssid.clone(),
            WifiRecord {
                uuid: profile.uuid.clone(),
                fingerprint,
            },
        );
        owned.save(&state_path)?;
    }
    let stale: Vec<(String, String)> = owned
        .wifi
        .iter()
        .filter(|(ssid, _)| !wanted_ssids.contains(ssid.as_str()))
        .map(|(s, r)| (s.clone(), r.uuid.clone()))
        .collect();
    for (ssid, uuid) in stale {
        if let Some(path) = nm.find(&uuid).await? {
            nm.delete(&path).await?;
            summary.deleted += 1;
            log::info!(ssid = ssid.as_str(), uuid = uuid.as_str(); "deleted Wi-Fi connection for {ssid}: gone from config.json");
        }
        owned.wifi.remove(&ssid);
        owned.save(&state_path)?;
    }
    log::info!(
        "net import done: {} keyfile(s) written, {} loaded, {} skipped, {} refused by NetworkManager; Wi-Fi {} added, {} updated; {} deleted",
        summary.keyfiles_written,
        summary.loaded,
        summary.keyfiles_skipped,
        summary.load_failures,
        summary.wifi_added,
        summary.wifi_updated,
        summary.deleted
    );
    Ok(summary)
}

type BootKeyfiles = BTreeMap<String, Result<Keyfile, String>>;

/// Every candidate file on the boot partition, parsed or with the reason it was refused.
/// A missing directory means no keyfiles.
pub fn read_boot_keyfiles(dir: &Path) -> Result<BootKeyfiles, NetError> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(error) => {
            return Err(NetError::ReadDir {
                path: dir.into(),
                error,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|error| NetError::ReadDir {
            path: dir.into(),
            error,
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            log::warn!(
                "{}: skipped: file name is not UTF-8",
                entry.path().display()
            );
            continue;
        };
        if name.ends_with(FAT_TMP_SUFFIX) || name.ends_with(FAT_OLD_SUFFIX) {
            continue;
        }
        // `fleet image configure` leaves `NAME.fleet-next`, the whole new file, when a power
        // cut stops it (fleet_config::fat_current): it stands for NAME.
        let (name, replacement) = match name.strip_suffix(FAT_NEW_SUFFIX) {
            Some(base) => (base.to_string(), true),
            None => (name, false),
        };
        if !keyfile::is_candidate(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if !replacement && out.contains_key(&name) {
            continue;
        }
        let parsed = read_capped(&entry.path())
            .and_then(|bytes| keyfile::parse(&name, &bytes).map_err(|e| e.to_string()));
        out.insert(name, parsed);
    }
    Ok(out)
}

fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEYFILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_keyfiles_are_parsed_and_bad_ones_carry_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("good.nmconnection"),
            "[connection]\nid=good\ntype=ethernet\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad"), "[connection]\nid=x\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "junk").unwrap();
        let got = read_boot_keyfiles(dir.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got["good.nmconnection"].is_ok());
        assert_eq!(
            got["bad"].as_ref().unwrap_err(),
            "[connection] has no type="
        );
        // What an interrupted `fleet image configure` leaves: the replacement stands for
        // the file, whatever order the directory lists them in; the temporaries are skipped.
        std::fs::write(dir.path().join("good.nmconnection"), "[conn").unwrap();
        std::fs::write(
            dir.path().join("good.nmconnection.fleet-next"),
            "[connection]\nid=good2\ntype=ethernet\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.fleet-tmp"), "[conn").unwrap();
        std::fs::write(dir.path().join("bad.fleet-old"), "[conn").unwrap();
        let got = read_boot_keyfiles(dir.path()).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got["good.nmconnection"].as_ref().unwrap().id, "good2");
        assert!(
            read_boot_keyfiles(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }
}
