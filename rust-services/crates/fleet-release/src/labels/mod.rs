//! Feature labels (`io.fleet.`, `io.balena.`, `io.resin.` prefixes) and the update-strategy
//! labels, turned into concrete container settings.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::network_mode::NetworkMode;

/// Accepted label prefixes, newest first.
pub const PREFIXES: &[&str] = &["io.fleet.", "io.balena.", "io.resin."];

/// Default `update.handover-timeout`, as balena documents it.
pub const DEFAULT_HANDOVER_TIMEOUT_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    BalenaSocket,
    Dbus,
    Sysfs,
    Procfs,
    KernelModules,
    Firmware,
    JournalLogs,
    SupervisorApi,
    BalenaApi,
}

impl Feature {
    pub const ALL: [Feature; 9] = [
        Feature::BalenaSocket,
        Feature::Dbus,
        Feature::Sysfs,
        Feature::Procfs,
        Feature::KernelModules,
        Feature::Firmware,
        Feature::JournalLogs,
        Feature::SupervisorApi,
        Feature::BalenaApi,
    ];

    /// The label suffix after the prefix and `features.`.
    pub fn name(self) -> &'static str {
        match self {
            Feature::BalenaSocket => "balena-socket",
            Feature::Dbus => "dbus",
            Feature::Sysfs => "sysfs",
            Feature::Procfs => "procfs",
            Feature::KernelModules => "kernel-modules",
            Feature::Firmware => "firmware",
            Feature::JournalLogs => "journal-logs",
            Feature::SupervisorApi => "supervisor-api",
            Feature::BalenaApi => "balena-api",
        }
    }

    /// Also balena's legacy names (`io.resin.features.resin-api`, `…resin-socket`: what
    /// balena-cli's default composition for a Dockerfile project still labels).
    fn from_name(s: &str) -> Option<Feature> {
        match s {
            "resin-api" => Some(Feature::BalenaApi),
            "resin-socket" => Some(Feature::BalenaSocket),
            _ => Feature::ALL.into_iter().find(|f| f.name() == s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateStrategy {
    /// Fetch the new image, then stop the old container and start the new one (default).
    DownloadThenKill,
    /// Stop the old container first, then fetch (saves disk while fetching).
    KillThenDownload,
    /// Stop the old container and delete its image before fetching (least disk).
    DeleteThenDownload,
    /// Start the new container next to the old one; kill the old one when the new one
    /// signals it took over or after the hand-over timeout.
    HandOver,
}

impl UpdateStrategy {
    /// The `update.strategy` label value.
    pub fn name(self) -> &'static str {
        match self {
            UpdateStrategy::DownloadThenKill => "download-then-kill",
            UpdateStrategy::KillThenDownload => "kill-then-download",
            UpdateStrategy::DeleteThenDownload => "delete-then-download",
            UpdateStrategy::HandOver => "hand-over",
        }
    }

    fn from_name(s: &str) -> Option<UpdateStrategy> {
        Some(match s {
            "download-then-kill" => UpdateStrategy::DownloadThenKill,
            "kill-then-download" => UpdateStrategy::KillThenDownload,
            "delete-then-download" => UpdateStrategy::DeleteThenDownload,
            "hand-over" => UpdateStrategy::HandOver,
            _ => return None,
        })
    }
}

/// What a service's labels ask of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceLabels {
    pub features: BTreeSet<Feature>,
    pub strategy: UpdateStrategy,
    pub handover_timeout_ms: u64,
}

impl Default for ServiceLabels {
    fn default() -> Self {
        ServiceLabels {
            features: BTreeSet::new(),
            strategy: UpdateStrategy::DownloadThenKill,
            handover_timeout_ms: DEFAULT_HANDOVER_TIMEOUT_MS,
        }
    }
}

/// Labels the supervisor sets on its containers to recognise them; a service may not set them.
pub const RESERVED: &[&str] = &[
    "io.fleet.supervised",
    "io.fleet.app-uuid",
    "io.fleet.service-name",
    "io.fleet.release-uuid",
    "io.fleet.service-digest",
    "io.fleet.app-id",
    "io.fleet.name",
];

fn strip_prefix(key: &str) -> Option<&str> {
    PREFIXES.iter().find_map(|p| key.strip_prefix(p))
}

fn truthy(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Reads the labels, returning the settings and each bad label as (key, reason).
/// Labels outside our keys (`features.*`, `update.*`) are the user's own and left alone.
pub fn read(labels: &BTreeMap<String, String>) -> (ServiceLabels, Vec<(String, String)>) {
    let mut out = ServiceLabels::default();
    let mut problems = Vec::new();
    for (key, value) in labels {
        if RESERVED.contains(&key.as_str()) {
            problems.push((
                key.clone(),
                "reserved for the supervisor's own bookkeeping".to_string(),
            ));
            continue;
        }
        let Some(rest) = strip_prefix(key) else {
            continue;
        };
        if let Some(name) = rest.strip_prefix("features.") {
            match (Feature::from_name(name), truthy(value)) {
                (Some(f), Some(true)) => {
                    out.features.insert(f);
                }
                (Some(_), Some(false)) => {}
                (Some(_), None) => {
                    problems.push((key.clone(), format!("`{value}` is not 1/0 or true/false")))
                }
                (None, _) => problems.push((key.clone(), format!("unknown feature `{name}`"))),
            }
        } else if rest == "update.strategy" {
            match UpdateStrategy::from_name(value) {
                Some(s) => out.strategy = s,
                None => problems.push((
                    key.clone(),
                    format!(
                        "update strategy `{value}` is not download-then-kill, kill-then-download, delete-then-download or hand-over"
                    ),
                )),
            }
        } else if rest == "update.handover-timeout" {
            match value.trim().parse::<u64>() {
                Ok(ms) => out.handover_timeout_ms = ms,
                Err(_) => problems.push((
                    key.clone(),
                    format!("hand-over timeout `{value}` is not a number of milliseconds"),
                )),
            }
        }
    }
    (out, problems)
}

/// The label problems alone (for the compose validator).
pub fn check(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    read(labels).1
}

/// Labels under one of the [`PREFIXES`] that [`read`] neither acts on nor refuses (an
/// `io.balena.update.stratgy` typo, `io.resin.foo`): they reach the container unchanged.
pub fn unread(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .keys()
        .filter(|key| !RESERVED.contains(&key.as_str()))
        .filter(|key| {
            strip_prefix(key).is_some_and(|rest| {
                !rest.starts_with("features.")
                    && rest != "update.strategy"
                    && rest != "update.handover-timeout"
            })
        })
        .cloned()
        .collect()
}

/// A bind mount of a host path into a container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct BindMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

impl BindMount {
    pub fn new(source: &str, target: &str, read_only: bool) -> Self {
        BindMount {
            source: source.to_string(),
            target: target.to_string(),
            read_only,
        }
    }
}

/// Host facts the features need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostContext {
    /// The engine socket on the host.
    pub engine_socket: String,
    /// Supervisor API port (`listenPort`, default 48484).
    pub supervisor_port: u16,
    /// Supervisor address as seen from a bridge-networked container (the gateway of the
    /// app's bridge); host-networked containers use 127.0.0.1.
    pub supervisor_bridge_host: String,
    /// Key for the supervisor API.
    pub supervisor_api_key: String,
    /// `apiEndpoint` and `deviceApiKey` from config.json, if any.
    pub api_endpoint: Option<String>,
    pub device_api_key: Option<String>,
    /// Device type slug (`raspberrypi4-64`), for `*_DEVICE_TYPE`.
    pub device_type: String,
}

impl Default for HostContext {
    fn default() -> Self {
        HostContext {
            engine_socket: "/var/run/docker.sock".to_string(),
            supervisor_port: 48484,
            supervisor_bridge_host: "172.17.0.1".to_string(),
            supervisor_api_key: String::new(),
            api_endpoint: None,
            device_api_key: None,
            device_type: String::new(),
        }
    }
}

impl HostContext {
    /// From config.json's supervisor keys; the rest keeps its defaults.
    pub fn from_supervisor_keys(keys: &fleet_config::SupervisorKeys) -> Self {
        let default = HostContext::default();
        HostContext {
            supervisor_port: keys.listen_port.unwrap_or(default.supervisor_port),
            api_endpoint: keys.api_endpoint.clone(),
            device_api_key: keys.device_api_key.clone(),
            device_type: keys.device_type.clone().unwrap_or_default(),
            ..default
        }
    }
}

/// Container settings a set of features adds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeatureSettings {
    pub mounts: Vec<BindMount>,
    pub env: BTreeMap<String, String>,
}

