//! Flash targets: the safety checks made before any write, and the writes themselves
//! (`O_DIRECT` where the target allows it, offloaded zeroing on block devices).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::aligned::ALIGN;

/// A target refused or failed before or while it is written; each names the target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: permission denied (block devices need root or the disk group)")]
    Permission { path: PathBuf },
    #[error("{path}: neither a block device nor a regular file")]
    NotDeviceOrFile { path: PathBuf },
    #[error("{path}: refused: mounted at {at} (unmount it first)")]
    Mounted { path: PathBuf, at: String },
    #[error("{path}: refused: this disk holds the running system (/)")]
    HostDisk { path: PathBuf },
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

pub(crate) fn target_err(path: &Path) -> impl FnOnce(io::Error) -> TargetError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::PermissionDenied {
            TargetError::Permission { path: path.into() }
        } else {
            TargetError::Io {
                path: path.into(),
                source,
            }
        }
    }
}

/// Checks a target before any write: refuses mounted devices and the disk holding `/`.
pub fn check_target(path: &Path) -> Result<TargetInfo, TargetError> {
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
            return Err(TargetError::NotDeviceOrFile { path: path.into() });
        }
        return Ok(TargetInfo {
            is_block: false,
            size: None,
            exists_with_data: meta.len() > 0,
        });
    }
    let target_sys = sys_path(meta.rdev()).map_err(target_err(path))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(target_err(path))?;
    let mut mounted_at: Option<String> = None;
    for line in mountinfo.lines() {
        let Some((at, rdev)) = mount_device(line) else {
            continue;
        };
        let Ok(sys) = sys_path(rdev) else {
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
            if at == "/" {
                return Err(TargetError::HostDisk { path: path.into() });
            }
            mounted_at.get_or_insert(at);
        }
    }
    if let Some(at) = mounted_at {
        return Err(TargetError::Mounted {
            path: path.into(),
            at,
        });
    }
    let mut f = File::open(path).map_err(target_err(path))?;
    let size = f.seek(SeekFrom::End(0)).map_err(target_err(path))?;
    Ok(TargetInfo {
        is_block: true,
        size: Some(size),
        exists_with_data: true,
    })
}

/// Mount point and device number of one `/proc/self/mountinfo` line. Filesystems that
/// report an anonymous device (btrfs, major 0) are matched by their source path instead.
fn mount_device(line: &str) -> Option<(String, u64)> {
    let fields: Vec<&str> = line.split(' ').collect();
    let at = fields.get(4)?.replace("\\040", " ");
    let (maj, min) = fields.get(2)?.split_once(':')?;
    let (maj, min) = (maj.parse::<u64>().ok()?, min.parse::<u64>().ok()?);
    if maj != 0 {
        return Some((at, nix::sys::stat::makedev(maj, min)));
    }
    let sep = fields.iter().position(|f| *f == "-")?;
    let source = fields.get(sep + 2)?;
    let meta = std::fs::metadata(source).ok()?;
    meta.file_type()
        .is_block_device()
        .then(|| (at, meta.rdev()))
}

fn sys_path(rdev: u64) -> io::Result<PathBuf> {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    Path::new(&format!("/sys/dev/block/{major}:{minor}")).canonicalize()
}

