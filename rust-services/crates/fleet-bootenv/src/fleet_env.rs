//! fleetOS's own two-copy boot state on the Raspberry Pi (`fleet-a.env`, `fleet-b.env` on
//! fleet-boot), as `boot.cmd.in` reads and writes it with U-Boot's `env export -c -s 0x1000`
//! / `env import -c`: each copy is a U-Boot environment image ([`crate::uboot`] format, 4096
//! bytes) holding only `fleet_active`, `fleet_seq`, `fleet_try`, `fleet_tries`.
//!
//! `fleet_seq` (hex, as U-Boot's `setexpr` prints it) counts writes modulo 0x10000. The valid
//! copy (right size, CRC good, `fleet_seq` present) with the newer sequence number is current;
//! every write goes to the other copy, so a write torn at any moment leaves the previous state
//! readable. With no copy at all, the fleet variables of the legacy single `uboot.env` are
//! read (devices set up before this scheme); the first store then creates `fleet-a.env`.

use std::path::{Path, PathBuf};

use super::uboot;
use super::{BootEnv, EnvError, Line, VAR_ACTIVE, VAR_TRIES, VAR_TRY, Vars};
use fleet_fs::{FsError, atomic_write};

/// Size of one copy (`env export -s`).
pub const SIZE: usize = 0x1000;
pub const VAR_SEQ: &str = "fleet_seq";
/// The variables a copy holds, as the script exports them.
pub const VARS: [&str; 4] = [VAR_ACTIVE, VAR_SEQ, VAR_TRY, VAR_TRIES];

/// The two copies and the legacy file.
#[derive(Debug, Clone)]
pub struct FleetEnv {
    copies: [PathBuf; 2],
    legacy: PathBuf,
}

/// One copy as read: its sequence number and variables, or why it is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copy {
    Missing,
    Invalid(String),
    Valid { seq: u16, vars: Vars },
}

/// `a` was written after `b`: (a - b) mod 0x10000 in 1..0x8000 (what the script computes).
pub fn newer(a: u16, b: u16) -> bool {
    let d = a.wrapping_sub(b);
    d > 0 && d < 0x8000
}

/// Reads one copy's bytes as the script does.
pub fn parse_copy(bytes: &[u8]) -> Copy {
    if bytes.len() != SIZE {
        return Copy::Invalid(format!("{} bytes, not {SIZE}", bytes.len()));
    }
    let vars = match uboot::parse(bytes) {
        Ok(v) => v,
        Err(e) => return Copy::Invalid(e),
    };
    match vars.get(VAR_SEQ).map(|s| u64::from_str_radix(s, 16)) {
        Some(Ok(seq)) => Copy::Valid {
            seq: (seq & 0xffff) as u16,
            vars: only_fleet(&vars),
        },
        _ => Copy::Invalid(format!("no hexadecimal {VAR_SEQ}")),
    }
}

/// The image of one copy: the fleet variables of `vars` with `fleet_seq` = `seq`; `None` when
/// they do not fit in the copy's size.
pub fn serialize_copy(vars: &Vars, seq: u16) -> Option<Vec<u8>> {
    let mut out = only_fleet(vars);
    out.set(VAR_SEQ, &format!("{seq:x}"));
    uboot::serialize(&out, SIZE)
}

fn only_fleet(vars: &Vars) -> Vars {
    Vars {
        lines: vars
            .iter()
            .filter(|(k, _)| VARS.contains(k))
            .map(|(k, v)| Line::Var(k.to_string(), v.to_string()))
            .collect(),
        size: Some(SIZE),
    }
}

/// Index of the current copy among two reads, if any is valid.
pub fn current(copies: &[Copy; 2]) -> Option<usize> {
    match copies {
        [Copy::Valid { seq: a, .. }, Copy::Valid { seq: b, .. }] => {
            // Equal numbers (never written so): b, as the script decides.
            Some(if newer(*a, *b) { 0 } else { 1 })
        }
        [Copy::Valid { .. }, _] => Some(0),
        [_, Copy::Valid { .. }] => Some(1),
        _ => None,
    }
}

