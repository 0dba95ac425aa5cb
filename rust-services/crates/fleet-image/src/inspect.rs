//! `fleet image inspect`: what is on an image, read only.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::bootfs::{self, Slice, Summary};
use crate::devicetype;
use crate::table::{Partition, Table, TableError};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}")]
    Table { path: PathBuf, source: TableError },
    #[error("{path}")]
    Boot {
        path: PathBuf,
        source: bootfs::BootError,
    },
    #[error("{path}: compressed image; inspect the decompressed file (zstd -dk)")]
    Compressed { path: PathBuf },
}

pub struct PartInfo {
    pub part: Partition,
    pub filesystem: Option<String>,
    pub label: Option<String>,
}

pub struct Report {
    pub table: Table,
    pub parts: Vec<PartInfo>,
    pub boot_number: Option<u32>,
    pub boot: Option<Summary>,
    pub device_types: Vec<String>,
    pub layout: Option<Layout>,
}

/// How a fleetOS image boots its slots, read from the partitions' labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `grub` (x86 GPT), `u-boot` (Raspberry Pi, one boot partition) or `tryboot` (Raspberry
    /// Pi 4/5 firmware A/B: `fleet-auto` with autoboot.txt, one boot partition per slot).
    pub kind: &'static str,
    pub slots: Vec<SlotInfo>,
    /// tryboot: what autoboot.txt says (or why it could not be read).
    pub autoboot: Option<Result<fleet_bootenv::tryboot::Autoboot, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub slot: &'static str,
    pub root: Option<u32>,
    /// tryboot: the slot's own FAT boot partition.
    pub boot: Option<u32>,
    /// tryboot: the firmware boots it without the tryboot flag.
    pub default: Option<bool>,
}

fn labelled(parts: &[PartInfo], label: &str) -> Option<u32> {
    parts
        .iter()
        .find(|i| {
            i.part.name.as_deref() == Some(label)
                || i.label
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(label))
        })
        .map(|i| i.part.number)
}

