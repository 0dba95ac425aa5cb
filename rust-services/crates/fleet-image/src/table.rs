//! Partition tables, read only: GPT and MBR with the extended/logical chain.
//!
//! Parsed by hand (a few dozen lines) because every caller needs only offsets, sizes, names
//! and types, and the same parser must work on an in-memory head of a stream while flashing.

use std::io::{Read, Seek, SeekFrom};

use serde_json::{Value, json};

const SECTOR: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("not a disk image: no MBR boot signature (0x55AA) in the first sector")]
    NoSignature,
    #[error("not a disk image: the partition table lists no partitions")]
    Empty,
    #[error("corrupt partition table: {0}")]
    Corrupt(String),
    #[error("reading the partition table: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gpt,
    Mbr,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gpt => "gpt",
            Kind::Mbr => "mbr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based as the kernel numbers them (logical MBR partitions from 5).
    pub number: u32,
    /// Byte offset from the start of the disk.
    pub start: u64,
    pub size: u64,
    /// GPT partition name; `None` on MBR.
    pub name: Option<String>,
    /// MBR type byte as hex (`0c`) or GPT type GUID.
    pub type_id: String,
    pub logical: bool,
}

impl Partition {
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub kind: Kind,
    pub partitions: Vec<Partition>,
    /// The smallest disk the table fits on, in bytes.
    pub min_disk_size: u64,
}

impl Table {
    /// Reads the table of a disk or image.
    pub fn read<R: Read + Seek>(disk: &mut R) -> Result<Table, TableError> {
        let mut at = |offset: u64, len: usize| -> std::io::Result<Vec<u8>> {
            let mut buf = vec![0u8; len];
            disk.seek(SeekFrom::Start(offset))?;
            disk.read_exact(&mut buf)?;
            Ok(buf)
        };
        Table::parse(&mut at, false)
    }

    /// Parses from an in-memory copy of the start of a disk. Logical partitions whose
    /// extended boot records lie beyond `head` are left out (primaries cover the disk size).
    pub fn from_head(head: &[u8]) -> Result<Table, TableError> {
        let mut at = |offset: u64, len: usize| -> std::io::Result<Vec<u8>> {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            head.get(start..start.saturating_add(len))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
        };
        Table::parse(&mut at, true)
    }

    fn parse(
        at: &mut dyn FnMut(u64, usize) -> std::io::Result<Vec<u8>>,
        partial: bool,
    ) -> Result<Table, TableError> {
        let mbr = at(0, 512).map_err(|_| TableError::NoSignature)?;
        if mbr[510..512] != [0x55, 0xAA] {
            return Err(TableError::NoSignature);
        }
        let entries = mbr_entries(&mbr);
        let table = if entries.iter().any(|e| e.0 == 0xEE) {
            parse_gpt(at)?
        } else {
            parse_mbr(at, &entries, partial)?
        };
        if table.partitions.is_empty() {
            return Err(TableError::Empty);
        }
        Ok(table)
    }

    pub fn get(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": self.kind.as_str(),
            "minDiskSize": self.min_disk_size,
            "partitions": self.partitions.iter().map(|p| json!({
                "number": p.number,
                "start": p.start,
                "size": p.size,
                "name": p.name,
                "type": p.type_id,
                "logical": p.logical,
            })).collect::<Vec<_>>(),
        })
    }
}

/// (type, first LBA, sector count) of the four slots of an MBR or EBR.
fn mbr_entries(sector: &[u8]) -> Vec<(u8, u64, u64)> {
    (0..4)
        .map(|i| {
            let e = &sector[446 + i * 16..446 + (i + 1) * 16];
            (
                e[4],
                u64::from(le32(&e[8..12])),
                u64::from(le32(&e[12..16])),
            )
        })
        .collect()
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0F | 0x85)
}

