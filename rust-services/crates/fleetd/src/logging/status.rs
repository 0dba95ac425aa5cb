//! `fleetd logging status`: the mode in force, where the journal lives, its size.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use fleet_config::Config;
use fleet_fs::Root;

use super::apply::{
    JOURNALD_DROPIN, PERSISTENT_JOURNAL, STATE_JOURNAL, VOLATILE_JOURNAL, VOLATILE_MAX_USE,
    is_persistent,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub persistent: bool,
    /// `persistentLogging` in config.json; `None` when it cannot be read or is refused.
    pub configured: Option<bool>,
    pub location: &'static str,
    /// Where the bytes are: the state partition for a persistent journal.
    pub backing: &'static str,
    pub bytes: u64,
    pub max_use: String,
}

/// Disk usage of a directory tree (allocated blocks, as `du` and `journalctl --disk-usage`).
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn setting(root: &Root, name: &str) -> Option<String> {
    let text = fs::read_to_string(root.path(JOURNALD_DROPIN)).ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string)
        .next_back()
}

impl Status {
    pub fn read(root: &Root) -> Status {
        let persistent = is_persistent(root);
        let configured = Config::load(&root.config_json())
            .ok()
            .map(|c| c.is_some_and(|c| c.settings().persistent_logging));
        let (location, backing, max_key) = if persistent {
            (PERSISTENT_JOURNAL, STATE_JOURNAL, "SystemMaxUse")
        } else {
            (VOLATILE_JOURNAL, VOLATILE_JOURNAL, "RuntimeMaxUse")
        };
        Status {
            persistent,
            configured,
            location,
            backing,
            bytes: disk_usage(&root.path(backing)),
            max_use: setting(root, max_key).unwrap_or_else(|| VOLATILE_MAX_USE.to_string()),
        }
    }

    pub fn mode(&self) -> &'static str {
        if self.persistent {
            "persistent"
        } else {
            "volatile"
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode(),
            "configured": self.configured.map(|p| if p { "persistent" } else { "volatile" }),
            "location": self.location,
            "backing": self.backing,
            "bytes": self.bytes,
            "maxUse": self.max_use,
        })
    }

    pub fn to_text(&self) -> String {
        let place = if self.persistent {
            format!("{} (state partition, {})", self.location, self.backing)
        } else {
            format!("{} (RAM)", self.location)
        };
        let configured = match self.configured {
            Some(true) => "persistent",
            Some(false) => "volatile",
            None => "unknown (config.json unreadable or refused)",
        };
        format!(
            "mode:       {}\nconfigured: {configured}\nlocation:   {place}\nsize:       {:.1} MiB ({} bytes) of {} max\n",
            self.mode(),
            self.bytes as f64 / (1024.0 * 1024.0),
            self.bytes,
            self.max_use
        )
    }
}
