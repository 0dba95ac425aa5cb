//! Partition tables, read only: GPT through the `gpt` crate, MBR with the extended/logical
//! chain through `mbrman`, mapped to the few facts callers need (offsets, sizes, names, types).

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

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
    #[error("reading the partition table")]
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
        Table::parse(&mut NoWrite(disk), false)
    }

    /// Parses from an in-memory copy of the start of a disk. Logical partitions whose
    /// extended boot records lie beyond `head` are left out (primaries cover the disk size),
    /// and so is the GPT backup header (the primary one is in the head).
    pub fn from_head(head: &[u8]) -> Result<Table, TableError> {
        Table::parse(&mut NoWrite(Cursor::new(head)), true)
    }

    fn parse<D: Read + Seek + Write + std::fmt::Debug>(
        disk: &mut D,
        partial: bool,
    ) -> Result<Table, TableError> {
        let mut mbr = [0u8; 512];
        disk.seek(SeekFrom::Start(0))?;
        if crate::source::read_up_to(disk, &mut mbr)? < 512 || mbr[510..512] != [0x55, 0xAA] {
            return Err(TableError::NoSignature);
        }
        let protective = (0..4).any(|i| mbr[446 + i * 16 + 4] == 0xEE);
        let table = if protective {
            parse_gpt(disk)?
        } else {
            parse_mbr(disk, partial)?
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

/// The crates want a writable device even to read; this one refuses writes.
struct NoWrite<T>(T);

impl<T> std::fmt::Debug for NoWrite<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk")
    }
}

impl<T: Read> Read for NoWrite<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
impl<T: Seek> Seek for NoWrite<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.seek(to)
    }
}
impl<T> Write for NoWrite<T> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("partition tables are read only here"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The logical partitions of the extended partition `ext` whose extended boot records lie in
/// `head` (the start of a disk), in chain order, numbered from 5 as the kernel does.
pub fn logicals_in_head(head: &[u8], ext: &Partition) -> Vec<Partition> {
    let mut out = Vec::new();
    let mut ebr = ext.start;
    // A chain longer than this is a loop.
    for number in 5..64u32 {
        let Some(sector) = usize::try_from(ebr)
            .ok()
            .and_then(|at| head.get(at..at + SECTOR as usize))
        else {
            break;
        };
        if sector[510..512] != [0x55, 0xAA] {
            break;
        }
        let entry = |i: usize| {
            let e = &sector[446 + 16 * i..446 + 16 * (i + 1)];
            let lba = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
            let len = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
            (e[4], lba * SECTOR, len * SECTOR)
        };
        let (sys, rel, len) = entry(0);
        if sys != 0 && len != 0 {
            out.push(Partition {
                number,
                start: ebr + rel,
                size: len,
                name: None,
                type_id: format!("{sys:02x}"),
                logical: true,
            });
        }
        let (next_sys, next_rel, _) = entry(1);
        if next_sys == 0 || next_rel == 0 {
            break;
        }
        ebr = ext.start + next_rel;
    }
    out
}

fn parse_mbr<D: Read + Seek>(disk: &mut D, partial: bool) -> Result<Table, TableError> {
    let corrupt = |e: mbrman::Error| TableError::Corrupt(format!("MBR: {e}"));
    let mbr = match mbrman::MBR::read_from(disk, SECTOR as u32) {
        Ok(mbr) => mbr,
        // A head that ends before a later extended boot record: the primaries only.
        Err(_) if partial => {
            let header = mbrman::MBRHeader::read_from(disk).map_err(corrupt)?;
            return Ok(mbr_table(header.iter(), 0));
        }
        Err(e) => return Err(corrupt(e)),
    };
    Ok(mbr_table(mbr.iter(), 4))
}

/// `entries` as `mbrman` numbers them (primaries 1-4, logicals from 5 in chain order);
/// `primaries` = 4 when logicals may follow. Empty slots and empty EBRs are left out, and
/// logicals renumbered from 5 the way the kernel does.
fn mbr_table<'a>(
    entries: impl Iterator<Item = (usize, &'a mbrman::MBRPartitionEntry)>,
    primaries: usize,
) -> Table {
    let mut parts = Vec::new();
    let mut next_logical = 5;
    for (i, e) in entries {
        if e.is_unused() || e.sectors == 0 {
            continue;
        }
        let logical = primaries > 0 && i > primaries;
        let number = if logical {
            next_logical += 1;
            next_logical - 1
        } else {
            u32::try_from(i).unwrap_or(0)
        };
        parts.push(Partition {
            number,
            start: u64::from(e.starting_lba) * SECTOR,
            size: u64::from(e.sectors) * SECTOR,
            name: None,
            type_id: format!("{:02x}", e.sys),
            logical,
        });
    }
    let min = parts.iter().map(Partition::end).max().unwrap_or(0);
    Table {
        kind: Kind::Mbr,
        partitions: parts,
        min_disk_size: min,
    }
}

fn parse_gpt<D: Read + Seek + Write + std::fmt::Debug>(disk: &mut D) -> Result<Table, TableError> {
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open_from_device(disk)
        .map_err(|e| TableError::Corrupt(format!("GPT: {e}")))?;
    let header = gpt
        .primary_header()
        .or_else(|_| gpt.backup_header())
        .map_err(|e| TableError::Corrupt(format!("GPT: {e}")))?;
    // The backup header sits in the disk's last sector: the disk is at least that big.
    let backup_end = (header.backup_lba.max(header.current_lba) + 1) * SECTOR;
    let mut parts = Vec::new();
    for (&number, p) in gpt.partitions() {
        if p.last_lba < p.first_lba {
            return Err(TableError::Corrupt(format!(
                "GPT entry {number} ends before it starts"
            )));
        }
        parts.push(Partition {
            number,
            start: p.first_lba * SECTOR,
            size: (p.last_lba - p.first_lba + 1) * SECTOR,
            name: Some(p.name.clone()),
            type_id: p.part_type_guid.guid.to_string().to_uppercase(),
            logical: false,
        });
    }
    let min = parts
        .iter()
        .map(Partition::end)
        .max()
        .unwrap_or(0)
        .max(backup_end);
    Ok(Table {
        kind: Kind::Gpt,
        partitions: parts,
        min_disk_size: min,
    })
}
