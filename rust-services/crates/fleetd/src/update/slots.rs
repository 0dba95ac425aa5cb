//! Which slot is running and where the other one lives — read from the kernel command line
//! and sysfs (below the root prefix, so tests use a fake tree), never guessed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fleet_bootenv::Slot;
use fleet_bootenv::crc::crc32c_raw;
use fleet_fs::Root;

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("cannot tell the running slot: {0}")]
    Booted(String),
    #[error("cannot find the device of slot {slot}: {reason}")]
    Device { slot: Slot, reason: String },
}

/// One partition as sysfs describes it (`/sys/class/block/NAME/uevent`).
#[derive(Debug, Clone, Default)]
pub struct Partition {
    pub devname: String,
    pub partname: Option<String>,
    pub partuuid: Option<String>,
}

impl Partition {
    pub fn dev(&self, root: &Root) -> PathBuf {
        root.path(format!("/dev/{}", self.devname))
    }
}

/// The running slot and, when known, its device.
#[derive(Debug, Clone)]
pub struct Booted {
    pub slot: Slot,
    pub device: Option<PathBuf>,
}

pub fn partitions(root: &Root) -> Vec<Partition> {
    let dir = root.path("/sys/class/block");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("uevent")) else {
            continue;
        };
        let mut p = Partition::default();
        let mut is_partition = false;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("DEVNAME", v)) => p.devname = v.to_string(),
                Some(("PARTNAME", v)) => p.partname = Some(v.to_string()),
                Some(("PARTUUID", v)) => p.partuuid = Some(v.to_ascii_lowercase()),
                Some(("DEVTYPE", "partition")) => is_partition = true,
                _ => {}
            }
        }
        if is_partition && !p.devname.is_empty() {
            out.push(p);
        }
    }
    out.sort_by(|a, b| a.devname.cmp(&b.devname));
    out
}

