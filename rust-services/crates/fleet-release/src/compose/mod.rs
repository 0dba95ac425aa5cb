//! balena's documented subset of Compose v2 to v2.4 (`docker-compose.yml`) as typed service specs.
//!
//! Every key of the subset is modelled; any other key is refused with a [`Problem`] naming
//! the key and the service, and all problems of a file are reported at once.

pub mod interpolate;
mod parse;
mod scalar;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Problem;

pub use crate::network_mode::NetworkMode;
pub use parse::{MAX_COMPOSE_BYTES, start_order};
pub use scalar::split_command;

/// Service name of a single-image (Dockerfile-only) release.
pub const SINGLE_IMAGE_SERVICE: &str = "main";
/// Volume of a single-image release, mounted at `/data`; resinOS's name, so data of a
/// device moved from resinOS carries over.
pub const LEGACY_DATA_VOLUME: &str = "resin-data";
/// The app's default bridge network, always present.
pub const DEFAULT_NETWORK: &str = "default";

/// A parsed compose file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compose {
    pub services: BTreeMap<String, Service>,
    /// Named volumes declared at top level (plus `resin-data` when a service uses it).
    pub volumes: BTreeSet<String>,
    /// Networks declared at top level plus [`DEFAULT_NETWORK`].
    pub networks: BTreeSet<String>,
    /// Engine options of declared volumes (only those that set some).
    pub volume_options: BTreeMap<String, VolumeOptions>,
    /// Engine options of declared networks (only those that set some).
    pub network_options: BTreeMap<String, NetworkOptions>,
}

/// A declared volume's `driver_opts` and `labels`, passed to the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VolumeOptions {
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A declared network's engine options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkOptions {
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub internal: bool,
    pub enable_ipv6: bool,
    pub ipam: Vec<IpamPool>,
}

/// One `ipam.config` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    No,
    OnFailure,
    UnlessStopped,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkAttachment {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    pub host_ip: Option<String>,
    /// `None`: the engine picks a host port.
    pub host_port: Option<u16>,
    /// A host range for one container port (`8000-9000:80`): the engine picks a free port
    /// from `host_port` to this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port_end: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExposedPort {
    pub port: u16,
    pub protocol: Protocol,
}

/// A named volume mounted into a service (bind mounts are refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeMount {
    pub volume: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceMapping {
    pub host: String,
    pub container: String,
    pub permissions: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// Engine form: `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub start_period_ms: Option<u64>,
    pub retries: Option<u32>,
}

/// One service of the compose file, with the defaults that matter already applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Start order only: these services are started before this one.
    pub depends_on: Vec<String>,
    /// Default [`RestartPolicy::Always`].
    pub restart: RestartPolicy,
    pub network_mode: NetworkMode,
    /// The service whose network namespace `network_mode: service:NAME` joins; in a
    /// planned container, its engine container name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode_service: Option<String>,
    /// Bridge networks by compose name (empty with host networking).
    pub networks: BTreeMap<String, NetworkAttachment>,
    pub ports: Vec<PortMapping>,
    pub expose: Vec<ExposedPort>,
    pub volumes: Vec<VolumeMount>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub devices: Vec<DeviceMapping>,
    /// Always holds `core` (0 unless the file sets it: a crash loop cannot fill the disk).
    pub ulimits: BTreeMap<String, Ulimit>,
    pub tmpfs: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_grace_period_ms: Option<u64>,
    pub healthcheck: Option<Healthcheck>,
    pub mem_limit: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub sysctls: BTreeMap<String, String>,
    pub dns: Vec<String>,
    /// `host:ip` entries.
    pub extra_hosts: Vec<String>,
    pub hostname: Option<String>,
    pub read_only: bool,
    pub security_opt: Vec<String>,
    pub group_add: Vec<String>,
    pub init: Option<bool>,
    // Keys added after the first release: left out of the serialized form while unset, so
    // the digest of a service that does not use them (and its container) stays the same.
    /// `restart: on-failure:N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_max_retries: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    /// `cpuset` (CPUs, `0-2` or `0,1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
}

