//! `fleetd health` — on a trial boot: wait (bounded) until `multi-user.target` and the
//! supervisor unit are active, then mark the slot good; otherwise reboot so the bootloader
//! counts the trial down. On a normal boot it does nothing.

use std::time::{Duration, Instant};

use fleet_core::Root;
use fleet_core::bootenv::{self, BootState};

use crate::update::{self, UpdateError, slots};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to wait for the system to become healthy.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Units that must be active (default: `health-units=` in /etc/fleet/update.conf, else
    /// multi-user.target and fleet-supervisor.service).
    #[arg(long = "unit", value_name = "UNIT")]
    pub units: Vec<String>,
    /// Report failure instead of rebooting (for tests and manual runs).
    #[arg(long)]
    pub no_reboot: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Env(#[from] bootenv::EnvError),
    #[error("trial boot of slot {slot} unhealthy: {reason}")]
    Unhealthy { slot: String, reason: String },
    #[error("cannot reboot: {0}")]
    Reboot(String),
}

/// What `health` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    NotTrial,
    MarkedGood,
}

/// Is `unit` active? (`systemctl is-active` exits 0 only for "active".)
async fn unit_active(unit: &str) -> bool {
    tokio::process::Command::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// The decision, with the unit probe passed in so tests can drive it.
pub async fn check<F, Fut>(
    root: &Root,
    units: &[String],
    timeout: Duration,
    probe: F,
) -> Result<Outcome, HealthError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let state = BootState::from_vars(&bootenv::open(root)?.load()?);
    let booted = slots::booted(root).map_err(UpdateError::from)?.slot;
    if state.trial != Some(booted) {
        log::info!(slot = booted.as_str(); "not a trial boot: nothing to do");
        return Ok(Outcome::NotTrial);
    }
    let deadline = Instant::now() + timeout;
    let mut waiting: Vec<String> = units.to_vec();
    loop {
        let mut still = Vec::new();
        for u in waiting {
            if !probe(u.clone()).await {
                still.push(u);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(HealthError::Unhealthy {
                slot: booted.to_string(),
                reason: format!(
                    "not active after {}s: {}",
                    timeout.as_secs(),
                    waiting.join(", ")
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    update::mark_good(root)?;
    log::info!(slot = booted.as_str(); "trial boot healthy: slot marked good");
    Ok(Outcome::MarkedGood)
}

pub async fn run(root: &Root, args: Args) -> Result<(), HealthError> {
    let units = if args.units.is_empty() {
        default_units(root)
    } else {
        args.units
    };
    match check(
        root,
        &units,
        Duration::from_secs(args.timeout),
        |u| async move { unit_active(&u).await },
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e @ HealthError::Unhealthy { .. }) if !args.no_reboot && root.is_system() => {
            log::error!("{e}; rebooting so the bootloader counts the trial down");
            reboot().await
        }
        Err(e) => Err(e),
    }
}

/// `health-units=` of `/etc/fleet/update.conf` (space-separated), else the contract's pair.
pub fn default_units(root: &Root) -> Vec<String> {
    std::fs::read_to_string(root.path(bootenv::UPDATE_CONF))
        .ok()
        .and_then(|t| bootenv::conf_value(&t, "health-units").map(str::to_string))
        .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            vec![
                "multi-user.target".to_string(),
                "fleet-supervisor.service".to_string(),
            ]
        })
}

/// A clean reboot through systemd; the reboot syscall if systemd does not take it.
async fn reboot() -> Result<(), HealthError> {
    let ok = tokio::process::Command::new("systemctl")
        .arg("reboot")
        .status()
        .await
        .is_ok_and(|s| s.success());
    if ok {
        return Ok(());
    }
    nix::unistd::sync();
    nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT)
        .map(|_| ())
        .map_err(|e| HealthError::Reboot(e.to_string()))
}