/// The slot the kernel booted: `fleet.slot=` (set by both bootloader scripts), else the
/// partition named by `root=` and its GPT name or filesystem label.
pub fn booted(root: &Root) -> Result<Booted, SlotError> {
    let path = root.path("/proc/cmdline");
    let cmdline = std::fs::read_to_string(&path).map_err(|e| SlotError::Read {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let arg = |key: &str| {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    let parts = partitions(root);
    let root_part = arg("root=").and_then(|r| {
        if let Some(uuid) = r.strip_prefix("PARTUUID=") {
            let uuid = uuid.to_ascii_lowercase();
            parts
                .iter()
                .find(|p| p.partuuid.as_deref() == Some(&uuid))
                .cloned()
        } else {
            let name = r.strip_prefix("/dev/")?;
            parts.iter().find(|p| p.devname == name).cloned()
        }
    });
    let device = root_part.as_ref().map(|p| p.dev(root));
    if let Some(s) = arg("fleet.slot=") {
        let slot = Slot::parse(&s).ok_or_else(|| SlotError::Booted(format!("fleet.slot={s}")))?;
        return Ok(Booted { slot, device });
    }
    let part = root_part.ok_or_else(|| {
        SlotError::Booted(format!(
            "neither fleet.slot= nor a root= found in sysfs in {}",
            path.display()
        ))
    })?;
    let label = part
        .partname
        .clone()
        .or_else(|| fs_label(&part.dev(root)))
        .unwrap_or_default();
    let slot = Slot::from_label(&label).ok_or_else(|| {
        SlotError::Booted(format!(
            "root partition {} is labelled {label:?}",
            part.devname
        ))
    })?;
    Ok(Booted { slot, device })
}

/// The device of `slot`: the partition whose GPT name is the slot label, else (MBR) the one
/// whose filesystem carries the label; ambiguity is an error.
pub fn device(root: &Root, slot: Slot) -> Result<PathBuf, SlotError> {
    let parts = partitions(root);
    let by_name: Vec<_> = parts
        .iter()
        .filter(|p| p.partname.as_deref() == Some(slot.label()))
        .collect();
    let found: Vec<PathBuf> = if by_name.is_empty() {
        parts
            .iter()
            .filter(|p| p.partname.is_none())
            .map(|p| p.dev(root))
            .filter(|d| fs_label(d).as_deref() == Some(slot.label()))
            .collect()
    } else {
        by_name.iter().map(|p| p.dev(root)).collect()
    };
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(SlotError::Device {
            slot,
            reason: format!("no partition named or labelled {}", slot.label()),
        }),
        many => Err(SlotError::Device {
            slot,
            reason: format!("{} partitions carry {}", many.len(), slot.label()),
        }),
    }
}

/// Size of a block device or regular file.
pub fn size_of(path: &Path) -> std::io::Result<u64> {
    File::open(path)?.seek(SeekFrom::End(0))
}

const SB_OFFSET: u64 = 1024;
const EXT4_MAGIC: u16 = 0xEF53;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

fn read_superblock(dev: &Path) -> Option<[u8; 1024]> {
    let f = File::open(dev).ok()?;
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, SB_OFFSET).ok()?;
    (u16::from_le_bytes([sb[0x38], sb[0x39]]) == EXT4_MAGIC).then_some(sb)
}

/// The size of the ext2/3/4 filesystem on `dev` (block count × block size), if it holds one.
pub fn fs_size(dev: &Path) -> Option<u64> {
    let sb = read_superblock(dev)?;
    let le32 = |at: usize| {
        u64::from(u32::from_le_bytes([
            sb[at],
            sb[at + 1],
            sb[at + 2],
            sb[at + 3],
        ]))
    };
    const INCOMPAT_64BIT: u64 = 0x80;
    let mut blocks = le32(0x04);
    if le32(0x60) & INCOMPAT_64BIT != 0 {
        blocks |= le32(0x150) << 32;
    }
    Some(blocks << (10 + le32(0x18).min(6)))
}

/// The ext2/3/4 volume label of `dev`, if it holds one.
pub fn fs_label(dev: &Path) -> Option<String> {
    let sb = read_superblock(dev)?;
    let raw = &sb[0x78..0x88];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// Sets the ext4 label of a freshly written slot to its own (`fleet-rootX`): the image in a
/// bundle carries whatever label it was built with, and the bootloaders find slots by label.
/// Returns false when the device holds no ext2/3/4 filesystem or the label was right.
pub fn set_fs_label(dev: &Path, label: &str) -> std::io::Result<bool> {
    let Some(mut sb) = read_superblock(dev) else {
        return Ok(false);
    };
    let mut want = [0u8; 16];
    want[..label.len().min(16)].copy_from_slice(&label.as_bytes()[..label.len().min(16)]);
    if sb[0x78..0x88] == want {
        return Ok(false);
    }
    sb[0x78..0x88].copy_from_slice(&want);
    let ro_compat = u32::from_le_bytes([sb[0x64], sb[0x65], sb[0x66], sb[0x67]]);
    if ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
        let csum = crc32c_raw(!0, &sb[..0x3FC]);
        sb[0x3FC..].copy_from_slice(&csum.to_le_bytes());
    }
    let f = OpenOptions::new().write(true).open(dev)?;
    f.write_all_at(&sb, SB_OFFSET)?;
    f.sync_all()?;
    Ok(true)
}

/// Devices mounted right now (`/proc/self/mounts` of the real system).
pub fn is_mounted(dev: &Path) -> bool {
    let Ok(canon) = dev.canonicalize() else {
        return false;
    };
    let mut text = String::new();
    if File::open("/proc/self/mounts")
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
    {
        return false;
    }
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|src| Path::new(src).canonicalize().ok())
        .any(|src| src == canon)
}

/// What was installed into each slot (written at install, before the trial is armed).
pub const SLOTS_RECORD: &str = "/var/lib/fleet/slots.json";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotRecord {
    pub version: String,
    pub sha256: String,
    pub size: u64,
}

pub fn read_records(root: &Root) -> BTreeMap<Slot, SlotRecord> {
    std::fs::read(root.path(SLOTS_RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice::<BTreeMap<String, SlotRecord>>(&b).ok())
        .map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| Slot::parse(&k).map(|s| (s, v)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_record(
    root: &Root,
    slot: Slot,
    record: Option<SlotRecord>,
) -> Result<(), fleet_fs::FsError> {
    let mut all: BTreeMap<String, SlotRecord> = read_records(root)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    match record {
        Some(r) => all.insert(slot.to_string(), r),
        None => all.remove(slot.as_str()),
    };
    let mut bytes = serde_json::to_vec_pretty(&all).unwrap_or_default();
    bytes.push(b'\n');
    fleet_fs::write_if_changed(&root.path(SLOTS_RECORD), &bytes, 0o644).map(|_| ())
}

/// `VERSION_ID` of the running system.
pub fn running_version(root: &Root) -> Option<String> {
    let text = std::fs::read_to_string(root.path("/etc/os-release")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim_matches('"').to_string())
}