impl Service {
    /// A service with only an image and every default applied.
    pub fn with_image(image: impl Into<String>) -> Self {
        let mut networks = BTreeMap::new();
        networks.insert(DEFAULT_NETWORK.to_string(), NetworkAttachment::default());
        Service {
            image: image.into(),
            command: None,
            entrypoint: None,
            environment: BTreeMap::new(),
            labels: BTreeMap::new(),
            depends_on: Vec::new(),
            restart: RestartPolicy::Always,
            network_mode: NetworkMode::Bridge,
            network_mode_service: None,
            networks,
            ports: Vec::new(),
            expose: Vec::new(),
            volumes: Vec::new(),
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            devices: Vec::new(),
            ulimits: BTreeMap::from([("core".to_string(), Ulimit { soft: 0, hard: 0 })]),
            tmpfs: Vec::new(),
            working_dir: None,
            user: None,
            stop_signal: None,
            stop_grace_period_ms: None,
            healthcheck: None,
            mem_limit: None,
            cpu_shares: None,
            sysctls: BTreeMap::new(),
            dns: Vec::new(),
            extra_hosts: Vec::new(),
            hostname: None,
            read_only: false,
            security_opt: Vec::new(),
            group_add: Vec::new(),
            init: None,
            restart_max_retries: None,
            tty: false,
            cgroup_parent: None,
            cpu_quota: None,
            cpuset: None,
            dns_opt: Vec::new(),
            dns_search: Vec::new(),
            domainname: None,
            ipc: None,
            mac_address: None,
            mem_reservation: None,
            oom_score_adj: None,
            pid: None,
            pids_limit: None,
            shm_size: None,
            userns_mode: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("compose file invalid ({} problem{}): {}", problems.len(),
    if problems.len() == 1 { "" } else { "s" }, crate::join_problems(problems))]
pub struct ComposeError {
    pub problems: Vec<Problem>,
}

/// Parses compose YAML (JSON is YAML too), collecting every problem.
pub fn parse(text: &str) -> Result<Compose, ComposeError> {
    parse::parse_str(text).map_err(|problems| ComposeError { problems })
}

/// A compose file checked as [`parse`] does, with what it sets that is accepted but not
/// acted on.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The parsed file; `None` when there are problems.
    pub compose: Option<Compose>,
    /// Why the file is refused (what [`parse`] reports).
    pub problems: Vec<Problem>,
    /// Accepted but not acted on, each with its path: a `depends_on` condition
    /// `service_healthy` (services are only started in dependency order, health is not
    /// waited for) and labels under the supervisor's prefixes that it does not read
    /// (see [`labels::unread`](crate::labels::unread)). [`parse`] accepts them silently.
    pub ignored: Vec<Problem>,
}

/// Checks compose YAML (or JSON) like [`parse`], also listing what is accepted but ignored.
pub fn check(text: &str) -> Checked {
    parse::check_str(text)
}

/// [`check`] for a user's project file as balena's builder reads it (`fleet compose
/// check`): its variables substituted from `vars` (see [`interpolate`]), a service with
/// `build` and no `image` accepted with a warning, what the builder refuses refused.
pub fn check_project(text: &str, vars: &dyn Fn(&str) -> Option<String>) -> Checked {
    parse::check_project_str(text, vars)
}

/// Parses an already-decoded document (the target state may carry the compose as a JSON
/// object).
pub fn from_json(value: &serde_json::Value) -> Result<Compose, ComposeError> {
    parse::parse_value(json_to_yaml(value)).map_err(|problems| ComposeError { problems })
}

/// [`check`] for an already-decoded document.
pub fn check_json(value: &serde_json::Value) -> Checked {
    parse::check_value(json_to_yaml(value))
}

/// serde_json → YAML value by hand: the workspace's `arbitrary_precision` makes serde
/// serialize JSON numbers as maps, so a generic conversion would garble them.
fn json_to_yaml(value: &serde_json::Value) -> serde_norway::Value {
    use serde_json::Value as J;
    use serde_norway::Value as Y;
    match value {
        J::Null => Y::Null,
        J::Bool(b) => Y::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Y::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Y::Number(u.into())
            } else {
                Y::Number(n.as_f64().unwrap_or(f64::NAN).into())
            }
        }
        J::String(s) => Y::String(s.clone()),
        J::Array(items) => Y::Sequence(items.iter().map(json_to_yaml).collect()),
        J::Object(map) => Y::Mapping(
            map.iter()
                .map(|(k, v)| (Y::String(k.clone()), json_to_yaml(v)))
                .collect(),
        ),
    }
}

/// balena's `features.extra-firmware`: the app's `extra-firmware` volume at
/// `/extra-firmware` in each service that asks for it, declared for the app. Run after
/// every change of labels (compose parse, target-state label overlay); idempotent.
pub fn add_feature_volumes(compose: &mut Compose) {
    use crate::labels::{EXTRA_FIRMWARE_TARGET, EXTRA_FIRMWARE_VOLUME, Feature};
    for service in compose.services.values_mut() {
        let wants = crate::labels::read(&service.labels)
            .0
            .features
            .contains(&Feature::ExtraFirmware);
        if wants
            && !service
                .volumes
                .iter()
                .any(|m| m.target == EXTRA_FIRMWARE_TARGET)
        {
            service.volumes.push(VolumeMount {
                volume: EXTRA_FIRMWARE_VOLUME.to_string(),
                target: EXTRA_FIRMWARE_TARGET.to_string(),
                read_only: false,
            });
            compose.volumes.insert(EXTRA_FIRMWARE_VOLUME.to_string());
        }
    }
}

/// A release made of one Dockerfile-built image, as balena's builder composes it
/// (`defaultComposition`): service `main`, privileged, tty, restart always, host network,
/// `resin-data` at `/data`, and the kernel-modules, firmware, dbus, supervisor-api and
/// balena-api features.
pub fn single_image(image: impl Into<String>) -> Compose {
    let mut main = Service::with_image(image);
    main.privileged = true;
    main.tty = true;
    main.network_mode = NetworkMode::Host;
    main.networks.clear();
    main.volumes.push(VolumeMount {
        volume: LEGACY_DATA_VOLUME.to_string(),
        target: "/data".to_string(),
        read_only: false,
    });
    for feature in [
        "kernel-modules",
        "firmware",
        "dbus",
        "supervisor-api",
        "resin-api",
    ] {
        main.labels
            .insert(format!("io.resin.features.{feature}"), "1".to_string());
    }
    Compose {
        services: BTreeMap::from([(SINGLE_IMAGE_SERVICE.to_string(), main)]),
        volumes: BTreeSet::from([LEGACY_DATA_VOLUME.to_string()]),
        networks: BTreeSet::from([DEFAULT_NETWORK.to_string()]),
        volume_options: BTreeMap::new(),
        network_options: BTreeMap::new(),
    }
}