/// Whether the device (or, for a partition, its disk) zeroes ranges without data transfer.
fn offloads_zeroing(rdev: u64) -> bool {
    let Ok(sys) = sys_path(rdev) else {
        return false;
    };
    let queue = if sys.join("queue").is_dir() {
        sys.join("queue")
    } else {
        sys.join("../queue")
    };
    std::fs::read_to_string(queue.join("write_zeroes_max_bytes"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

nix::ioctl_none!(blkflsbuf, 0x12, 97);
nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

/// An open target, shared by its writer and its verifier thread. Reads go through the
/// `O_DIRECT` handle when aligned (from the device, never from the page cache). Writes to a
/// block device do too (no page-cache copy, no huge dirty cache to flush at the end); writes
/// to a file go through the page cache, which lets the filesystem allocate and write back in
/// large extents (`O_DIRECT` writes to a fresh ext4 file were slower, see the README).
pub(crate) struct Target {
    pub path: PathBuf,
    pub is_block: bool,
    /// Fresh regular file: unwritten ranges read back as zeros (holes).
    pub fresh_file: bool,
    direct: Option<File>,
    /// Cleared when the filesystem refuses an `O_DIRECT` request: buffered from then on.
    direct_ok: AtomicBool,
    /// Writes use `direct` (block devices).
    direct_writes: bool,
    buffered: File,
    zeroout: bool,
}

impl Target {
    pub fn open(path: &Path, info: &TargetInfo) -> Result<Target, TargetError> {
        let err = target_err(path);
        let open = |custom: i32, create: bool| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(create)
                .custom_flags(custom)
                .open(path)
        };
        if info.is_block {
            // O_EXCL on a block device fails while anything has it mounted or claimed, and
            // keeps it claimed while we write.
            let excl = nix::libc::O_EXCL;
            let (direct, claim) = match open(excl | nix::libc::O_DIRECT, false) {
                Ok(f) => (Some(f), None),
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    (None, Some(open(excl, false).map_err(err)?))
                }
                Err(e) => return Err(err(e)),
            };
            let buffered = match claim {
                Some(f) => f,
                None => open(0, false).map_err(target_err(path))?,
            };
            let rdev = buffered.metadata().map_err(target_err(path))?.rdev();
            Ok(Target {
                path: path.into(),
                is_block: true,
                fresh_file: false,
                direct_ok: AtomicBool::new(direct.is_some()),
                direct,
                direct_writes: true,
                buffered,
                zeroout: offloads_zeroing(rdev),
            })
        } else {
            let buffered = open(0, true).map_err(err)?;
            // tmpfs and some others refuse O_DIRECT: then everything is buffered.
            let direct = open(nix::libc::O_DIRECT, false).ok();
            Ok(Target {
                path: path.into(),
                is_block: false,
                fresh_file: true,
                direct_ok: AtomicBool::new(direct.is_some()),
                direct,
                direct_writes: false,
                buffered,
                zeroout: false,
            })
        }
    }

    fn aligned(data: &[u8], at: u64) -> bool {
        (data.as_ptr() as usize).is_multiple_of(ALIGN)
            && data.len().is_multiple_of(ALIGN)
            && at.is_multiple_of(ALIGN as u64)
    }

    /// Whether the `O_DIRECT` handle may serve this request.
    fn direct_usable(&self, data: &[u8], at: u64) -> bool {
        self.direct.is_some() && self.direct_ok.load(Ordering::Relaxed) && Self::aligned(data, at)
    }

    /// Runs `op` on the `O_DIRECT` handle when `direct`, else (or when the filesystem wants a
    /// larger alignment and says EINVAL) on the buffered one.
    fn io<T>(&self, direct: bool, mut op: impl FnMut(&File) -> io::Result<T>) -> io::Result<T> {
        if let Some(d) = self.direct.as_ref().filter(|_| direct) {
            match op(d) {
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    self.direct_ok.store(false, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        op(&self.buffered)
    }

    pub fn write_at(&self, data: &[u8], at: u64) -> io::Result<()> {
        let direct = self.direct_writes && self.direct_usable(data, at);
        self.io(direct, |f| f.write_all_at(data, at))
    }

    /// Makes `data` (all zeros) read back at `at`: a hole in a fresh file, an offloaded
    /// zero-out on a device that has one, otherwise an ordinary write.
    /// Returns whether the bytes were written rather than zeroed.
    pub fn zero(&self, data: &[u8], at: u64, sparse: bool) -> io::Result<bool> {
        if sparse && self.fresh_file {
            return Ok(false);
        }
        if sparse && self.zeroout && Self::aligned(data, at) {
            let range = [at, data.len() as u64];
            // SAFETY: BLKZEROOUT reads two u64 (start, length) from the pointer.
            if unsafe { blkzeroout(self.buffered.as_raw_fd(), &range) }.is_ok() {
                return Ok(false);
            }
        }
        self.write_at(data, at).map(|()| true)
    }

    /// Sets a file's length, flushes everything to storage and, on a block device, drops its
    /// cached pages so the read-back comes from the device.
    pub fn finish(&self, image_size: u64) -> io::Result<()> {
        if !self.is_block {
            self.buffered.set_len(image_size)?;
        }
        self.buffered.sync_all()?;
        if let Some(d) = &self.direct {
            d.sync_all()?;
        }
        if self.is_block {
            // SAFETY: BLKFLSBUF takes no argument; the fd is open for the whole call.
            unsafe { blkflsbuf(self.buffered.as_raw_fd()) }.map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// Makes `[start, end)` ready to be read back from the device: `fdatasync` (data written
    /// through the page cache reaches the device, and the device flushes its cache), then
    /// drops the range's cached pages so no read can be answered from memory.
    pub fn settle(&self, start: u64, end: u64) -> io::Result<()> {
        // Both handles are the same inode: one fdatasync covers what either wrote.
        self.buffered.sync_data()?;
        let len = i64::try_from(end - start).unwrap_or(0);
        let start = i64::try_from(start).unwrap_or(0);
        nix::fcntl::posix_fadvise(
            &self.buffered,
            start,
            len,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .map_err(io::Error::from)
    }

    /// Reads from the device: `O_DIRECT` when aligned, otherwise through the page cache,
    /// which `settle` emptied for this range.
    pub fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let direct = self.direct_usable(buf, at);
        self.io(direct, |f| f.read_exact_at(buf, at))
    }
}
