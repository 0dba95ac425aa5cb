//! `fleetd update install|status|mark-good|rollback` — A/B root filesystem updates.

use std::path::PathBuf;

use fleet_core::Root;

use crate::NotImplemented;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a bundle (FILE, or - for stdin) to the inactive slot and arm a trial boot.
    Install { bundle: PathBuf },
    /// Print the boot state as JSON.
    Status,
    /// Make the slot under trial the active one.
    MarkGood,
    /// Drop the trial and go back to the active slot at the next boot.
    Rollback,
}

pub async fn run(_root: &Root, _cmd: Command) -> Result<(), NotImplemented> {
    Err(NotImplemented("update"))
}
