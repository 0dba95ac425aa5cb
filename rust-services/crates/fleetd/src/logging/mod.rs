//! `fleetd logging apply|status` — the persistent-logging toggle.

use fleet_core::Root;

use crate::NotImplemented;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply persistentLogging from config.json now, without a reboot.
    Apply,
    /// Print the logging mode, the journal's size and where it lives.
    Status,
}

pub async fn run(_root: &Root, _cmd: Command) -> Result<(), NotImplemented> {
    Err(NotImplemented("logging"))
}
