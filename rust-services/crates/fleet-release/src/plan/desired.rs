//! The fully resolved configuration of each container the target asks for.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model::{
    LABEL_APP, LABEL_APP_ID, LABEL_DIGEST, LABEL_RELEASE, LABEL_SERVICE, LABEL_SUPERVISED, Owned,
};
use crate::compose::{NetworkAttachment, NetworkMode, Service};
use crate::labels::{self, BindMount, HostContext, UpdateStrategy};
use crate::target_state::TargetState;
use crate::update_lock;

/// A named volume as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeBinding {
    pub volume: Owned,
    pub target: String,
    pub read_only: bool,
}

/// Everything the engine client needs to create one container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerConfig {
    /// Engine name as balena names it: `<service>_<imageId>_<releaseId>_<commit>` (see
    /// [`container_name`]), so balena's tools and users' scripts find it. A new release is
    /// a new name, so old and new containers exist side by side during a hand-over.
    pub name: String,
    pub app: String,
    pub service: String,
    pub release: String,
    /// The compose spec, target-state environment merged.
    pub spec: Service,
    /// Final environment: supervisor-provided variables, features, then the service's own.
    pub env: BTreeMap<String, String>,
    /// Host paths bound in (features and the update-lock directory).
    pub binds: Vec<BindMount>,
    pub volumes: Vec<VolumeBinding>,
    /// Engine network name → attachment (empty with host networking).
    pub networks: BTreeMap<String, NetworkAttachment>,
    /// Service labels plus the `io.fleet.*` identity labels.
    pub labels: BTreeMap<String, String>,
    pub strategy: UpdateStrategy,
    pub handover_timeout_ms: u64,
    pub digest: String,
}

#[derive(Serialize)]
struct Digested<'a> {
    spec: &'a Service,
    env: &'a BTreeMap<String, String>,
    binds: &'a [BindMount],
    volumes: &'a [VolumeBinding],
    networks: &'a BTreeMap<String, NetworkAttachment>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// balena's container name: `<service>_<imageId>_<releaseId>_<commit>`, the commit being
/// the release UUID (the key of `releases` in a v3 target state).
pub fn container_name(service: &str, image_id: u64, release_id: u64, commit: &str) -> String {
    format!("{service}_{image_id}_{release_id}_{commit}")
}

