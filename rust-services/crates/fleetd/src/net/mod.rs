//! `fleetd net import` — NetworkManager connections from the boot partition and config.json.

use fleet_core::Root;

use crate::NotImplemented;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import /mnt/boot/system-connections/* and fleet.network.wifi into NetworkManager.
    Import,
}

pub async fn run(_root: &Root, _cmd: Command) -> Result<(), NotImplemented> {
    Err(NotImplemented("net"))
}