/// The layout of a fleetOS image: `None` when it has no `fleet-rootA`/`fleet-rootB`.
pub fn layout<R: Read + Seek>(disk: &mut R, table: &Table, parts: &[PartInfo]) -> Option<Layout> {
    use fleet_bootenv::Slot;
    use fleet_bootenv::tryboot::{AUTOBOOT_LABEL, Autoboot, boot_partition};
    let roots = [
        labelled(parts, Slot::A.label()),
        labelled(parts, Slot::B.label()),
    ];
    if roots.iter().all(Option::is_none) {
        return None;
    }
    let auto = labelled(parts, AUTOBOOT_LABEL).and_then(|n| table.get(n));
    let autoboot = auto.map(|p| {
        let slice = Slice::new(ReadOnly(&mut *disk), p.start, p.size).map_err(|e| e.to_string())?;
        match bootfs::read_root_file(slice, "autoboot.txt") {
            Ok(Some(bytes)) => Ok(Autoboot::parse(&String::from_utf8_lossy(&bytes))),
            Ok(None) => Err("no autoboot.txt".to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    let kind = if auto.is_some() {
        "tryboot"
    } else if table.kind.as_str() == "gpt" {
        "grub"
    } else {
        "u-boot"
    };
    let default = autoboot
        .as_ref()
        .and_then(|a| a.as_ref().ok())
        .and_then(|a| a.active());
    let slots = [Slot::A, Slot::B]
        .into_iter()
        .zip(roots)
        .map(|(slot, root)| SlotInfo {
            slot: slot.as_str(),
            root,
            boot: (kind == "tryboot")
                .then(|| labelled(parts, &format!("fleet-boot{slot}")))
                .flatten()
                .filter(|&n| n == boot_partition(slot)),
            default: (kind == "tryboot").then_some(default == Some(slot)),
        })
        .collect();
    Some(Layout {
        kind,
        slots,
        autoboot,
    })
}

/// Lets fatfs 0.3 (which wants a writable handle) read a file opened read only.
struct ReadOnly<T>(T);

impl<T: Read> Read for ReadOnly<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
impl<T: Seek> Seek for ReadOnly<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.seek(to)
    }
}
impl<T> Write for ReadOnly<T> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("inspect is read only"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Filesystem type and label from the superblock magic: vfat or ext2/3/4.
pub fn probe_fs<R: Read + Seek>(
    disk: &mut R,
    p: &Partition,
) -> io::Result<(Option<String>, Option<String>)> {
    let mut head = vec![0u8; 2048.min(usize::try_from(p.size).unwrap_or(2048))];
    disk.seek(SeekFrom::Start(p.start))?;
    let n = crate::source::read_up_to(disk, &mut head)?;
    let head = &head[..n];
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(b)
            .trim_end_matches(['\0', ' '])
            .to_string();
        (!s.is_empty() && s != "NO NAME").then_some(s)
    };
    if head.len() >= 512 && head[510..512] == [0x55, 0xAA] {
        if &head[82..87] == b"FAT32" {
            return Ok((Some("vfat".into()), text(&head[71..82])));
        }
        if &head[54..57] == b"FAT" {
            return Ok((Some("vfat".into()), text(&head[43..54])));
        }
    }
    if head.len() >= 1024 + 136 && head[1080..1082] == [0x53, 0xEF] {
        let incompat = u32::from_le_bytes([head[1120], head[1121], head[1122], head[1123]]);
        // INCOMPAT_EXTENTS (0x40) means ext4; otherwise has_journal decides ext3 vs ext2.
        let compat = u32::from_le_bytes([head[1116], head[1117], head[1118], head[1119]]);
        let kind = if incompat & 0x40 != 0 {
            "ext4"
        } else if compat & 0x4 != 0 {
            "ext3"
        } else {
            "ext2"
        };
        return Ok((Some(kind.into()), text(&head[1144..1160])));
    }
    Ok((None, None))
}

pub fn inspect(path: &Path) -> Result<Report, InspectError> {
    let io_err = |source| InspectError::Io {
        path: path.into(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 4];
    crate::source::read_up_to(&mut file, &mut magic).map_err(io_err)?;
    if magic == [0x28, 0xB5, 0x2F, 0xFD]
        || magic[..2] == [0x1F, 0x8B]
        || magic == [0xFD, b'7', b'z', b'X']
    {
        return Err(InspectError::Compressed { path: path.into() });
    }
    let table = Table::read(&mut file).map_err(|source| InspectError::Table {
        path: path.into(),
        source,
    })?;
    let mut parts = Vec::new();
    for p in &table.partitions {
        let (filesystem, label) = if p.type_id == "05" || p.type_id == "0f" || p.type_id == "85" {
            (None, None)
        } else {
            probe_fs(&mut file, p).map_err(io_err)?
        };
        parts.push(PartInfo {
            part: p.clone(),
            filesystem,
            label,
        });
    }
    let boot_number = find_boot(&parts);
    let probe = devicetype::probe_files();
    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
    let boot = match boot_number.and_then(|n| table.get(n)) {
        Some(p) => {
            let slice = Slice::new(ReadOnly(&mut file), p.start, p.size).map_err(io_err)?;
            Some(
                bootfs::summarize(slice, &probe).map_err(|source| InspectError::Boot {
                    path: path.into(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let config_type = boot
        .as_ref()
        .and_then(|b| b.config.as_ref())
        .and_then(|c| serde_json::from_slice::<Value>(c).ok())
        .and_then(|v| {
            v.get("deviceType")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let present = boot.as_ref().map(|b| b.present.clone()).unwrap_or_default();
    let fleet_boot = boot
        .as_ref()
        .is_some_and(|b| bootfs::is_fleet_boot(Some(&b.label), b.config.is_some()));
    let device_types = devicetype::recognise(&table, config_type.as_deref(), &present, fleet_boot);
    let layout = layout(&mut file, &table, &parts);
    Ok(Report {
        table,
        parts,
        boot_number,
        boot,
        device_types,
        layout,
    })
}

/// The boot partition: labelled `fleet-boot` (GPT name or FAT label), else the first FAT one.
pub fn find_boot(parts: &[PartInfo]) -> Option<u32> {
    let fat = |i: &&PartInfo| i.filesystem.as_deref() == Some("vfat");
    parts
        .iter()
        .filter(fat)
        .find(|i| {
            i.part.name.as_deref() == Some(bootfs::FLEET_BOOT_LABEL)
                || i.label
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(bootfs::FLEET_BOOT_LABEL))
        })
        .or_else(|| parts.iter().find(fat))
        .map(|i| i.part.number)
}

/// Replaces secret values (API keys, passphrases, tokens) with `"***"`.
pub fn mask_secrets(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let key = k.to_ascii_lowercase();
                let secret = ["apikey", "psk", "password", "secret", "token", "passphrase"]
                    .iter()
                    .any(|s| key.contains(s));
                if secret && !val.is_null() && !val.is_object() && !val.is_array() {
                    *val = Value::String("***".into());
                } else {
                    mask_secrets(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

impl Report {
    fn masked_config(&self) -> Option<Value> {
        let raw = self.boot.as_ref()?.config.as_ref()?;
        Some(match serde_json::from_slice::<Value>(raw) {
            Ok(mut v) => {
                mask_secrets(&mut v);
                v
            }
            Err(e) => json!({ "error": format!("not valid JSON: {e}") }),
        })
    }

    pub fn to_json(&self) -> Value {
        let mut table = self.table.to_json();
        if let Some(list) = table.get_mut("partitions").and_then(Value::as_array_mut) {
            for (entry, info) in list.iter_mut().zip(&self.parts) {
                entry["filesystem"] = json!(info.filesystem);
                entry["label"] = json!(info.label);
            }
        }
        json!({
            "table": table,
            "bootPartition": self.boot_number,
            "boot": self.boot.as_ref().map(|b| json!({
                "fatType": b.fat_type,
                "label": b.label,
                "files": b.root.iter().map(|e| json!({"name": e.name, "size": e.size, "dir": e.is_dir})).collect::<Vec<_>>(),
                "systemConnections": b.connections,
            })),
            "config": self.masked_config(),
            "deviceTypes": self.device_types,
            "layout": self.layout.as_ref().map(|l| json!({
                "kind": l.kind,
                "slots": l.slots.iter().map(|s| json!({
                    "slot": s.slot, "root": s.root, "boot": s.boot, "default": s.default,
                })).collect::<Vec<_>>(),
                "autoboot": l.autoboot.as_ref().map(|a| match a {
                    Ok(a) => json!({
                        "bootPartition": a.normal,
                        "trybootPartition": a.tryboot,
                        "trybootAB": a.tryboot_a_b,
                    }),
                    Err(e) => json!({ "error": e }),
                }),
            })),
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "partition table: {} (needs {} on disk)\n",
            self.table.kind.as_str(),
            human(self.table.min_disk_size)
        );
        for i in &self.parts {
            let p = &i.part;
            out += &format!(
                "  {:>2}{} start {:>10}  size {:>10}  type {:<36} fs {:<5} name {}\n",
                p.number,
                if p.logical { "L" } else { " " },
                human(p.start),
                human(p.size),
                p.type_id,
                i.filesystem.as_deref().unwrap_or("-"),
                p.name.as_deref().or(i.label.as_deref()).unwrap_or("-"),
            );
        }
        match (&self.boot, self.boot_number) {
            (Some(b), Some(n)) => {
                let files = b.root.iter().filter(|e| !e.is_dir).count();
                let dirs = b.root.len() - files;
                let bytes: u64 = b.root.iter().map(|e| e.size).sum();
                out += &format!(
                    "boot partition {n}: {} label {:?}, {files} files ({}) and {dirs} directories at the top\n",
                    b.fat_type,
                    b.label,
                    human(bytes)
                );
                let names: Vec<&str> = b.root.iter().map(|e| e.name.as_str()).collect();
                out += &format!("  {}\n", names.join(" "));
                out += &format!(
                    "  system-connections: {}\n",
                    if b.connections.is_empty() {
                        "-".to_string()
                    } else {
                        b.connections.join(" ")
                    }
                );
            }
            _ => out += "boot partition: none found (no FAT partition)\n",
        }
        match self.masked_config() {
            Some(v) => {
                out += "config.json (secrets masked):\n";
                out += &serde_json::to_string_pretty(&v).unwrap_or_default();
                out += "\n";
            }
            None => out += "config.json: none\n",
        }
        match &self.layout {
            Some(l) => {
                out += &format!("slots: {} layout\n", l.kind);
                for sl in &l.slots {
                    let num = |n: Option<u32>| n.map_or("-".to_string(), |n| n.to_string());
                    out += &format!("  slot {}: root partition {}", sl.slot, num(sl.root));
                    if l.kind == "tryboot" {
                        out += &format!(", boot partition {}", num(sl.boot));
                        if sl.default == Some(true) {
                            out += " (default: autoboot.txt [all])";
                        }
                    }
                    out += "\n";
                }
                if let Some(Err(e)) = &l.autoboot {
                    out += &format!("  autoboot.txt: {e}\n");
                }
            }
            None => out += "slots: none (no fleet-rootA/fleet-rootB)\n",
        }
        out += &format!(
            "device type: {}\n",
            if self.device_types.is_empty() {
                match &self.boot {
                    Some(b) if !bootfs::is_fleet_boot(Some(&b.label), b.config.is_some()) => {
                        format!(
                            "unknown (boot partition {:?} without config.json: not a fleetOS image)",
                            b.label
                        )
                    }
                    _ => "unknown".to_string(),
                }
            } else {
                self.device_types.join(" or ")
            }
        );
        out
    }
}

pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
