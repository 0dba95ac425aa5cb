//! `fleet-supervisor`: the daemon (`run`), its Docker healthcheck, `apply` (converge the
//! engine to a target file once), the API's app actions, and offline checks and the planner
//! on files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fleet_log::logger::{JournalWhen, Logger};
use fleet_release::update_lock;
use fleet_release::{compose, labels::HostContext, plan};
use fleet_supervisor::daemon::{self, RunArgs, Settings, Timing};
use fleet_supervisor::exec::{self, Executor};
use fleet_supervisor::target_file;

/// Exit code of `apply` when updates were held back by update locks.
const EXIT_HELD: u8 = 2;

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
    /// Write the OpenVPN settings from a saved `GET /os/v1/config` answer into DIR, as the
    /// daemon does once registered (uuid, deviceApiKey, vpnEndpoint and vpnPort from
    /// config.json); prints each file written.
    WriteOsConfig {
        #[arg(long)]
        answer: PathBuf,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        dir: PathBuf,
    },
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
    /// Converge the container engine to a target-state file once, printing each step run.
    /// Exit 2 when an update lock held some update back.
    Apply {
        #[arg(long)]
        target: PathBuf,
        /// Update even where an app holds its update lock.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        on: EngineArgs,
        /// Directory of `docker save` tarballs to load images from before pulling.
        #[arg(long)]
        images: Option<PathBuf>,
        /// config.json whose supervisor keys (deviceApiKey, apiEndpoint, listenPort,
        /// deviceType) feed the feature labels.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Restart an app, or restart/stop/start one of its services, as the supervisor API
    /// does; prints the containers acted on. Refused while the app holds its update lock
    /// (stop and restart), unless --force.
    App {
        action: AppAction,
        /// App UUID or numeric id.
        app: String,
        /// The service (for the *-service actions).
        service: Option<String>,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        on: EngineArgs,
    },
}

/// The engine and lock directories `apply` and `app` act on.
#[derive(clap::Args)]
struct EngineArgs {
    /// Engine socket (default: DOCKER_HOST when it is unix://, else /var/run/docker.sock).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// Host directory of the apps' update-lock directories.
    #[arg(long, default_value = update_lock::HOST_LOCK_ROOT)]
    lock_root: PathBuf,
}

/// The supervisor API's app actions (`POST /v2/applications/:appId/<action>`).
#[derive(Clone, Copy, clap::ValueEnum)]
enum AppAction {
    Restart,
    RestartService,
    StopService,
    StartService,
}

fn engine_socket(arg: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| {
        std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
    })
    .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

fn write_os_config(
    answer: &std::path::Path,
    config: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use fleet_supervisor::daemon::cloud::{Identity, os_config};
    let bytes = std::fs::read(answer).with_context(|| format!("{}", answer.display()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}", answer.display()))?;
    let loaded = fleet_config::Config::load(config)?
        .with_context(|| format!("{}: no such file", config.display()))?;
    let s = &loaded.settings().supervisor;
    let identity = Identity {
        uuid: s.uuid.clone().context("config.json: no uuid")?,
        device_api_key: s
            .device_api_key
            .clone()
            .context("config.json: no deviceApiKey")?,
    };
    let remote = os_config::Remote {
        host: s.vpn_endpoint.as_deref(),
        port: s.vpn_port,
    };
    let written = os_config::write(dir, &doc, &identity, remote).map_err(anyhow::Error::msg)?;
    for f in written.files {
        println!("{}", f.display());
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn negotiated(socket: &std::path::Path) -> anyhow::Result<fleet_engine::Engine> {
    let mut engine = fleet_engine::Engine::new(socket);
    engine
        .negotiate()
        .await
        .with_context(|| format!("engine at {}", socket.display()))?;
    Ok(engine)
}

fn app_action(
    action: AppAction,
    app: &str,
    service: Option<&str>,
    force: bool,
    socket: PathBuf,
    lock_root: PathBuf,
) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let host = HostContext {
            engine_socket: socket.display().to_string(),
            ..HostContext::default()
        };
        let executor = Executor::new(negotiated(&socket).await?, host, lock_root);
        let service = || service.context("this action needs a SERVICE");
        let names = match action {
            AppAction::Restart => executor.restart_app(app, force).await?,
            AppAction::RestartService => executor.restart_service(app, service()?, force).await?,
            AppAction::StopService => executor.stop_service(app, service()?, force).await?,
            AppAction::StartService => executor.start_service(app, service()?, force).await?,
        };
        for name in names {
            println!("{name}");
        }
        Ok(())
    })
}

