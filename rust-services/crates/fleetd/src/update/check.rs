//! `fleetd update check`: the release channel named by `fleet.update.url` (a signed
//! `channel.json` on any static server, see fleet-bundle's `channel`), run by
//! `fleet-update.timer`. Installs the channel's bundle by URL when it is newer than the
//! running system, runs on this device, did not already fail its trial here, and the
//! device's place in the rollout wave has come.
//!
//! A host-OS release from the supervisor's target state goes the same way: fleet-supervisor
//! hands it over in [`HOST_HANDOVER`] (and starts `fleet-update.service`). While that
//! release was not acted on yet (see [`HOST_DONE`]), the check takes the bundle it names —
//! no channel, no wave: the server chose this device — or, without one, checks the
//! configured channel at once. The same rules hold as for a channel: never older or equal
//! to the running version, never a version whose trial already failed here. Once decided
//! (installed, up to date, armed, failed here) the release is recorded and not acted on
//! again.

use fleet_bootenv::BootState;
use fleet_bundle::channel::Channel;
use fleet_bundle::{BundleError, keys, version};
use fleet_fs::Root;

use super::head;
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

/// fleet-supervisor's hand-over of a host-OS release (its `daemon/host_os.rs`): the host
/// side of the supervisor's data directory.
pub const HOST_HANDOVER: &str = "/mnt/data/fleet-supervisor/host-os-update.json";
/// The host-OS release last acted on.
pub const HOST_DONE: &str = "/var/lib/fleet/host-os-update.done.json";

/// A host-OS release as the supervisor hands it over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostRelease {
    pub app: String,
    #[serde(default)]
    pub app_name: String,
    /// The release's commit.
    pub release: String,
    #[serde(default)]
    pub release_id: u64,
    /// The signed bundle of that release; `None`: the configured channel.
    #[serde(default)]
    pub bundle: Option<String>,
}

