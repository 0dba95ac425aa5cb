//! The root prefix every service runs against, and the fixed paths of the fleetOS design
//! (`DESIGN.md` §4 "State binds" and §6). Tests point services at a directory tree with
//! `--root DIR` or `FLEET_ROOT`; on a device the root is `/`.

use std::path::{Path, PathBuf};

/// Environment variable naming the root prefix when `--root` is not given.
pub const ROOT_ENV: &str = "FLEET_ROOT";

/// Mount point of the `fleet-boot` FAT partition.
pub const BOOT_MOUNT: &str = "/mnt/boot";
/// `config.json` on the boot partition.
pub const CONFIG_JSON: &str = "/mnt/boot/config.json";
/// NetworkManager keyfiles dropped on the boot partition by the user.
pub const BOOT_CONNECTIONS: &str = "/mnt/boot/system-connections";
/// Mount point of the `fleet-state` partition.
pub const STATE_MOUNT: &str = "/mnt/state";
/// Mount point of the `fleet-data` partition.
pub const DATA_MOUNT: &str = "/mnt/data";
/// fleetOS's own persistent state (bind-mounted from the state partition).
pub const FLEET_STATE_DIR: &str = "/var/lib/fleet";

/// A root prefix: absolute contract paths are resolved below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Default for Root {
    fn default() -> Self {
        Root {
            dir: PathBuf::from("/"),
        }
    }
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root { dir: dir.into() }
    }

    /// `--root` when given, else `FLEET_ROOT` when set and non-empty, else `/`.
    pub fn from_arg_or_env(arg: Option<PathBuf>) -> Self {
        arg.or_else(|| {
            std::env::var_os(ROOT_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .map(Root::new)
        .unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when running against the real system (root `/`), where side effects outside the
    /// tree (sethostname, udevadm, systemctl) are wanted.
    pub fn is_system(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// Resolves an absolute contract path such as `/etc/hostname` below the root.
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let p = absolute.as_ref();
        let relative = p.strip_prefix("/").unwrap_or(p);
        self.dir.join(relative)
    }

    pub fn config_json(&self) -> PathBuf {
        self.path(CONFIG_JSON)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path(FLEET_STATE_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_below_prefix() {
        let r = Root::new("/tmp/t");
        assert_eq!(
            r.path("/etc/hostname"),
            PathBuf::from("/tmp/t/etc/hostname")
        );
        assert_eq!(
            r.config_json(),
            PathBuf::from("/tmp/t/mnt/boot/config.json")
        );
        assert!(!r.is_system());
        assert!(Root::default().is_system());
        assert_eq!(Root::default().path("/etc"), PathBuf::from("/etc"));
    }

    #[test]
    fn argument_wins_over_environment() {
        let r = Root::from_arg_or_env(Some(PathBuf::from("/x")));
        assert_eq!(r.dir(), Path::new("/x"));
    }
}
