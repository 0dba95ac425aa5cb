//! What the supervisor container should look like: image from supervisor.conf or
//! config.json, the fleetOS binds, env and labels, and a hash of all of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet_config::Config;
use fleet_engine::{BindMount, CreateContainer, HostConfig, RestartPolicy};
use fleet_fs::{KeyValues, Root};
use sha2::{Digest, Sha256};

pub const CONTAINER_NAME: &str = "fleet_supervisor";
pub const SUPERVISOR_CONF: &str = "/etc/fleet/supervisor.conf";
pub const PRELOAD_TARBALL: &str = "/usr/share/fleet/supervisor-image.tar";
pub const DATA_DIR: &str = "/mnt/data/fleet-supervisor";
/// balena's preload file where `balena preload` writes it: the data partition's root.
pub const BALENA_APPS_JSON: &str = "/mnt/data/apps.json";
pub const DEFAULT_LISTEN_PORT: u16 = 48484;
/// The host's system bus, bound so the supervisor can ask logind to reboot or power off.
pub const DBUS_SYSTEM_SOCKET: &str = "/run/dbus/system_bus_socket";
/// The host's journal socket, bound so the supervisor logs with structured fields.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The apps' update-lock directories (fleet-supervisor's `lock::HOST_LOCK_ROOT` is below it):
/// the supervisor flocks them and binds them into app containers by their host path, so it
/// sees them at the same path.
pub const APP_LOCK_ROOT: &str = "/tmp/fleet-supervisor";
pub const LABEL_MANAGED: &str = "io.fleet.managed";
pub const LABEL_ROLE: &str = "io.fleet.role";
pub const LABEL_IMAGE: &str = "io.fleet.image";
pub const LABEL_CONFIG_HASH: &str = "io.fleet.config-hash";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Conf(#[from] fleet_fs::KeyValueError),
    #[error(transparent)]
    Config(#[from] fleet_config::ConfigError),
    #[error(
        "no supervisor image: neither {conf} sets SUPERVISOR_IMAGE nor config.json sets fleet.supervisor.image"
    )]
    NoImage { conf: PathBuf },
}

/// The desired container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub image: String,
    pub listen_port: u16,
    pub create: CreateContainerEq,
    pub config_hash: String,
}

/// `CreateContainer` plus equality for tests.
#[derive(Debug, Clone)]
pub struct CreateContainerEq(pub CreateContainer);

impl PartialEq for CreateContainerEq {
    fn eq(&self, other: &Self) -> bool {
        serde_json::to_vec(&self.0).ok() == serde_json::to_vec(&other.0).ok()
    }
}
impl Eq for CreateContainerEq {}

/// The keys of [`SUPERVISOR_CONF`].
pub const SUPERVISOR_CONF_KEYS: &[&str] = &["SUPERVISOR_IMAGE"];

/// Reads `SUPERVISOR_IMAGE=` from supervisor.conf (strict `KEY=value`, see
/// [`fleet_fs::keyvalue`]); a missing file or an empty value is `None`.
pub fn read_conf_image(path: &Path) -> Result<Option<String>, SpecError> {
    Ok(KeyValues::read(path, SUPERVISOR_CONF_KEYS)?
        .and_then(|conf| conf.get("SUPERVISOR_IMAGE").map(str::to_string)))
}

