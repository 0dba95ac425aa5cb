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
    #[serde(deserialize_with = "numeric_id")]
    pub id: u64,
    pub name: String,
    /// balena's `class` (`fleet`, `app`, `block`); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// balena marks the host OS app with `is_host`; such apps are not run as containers.
    #[serde(default)]
    pub is_host: bool,
    /// balena's `parent_app` (the app a block belongs to); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_app: Option<String>,
    #[serde(default)]
    pub releases: BTreeMap<String, ReleaseDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDoc {
    #[serde(deserialize_with = "numeric_id")]
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
    #[serde(
        default,
        deserialize_with = "optional_numeric_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<u64>,
    #[serde(
        default,
        deserialize_with = "optional_numeric_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_id: Option<u64>,
    /// `false`: the service is installed (image fetched) but not running. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// The image's contract (balena's `contract`: requirements on the device); reported,
    /// not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<Value>,
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
    /// What the document asks for that the device accepts but does not do, each with its
    /// path: skipped host-OS and supervisor apps, `config` variables not applied, contracts,
    /// services with `running: false`. Logged and put in the state report.
    pub notes: Vec<Problem>,
    /// The host-OS release the target names (an app with `is_host`), for the OS updater.
    pub host_os: Option<HostOsRelease>,
}

/// The label on a host-OS app's service naming the signed `.fleet` bundle of that release
/// (`http://` or `https://`); without it the device's own channel (`fleet.update.url`) is
/// checked.
pub const HOST_OS_BUNDLE_LABEL: &str = "io.fleet.update.bundle";

/// A host-OS release from the target (balena's `is_host` app, as open-balena-api serves
/// the device's `should_be_operated_by__release`): handed to the OS updater, never run as
/// containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostOsRelease {
    pub app: String,
    pub app_name: String,
    /// The release's commit.
    pub release: String,
    pub release_id: u64,
    /// The bundle URL from [`HOST_OS_BUNDLE_LABEL`]; `None`: the device's channel.
    pub bundle: Option<String>,
}

/// The host-OS release of an `is_host` app: its one release and the bundle its services'
/// labels name; a problem (several releases, two bundle URLs, one that is not http(s)) as
/// the note that says why nothing is handed over.
fn host_os_release(
    app_uuid: &str,
    app: &AppDoc,
    path: &str,
) -> Result<Option<HostOsRelease>, Problem> {
    let mut releases = app.releases.iter();
    let Some((commit, rel)) = releases.next() else {
        return Ok(None);
    };
    if releases.next().is_some() {
        return Err(Problem::new(
            format!("{path}.releases"),
            "a host-OS app with several releases: nothing handed to the OS updater",
        ));
    }
    let mut bundles = BTreeMap::new();
    for (name, svc) in &rel.services {
        let from_composition = svc
            .composition
            .as_ref()
            .and_then(|c| c.get("labels"))
            .and_then(|l| l.get(HOST_OS_BUNDLE_LABEL))
            .and_then(Value::as_str);
        if let Some(url) = svc
            .labels
            .get(HOST_OS_BUNDLE_LABEL)
            .map(String::as_str)
            .or(from_composition)
        {
            bundles.insert(url.to_string(), name.clone());
        }
    }
    if bundles.len() > 1 {
        return Err(Problem::new(
            format!("{path}.releases.{commit}.services"),
            format!(
                "services name different `{HOST_OS_BUNDLE_LABEL}` bundles: nothing handed to the OS updater"
            ),
        ));
    }
    let bundle = bundles.into_iter().next();
    if let Some((url, service)) = &bundle {
        let lower = url.to_ascii_lowercase();
        let http = lower.starts_with("https://") || lower.starts_with("http://");
        if !http || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Problem::new(
                format!(
                    "{path}.releases.{commit}.services.{service}.labels.{HOST_OS_BUNDLE_LABEL}"
                ),
                "not an http(s) URL: nothing handed to the OS updater",
            ));
        }
    }
    Ok(Some(HostOsRelease {
        app: app_uuid.to_string(),
        app_name: app.name.clone(),
        release: commit.clone(),
        release_id: rel.id,
        bundle: bundle.map(|(url, _)| url),
    }))
}

