//! `fleetd update install|status|mark-good|rollback` — A/B root filesystem updates.
//!
//! Boot state: [`fleet_bootenv`] (GRUB env block on x86, `uboot.env` on the Pi).
//! Running slot: [`slots`] (kernel command line + sysfs). Writing a slot: [`install`].

pub mod check;
pub mod chunked;
pub mod head;
pub mod install;
mod multirange;
pub mod slot_index;
pub mod slots;
pub mod source;
pub mod trial;
pub mod verify;

use std::path::PathBuf;

use fleet_bootenv::{BootState, EnvError, Slot};
use fleet_bundle::BundleError;
use fleet_fs::Root;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a bundle to the inactive slot and arm a trial boot: FILE, file://PATH, - for
    /// stdin, or an http(s):// URL (only the chunks neither slot holds are fetched; a rerun
    /// resumes).
    Install {
        bundle: String,
        /// Slot to write (default: the one not running).
        #[arg(long, value_parser = parse_slot)]
        slot: Option<Slot>,
        /// Write this device or file instead of the slot's partition.
        #[arg(long, value_name = "PATH")]
        target: Option<PathBuf>,
        /// Directory of trusted *.pub keys (default /etc/fleet/keys).
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// Trial boots before the bootloader rolls back (1-9).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
        tries: u32,
        /// Install a bundle older than the running system.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Check the release channel (fleet.update.url, or --channel): print what it offers and,
    /// with --install, install it when this device's turn in the rollout has come (run by
    /// fleet-update.timer).
    Check {
        /// Channel URL (default: fleet.update.url of config.json).
        #[arg(long, value_name = "URL")]
        channel: Option<String>,
        /// Install the channel's bundle when it is due.
        #[arg(long)]
        install: bool,
        /// Reboot into the trial after installing.
        #[arg(long, requires = "install")]
        reboot: bool,
        /// Directory of trusted *.pub keys (default /etc/fleet/keys).
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// This device's id in the rollout wave (default /etc/machine-id).
        #[arg(long, hide = true)]
        device_id: Option<String>,
        /// The time, in unix seconds (default: the clock; for tests).
        #[arg(long, hide = true)]
        now: Option<u64>,
    },
    /// Print the configured release channel (fleet.update.url); exit 1 when there is none
    /// (fleet-update.service's ExecCondition: without a channel the check is skipped).
    Channel,
    /// Keep the running slot's chunk index (read, chunked and hashed once), so that the next
    /// install by URL needs no scan of it; nothing to do when a bound one is kept (an install
    /// keeps the index of the slot it writes). Run after a good boot (fleet-slot-index.service).
    Index,
    /// Print the boot state as JSON.
    Status,
    /// Make the running slot the known-good one (ends a trial).
    MarkGood,
    /// Drop the trial: the next boot starts the known-good slot.
    Rollback,
}

fn parse_slot(s: &str) -> Result<Slot, String> {
    Slot::parse(s).ok_or_else(|| format!("{s:?}: a slot is A or B"))
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Slot(#[from] slots::SlotError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Fs(#[from] fleet_fs::FsError),
    #[error("refusing to write slot {0}: it is the running slot")]
    TargetRunning(Slot),
    #[error(
        "refusing to write slot {active}: it is the only known-good slot while slot {booted} runs on trial (run mark-good or rollback first)"
    )]
    Unconfirmed { booted: Slot, active: Slot },
    #[error("refusing to write {}: it is mounted", .0.display())]
    Mounted(PathBuf),
    #[error(
        "refusing the bundle: version {bundle} is older than the running {running} (--allow-downgrade to install it anyway)"
    )]
    Downgrade { bundle: String, running: String },
    #[error("no release channel: config.json has no fleet.update.url (or give --channel URL)")]
    NoChannel,
    #[error(
        "refusing the bundle: this device's type is unknown (no /etc/fleet/device-type, no deviceType in config.json)"
    )]
    UnknownDeviceType,
    #[error("refusing the bundle: it is for {compatible}, this device is {mine}")]
    WrongDevice { mine: String, compatible: String },
    #[error(
        "refusing the bundle: rootfs of {size} bytes does not fit slot {slot} ({slot_size} bytes)"
    )]
    TooBig {
        size: u64,
        slot: Slot,
        slot_size: u64,
    },
    #[error("{}: {action}", path.display())]
    Target {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing the bundle: this device boots by the Raspberry Pi firmware (tryboot), where each slot has its own boot partition, and the bundle carries no boot.vfat.zst (fleet bundle create --boot)"
    )]
    NoBootImage,
    #[error("cannot find the boot partition of slot {slot}: {reason}")]
    BootPartition { slot: Slot, reason: String },
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("chunk at byte {offset} of the root image: {reason}; trial not armed")]
    Chunk { offset: u64, reason: String },
    #[error("{}: read back sha256 {got} differs from the bundle's; trial not armed", path.display())]
    VerifyFailed { path: PathBuf, got: String },
    #[error("{}: cannot read", .0.display())]
    Input(PathBuf, #[source] std::io::Error),
}

