//! `fleet-supervisor`: for now the offline checks and the planner on files; the daemon
//! (`run`) comes with the engine client.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fleet_supervisor::{compose, labels::HostContext, plan, target};

#[derive(Parser)]
#[command(version, about = "fleetOS supervisor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a docker-compose.yml; prints every problem, one per line.
    CheckCompose { file: PathBuf },
    /// Validate a target-state JSON file.
    CheckTarget { file: PathBuf },
    /// Print the steps from a current state (JSON, as `plan::CurrentState`) to a target,
    /// one JSON object per line.
    Plan {
        #[arg(long)]
        current: PathBuf,
        #[arg(long)]
        target: PathBuf,
        /// Update even where an app holds its update lock.
        #[arg(long)]
        force: bool,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckCompose { file } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let c = compose::parse(&text).with_context(|| format!("{}", file.display()))?;
            println!("ok: {} service(s)", c.services.len());
        }
        Command::CheckTarget { file } => {
            let t = target::load(&file)?;
            println!("ok: {} app(s)", t.apps.len());
        }
        Command::Plan {
            current,
            target: target_file,
            force,
        } => {
            let bytes =
                std::fs::read(&current).with_context(|| format!("{}", current.display()))?;
            let state: plan::CurrentState =
                serde_json::from_slice(&bytes).with_context(|| format!("{}", current.display()))?;
            let t = target::load(&target_file)?;
            let p = plan::plan(
                &state,
                &t,
                &HostContext::default(),
                plan::PlanOptions { force },
            );
            for step in &p.steps {
                println!("{}", serde_json::to_string(step)?);
            }
            for held in &p.held {
                eprintln!(
                    "held by update lock: {}/{} ({})",
                    held.app, held.service, held.container
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet-supervisor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
