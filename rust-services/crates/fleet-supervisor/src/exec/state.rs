//! Reading the current state back from the engine: everything the supervisor labelled.

use std::collections::{BTreeMap, BTreeSet};

use fleet_engine::{ContainerInspect, Engine};

use super::ExecError;
use fleet_release::plan::{
    Container, ContainerStatus, CurrentState, LABEL_APP, LABEL_APP_ID, LABEL_NAME,
    LABEL_SUPERVISED, Owned,
};

/// A supervised container as read from the engine, with what the API reports beyond the
/// planner's model.
#[derive(Debug, Clone)]
pub struct Observed {
    pub container: Container,
    pub app_id: Option<String>,
    /// Engine creation time (RFC 3339), to restart an app in the order it was started.
    pub created: String,
}

/// Maps an engine status to the planner's three states. `restarting` and `paused` count
/// as running: replacing such a container must stop it first.
pub fn status(engine_status: &str) -> ContainerStatus {
    match engine_status {
        "created" => ContainerStatus::Created,
        "running" | "restarting" | "paused" => ContainerStatus::Running,
        _ => ContainerStatus::Exited,
    }
}

/// The compose name of an app-owned engine object: its `io.fleet.name` label, else the
/// engine name without the `<app>_` prefix.
fn owned(name: &str, labels: &BTreeMap<String, String>) -> Option<Owned> {
    let app = labels.get(LABEL_APP)?;
    let compose_name = match labels.get(LABEL_NAME) {
        Some(n) => n.clone(),
        None => name.strip_prefix(&format!("{app}_"))?.to_string(),
    };
    Some(Owned::new(app, &compose_name))
}

fn observed(inspect: ContainerInspect) -> Option<Observed> {
    let name = inspect.name.trim_start_matches('/').to_string();
    let labels = &inspect.config.labels;
    let app = labels.get(LABEL_APP)?.clone();
    let prefix = format!("{app}_");
    let networks: BTreeSet<String> = inspect
        .network_settings
        .as_ref()
        .map(|n| {
            n.networks
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut container = Container::from_labels(
        &name,
        &inspect.config.image,
        status(&inspect.state.status),
        labels,
        networks,
    )?;
    container.id = inspect.id.clone();
    container.restart_count = inspect.restart_count;
    Some(Observed {
        container,
        app_id: labels.get(LABEL_APP_ID).cloned(),
        created: inspect.created.clone(),
    })
}

/// Every supervised container, inspected.
pub async fn containers(engine: &Engine) -> Result<Vec<Observed>, ExecError> {
    let list = engine
        .list_containers_labelled(LABEL_SUPERVISED)
        .await
        .map_err(ExecError::engine("list containers"))?;
    let mut out = Vec::with_capacity(list.len());
    for summary in list {
        // Gone between list and inspect: it is not part of the state any more.
        let Some(inspect) = engine
            .inspect_container(&summary.id)
            .await
            .map_err(ExecError::engine("inspect container"))?
        else {
            continue;
        };
        out.extend(observed(inspect));
    }
    out.sort_by(|a, b| a.container.name.cmp(&b.container.name));
    Ok(out)
}

/// Every name the engine's images answer to (tags and `repo@sha256:…` digests).
pub async fn image_refs(engine: &Engine) -> Result<BTreeSet<String>, ExecError> {
    Ok(engine
        .list_images()
        .await
        .map_err(ExecError::engine("list images"))?
        .into_iter()
        .flat_map(|i| i.repo_tags.into_iter().chain(i.repo_digests))
        .filter(|t| t != "<none>:<none>" && t != "<none>@<none>")
        .flat_map(|t| {
            // A compose `image: name` means `name:latest`; list both spellings.
            let short = t.strip_suffix(":latest").map(str::to_string);
            std::iter::once(t).chain(short)
        })
        .collect())
}

/// The planner's view of the engine, without the locks (the caller adds them).
pub async fn read(engine: &Engine) -> Result<(CurrentState, Vec<Observed>), ExecError> {
    let observed = containers(engine).await?;
    let images = image_refs(engine).await?;
    let volumes = engine
        .list_volumes_labelled(LABEL_APP)
        .await
        .map_err(ExecError::engine("list volumes"))?
        .into_iter()
        .filter_map(|v| owned(&v.name, &v.labels))
        .collect();
    let networks = engine
        .list_networks_labelled(LABEL_APP)
        .await
        .map_err(ExecError::engine("list networks"))?
        .into_iter()
        .filter_map(|n| owned(&n.name, &n.labels))
        .collect();
    let state = CurrentState {
        containers: observed.iter().map(|o| o.container.clone()).collect(),
        images,
        volumes,
        networks,
        locked_apps: BTreeSet::new(),
    };
    Ok((state, observed))
}
