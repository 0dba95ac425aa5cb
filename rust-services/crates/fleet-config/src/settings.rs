//! The typed view of `config.json`, filled in by the validator.

use std::collections::BTreeMap;

/// Everything fleetOS acts on. Defaults are the production defaults: no persistent logging,
/// no development mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `hostname`
    pub hostname: Option<String>,
    /// `persistentLogging`
    pub persistent_logging: bool,
    /// `developmentMode`
    pub development_mode: bool,
    /// `os.sshKeys`, in order.
    pub ssh_keys: Vec<String>,
    /// `os.udevRules`: rule name → rule text (written to `rules.d/<name>.rules`).
    pub udev_rules: BTreeMap<String, String>,
    /// `os.network.connectivity`
    pub connectivity: Option<Connectivity>,
    /// `ntpServers` (balenaOS: space-separated string; a list is accepted too).
    pub ntp_servers: Vec<String>,
    /// `dnsServers`: `None` when unset (system default), `Some(empty)` for balenaOS's `"null"`.
    pub dns_servers: Option<Vec<String>>,
    /// Keys passed through to the supervisor.
    pub supervisor: SupervisorKeys,
    /// fleetOS keys under `fleet`.
    pub fleet: FleetSettings,
}

/// NetworkManager connectivity check (`os.network.connectivity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connectivity {
    pub uri: String,
    /// Seconds between checks; 0 disables checking.
    pub interval: u64,
    pub response: Option<String>,
}

/// The balena supervisor's keys fleetOS reads (all others pass through untouched).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupervisorKeys {
    pub uuid: Option<String>,
    pub api_endpoint: Option<String>,
    pub device_api_key: Option<String>,
    /// `applicationId`, a number or a string in balena files; kept as text.
    pub application_id: Option<String>,
    pub device_type: Option<String>,
    pub listen_port: Option<u16>,
    /// `apiKey`: the fleet's provisioning key, present until the device is registered.
    pub provisioning_key: Option<String>,
    /// `registered_at` (ms since the epoch) and `deviceId`: written once registered.
    pub registered_at: Option<u64>,
    pub device_id: Option<u64>,
    /// `vpnEndpoint`, `vpnPort`: the VPN server the device connects to (balena's keys); they
    /// replace the `remote` of the server-supplied OpenVPN config when set.
    pub vpn_endpoint: Option<String>,
    pub vpn_port: Option<u16>,
}

/// `fleet.*`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSettings {
    /// `fleet.network.wifi`
    pub wifi: Vec<WifiNetwork>,
    /// `fleet.supervisor.image`
    pub supervisor_image: Option<String>,
    /// `fleet.logging.maxUse` in journald syntax (`32M`); `None` = default.
    pub logging_max_use: Option<String>,
    /// `fleet.update.url`: the release channel file `fleet-update.timer` checks.
    pub update_url: Option<String>,
    /// `fleet.vpn.enabled`: run the OpenVPN client (`fleet-vpn.service`); off by default.
    pub vpn_enabled: bool,
}

/// One `fleet.network.wifi` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WifiNetwork {
    pub ssid: String,
    /// WPA passphrase (8–63 characters) or 64-hex PSK; `None` for an open network.
    pub psk: Option<String>,
    pub hidden: bool,
    pub priority: i32,
}

impl Settings {
    /// Default size cap of the persistent journal.
    pub const DEFAULT_LOGGING_MAX_USE: &'static str = "32M";

    pub fn logging_max_use(&self) -> &str {
        self.fleet
            .logging_max_use
            .as_deref()
            .unwrap_or(Self::DEFAULT_LOGGING_MAX_USE)
    }
}
