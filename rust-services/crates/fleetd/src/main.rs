//! `fleetd`: the fleetOS device services, one subcommand per job.
//! Thin on purpose: parse arguments, set up logging, run the job, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use fleet_log::logger::{JournalWhen, Logger};
use fleetd::cli::{Cli, Command};
use fleetd::{NotImplemented, health, logging, net, provision, supervisor, update};

fn main() -> ExitCode {
    let cli = Cli::parse();
    Logger::new("fleetd", JournalWhen::StderrIsJournal)
        .command(cli.command.name())
        .install();
    let root = fleet_fs::Root::from_arg_or_env(cli.root.clone());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        match cli.command {
            Command::Provision(args) => provision::run(&root, args).await.map_err(Into::into),
            Command::Logging(cmd) => logging::run(&root, cmd).await.map_err(Into::into),
            Command::Net(cmd) => net::run(&root, cmd).await.map_err(Into::into),
            Command::Supervisor(args) => supervisor::run(&root, args).await.map_err(Into::into),
            Command::Health(args) => health::run(&root, args).await.map_err(Into::into),
            Command::Update(cmd) => update::run(&root, cmd).await.map_err(Into::into),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", fleet_log::error::one_line(e.as_ref()));
            if e.downcast_ref::<NotImplemented>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
