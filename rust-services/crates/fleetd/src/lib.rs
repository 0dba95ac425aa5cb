//! fleetd's jobs as a library, so tests call them without a process.
//! Each module owns one subcommand: its clap arguments and its `run`.

pub mod apply;
pub mod cli;
pub mod health;
pub mod logging;
pub mod net;
pub mod provision;
pub mod reboot;
pub mod supervisor;
pub mod update;

/// Returned by subcommands that are not built yet; `fleetd` exits 2 for it.
#[derive(Debug, thiserror::Error)]
#[error("fleetd {0}: not implemented")]
pub struct NotImplemented(pub &'static str);