/// What `apply` is told on the command line.
struct ApplyArgs {
    target: PathBuf,
    force: bool,
    socket: PathBuf,
    lock_root: PathBuf,
    images: Option<PathBuf>,
    config: Option<PathBuf>,
}

/// `apply`: returns whether every update ran (nothing held).
fn apply(args: ApplyArgs) -> anyhow::Result<bool> {
    let ApplyArgs {
        target: target_file,
        force,
        socket,
        lock_root,
        images,
        config,
    } = args;
    let t = target_file::load(&target_file)?;
    // What the target asks that this device drops or does not do (also in state reports).
    for note in &t.notes {
        eprintln!("warning: {note}");
    }
    let mut host = match &config {
        Some(path) => match fleet_config::Config::load(path)? {
            Some(c) => HostContext::from_supervisor_keys(&c.settings().supervisor),
            None => anyhow::bail!("{}: no such file", path.display()),
        },
        None => HostContext::default(),
    };
    host.engine_socket = socket.display().to_string();
    runtime()?.block_on(async move {
        let engine = negotiated(&socket).await?;
        let mut executor = Executor::new(engine, host, lock_root);
        if let Some(dir) = images {
            executor = executor.with_image_dir(dir);
        }
        let report = executor.apply(&t, force).await?;
        for step in &report.steps {
            println!("{}", exec::describe(step));
        }
        for warning in &report.warnings {
            eprintln!("warning: {warning}");
        }
        for held in &report.held {
            eprintln!(
                "held by update lock: {}/{} ({})",
                held.app, held.service, held.container
            );
        }
        Ok(report.held.is_empty())
    })
}

fn run_daemon(args: RunArgs) -> anyhow::Result<()> {
    Logger::new("fleet-supervisor", JournalWhen::SocketPresent).install();
    let settings = Settings::resolve(&args, |k| std::env::var(k).ok())?;
    let timing = Timing {
        reconcile: Duration::from_secs(args.reconcile_s.max(1)),
        retry: Duration::from_secs(args.retry_s.max(1)),
        stall_limit: Duration::from_secs(args.stall_limit_s.max(1)),
    };
    // App containers get the host's socket path; here it is wherever it is bound.
    let host = settings.host_context("/var/run/docker.sock");
    runtime()?.block_on(async move {
        // Serve the API (and fail /v1/healthy) even when the engine is not up yet; the
        // version is negotiated when it answers now, else the client's own is used.
        let engine = match negotiated(&args.engine_socket).await {
            Ok(engine) => engine,
            Err(e) => {
                log::warn!("{}", fleet_log::error::one_line(e.as_ref()));
                fleet_engine::Engine::new(&args.engine_socket)
            }
        };
        let executor = Executor::new(engine, host, PathBuf::from(update_lock::HOST_LOCK_ROOT));
        daemon::run(settings, executor, timing).await?;
        anyhow::Ok(())
    })
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
    let response = runtime()?.block_on(daemon::client::get(
        &url,
        &[],
        None,
        daemon::client::Route::Direct,
        Duration::from_secs(10),
    ))?;
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
        Command::App {
            action,
            app,
            service,
            force,
            on,
        } => app_action(
            action,
            &app,
            service.as_deref(),
            force,
            engine_socket(on.engine),
            on.lock_root,
        )?,
        Command::Apply {
            target: target_file,
            force,
            on,
            images,
            config,
        } => {
            let args = ApplyArgs {
                target: target_file,
                force,
                socket: engine_socket(on.engine),
                lock_root: on.lock_root,
                images,
                config,
            };
            if !apply(args)? {
                return Ok(ExitCode::from(EXIT_HELD));
            }
        }
        Command::CheckCompose { file } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let c = compose::parse(&text).with_context(|| format!("{}", file.display()))?;
            println!("ok: {} service(s)", c.services.len());
        }
        Command::CheckTarget { file } => {
            let t = target_file::load(&file)?;
            println!("ok: {} app(s)", t.apps.len());
        }
        Command::WriteOsConfig {
            answer,
            config,
            dir,
        } => write_os_config(&answer, &config, &dir)?,
        Command::Plan {
            current,
            target: target_file,
            force,
        } => {
            let bytes =
                std::fs::read(&current).with_context(|| format!("{}", current.display()))?;
            let state: plan::CurrentState =
                serde_json::from_slice(&bytes).with_context(|| format!("{}", current.display()))?;
            let t = target_file::load(&target_file)?;
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
            let line = fleet_log::error::one_line(e.as_ref());
            if fleet_log::logger::to_journal() {
                log::error!("{line}");
            }
            eprintln!("fleet-supervisor: {line}");
            ExitCode::FAILURE
        }
    }
}
