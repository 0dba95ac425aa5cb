//! `ntpServers` → a runtime drop-in for systemd-timesyncd.

use fleet_config::Settings;
use fleet_fs::Root;
use fleet_fs::{Change, write_if_changed};

use crate::apply::effects::Effects;
use crate::apply::error::ItemError;
use crate::apply::files::{GENERATED, remove_if_exists};

pub const TIMESYNCD_DROPIN: &str = "/run/systemd/timesyncd.conf.d/50-fleet-ntp.conf";

pub fn render(servers: &[String]) -> Option<String> {
    (!servers.is_empty()).then(|| format!("{GENERATED}\n[Time]\nNTP={}\n", servers.join(" ")))
}

pub fn apply(root: &Root, effects: Effects, settings: &Settings) -> Result<(), ItemError> {
    let path = root.path(TIMESYNCD_DROPIN);
    let change = match render(&settings.ntp_servers) {
        Some(text) => write_if_changed(&path, text.as_bytes(), 0o644)?,
        None => remove_if_exists(&path)?,
    };
    if change == Change::Written {
        log::info!(FLEET_KEY = "ntpServers", FLEET_PATH = TIMESYNCD_DROPIN;
            "NTP servers: {}", if settings.ntp_servers.is_empty() { "system default".to_string() } else { settings.ntp_servers.join(" ") });
        effects.systemctl(
            "ntpServers",
            &["--no-block", "try-restart", "systemd-timesyncd.service"],
        )?;
    }
    Ok(())
}
