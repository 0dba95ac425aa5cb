//! The meaning of each [`Step`] on the plain-data model, with the engine's preconditions
//! checked. Tests use it to prove plans correct and resumable; the engine executor must
//! give each step the same effect.

use std::collections::BTreeSet;

use super::model::{Container, ContainerStatus, CurrentState};
use super::planner::Step;
use crate::target_state::TargetState;

fn find<'a>(state: &'a mut CurrentState, name: &str) -> Result<&'a mut Container, String> {
    state
        .containers
        .iter_mut()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no container {name}"))
}

/// Applies one step, or says which precondition it breaks.
pub fn apply(state: &mut CurrentState, step: &Step, target: &TargetState) -> Result<(), String> {
    match step {
        Step::FetchImage { image } => {
            state.images.insert(image.clone());
        }
        Step::RemoveImage { image } => {
            if state.containers.iter().any(|c| &c.image == image) {
                return Err(format!("image {image} is still used"));
            }
            state.images.remove(image);
        }
        Step::CreateNetwork { network, .. } => {
            if !state.networks.insert(network.clone()) {
                return Err(format!("network {network:?} exists"));
            }
        }
        Step::RemoveNetwork { network } => {
            if state
                .containers
                .iter()
                .any(|c| c.app == network.app && c.networks.contains(&network.name))
            {
                return Err(format!("network {network:?} is still used"));
            }
            state.networks.remove(network);
        }
        Step::CreateVolume { volume, .. } => {
            if !state.volumes.insert(volume.clone()) {
                return Err(format!("volume {volume:?} exists"));
            }
        }
        Step::Stop { container } | Step::HandoverKill { container, .. } => {
            let c = find(state, container)?;
            if c.status != ContainerStatus::Running {
                return Err(format!("stop of {container}, which is not running"));
            }
            c.status = ContainerStatus::Exited;
        }
        Step::Remove { container } => {
            let c = find(state, container)?;
            if c.status == ContainerStatus::Running {
                return Err(format!("remove of running {container}"));
            }
            state.containers.retain(|c| &c.name != container);
        }
        Step::Create { config } => {
            if state.containers.iter().any(|c| c.name == config.name) {
                return Err(format!("container {} exists", config.name));
            }
            if !state.images.contains(&config.spec.image) {
                return Err(format!("create {} before its image", config.name));
            }
            for v in &config.volumes {
                if !state.volumes.contains(&v.volume) {
                    return Err(format!(
                        "create {} before volume {:?}",
                        config.name, v.volume
                    ));
                }
            }
            let mut networks = BTreeSet::new();
            for n in config.spec.networks.keys() {
                if config.spec.network_mode == crate::compose::NetworkMode::Bridge {
                    let owned = super::model::Owned::new(&config.app, n);
                    if !state.networks.contains(&owned) {
                        return Err(format!("create {} before network {n}", config.name));
                    }
                    networks.insert(n.clone());
                }
            }
            state.containers.push(Container {
                name: config.name.clone(),
                app: config.app.clone(),
                service: config.service.clone(),
                release: config.release.clone(),
                image: config.spec.image.clone(),
                digest: config.digest.clone(),
                status: ContainerStatus::Created,
                networks,
                id: String::new(),
                restart_count: 0,
            });
        }
        Step::Rename { container, to } => {
            if state.containers.iter().any(|c| &c.name == to) {
                return Err(format!("rename {container} to {to}: the name is taken"));
            }
            find(state, container)?.name = to.clone();
        }
        Step::Start { container } => {
            let c = find(state, container)?.clone();
            if c.status == ContainerStatus::Running {
                return Err(format!("start of running {container}"));
            }
            let deps = target
                .apps
                .get(&c.app)
                .and_then(|a| a.release.as_ref())
                .and_then(|r| r.compose.services.get(&c.service))
                .map(|s| s.depends_on.clone())
                .unwrap_or_default();
            for dep in deps {
                let started = state.containers.iter().any(|o| {
                    o.app == c.app && o.service == dep && o.status != ContainerStatus::Created
                });
                if !started {
                    return Err(format!("start of {container} before its dependency {dep}"));
                }
            }
            find(state, container)?.status = ContainerStatus::Running;
        }
    }
    Ok(())
}

/// Applies every step in order.
pub fn apply_all(
    state: &mut CurrentState,
    steps: &[Step],
    target: &TargetState,
) -> Result<(), String> {
    for (i, step) in steps.iter().enumerate() {
        apply(state, step, target).map_err(|e| format!("step {i} ({step:?}): {e}"))?;
    }
    Ok(())
}
