//! Service states read from the Engine API, for a [`crate::daemon::Reconciler`] to return from
//! `service_states`: one list call plus one inspect per supervised container (the restart
//! count is only in the inspect answer).

use fleet_engine::Engine;

use crate::daemon::{LegacyIds, ReconcileError, ServiceState, Subnet};
use fleet_release::plan::{
    LABEL_APP, LABEL_APP_ID, LABEL_RELEASE, LABEL_SERVICE, LABEL_SUPERVISED,
};

pub async fn from_engine(engine: &Engine) -> Result<Vec<ServiceState>, ReconcileError> {
    let failed = |e: fleet_engine::Error| ReconcileError::failed(e);
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
            ids: c
                .names
                .first()
                .and_then(|n| legacy_ids(n.trim_start_matches('/'), &label(LABEL_APP_ID))),
        });
    }
    out.sort_by(|a, b| (&a.app, &a.service, &a.release).cmp(&(&b.app, &b.service, &b.release)));
    Ok(out)
}

/// balena's ids of a container named `<service>_<imageId>_<releaseId>_<commit>` (the
/// service name may hold `_` itself, so the name is read from the right).
pub fn legacy_ids(name: &str, app_id: &str) -> Option<LegacyIds> {
    let mut parts = name.rsplitn(4, '_');
    let (_commit, release_id, image_id, _service) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(LegacyIds {
        app_id: app_id.parse().ok()?,
        image_id: image_id.parse().ok()?,
        release_id: release_id.parse().ok()?,
    })
}

/// Image references present on the engine (tags and digests), for the state reports'
/// `Downloaded` images.
pub async fn image_refs(
    engine: &Engine,
) -> Result<std::collections::BTreeSet<String>, ReconcileError> {
    super::state::image_refs(engine)
        .await
        .map_err(ReconcileError::failed)
}

#[cfg(test)]
#[test]
fn legacy_ids_are_read_from_the_right_of_the_name() {
    let ids = legacy_ids("my_web_12_34_0c1f9a", "7").unwrap();
    assert_eq!((ids.app_id, ids.image_id, ids.release_id), (7, 12, 34));
    assert_eq!(legacy_ids("web", "7"), None);
    assert_eq!(legacy_ids("web_x_34_0c1f", "7"), None);
}

/// Subnets of the engine's `bridge` networks. Other drivers are left out on purpose: a
/// macvlan or ipvlan network's subnet is the LAN itself.
pub async fn bridge_subnets(engine: &Engine) -> Result<Vec<Subnet>, ReconcileError> {
    let networks = engine
        .list_networks()
        .await
        .map_err(ReconcileError::failed)?;
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
