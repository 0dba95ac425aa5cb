//! The chunk index of each slot, kept on the device so that an install by URL need not scan
//! (read, chunk and hash) the running slot before its first range request.
//!
//! Written after a slot is verified against a bundle's signed index (that index is the slot's
//! exact chunk list; the first chunk is re-hashed after the slot's ext4 label is set), or, for
//! a slot no install wrote (flashed), by `fleetd update index` once after a good boot
//! (`fleet-slot-index.service`), which chunks the slot the way the bundle builder does.
//! Removed before a slot is rewritten.
//!
//! One file per slot, `/var/lib/fleet/slot-index-A|B`: a JSON line binding it to what the slot
//! holds (slot, version, sha256 and size of its image, as in the slot record), then the index
//! as `rootfs.index` encodes it. An index is used only when its binding equals the slot's
//! record, the record's version is the running system's, and its first chunk (the ext4
//! superblock: UUID, label, write time, mount count) still hashes as recorded. It is never
//! trusted for content: every chunk copied from the slot is hashed again before it is
//! written, and a mismatch is fetched.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fleet_bootenv::Slot;
use fleet_bundle::index::{self, Chunk, Index, Layout};
use fleet_fs::Root;
use sha2::{Digest, Sha256};

use super::UpdateError;
use super::slots::{self, SlotRecord};

/// `slot-index-A`, `slot-index-B` in this directory.
pub const DIR: &str = "/var/lib/fleet";

pub fn path(root: &Root, slot: Slot) -> PathBuf {
    root.path(DIR).join(format!("slot-index-{slot}"))
}

/// The JSON line before the index.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Binding {
    slot: String,
    version: String,
    sha256: String,
    size: u64,
}

/// Keeps `index` as the chunk list of `slot`, which holds `record`'s image on `dev`. The first
/// chunk is hashed again from `dev` (the install relabels the superblock after its check).
/// Failing to keep it costs the next install a scan, not this one: logged, not returned.
pub fn store(root: &Root, slot: Slot, record: &SlotRecord, index: &Index, dev: &File) {
    let layout = index.layout;
    let mut index = Index {
        layout,
        chunks: index.chunks.clone(),
    };
    if let Some(first) = index.chunks.first_mut() {
        let mut buf = vec![0u8; first.len as usize];
        if dev.read_exact_at(&mut buf, 0).is_err() {
            log::warn!("slot {slot}: cannot read its first chunk back; no index kept");
            return;
        }
        first.sha256 = layout.digest(&buf);
    }
    let file = path(root, slot);
    let binding = Binding {
        slot: slot.to_string(),
        version: record.version.clone(),
        sha256: record.sha256.clone(),
        size: record.size,
    };
    let mut bytes = serde_json::to_vec(&binding).unwrap_or_default();
    bytes.push(b'\n');
    bytes.extend_from_slice(&index.encode());
    match fleet_fs::ensure_dir(&root.path(DIR))
        .and_then(|()| fleet_fs::atomic_write(&file, &bytes, 0o644))
    {
        Ok(()) => log::info!(slot = slot.as_str();
            "{}: kept the slot's chunk index ({} chunks): the next install needs no scan", file.display(), index.chunks.len()),
        Err(e) => log::warn!("cannot keep the chunk index of slot {slot}: {e}"),
    }
}

/// Drops the index of a slot about to be rewritten.
pub fn forget(root: &Root, slot: Slot) -> Result<(), UpdateError> {
    fleet_fs::remove_if_exists(&path(root, slot))?;
    Ok(())
}

/// The kept index of `slot` (the running one, on `dev`) when it is bound to what the slot
/// holds; `None`, with the reason logged, otherwise.
pub fn load(root: &Root, slot: Slot, dev: &File) -> Option<Index> {
    let file = path(root, slot);
    match check(root, slot, &file, dev) {
        Ok(index) => Some(index),
        Err(reason) => {
            log::info!(slot = slot.as_str(); "{}: not used ({reason})", file.display());
            None
        }
    }
}

