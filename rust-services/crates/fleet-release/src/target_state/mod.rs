//! The target state: which apps, releases and services the device should run.
//!
//! The JSON follows balena's v3 target state (`GET /device/v3/<uuid>/state`): one key, the
//! device UUID, holding `apps` → app UUID → `releases` → release UUID. A release carries
//! its compose file (`composition`: YAML text or the same as a JSON object), or balena's
//! per-service form (`services.<name>.composition` + `image`), or a single `image`
//! (Dockerfile-only release → service `main`). See the crate README for an example.
//!
//! Documents only: reading and saving target files is the supervisor's (`target_file`).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Problem;
use crate::compose::{self, Compose};

/// Largest target document accepted.
pub const MAX_TARGET_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Device configuration variables (balena's `config`), passed through.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, Value>,
    #[serde(default)]
    pub apps: BTreeMap<String, AppDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDoc {
    pub id: u64,
    pub name: String,
    /// balena's `class` (`fleet`, `app`, `block`); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// balena marks the host OS app with `is_host`; such apps are not run as containers.
    #[serde(default)]
    pub is_host: bool,
    #[serde(default)]
    pub releases: BTreeMap<String, ReleaseDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDoc {
    pub id: u64,
    /// The whole compose file: YAML text or a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition: Option<Value>,
    /// A Dockerfile-only release: its one image, run as service `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Environment for every service of the app (fleet/device variables).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Per-service additions, or balena's per-service compositions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceDoc>,
    /// Top-level volumes/networks for balena's per-service form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDoc {
    /// balena's service id; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<u64>,
    /// Image reference to run (overrides the composition's `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The compose service object (balena's per-service form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition: Option<Value>,
    /// Service variables: override app-wide and compose environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Extra labels, merged over the composition's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A validated target state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetState {
    pub device_uuid: String,
    pub apps: BTreeMap<String, AppTarget>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppTarget {
    pub uuid: String,
    pub id: u64,
    pub name: String,
    /// `None`: the app stays installed with nothing running.
    pub release: Option<ReleaseTarget>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseTarget {
    pub uuid: String,
    pub id: u64,
    /// The compose with target-state environment and labels merged into each service.
    pub compose: Compose,
}

/// Why a target-state document is refused: every problem, each with its path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("target state invalid ({} problem{}): {}", problems.len(),
    if problems.len() == 1 { "" } else { "s" }, crate::join_problems(problems))]
pub struct TargetError {
    pub problems: Vec<Problem>,
}

fn invalid(path: &str, message: impl Into<String>) -> TargetError {
    TargetError {
        problems: vec![Problem::new(path, message)],
    }
}

/// Parses and validates a target-state document, reporting every problem.
pub fn parse(bytes: &[u8]) -> Result<TargetState, TargetError> {
    if bytes.len() > MAX_TARGET_BYTES {
        return Err(invalid(
            "(file)",
            format!("larger than the {MAX_TARGET_BYTES}-byte limit"),
        ));
    }
    let doc: BTreeMap<String, Value> = serde_json::from_slice(bytes)
        .map_err(|e| invalid("(file)", format!("not a JSON object: {e}")))?;
    if doc.len() != 1 {
        return Err(invalid(
            "(top level)",
            format!(
                "expected exactly one key (the device UUID), found {}",
                doc.len()
            ),
        ));
    }
    let mut problems = Vec::new();
    let Some((uuid, device)) = doc.into_iter().next() else {
        return Err(invalid("(top level)", "empty"));
    };
    let device: DeviceDoc =
        serde_json::from_value(device).map_err(|e| invalid(&uuid, e.to_string()))?;
    let mut apps = BTreeMap::new();
    for (app_uuid, app) in device.apps {
        let path = format!("{uuid}.apps.{app_uuid}");
        if !is_uuidish(&app_uuid) {
            problems.push(Problem::new(&path, "app UUID must be 1-64 of [a-z0-9-]"));
        }
        if app.is_host {
            continue;
        }
        if app.releases.len() > 1 {
            problems.push(Problem::new(
                format!("{path}.releases"),
                format!(
                    "{} releases given; a target names at most one",
                    app.releases.len()
                ),
            ));
            continue;
        }
        let mut release = None;
        for (rel_uuid, rel) in app.releases {
            let rpath = format!("{path}.releases.{rel_uuid}");
            if !is_uuidish(&rel_uuid) {
                problems.push(Problem::new(
                    &rpath,
                    "release UUID must be 1-64 of [a-z0-9-]",
                ));
            }
            match release_compose(&rpath, rel) {
                Ok((id, compose)) => {
                    release = Some(ReleaseTarget {
                        uuid: rel_uuid,
                        id,
                        compose,
                    })
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        apps.insert(
            app_uuid.clone(),
            AppTarget {
                uuid: app_uuid,
                id: app.id,
                name: app.name,
                release,
            },
        );
    }
    if problems.is_empty() {
        Ok(TargetState {
            device_uuid: uuid,
            apps,
        })
    } else {
        Err(TargetError { problems })
    }
}

fn is_uuidish(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn release_compose(path: &str, rel: ReleaseDoc) -> Result<(u64, Compose), Vec<Problem>> {
    let per_service = rel.services.values().any(|s| s.composition.is_some());
    let forms = [rel.composition.is_some(), rel.image.is_some(), per_service];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(vec![Problem::new(
            path,
            "give exactly one of `composition`, `image` or per-service `composition`",
        )]);
    }
    let prefix = |problems: Vec<Problem>, at: &str| -> Vec<Problem> {
        problems
            .into_iter()
            .map(|p| Problem::new(format!("{path}.{at}:{}", p.path), p.message))
            .collect()
    };
    let mut compose = if let Some(image) = &rel.image {
        compose::single_image(image.clone())
    } else if let Some(c) = &rel.composition {
        let parsed = match c {
            Value::String(text) => compose::parse(text),
            other => compose::from_json(other),
        };
        parsed.map_err(|e| prefix(e.problems, "composition"))?
    } else {
        let mut services = serde_json::Map::new();
        for (name, s) in &rel.services {
            let mut svc = match &s.composition {
                Some(Value::Object(o)) => o.clone(),
                _ => serde_json::Map::new(),
            };
            if let Some(image) = &s.image {
                svc.insert("image".to_string(), Value::String(image.clone()));
            }
            services.insert(name.clone(), Value::Object(svc));
        }
        let mut doc = serde_json::Map::new();
        doc.insert("version".to_string(), Value::String("2.1".to_string()));
        doc.insert("services".to_string(), Value::Object(services));
        if let Some(v) = &rel.volumes {
            doc.insert("volumes".to_string(), v.clone());
        }
        if let Some(n) = &rel.networks {
            doc.insert("networks".to_string(), n.clone());
        }
        compose::from_json(&Value::Object(doc)).map_err(|e| prefix(e.problems, "services"))?
    };
    let mut problems = Vec::new();
    for (name, overlay) in &rel.services {
        let Some(service) = compose.services.get_mut(name) else {
            problems.push(Problem::new(
                format!("{path}.services.{name}"),
                format!("service `{name}` is not in the release's composition"),
            ));
            continue;
        };
        if let (Some(image), None) = (&overlay.image, &overlay.composition) {
            service.image = image.clone();
        }
        service.labels.extend(overlay.labels.clone());
        for (key, reason) in crate::labels::check(&overlay.labels) {
            problems.push(Problem::new(
                format!("{path}.services.{name}.labels.{key}"),
                format!("service `{name}`: {reason}"),
            ));
        }
    }
    for (name, service) in compose.services.iter_mut() {
        // Precedence: compose file < app-wide variables < service variables.
        service.environment.extend(rel.environment.clone());
        if let Some(overlay) = rel.services.get(name) {
            service.environment.extend(overlay.environment.clone());
        }
    }
    if problems.is_empty() {
        Ok((rel.id, compose))
    } else {
        Err(problems)
    }
}