/// The container of each service of each app's target release, keyed by (app, service),
/// with the app's services in depends_on start order.
pub fn desired_containers(target: &TargetState, host: &HostContext) -> Vec<ContainerConfig> {
    let mut out = Vec::new();
    for app in target.apps.values() {
        let Some(release) = &app.release else {
            continue;
        };
        let compose = &release.compose;
        let order = crate::compose::start_order(&compose.services)
            .unwrap_or_else(|_| compose.services.keys().cloned().collect());
        for service_name in order {
            let Some(spec) = compose.services.get(&service_name) else {
                continue;
            };
            let (service_labels, _) = labels::read(&spec.labels);
            let mut features = labels::settings(&service_labels.features, spec.network_mode, host);
            // The service's own key, scoped to its app (balena's `generateScopedKey`).
            if let Some(key) = host
                .service_api_keys
                .get(&app.id)
                .and_then(|keys| keys.get(&service_name))
            {
                for brand in ["FLEET", "BALENA", "RESIN"] {
                    let name = format!("{brand}_SUPERVISOR_API_KEY");
                    if let Some(value) = features.env.get_mut(&name) {
                        value.clone_from(key);
                    }
                }
            }

            let mut env = BTreeMap::new();
            for brand in ["FLEET", "BALENA", "RESIN"] {
                env.insert(brand.to_string(), "1".to_string());
                env.insert(format!("{brand}_APP_ID"), app.id.to_string());
                env.insert(format!("{brand}_APP_UUID"), app.uuid.clone());
                env.insert(format!("{brand}_APP_NAME"), app.name.clone());
                env.insert(format!("{brand}_SERVICE_NAME"), service_name.clone());
                env.insert(format!("{brand}_DEVICE_UUID"), target.device_uuid.clone());
                env.insert(format!("{brand}_DEVICE_TYPE"), host.device_type.clone());
            }
            env.extend(features.env);
            env.extend(spec.environment.clone());

            let mut binds = features.mounts;
            binds.extend(update_lock::lock_mounts(&app.uuid));

            let volumes: Vec<VolumeBinding> = spec
                .volumes
                .iter()
                .map(|m| VolumeBinding {
                    volume: Owned::new(&app.uuid, &m.volume),
                    target: m.target.clone(),
                    read_only: m.read_only,
                })
                .collect();
            let engine_name = |service: &str| {
                container_name(
                    service,
                    release.image_ids.get(service).copied().unwrap_or(0),
                    release.id,
                    &release.uuid,
                )
            };
            // `service:NAME` namespaces join NAME's container of this release.
            let mut spec = spec.clone();
            spec.network_mode_service = spec.network_mode_service.as_deref().map(engine_name);
            for mode in [&mut spec.ipc, &mut spec.pid] {
                if let Some(other) = mode.as_deref().and_then(|m| m.strip_prefix("service:")) {
                    *mode = Some(format!("container:{}", engine_name(other)));
                }
            }
            let spec = &spec;
            let networks: BTreeMap<String, NetworkAttachment> = match spec.network_mode {
                NetworkMode::Host | NetworkMode::None | NetworkMode::Service => BTreeMap::new(),
                NetworkMode::Bridge => spec
                    .networks
                    .iter()
                    .map(|(n, a)| (Owned::new(&app.uuid, n).engine_name(), a.clone()))
                    .collect(),
            };

            let serialized = serde_json::to_vec(&Digested {
                spec,
                env: &env,
                binds: &binds,
                volumes: &volumes,
                networks: &networks,
            })
            .unwrap_or_default();
            let digest = hex(&Sha256::digest(&serialized));

            let mut all_labels = spec.labels.clone();
            all_labels.insert(LABEL_SUPERVISED.to_string(), "1".to_string());
            all_labels.insert(LABEL_APP.to_string(), app.uuid.clone());
            all_labels.insert(LABEL_APP_ID.to_string(), app.id.to_string());
            all_labels.insert(LABEL_SERVICE.to_string(), service_name.clone());
            all_labels.insert(LABEL_RELEASE.to_string(), release.uuid.clone());
            all_labels.insert(LABEL_DIGEST.to_string(), digest.clone());
            // balena's own labels, so balena tooling recognises the containers.
            all_labels.insert("io.balena.supervised".to_string(), "true".to_string());
            all_labels.insert("io.balena.app-id".to_string(), app.id.to_string());
            all_labels.insert("io.balena.app-uuid".to_string(), app.uuid.clone());
            all_labels.insert("io.balena.service-name".to_string(), service_name.clone());
            if let Some(id) = release.service_ids.get(&service_name) {
                all_labels.insert("io.balena.service-id".to_string(), id.to_string());
            }

            out.push(ContainerConfig {
                name: engine_name(&service_name),
                app: app.uuid.clone(),
                service: service_name.clone(),
                release: release.uuid.clone(),
                spec: spec.clone(),
                env,
                binds,
                volumes,
                networks,
                labels: all_labels,
                strategy: service_labels.strategy,
                handover_timeout_ms: service_labels.handover_timeout_ms,
                digest,
            });
        }
    }
    // balena's ids make the name unique; hand-written targets may give two apps the same
    // release key and id: those containers also carry their app.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in &out {
        *seen.entry(c.name.clone()).or_default() += 1;
    }
    for c in &mut out {
        if seen.get(&c.name).is_some_and(|n| *n > 1) {
            c.name = format!("{}_{}", c.name, c.app);
        }
    }
    out
}
