//! `fleet-supervisor`: the daemon (`run`), its Docker healthcheck, and offline checks and
//! the planner on files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fleet_supervisor::daemon::{self, RunArgs, Settings, Timing};
use fleet_supervisor::{compose, labels::HostContext, plan, target};

mod engine_only;

#[derive(Parser)]
#[command(version, about = "fleetOS supervisor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the supervisor: keep the apps at the target state and serve the API.
    Run(RunArgs),
    /// Exit 0 iff the local supervisor answers `GET /v1/healthy` with 200 (the image's
    /// Docker HEALTHCHECK).
    Healthcheck {
        /// API port; default FLEET_LISTEN_PORT, else 48484.
        #[arg(long)]
        port: Option<u16>,
    },
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_daemon(args: RunArgs) -> anyhow::Result<()> {
    daemon::init_logging();
    let settings = Settings::resolve(&args, |k| std::env::var(k).ok())?;
    let timing = Timing {
        reconcile: Duration::from_secs(args.reconcile_s.max(1)),
        retry: Duration::from_secs(args.retry_s.max(1)),
        stall_limit: Duration::from_secs(args.stall_limit_s.max(1)),
    };
    let reconciler = engine_only::EngineOnly::new(&args.engine_socket);
    runtime()?.block_on(daemon::run(settings, reconciler, timing))?;
    Ok(())
}

/// The healthcheck's verdict: `Ok(true)` for a 200.
fn healthcheck(port: Option<u16>) -> anyhow::Result<bool> {
    let port = match port {
        Some(p) => p,
        None => match std::env::var("FLEET_LISTEN_PORT") {
            Ok(v) if !v.is_empty() => v
                .parse()
                .with_context(|| format!("FLEET_LISTEN_PORT={v:?} is not a port"))?,
            _ => daemon::DEFAULT_LISTEN_PORT,
        },
    };
    let url = format!("http://127.0.0.1:{port}/v1/healthy");
    let answer = runtime()?.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), daemon::client::get(&url, &[])).await
    });
    let response = answer
        .map_err(|_| anyhow::anyhow!("{url}: no answer within 10 s"))?
        .map_err(anyhow::Error::from)?;
    if response.status != 200 {
        eprintln!(
            "fleet-supervisor: {url}: HTTP {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body).trim()
        );
    }
    Ok(response.status == 200)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_daemon(args)?,
        Command::Healthcheck { port } => {
            return Ok(if healthcheck(port)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
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
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // The daemon's logger may be the journal; the one-line reason goes to both.
            log::error!("{e:#}");
            eprintln!("fleet-supervisor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
