//! A service's network mode, on its own so that `labels` (which the parser calls) can use it
//! without importing the parser's module: no import cycle.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// The app's bridge networks (`default` unless `networks` says otherwise).
    Bridge,
    Host,
    /// `network_mode: none`: loopback only.
    None,
    /// `network_mode: service:NAME`: the network namespace of another service of the app
    /// (named in `Service::network_mode_service`).
    Service,
}

impl NetworkMode {
    /// The compose spelling (`network_mode: host`; bridge is the app's own networks).
    pub fn name(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
            NetworkMode::Service => "service",
        }
    }
}
