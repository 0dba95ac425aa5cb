//! The write engine: decompress in one thread, write (skipping zero blocks on fresh files),
//! apply boot-partition edits in memory before they are written, sync, read back and compare.

use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::bootfs::{BootError, Edits, Slice};
use crate::inspect::{PartInfo, find_boot, probe_fs};
use crate::source::{Source, SourceError, read_up_to};
use crate::table::{Table, TableError};

const CHUNK: usize = 4 << 20;
/// Granularity of zero-block skipping.
const BLOCK: usize = 64 << 10;
/// Edits need the image up to the end of the boot partition in memory.
const MAX_BOOT_END: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{path}")]
    NotImage { path: PathBuf, source: TableError },
    #[error("{path}: reading the image failed (truncated or corrupt archive?)")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{path}: image ends after {have} bytes but its partition table needs {need}: truncated"
    )]
    Truncated { path: PathBuf, have: u64, need: u64 },
    #[error("{path}")]
    Target { path: PathBuf, source: io::Error },
    #[error("{path}: permission denied (block devices need root or the disk group)")]
    Permission { path: PathBuf },
    #[error("{path}: refused: mounted at {at} (unmount it first)")]
    Mounted { path: PathBuf, at: String },
    #[error("{path}: refused: this disk holds the running system (/)")]
    HostDisk { path: PathBuf },
    #[error("{path}: target too small: {have} bytes, the image needs {need}")]
    TooSmall { path: PathBuf, have: u64, need: u64 },
    #[error("{path}: verification failed: what was read back differs from what was written")]
    Verify { path: PathBuf },
    #[error("boot partition ends at {0} bytes, too far to edit while flashing")]
    BootTooFar(u64),
    #[error("image has no FAT boot partition to apply --config etc. to")]
    NoBoot,
    #[error("{0}")]
    Boot(#[from] BootError),
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip all-zero blocks when the target is a fresh regular file.
    pub sparse: bool,
    pub verify: bool,
    pub edits: Edits,
    /// Only these (start, len) byte ranges are written (a bmap); edits are added to them.
    pub map: Option<Vec<(u64, u64)>>,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub image_size: u64,
    pub written: u64,
    pub verified: bool,
}

/// What the target is, found before anything is written.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub is_block: bool,
    /// Block device size; `None` for files.
    pub size: Option<u64>,
    /// Whether a regular file that already holds data would be overwritten.
    pub exists_with_data: bool,
}

fn target_err(path: &Path) -> impl FnOnce(io::Error) -> FlashError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::PermissionDenied {
            FlashError::Permission { path: path.into() }
        } else {
            FlashError::Target {
                path: path.into(),
                source,
            }
        }
    }
}

/// Checks a target before any write: refuses mounted devices and the disk holding `/`.
pub fn check_target(path: &Path) -> Result<TargetInfo, FlashError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(TargetInfo {
                is_block: false,
                size: None,
                exists_with_data: false,
            });
        }
        Err(e) => return Err(target_err(path)(e)),
    };
    if !meta.file_type().is_block_device() {
        if !meta.is_file() {
            return Err(FlashError::Target {
                path: path.into(),
                source: io::Error::other("neither a block device nor a regular file"),
            });
        }
        return Ok(TargetInfo {
            is_block: false,
            size: None,
            exists_with_data: meta.len() > 0,
        });
    }
    let rdev = meta.rdev();
    let target_sys = sys_path(nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
        .map_err(target_err(path))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(target_err(path))?;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(dev), Some(at)) = (fields.get(2), fields.get(4)) else {
            continue;
        };
        let Some((maj, min)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(maj), Ok(min)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
            continue;
        };
        if maj == 0 {
            continue;
        }
        let Ok(sys) = sys_path(maj, min) else {
            continue;
        };
        // A device-mapper or md device counts as on the disk when any member is.
        let mut backing = vec![sys.clone()];
        if let Ok(slaves) = std::fs::read_dir(sys.join("slaves")) {
            backing.extend(
                slaves
                    .flatten()
                    .filter_map(|s| s.path().canonicalize().ok()),
            );
        }
        if backing.iter().any(|b| b.starts_with(&target_sys)) {
            if *at == "/" {
                return Err(FlashError::HostDisk { path: path.into() });
            }
            return Err(FlashError::Mounted {
                path: path.into(),
                at: at.replace("\\040", " "),
            });
        }
    }
    let mut f = File::open(path).map_err(target_err(path))?;
    let size = f.seek(SeekFrom::End(0)).map_err(target_err(path))?;
    Ok(TargetInfo {
        is_block: true,
        size: Some(size),
        exists_with_data: true,
    })
}

fn sys_path(major: u64, minor: u64) -> io::Result<PathBuf> {
    Path::new(&format!("/sys/dev/block/{major}:{minor}")).canonicalize()
}

nix::ioctl_none!(blkflsbuf, 0x12, 97);

