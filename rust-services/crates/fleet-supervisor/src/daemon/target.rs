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
