//! `fleet image inspect|configure|flash`.

use std::path::PathBuf;

use crate::NotImplemented;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the partition table, the boot partition and its config.json (secrets masked).
    Inspect { image: PathBuf },
}

pub fn run(_cmd: Command) -> anyhow::Result<()> {
    Err(NotImplemented("image").into())
}
