//! `developmentMode` → the development-mode units, enabled for this boot only (under
//! `/run/systemd/system`, regenerated every boot): the engine API on TCP 2375 and 2377
//! (`fleet-devmode-engine.socket`), root SSH without a key (sshd options through a runtime
//! drop-in), and a login on the serial console.

use std::fs;
use std::path::PathBuf;

use fleet_config::Settings;
use fleet_fs::Root;
use fleet_fs::{Change, write_if_changed};

use crate::apply::effects::Effects;
use crate::apply::error::ItemError;
use crate::apply::files::{GENERATED, remove_if_exists, symlink_if_changed, vendor_unit};

pub const RUNTIME_UNITS: &str = "/run/systemd/system";
pub const ENGINE_SOCKET: &str = "fleet-devmode-engine.socket";
pub const ENGINE_SERVICE: &str = "fleet-devmode-engine.service";
/// sshd units across builds: Yocto's per-connection `sshd@.service` (socket activated) and
/// `sshd.service`, Debian's `ssh.service`. All read `$SSHD_OPTS`.
pub const SSHD_UNITS: &[&str] = &["sshd@.service", "sshd.service", "ssh.service"];
pub const SSHD_ENV: &str = "/run/fleet/devmode-sshd.env";
const SSHD_DROPIN: &str = "50-fleet-devmode.conf";
const DEFAULT_SERIAL: &str = "ttyS0";

/// The serial console: the last serial device the kernel console is on, else ttyS0.
pub fn serial_tty(root: &Root) -> String {
    fs::read_to_string(root.path("/sys/class/tty/console/active"))
        .ok()
        .and_then(|active| {
            active
                .split_whitespace()
                .rfind(|t| {
                    ["ttyS", "ttyAMA", "ttyUSB", "hvc"]
                        .iter()
                        .any(|p| t.starts_with(p))
                })
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_SERIAL.to_string())
}

fn sshd_dropins(root: &Root) -> Vec<PathBuf> {
    SSHD_UNITS
        .iter()
        .map(|u| {
            root.path(RUNTIME_UNITS)
                .join(format!("{u}.d"))
                .join(SSHD_DROPIN)
        })
        .collect()
}

fn engine_link(root: &Root) -> PathBuf {
    root.path(RUNTIME_UNITS)
        .join("sockets.target.wants")
        .join(ENGINE_SOCKET)
}

fn getty_wants(root: &Root) -> PathBuf {
    root.path(RUNTIME_UNITS).join("getty.target.wants")
}

/// Runtime `serial-getty@*.service` links (only provisioning creates them under /run).
fn serial_getty_links(root: &Root) -> Vec<PathBuf> {
    let mut links: Vec<PathBuf> = fs::read_dir(getty_wants(root))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("serial-getty@"))
                })
                .collect()
        })
        .unwrap_or_default();
    links.sort();
    links
}

pub fn sshd_env_text() -> String {
    format!(
        "{GENERATED}\nSSHD_OPTS=\"-o PermitRootLogin=yes -o PermitEmptyPasswords=yes -o PasswordAuthentication=yes\"\n"
    )
}

pub fn sshd_dropin_text() -> String {
    // Listed after the unit's own EnvironmentFile (/etc/default/ssh), so it wins.
    format!("{GENERATED}\n[Service]\nEnvironmentFile=-{SSHD_ENV}\n")
}

fn any(changes: impl IntoIterator<Item = Change>) -> bool {
    changes
        .into_iter()
        .fold(false, |acc, c| acc | (c == Change::Written))
}

pub fn apply(root: &Root, effects: Effects, settings: &Settings) -> Result<(), ItemError> {
    const KEY: &str = "developmentMode";
    let getty = format!("serial-getty@{}.service", serial_tty(root));
    let mut changes = Vec::new();
    if settings.development_mode {
        changes.push(symlink_if_changed(
            &engine_link(root),
            &vendor_unit(ENGINE_SOCKET),
        )?);
        let wanted_getty = getty_wants(root).join(&getty);
        for stale in serial_getty_links(root)
            .into_iter()
            .filter(|l| *l != wanted_getty)
        {
            changes.push(remove_if_exists(&stale)?);
        }
        changes.push(symlink_if_changed(
            &wanted_getty,
            &vendor_unit("serial-getty@.service"),
        )?);
        changes.push(write_if_changed(
            &root.path(SSHD_ENV),
            sshd_env_text().as_bytes(),
            0o644,
        )?);
        for dropin in sshd_dropins(root) {
            changes.push(write_if_changed(
                &dropin,
                sshd_dropin_text().as_bytes(),
                0o644,
            )?);
        }
    } else {
        changes.push(remove_if_exists(&engine_link(root))?);
        for link in serial_getty_links(root) {
            changes.push(remove_if_exists(&link)?);
        }
        changes.push(remove_if_exists(&root.path(SSHD_ENV))?);
        for dropin in sshd_dropins(root) {
            changes.push(remove_if_exists(&dropin)?);
        }
    }
    if !any(changes) {
        return Ok(());
    }
    if settings.development_mode {
        log::warn!(FLEET_KEY = KEY; "development mode on: engine API on TCP 2375 and 2377, root SSH without a key, login on {getty}");
        effects.systemctl(KEY, &["daemon-reload"])?;
        // --no-block: a getty is ordered after network.target, which waits for provisioning.
        effects.systemctl(KEY, &["--no-block", "start", ENGINE_SOCKET, &getty])?;
    } else {
        log::info!(FLEET_KEY = KEY; "development mode off");
        effects.systemctl(KEY, &["stop", ENGINE_SOCKET, ENGINE_SERVICE, &getty])?;
        effects.systemctl(KEY, &["daemon-reload"])?;
    }
    effects.systemctl(
        KEY,
        &["--no-block", "try-restart", "sshd.service", "ssh.service"],
    )?;
    Ok(())
}
