//! The command line: global options and one subcommand per job.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "fleetd", version, about = "fleetOS device services")]
pub struct Cli {
    /// Root prefix for every path fleetd reads or writes (default: FLEET_ROOT, else /).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply config.json: hostname, SSH keys, NTP/DNS, udev rules, development mode, logging.
    Provision(crate::provision::Args),
    /// Persistent-logging toggle.
    #[command(subcommand)]
    Logging(crate::logging::Command),
    /// NetworkManager connections.
    #[command(subcommand)]
    Net(crate::net::Command),
    /// Keep the supervisor container running and healthy.
    Supervisor(crate::supervisor::Args),
    /// On a trial boot: check health, then mark the slot good or reboot.
    Health(crate::health::Args),
    /// A/B root filesystem updates.
    #[command(subcommand)]
    Update(crate::update::Command),
}

impl Command {
    /// The subcommand's name, used as the journal's FLEET_COMMAND field.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Provision(_) => "provision",
            Command::Logging(_) => "logging",
            Command::Net(_) => "net",
            Command::Supervisor(_) => "supervisor",
            Command::Health(_) => "health",
            Command::Update(_) => "update",
        }
    }
}