pub async fn run(root: &Root, cmd: Command) -> Result<(), UpdateError> {
    match cmd {
        Command::Install {
            bundle,
            slot,
            target,
            keys,
            tries,
            allow_downgrade,
        } => {
            let opts = install::Options {
                slot,
                target,
                keys,
                tries,
                input_len: None,
                allow_downgrade,
            };
            let root = root.clone();
            let report = tokio::task::spawn_blocking(move || {
                let (input, input_len) = open_input(&bundle, &root)?;
                let opts = install::Options { input_len, ..opts };
                install::install(&root, input, &opts)
            })
            .await
            .map_err(|e| UpdateError::Input("-".into(), std::io::Error::other(e)))??;
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            Ok(())
        }
        Command::Check {
            channel,
            install,
            reboot,
            keys,
            device_id,
            now,
        } => {
            let opts = check::CheckOptions {
                channel,
                install,
                install_opts: install::Options {
                    slot: None,
                    target: None,
                    keys,
                    tries: 3,
                    input_len: None,
                    allow_downgrade: false,
                },
                device_id,
                now,
            };
            let root2 = root.clone();
            let report = tokio::task::spawn_blocking(move || check::check(&root2, &opts))
                .await
                .map_err(|e| UpdateError::Input("-".into(), std::io::Error::other(e)))??;
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            if reboot && matches!(report.action, check::Action::Installed) {
                log::info!("rebooting into the trial of {}", report.version);
                crate::reboot::reboot()
                    .await
                    .map_err(|e| UpdateError::Input("reboot".into(), std::io::Error::other(e)))?;
            }
            Ok(())
        }
        Command::Channel => match check::configured_channel(root) {
            Some(url) => {
                println!("{url}");
                Ok(())
            }
            // A host-OS release handed over with its bundle is checked without a channel.
            None => match check::pending_host_release(root)?.and_then(|h| h.bundle) {
                Some(bundle) => {
                    println!("{bundle}");
                    Ok(())
                }
                None => Err(UpdateError::NoChannel),
            },
        },
        Command::Status => {
            println!(
                "{}",
                serde_json::to_string_pretty(&status(root)?).unwrap_or_default()
            );
            Ok(())
        }
        Command::Index => {
            let root = root.clone();
            let done = tokio::task::spawn_blocking(move || slot_index::compute(&root))
                .await
                .map_err(|e| UpdateError::Input("-".into(), std::io::Error::other(e)))??;
            println!("{}", serde_json::to_string(&done).unwrap_or_default());
            Ok(())
        }
        Command::MarkGood => {
            let msg = mark_good(root)?;
            println!("{msg}");
            Ok(())
        }
        Command::Rollback => {
            let msg = rollback(root)?;
            println!("{msg}");
            Ok(())
        }
    }
}

