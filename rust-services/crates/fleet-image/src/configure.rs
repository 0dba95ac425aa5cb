//! `fleet image configure`: edit the boot partition of an image file or block device in place.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::bootfs::{BootError, Edits, Slice};
use crate::inspect::{PartInfo, find_boot, probe_fs};
use crate::table::{Table, TableError};
use crate::writeback::{Shared, WriteBack};

#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("{path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}")]
    Table { path: PathBuf, source: TableError },
    #[error("{path}: no FAT boot partition found")]
    NoBoot { path: PathBuf },
    #[error("{path}")]
    Boot { path: PathBuf, source: BootError },
}

/// The boot partition's (start, size) in bytes.
pub fn boot_range(disk: &mut File, table: &Table) -> io::Result<Option<(u64, u64)>> {
    let mut parts = Vec::new();
    for p in &table.partitions {
        let (filesystem, label) = probe_fs(disk, p)?;
        parts.push(PartInfo {
            part: p.clone(),
            filesystem,
            label,
        });
    }
    Ok(find_boot(&parts)
        .and_then(|n| table.get(n))
        .map(|p| (p.start, p.size)))
}

/// Applies `edits` to the boot partition of `path`, then syncs it to storage.
pub fn configure(path: &Path, edits: &Edits) -> Result<(), ConfigureError> {
    let io_err = |source| ConfigureError::Io {
        path: path.into(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err)?;
    let table = Table::read(&mut file).map_err(|source| ConfigureError::Table {
        path: path.into(),
        source,
    })?;
    let (start, size) = boot_range(&mut file, &table)
        .map_err(io_err)?
        .ok_or_else(|| ConfigureError::NoBoot { path: path.into() })?;
    // The replacement steps are ordered by barriers (see bootfs::replace): write out the
    // sector buffer, then fsync through a second handle of the same file.
    let syncer = file.try_clone().map_err(io_err)?;
    let slice = Slice::new(file, start, size).map_err(io_err)?;
    let buffer = Shared(Rc::new(RefCell::new(WriteBack::new(slice))));
    let held = buffer.clone();
    let mut barrier = move || {
        held.0.borrow_mut().write_out()?;
        syncer.sync_data()
    };
    edits
        .apply(buffer, &mut barrier)
        .map_err(|source| ConfigureError::Boot {
            path: path.into(),
            source,
        })?;
    barrier().map_err(io_err)
}
