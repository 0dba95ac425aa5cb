//! Service states read from the Engine API, for a [`super::Reconciler`] to return from
//! `service_states`: one list call plus one inspect per supervised container (the restart
//! count is only in the inspect answer).

use fleet_engine::Engine;

use super::{ReconcileError, ServiceState};
use crate::plan::{LABEL_APP, LABEL_RELEASE, LABEL_SERVICE, LABEL_SUPERVISED};

pub async fn from_engine(engine: &Engine) -> Result<Vec<ServiceState>, ReconcileError> {
    let failed = |e: fleet_engine::Error| ReconcileError::Failed(e.to_string());
    let mut out = Vec::new();
    for c in engine.list_containers(true).await.map_err(failed)? {
        if !c.labels.contains_key(LABEL_SUPERVISED) {
            continue;
        }
        let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
        // Gone between the list and the inspect: report what the list said.
        let inspect = engine.inspect_container(&c.id).await.map_err(failed)?;
        out.push(ServiceState {
            app: label(LABEL_APP),
            service: label(LABEL_SERVICE),
            release: label(LABEL_RELEASE),
            image: inspect
                .as_ref()
                .map_or_else(|| c.image.clone(), |i| i.config.image.clone()),
            container_id: c.id.clone(),
            status: inspect
                .as_ref()
                .map_or_else(|| c.state.clone(), |i| i.state.status.clone()),
            restart_count: inspect.map_or(0, |i| i.restart_count),
        });
    }
    out.sort_by(|a, b| (&a.app, &a.service, &a.release).cmp(&(&b.app, &b.service, &b.release)));
    Ok(out)
}
