//! Typed requests and responses (only the fields fleetOS reads or sets).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    pub version: String,
    pub api_version: String,
    #[serde(default)]
    pub min_api_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    #[serde(default)]
    pub names: Vec<String>,
    pub image: String,
    pub state: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…`: how an image pulled by digest (a balena release's) is named.
    #[serde(default, deserialize_with = "null_default")]
    pub repo_digests: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeSummary {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct VolumeList {
    #[serde(default, deserialize_with = "null_default")]
    pub volumes: Vec<VolumeSummary>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// `bridge`, `host`, `null`, `macvlan`, …
    #[serde(default)]
    pub driver: String,
    #[serde(default, rename = "IPAM", deserialize_with = "null_default")]
    pub ipam: NetworkIpam,
}

/// A network's address management: the subnets the engine hands out addresses from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkIpam {
    #[serde(default, deserialize_with = "null_default")]
    pub config: Vec<NetworkIpamPool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkIpamPool {
    /// CIDR, e.g. `172.17.0.0/16`; empty when the engine has not chosen one.
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
}

/// `POST /volumes/create` body.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateVolume {
    pub name: String,
    pub driver: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// `POST /networks/create` body.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub check_duplicate: bool,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`com.docker.network.bridge.name`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// No outside connectivity.
    pub internal: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM", skip_serializing_if = "Option::is_none")]
    pub ipam: Option<CreateIpam>,
}

/// `IPAM` of a network create body.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateIpam {
    pub driver: String,
    pub config: Vec<IpamPoolConfig>,
}

/// One address pool of [`NetworkIpam`].
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamPoolConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_address: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    pub id: String,
    /// The image ID the container was created from.
    pub image: String,
    pub config: ContainerConfig,
    pub state: ContainerState,
    #[serde(default)]
    pub restart_count: u64,
    /// `/name` as the engine reports it.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub host_config: Option<InspectHostConfig>,
    #[serde(default, deserialize_with = "null_default")]
    pub mounts: Vec<MountPoint>,
    #[serde(default)]
    pub network_settings: Option<NetworkSettings>,
}

/// The parts of an inspected container's host configuration fleetOS reads back.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectHostConfig {
    #[serde(default)]
    pub network_mode: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// `bind`, `volume`, `tmpfs`.
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub source: String,
    pub destination: String,
    #[serde(rename = "RW", default)]
    pub rw: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// Network name → endpoint.
    #[serde(default, deserialize_with = "null_default")]
    pub networks: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// The image name the container was created with.
    pub image: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    /// Created with a terminal: its log stream is not multiplexed.
    #[serde(default)]
    pub tty: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    /// The engine is waiting to restart it by its restart policy (`running` is true then too).
    #[serde(default)]
    pub restarting: bool,
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    #[serde(default)]
    pub failing_streak: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub repo_tags: Vec<String>,
}

/// `POST /containers/create` body. Optional fields are left out of the JSON when unset,
/// so a caller that sets only the first four sends (and hashes) the same body as before.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateContainer {
    pub image: String,
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub host_config: HostConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL when stopped without a timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `"80/tcp"` → `{}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networking_config: Option<NetworkingConfig>,
}

/// A JSON `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    /// Nanoseconds; 0 = the engine's default.
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub retries: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkingConfig {
    /// Network name → endpoint settings. API 1.41 accepts one network at create; connect
    /// the others with [`crate::Engine::connect_network`] before starting.
    pub endpoints_config: BTreeMap<String, EndpointConfig>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(rename = "IPAMConfig", skip_serializing_if = "Option::is_none")]
    pub ipam_config: Option<IpamConfig>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IpamConfig {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `host:container[:ro]`, or `volume:container[:ro]` for a named volume. A missing host
    /// path is created as a directory by the engine.
    pub binds: Vec<String>,
    /// Binds of host paths that must exist: the engine refuses to start the container when
    /// one is missing instead of creating a directory in its place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<BindMount>,
    pub network_mode: String,
    pub restart_policy: RestartPolicy,
    /// `"80/tcp"` → host bindings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Mount point → options.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tmpfs: BTreeMap<String, String>,
    /// Bytes; absent = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// `host:ip`
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub readonly_rootfs: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    /// GPUs and other devices from device drivers (`docker run --gpus`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_requests: Vec<DeviceRequest>,
}

