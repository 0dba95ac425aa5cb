//! The supervisor API's keys, as balena keeps them (`lib/api-keys.ts`): one global key (the
//! one the server calls the device with, reported as `api_secret`) and one key per service
//! with `io.balena.features.supervisor-api`, scoped to that service's app. A scoped key only
//! reaches its own app's routes; the global key reaches every app.
//!
//! Where they are kept (data directory, atomic writes, mode 0600, a restart keeps them):
//! - the global key in [`API_KEY_FILE`] (`api-key`), where the single key of earlier
//!   releases was, so that key carries on as the global one;
//! - the scoped keys in [`SERVICE_KEYS_FILE`] (`service-api-keys.json`):
//!   `{"<appId>": {"<serviceName>": "<key>"}}`.
//!
//! As in balena, a service's key is made the first time the service is configured and kept
//! for it (never dropped when the service goes), and regenerating a key replaces only that
//! key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet_release::labels::Feature;
use fleet_release::target_state::TargetState;

use super::cloud::identity::random_hex;

/// The global key in the data directory.
pub const API_KEY_FILE: &str = "api-key";
/// The scoped keys in the data directory.
pub const SERVICE_KEYS_FILE: &str = "service-api-keys.json";

/// app id → service name → key.
pub type ServiceKeys = BTreeMap<u64, BTreeMap<String, String>>;

/// What a key may reach (balena's `global` and `app` scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    App(u64),
}

