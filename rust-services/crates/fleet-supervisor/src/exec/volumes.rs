//! Volume actions for the API: purging an app's data (balena's `/v1/purge`,
//! `/v2/applications/:appId/purge`) and removing volumes no target app uses
//! (`/v2/cleanup-volumes`).

use std::collections::BTreeSet;

use fleet_release::plan::Owned;

use super::{ExecError, Executor};

impl Executor {
    /// Stops and removes the app's containers (last created first) and removes its volumes;
    /// the next apply creates both again, the volumes empty. Refused while the app holds
    /// its update lock unless `force`. Returns the app UUID.
    pub async fn purge_app(&self, app: &str, force: bool) -> Result<String, ExecError> {
        let (uuid, containers) = self.app_containers(app, None).await?;
        let _lock = self.lock_for_kill(&uuid, force)?;
        for o in containers.iter().rev() {
            let name = &o.container.name;
            self.engine
                .remove_container(name, true)
                .await
                .map_err(ExecError::engine(format!("purge {uuid}: remove {name}")))?;
        }
        let state = self.current_state().await?;
        for volume in state.volumes.iter().filter(|v| v.app == uuid) {
            let name = volume.engine_name();
            self.engine
                .remove_volume(&name)
                .await
                .map_err(ExecError::engine(format!(
                    "purge {uuid}: remove volume {name}"
                )))?;
        }
        Ok(uuid)
    }

    /// Removes the supervisor's volumes not in `keep` (those of apps or volumes the target
    /// no longer has); a volume a container still uses is left, with a warning. Returns
    /// the engine names removed.
    pub async fn remove_orphan_volumes(
        &self,
        keep: &BTreeSet<Owned>,
        apps: Option<&BTreeSet<String>>,
    ) -> Result<Vec<String>, ExecError> {
        let state = self.current_state().await?;
        let mut removed = Vec::new();
        let candidates = state
            .volumes
            .iter()
            .filter(|v| !keep.contains(v))
            .filter(|v| apps.is_none_or(|apps| apps.contains(&v.app)));
        for volume in candidates {
            let name = volume.engine_name();
            match self.engine.remove_volume(&name).await {
                Ok(()) => removed.push(name),
                Err(fleet_engine::Error::Api { status: 409, .. }) => {
                    log::warn!("volume {name}: still used by a container, kept");
                }
                Err(e) => return Err(ExecError::engine(format!("remove volume {name}"))(e)),
            }
        }
        Ok(removed)
    }
}
