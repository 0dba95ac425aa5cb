//! The daemon's settings: the container contract's environment (`FLEET_*`, set by
//! `fleetd supervisor` from config.json) first, then config.json itself, then defaults.

use std::path::{Path, PathBuf};

use fleet_config::Config;

use super::api_keys::API_KEY_FILE;
use super::cloud::identity::Identity;
use fleet_fs::FsError;

use fleet_release::labels::HostContext;

/// Default supervisor API port (balena's).
pub const DEFAULT_LISTEN_PORT: u16 = 48484;
/// The target-state file in the data directory (host `/mnt/data/fleet-supervisor`).
pub const TARGET_FILE: &str = "target.json";

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The supervisor's data directory (the container sees the host's
    /// /mnt/data/fleet-supervisor here).
    #[arg(long, default_value = "/data")]
    pub data_dir: PathBuf,
    /// config.json (the container sees the host's /mnt/boot/config.json here).
    #[arg(long, default_value = "/boot/config.json")]
    pub config: PathBuf,
    /// The container engine's API socket as the supervisor sees it.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub engine_socket: PathBuf,
    /// Address the API listens on (the container uses the host's network).
    #[arg(long, default_value = "0.0.0.0")]
    pub listen_address: String,
    /// Seconds between reconciliations when nothing changed.
    #[arg(long, default_value_t = 60)]
    pub reconcile_s: u64,
    /// Seconds before retrying a failed or lock-held apply.
    #[arg(long, default_value_t = 10)]
    pub retry_s: u64,
    /// `/v1/healthy` fails after this many seconds without progress of the loop.
    #[arg(long, default_value_t = 1800)]
    pub stall_limit_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen_address: String,
    pub listen_port: u16,
    /// The global key API clients present (`Authorization: Bearer`, `?apikey=`), balena's
    /// cloud key; the services' own keys are in `service_api_keys`.
    pub api_key: String,
    /// The scoped keys of the services with `features.supervisor-api` (`api_keys.rs`).
    pub service_api_keys: super::api_keys::ServiceKeys,
    pub uuid: Option<String>,
    pub api_endpoint: Option<String>,
    pub device_api_key: Option<String>,
    pub device_type: Option<String>,
    /// config.json `developmentMode`: enables `/v2/local/target-state` and lets any peer
    /// reach the API.
    pub development_mode: bool,
    /// An extra CA for an `https://` apiEndpoint: (config.json key, value), from
    /// `balenaRootCA` (base64 of PEM) or `fleet.supervisor.rootCA` (PEM or base64).
    pub root_ca: Option<(String, String)>,
    /// `FLEET_OS_VERSION` (fleetd sets it from the host's os-release), for the state report.
    pub os_version: Option<String>,
    /// config.json `vpnEndpoint`/`vpnPort`: the VPN server the OpenVPN config is pointed at.
    pub vpn_endpoint: Option<String>,
    pub vpn_port: Option<u16>,
    /// What registering with the server needs and leaves behind (config.json keys).
    pub registration: Registration,
}