/// balena's supervisor app UUIDs (one per architecture; the same on balenaCloud and
/// openBalena) and the names its service has in them: the supervisor does not run itself
/// as a user container.
pub const SUPERVISOR_APP_UUIDS: &[&str] = &[
    "52e35121417640b1b28a680504e4039b",
    "900de4f3cbac4b9bbd232885a35e407b",
    "2e66a95795c149959c69472a8c2f92b8",
    "531b357e155c480cbec0fdd33041a1f5",
    "6822565f766e413e96d9bebe2227cdcc",
];
/// Service names of the supervisor itself.
pub const SUPERVISOR_SERVICE_NAMES: &[&str] = &["balena-supervisor", "resin-supervisor"];

/// `config` variables the device applies (after the `BALENA_`/`RESIN_` prefix is dropped):
/// the poll interval (the daemon), and the default update strategy and hand-over timeout
/// (as `io.balena.update.*` labels on services that set none, as balena's API does).
pub const APPLIED_CONFIG: &[&str] = &[
    "SUPERVISOR_POLL_INTERVAL",
    "SUPERVISOR_UPDATE_STRATEGY",
    "SUPERVISOR_HANDOVER_TIMEOUT",
];

/// A `config` variable's name without balena's `BALENA_`/`RESIN_` prefix.
pub fn config_name(key: &str) -> &str {
    key.strip_prefix("BALENA_")
        .or_else(|| key.strip_prefix("RESIN_"))
        .unwrap_or(key)
}

/// The device `config` variable `name` (unprefixed, `SUPERVISOR_POLL_INTERVAL`) of a target
/// document, with balena's precedence: `BALENA_name` over `RESIN_name` over `name` (balena's
/// API sends its default `RESIN_` value after a user's `BALENA_` one).
pub fn config_var<'a>(document: &'a Value, name: &str) -> Option<&'a Value> {
    let config = document
        .as_object()?
        .values()
        .next()?
        .get("config")?
        .as_object()?;
    ["BALENA_", "RESIN_", ""]
        .iter()
        .find_map(|prefix| config.get(&format!("{prefix}{name}")))
}

/// An id as balena sends it: a number or a numeric string.
fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn numeric_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    id_of(&v).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "id must be a non-negative integer or a numeric string, found {v}"
        ))
    })
}