fn parse_mbr(
    at: &mut dyn FnMut(u64, usize) -> std::io::Result<Vec<u8>>,
    entries: &[(u8, u64, u64)],
    partial: bool,
) -> Result<Table, TableError> {
    let mut parts = Vec::new();
    let mut min = 0u64;
    for (i, &(kind, lba, count)) in entries.iter().enumerate() {
        if kind == 0 || count == 0 {
            continue;
        }
        let number = u32::try_from(i + 1).unwrap_or(0);
        parts.push(Partition {
            number,
            start: lba * SECTOR,
            size: count * SECTOR,
            name: None,
            type_id: format!("{kind:02x}"),
            logical: false,
        });
        min = min.max((lba + count) * SECTOR);
        if is_extended(kind) {
            // Each EBR holds one logical partition (relative to itself) and a link to the
            // next EBR (relative to the extended partition's start).
            let mut ebr_lba = lba;
            let mut number = 5;
            for _ in 0..128 {
                let ebr = match at(ebr_lba * SECTOR, 512) {
                    Ok(ebr) => ebr,
                    Err(_) if partial => break,
                    Err(e) => return Err(e.into()),
                };
                if ebr[510..512] != [0x55, 0xAA] {
                    return Err(TableError::Corrupt(format!(
                        "extended boot record at sector {ebr_lba} has no signature"
                    )));
                }
                let e = mbr_entries(&ebr);
                let (lkind, lrel, lcount) = e[0];
                if lkind != 0 && lcount != 0 {
                    parts.push(Partition {
                        number,
                        start: (ebr_lba + lrel) * SECTOR,
                        size: lcount * SECTOR,
                        name: None,
                        type_id: format!("{lkind:02x}"),
                        logical: true,
                    });
                    number += 1;
                }
                let (nkind, nrel, _) = e[1];
                if nkind == 0 || nrel == 0 {
                    break;
                }
                ebr_lba = lba + nrel;
            }
        }
    }
    Ok(Table {
        kind: Kind::Mbr,
        partitions: parts,
        min_disk_size: min,
    })
}

fn parse_gpt(
    at: &mut dyn FnMut(u64, usize) -> std::io::Result<Vec<u8>>,
) -> Result<Table, TableError> {
    let hdr = at(SECTOR, 92)?;
    if &hdr[0..8] != b"EFI PART" {
        return Err(TableError::Corrupt(
            "protective MBR but no GPT header".into(),
        ));
    }
    let backup_lba = le64(&hdr[32..40]);
    let entries_lba = le64(&hdr[72..80]);
    let count = le32(&hdr[80..84]);
    let entry_size = le32(&hdr[84..88]) as usize;
    if !(128..=4096).contains(&entry_size) || count > 1024 {
        return Err(TableError::Corrupt(format!(
            "GPT header: {count} entries of {entry_size} bytes"
        )));
    }
    let raw = at(entries_lba * SECTOR, entry_size * count as usize)?;
    let mut parts = Vec::new();
    for (i, e) in raw.chunks(entry_size).enumerate() {
        let type_guid = &e[0..16];
        if type_guid.iter().all(|b| *b == 0) {
            continue;
        }
        let first = le64(&e[32..40]);
        let last = le64(&e[40..48]);
        if last < first {
            return Err(TableError::Corrupt(format!(
                "GPT entry {} ends before it starts",
                i + 1
            )));
        }
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        parts.push(Partition {
            number: u32::try_from(i + 1).unwrap_or(0),
            start: first * SECTOR,
            size: (last - first + 1) * SECTOR,
            name: Some(String::from_utf16_lossy(&name)),
            type_id: guid_string(type_guid),
            logical: false,
        });
    }
    let min = parts
        .iter()
        .map(Partition::end)
        .max()
        .unwrap_or(0)
        .max((backup_lba + 1) * SECTOR);
    Ok(Table {
        kind: Kind::Gpt,
        partitions: parts,
        min_disk_size: min,
    })
}

/// GUID in its usual text form (the first three fields are little-endian on disk).
fn guid_string(g: &[u8]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        g[8],
        g[9],
        g[10..16]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}
