//! File writes that survive power loss and crashes: the old or the new content, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
#[error("{}: {action}", path.display())]
pub struct FsError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        FsError {
            path: path.into(),
            action,
            source,
        }
    }
}

/// Adds the path and action to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: &Path, action: &'static str) -> Result<T, FsError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path, action: &'static str) -> Result<T, FsError> {
        self.map_err(|e| FsError::new(path, action, e))
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically with permission bits `mode`:
/// temp file in the same directory, write, fsync, rename over `path` (the replaced file held
/// open until the end), fsync it there, fsync the directory.
/// A crash at any point leaves either the old file or the new one.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            FsError::new(
                path,
                "write",
                io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
            )
        })?;
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_temp(&tmp, bytes, mode).and_then(|()| {
        // The file being replaced stays open until the new one is durable: Linux vfat frees
        // a replaced file's clusters when its inode goes, and if that happens in the rename,
        // the FAT sectors freeing them and the directory sector pointing at the new clusters
        // reach the card between the same two flushes, in any order. A cut that kept the
        // FAT write alone left the entry on freed clusters: grubenv unreadable to GRUB
        // (tests/powerloss `vfat-grub-arm`). Held open, they are freed after the last
        // fsync below, when the entry already points at the new file.
        let _replaced = File::open(path).ok();
        fs::rename(&tmp, path).at(path, "rename temp file over")?;
        // On FAT (Linux vfat) the rename only moves the in-memory inode: the target's
        // directory entry keeps the old cluster and size until the file's inode is written,
        // which the directory's fsync does not do. Without this a cut seconds after the
        // call returned still finds the old content (tests/powerloss `vfat-mark-good`).
        File::open(path)
            .and_then(|f| f.sync_all())
            .at(path, "fsync")?;
        sync_dir(&dir)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_temp(tmp: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .at(tmp, "create temp file")?;
    // The umask may have narrowed `mode` at creation; set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .at(tmp, "set mode")?;
    f.write_all(bytes).at(tmp, "write")?;
    f.sync_all().at(tmp, "fsync")
}

/// fsyncs a directory so a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at(dir, "fsync directory")
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What [`write_if_changed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Written,
}

/// Like [`atomic_write`], but leaves the file alone when content and mode already match, so
/// re-running a service is free and logs nothing. Creates missing parent directories (0755).
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<Change, FsError> {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o7777 == mode
        && meta.len() == bytes.len() as u64
        && fs::read(path).is_ok_and(|old| old == bytes)
    {
        return Ok(Change::Unchanged);
    }
    ensure_dir(&parent_dir(path))?;
    atomic_write(path, bytes, mode)?;
    Ok(Change::Written)
}

/// Removes `path` if it exists (and fsyncs its directory); `Unchanged` when it was absent.
pub fn remove_if_exists(path: &Path) -> Result<Change, FsError> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(&parent_dir(path))?;
            Ok(Change::Written)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Change::Unchanged),
        Err(e) => Err(FsError::new(path, "remove", e)),
    }
}

/// Creates a directory and its parents (mode 0755) if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), FsError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .at(dir, "create directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_content_and_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        atomic_write(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        atomic_write(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_if_changed_detects_content_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/dir/f");
        assert_eq!(write_if_changed(&p, b"x", 0o644).unwrap(), Change::Written);
        assert_eq!(
            write_if_changed(&p, b"x", 0o644).unwrap(),
            Change::Unchanged
        );
        assert_eq!(write_if_changed(&p, b"x", 0o600).unwrap(), Change::Written);
        assert_eq!(write_if_changed(&p, b"y", 0o600).unwrap(), Change::Written);
        assert_eq!(remove_if_exists(&p).unwrap(), Change::Written);
        assert_eq!(remove_if_exists(&p).unwrap(), Change::Unchanged);
    }

    #[test]
    fn error_names_the_path() {
        let err = atomic_write(Path::new("/nonexistent-dir/x/y"), b"", 0o644).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x"), "{err}");
    }
}
