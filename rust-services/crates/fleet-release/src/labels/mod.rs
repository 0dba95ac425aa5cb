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
    /// One GPU requested from the engine (`DeviceRequests`, as `docker run --gpus 1`).
    Gpu,
    /// The app's `extra-firmware` volume at `/extra-firmware` (see
    /// [`EXTRA_FIRMWARE_VOLUME`]).
    ExtraFirmware,
}

/// The named volume `features.extra-firmware` mounts, and where.
pub const EXTRA_FIRMWARE_VOLUME: &str = "extra-firmware";
pub const EXTRA_FIRMWARE_TARGET: &str = "/extra-firmware";

/// Feature labels balena reads that ask nothing of the container here: `optional` (a
/// service whose contract is unmet is skipped; contracts are not checked on this device)
/// and `host-os.board-rev` (a variable balena sets only when the host OS has the file).
const INERT_FEATURES: &[&str] = &["optional", "host-os.board-rev"];

/// `features.requires.<type>`: contract requirements, checked as balena's builder checks
/// their values (not enforced on the device).
const REQUIRES: &str = "requires.";

impl Feature {
    pub const ALL: [Feature; 11] = [
        Feature::BalenaSocket,
        Feature::Dbus,
        Feature::Sysfs,
        Feature::Procfs,
        Feature::KernelModules,
        Feature::Firmware,
        Feature::JournalLogs,
        Feature::SupervisorApi,
        Feature::BalenaApi,
        Feature::Gpu,
        Feature::ExtraFirmware,
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
            Feature::Gpu => "gpu",
            Feature::ExtraFirmware => "extra-firmware",
        }
    }

    /// A feature by its label name, with the resinOS names balena still maps
    /// (`resin-api`, `resin-socket`).
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

/// Whether a `features.requires.<kind>` value is one balena's builder accepts; `None` for
/// kinds it does not know (it ignores them).
fn requirement_problem(kind: &str, value: &str) -> Option<String> {
    match kind {
        "sw.supervisor" | "sw.l4t" | "sw.balena-os" | "sw.linux" => {
            (!is_version_range(value)).then(|| format!("`{value}` is not a semver range"))
        }
        "arch.sw" => (!["aarch64", "rpi", "amd64", "armv7hf", "i386"].contains(&value))
            .then(|| format!("`{value}` is not one of aarch64, rpi, amd64, armv7hf, i386")),
        _ => None,
    }
}

/// A node-semver range, as far as a device needs to tell a typo: `||`-separated sets of
/// comparators (`>=1.2`, `~1`, `^2.0.0`, `1.x`, `*`) or hyphen ranges (`1.0 - 2.0`).
pub fn is_version_range(s: &str) -> bool {
    let version = |v: &str| {
        let v = v.strip_prefix('v').unwrap_or(v);
        let core = v.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        !core.is_empty()
            && parts.len() <= 3
            && parts.iter().all(|p| {
                matches!(*p, "x" | "X" | "*")
                    || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            })
    };
    let comparator = |c: &str| {
        let c = c.trim_start_matches(['<', '>', '=', '~', '^']);
        version(c.trim())
    };
    !s.trim().is_empty()
        && s.split("||").all(|set| {
            let set = set.trim();
            if set.is_empty() {
                return true; // `a ||` means any version, as in node-semver
            }
            match set.split_once(" - ") {
                Some((lo, hi)) => version(lo.trim()) && version(hi.trim()),
                None => set.split_whitespace().all(comparator),
            }
        })
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
            if let Some(kind) = name.strip_prefix(REQUIRES) {
                if let Some(reason) = requirement_problem(kind, value.trim()) {
                    problems.push((key.clone(), reason));
                }
                continue;
            }
            match (Feature::from_name(name), truthy(value)) {
                (Some(f), Some(true)) => {
                    out.features.insert(f);
                }
                (Some(_), Some(false)) => {}
                (Some(_), None) => {
                    problems.push((key.clone(), format!("`{value}` is not 1/0 or true/false")))
                }
                // balena ignores feature labels it does not know: see `warnings`.
                (None, _) => {}
            }
        } else if rest == "update.strategy" {
            // An unknown strategy is download-then-kill, as balena does (see `warnings`).
            if let Some(s) = UpdateStrategy::from_name(value.trim()) {
                out.strategy = s;
            }
        } else if rest == "update.handover-timeout" {
            match value.trim().parse::<u64>() {
                Ok(ms) => out.handover_timeout_ms = ms,
                // Empty: the default, as balena reads it.
                Err(_) if value.trim().is_empty() => {}
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

/// What the labels ask that is accepted with a change of meaning or not at all, as
/// (label, reason): an unknown update strategy (download-then-kill instead) and the labels
/// of [`unread`].
pub fn warnings(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in labels {
        if strip_prefix(key) == Some("update.strategy")
            && UpdateStrategy::from_name(value.trim()).is_none()
        {
            out.push((
                key.clone(),
                format!("update strategy `{value}` is not download-then-kill, kill-then-download, delete-then-download or hand-over: download-then-kill is used"),
            ));
        }
    }
    for key in unread(labels) {
        out.push((
            key.clone(),
            format!("label `{key}` has a supervisor prefix but is not one the supervisor reads (passed to the container as is)"),
        ));
    }
    out
}

/// Labels under one of the [`PREFIXES`] that [`read`] neither acts on nor refuses (an
/// `io.balena.update.stratgy` typo, `io.resin.foo`, a feature balena does not have): they
/// reach the container unchanged.
pub fn unread(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .keys()
        .filter(|key| !RESERVED.contains(&key.as_str()))
        .filter(|key| {
            strip_prefix(key).is_some_and(|rest| match rest.strip_prefix("features.") {
                Some(name) => {
                    Feature::from_name(name).is_none()
                        && !INERT_FEATURES.contains(&name)
                        && !name.starts_with(REQUIRES)
                }
                None => rest != "update.strategy" && rest != "update.handover-timeout",
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
    /// Key for the supervisor API, for a service with no key of its own in
    /// `service_api_keys`.
    pub supervisor_api_key: String,
    /// Each service's own supervisor API key, scoped to its app as balena scopes it:
    /// app id → service name → key (the supervisor makes and keeps them).
    pub service_api_keys: BTreeMap<u64, BTreeMap<String, String>>,
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
            service_api_keys: BTreeMap::new(),
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
                    NetworkMode::Host | NetworkMode::None => "127.0.0.1",
                    NetworkMode::Bridge | NetworkMode::Service => {
                        host.supervisor_bridge_host.as_str()
                    }
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
            // Not a mount or a variable: the create body's `DeviceRequests` and the
            // service's volumes (`compose::add_feature_volumes`).
            Feature::Gpu | Feature::ExtraFirmware => {}
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
