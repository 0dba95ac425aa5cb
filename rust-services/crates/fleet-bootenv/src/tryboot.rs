//! Firmware-native A/B on the Raspberry Pi 4 and 5 (`FLEET_RPI_BOOT = "tryboot"`): no
//! U-Boot. The EEPROM bootloader reads `autoboot.txt` on partition 1 (`fleet-auto`, FAT,
//! holding nothing else), boots `boot_partition` of its `[all]` section, or the one of its
//! `[tryboot]` section when the one-shot tryboot flag is set (`reboot "0 tryboot"`; the
//! firmware clears the flag before it starts, so any later reset boots `[all]` again).
//! Slot A boots from partition 2 (`fleet-bootA`), slot B from partition 3 (`fleet-bootB`).
//!
//! How the [`BootEnv`] variables map onto that:
//! - `fleet_active` is `[all]`'s `boot_partition`. Changing it (mark-good) rewrites the data
//!   of `autoboot.txt` in place: the file always has the same length (both partition numbers
//!   are one digit), lives in one sector, and only that sector is written — no FAT table,
//!   directory entry or cluster chain changes — then it is read back (page cache dropped) and
//!   compared. A torn sector can only mix the two digits: see [`Autoboot::active`].
//! - `fleet_try`/`fleet_tries` are a record on fleet-state ([`RECORD`], replaced atomically)
//!   with the boot id of the boot that armed it. Arming also writes `0 tryboot` to
//!   [`REBOOT_PARAM`], so the next clean reboot (`systemctl reboot`) is the trial boot:
//!   systemd-shutdown passes it to reboot(2) as `LINUX_REBOOT_CMD_RESTART2`.
//! - The firmware says whether it booted the tryboot partition:
//!   `/proc/device-tree/chosen/bootloader/tryboot` (a 4-byte big-endian cell, 1 = tryboot)
//!   and `.../partition`. A trial is one boot: the firmware cannot tell a failed trial from a
//!   power cut, both boot `[all]` next. So a record from an earlier boot while the active slot
//!   runs reads as "no trial" (the trial happened and did not end in mark-good), whatever
//!   `fleet_tries` said.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fleet_fs::{FsError, IoContext, KeyValues, Root, atomic_write, remove_if_exists};

use super::fat::{self, Geometry, ReadAt};
use super::{BootEnv, BootState, EnvError, Slot, VAR_TRIES, VAR_TRY, Vars};

pub mod slot_boot;

/// FAT label of partition 1 (at most 11 characters).
pub const AUTOBOOT_LABEL: &str = "fleet-auto";
/// The autoboot partition, found by label (it is never mounted).
pub const AUTOBOOT_DEV: &str = "/dev/disk/by-label/fleet-auto";
/// The trial record, on fleet-state.
pub const RECORD: &str = "/var/lib/fleet/tryboot-trial";
/// systemd-shutdown's reboot argument (`systemctl reboot ARG` writes the same file).
pub const REBOOT_PARAM: &str = "/run/systemd/reboot-param";
/// The reboot argument that sets the firmware's tryboot flag (0 = the default partition).
pub const TRYBOOT_ARG: &str = "0 tryboot";
pub const DT_TRYBOOT: &str = "/proc/device-tree/chosen/bootloader/tryboot";
pub const DT_PARTITION: &str = "/proc/device-tree/chosen/bootloader/partition";
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
const RECORD_KEYS: &[&str] = &[VAR_TRY, VAR_TRIES, "boot_id"];

/// The firmware boot partition of a slot.
pub fn boot_partition(slot: Slot) -> u32 {
    match slot {
        Slot::A => 2,
        Slot::B => 3,
    }
}

pub fn slot_of_partition(n: u32) -> Option<Slot> {
    match n {
        2 => Some(Slot::A),
        3 => Some(Slot::B),
        _ => None,
    }
}

/// `autoboot.txt` with `active` as the default: the same length for both slots.
pub fn render(active: Slot) -> String {
    format!(
        "[all]\ntryboot_a_b=1\nboot_partition={}\n[tryboot]\nboot_partition={}\n",
        boot_partition(active),
        boot_partition(active.other())
    )
}

/// `autoboot.txt` as the firmware reads it (the `[all]`, `[none]` and `[tryboot]` filters;
/// a property set again later wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Autoboot {
    pub tryboot_a_b: bool,
    /// `boot_partition` in effect without the tryboot flag.
    pub normal: Option<u32>,
    /// `boot_partition` in effect with the tryboot flag.
    pub tryboot: Option<u32>,
}