/// The bundle argument: `-` (stdin), a path or `file://` URL (read once), or an `http://`
/// URL (read by ranges: only what the device lacks is fetched). With the file's length, so a
/// truncated file is refused before the slot is touched.
fn open_input(bundle: &str, root: &Root) -> Result<(install::Input, Option<u64>), UpdateError> {
    if bundle == "-" {
        return Ok((install::Input::Stream(Box::new(std::io::stdin())), None));
    }
    if bundle.starts_with("http://") || bundle.starts_with("https://") {
        let source = source::HttpSource::open_probe(bundle, root, head::probe_len(root))?;
        return Ok((install::Input::Source(Box::new(source)), None));
    }
    let path = PathBuf::from(bundle.strip_prefix("file://").unwrap_or(bundle));
    let f = std::fs::File::open(&path).map_err(|e| UpdateError::Input(path.clone(), e))?;
    let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    let reader = std::io::BufReader::with_capacity(1 << 20, f);
    Ok((install::Input::Stream(Box::new(reader)), len))
}

/// The boot state, the running slot and what each slot holds.
pub fn status(root: &Root) -> Result<serde_json::Value, UpdateError> {
    let env = fleet_bootenv::select::open(root)?;
    let state = BootState::from_vars(&env.load()?);
    let booted = slots::booted(root).ok();
    let records = slots::read_records(root);
    let slot_info = |s: Slot| {
        // The running slot's os-release is authoritative; otherwise what install recorded.
        if booted.as_ref().is_some_and(|b| b.slot == s)
            && let Some(v) = slots::running_version(root)
        {
            return serde_json::json!({ "version": v, "version_from": "/etc/os-release" });
        }
        match records.get(&s) {
            Some(r) => serde_json::json!({
                "version": r.version, "version_from": slots::SLOTS_RECORD, "sha256": r.sha256,
            }),
            None => serde_json::json!({ "version": null, "version_from": null }),
        }
    };
    Ok(serde_json::json!({
        "bootloader": env.kind(),
        "env": env.path(),
        "active": state.active,
        "booted": booted.as_ref().map(|b| b.slot),
        "trial": state.trial,
        "tries_left": state.tries,
        "slots": { "A": slot_info(Slot::A), "B": slot_info(Slot::B) },
        "last_trial": trial::read(root).map(|t| serde_json::json!({
            "slot": t.slot,
            "version": t.version,
            "outcome": t.outcome(&state),
            "reason": t.reason,
        })),
    }))
}

/// Makes the running slot the known-good one. Leaves an armed trial of the other slot alone
/// when the running slot already is the good one.
pub fn mark_good(root: &Root) -> Result<String, UpdateError> {
    let env = fleet_bootenv::select::open(root)?;
    let mut vars = env.load()?;
    let state = BootState::from_vars(&vars);
    let booted = slots::booted(root)?.slot;
    if booted == state.active {
        return Ok(format!("slot {booted} is already the known-good slot"));
    }
    BootState {
        active: booted,
        trial: None,
        tries: 0,
    }
    .apply(&mut vars);
    env.store(&vars)?;
    trial::settle(root, booted, trial::Recorded::Good, None);
    log::info!(slot = booted.as_str(); "slot {booted} marked good");
    Ok(format!("slot {booted} is now the known-good slot"))
}

/// Clears the trial so the next boot starts the known-good slot.
pub fn rollback(root: &Root) -> Result<String, UpdateError> {
    let env = fleet_bootenv::select::open(root)?;
    let mut vars = env.load()?;
    let state = BootState::from_vars(&vars);
    let booted = slots::booted(root).ok().map(|b| b.slot);
    if state.trial.is_none() && booted.is_none_or(|b| b == state.active) {
        return Ok(format!("no trial: slot {} stays active", state.active));
    }
    state.without_trial().apply(&mut vars);
    env.store(&vars)?;
    if let Some(dropped) = state.trial.or(booted) {
        trial::settle(root, dropped, trial::Recorded::RolledBack, None);
    }
    log::info!(slot = state.active.as_str(); "trial dropped");
    Ok(format!("the next boot starts slot {}", state.active))
}