/// Decompressed image in chunks from a reader thread, so decompression overlaps writing.
fn spawn_reader(mut reader: Box<dyn Read + Send>) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::spawn(move || {
        loop {
            let mut buf = vec![0u8; CHUNK];
            match read_up_to(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    });
    rx
}

/// Flashes `source` (opened from `image`) to `target`. `progress(written_offset, total)`.
pub fn flash(
    image: &Path,
    source: Source,
    target: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Stats, FlashError> {
    let info = check_target(target)?;
    let created = !target.exists();
    let result = flash_checked(image, source, target, &info, opts, progress);
    if result.is_err() && created {
        // A file this call created holds nothing useful after a failure.
        let _ = std::fs::remove_file(target);
    }
    result
}

fn flash_checked(
    image: &Path,
    source: Source,
    target: &Path,
    info: &TargetInfo,
    opts: &Options,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Stats, FlashError> {
    let read_err = |source| FlashError::Read {
        path: image.into(),
        source,
    };
    let total_hint = source.size;
    let chunks = spawn_reader(source.reader);
    let mut next = || -> Result<Option<Vec<u8>>, FlashError> {
        match chunks.recv() {
            Ok(Ok(c)) => Ok(Some(c)),
            Ok(Err(e)) => Err(read_err(e)),
            Err(_) => Ok(None),
        }
    };

    // The head: enough for the table and, with edits, the whole boot partition.
    let mut head: Vec<u8> = Vec::new();
    while head.len() < (1 << 20) {
        match next()? {
            Some(c) => head.extend_from_slice(&c),
            None => break,
        }
    }
    let table = Table::from_head(&head).map_err(|source| FlashError::NotImage {
        path: image.into(),
        source,
    })?;
    let need = table.min_disk_size.max(total_hint.unwrap_or(0));
    if let Some(have) = info.size
        && have < need
    {
        return Err(FlashError::TooSmall {
            path: target.into(),
            have,
            need,
        });
    }
    let mut exhausted = false;
    let mut edited: Vec<(u64, u64)> = Vec::new();
    if !opts.edits.is_empty() {
        let mut boot = None;
        for p in table.partitions.iter().filter(|p| !p.logical) {
            let want = p.start + 2048;
            if want > MAX_BOOT_END {
                break;
            }
            fill(&mut head, want, &mut next, &mut exhausted)?;
            let (filesystem, label) = probe_fs(&mut Cursor::new(&head), p).map_err(read_err)?;
            let fat = filesystem.as_deref() == Some("vfat");
            let info = PartInfo {
                part: p.clone(),
                filesystem,
                label,
            };
            if fat && find_boot(std::slice::from_ref(&info)).is_some() {
                boot = Some(p.clone());
                break;
            }
        }
        let boot = boot.ok_or(FlashError::NoBoot)?;
        if boot.end() > MAX_BOOT_END {
            return Err(FlashError::BootTooFar(boot.end()));
        }
        fill(&mut head, boot.end(), &mut next, &mut exhausted)?;
        if (head.len() as u64) < boot.end() {
            return Err(FlashError::Truncated {
                path: image.into(),
                have: head.len() as u64,
                need: table.min_disk_size,
            });
        }
        let mut recorder = Recorder {
            inner: Cursor::new(&mut head),
            writes: Vec::new(),
        };
        let slice = Slice::new(&mut recorder, boot.start, boot.size).map_err(read_err)?;
        opts.edits.apply(slice)?;
        edited = recorder.writes;
    }
    // With a bmap, the edited ranges must be written even where the map has none.
    let map = opts.map.clone().map(|mut m| {
        m.extend(edited.iter().copied());
        merge(m)
    });

    let out = if info.is_block {
        OpenOptions::new()
            .write(true)
            .read(true)
            // On a block device O_EXCL fails while anything has it mounted or claimed.
            .custom_flags(nix::libc::O_EXCL)
            .open(target)
    } else {
        OpenOptions::new()
            .write(true)
            .read(true)
            .create(true)
            .truncate(true)
            .open(target)
    }
    .map_err(target_err(target))?;
    let sparse = opts.sparse && !info.is_block;

    let mut writer = Writer {
        out: &out,
        target,
        sparse,
        map: map.as_deref(),
        map_index: 0,
        offset: 0,
        ranges: Vec::new(),
        hash: Sha256::new(),
        written: 0,
    };
    writer.put(&head)?;
    progress(writer.offset, total_hint);
    if !exhausted {
        while let Some(chunk) = next()? {
            writer.put(&chunk)?;
            progress(writer.offset, total_hint);
        }
    }
    let image_size = writer.offset;
    let written = writer.written;
    let ranges = std::mem::take(&mut writer.ranges);
    let expected = writer.hash.finalize();
    if image_size < table.min_disk_size {
        return Err(FlashError::Truncated {
            path: image.into(),
            have: image_size,
            need: table.min_disk_size,
        });
    }
    if !info.is_block {
        out.set_len(image_size).map_err(target_err(target))?;
    }
    out.sync_all().map_err(target_err(target))?;
    if info.is_block {
        use std::os::fd::AsRawFd;
        // Drop cached pages so the read-back below comes from the device.
        // SAFETY: BLKFLSBUF takes no argument; the fd is open for the whole call.
        unsafe { blkflsbuf(out.as_raw_fd()) }.map_err(|e| target_err(target)(e.into()))?;
    }
    let mut verified = false;
    if opts.verify {
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        for (start, len) in &ranges {
            let mut at = *start;
            let end = start + len;
            while at < end {
                let n = usize::try_from(end - at).unwrap_or(CHUNK).min(CHUNK);
                out.read_exact_at(&mut buf[..n], at)
                    .map_err(target_err(target))?;
                hash.update(&buf[..n]);
                at += n as u64;
            }
        }
        if hash.finalize() != expected {
            return Err(FlashError::Verify {
                path: target.into(),
            });
        }
        verified = true;
    }
    Ok(Stats {
        image_size,
        written,
        verified,
    })
}

fn fill(
    head: &mut Vec<u8>,
    want: u64,
    next: &mut dyn FnMut() -> Result<Option<Vec<u8>>, FlashError>,
    exhausted: &mut bool,
) -> Result<(), FlashError> {
    while (head.len() as u64) < want && !*exhausted {
        match next()? {
            Some(c) => head.extend_from_slice(&c),
            None => *exhausted = true,
        }
    }
    Ok(())
}

struct Writer<'a> {
    out: &'a File,
    target: &'a Path,
    sparse: bool,
    map: Option<&'a [(u64, u64)]>,
    /// First map range that may still overlap the data to come.
    map_index: usize,
    offset: u64,
    /// Written (start, len) ranges, merged when contiguous; verified in this order.
    ranges: Vec<(u64, u64)>,
    hash: Sha256,
    written: u64,
}

impl Writer<'_> {
    fn put(&mut self, data: &[u8]) -> Result<(), FlashError> {
        if let Some(map) = self.map {
            let end = self.offset + data.len() as u64;
            while let Some(&(s, l)) = map.get(self.map_index) {
                if s + l <= self.offset {
                    self.map_index += 1;
                    continue;
                }
                if s >= end {
                    break;
                }
                let a = s.max(self.offset);
                let b = (s + l).min(end);
                let (ra, rb) = ((a - self.offset) as usize, (b - self.offset) as usize);
                self.write_at_rel(&data[ra..rb], ra)?;
                if s + l <= end {
                    self.map_index += 1;
                } else {
                    break;
                }
            }
        } else if !self.sparse {
            self.write_run(data)?;
        } else {
            // Write runs of non-zero blocks; zero blocks stay holes in the fresh file.
            let mut run_start: Option<usize> = None;
            let mut i = 0;
            while i < data.len() {
                let end = (i + BLOCK).min(data.len());
                let zero = is_zero(&data[i..end]);
                match (zero, run_start) {
                    (false, None) => run_start = Some(i),
                    (true, Some(s)) => {
                        self.write_at_rel(&data[s..i], s)?;
                        run_start = None;
                    }
                    _ => {}
                }
                i = end;
            }
            if let Some(s) = run_start {
                self.write_at_rel(&data[s..], s)?;
            }
        }
        self.offset += data.len() as u64;
        Ok(())
    }

    fn write_run(&mut self, data: &[u8]) -> Result<(), FlashError> {
        self.write_at_rel(data, 0)
    }

    fn write_at_rel(&mut self, data: &[u8], rel: usize) -> Result<(), FlashError> {
        let at = self.offset + rel as u64;
        self.out.write_all_at(data, at).map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ENOSPC) {
                FlashError::TooSmall {
                    path: self.target.into(),
                    have: at,
                    need: at + data.len() as u64,
                }
            } else {
                target_err(self.target)(e)
            }
        })?;
        self.hash.update(data);
        self.written += data.len() as u64;
        match self.ranges.last_mut() {
            Some((s, l)) if *s + *l == at => *l += data.len() as u64,
            _ => self.ranges.push((at, data.len() as u64)),
        }
        Ok(())
    }
}

static ZEROS: [u8; BLOCK] = [0; BLOCK];

/// A slice compare (memcmp), fast even in unoptimised builds.
fn is_zero(block: &[u8]) -> bool {
    block.len() <= BLOCK && block == &ZEROS[..block.len()]
}

/// Sorts and merges overlapping or touching (start, len) ranges.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, l) in ranges {
        match out.last_mut() {
            Some((ps, pl)) if s <= *ps + *pl => *pl = (*pl).max(s + l - *ps),
            _ => out.push((s, l)),
        }
    }
    out
}

/// Logs the byte ranges written through it (the boot-partition edits).
struct Recorder<T> {
    inner: T,
    writes: Vec<(u64, u64)>,
}

impl<T: Read> Read for Recorder<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<T: io::Write + Seek> io::Write for Recorder<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let at = self.inner.stream_position()?;
        let n = self.inner.write(buf)?;
        self.writes.push((at, n as u64));
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Seek> Seek for Recorder<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}