impl Autoboot {
    pub fn parse(text: &str) -> Autoboot {
        let mut out = Autoboot::default();
        // Which of (normal, tryboot) the current section applies to.
        let mut applies = (true, true);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(filter) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                applies = match filter {
                    "all" => (true, true),
                    "tryboot" => (false, true),
                    // [none] and filters this model does not know (board names) apply to
                    // neither: fleetOS's file uses none of them.
                    _ => (false, false),
                };
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match (key.trim(), value.trim().parse::<u32>()) {
                ("boot_partition", Ok(n)) => {
                    if applies.0 {
                        out.normal = Some(n);
                    }
                    if applies.1 {
                        out.tryboot = Some(n);
                    }
                }
                ("tryboot_a_b", Ok(n)) if applies.0 => out.tryboot_a_b = n == 1,
                _ => {}
            }
        }
        out
    }

    /// The known-good slot. A sector torn during a commit can leave both sections naming the
    /// same partition; `[all]` is what the firmware boots, so it is the truth.
    pub fn active(&self) -> Option<Slot> {
        self.normal.and_then(slot_of_partition)
    }
}

/// What the firmware boots (the documented rules, for the tests and for `status`): the
/// `[tryboot]` partition when the flag is set and `tryboot_a_b=1` (its normal `config.txt`
/// is read), else `[all]`'s. `None`: no usable `autoboot.txt`; the EEPROM then boots
/// partition 0 (the first bootable FAT one) or, with `PARTITION_WALK=1`, walks on.
pub fn firmware_boots(autoboot: Option<&Autoboot>, tryboot_flag: bool) -> Option<u32> {
    let a = autoboot?;
    if tryboot_flag && a.tryboot_a_b {
        a.tryboot.or(a.normal)
    } else {
        a.normal
    }
}

/// Where `autoboot.txt`'s data sits on the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Byte offset of the file's first sector from the start of the partition.
    pub offset: u64,
    /// The file's length (from its directory entry).
    pub len: u32,
    pub sector: u32,
}

/// Finds `AUTOBOOT.TXT` in the root directory of the FAT filesystem read by `read` (offset,
/// buffer); it must fit in one sector, so a rewrite is one sector write.
pub fn locate(read: &mut ReadAt) -> Result<Location, String> {
    let g = Geometry::read(read)?;
    let found = fat::find_file(&g, read, b"AUTOBOOTTXT")?;
    if found.len > g.sector {
        return Err(format!(
            "autoboot.txt is {} bytes, more than its one {}-byte sector",
            found.len, g.sector
        ));
    }
    Ok(Location {
        offset: found.offset,
        len: found.len,
        sector: g.sector,
    })
}

/// The tryboot backend: paths below a root prefix, so tests use a fake tree.
#[derive(Debug, Clone)]
pub struct TrybootEnv {
    autoboot: PathBuf,
    record: PathBuf,
    reboot_param: PathBuf,
    dt_tryboot: PathBuf,
    dt_partition: PathBuf,
    boot_id: PathBuf,
}

/// What the firmware told the running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    pub tryboot: bool,
    pub partition: Option<u32>,
}

/// The persisted trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub slot: Slot,
    pub tries: u32,
    pub boot_id: String,
}