fn optional_numeric_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => id_of(&v).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "id must be a non-negative integer or a numeric string, found {v}"
            ))
        }),
    }
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
    /// balena's service ids (`services.<name>.id`) where the target gives them: the
    /// containers' `io.balena.service-id` label.
    pub service_ids: BTreeMap<String, u64>,
    /// balena's image ids (`services.<name>.image_id`) where the target gives them: part of
    /// the container name `<service>_<imageId>_<releaseId>_<commit>` (0 when absent).
    pub image_ids: BTreeMap<String, u64>,
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
    let mut notes = Vec::new();
    let mut default_labels = BTreeMap::new();
    for (key, value) in &device.config {
        let name = config_name(key);
        let path = format!("{uuid}.config.{key}");
        let label = match name {
            "SUPERVISOR_UPDATE_STRATEGY" => Some("update.strategy"),
            "SUPERVISOR_HANDOVER_TIMEOUT" => Some("update.handover-timeout"),
            _ => None,
        };
        if let (Some(label), Some(v)) = (label, config_text(value)) {
            default_labels.insert(label, v);
        }
        if !APPLIED_CONFIG.contains(&name)
            && (name.starts_with("HOST_") || name.starts_with("SUPERVISOR_"))
        {
            notes.push(Problem::new(
                path,
                format!("configuration variable `{key}` is not applied by this device"),
            ));
        }
    }
    let mut apps = BTreeMap::new();
    let mut host_os = None;
    for (app_uuid, mut app) in device.apps {
        let path = format!("{uuid}.apps.{app_uuid}");
        if !is_uuidish(&app_uuid) {
            problems.push(Problem::new(&path, "app UUID must be 1-64 of [a-z0-9-]"));
        }
        if app.is_host {
            notes.push(Problem::new(
                &path,
                format!(
                    "app `{}` is the host OS (`is_host`): not run as containers, its release goes to the OS updater",
                    app.name
                ),
            ));
            match host_os_release(&app_uuid, &app, &path) {
                Ok(Some(release)) if host_os.is_none() => host_os = Some(release),
                Ok(Some(_)) => notes.push(Problem::new(
                    &path,
                    "a second host-OS app: only the first is handed to the OS updater",
                )),
                Ok(None) => {}
                Err(note) => notes.push(note),
            }
            continue;
        }
        if is_supervisor_app(&app_uuid, &app) {
            notes.push(Problem::new(
                &path,
                format!(
                    "app `{}` is balena's supervisor: this device runs its own, skipped",
                    app.name
                ),
            ));
            continue;
        }
        for (rel_uuid, rel) in app.releases.iter_mut() {
            for (name, svc) in rel.services.iter_mut() {
                let spath = format!("{path}.releases.{rel_uuid}.services.{name}");
                if svc.contract.is_some() {
                    notes.push(Problem::new(
                        format!("{spath}.contract"),
                        format!(
                            "service `{name}`: the image's contract is not checked by this device"
                        ),
                    ));
                }
                for (label, value) in &default_labels {
                    let set = crate::labels::PREFIXES
                        .iter()
                        .any(|p| svc.labels.contains_key(&format!("{p}{label}")));
                    if !set {
                        svc.labels
                            .insert(format!("io.balena.{label}"), value.clone());
                    }
                }
            }
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
            let service_ids = rel
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.id?)))
                .collect();
            let image_ids = rel
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.image_id?)))
                .collect();
            match release_compose(&rpath, rel, &mut notes) {
                Ok((id, compose)) => {
                    release = Some(ReleaseTarget {
                        uuid: rel_uuid,
                        id,
                        compose,
                        service_ids,
                        image_ids,
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
            notes,
            host_os,
        })
    } else {
        Err(TargetError { problems })
    }
}

/// balena's preload file (`apps.json`, written by `balena preload`): `{ config?, apps, pinDevice? }`
/// with `apps` as in the v3 target state (keyed by app UUID, each with its release), read as
/// the target of device `device_uuid`. `pinDevice` is reported (pinning is the server's).
/// The legacy forms (a list, or apps keyed by numeric id) are refused with the reason.
pub fn parse_apps_json(bytes: &[u8], device_uuid: &str) -> Result<TargetState, TargetError> {
    if bytes.len() > MAX_TARGET_BYTES {
        return Err(invalid(
            "(file)",
            format!("larger than the {MAX_TARGET_BYTES}-byte limit"),
        ));
    }
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid("(file)", format!("not JSON: {e}")))?;
    let Value::Object(mut doc) = doc else {
        return Err(invalid(
            "(top level)",
            "a legacy apps.json (a list of apps) is not supported: preload with a v3 apps.json",
        ));
    };
    let pin = doc.remove("pinDevice");
    let config = doc
        .remove("config")
        .unwrap_or_else(|| Value::Object(Default::default()));
    let apps = doc
        .remove("apps")
        .unwrap_or_else(|| Value::Object(Default::default()));
    // balena's loadTargetFromFile reads only these keys: others are noted, not refused.
    let unknown: Vec<String> = doc.keys().cloned().collect();
    if let Some(id) = apps.as_object().and_then(|a| {
        a.keys()
            .find(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()))
    }) {
        return Err(invalid(
            &format!("apps.{id}"),
            "a v2 apps.json (apps keyed by numeric id) is not supported: preload with a v3 apps.json (apps keyed by UUID)",
        ));
    }
    let wrapped = serde_json::json!({ device_uuid: { "config": config, "apps": apps } });
    let bytes = serde_json::to_vec(&wrapped).map_err(|e| invalid("(file)", e.to_string()))?;
    let mut state = parse(&bytes)?;
    for key in unknown {
        state.notes.push(Problem::new(
            &key,
            format!("unknown apps.json key `{key}`: ignored"),
        ));
    }
    if pin.is_some_and(|p| p == Value::Bool(true)) {
        state.notes.push(Problem::new(
            "pinDevice",
            "the device is not pinned to the preloaded release by this device: pin it on the server",
        ));
    }
    Ok(state)
}