/// A `HostConfig.DeviceRequests` entry.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceRequest {
    pub driver: String,
    pub count: i64,
    #[serde(rename = "DeviceIDs")]
    pub device_ids: Vec<String>,
    pub capabilities: Vec<Vec<String>>,
    pub options: BTreeMap<String, String>,
}

/// A `HostConfig.Mounts` entry of type `bind`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindMount {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub source: String,
    pub target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl BindMount {
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        BindMount {
            kind: "bind",
            source: source.into(),
            target: target.into(),
            read_only: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    /// Empty: the engine picks a port.
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure`.
    pub name: String,
    /// `on-failure:N`: at most N restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Created {
    pub id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WaitResponse {
    pub status_code: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorMessage {
    pub message: String,
}

/// One message of a streamed progress answer (image load, image pull).
#[derive(Debug, Deserialize)]
pub(crate) struct LoadMessage {
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// The layer a pull message is about.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, rename = "progressDetail")]
    pub progress_detail: Option<ProgressDetail>,
}

/// Bytes of one layer so far (`Downloading`: `current` of `total`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProgressDetail {
    #[serde(default)]
    pub current: Option<u64>,
    #[serde(default)]
    pub total: Option<u64>,
}

/// A pull's progress over its layers, from the engine's progress messages: each layer's
/// downloaded bytes against its size while `Downloading`, the whole layer once `Download
/// complete`, `Pull complete` or `Already exists`.
#[derive(Debug, Default)]
pub struct PullProgress {
    /// layer id → (bytes done, bytes in all; 0 while unknown)
    layers: std::collections::BTreeMap<String, (u64, u64)>,
    /// Layers the engine needs no bytes for.
    present: std::collections::BTreeSet<String>,
}

impl PullProgress {
    pub(crate) fn update(&mut self, msg: &LoadMessage) {
        let (Some(id), Some(status)) = (&msg.id, &msg.status) else {
            return;
        };
        let detail = msg.progress_detail.as_ref();
        match status.as_str() {
            "Pulling fs layer" | "Waiting" => {
                self.layers.entry(id.clone()).or_insert((0, 0));
            }
            "Downloading" => {
                let total = detail.and_then(|d| d.total).unwrap_or(0);
                let current = detail.and_then(|d| d.current).unwrap_or(0).min(total);
                self.layers.insert(id.clone(), (current, total));
            }
            "Download complete" | "Verifying Checksum" | "Extracting" | "Pull complete" => {
                if let Some(layer) = self.layers.get_mut(id) {
                    layer.0 = layer.1;
                }
                self.present.insert(id.clone());
            }
            "Already exists" => {
                self.present.insert(id.clone());
            }
            _ => {}
        }
    }

    /// Whole percent, 0–100: the bytes downloaded of the layers whose size is known, with
    /// a layer of unknown size counting as one not begun (or done, once complete).
    pub fn percent(&self) -> u8 {
        let pending = |id: &String| !self.present.contains(id);
        let (mut done, mut all) = (0u64, 0u64);
        for (id, (current, total)) in &self.layers {
            if *total > 0 {
                done += if pending(id) { *current } else { *total };
                all += total;
            }
        }
        let unsized_layers = self.layers.iter().filter(|(_, (_, t))| *t == 0).count() as u64;
        let unsized_done = self
            .layers
            .iter()
            .filter(|(id, (_, t))| *t == 0 && !pending(id))
            .count() as u64;
        // Layers of unknown size weigh as much as the average known one (or 1 byte).
        let weight = if all > 0 {
            all / (self.layers.len() as u64 - unsized_layers).max(1)
        } else {
            1
        };
        done += unsized_done * weight;
        all += unsized_layers * weight;
        if all == 0 {
            return 0;
        }
        ((done.saturating_mul(100)) / all).min(100) as u8
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
