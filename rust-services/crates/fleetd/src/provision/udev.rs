//! `os.udevRules` → `/run/udev/rules.d/<name>.rules` (udev reads it besides `/etc` and
//! `/usr/lib`), then `udevadm control --reload` and a change event so devices already present
//! get the rules. Files keep the balenaOS name (`<name>.rules`) so rule order is the user's;
//! a marker first line tells ours apart, and rules removed from config.json disappear.

use std::fs;
use std::path::PathBuf;

use fleet_config::Settings;
use fleet_fs::Root;
use fleet_fs::{Change, FsError, IoContext, write_if_changed};

use crate::apply::effects::Effects;
use crate::apply::error::ItemError;
use crate::apply::files::remove_if_exists;

pub const RULES_DIR: &str = "/run/udev/rules.d";
const MARKER: &str = "# fleetOS os.udevRules.";

pub fn render(name: &str, rule: &str) -> String {
    let mut text = format!("{MARKER}{name} (generated from config.json)\n{rule}");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Files in the rules directory that fleetOS wrote.
fn ours(dir: &std::path::Path) -> Result<Vec<PathBuf>, FsError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::new(dir, "list", e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.at(dir, "list")?.path();
        if path.extension().is_some_and(|e| e == "rules")
            && fs::read_to_string(&path).is_ok_and(|t| t.starts_with(MARKER))
        {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

pub fn apply(root: &Root, effects: Effects, settings: &Settings) -> Result<(), ItemError> {
    let dir = root.path(RULES_DIR);
    let mut changed: Vec<String> = Vec::new();
    for (name, rule) in &settings.udev_rules {
        let path = dir.join(format!("{name}.rules"));
        if write_if_changed(&path, render(name, rule).as_bytes(), 0o644)? == Change::Written {
            log::info!(FLEET_KEY = "os.udevRules", FLEET_PATH = format!("{RULES_DIR}/{name}.rules"); "udev rule {name} written");
            changed.push(name.to_string());
        }
    }
    for path in ours(&dir)? {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !settings.udev_rules.contains_key(&stem) && remove_if_exists(&path)? == Change::Written {
            log::info!(FLEET_KEY = "os.udevRules", FLEET_PATH = format!("{RULES_DIR}/{stem}.rules"); "udev rule {stem} removed");
            changed.push(stem);
        }
    }
    if !changed.is_empty() {
        effects.run("os.udevRules", "udevadm", &["control", "--reload"])?;
        effects.run("os.udevRules", "udevadm", &["trigger", "--action=change"])?;
    }
    Ok(())
}
