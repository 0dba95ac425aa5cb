//! `fleetd provision` — apply config.json on every boot: machine-id, hostname, SSH keys,
//! the boot partition's keyfiles, NTP/DNS, connectivity check, udev rules, development mode,
//! the VPN switch, persistent logging.
//!
//! Each setting is applied on its own: a failure is logged with its key and the rest still
//! applies; the exit status reports it. A refused config.json applies nothing of itself; the
//! last good configuration is applied again instead, which recreates the runtime files under
//! `/run` after a reboot and changes nothing otherwise.

pub mod devmode;
pub mod error;
pub mod hostname;
pub mod machine_id;
pub mod networkmanager;
pub mod ssh;
pub mod timesync;
pub mod udev;
pub mod vpn;

use fleet_config::Settings;
use fleet_fs::Root;
use fleet_log::error::Chain;

use crate::apply::{Effects, load};
pub use error::{ItemError, ProvisionError};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(root: &Root, _args: Args) -> Result<(), ProvisionError> {
    let effects = Effects::for_root(root);
    match load::load(root) {
        Ok(config) => {
            apply_all(root, effects, config.settings())?;
            load::save_last_good(root, &config).map_err(|e| {
                log::error!(FLEET_KEY = "last-good"; "{}", Chain(&e));
                ProvisionError::Partial {
                    failed: vec!["last-good"],
                }
            })
        }
        Err(err) => {
            let Some(good) = load::last_good(root) else {
                return Err(err.into());
            };
            log::warn!(FLEET_PATH = load::LAST_GOOD; "config.json refused, keeping the last good configuration");
            if let Err(e) = apply_all(root, effects, good.settings()) {
                log::error!("last good configuration: {}", Chain(&e));
            }
            Err(err.kept_last_good().into())
        }
    }
}

/// Applies every setting; returns the keys that failed.
pub fn apply_all(root: &Root, effects: Effects, settings: &Settings) -> Result<(), ProvisionError> {
    let mut failed = Vec::new();
    let mut record = |key: &'static str, result: Result<(), ItemError>| {
        if let Err(e) = result {
            log::error!(FLEET_KEY = key; "{key}: {}", Chain(&e));
            failed.push(key);
        }
    };
    let machine_id = match machine_id::apply(root) {
        Ok(id) => Some(id),
        Err(e) => {
            record("machine-id", Err(e));
            None
        }
    };
    record(
        "hostname",
        hostname::apply(root, effects, settings, machine_id.as_deref()),
    );
    record("os.sshKeys", ssh::apply(root, settings));
    record("system-connections", install_keyfiles(root));
    record("ntpServers", timesync::apply(root, effects, settings));
    record(
        "dnsServers",
        networkmanager::apply_dns(root, effects, settings),
    );
    record(
        "os.network.connectivity",
        networkmanager::apply_connectivity(root, effects, settings),
    );
    record("os.udevRules", udev::apply(root, effects, settings));
    record("developmentMode", devmode::apply(root, effects, settings));
    record("fleet.vpn.enabled", vpn::apply(root, effects, settings));
    record(
        "persistentLogging",
        crate::logging::apply::apply(
            root,
            effects,
            settings,
            crate::logging::apply::Switch::Queued,
        ),
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ProvisionError::Partial { failed })
    }
}

/// The boot partition's keyfiles, in place before NetworkManager starts (`fleetd net import`
/// tells NetworkManager about them later, over D-Bus).
fn install_keyfiles(root: &Root) -> Result<(), ItemError> {
    crate::net::install_keyfiles_before_networkmanager(root)
        .map(|_| ())
        .map_err(|e| ItemError::Net(Box::new(e)))
}