/// Builds the desired container from the root's config files. `engine_socket` is bound
/// into the container so the supervisor can manage the application containers.
pub fn desired(root: &Root, engine_socket: &Path) -> Result<Desired, SpecError> {
    let conf = root.path(SUPERVISOR_CONF);
    let config_path = root.config_json();
    let config = Config::load(&config_path)?.unwrap_or_else(Config::empty);
    let s = config.settings();
    let image = match &s.fleet.supervisor_image {
        Some(i) => i.clone(),
        None => read_conf_image(&conf)?.ok_or(SpecError::NoImage { conf: conf.clone() })?,
    };
    let listen_port = s.supervisor.listen_port.unwrap_or(DEFAULT_LISTEN_PORT);
    let mut env = vec![format!("FLEET_LISTEN_PORT={listen_port}")];
    let keys = [
        ("FLEET_UUID", &s.supervisor.uuid),
        ("FLEET_API_ENDPOINT", &s.supervisor.api_endpoint),
        ("FLEET_DEVICE_API_KEY", &s.supervisor.device_api_key),
        ("FLEET_APPLICATION_ID", &s.supervisor.application_id),
        ("FLEET_DEVICE_TYPE", &s.supervisor.device_type),
    ];
    for (name, value) in keys {
        if let Some(v) = value {
            env.push(format!("{name}={v}"));
        }
    }
    // The state report's os_version; a new OS version recreates the container once.
    if let Some(v) = crate::update::slots::running_version(root) {
        env.push(format!("FLEET_OS_VERSION={v}"));
    }
    // Directories the engine may create when missing.
    let binds = vec![
        format!("{}:/var/run/docker.sock", engine_socket.display()),
        format!("{}:/data", root.path(DATA_DIR).display()),
        format!("{}:{APP_LOCK_ROOT}", root.path(APP_LOCK_ROOT).display()),
    ];
    // Files and sockets: as `Mounts`, so a missing one fails the start instead of becoming
    // a directory (a directory named config.json on fleet-boot would break provisioning).
    // The engine starts the container at boot by itself, before fleetd looks.
    let mut mounts = vec![
        // logind (reboot/shutdown API) and the journal, at the paths the container expects.
        BindMount::new(
            root.path(DBUS_SYSTEM_SOCKET).display().to_string(),
            DBUS_SYSTEM_SOCKET,
        ),
        BindMount::new(
            root.path(JOURNAL_SOCKET).display().to_string(),
            JOURNAL_SOCKET,
        ),
    ];
    // Without config.json the supervisor runs in local mode with defaults; the hash changes
    // once the file appears, and the container is recreated with it.
    // The whole boot partition, not the file: registration replaces config.json there
    // power-safe (temporary names, renames in its directory), as balena's supervisor
    // writes /mnt/boot/config.json.
    if config_path.is_file()
        && let Some(boot) = config_path.parent()
    {
        mounts.push(BindMount::new(boot.display().to_string(), "/boot"));
    }
    let mut create = CreateContainer {
        image: image.clone(),
        env,
        labels: BTreeMap::new(),
        host_config: HostConfig {
            binds,
            mounts,
            network_mode: "host".into(),
            // The engine starts it as soon as it is up at boot, as balenaOS does with its
            // supervisor: fleetd's start comes later (after the engine's READY) and only
            // adopts it. A container stopped by fleetd (unhealthy, SIGTERM) stays stopped
            // until fleetd or an engine restart starts it.
            restart_policy: RestartPolicy {
                name: "always".into(),
                maximum_retry_count: None,
            },
            ..HostConfig::default()
        },
        ..CreateContainer::default()
    };
    let hash = hex(&Sha256::digest(
        serde_json::to_vec(&create).unwrap_or_default(),
    ));
    create.labels = BTreeMap::from([
        (LABEL_MANAGED.into(), "true".into()),
        (LABEL_ROLE.into(), "supervisor".into()),
        (LABEL_IMAGE.into(), image.clone()),
        (LABEL_CONFIG_HASH.into(), hash.clone()),
    ]);
    Ok(Desired {
        image,
        listen_port,
        create: CreateContainerEq(create),
        config_hash: hash,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hands balena's preload file to the supervisor, which reads `apps.json` in its own data
/// directory (the container sees no other part of /mnt/data): moved there (same file
/// system) when the supervisor has neither an `apps.json` nor a kept `target.json` yet.
/// Returns whether it was moved.
pub fn hand_over_preload(root: &Root) -> std::io::Result<bool> {
    let from = root.path(BALENA_APPS_JSON);
    let data = root.path(DATA_DIR);
    let to = data.join("apps.json");
    if !from.is_file() || to.exists() || data.join("target.json").exists() {
        return Ok(false);
    }
    std::fs::rename(&from, &to)?;
    Ok(true)
}