impl Scope {
    /// balena's `isScoped({apps: [app_id]})`.
    pub fn allows(self, app_id: u64) -> bool {
        match self {
            Scope::Global => true,
            Scope::App(id) => id == app_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("{}: cannot read the API keys", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a map of app id to service name to key: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("/dev/urandom: cannot make an API key")]
    Random(#[source] std::io::Error),
    #[error(transparent)]
    Write(#[from] fleet_fs::FsError),
}

/// The keys in force.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    data_dir: PathBuf,
    global: String,
    services: ServiceKeys,
}

impl ApiKeys {
    /// The keys in force: the global key (`settings.api_key`, read or made at start) and the
    /// scoped keys [`read_service_keys`] read.
    pub fn new(data_dir: &Path, global: &str, services: ServiceKeys) -> ApiKeys {
        ApiKeys {
            data_dir: data_dir.to_path_buf(),
            global: global.to_string(),
            services,
        }
    }

    #[cfg(test)]
    fn load(data_dir: &Path, global: &str) -> Result<ApiKeys, ApiKeyError> {
        Ok(ApiKeys::new(data_dir, global, read_service_keys(data_dir)?))
    }

    pub fn global(&self) -> &str {
        &self.global
    }

    pub fn services(&self) -> &ServiceKeys {
        &self.services
    }

    /// The scope of a presented key, `None` for an unknown key. Every key is compared in
    /// full (no timing hint about where a key differs).
    pub fn scope_of(&self, key: &str) -> Option<Scope> {
        let mut found = None;
        if same(key.as_bytes(), self.global.as_bytes()) {
            found = Some(Scope::Global);
        }
        for (app, keys) in &self.services {
            for k in keys.values() {
                if same(key.as_bytes(), k.as_bytes()) && found.is_none() {
                    found = Some(Scope::App(*app));
                }
            }
        }
        found
    }

    /// Makes the keys the given services lack (balena's `generateScopedKey`, which returns
    /// the existing key when there is one) and keeps them; true when a key was made.
    pub fn ensure<'a>(
        &mut self,
        services: impl IntoIterator<Item = (u64, &'a str)>,
    ) -> Result<bool, ApiKeyError> {
        let mut next = self.services.clone();
        let mut made = false;
        for (app, service) in services {
            let keys = next.entry(app).or_default();
            if !keys.contains_key(service) {
                keys.insert(service.to_string(), new_key()?);
                made = true;
            }
        }
        if made {
            self.save_services(&next)?;
            self.services = next;
        }
        Ok(made)
    }

    /// balena's `refreshKey`: a new key in place of `old` (the global one or one service's),
    /// kept before it is answered. `None` when `old` is no key of ours.
    pub fn regenerate(&mut self, old: &str) -> Result<Option<(Scope, String)>, ApiKeyError> {
        let Some(scope) = self.scope_of(old) else {
            return Ok(None);
        };
        let key = new_key()?;
        match scope {
            Scope::Global => {
                keep_global(&self.data_dir, &key)?;
                self.global = key.clone();
            }
            Scope::App(_) => {
                let mut next = self.services.clone();
                for keys in next.values_mut() {
                    for k in keys.values_mut() {
                        if same(k.as_bytes(), old.as_bytes()) {
                            *k = key.clone();
                        }
                    }
                }
                self.save_services(&next)?;
                self.services = next;
            }
        }
        Ok(Some((scope, key)))
    }

    fn save_services(&self, services: &ServiceKeys) -> Result<(), ApiKeyError> {
        let bytes = serde_json::to_vec_pretty(services).unwrap_or_default();
        fleet_fs::ensure_dir(&self.data_dir)?;
        fleet_fs::atomic_write(&self.data_dir.join(SERVICE_KEYS_FILE), &bytes, 0o600)?;
        Ok(())
    }
}

/// The services of `target` with `features.supervisor-api`, as (app id, service name).
pub fn wanted(target: &TargetState) -> Vec<(u64, &str)> {
    let mut out = Vec::new();
    for app in target.apps.values() {
        let Some(release) = &app.release else {
            continue;
        };
        for (name, spec) in &release.compose.services {
            let (labels, _) = fleet_release::labels::read(&spec.labels);
            if labels.features.contains(&Feature::SupervisorApi) {
                out.push((app.id, name.as_str()));
            }
        }
    }
    out
}

/// The scoped keys kept in `data_dir` (none yet: empty). An unreadable file is an error, so
/// the services' keys never change behind their back.
pub fn read_service_keys(data_dir: &Path) -> Result<ServiceKeys, ApiKeyError> {
    let path = data_dir.join(SERVICE_KEYS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| ApiKeyError::Parse { path, source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ServiceKeys::new()),
        Err(source) => Err(ApiKeyError::Read { path, source }),
    }
}

/// Keeps `key` as the global key in `data_dir` (atomic, mode 0600), in place of the old one.
pub fn keep_global(data_dir: &Path, key: &str) -> Result<(), fleet_fs::FsError> {
    fleet_fs::ensure_dir(data_dir)?;
    fleet_fs::atomic_write(&data_dir.join(API_KEY_FILE), key.as_bytes(), 0o600)
}

/// A new key: 16 bytes from the kernel's random source as 32 hex characters.
pub fn new_key() -> Result<String, ApiKeyError> {
    random_hex(16).map_err(ApiKeyError::Random)
}

/// Compares without stopping at the first difference.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn scopes_follow_balenas_rules() {
        assert!(Scope::Global.allows(1));
        assert!(Scope::Global.allows(77));
        assert!(Scope::App(1).allows(1));
        assert!(!Scope::App(1).allows(2));
    }

    #[test]
    fn service_keys_are_made_once_kept_and_scoped_to_their_app() {
        let tmp = tempfile::tempdir().unwrap();
        let mut keys = ApiKeys::load(tmp.path(), "g0").unwrap();
        assert_eq!(keys.scope_of("g0"), Some(Scope::Global));
        assert_eq!(keys.scope_of(""), None);
        assert_eq!(keys.scope_of("g"), None);
        assert!(keys.ensure([(1, "main"), (2, "other")]).unwrap());
        let main = keys.services()[&1]["main"].clone();
        let other = keys.services()[&2]["other"].clone();
        assert_eq!(main.len(), 32);
        assert_ne!(main, other);
        assert_eq!(keys.scope_of(&main), Some(Scope::App(1)));
        assert_eq!(keys.scope_of(&other), Some(Scope::App(2)));
        // Asking again keeps the keys and writes nothing.
        assert!(!keys.ensure([(1, "main")]).unwrap());
        assert_eq!(keys.services()[&1]["main"], main);
        let file = tmp.path().join(SERVICE_KEYS_FILE);
        assert_eq!(mode(&file), 0o600);
        // A restart reads them back.
        let again = ApiKeys::load(tmp.path(), "g0").unwrap();
        assert_eq!(again.scope_of(&main), Some(Scope::App(1)));
        assert_eq!(again.scope_of(&other), Some(Scope::App(2)));
    }

    #[test]
    fn regenerating_replaces_only_the_key_given() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(API_KEY_FILE), "g0").unwrap();
        let mut keys = ApiKeys::load(tmp.path(), "g0").unwrap();
        keys.ensure([(1, "main"), (2, "other")]).unwrap();
        let main = keys.services()[&1]["main"].clone();
        let other = keys.services()[&2]["other"].clone();

        let (scope, new_main) = keys.regenerate(&main).unwrap().unwrap();
        assert_eq!(scope, Scope::App(1));
        assert_eq!(keys.scope_of(&main), None);
        assert_eq!(keys.scope_of(&new_main), Some(Scope::App(1)));
        assert_eq!(keys.scope_of(&other), Some(Scope::App(2)));
        assert_eq!(keys.global(), "g0");
        let again = ApiKeys::load(tmp.path(), "g0").unwrap();
        assert_eq!(again.services()[&1]["main"], new_main);

        let (scope, new_global) = keys.regenerate("g0").unwrap().unwrap();
        assert_eq!(scope, Scope::Global);
        assert_eq!(keys.scope_of("g0"), None);
        assert_eq!(keys.scope_of(&new_global), Some(Scope::Global));
        assert_eq!(keys.scope_of(&new_main), Some(Scope::App(1)));
        let file = tmp.path().join(API_KEY_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), new_global);
        assert_eq!(mode(&file), 0o600);

        assert!(keys.regenerate("unknown").unwrap().is_none());
    }

    #[test]
    fn a_damaged_key_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(SERVICE_KEYS_FILE), "[1]").unwrap();
        let e = ApiKeys::load(tmp.path(), "g").unwrap_err().to_string();
        assert!(e.contains(SERVICE_KEYS_FILE), "{e}");
    }
}
