//! `fleetd update check`: the release channel named by `fleet.update.url` (a signed
//! `channel.json` on any static server, see fleet-bundle's `channel`), run by
//! `fleet-update.timer`. Installs the channel's bundle by URL when it is newer than the
//! running system, runs on this device, did not already fail its trial here, and the
//! device's place in the rollout wave has come.

use std::path::PathBuf;

use fleet_bootenv::BootState;
use fleet_bundle::channel::Channel;
use fleet_bundle::{BundleError, keys, version};
use fleet_fs::Root;

use super::install::{self, Input};
use super::source::{HttpSource, Source};
use super::trial::{self, Outcome};
use super::{UpdateError, slots};

#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The channel URL (default: `fleet.update.url` of config.json).
    pub channel: Option<String>,
    /// Install when due (otherwise only report).
    pub install: bool,
    pub install_opts: install::Options,
    /// The device's id for its place in a wave (default: /etc/machine-id).
    pub device_id: Option<String>,
    /// Unix seconds (default: the clock).
    pub now: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The running system is as new as the channel, or newer.
    UpToDate,
    /// That version already failed its trial on this device; waiting for a newer one.
    FailedHere,
    /// That version is installed and its trial is pending.
    Armed,
    /// Due later (`due`).
    Wait,
    /// Due now; `--install` not given.
    Due,
    Installed,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    pub channel: String,
    pub version: String,
    pub running: Option<String>,
    pub action: Action,
    /// Unix seconds from which this device installs.
    pub due: u64,
    pub bundle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<install::Report>,
}

fn fetch_all(url: &str, root: &Root) -> Result<Vec<u8>, UpdateError> {
    let mut src = HttpSource::open(url, root)?;
    let size = src.size();
    if size as usize > fleet_bundle::channel::MAX_LEN {
        return Err(BundleError::Manifest(format!(
            "{url}: {size} bytes, more than a channel file ({} at most)",
            fleet_bundle::channel::MAX_LEN
        ))
        .into());
    }
    Ok(src.read_range(0, size)?)
}

fn device_id(root: &Root) -> String {
    std::fs::read_to_string(root.path("/etc/machine-id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `fleet.update.url` of config.json.
pub fn configured_channel(root: &Root) -> Option<String> {
    fleet_config::Config::load(&root.config_json())
        .ok()
        .flatten()
        .and_then(|c| c.settings().fleet.update_url.clone())
}

pub fn check(root: &Root, opts: &CheckOptions) -> Result<CheckReport, UpdateError> {
    let url = match &opts.channel {
        Some(u) => u.clone(),
        None => configured_channel(root).ok_or(UpdateError::NoChannel)?,
    };
    let bytes = fetch_all(&url, root)?;
    let signature = fetch_all(&format!("{url}.sig"), root)?;
    let keys_dir: PathBuf = opts
        .install_opts
        .keys
        .clone()
        .unwrap_or_else(|| root.path(fleet_bundle::KEYS_DIR));
    let trusted = keys::read_public_dir(&keys_dir)?;
    keys::verify(&trusted, &bytes, &signature)?;
    let channel = Channel::parse(&bytes)?;
    let mine = install::device_type(root).ok_or(UpdateError::UnknownDeviceType)?;
    if !channel.compatible.contains(&mine) {
        return Err(UpdateError::WrongDevice {
            mine,
            compatible: channel.compatible.join(", "),
        });
    }
    let running = slots::running_version(root);
    let id = opts.device_id.clone().unwrap_or_else(|| device_id(root));
    let due = channel.due(&id);
    let bundle = super::source::resolve(&url, &channel.bundle);
    let mut report = CheckReport {
        channel: url,
        version: channel.version.clone(),
        running: running.clone(),
        action: Action::UpToDate,
        due,
        bundle: bundle.clone(),
        install: None,
    };
    if running
        .as_deref()
        .is_some_and(|r| version::compare(&channel.version, r).is_le())
    {
        return Ok(report);
    }
    let state = BootState::from_vars(&fleet_bootenv::select::open(root)?.load()?);
    if let Some(t) = trial::read(root).filter(|t| t.version == channel.version) {
        match t.outcome(&state) {
            Outcome::Pending => {
                report.action = Action::Armed;
                return Ok(report);
            }
            Outcome::Failed | Outcome::RolledBack => {
                report.action = Action::FailedHere;
                return Ok(report);
            }
            Outcome::Good => {}
        }
    }
    let now = opts.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    if now < due {
        report.action = Action::Wait;
        return Ok(report);
    }
    if !opts.install {
        report.action = Action::Due;
        return Ok(report);
    }
    log::info!(version = channel.version.as_str(); "channel {}: installing {bundle}", report.channel);
    let source = HttpSource::open_probe(&bundle, root, super::head::probe_len(root))?;
    report.install = Some(install::install(
        root,
        Input::Source(Box::new(source)),
        &opts.install_opts,
    )?);
    report.action = Action::Installed;
    Ok(report)
}
