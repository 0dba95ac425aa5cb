//! Switching the journal between RAM and the state partition, without a reboot.
//!
//! On: `/mnt/state/journal` is bound onto `/var/log/journal` by a runtime mount unit (PID 1
//! mounts it, so the bind is visible system-wide even from a sandboxed service), a journald
//! drop-in sets `Storage=persistent` and `SystemMaxUse`, journald restarts and flushes.
//! Off: journald lets go of `/var` (`--relinquish-var`), the drop-in says volatile with
//! `RuntimeMaxUse=8M`, the bind goes. The journal files on the state partition stay.

use std::fs;

use fleet_config::Settings;
use fleet_fs::Root;
use fleet_fs::{Change, ensure_dir, write_if_changed};

use super::mountpoint::{canonical_in_root, unit_name};
use crate::apply::files::{GENERATED, remove_if_exists};
use crate::apply::{Effects, ItemError};

pub const JOURNALD_DROPIN: &str = "/run/systemd/journald.conf.d/50-fleet-logging.conf";
pub const RUNTIME_UNITS: &str = "/run/systemd/system";
pub const STATE_JOURNAL: &str = "/mnt/state/journal";
pub const PERSISTENT_JOURNAL: &str = "/var/log/journal";
pub const VOLATILE_JOURNAL: &str = "/run/log/journal";
pub const VOLATILE_MAX_USE: &str = "8M";
const KEY: &str = "persistentLogging";

pub fn dropin_text(settings: &Settings) -> String {
    if settings.persistent_logging {
        format!(
            "{GENERATED}\n[Journal]\nStorage=persistent\nSystemMaxUse={}\n",
            settings.logging_max_use()
        )
    } else {
        format!("{GENERATED}\n[Journal]\nStorage=volatile\nRuntimeMaxUse={VOLATILE_MAX_USE}\n")
    }
}

/// The bind's mount unit: its name and the path of its file (both device paths).
pub struct MountUnit {
    pub name: String,
    pub file: String,
    pub mount_point: String,
}

impl MountUnit {
    pub fn for_root(root: &Root) -> MountUnit {
        let mount_point = canonical_in_root(root, PERSISTENT_JOURNAL);
        let name = unit_name(&mount_point, "mount");
        MountUnit {
            file: format!("{RUNTIME_UNITS}/{name}"),
            name,
            mount_point,
        }
    }

    pub fn text(&self) -> String {
        format!(
            "{GENERATED}\n[Unit]\nDescription=Persistent journal on the state partition\n\
             RequiresMountsFor={}\n\n[Mount]\nWhat={STATE_JOURNAL}\nWhere={}\n\
             Type=none\nOptions=bind\n",
            fleet_fs::root::STATE_MOUNT,
            self.mount_point
        )
    }
}

/// True when the runtime drop-in currently asks for a persistent journal.
pub fn is_persistent(root: &Root) -> bool {
    fs::read_to_string(root.path(JOURNALD_DROPIN))
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "Storage=persistent"))
}

/// How the switch to the persistent journal happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Before returning (`fleetd logging apply`: what the caller logs next must persist).
    Now,
    /// In a transient unit queued with `systemd-run --no-block` (boot: provisioning runs
    /// before the network, and a daemon-reload, a journald restart and a flush there would
    /// hold up everything after it; the boot still waits for the queued unit).
    Queued,
}

/// The transient unit that switches the journal at boot.
pub const SWITCH_UNIT: &str = "fleet-journal-persist";

pub fn apply(
    root: &Root,
    effects: Effects,
    settings: &Settings,
    switch: Switch,
) -> Result<(), ItemError> {
    if settings.persistent_logging {
        enable(root, effects, settings, switch)
    } else {
        disable(root, effects, settings)
    }
}

fn enable(
    root: &Root,
    effects: Effects,
    settings: &Settings,
    switch: Switch,
) -> Result<(), ItemError> {
    let state_dir = root.path(STATE_JOURNAL);
    let created = !state_dir.is_dir();
    ensure_dir(&state_dir)?;
    let mount = MountUnit::for_root(root);
    let unit = write_if_changed(&root.path(&mount.file), mount.text().as_bytes(), 0o644)?;
    let dropin = write_if_changed(
        &root.path(JOURNALD_DROPIN),
        dropin_text(settings).as_bytes(),
        0o644,
    )?;
    if !created && unit == Change::Unchanged && dropin == Change::Unchanged {
        return Ok(());
    }
    log::info!(FLEET_KEY = KEY, FLEET_PATH = PERSISTENT_JOURNAL;
        "persistent journal on the state partition ({STATE_JOURNAL}), capped at {}", settings.logging_max_use());
    // The switch, in order: run here (Now) or as one shell line in a transient unit (Queued).
    let mut steps: Vec<Vec<&str>> = Vec::with_capacity(4);
    if unit == Change::Written {
        steps.push(vec!["systemctl", "daemon-reload"]);
    }
    steps.push(vec!["systemctl", "start", &mount.name]);
    steps.push(vec!["systemctl", "restart", "systemd-journald.service"]);
    steps.push(vec!["journalctl", "--flush"]);
    match switch {
        Switch::Now => {
            for step in &steps {
                effects.run(KEY, step[0], &step[1..])?;
            }
        }
        Switch::Queued => {
            let script = steps
                .iter()
                .map(|step| step.join(" "))
                .collect::<Vec<_>>()
                .join(" && ");
            let unit_arg = format!("--unit={SWITCH_UNIT}");
            effects.run(
                KEY,
                "systemd-run",
                &[
                    "--no-block",
                    "--collect",
                    &unit_arg,
                    "--description=fleetOS: persistent journal on the state partition",
                    "/bin/sh",
                    "-c",
                    &script,
                ],
            )?;
        }
    }
    Ok(())
}

fn disable(root: &Root, effects: Effects, settings: &Settings) -> Result<(), ItemError> {
    let mount = MountUnit::for_root(root);
    let was_persistent = is_persistent(root) || root.path(&mount.file).exists();
    if was_persistent {
        effects.run(KEY, "journalctl", &["--relinquish-var"])?;
    }
    let dropin = write_if_changed(
        &root.path(JOURNALD_DROPIN),
        dropin_text(settings).as_bytes(),
        0o644,
    )?;
    if dropin == Change::Written {
        log::info!(FLEET_KEY = KEY, FLEET_PATH = VOLATILE_JOURNAL;
            "volatile journal in RAM, capped at {VOLATILE_MAX_USE}");
    }
    // At boot journald already runs volatile (the image's default): restart only to switch.
    if was_persistent {
        effects.systemctl(KEY, &["restart", "systemd-journald.service"])?;
        effects.systemctl(KEY, &["stop", &mount.name])?;
    }
    if remove_if_exists(&root.path(&mount.file))? == Change::Written {
        effects.systemctl(KEY, &["daemon-reload"])?;
    }
    Ok(())
}
