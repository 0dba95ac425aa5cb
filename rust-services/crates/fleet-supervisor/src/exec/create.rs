//! A planned [`ContainerConfig`] as the Engine API's `POST /containers/create` body.

use std::collections::BTreeMap;
use std::path::Path;

use fleet_engine::{
    CreateContainer, DeviceMapping, DeviceRequest, Empty, EndpointConfig, HealthConfig, HostConfig,
    IpamConfig, NetworkingConfig, PortBinding, RestartPolicy, Ulimit,
};

use fleet_release::compose::{NetworkAttachment, NetworkMode, Protocol, RestartPolicy as Restart};
use fleet_release::labels::Feature;
use fleet_release::plan::ContainerConfig;
use fleet_release::update_lock;

const NANOS_PER_MS: u64 = 1_000_000;

/// The create body plus the networks to connect after create (API 1.41 takes one network
/// at create).
pub struct CreateRequest {
    pub body: CreateContainer,
    pub extra_networks: Vec<(String, EndpointConfig)>,
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn endpoint(service: &str, attachment: &NetworkAttachment) -> EndpointConfig {
    // Services find each other by name on the app's networks, as with docker-compose.
    let mut aliases = vec![service.to_string()];
    aliases.extend(attachment.aliases.iter().cloned());
    EndpointConfig {
        aliases,
        ipam_config: attachment.ipv4_address.as_ref().map(|ip| IpamConfig {
            ipv4_address: ip.clone(),
        }),
    }
}

/// `features.gpu`: one GPU, as `docker run --gpus 1` asks for it (balena does the same).
fn gpu_requests(labels: &BTreeMap<String, String>) -> Vec<DeviceRequest> {
    if !fleet_release::labels::read(labels)
        .0
        .features
        .contains(&Feature::Gpu)
    {
        return Vec::new();
    }
    vec![DeviceRequest {
        driver: String::new(),
        count: 1,
        device_ids: Vec::new(),
        capabilities: vec![vec!["gpu".to_string()]],
        options: BTreeMap::new(),
    }]
}

fn bind(source: &str, target: &str, read_only: bool) -> String {
    if read_only {
        format!("{source}:{target}:ro")
    } else {
        format!("{source}:{target}")
    }
}

/// Builds the create request. `lock_root` is where the app lock directories live on the
/// host; the planner names them below [`update_lock::HOST_LOCK_ROOT`], so they are moved there.
pub fn create_request(config: &ContainerConfig, lock_root: &Path) -> CreateRequest {
    let spec = &config.spec;
    let planned_lock_dir = format!("{}/{}", update_lock::HOST_LOCK_ROOT, config.app);
    let real_lock_dir = update_lock::app_lock_dir(lock_root, &config.app);

    let mut binds: Vec<String> = config
        .binds
        .iter()
        .map(|b| {
            let source = if b.source == planned_lock_dir {
                real_lock_dir.display().to_string()
            } else {
                b.source.clone()
            };
            bind(&source, &b.target, b.read_only)
        })
        .collect();
    binds.extend(
        config
            .volumes
            .iter()
            .map(|v| bind(&v.volume.engine_name(), &v.target, v.read_only)),
    );

    let mut exposed_ports = BTreeMap::new();
    let mut port_bindings: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    for e in &spec.expose {
        exposed_ports.insert(format!("{}/{}", e.port, protocol(e.protocol)), Empty {});
    }
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, protocol(p.protocol));
        exposed_ports.insert(key.clone(), Empty {});
        port_bindings.entry(key).or_default().push(PortBinding {
            host_ip: p.host_ip.clone().unwrap_or_default(),
            host_port: match (p.host_port, p.host_port_end) {
                (Some(a), Some(b)) => format!("{a}-{b}"),
                (Some(a), None) => a.to_string(),
                _ => String::new(),
            },
        });
    }

    let mut networks = config.networks.iter();
    let (network_mode, networking_config) = match (spec.network_mode, networks.next()) {
        (NetworkMode::Host, _) => ("host".to_string(), None),
        (NetworkMode::None, _) => ("none".to_string(), None),
        (NetworkMode::Service, _) => (
            format!(
                "container:{}",
                spec.network_mode_service.as_deref().unwrap_or_default()
            ),
            None,
        ),
        (NetworkMode::Bridge, None) => ("none".to_string(), None),
        (NetworkMode::Bridge, Some((name, attachment))) => (
            name.clone(),
            Some(NetworkingConfig {
                endpoints_config: BTreeMap::from([(
                    name.clone(),
                    endpoint(&config.service, attachment),
                )]),
            }),
        ),
    };
    let extra_networks = networks
        .map(|(name, a)| (name.clone(), endpoint(&config.service, a)))
        .collect();

    let restart = match spec.restart {
        Restart::Always => "always",
        Restart::No => "no",
        Restart::OnFailure => "on-failure",
        Restart::UnlessStopped => "unless-stopped",
    };

    let body = CreateContainer {
        image: spec.image.clone(),
        env: config.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        tty: spec.tty,
        domainname: spec.domainname.clone(),
        mac_address: spec.mac_address.clone(),
        labels: config.labels.clone(),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_grace_period_ms.map(|ms| ms.div_ceil(1000)),
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: h.test.clone(),
            interval: h.interval_ms.unwrap_or(0) * NANOS_PER_MS,
            timeout: h.timeout_ms.unwrap_or(0) * NANOS_PER_MS,
            start_period: h.start_period_ms.unwrap_or(0) * NANOS_PER_MS,
            retries: h.retries.unwrap_or(0),
        }),
        exposed_ports,
        networking_config,
        host_config: HostConfig {
            binds,
            mounts: Vec::new(),
            network_mode,
            restart_policy: RestartPolicy {
                name: restart.to_string(),
                maximum_retry_count: spec.restart_max_retries,
            },
            port_bindings,
            privileged: spec.privileged,
            cap_add: spec.cap_add.clone(),
            cap_drop: spec.cap_drop.clone(),
            devices: spec
                .devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: d.host.clone(),
                    path_in_container: d.container.clone(),
                    cgroup_permissions: d.permissions.clone(),
                })
                .collect(),
            ulimits: spec
                .ulimits
                .iter()
                .map(|(name, u)| Ulimit {
                    name: name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
            tmpfs: spec
                .tmpfs
                .iter()
                .map(|t| match t.split_once(':') {
                    Some((path, options)) => (path.to_string(), options.to_string()),
                    None => (t.clone(), String::new()),
                })
                .collect(),
            memory: spec.mem_limit,
            cpu_shares: spec.cpu_shares,
            sysctls: spec.sysctls.clone(),
            dns: spec.dns.clone(),
            extra_hosts: spec.extra_hosts.clone(),
            readonly_rootfs: spec.read_only,
            security_opt: spec.security_opt.clone(),
            group_add: spec.group_add.clone(),
            init: spec.init,
            cgroup_parent: spec.cgroup_parent.clone(),
            cpu_quota: spec.cpu_quota,
            cpuset_cpus: spec.cpuset.clone(),
            dns_options: spec.dns_opt.clone(),
            dns_search: spec.dns_search.clone(),
            ipc_mode: spec.ipc.clone(),
            memory_reservation: spec.mem_reservation,
            oom_score_adj: spec.oom_score_adj,
            pid_mode: spec.pid.clone(),
            pids_limit: spec.pids_limit,
            shm_size: spec.shm_size,
            userns_mode: spec.userns_mode.clone(),
            device_requests: gpu_requests(&spec.labels),
        },
    };
    CreateRequest {
        body,
        extra_networks,
    }
}
