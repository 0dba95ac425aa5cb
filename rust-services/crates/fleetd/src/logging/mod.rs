//! `fleetd logging apply|status` — the persistent-logging toggle.
//!
//! Default: a volatile journal in RAM capped at 8M. `persistentLogging: true`: the journal
//! goes to `/var/log/journal`, a bind of `/mnt/state/journal`, capped at
//! `fleet.logging.maxUse` (32M). Both take effect at once; provisioning re-applies at boot.

pub mod apply;
pub mod mountpoint;
pub mod status;

use fleet_fs::Root;

use crate::apply::{Effects, LoadError, load};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply persistentLogging from config.json now, without a reboot.
    Apply,
    /// Print the logging mode, the journal's size and where it lives.
    Status {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("persistentLogging")]
    Apply(#[from] crate::apply::ItemError),
    #[error("cannot print the status")]
    Print(#[from] std::io::Error),
}

pub async fn run(root: &Root, cmd: Command) -> Result<(), LoggingError> {
    match cmd {
        Command::Apply => {
            let config = load::load(root)?;
            apply::apply(
                root,
                Effects::for_root(root),
                config.settings(),
                apply::Switch::Now,
            )?;
            Ok(())
        }
        Command::Status { json } => {
            let status = status::Status::read(root);
            let text = if json {
                format!("{}\n", status.to_json())
            } else {
                status.to_text()
            };
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}
