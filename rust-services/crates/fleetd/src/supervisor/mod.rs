//! `fleetd supervisor`: keeps the supervisor container present, running, healthy and at the
//! configured image and config (see DESIGN.md §5 "Services and ordering", and README.md).

mod host;
pub mod spec;

use std::path::PathBuf;
use std::time::Duration;

use fleet_fs::Root;
pub use host::{Host, Timing};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The container engine's API socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub engine_socket: PathBuf,
    /// Milliseconds between checks of the container.
    #[arg(long, default_value_t = 5000)]
    pub check_ms: u64,
    /// Consecutive failed health checks before the container is restarted.
    #[arg(long, default_value_t = 3)]
    pub unhealthy_limit: u32,
    /// First restart delay after a crash; doubles with each crash in a row.
    #[arg(long, default_value_t = 2000)]
    pub backoff_ms: u64,
    /// Upper bound of the crash and engine-wait backoff.
    #[arg(long, default_value_t = 300_000)]
    pub backoff_cap_ms: u64,
    /// A container that ran this long is no longer in a crash loop.
    #[arg(long, default_value_t = 60_000)]
    pub stable_ms: u64,
    /// Seconds the container gets to stop before the engine kills it.
    #[arg(long, default_value_t = 10)]
    pub stop_timeout_s: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot install the SIGTERM handler")]
    Signal(#[source] std::io::Error),
}

pub async fn run(root: &Root, args: Args) -> Result<(), SupervisorError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(SupervisorError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SupervisorError::Signal)?;
    let timing = Timing {
        check: Duration::from_millis(args.check_ms),
        unhealthy_limit: args.unhealthy_limit,
        backoff: Duration::from_millis(args.backoff_ms),
        backoff_cap: Duration::from_millis(args.backoff_cap_ms),
        stable: Duration::from_millis(args.stable_ms),
        stop_timeout_s: args.stop_timeout_s,
    };
    let mut host = Host::new(root.clone(), args.engine_socket, timing);
    // Keep-alives at half the watchdog period, whatever the check interval.
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    loop {
        let delay = tokio::select! {
            d = host.step() => d,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let mut remaining = delay;
        loop {
            host.watchdog();
            let slice = watchdog.map_or(remaining, |w| remaining.min(w));
            tokio::select! {
                _ = tokio::time::sleep(slice) => {}
                _ = term.recv() => { host.shutdown().await; return Ok(()); }
                _ = int.recv() => { host.shutdown().await; return Ok(()); }
            }
            remaining = remaining.saturating_sub(slice);
            if remaining.is_zero() {
                break;
            }
        }
    }
    host.shutdown().await;
    Ok(())
}
