//! `fleet.vpn.enabled` → `/run/fleet/vpn-enabled`, the switch `fleet-vpn.path` and
//! `fleet-vpn.service` are conditioned on. Off unless config.json turns it on; under `/run`,
//! so it is decided again every boot. The OpenVPN config itself comes from the server
//! (the supervisor writes it); this only says whether to use it.

use fleet_config::Settings;
use fleet_fs::Root;
use fleet_fs::{Change, write_if_changed};

use crate::apply::effects::Effects;
use crate::apply::error::ItemError;
use crate::apply::files::remove_if_exists;

pub const SWITCH: &str = "/run/fleet/vpn-enabled";
pub const PATH_UNIT: &str = "fleet-vpn.path";
pub const SERVICE: &str = "fleet-vpn.service";

pub fn apply(root: &Root, effects: Effects, settings: &Settings) -> Result<(), ItemError> {
    const KEY: &str = "fleet.vpn.enabled";
    let path = root.path(SWITCH);
    let change = if settings.fleet.vpn_enabled {
        write_if_changed(&path, b"fleet.vpn.enabled in config.json\n", 0o644)?
    } else {
        remove_if_exists(&path)?
    };
    if change == Change::Unchanged {
        return Ok(());
    }
    if settings.fleet.vpn_enabled {
        log::info!(FLEET_KEY = KEY; "VPN on: fleet-vpn.service starts once the server's OpenVPN config is written");
        // --no-block: the path unit is ordered after provisioning, which is running now.
        effects.systemctl(KEY, &["--no-block", "start", PATH_UNIT])?;
    } else {
        log::info!(FLEET_KEY = KEY; "VPN off");
        effects.systemctl(KEY, &["stop", PATH_UNIT, SERVICE])?;
    }
    Ok(())
}
