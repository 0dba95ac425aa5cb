//! `fleetd health` — on a trial boot: wait for the system to be healthy, then mark the slot
//! good, or reboot so the bootloader counts the trial down.

use fleet_core::Root;

use crate::NotImplemented;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_root: &Root, _args: Args) -> Result<(), NotImplemented> {
    Err(NotImplemented("health"))
}