/// Where the engine socket appears inside a container with `features.balena-socket`.
pub const CONTAINER_ENGINE_SOCKET: &str = "/var/run/balena-engine.sock";

/// The mounts and environment the features ask for.
pub fn settings(
    features: &BTreeSet<Feature>,
    network_mode: NetworkMode,
    host: &HostContext,
) -> FeatureSettings {
    let mut out = FeatureSettings::default();
    let env_all = |out: &mut FeatureSettings, suffix: &str, value: &str| {
        for brand in ["FLEET", "BALENA", "RESIN"] {
            out.env
                .insert(format!("{brand}_{suffix}"), value.to_string());
        }
    };
    for feature in features {
        match feature {
            Feature::BalenaSocket => {
                out.mounts.push(BindMount::new(
                    &host.engine_socket,
                    CONTAINER_ENGINE_SOCKET,
                    false,
                ));
                // Older images look for the socket under its resinOS name.
                out.mounts.push(BindMount::new(
                    &host.engine_socket,
                    "/var/run/balena.sock",
                    false,
                ));
                out.env.insert(
                    "DOCKER_HOST".to_string(),
                    format!("unix://{CONTAINER_ENGINE_SOCKET}"),
                );
            }
            Feature::Dbus => {
                out.mounts
                    .push(BindMount::new("/run/dbus", "/host/run/dbus", false));
                out.env.insert(
                    "DBUS_SYSTEM_BUS_ADDRESS".to_string(),
                    "unix:path=/host/run/dbus/system_bus_socket".to_string(),
                );
            }
            Feature::Sysfs => out.mounts.push(BindMount::new("/sys", "/sys", false)),
            Feature::Procfs => out.mounts.push(BindMount::new("/proc", "/proc", false)),
            Feature::KernelModules => {
                out.mounts
                    .push(BindMount::new("/lib/modules", "/lib/modules", true))
            }
            Feature::Firmware => {
                out.mounts
                    .push(BindMount::new("/lib/firmware", "/lib/firmware", true))
            }
            Feature::JournalLogs => {
                for dir in ["/var/log/journal", "/run/log/journal", "/etc/machine-id"] {
                    out.mounts.push(BindMount::new(dir, dir, true));
                }
            }
            Feature::SupervisorApi => {
                let supervisor_host = match network_mode {
                    NetworkMode::Host => "127.0.0.1",
                    NetworkMode::Bridge => host.supervisor_bridge_host.as_str(),
                };
                let port = host.supervisor_port.to_string();
                env_all(&mut out, "SUPERVISOR_HOST", supervisor_host);
                env_all(&mut out, "SUPERVISOR_PORT", &port);
                env_all(
                    &mut out,
                    "SUPERVISOR_ADDRESS",
                    &format!("http://{supervisor_host}:{port}"),
                );
                env_all(&mut out, "SUPERVISOR_API_KEY", &host.supervisor_api_key);
            }
            Feature::BalenaApi => {
                if let Some(key) = &host.device_api_key {
                    env_all(&mut out, "API_KEY", key);
                }
                if let Some(url) = &host.api_endpoint {
                    env_all(&mut out, "API_URL", url);
                }
            }
        }
    }
    out.mounts.sort();
    out
}
