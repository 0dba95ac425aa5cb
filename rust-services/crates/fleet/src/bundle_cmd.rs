//! `fleet bundle keygen|create|sign|verify`.

use std::path::PathBuf;

use crate::NotImplemented;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a bundle's signature and manifest.
    Verify { bundle: PathBuf },
}

pub fn run(_cmd: Command) -> anyhow::Result<()> {
    Err(NotImplemented("bundle").into())
}
