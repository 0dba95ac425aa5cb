//! The update-lock layout: one directory per app on the host, mounted into every service of
//! the app at `/tmp/balena` and `/tmp/resin`. While a process in the app holds an exclusive
//! flock on `updates.lock` (or the legacy `resin-updates.lock`), the supervisor does not kill
//! or restart the app's services for an update, unless the update is forced.
//!
//! Only names and paths live here (the planner binds them into containers); creating the
//! directories and taking the flocks is the supervisor's (`fleet_supervisor::lock`).

use std::path::{Path, PathBuf};

use crate::labels::BindMount;

/// Host directory holding one lock directory per app (under `/tmp`: locks do not survive
/// a reboot, and neither do the processes holding them).
pub const HOST_LOCK_ROOT: &str = "/tmp/fleet-supervisor/apps";
/// Where the app's lock directory appears inside each of its containers.
pub const CONTAINER_LOCK_DIRS: [&str; 2] = ["/tmp/balena", "/tmp/resin"];
/// Lock file names an app may hold, current and legacy.
pub const LOCK_FILES: [&str; 2] = ["updates.lock", "resin-updates.lock"];

/// Files a new container creates in the lock directory to say it took over from the old one
/// during a hand-over (current and legacy names); the old one is then killed before the
/// hand-over timeout.
pub const HANDOVER_FILES: [&str; 2] = ["handover-complete", "resin-kill-me"];

/// The host lock directory of an app below `lock_root` (normally [`HOST_LOCK_ROOT`]
/// under the root prefix).
pub fn app_lock_dir(lock_root: &Path, app_uuid: &str) -> PathBuf {
    lock_root.join(app_uuid)
}

/// The bind mounts giving a container its app's lock directory.
pub fn lock_mounts(app_uuid: &str) -> Vec<BindMount> {
    let host = format!("{HOST_LOCK_ROOT}/{app_uuid}");
    CONTAINER_LOCK_DIRS
        .iter()
        .map(|target| BindMount::new(&host, target, false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(
            app_lock_dir(Path::new(HOST_LOCK_ROOT), "abc"),
            PathBuf::from("/tmp/fleet-supervisor/apps/abc")
        );
        let mounts = lock_mounts("abc");
        assert_eq!(mounts.len(), 2);
        assert!(
            mounts
                .iter()
                .all(|m| m.source == "/tmp/fleet-supervisor/apps/abc")
        );
        assert_eq!(mounts[0].target, "/tmp/balena");
        assert_eq!(mounts[1].target, "/tmp/resin");
    }
}
