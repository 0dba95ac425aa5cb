//! Boot state shared with the bootloader: which slot is known-good (`fleet_active`), which is
//! on trial (`fleet_try`) and how many trial boots are left (`fleet_tries`).
//!
//! Backends behind [`BootEnv`]: the GRUB environment block on x86 ([`grub`]) and, on the
//! Raspberry Pi, the two-copy `fleet-a.env`/`fleet-b.env` that `boot.cmd.in` keeps
//! ([`fleet_env`], reading the legacy single `uboot.env` ([`uboot`]) until a copy exists),
//! or with firmware-native A/B on the Pi 4/5, `autoboot.txt` plus a trial record
//! ([`tryboot`]). Each store replaces one file atomically (tryboot: rewrites one sector in
//! place, read back), so one [`BootEnv::store`] is one power-safe state change.
//! [`select::open`] picks the backend.

pub mod crc;
pub mod fat;
pub mod fleet_env;
pub mod grub;
pub mod select;
pub mod tryboot;
pub mod uboot;

use std::fmt;
use std::path::{Path, PathBuf};

use fleet_fs::FsError;

/// GRUB's environment block on the ESP (the GRUB script reads `($esp)/EFI/fleet/grubenv`).
pub const GRUB_ENV: &str = "/mnt/boot/EFI/fleet/grubenv";
/// U-Boot's own environment file on fleet-boot (legacy boot state, read for migration).
pub const UBOOT_ENV: &str = "/mnt/boot/uboot.env";
/// The boot partition, where the Raspberry Pi's `fleet-a.env`/`fleet-b.env` live.
pub const BOOT_DIR: &str = "/mnt/boot";
/// Optional: `bootloader=grub|uboot|tryboot` when the file's presence is not enough to tell.
pub const UPDATE_CONF: &str = "/etc/fleet/update.conf";
/// The keys of [`UPDATE_CONF`] (fleetd's `health` reads `health-units`).
pub const UPDATE_CONF_KEYS: &[&str] = &["bootloader", "health-units"];

pub const VAR_ACTIVE: &str = "fleet_active";
pub const VAR_TRY: &str = "fleet_try";
pub const VAR_TRIES: &str = "fleet_tries";

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{}: the variables do not fit in {size} bytes", path.display())]
    Full { path: PathBuf, size: usize },
    #[error("no boot state found: none of {}, {}, {} exists (set bootloader= in {})", grub.display(), uboot.display(), autoboot.display(), conf.display())]
    NotFound {
        grub: PathBuf,
        uboot: PathBuf,
        autoboot: PathBuf,
        conf: PathBuf,
    },
    #[error(transparent)]
    Settings(#[from] fleet_fs::KeyValueError),
}

/// One line of an environment: GRUB keeps comments in place; U-Boot has only variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Comment(String),
    Var(String, String),
}

/// The variables of an environment, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    pub lines: Vec<Line>,
    /// Size of the file they were read from.
    pub size: Option<usize>,
}

impl Vars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Sets in place when present, appends otherwise (what GRUB and fw_setenv do).
    pub fn set(&mut self, name: &str, value: &str) {
        for line in &mut self.lines {
            if let Line::Var(k, v) = line
                && k == name
            {
                *v = value.to_string();
                return;
            }
        }
        self.lines
            .push(Line::Var(name.to_string(), value.to_string()));
    }

    pub fn unset(&mut self, name: &str) {
        self.lines
            .retain(|l| !matches!(l, Line::Var(k, _) if k == name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Var(k, v) => Some((k.as_str(), v.as_str())),
            Line::Comment(_) => None,
        })
    }
}

/// A storage backend for the boot environment.
pub trait BootEnv {
    fn path(&self) -> &Path;
    /// `grub`, `uboot` or `tryboot`.
    fn kind(&self) -> &'static str;
    fn load(&self) -> Result<Vars, EnvError>;
    /// Replaces the whole environment atomically.
    fn store(&self, vars: &Vars) -> Result<(), EnvError>;
}

/// A root filesystem slot.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// Partition (GPT) and filesystem label of the slot.
    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "fleet-rootA",
            Slot::B => "fleet-rootB",
        }
    }

    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }

    pub fn from_label(label: &str) -> Option<Slot> {
        label.strip_prefix("fleet-root").and_then(Slot::parse)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The boot state as the bootloader scripts interpret it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    pub active: Slot,
    pub trial: Option<Slot>,
    pub tries: u32,
}

impl BootState {
    /// The same state with no trial armed (rollback, or a slot about to be rewritten).
    pub fn without_trial(self) -> BootState {
        BootState {
            trial: None,
            tries: 0,
            ..self
        }
    }

    /// Reads the variables exactly as `grub-fleet.cfg.in` / `boot.cmd.in` do: anything but
    /// `B` is slot A; an unknown trial slot or tries value means no trial left.
    pub fn from_vars(vars: &Vars) -> BootState {
        let active = if vars.get(VAR_ACTIVE) == Some("B") {
            Slot::B
        } else {
            Slot::A
        };
        let trial = vars.get(VAR_TRY).and_then(Slot::parse);
        let tries = vars
            .get(VAR_TRIES)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        BootState {
            active,
            trial,
            tries,
        }
    }

    /// Writes the three variables into `vars`, keeping everything else.
    pub fn apply(&self, vars: &mut Vars) {
        vars.set(VAR_ACTIVE, self.active.as_str());
        vars.set(VAR_TRY, self.trial.map(Slot::as_str).unwrap_or(""));
        vars.set(VAR_TRIES, &self.tries.to_string());
    }

    /// The slot the next boot starts, and the state it leaves behind (what the bootloader
    /// script does, step for step).
    pub fn next_boot(&self) -> (Slot, BootState) {
        match self.trial {
            Some(t) if (1..=9).contains(&self.tries) => (
                t,
                BootState {
                    tries: self.tries - 1,
                    ..*self
                },
            ),
            Some(_) => (
                self.active,
                BootState {
                    trial: None,
                    tries: 0,
                    ..*self
                },
            ),
            None => (self.active, *self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_counts_down_then_rolls_back() {
        let mut s = BootState {
            active: Slot::A,
            trial: Some(Slot::B),
            tries: 3,
        };
        let mut booted = Vec::new();
        for _ in 0..5 {
            let (slot, next) = s.next_boot();
            booted.push(slot);
            s = next;
        }
        assert_eq!(booted, [Slot::B, Slot::B, Slot::B, Slot::A, Slot::A]);
        assert_eq!(s.trial, None);
    }
}
