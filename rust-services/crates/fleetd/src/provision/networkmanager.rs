//! `dnsServers` and `os.network.connectivity` → runtime NetworkManager configuration in
//! `/run/NetworkManager/conf.d/`, one file per key so each fails alone.
//!
//! `dnsServers` become NetworkManager's global DNS servers (they take precedence over the
//! servers DHCP or a connection provides). Unset or balenaOS's `"null"`: no file, the
//! connections' own servers are used.

use fleet_config::{Connectivity, Settings};
use fleet_fs::Root;
use fleet_fs::{Change, write_if_changed};

use crate::apply::effects::Effects;
use crate::apply::error::ItemError;
use crate::apply::files::{GENERATED, remove_if_exists};

pub const DNS_CONF: &str = "/run/NetworkManager/conf.d/50-fleet-dns.conf";
pub const CONNECTIVITY_CONF: &str = "/run/NetworkManager/conf.d/50-fleet-connectivity.conf";

pub fn render_dns(servers: Option<&[String]>) -> Option<String> {
    let servers = servers.filter(|s| !s.is_empty())?;
    Some(format!(
        "{GENERATED}\n[global-dns-domain-*]\nservers={}\n",
        servers.join(",")
    ))
}

pub fn render_connectivity(c: Option<&Connectivity>) -> Option<String> {
    let c = c?;
    let mut text = format!(
        "{GENERATED}\n[connectivity]\nenabled={}\nuri={}\ninterval={}\n",
        c.interval > 0,
        c.uri,
        c.interval
    );
    if let Some(r) = &c.response {
        text.push_str(&format!("response={r}\n"));
    }
    Some(text)
}

fn write_or_remove(root: &Root, path: &str, text: Option<String>) -> Result<Change, ItemError> {
    let full = root.path(path);
    Ok(match text {
        Some(t) => write_if_changed(&full, t.as_bytes(), 0o644)?,
        None => remove_if_exists(&full)?,
    })
}

/// NetworkManager rereads its configuration on reload. At boot it is not running yet and its
/// start waits for provisioning (network-pre.target): never wait for its job.
fn reload(effects: Effects, key: &str) -> Result<(), ItemError> {
    effects.systemctl(
        key,
        &[
            "--no-block",
            "try-reload-or-restart",
            "NetworkManager.service",
        ],
    )?;
    Ok(())
}

pub fn apply_dns(root: &Root, effects: Effects, settings: &Settings) -> Result<(), ItemError> {
    let servers = settings.dns_servers.as_deref();
    if write_or_remove(root, DNS_CONF, render_dns(servers))? == Change::Written {
        log::info!(FLEET_KEY = "dnsServers", FLEET_PATH = DNS_CONF; "DNS servers: {}",
            match servers { Some(s) if !s.is_empty() => s.join(" "), _ => "from the connections".into() });
        reload(effects, "dnsServers")?;
    }
    Ok(())
}

pub fn apply_connectivity(
    root: &Root,
    effects: Effects,
    settings: &Settings,
) -> Result<(), ItemError> {
    let conn = settings.connectivity.as_ref();
    if write_or_remove(root, CONNECTIVITY_CONF, render_connectivity(conn))? == Change::Written {
        log::info!(FLEET_KEY = "os.network.connectivity", FLEET_PATH = CONNECTIVITY_CONF;
            "connectivity check: {}", conn.map_or("NetworkManager default".into(), |c| format!("{} every {} s", c.uri, c.interval)));
        reload(effects, "os.network.connectivity")?;
    }
    Ok(())
}