fn cell(path: &Path) -> Option<u32> {
    let b = std::fs::read(path).ok()?;
    (b.len() == 4).then(|| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl TrybootEnv {
    pub fn new(root: &Root) -> Self {
        TrybootEnv {
            autoboot: root.path(AUTOBOOT_DEV),
            record: root.path(RECORD),
            reboot_param: root.path(REBOOT_PARAM),
            dt_tryboot: root.path(DT_TRYBOOT),
            dt_partition: root.path(DT_PARTITION),
            boot_id: root.path(BOOT_ID),
        }
    }

    fn format(&self, reason: impl Into<String>) -> EnvError {
        EnvError::Format {
            path: self.autoboot.clone(),
            reason: reason.into(),
        }
    }

    fn open_dev(&self, write: bool) -> Result<std::fs::File, EnvError> {
        Ok(OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.autoboot)
            .at(
                &self.autoboot,
                if write { "open for writing" } else { "open" },
            )?)
    }

    /// The location of `autoboot.txt` and its sector as read.
    pub fn read_sector(&self) -> Result<(Location, Vec<u8>), EnvError> {
        let dev = self.open_dev(false)?;
        let loc =
            locate(&mut |off, buf| dev.read_exact_at(buf, off)).map_err(|r| self.format(r))?;
        let mut sector = vec![0u8; loc.sector as usize];
        dev.read_exact_at(&mut sector, loc.offset)
            .at(&self.autoboot, "read autoboot.txt")?;
        Ok((loc, sector))
    }

    pub fn autoboot(&self) -> Result<Autoboot, EnvError> {
        let (loc, sector) = self.read_sector()?;
        let text = String::from_utf8_lossy(&sector[..loc.len as usize]).into_owned();
        Ok(Autoboot::parse(&text))
    }

    pub fn firmware(&self) -> Firmware {
        Firmware {
            tryboot: cell(&self.dt_tryboot) == Some(1),
            partition: cell(&self.dt_partition),
        }
    }

    fn current_boot_id(&self) -> String {
        std::fs::read_to_string(&self.boot_id)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    pub fn record(&self) -> Result<Option<Record>, EnvError> {
        let Some(kv) = KeyValues::read(&self.record, RECORD_KEYS)? else {
            return Ok(None);
        };
        let slot = kv.get_with(VAR_TRY, |v| Slot::parse(v).ok_or_else(|| "A or B".into()))?;
        let tries = kv
            .get_with(VAR_TRIES, |v| {
                v.parse::<u32>().map_err(|_| "a number".into())
            })?
            .unwrap_or(0);
        Ok(slot.map(|slot| Record {
            slot,
            tries,
            boot_id: kv.get("boot_id").unwrap_or("").to_string(),
        }))
    }

    /// Rewrites `autoboot.txt` so `to` is the default: one sector, in place, then read back.
    pub fn commit(&self, from: Slot, to: Slot) -> Result<(), EnvError> {
        let (loc, mut sector) = self.read_sector()?;
        let len = loc.len as usize;
        let (old, new) = (render(from), render(to));
        if &sector[..len] == new.as_bytes() {
            return Ok(());
        }
        if len != old.len() || &sector[..len] != old.as_bytes() {
            // A torn commit mixes only the digits: accept it when [all] still names `from`.
            let torn = Autoboot::parse(&String::from_utf8_lossy(&sector[..len]));
            if len != old.len() || torn.active() != Some(from) {
                return Err(self.format(format!(
                    "autoboot.txt is not the {}-byte file fleetOS writes for slot {from}; not rewriting it",
                    old.len()
                )));
            }
        }
        sector[..len].copy_from_slice(new.as_bytes());
        let dev = self.open_dev(true)?;
        fat::write_verified(&dev, &self.autoboot, loc.offset, &sector, "autoboot.txt")
    }

    fn write_record(&self, slot: Slot, tries: u32) -> Result<(), EnvError> {
        let text = format!(
            "{VAR_TRY}={slot}\n{VAR_TRIES}={tries}\nboot_id={}\n",
            self.current_boot_id()
        );
        atomic_write(&self.record, text.as_bytes(), 0o644)?;
        if let Some(dir) = self.reboot_param.parent() {
            std::fs::create_dir_all(dir).at(dir, "create")?;
        }
        atomic_write(
            &self.reboot_param,
            format!("{TRYBOOT_ARG}\n").as_bytes(),
            0o644,
        )?;
        Ok(())
    }

    fn clear_record(&self) -> Result<(), EnvError> {
        remove_if_exists(&self.record)?;
        match std::fs::read_to_string(&self.reboot_param) {
            Ok(p) if p.trim() == TRYBOOT_ARG => {
                remove_if_exists(&self.reboot_param)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::new(&self.reboot_param, "read", e).into()),
        }
        Ok(())
    }

    /// The boot state the firmware and the record give together.
    pub fn state(&self) -> Result<BootState, EnvError> {
        let auto = self.autoboot()?;
        let active = auto.active().ok_or_else(|| {
            self.format(format!(
                "autoboot.txt names no slot's partition in [all] (boot_partition={:?})",
                auto.normal
            ))
        })?;
        let fw = self.firmware();
        let other = active.other();
        // The trial boot is running: the flag is spent, no trial boot is left after this one.
        if fw.tryboot && fw.partition == Some(boot_partition(other)) {
            return Ok(BootState {
                active,
                trial: Some(other),
                tries: 0,
            });
        }
        match self.record()? {
            // Armed in this boot: the trial reboot is still to come.
            Some(r) if r.slot != active && r.boot_id == self.current_boot_id() => Ok(BootState {
                active,
                trial: Some(r.slot),
                tries: r.tries,
            }),
            // Armed in an earlier boot and the firmware is back on the active slot: the trial
            // boot failed or lost power (the firmware cannot tell which): no trial.
            _ => Ok(BootState {
                active,
                trial: None,
                tries: 0,
            }),
        }
    }
}

impl BootEnv for TrybootEnv {
    fn path(&self) -> &Path {
        &self.autoboot
    }

    fn kind(&self) -> &'static str {
        "tryboot"
    }

    fn load(&self) -> Result<Vars, EnvError> {
        let mut vars = Vars::default();
        self.state()?.apply(&mut vars);
        Ok(vars)
    }

    /// A new `fleet_active` is committed into `autoboot.txt` first (read back), then the
    /// record is cleared; a trial is armed by the record alone (atomic replace).
    fn store(&self, vars: &Vars) -> Result<(), EnvError> {
        let want = BootState::from_vars(vars);
        let active = self.autoboot()?.active().ok_or_else(|| {
            self.format("autoboot.txt names no slot's partition in [all]".to_string())
        })?;
        // Also rewrites a sector a torn commit left mixed while [all] already names `active`.
        self.commit(active, want.active)?;
        match want.trial {
            Some(t) if t != want.active => self.write_record(t, want.tries),
            _ => self.clear_record(),
        }
    }
}

#[cfg(test)]
mod tests;
