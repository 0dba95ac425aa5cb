//! `fleet`: the fleetOS host CLI. Thin: parse arguments, run the command, map errors to exit codes.

mod bundle_cmd;
mod config_cmd;
mod image_cmd;
mod outcome;
mod release_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use outcome::{NotImplemented, Reported, Unreadable};

#[derive(Debug, Parser)]
#[command(
    name = "fleet",
    version,
    about = "fleetOS host tool: config.json, images, update bundles, releases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check or create config.json files.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Inspect, configure and flash fleetOS disk images.
    #[command(subcommand)]
    Image(image_cmd::Command),
    /// Create, sign and verify OS update bundles.
    #[command(subcommand)]
    Bundle(bundle_cmd::Command),
    /// Check docker-compose files as the supervisor reads them.
    #[command(subcommand)]
    Compose(release_cmd::ComposeCommand),
    /// Check target-state JSON files and plan them without an engine.
    #[command(subcommand)]
    Target(release_cmd::TargetCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(cmd) => config_cmd::run(cmd),
        Command::Image(cmd) => image_cmd::run(cmd),
        Command::Bundle(cmd) => bundle_cmd::run(cmd),
        Command::Compose(cmd) => release_cmd::run_compose(cmd),
        Command::Target(cmd) => release_cmd::run_target(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Reported>().is_some() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fleet: error: {}", fleet_log::error::one_line(e.as_ref()));
            if e.downcast_ref::<NotImplemented>().is_some()
                || e.downcast_ref::<Unreadable>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
