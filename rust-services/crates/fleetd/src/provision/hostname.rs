//! `hostname` → `/etc/hostname` (a bind from the state partition) and the running hostname.
//!
//! Unset, the hostname is `fleet-` and the first 7 hex digits of the `uuid` key (the balena
//! device UUID, as balenaOS names devices) or, without one, of the machine-id.

use fleet_config::Settings;
use fleet_fs::Change;
use fleet_fs::Root;

use crate::apply::effects::Effects;
use crate::apply::error::ItemError;
use crate::apply::files::write_file_maybe_bound;

pub const HOSTNAME: &str = "/etc/hostname";

/// The hostname to use: the configured one, else derived from uuid or machine-id.
pub fn wanted(settings: &Settings, machine_id: Option<&str>) -> String {
    if let Some(h) = &settings.hostname {
        return h.clone();
    }
    let source = settings
        .supervisor
        .uuid
        .as_deref()
        .filter(|u| u.len() >= 7)
        .or(machine_id)
        .unwrap_or("0000000");
    let short: String = source.chars().take(7).collect();
    format!("fleet-{}", short.to_ascii_lowercase())
}

pub fn apply(
    root: &Root,
    effects: Effects,
    settings: &Settings,
    machine_id: Option<&str>,
) -> Result<(), ItemError> {
    let name = wanted(settings, machine_id);
    let path = root.path(HOSTNAME);
    if write_file_maybe_bound(&path, format!("{name}\n").as_bytes(), 0o644)? == Change::Written {
        log::info!(FLEET_KEY = "hostname", FLEET_PATH = HOSTNAME; "hostname {name} written");
    }
    if effects.set_hostname(&name)? {
        log::info!(FLEET_KEY = "hostname"; "running hostname set to {name}");
    }
    Ok(())
}