fn config_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// balena's supervisor app: one of its known UUIDs, or an app whose every service is the
/// supervisor (a self-hosted server may give it another UUID).
fn is_supervisor_app(uuid: &str, app: &AppDoc) -> bool {
    let services: Vec<&String> = app
        .releases
        .values()
        .flat_map(|r| r.services.keys())
        .collect();
    SUPERVISOR_APP_UUIDS.contains(&uuid)
        || (!services.is_empty()
            && services
                .iter()
                .all(|s| SUPERVISOR_SERVICE_NAMES.contains(&s.as_str())))
}

fn is_uuidish(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The compose of a checked file; what it drops or ignores goes to the notes (logged and
/// reported), so a key this device does not know does not stop the update.
fn accepted(
    checked: compose::Checked,
    notes: &mut Vec<Problem>,
    at: &str,
) -> Result<Compose, Vec<Problem>> {
    let prefixed = |problems: Vec<Problem>| {
        problems
            .into_iter()
            .map(|p| Problem::new(format!("{at}:{}", p.path), p.message))
            .collect::<Vec<_>>()
    };
    notes.extend(prefixed(checked.ignored));
    checked.compose.ok_or_else(|| prefixed(checked.problems))
}

fn release_compose(
    path: &str,
    mut rel: ReleaseDoc,
    notes: &mut Vec<Problem>,
) -> Result<(u64, Compose), Vec<Problem>> {
    // balena's `running: false`: installed, not running. This device does not keep
    // stopped services: such a service is left out and reported.
    let stopped: Vec<String> = rel
        .services
        .iter()
        .filter(|(_, s)| s.running == Some(false))
        .map(|(n, _)| n.clone())
        .collect();
    for name in &stopped {
        rel.services.remove(name);
        notes.push(Problem::new(
            format!("{path}.services.{name}.running"),
            format!("service `{name}`: `running: false` services are not installed by this device"),
        ));
    }
    let whole = rel.composition.is_some() || rel.image.is_some();
    if rel.composition.is_some() && rel.image.is_some() {
        return Err(vec![Problem::new(
            path,
            "give at most one of `composition` and `image`",
        )]);
    }
    if whole && rel.services.values().any(|s| s.composition.is_some()) {
        return Err(vec![Problem::new(
            path,
            "per-service `composition` cannot be combined with a release `composition` or `image`",
        )]);
    }
    let mut compose = if let Some(image) = &rel.image {
        compose::single_image(image.clone())
    } else if let Some(c) = &rel.composition {
        let checked = match c {
            Value::String(text) => compose::check(text),
            other => compose::check_json(other),
        };
        accepted(checked, notes, &format!("{path}.composition"))?
    } else if rel.services.is_empty() {
        // balena's release without services: nothing runs.
        Compose {
            services: BTreeMap::new(),
            volumes: Default::default(),
            networks: [compose::DEFAULT_NETWORK.to_string()].into(),
            volume_options: BTreeMap::new(),
            network_options: BTreeMap::new(),
        }
    } else {
        // balena's v3 form: every service has its `image`; `composition` (the builder's
        // compose service) is optional (an image-only service has none).
        let mut services = serde_json::Map::new();
        for (name, s) in &rel.services {
            let mut svc = match &s.composition {
                Some(Value::Object(o)) => o.clone(),
                _ => serde_json::Map::new(),
            };
            // The builder's `build` is for the builder (the API drops it too).
            svc.remove("build");
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
        accepted(
            compose::check_json(&Value::Object(doc)),
            notes,
            &format!("{path}.services"),
        )?
    };
    for name in &stopped {
        compose.services.remove(name);
    }
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
    compose::add_feature_volumes(&mut compose);
    if problems.is_empty() {
        Ok((rel.id, compose))
    } else {
        Err(problems)
    }
}
