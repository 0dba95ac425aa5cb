//! Service states read from the Engine API, for a [`crate::daemon::Reconciler`] to return from
//! `service_states`: one list call plus one inspect per supervised container (the restart
//! count is only in the inspect answer).

use fleet_engine::Engine;

use crate::daemon::{ReconcileError, ServiceState, Subnet};
use crate::plan::{LABEL_APP, LABEL_RELEASE, LABEL_SERVICE, LABEL_SUPERVISED};

pub async fn from_engine(engine: &Engine) -> Result<Vec<ServiceState>, ReconcileError> {
    let failed = |e: fleet_engine::Error| ReconcileError::Failed(fleet_log::error::one_line(&e));
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

/// Subnets of the engine's `bridge` networks. Other drivers are left out on purpose: a
/// macvlan or ipvlan network's subnet is the LAN itself.
pub async fn bridge_subnets(engine: &Engine) -> Result<Vec<Subnet>, ReconcileError> {
    let networks = engine
        .list_networks()
        .await
        .map_err(|e| ReconcileError::Failed(fleet_log::error::one_line(&e)))?;
    let mut out = Vec::new();
    for n in networks.iter().filter(|n| n.driver == "bridge") {
        for pool in n.ipam.config.iter().filter(|p| !p.subnet.is_empty()) {
            match pool.subnet.parse() {
                Ok(s) => out.push(s),
                Err(e) => log::warn!("network {}: subnet {e}", n.name),
            }
        }
    }
    Ok(out)
}
