//! Accepting a target document: validated for this device, kept on disk atomically, then in
//! force. From the server's poll and from `POST /v2/local/target-state` alike.

use fleet_log::error::{Chain, one_line};
use serde_json::Value;

use super::state::{Shared, Target};
use fleet_release::target_state;

/// Validates a target document and makes it the target: kept on disk (atomically) and
/// used from now on. A bad document changes nothing. Returns whether the target changed.
pub fn accept<R>(shared: &Shared<R>, bytes: &[u8]) -> Result<bool, String> {
    let state = target_state::parse(bytes).map_err(|e| one_line(&e))?;
    for note in &state.notes {
        log::warn!("target: {note}");
    }
    if let Some(uuid) = &shared.settings.uuid
        && &state.device_uuid != uuid
    {
        return Err(format!(
            "target is for device {}, this device is {uuid}",
            state.device_uuid
        ));
    }
    let document: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if shared
        .target
        .borrow()
        .as_ref()
        .is_some_and(|t| t.document == document)
    {
        return Ok(false);
    }
    let path = shared.settings.target_file();
    let saved = fleet_fs::ensure_dir(&shared.settings.data_dir)
        .and_then(|()| fleet_fs::atomic_write(&path, bytes, 0o600));
    if let Err(e) = saved {
        // Still run it: losing the copy on disk only matters after a restart.
        log::error!("cannot keep the new target: {}", Chain(&e));
    }
    shared.target.replace(Some(Target { state, document }));
    Ok(true)
}

/// balena's preload file in the data directory (host `/mnt/data/fleet-supervisor/apps.json`).
pub const APPS_JSON: &str = "apps.json";

/// A preloaded image's first target: when no target was ever kept and `apps.json` (balena's
/// `balena preload` format, v3 apps keyed by UUID) is there, it becomes the target, as
/// balena's `loadTargetFromFile`; it is then renamed `apps.json.preloaded` (balena's backup
/// name) so it is never read again. A bad file is logged and left in place.
pub fn preload<R>(shared: &Shared<R>) {
    let path = shared.settings.data_dir.join(APPS_JSON);
    if shared.settings.target_file().exists() || !path.exists() {
        return;
    }
    let uuid = shared
        .settings
        .uuid
        .clone()
        .or_else(|| shared.identity.borrow().as_ref().map(|i| i.uuid.clone()))
        .unwrap_or_else(|| "local".to_string());
    let loaded = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            let state = target_state::parse_apps_json(&bytes, &uuid).map_err(|e| one_line(&e))?;
            let doc: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            let empty = || Value::Object(Default::default());
            let wrapped = serde_json::json!({ uuid.as_str(): {
                "name": "",
                "config": doc.get("config").cloned().unwrap_or_else(empty),
                "apps": doc.get("apps").cloned().unwrap_or_else(empty),
            }});
            let bytes = serde_json::to_vec(&wrapped).map_err(|e| e.to_string())?;
            accept(shared, &bytes)?;
            Ok(state.apps.len())
        });
    match loaded {
        Ok(apps) => {
            log::info!("preloaded {apps} app(s) from {}", path.display());
            let mut done = path.clone().into_os_string();
            done.push(".preloaded");
            if let Err(e) = std::fs::rename(&path, &done) {
                log::warn!("{}: cannot rename it after preloading: {e}", path.display());
            }
        }
        Err(e) => log::error!("{}: not preloaded: {e}", path.display()),
    }
}
