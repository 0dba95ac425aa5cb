//! Reading config.json, and the copy of the last configuration that applied cleanly.

use fleet_config::{Config, ConfigError, Severity};
use fleet_fs::Root;
use fleet_fs::{Change, FsError, write_if_changed};
use fleet_log::error::{Chain, one_line};

use super::error::LoadError;

/// The last configuration that applied without a failure (0600: it holds `deviceApiKey`).
pub const LAST_GOOD: &str = "/var/lib/fleet/config.last-good.json";

/// Loads config.json: missing → defaults with a warning; unreadable or invalid → one error
/// line per problem and an error, so nothing of it is applied.
pub fn load(root: &Root) -> Result<Config, LoadError> {
    let path = root.config_json();
    match Config::load(&path) {
        Ok(Some(config)) => {
            for w in config.warnings() {
                log::warn!(FLEET_KEY = w.path.as_str(); "config.json: {w}");
            }
            Ok(config)
        }
        Ok(None) => {
            log::warn!(FLEET_PATH = fleet_fs::root::CONFIG_JSON; "config.json not found, applying defaults");
            Ok(Config::empty())
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            let errors = problems.iter().filter(|p| p.severity == Severity::Error);
            for p in errors.clone() {
                log::error!(FLEET_KEY = p.path.as_str(); "config.json: {p}");
            }
            Err(LoadError::Invalid {
                path: fleet_fs::root::CONFIG_JSON.into(),
                count: errors.count(),
                kept: false,
            })
        }
        Err(ConfigError::Io { source, .. }) => Err(LoadError::Unreadable {
            path: fleet_fs::root::CONFIG_JSON.into(),
            reason: one_line(&source),
            kept: false,
        }),
    }
}

/// The last good configuration, if one was saved and still parses.
pub fn last_good(root: &Root) -> Option<Config> {
    match Config::load(&root.path(LAST_GOOD)) {
        Ok(c) => c,
        Err(e) => {
            log::warn!(FLEET_PATH = LAST_GOOD; "ignoring the last good configuration: {}", Chain(&e));
            None
        }
    }
}

pub fn save_last_good(root: &Root, config: &Config) -> Result<(), FsError> {
    if write_if_changed(&root.path(LAST_GOOD), &config.to_bytes(), 0o600)? == Change::Written {
        log::info!(FLEET_PATH = LAST_GOOD; "saved as the last good configuration");
    }
    Ok(())
}
