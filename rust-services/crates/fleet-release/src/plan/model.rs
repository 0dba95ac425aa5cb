//! The current state as plain data: what the engine adapter reads back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Labels the supervisor puts on everything it creates.
pub const LABEL_SUPERVISED: &str = "io.fleet.supervised";
pub const LABEL_APP: &str = "io.fleet.app-uuid";
pub const LABEL_SERVICE: &str = "io.fleet.service-name";
pub const LABEL_RELEASE: &str = "io.fleet.release-uuid";
/// Digest of the container's configuration: equal digest ⇔ nothing to update.
pub const LABEL_DIGEST: &str = "io.fleet.service-digest";
/// The app's numeric id (balena's `appId`, as the supervisor API names apps).
pub const LABEL_APP_ID: &str = "io.fleet.app-id";
/// Compose name of a volume or network the supervisor created.
pub const LABEL_NAME: &str = "io.fleet.name";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Created, never started.
    Created,
    Running,
    /// Stopped after running (exited, or stopped on request). The engine's restart policy
    /// owns restarts; the planner leaves such a container alone.
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Container {
    /// Engine container name (unique).
    pub name: String,
    pub app: String,
    pub service: String,
    pub release: String,
    pub image: String,
    pub digest: String,
    pub status: ContainerStatus,
    /// Compose names of the app networks it is attached to.
    #[serde(default)]
    pub networks: BTreeSet<String>,
    /// Engine container ID (empty in plain-data states the planner's tests build).
    #[serde(default)]
    pub id: String,
    /// How often the engine restarted it (restart policy).
    #[serde(default)]
    pub restart_count: u64,
}

impl Container {
    /// A container from its engine name, image, status and labels; `None` when the
    /// supervisor did not create it.
    pub fn from_labels(
        name: &str,
        image: &str,
        status: ContainerStatus,
        labels: &BTreeMap<String, String>,
        networks: BTreeSet<String>,
    ) -> Option<Container> {
        labels.get(LABEL_SUPERVISED)?;
        Some(Container {
            name: name.to_string(),
            app: labels.get(LABEL_APP)?.clone(),
            service: labels.get(LABEL_SERVICE)?.clone(),
            release: labels.get(LABEL_RELEASE)?.clone(),
            image: image.to_string(),
            digest: labels.get(LABEL_DIGEST)?.clone(),
            status,
            networks,
            id: String::new(),
            restart_count: 0,
        })
    }
}

/// A volume or network belonging to an app; on the engine it is named `<app>_<name>` and
/// labelled with [`LABEL_APP`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owned {
    pub app: String,
    pub name: String,
}

impl Owned {
    pub fn new(app: &str, name: &str) -> Self {
        Owned {
            app: app.to_string(),
            name: name.to_string(),
        }
    }

    pub fn engine_name(&self) -> String {
        format!("{}_{}", self.app, self.name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CurrentState {
    /// Supervised containers only.
    pub containers: Vec<Container>,
    /// Image references present on the engine.
    pub images: BTreeSet<String>,
    pub volumes: BTreeSet<Owned>,
    pub networks: BTreeSet<Owned>,
    /// Apps whose update lock is held (the supervisor checks the flocks; see [`crate::update_lock`]).
    pub locked_apps: BTreeSet<String>,
}
