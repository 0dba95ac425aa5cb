//! A host-OS release in the target (balena's `is_host` app) handed to the OS updater: the
//! supervisor writes it to [`HANDOVER_FILE`] in its data directory (the host's
//! `/mnt/data/fleet-supervisor/host-os-update.json`, which `fleetd update check` reads) and
//! starts `fleet-update.service` over the host's D-Bus so the check runs at once instead of
//! at the timer's next hour. Both happen once per release: an unchanged target (and a
//! restarted supervisor, the file being kept) writes and starts nothing. Whether to install
//! — never a downgrade, never a release already handled — is fleetd's decision; the version
//! the device then runs reaches the server as the state report's `os_version`.

use std::path::Path;

use fleet_log::error::one_line;
use fleet_release::target_state::HostOsRelease;

use super::cloud;
use super::host_units::{self, Job};
use super::state::Shared;

/// The hand-over, in the supervisor's data directory.
pub const HANDOVER_FILE: &str = "host-os-update.json";
/// The unit that runs `fleetd update check --install --reboot`.
pub const UPDATE_UNIT: &str = "fleet-update.service";

/// What the loop remembers between rounds: a unit start still owed (systemd could not be
/// reached when the release was written).
#[derive(Debug, Default)]
pub struct HandOver {
    start_owed: Option<String>,
}

fn kept(path: &Path) -> Option<HostOsRelease> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl HandOver {
    /// Writes the target's host-OS release when it differs from the one handed over last,
    /// then asks systemd to start the check; a failed start is asked again next round.
    pub async fn apply<R>(&mut self, shared: &Shared<R>) {
        let wanted = shared
            .target
            .borrow()
            .as_ref()
            .and_then(|t| t.state.host_os.clone());
        if let Some(wanted) = wanted {
            let path = shared.settings.data_dir.join(HANDOVER_FILE);
            if kept(&path).as_ref() != Some(&wanted) {
                let bytes = serde_json::to_vec_pretty(&wanted).unwrap_or_default();
                match fleet_fs::atomic_write(&path, &bytes, 0o644) {
                    Ok(()) => {
                        let how = wanted
                            .bundle
                            .as_deref()
                            .map_or("the device's channel".to_string(), |b| {
                                format!("bundle {b}")
                            });
                        let line = format!(
                            "Host OS release {} ({}) handed to the OS updater: {how}",
                            wanted.release, wanted.app_name
                        );
                        log::info!("{line} ({})", path.display());
                        cloud::logs::system(shared, &line);
                        self.start_owed = Some(wanted.release.clone());
                    }
                    Err(e) => log::error!(
                        "host OS release {}: cannot write {}: {}",
                        wanted.release,
                        path.display(),
                        one_line(&e)
                    ),
                }
            }
        }
        let Some(release) = self.start_owed.clone() else {
            return;
        };
        match host_units::run(Job::Start, UPDATE_UNIT).await {
            Ok(()) => {
                log::info!("host OS release {release}: started {UPDATE_UNIT}");
                self.start_owed = None;
            }
            Err(e) => log::warn!(
                "host OS release {release}: {UPDATE_UNIT} not started ({}); asked again next round, and fleet-update.timer checks the hand-over too",
                one_line(&e)
            ),
        }
    }
}
