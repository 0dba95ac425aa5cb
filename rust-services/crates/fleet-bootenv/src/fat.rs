//! Just enough FAT12/16/32 to edit small files of a root directory in place: the BPB's
//! geometry, a root-directory entry's data and the volume label. Used where a file must be
//! changed without touching any FAT table, directory entry or cluster chain (same length,
//! same clusters), so a power cut can only tear the bytes being written.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use fleet_fs::IoContext;

use super::EnvError;

/// Reads `buf.len()` bytes at an offset of the partition.
pub type ReadAt<'a> = dyn FnMut(u64, &mut [u8]) -> io::Result<()> + 'a;

fn le16(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What the boot sector says about the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub sector: u32,
    pub cluster_bytes: u32,
    /// Byte offset and length of the root directory (FAT32: its first cluster only).
    pub root_dir: (u64, u32),
    data_start: u64,
    /// Byte offset of the 11-byte volume label in the boot sector, when it has one.
    pub label_at: Option<u64>,
}

impl Geometry {
    pub fn read(read: &mut ReadAt) -> Result<Geometry, String> {
        let mut bpb = [0u8; 512];
        read(0, &mut bpb).map_err(|e| format!("reading the boot sector: {e}"))?;
        if bpb[510..512] != [0x55, 0xAA] {
            return Err("no FAT boot sector (signature 55 AA missing)".into());
        }
        let sector = le16(&bpb, 11);
        let per_cluster = u32::from(bpb[13]);
        let reserved = le16(&bpb, 14);
        let fats = u32::from(bpb[16]);
        let root_entries = le16(&bpb, 17);
        let fat32 = le16(&bpb, 22) == 0;
        let fat_size = if fat32 {
            le32(&bpb, 36)
        } else {
            le16(&bpb, 22)
        };
        if !matches!(sector, 512 | 1024 | 2048 | 4096) || per_cluster == 0 || fats == 0 {
            return Err(format!(
                "not a FAT boot sector ({sector} bytes per sector, {per_cluster} per cluster, {fats} FATs)"
            ));
        }
        let root_sectors = (root_entries * 32).div_ceil(sector);
        let first_data = u64::from(reserved) + u64::from(fats) * u64::from(fat_size);
        let data_start = (first_data + u64::from(root_sectors)) * u64::from(sector);
        // The extended boot signature 0x29 says the label field exists.
        let (sig_at, label_at) = if fat32 { (0x42, 0x47) } else { (0x26, 0x2B) };
        let mut g = Geometry {
            sector,
            cluster_bytes: per_cluster * sector,
            root_dir: (0, 0),
            data_start,
            label_at: (bpb[sig_at] == 0x29).then_some(label_at),
        };
        g.root_dir = if root_entries == 0 {
            (g.cluster_offset(le32(&bpb, 44)), g.cluster_bytes)
        } else {
            (first_data * u64::from(sector), root_entries * 32)
        };
        Ok(g)
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_start + u64::from(cluster.saturating_sub(2)) * u64::from(self.cluster_bytes)
    }
}

/// A file's data in the root directory, or the volume label entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Byte offset of the file's data (its first cluster), or of the label entry.
    pub offset: u64,
    /// The file's length (from its directory entry); 11 for the label.
    pub len: u32,
}

/// The root directory's live entries with their byte offsets: deleted ones skipped, up to
/// the end marker.
fn root_entries(g: &Geometry, read: &mut ReadAt) -> Result<Vec<(u64, [u8; 32])>, String> {
    let mut dir = vec![0u8; g.root_dir.1 as usize];
    read(g.root_dir.0, &mut dir).map_err(|e| format!("reading the root directory: {e}"))?;
    Ok(dir
        .chunks_exact(32)
        .enumerate()
        .take_while(|(_, e)| e[0] != 0)
        .filter(|(_, e)| e[0] != 0xE5)
        .map(|(i, e)| {
            let mut entry = [0u8; 32];
            entry.copy_from_slice(e);
            (g.root_dir.0 + 32 * i as u64, entry)
        })
        .collect())
}

/// Finds the root-directory file whose 8.3 name is `name` (e.g. `b"CMDLINE TXT"`); its data
/// must lie in its first cluster.
pub fn find_file(g: &Geometry, read: &mut ReadAt, name: &[u8; 11]) -> Result<Found, String> {
    let shown = String::from_utf8_lossy(name).to_ascii_lowercase();
    for (_, entry) in root_entries(g, read)? {
        let entry = &entry[..];
        let attr = entry[11];
        if attr & 0x0F == 0x0F || attr & 0x18 != 0 || &entry[..11] != name {
            continue;
        }
        let cluster = (le16(entry, 20) << 16) | le16(entry, 26);
        let len = le32(entry, 28);
        if cluster < 2 {
            return Err(format!("{shown} has no data cluster"));
        }
        if len > g.cluster_bytes {
            return Err(format!(
                "{shown} is {len} bytes, more than its first {}-byte cluster",
                g.cluster_bytes
            ));
        }
        return Ok(Found {
            offset: g.cluster_offset(cluster),
            len,
        });
    }
    Err(format!("no {shown} in the root directory"))
}

/// The volume label entry of the root directory (attribute 0x08), if there is one.
pub fn find_label_entry(g: &Geometry, read: &mut ReadAt) -> Result<Option<u64>, String> {
    Ok(root_entries(g, read)?
        .into_iter()
        .find(|(_, e)| e[11] & 0x0F != 0x0F && e[11] & 0x08 != 0)
        .map(|(at, _)| at))
}

/// Writes `bytes` at `offset`, fsyncs, drops the page cache and reads them back.
pub fn write_verified(
    dev: &File,
    path: &Path,
    offset: u64,
    bytes: &[u8],
    what: &str,
) -> Result<(), EnvError> {
    dev.write_all_at(bytes, offset).at(path, "write in place")?;
    dev.sync_all().at(path, "fsync")?;
    let _ = nix::fcntl::posix_fadvise(
        dev.as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let mut back = vec![0u8; bytes.len()];
    dev.read_exact_at(&mut back, offset).at(path, "read back")?;
    if back != bytes {
        return Err(EnvError::Format {
            path: path.to_path_buf(),
            reason: format!("{what} read back differs from what was written"),
        });
    }
    Ok(())
}