fn check(root: &Root, slot: Slot, file: &Path, dev: &File) -> Result<Index, String> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err("none kept".into()),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no binding line")?;
    let binding: Binding =
        serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("binding line: {e}"))?;
    let index = Index::decode(&bytes[nl + 1..])?;
    let record = slots::read_records(root)
        .remove(&slot)
        .ok_or("the slot has no record in slots.json")?;
    let want = Binding {
        slot: slot.to_string(),
        version: record.version,
        sha256: record.sha256,
        size: record.size,
    };
    if binding != want {
        return Err(format!(
            "kept for {} {} (sha256 {}), the slot holds {} (sha256 {})",
            binding.slot, binding.version, binding.sha256, want.version, want.sha256
        ));
    }
    if let Some(running) = slots::running_version(root)
        && running != want.version
    {
        return Err(format!(
            "kept for version {}, the running system is {running}",
            want.version
        ));
    }
    if index.image_len() != want.size {
        return Err(format!(
            "{} bytes of chunks for an image of {}",
            index.image_len(),
            want.size
        ));
    }
    if let Some(first) = index.chunks.first() {
        let mut buf = vec![0u8; first.len as usize];
        dev.read_exact_at(&mut buf, 0)
            .map_err(|e| format!("cannot read the slot's first chunk: {e}"))?;
        if index.digest(&buf) != first.sha256 {
            return Err("the slot's first chunk (its superblock) changed since".into());
        }
    }
    Ok(index)
}

/// What `fleetd update index` did.
#[derive(Debug, serde::Serialize)]
pub struct Indexed {
    pub slot: Slot,
    pub path: PathBuf,
    /// False when a bound index was already kept.
    pub computed: bool,
    pub chunks: usize,
}

/// Keeps the running slot's index, computed from the slot (read, chunked and hashed once)
/// unless a bound one is kept already. Binds it to the slot's record when that names the
/// running version, else records the slot as it is (its sha256, `VERSION_ID`).
pub fn compute(root: &Root) -> Result<Indexed, UpdateError> {
    let booted = slots::booted(root)?;
    let slot = booted.slot;
    let dev_path = match booted.device {
        Some(d) => d,
        None => slots::device(root, slot)?,
    };
    let dev = File::open(&dev_path).map_err(|e| UpdateError::Input(dev_path.clone(), e))?;
    if let Some(index) = load(root, slot, &dev) {
        return Ok(Indexed {
            slot,
            path: path(root, slot),
            computed: false,
            chunks: index.chunks.len(),
        });
    }
    let size = slots::fs_size(&dev_path)
        .or_else(|| slots::size_of(&dev_path).ok())
        .ok_or_else(|| {
            UpdateError::Input(
                dev_path.clone(),
                io::Error::other("neither an ext4 filesystem nor a sized device"),
            )
        })?;
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    // Cut the way the bundles this fleetd writes are: their index is what it is matched with.
    let layout = Layout::default();
    // The image's hash on this thread, the chunks' on the others.
    index::split_digested(
        &mut (&dev).take(size),
        layout,
        |e| UpdateError::Input(dev_path.clone(), e),
        |chunk| layout.digest(chunk),
        |_, chunk, sha256| {
            whole.update(chunk);
            chunks.push(Chunk {
                len: chunk.len() as u32,
                zlen: 0,
                sha256,
            });
            Ok(())
        },
    )?;
    let index = Index { layout, chunks };
    if index.image_len() != size {
        return Err(UpdateError::Input(
            dev_path,
            io::Error::other(format!("read {} of {size} bytes", index.image_len())),
        ));
    }
    let running = slots::running_version(root).unwrap_or_default();
    let record = match slots::read_records(root).remove(&slot) {
        Some(r) if r.version == running && r.size == size => r,
        _ => {
            let r = SlotRecord {
                version: running,
                sha256: fleet_bundle::hex(&whole.finalize()),
                size,
            };
            slots::write_record(root, slot, Some(r.clone()))?;
            r
        }
    };
    store(root, slot, &record, &index, &dev);
    Ok(Indexed {
        slot,
        path: path(root, slot),
        computed: true,
        chunks: index.chunks.len(),
    })
}