impl FleetEnv {
    /// `dir` is the boot partition's mount point (`/mnt/boot`).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        FleetEnv {
            copies: [dir.join("fleet-a.env"), dir.join("fleet-b.env")],
            legacy: dir.join("uboot.env"),
        }
    }

    fn read(&self, i: usize) -> Result<Copy, EnvError> {
        match std::fs::read(&self.copies[i]) {
            Ok(bytes) => Ok(parse_copy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Copy::Missing),
            Err(e) => Err(FsError::new(&self.copies[i], "read", e).into()),
        }
    }

    pub fn read_both(&self) -> Result<[Copy; 2], EnvError> {
        Ok([self.read(0)?, self.read(1)?])
    }
}

impl BootEnv for FleetEnv {
    fn path(&self) -> &Path {
        &self.copies[0]
    }

    fn kind(&self) -> &'static str {
        "uboot"
    }

    /// The current copy's variables; with no copy at all, the legacy `uboot.env`'s fleet
    /// variables (none when it is missing); with copies but none valid, none (slot A, as the
    /// script boots it).
    fn load(&self) -> Result<Vars, EnvError> {
        let copies = self.read_both()?;
        if let Some(i) = current(&copies)
            && let Copy::Valid { vars, .. } = &copies[i]
        {
            return Ok(vars.clone());
        }
        if copies.iter().all(|c| *c == Copy::Missing) && self.legacy.exists() {
            let legacy = uboot::UbootEnv::new(&self.legacy).load()?;
            return Ok(only_fleet(&legacy));
        }
        Ok(Vars::default())
    }

    /// Writes the fleet variables of `vars` into the copy that is not current, one sequence
    /// number on; the current copy stays untouched.
    fn store(&self, vars: &Vars) -> Result<(), EnvError> {
        let copies = self.read_both()?;
        let (target, seq) = match current(&copies).map(|i| (i, &copies[i])) {
            Some((i, Copy::Valid { seq, .. })) => (1 - i, seq.wrapping_add(1)),
            _ => (0, 1),
        };
        let path = &self.copies[target];
        let bytes = serialize_copy(vars, seq).ok_or_else(|| EnvError::Full {
            path: path.clone(),
            size: SIZE,
        })?;
        atomic_write(path, &bytes, 0o644)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BootState;
    use crate::Slot;

    fn state(active: Slot, trial: Option<Slot>, tries: u32) -> Vars {
        let mut v = Vars::default();
        BootState {
            active,
            trial,
            tries,
        }
        .apply(&mut v);
        v
    }

    #[test]
    fn sequence_wraps() {
        assert!(newer(1, 0));
        assert!(newer(0, 0xffff));
        assert!(!newer(0xffff, 0));
        assert!(!newer(5, 5));
        assert!(newer(0x7fff, 0));
        assert!(!newer(0x8000, 0));
        let copy = |seq| Copy::Valid {
            seq,
            vars: Vars::default(),
        };
        assert_eq!(current(&[copy(3), copy(3)]), Some(1));
        assert_eq!(current(&[copy(0), copy(0xffff)]), Some(0));
        assert_eq!(current(&[Copy::Missing, copy(1)]), Some(1));
        assert_eq!(
            current(&[Copy::Missing, Copy::Invalid(String::new())]),
            None
        );
    }

    #[test]
    fn image_is_what_env_export_writes() {
        // Sorted, fleet_try dropped when empty, hex sequence, zero padding, CRC-32 LE.
        let bytes = serialize_copy(&state(Slot::B, Some(Slot::A), 1), 0x1b).unwrap();
        assert_eq!(bytes.len(), SIZE);
        let text = b"fleet_active=B\0fleet_seq=1b\0fleet_tries=1\0fleet_try=A\0\0";
        assert_eq!(&bytes[4..4 + text.len()], text);
        assert!(bytes[4 + text.len()..].iter().all(|&b| b == 0));
        let crc = crate::crc::crc32(&bytes[4..]);
        assert_eq!(bytes[..4], crc.to_le_bytes());
        let none = serialize_copy(&state(Slot::A, None, 0), 0xffff).unwrap();
        assert!(none[4..].starts_with(b"fleet_active=A\0fleet_seq=ffff\0fleet_tries=0\0\0"));
    }

    #[test]
    fn writes_alternate_and_a_torn_copy_leaves_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let env = FleetEnv::new(dir.path());
        assert_eq!(env.load().unwrap(), Vars::default());
        env.store(&state(Slot::A, Some(Slot::B), 3)).unwrap();
        assert!(dir.path().join("fleet-a.env").exists());
        assert!(!dir.path().join("fleet-b.env").exists());
        env.store(&state(Slot::B, None, 0)).unwrap();
        let b = std::fs::read(dir.path().join("fleet-b.env")).unwrap();
        assert!(matches!(parse_copy(&b), Copy::Valid { seq: 2, .. }));
        assert_eq!(BootState::from_vars(&env.load().unwrap()).active, Slot::B);
        // Tear the newer copy (B good): the older copy (trial of B armed) is read, and the
        // next write replaces the torn one, not the valid one.
        std::fs::write(dir.path().join("fleet-b.env"), &b[..1500]).unwrap();
        let s = BootState::from_vars(&env.load().unwrap());
        assert_eq!((s.active, s.trial, s.tries), (Slot::A, Some(Slot::B), 3));
        let a_before = std::fs::read(dir.path().join("fleet-a.env")).unwrap();
        env.store(&state(Slot::B, None, 0)).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("fleet-a.env")).unwrap(),
            a_before
        );
        assert_eq!(BootState::from_vars(&env.load().unwrap()).active, Slot::B);
        // A flipped byte is caught by the CRC.
        let mut bad = std::fs::read(dir.path().join("fleet-b.env")).unwrap();
        bad[12] ^= 0x55;
        assert!(matches!(parse_copy(&bad), Copy::Invalid(r) if r.contains("CRC")));
    }

    #[test]
    fn wrapped_copy_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fleet-a.env"),
            serialize_copy(&state(Slot::A, None, 0), 0xffff).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("fleet-b.env"),
            serialize_copy(&state(Slot::B, None, 0), 0).unwrap(),
        )
        .unwrap();
        let env = FleetEnv::new(dir.path());
        assert_eq!(BootState::from_vars(&env.load().unwrap()).active, Slot::B);
        env.store(&state(Slot::B, Some(Slot::A), 2)).unwrap();
        let a = std::fs::read(dir.path().join("fleet-a.env")).unwrap();
        assert!(matches!(parse_copy(&a), Copy::Valid { seq: 1, .. }));
    }

    #[test]
    fn legacy_uboot_env_only_without_copies() {
        let dir = tempfile::tempdir().unwrap();
        let mut legacy = state(Slot::B, None, 0);
        legacy.set("bootcmd", "run distro_bootcmd");
        legacy.set("ethaddr", "b8:27:eb:00:00:01");
        std::fs::write(
            dir.path().join("uboot.env"),
            uboot::serialize(&legacy, 0x4000).unwrap(),
        )
        .unwrap();
        let env = FleetEnv::new(dir.path());
        let vars = env.load().unwrap();
        assert_eq!(BootState::from_vars(&vars).active, Slot::B);
        assert_eq!(vars.get("ethaddr"), None);
        env.store(&vars).unwrap();
        let a = std::fs::read(dir.path().join("fleet-a.env")).unwrap();
        assert!(!String::from_utf8_lossy(&a).contains("ethaddr"));
        // Copies present but all damaged: the legacy file is no longer consulted.
        std::fs::write(dir.path().join("fleet-a.env"), &a[..100]).unwrap();
        assert_eq!(env.load().unwrap(), Vars::default());
    }

    #[test]
    fn variables_too_big_for_a_copy_are_an_error_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = FleetEnv::new(dir.path());
        env.store(&state(Slot::B, None, 0)).unwrap();
        let mut huge = state(Slot::A, Some(Slot::B), 3);
        huge.set(VAR_TRY, &"B".repeat(SIZE));
        assert!(matches!(env.store(&huge), Err(EnvError::Full { .. })));
        assert!(!dir.path().join("fleet-b.env").exists());
        assert_eq!(BootState::from_vars(&env.load().unwrap()).active, Slot::B);
    }
}
