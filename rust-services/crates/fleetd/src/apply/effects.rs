//! Effects outside the file tree: commands (systemctl, udevadm, journalctl) and syscalls
//! (sethostname). They only happen on the real system (`Root::is_system()`); against a temp
//! root the files are written and each skipped effect is logged at debug level, so tests never
//! touch the machine they run on.

use std::process::Command;

use fleet_fs::Root;

/// An external effect that failed; the setting it belongs to fails alone.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error("{command}: cannot run")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command}: {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        detail: String,
    },
    #[error("sethostname {name}")]
    Hostname {
        name: String,
        #[source]
        source: nix::Error,
    },
}

/// Runs effects on the real system, logs and skips them anywhere else.
#[derive(Debug, Clone, Copy)]
pub struct Effects {
    system: bool,
}

impl Effects {
    pub fn for_root(root: &Root) -> Self {
        Effects {
            system: root.is_system(),
        }
    }

    /// True when effects really happen.
    pub fn live(&self) -> bool {
        self.system
    }

    /// Runs `program args…`; a non-zero exit is an error carrying its last stderr line.
    pub fn run(&self, key: &str, program: &str, args: &[&str]) -> Result<(), EffectError> {
        let command = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        if !self.system {
            log::debug!(FLEET_KEY = key; "not the real system root, skipped: {command}");
            return Ok(());
        }
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|source| EffectError::Spawn {
                command: command.clone(),
                source,
            })?;
        if out.status.success() {
            log::debug!(FLEET_KEY = key; "ran: {command}");
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(EffectError::Failed {
            command,
            status: out.status,
            detail: stderr.lines().last().unwrap_or("").trim().to_string(),
        })
    }

    /// `systemctl ARGS…`
    pub fn systemctl(&self, key: &str, args: &[&str]) -> Result<(), EffectError> {
        self.run(key, "systemctl", args)
    }

    /// Sets the running hostname when it differs. systemd sets it from the read-only root
    /// before the state binds are mounted, so this runs on every boot, changed file or not.
    /// Returns true when the hostname was changed.
    pub fn set_hostname(&self, name: &str) -> Result<bool, EffectError> {
        if !self.system {
            log::debug!(FLEET_KEY = "hostname"; "not the real system root, skipped: sethostname {name}");
            return Ok(false);
        }
        if nix::unistd::gethostname().is_ok_and(|h| h == name) {
            return Ok(false);
        }
        nix::unistd::sethostname(name).map_err(|source| EffectError::Hostname {
            name: name.to_string(),
            source,
        })?;
        Ok(true)
    }
}