/// config.json's registration keys (balena's) and where config.json is, to record the
/// outcome there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    pub config_path: Option<PathBuf>,
    /// `apiKey`: the fleet's provisioning key; dropped once registered.
    pub provisioning_key: Option<String>,
    /// `applicationId`: the fleet the device joins.
    pub application_id: Option<String>,
    /// `registered_at`, `deviceId`: set once registered.
    pub registered_at: Option<u64>,
    pub device_id: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] fleet_config::ConfigError),
    #[error("FLEET_LISTEN_PORT: not a port number: {0:?}")]
    Port(String),
    #[error(transparent)]
    Write(#[from] FsError),
    #[error("{name}: {reason}")]
    Header { name: String, reason: String },
    #[error(transparent)]
    Keys(#[from] super::api_keys::ApiKeyError),
    #[error("{}: cannot read or write the API key", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Settings {
    /// Local mode, as balena's: a development device with no cloud endpoint. Its API needs
    /// no key (any `Authorization` header is ignored).
    pub fn local_mode(&self) -> bool {
        self.development_mode && self.api_endpoint.is_none()
    }

    /// Resolves the settings; `env` reads one environment variable (tests pass a map).
    pub fn resolve(
        args: &RunArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let config = Config::load(&args.config)?.unwrap_or_else(Config::empty);
        let s = config.settings();
        let pick = |name: &str, fallback: &Option<String>| {
            env(name).filter(|v| !v.is_empty()).or(fallback.clone())
        };
        let listen_port = match env("FLEET_LISTEN_PORT").filter(|v| !v.is_empty()) {
            Some(v) => v.parse().map_err(|_| SettingsError::Port(v))?,
            None => s.supervisor.listen_port.unwrap_or(DEFAULT_LISTEN_PORT),
        };
        let device_api_key = pick("FLEET_DEVICE_API_KEY", &s.supervisor.device_api_key);
        // Always the supervisor's own key, never `deviceApiKey`: the local key is handed to
        // every container with `features.supervisor-api`, the cloud credential only to
        // those with `features.balena-api` (as on balena).
        let api_key = local_api_key(&args.data_dir)?;
        let uuid = pick("FLEET_UUID", &s.supervisor.uuid);
        let api_endpoint = pick("FLEET_API_ENDPOINT", &s.supervisor.api_endpoint);
        // config.json is checked when loaded; the environment and the key file are not:
        // every value that goes into a request is checked here, at start.
        {
            use fleet_config::header::{MAX_API_KEY, MAX_URL, MAX_UUID, problem};
            let key_file = args.data_dir.join(API_KEY_FILE).display().to_string();
            for (name, value, max) in [
                ("uuid (FLEET_UUID)", uuid.as_deref(), MAX_UUID),
                (
                    "apiEndpoint (FLEET_API_ENDPOINT)",
                    api_endpoint.as_deref(),
                    MAX_URL,
                ),
                (
                    "deviceApiKey (FLEET_DEVICE_API_KEY)",
                    device_api_key.as_deref(),
                    MAX_API_KEY,
                ),
                (key_file.as_str(), Some(api_key.as_str()), MAX_API_KEY),
            ] {
                if let Some(reason) = value.and_then(|v| problem(v, max)) {
                    return Err(SettingsError::Header {
                        name: name.to_string(),
                        reason,
                    });
                }
            }
        }
        Ok(Settings {
            data_dir: args.data_dir.clone(),
            listen_address: args.listen_address.clone(),
            listen_port,
            api_key,
            service_api_keys: super::api_keys::read_service_keys(&args.data_dir)?,
            uuid,
            api_endpoint,
            device_api_key,
            device_type: pick("FLEET_DEVICE_TYPE", &s.supervisor.device_type),
            development_mode: s.development_mode,
            root_ca: root_ca(config.document()),
            os_version: env("FLEET_OS_VERSION").filter(|v| !v.is_empty()),
            vpn_endpoint: s.supervisor.vpn_endpoint.clone(),
            vpn_port: s.supervisor.vpn_port,
            registration: Registration {
                config_path: Some(args.config.clone()),
                provisioning_key: s.supervisor.provisioning_key.clone(),
                application_id: pick("FLEET_APPLICATION_ID", &s.supervisor.application_id),
                registered_at: s.supervisor.registered_at,
                device_id: s.supervisor.device_id,
            },
        })
    }

    /// The identity config.json already gives: registered (no provisioning key left) with a
    /// uuid and a device key. `None` when registration is pending or there is no server.
    pub fn identity(&self) -> Option<Identity> {
        self.api_endpoint.as_ref()?;
        if self.registration.provisioning_key.is_some() {
            return None;
        }
        Some(Identity {
            uuid: self.uuid.clone()?,
            device_api_key: self.device_api_key.clone()?,
        })
    }

    pub fn target_file(&self) -> PathBuf {
        self.data_dir.join(TARGET_FILE)
    }

    /// True when the target is polled from `apiEndpoint`.
    pub fn remote(&self) -> bool {
        self.api_endpoint.is_some()
    }

    pub fn source_description(&self) -> String {
        match &self.api_endpoint {
            Some(e) => format!(
                "{e}/device/v3/{}/state (last good kept in {})",
                self.uuid.as_deref().unwrap_or("<no uuid>"),
                self.target_file().display()
            ),
            None => format!("local file {}", self.target_file().display()),
        }
    }

    /// What the planner needs to know about the host, from these settings. The engine
    /// socket is the host path the app containers get bound (`features.balena-socket`).
    pub fn host_context(&self, host_engine_socket: &str) -> HostContext {
        HostContext {
            engine_socket: host_engine_socket.to_string(),
            supervisor_port: self.listen_port,
            // Each service gets its own key (`hand_out_api_keys` in `source.rs`, before each apply); the
            // global key never goes into a container.
            supervisor_api_key: String::new(),
            api_endpoint: self.api_endpoint.clone(),
            device_api_key: self.device_api_key.clone(),
            device_type: self.device_type.clone().unwrap_or_default(),
            ..HostContext::default()
        }
    }
}

/// `fleet.supervisor.rootCA` wins over balenaOS's `balenaRootCA` when both are set.
fn root_ca(doc: &serde_json::Map<String, serde_json::Value>) -> Option<(String, String)> {
    let fleet = doc
        .get("fleet")
        .and_then(|f| f.get("supervisor"))
        .and_then(|s| s.get("rootCA"))
        .and_then(|v| v.as_str())
        .map(|v| ("fleet.supervisor.rootCA", v));
    let balena = doc
        .get("balenaRootCA")
        .and_then(|v| v.as_str())
        .map(|v| ("balenaRootCA", v));
    fleet
        .or(balena)
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
}

/// The supervisor API's key: made once from the kernel's random source and kept in the data
/// directory, so apps and the user see a stable key. Never the cloud's `deviceApiKey`.
fn local_api_key(data_dir: &Path) -> Result<String, SettingsError> {
    let path = data_dir.join(API_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok(k.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SettingsError::Io { path, source }),
    }
    new_api_key(data_dir)
}

/// Makes the global key at the first start and keeps it in the data directory.
fn new_api_key(data_dir: &Path) -> Result<String, SettingsError> {
    let key = super::api_keys::new_key()?;
    super::api_keys::keep_global(data_dir, &key)?;
    Ok(key)
}
