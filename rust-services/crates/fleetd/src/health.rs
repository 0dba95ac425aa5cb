//! `fleetd health` — on a trial boot: wait (bounded) until `multi-user.target` and the
//! supervisor unit are active, then mark the slot good; otherwise reboot so the bootloader
//! counts the trial down. On a normal boot it does nothing.

use std::time::{Duration, Instant};

use fleet_bootenv::BootState;
use fleet_fs::{KeyValues, Root};
use fleet_log::error::Chain;

use crate::update::{self, UpdateError, slots, trial};

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
    Env(#[from] fleet_bootenv::EnvError),
    #[error(transparent)]
    Settings(#[from] fleet_fs::KeyValueError),
    #[error("trial boot of slot {slot} unhealthy: {reason}")]
    Unhealthy { slot: String, reason: String },
    #[error("cannot reboot (systemctl reboot failed, then the reboot syscall)")]
    Reboot(#[source] nix::Error),
}

/// What `health` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    NotTrial,
    MarkedGood,
}

/// What a unit's state says about the trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitState {
    Active,
    /// Not active yet; may still get there.
    Waiting,
    /// Cannot get there on this boot (masked, not found): fail now, not after the timeout.
    Never(String),
}

/// The unit's state from `systemctl show` (LoadState, ActiveState).
async fn unit_state(unit: &str) -> UnitState {
    let out = tokio::process::Command::new("systemctl")
        .args(["show", "--property=LoadState,ActiveState", "--", unit])
        .output()
        .await;
    let Ok(out) = out else {
        return UnitState::Waiting;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let prop = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    match (prop("LoadState").as_str(), prop("ActiveState").as_str()) {
        (_, "active") => UnitState::Active,
        (load @ ("masked" | "not-found" | "bad-setting" | "error"), _) => {
            UnitState::Never(format!("{unit} is {load}"))
        }
        _ => UnitState::Waiting,
    }
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
    Fut: std::future::Future<Output = UnitState>,
{
    let state = BootState::from_vars(&fleet_bootenv::select::open(root)?.load()?);
    let booted = slots::booted(root).map_err(UpdateError::from)?.slot;
    if state.trial != Some(booted) {
        log::info!(slot = booted.as_str(); "not a trial boot: nothing to do");
        return Ok(Outcome::NotTrial);
    }
    let unhealthy = |reason: String| {
        trial::settle(
            root,
            booted,
            trial::Recorded::Unhealthy,
            Some(reason.clone()),
        );
        HealthError::Unhealthy {
            slot: booted.to_string(),
            reason,
        }
    };
    let deadline = Instant::now() + timeout;
    let mut waiting: Vec<String> = units.to_vec();
    loop {
        let mut still = Vec::new();
        for u in waiting {
            match probe(u.clone()).await {
                UnitState::Active => {}
                UnitState::Waiting => still.push(u),
                UnitState::Never(reason) => return Err(unhealthy(reason)),
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(unhealthy(format!(
                "not active after {}s: {}",
                timeout.as_secs(),
                waiting.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    update::mark_good(root)?;
    log::info!(slot = booted.as_str(); "trial boot healthy: slot marked good");
    Ok(Outcome::MarkedGood)
}

pub async fn run(root: &Root, args: Args) -> Result<(), HealthError> {
    let units = if args.units.is_empty() {
        default_units(root)?
    } else {
        args.units
    };
    match check(
        root,
        &units,
        Duration::from_secs(args.timeout),
        |u| async move { unit_state(&u).await },
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e @ HealthError::Unhealthy { .. }) if !args.no_reboot && root.is_system() => {
            log::error!(
                "{}; rebooting so the bootloader counts the trial down",
                Chain(&e)
            );
            crate::reboot::reboot().await.map_err(HealthError::Reboot)
        }
        Err(e) => Err(e),
    }
}

/// `health-units=` of `/etc/fleet/update.conf` (space-separated), else the contract's pair.
/// A file that cannot be read or holds a mistake is an error: a trial judged on the wrong
/// units could mark a broken slot good.
pub fn default_units(root: &Root) -> Result<Vec<String>, HealthError> {
    let path = root.path(fleet_bootenv::UPDATE_CONF);
    let settings = KeyValues::read(&path, fleet_bootenv::UPDATE_CONF_KEYS)?;
    let units: Vec<String> = settings
        .as_ref()
        .and_then(|s| s.get("health-units"))
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    if units.is_empty() {
        return Ok(vec![
            "multi-user.target".to_string(),
            "fleet-supervisor.service".to_string(),
        ]);
    }
    Ok(units)
}
