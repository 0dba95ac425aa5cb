//! `fleetd supervisor` — see shared/DESIGN.md, "Services".

use fleet_core::Root;

use crate::NotImplemented;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_root: &Root, _args: Args) -> Result<(), NotImplemented> {
    Err(NotImplemented("supervisor"))
}