/// The handed-over host-OS release, unless it was already acted on (or there is none).
pub fn pending_host_release(root: &Root) -> Result<Option<HostRelease>, UpdateError> {
    let path = root.path(HOST_HANDOVER);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UpdateError::Input(path, e)),
    };
    let handed: HostRelease = serde_json::from_slice(&bytes).map_err(|e| {
        UpdateError::Input(
            path.clone(),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    let done = std::fs::read(root.path(HOST_DONE))
        .ok()
        .and_then(|b| serde_json::from_slice::<HostRelease>(&b).ok());
    Ok((done.map(|d| d.release).as_ref() != Some(&handed.release)).then_some(handed))
}

fn mark_host_done(root: &Root, release: &HostRelease) -> Result<(), UpdateError> {
    let mut bytes = serde_json::to_vec_pretty(release).unwrap_or_default();
    bytes.push(b'\n');
    fleet_fs::atomic_write(&root.path(HOST_DONE), &bytes, 0o644)
        .map_err(|e| UpdateError::Input(root.path(HOST_DONE), std::io::Error::other(e)))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    /// The channel the decision came from; for a handed-over host release with a bundle,
    /// that bundle.
    pub channel: String,
    pub version: String,
    pub running: Option<String>,
    pub action: Action,
    /// Unix seconds from which this device installs.
    pub due: u64,
    pub bundle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<install::Report>,
    /// The handed-over host-OS release (commit) this check acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_release: Option<String>,
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
    // An explicit --channel is a check of that channel only.
    let host = match opts.channel {
        Some(_) => None,
        None => pending_host_release(root)?,
    };
    let mut report = match host.as_ref().and_then(|h| h.bundle.as_deref()) {
        Some(bundle) => check_bundle(root, opts, bundle)?,
        None => check_channel(root, opts)?,
    };
    if let Some(h) = host {
        log::info!(release = h.release.as_str(); "host OS release {} ({}): {:?}", h.release, h.app_name, report.action);
        if !matches!(report.action, Action::Wait | Action::Due) {
            mark_host_done(root, &h)?;
        }
        report.host_release = Some(h.release);
    }
    Ok(report)
}

/// Armed or failed here: the trial record's verdict on `version`, if it has one.
/// What to report instead of installing `version`: up to date when it is not newer than the
/// running system, the trial's outcome when it was tried here; `None`: install it.
fn not_to_install(
    root: &Root,
    version: &str,
    running: Option<&str>,
) -> Result<Option<Action>, UpdateError> {
    if running.is_some_and(|r| version::compare(version, r).is_le()) {
        return Ok(Some(Action::UpToDate));
    }
    trial_action(root, version)
}

fn trial_action(root: &Root, version: &str) -> Result<Option<Action>, UpdateError> {
    let state = BootState::from_vars(&fleet_bootenv::select::open(root)?.load()?);
    Ok(trial::read(root)
        .filter(|t| t.version == version)
        .and_then(|t| match t.outcome(&state) {
            Outcome::Pending => Some(Action::Armed),
            Outcome::Failed | Outcome::RolledBack => Some(Action::FailedHere),
            Outcome::Good => None,
        }))
}

/// A handed-over host release's bundle: its signed head says the version and the devices;
/// installed when newer than the running system (no wave: the server chose this device).
fn check_bundle(
    root: &Root,
    opts: &CheckOptions,
    bundle: &str,
) -> Result<CheckReport, UpdateError> {
    let trusted = install::trusted_keys(root, opts.install_opts.keys.as_deref())?;
    let mut source = HttpSource::open_probe(bundle, root, head::probe_len(root))?;
    let manifest = head::read(root, &mut source, &trusted)?.manifest;
    drop(source);
    let mine = install::device_type(root).ok_or(UpdateError::UnknownDeviceType)?;
    if !manifest.compatible.contains(&mine) {
        head::forget(root);
        return Err(UpdateError::WrongDevice {
            mine,
            compatible: manifest.compatible.join(", "),
        });
    }
    let running = slots::running_version(root);
    let mut report = CheckReport {
        channel: bundle.to_string(),
        version: manifest.version.clone(),
        running: running.clone(),
        action: Action::UpToDate,
        due: 0,
        bundle: bundle.to_string(),
        install: None,
        host_release: None,
    };
    if let Some(action) = not_to_install(root, &manifest.version, running.as_deref())? {
        head::forget(root);
        report.action = action;
        return Ok(report);
    }
    if !opts.install {
        report.action = Action::Due;
        return Ok(report);
    }
    log::info!(version = manifest.version.as_str(); "host OS release: installing {bundle}");
    install_by_url(root, bundle, opts, report)
}

fn check_channel(root: &Root, opts: &CheckOptions) -> Result<CheckReport, UpdateError> {
    let url = match &opts.channel {
        Some(u) => u.clone(),
        None => configured_channel(root).ok_or(UpdateError::NoChannel)?,
    };
    let bytes = fetch_all(&url, root)?;
    let signature = fetch_all(&format!("{url}.sig"), root)?;
    let trusted = install::trusted_keys(root, opts.install_opts.keys.as_deref())?;
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
        host_release: None,
    };
    if let Some(action) = not_to_install(root, &channel.version, running.as_deref())? {
        report.action = action;
        return Ok(report);
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
    install_by_url(root, &bundle, opts, report)
}

/// Installs `bundle` by URL into the report. The head the check just read is kept: the
/// install reuses it.
fn install_by_url(
    root: &Root,
    bundle: &str,
    opts: &CheckOptions,
    mut report: CheckReport,
) -> Result<CheckReport, UpdateError> {
    let source = HttpSource::open_probe(bundle, root, head::probe_len(root))?;
    report.install = Some(install::install(
        root,
        Input::Source(Box::new(source)),
        &opts.install_opts,
    )?);
    report.action = Action::Installed;
    Ok(report)
}
