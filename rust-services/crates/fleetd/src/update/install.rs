//! `fleetd update install`: stream a bundle into the inactive slot, then arm a trial boot.
//!
//! Order (each step only after the previous one succeeded): signature → manifest checks →
//! (disarm a pending trial of the target slot) → decompress + hash + compare + write →
//! fsync → drop the cache and re-read the slot to verify → set the slot's ext4 label →
//! (tryboot layout: the same for the slot's boot partition, then its label and cmdline.txt) →
//! record the version → arm the trial in ONE atomic environment write. Until that last write
//! the bootloader keeps selecting the slots it selected before.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use fleet_bootenv::tryboot::slot_boot;
use fleet_bootenv::{BootState, Slot};
use fleet_bundle::{
    BOOT, BootReader, BundleError, BundleReader, ImageInfo, Manifest, ROOTFS, index::Layout, keys,
};
use fleet_fs::Root;
use sha2::{Digest, Sha256};

use super::UpdateError;
use super::chunked;
use super::head::{self, Head};
use super::slot_index;
use super::slots::{self, SlotRecord};
use super::source::{SeqReader, Source};
use super::trial::{self, Recorded, TrialRecord};

/// Decompressed bytes per pipeline chunk; three chunks in flight plus one compare buffer,
/// so our buffers stay at 8 MiB (the zstd window adds at most 8 MiB).
const CHUNK: usize = 2 << 20;
/// Unit of the read-compare: a block identical in the slot is not written.
const BLOCK: usize = 4096;

#[derive(Debug, Clone)]
pub struct Options {
    /// Slot to write (default: the one not running).
    pub slot: Option<Slot>,
    /// Device or file to write instead of the slot's partition (tests, recovery).
    pub target: Option<PathBuf>,
    /// Directory of trusted `*.pub` keys (default `/etc/fleet/keys` below the root).
    pub keys: Option<PathBuf>,
    /// Trial boots before the bootloader rolls back.
    pub tries: u32,
    /// Length of the bundle when it is a file: a truncated file is then refused before the
    /// slot is touched (a stream can only be found short while writing).
    pub input_len: Option<u64>,
    /// Accept a bundle older than the running system.
    pub allow_downgrade: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub slot: Slot,
    pub target: PathBuf,
    pub version: String,
    pub size: u64,
    /// Bytes written to the slot's root and, on the tryboot layout, boot partition (blocks
    /// already identical are not written).
    pub bytes_written: u64,
    /// Bytes fetched from the bundle's URL (head, index and chunks), for installs by URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_downloaded: Option<u64>,
    /// How the running slot's chunks were found, for installs by URL: `stored-index` (its
    /// kept chunk index, no scan), `scan` (read whole first) or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_slot_lookup: Option<chunked::Lookup>,
    /// The slot's boot partition, written with the root (tryboot layout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_target: Option<PathBuf>,
    pub tries: u32,
}

/// Where the slot's own boot partition is (tryboot layout), and its root's PARTUUID.
struct BootTarget {
    dev: PathBuf,
    root_partuuid: String,
}

/// The boot partition of `slot` whose root partition is `target`: on MBR the PARTUUIDs
/// differ only in the partition number.
fn boot_target(root: &Root, slot: Slot, target: &Path) -> Result<BootTarget, UpdateError> {
    let fail = |reason: String| UpdateError::BootPartition { slot, reason };
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let parts = slots::partitions(root);
    let root_part = parts
        .iter()
        .find(|p| canon(&p.dev(root)) == canon(target))
        .ok_or_else(|| fail(format!("{} is not a partition in sysfs", target.display())))?;
    let root_partuuid = root_part
        .partuuid
        .clone()
        .ok_or_else(|| fail(format!("{} has no PARTUUID", root_part.devname)))?;
    let want = slot_boot::partuuid(&root_partuuid, slot)
        .ok_or_else(|| fail(format!("root PARTUUID {root_partuuid} is not an MBR one")))?;
    let boot = parts
        .iter()
        .find(|p| p.partuuid.as_deref() == Some(want.as_str()))
        .ok_or_else(|| fail(format!("no partition with PARTUUID {want}")))?;
    Ok(BootTarget {
        dev: boot.dev(root),
        root_partuuid,
    })
}

/// The device type this system is: `/etc/fleet/device-type`, else `deviceType` of config.json.
pub fn device_type(root: &Root) -> Option<String> {
    if let Ok(t) = std::fs::read_to_string(root.path("/etc/fleet/device-type")) {
        let t = t.trim();
        if !t.is_empty() {
            return Some(t.to_string());
        }
    }
    let bytes = std::fs::read(root.config_json()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("deviceType")?.as_str().map(str::to_string)
}

fn target_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> UpdateError {
    let path = path.to_path_buf();
    move |source| UpdateError::Target {
        path,
        action,
        source,
    }
}

/// Where the bundle comes from.
pub enum Input {
    /// A file or stdin, read once from start to end.
    Stream(Box<dyn Read + Send>),
    /// A URL (or a file) read by offset: only the chunks the device lacks are fetched.
    Source(Box<dyn Source>),
}

/// What is known before the bundle is opened.
struct Prepared {
    env: Box<dyn fleet_bootenv::BootEnv>,
    state: BootState,
    booted: slots::Booted,
    slot: Slot,
    target: PathBuf,
    slot_size: u64,
    trusted: Vec<(PathBuf, fleet_bundle::VerifyingKey)>,
}

fn prepare(root: &Root, opts: &Options) -> Result<Prepared, UpdateError> {
    let env = fleet_bootenv::select::open(root)?;
    let state = BootState::from_vars(&env.load()?);
    let booted = slots::booted(root)?;
    let slot = opts.slot.unwrap_or(booted.slot.other());
    if slot == booted.slot {
        return Err(UpdateError::TargetRunning(slot));
    }
    if slot == state.active && booted.slot != state.active {
        return Err(UpdateError::Unconfirmed {
            booted: booted.slot,
            active: state.active,
        });
    }
    let target = match &opts.target {
        Some(t) => t.clone(),
        None => slots::device(root, slot)?,
    };
    if let Some(dev) = &booted.device
        && dev.canonicalize().ok() == target.canonicalize().ok()
    {
        return Err(UpdateError::TargetRunning(slot));
    }
    if root.is_system() && slots::is_mounted(&target) {
        return Err(UpdateError::Mounted(target));
    }
    let slot_size = slots::size_of(&target).map_err(target_err(&target, "open"))?;
    let trusted = trusted_keys(root, opts.keys.as_deref())?;
    Ok(Prepared {
        env,
        state,
        booted,
        slot,
        target,
        slot_size,
        trusted,
    })
}

/// The checks of a verified manifest against this device, then (only if all pass) the
/// pending trial of the target slot is disarmed. Returns the slot's boot partition to write
/// (tryboot layout).
fn accept(
    root: &Root,
    prep: &Prepared,
    manifest: &Manifest,
    key: &Path,
    allow_downgrade: bool,
) -> Result<Option<(BootTarget, ImageInfo)>, UpdateError> {
    log::info!(version = manifest.version.as_str(), key = key.display().to_string().as_str();
        "bundle signature good");
    let slot = prep.slot;
    let mine = device_type(root).ok_or(UpdateError::UnknownDeviceType)?;
    if !manifest.compatible.contains(&mine) {
        return Err(UpdateError::WrongDevice {
            mine,
            compatible: manifest.compatible.join(", "),
        });
    }
    if let Some(running) = slots::running_version(root)
        && !allow_downgrade
        && fleet_bundle::version::compare(&manifest.version, &running).is_lt()
    {
        return Err(UpdateError::Downgrade {
            bundle: manifest.version.clone(),
            running,
        });
    }
    if manifest.rootfs.size > prep.slot_size {
        return Err(UpdateError::TooBig {
            size: manifest.rootfs.size,
            slot,
            slot_size: prep.slot_size,
        });
    }
    // The tryboot layout boots each slot from its own FAT partition: the kernel, firmware
    // and DTBs must change with the root, so a bundle without them is refused up front.
    let boot = match (prep.env.kind(), &manifest.boot) {
        ("tryboot", None) => return Err(UpdateError::NoBootImage),
        ("tryboot", Some(info)) => {
            let b = boot_target(root, slot, &prep.target)?;
            let size = slots::size_of(&b.dev).map_err(target_err(&b.dev, "open"))?;
            if info.size > size {
                return Err(UpdateError::TooBig {
                    size: info.size,
                    slot,
                    slot_size: size,
                });
            }
            if root.is_system() && slots::is_mounted(&b.dev) {
                return Err(UpdateError::Mounted(b.dev));
            }
            Some((b, info.clone()))
        }
        (kind, Some(_)) => {
            log::info!(
                "the bundle's boot partition image is not used: {kind} slots share one boot partition"
            );
            None
        }
        (_, None) => None,
    };
    // The slot's kept chunk index stops describing it with the first write.
    slot_index::forget(root, slot)?;
    if prep.state.trial == Some(slot) {
        // The slot is about to change under an armed trial: drop the trial first.
        let mut vars = prep.env.load()?;
        prep.state.without_trial().apply(&mut vars);
        prep.env.store(&vars)?;
        log::info!(slot = slot.as_str(); "disarmed the pending trial of the slot being rewritten");
    }
    Ok(boot)
}

fn open_rw(path: &Path) -> Result<File, UpdateError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(target_err(path, "open for writing"))
}

pub fn install(root: &Root, input: Input, opts: &Options) -> Result<Report, UpdateError> {
    let prep = prepare(root, opts)?;
    match input {
        Input::Stream(reader) => install_stream(root, &prep, reader, opts),
        Input::Source(source) => install_source(root, &prep, source, opts),
    }
}

fn too_short(len: u64, end: u64, what: &str) -> UpdateError {
    BundleError::TooShort(format!(
        "the file has {len} bytes, its {what} entry ends at byte {end}"
    ))
    .into()
}

/// The bundle read once, start to end: every block of the image is decompressed.
fn install_stream(
    root: &Root,
    prep: &Prepared,
    input: Box<dyn Read + Send>,
    opts: &Options,
) -> Result<Report, UpdateError> {
    // Nothing below this point may run for an unsigned or foreign bundle.
    let (manifest, key, mut rootfs) = BundleReader::open(input)?.verify(&prep.trusted)?;
    let boot = accept(root, prep, &manifest, &key, opts.allow_downgrade)?;
    let index = rootfs.index.take();
    let dev = open_rw(&prep.target)?;
    let (end, decoder) = rootfs.open()?;
    if let Some(len) = opts.input_len
        && len < end
    {
        return Err(too_short(len, end, "rootfs"));
    }
    let (mut written, decoder) = stream_into(
        decoder,
        &dev,
        &prep.target,
        ROOTFS,
        &manifest.rootfs,
        prep.slot_size,
    )?;
    finish_root(&dev, prep, &manifest, true)?;
    if let Some(index) = &index {
        slot_index::store(root, prep.slot, &record(&manifest), index, &dev);
    }
    if let Some((b, info)) = &boot {
        let (end, decoder) = BootReader::after_rootfs(decoder).open()?;
        if let Some(len) = opts.input_len
            && len < end
        {
            return Err(too_short(len, end, "boot"));
        }
        written += write_boot(decoder, b, info, prep.slot)?;
    }
    arm(
        root,
        prep,
        &manifest,
        opts,
        written,
        None,
        boot.map(|(b, _)| b.dev),
    )
}

/// A bundle without a chunk index, or the boot image, is streamed in ranges of this size.
const STREAM_STEP: u64 = 4 << 20;

/// The bundle read by offset: the head, then only the chunks neither slot holds.
fn install_source(
    root: &Root,
    prep: &Prepared,
    mut src: Box<dyn Source>,
    opts: &Options,
) -> Result<Report, UpdateError> {
    let active = active_image(root, prep);
    let stored = active
        .as_ref()
        .and_then(|(f, _, _)| slot_index::load(root, prep.booted.slot, f));
    // Without a kept index, the running slot is scanned while the head is fetched (in the
    // layout this fleetd's bundles have; another one's is scanned again). A refused bundle,
    // or one without an index, stops the scan.
    let early = match (&active, &stored) {
        (Some((file, _, size)), None) => chunked::EarlyScan::start(file, *size, Layout::default()),
        _ => None,
    };
    let Head {
        manifest,
        key,
        index,
        dictionary,
        data,
        len,
    } = head::read(root, &mut *src, &prep.trusted)?;
    let boot = accept(root, prep, &manifest, &key, opts.allow_downgrade)?;
    if data + len > src.size() {
        return Err(too_short(src.size(), data + len, "rootfs"));
    }
    let dev = open_rw(&prep.target)?;
    let mut lookup = None;
    let mut written = match &index {
        Some(index) => {
            let scanned = early.and_then(chunked::EarlyScan::finish);
            let active = active.as_ref().map(|(file, path, size)| chunked::Active {
                file,
                path,
                size: *size,
                stored: stored.as_ref(),
                scanned: scanned.as_ref(),
            });
            let w = chunked::write(
                &mut *src,
                index,
                data,
                &dev,
                &prep.target,
                active,
                dictionary.as_deref(),
            )?;
            lookup = Some(w.lookup);
            w.bytes
        }
        None => {
            drop(early);
            let reader = SeqReader::new(&mut *src, data, STREAM_STEP).take(len);
            let decoder = fleet_bundle::decoder(reader, dictionary.as_deref())?;
            let image = &manifest.rootfs;
            stream_into(decoder, &dev, &prep.target, ROOTFS, image, prep.slot_size)?.0
        }
    };
    // The chunked install has read the image back while it was written.
    finish_root(&dev, prep, &manifest, index.is_none())?;
    if let Some(index) = &index {
        slot_index::store(root, prep.slot, &record(&manifest), index, &dev);
    }
    head::forget(root);
    if let Some((b, info)) = &boot {
        let header = data + len + fleet_bundle::tar::padding(len);
        let reader = SeqReader::new(&mut *src, header, STREAM_STEP);
        let (_, decoder) = BootReader::new(reader).open()?;
        written += write_boot(decoder, b, info, prep.slot)?;
    }
    let fetched = Some(src.fetched());
    arm(
        root,
        prep,
        &manifest,
        opts,
        written,
        fetched,
        boot.map(|(b, _)| b.dev),
    )
    .map(|r| Report {
        running_slot_lookup: lookup,
        ..r
    })
}

/// The running slot's image, to copy chunks from: its device and the size of the ext4
/// filesystem on it (the image it was written from).
fn active_image(root: &Root, prep: &Prepared) -> Option<(File, PathBuf, u64)> {
    let dev = match &prep.booted.device {
        Some(d) => d.clone(),
        None => slots::device(root, prep.booted.slot).ok()?,
    };
    let size = slots::fs_size(&dev).or_else(|| slots::size_of(&dev).ok())?;
    let file = File::open(&dev).ok()?;
    Some((file, dev, size))
}

/// fsync, read back with the page cache dropped (unless that was done while writing), then
/// the slot's own ext4 label.
fn finish_root(
    dev: &File,
    prep: &Prepared,
    manifest: &Manifest,
    read_back: bool,
) -> Result<(), UpdateError> {
    let (target, slot) = (&prep.target, prep.slot);
    dev.sync_all().map_err(target_err(target, "fsync"))?;
    if read_back {
        verify_image(dev, target, &manifest.rootfs)?;
    }
    if slots::set_fs_label(target, slot.label()).map_err(target_err(target, "set label"))? {
        log::info!(slot = slot.as_str(); "set the filesystem label to {}", slot.label());
    }
    Ok(())
}

/// The slot's boot partition (tryboot layout): written, verified, then made the slot's.
fn write_boot<D: Read + Send>(
    decoder: D,
    b: &BootTarget,
    info: &ImageInfo,
    slot: Slot,
) -> Result<u64, UpdateError> {
    let bdev = open_rw(&b.dev)?;
    let size = slots::size_of(&b.dev).map_err(target_err(&b.dev, "open"))?;
    let written = stream_into(decoder, &bdev, &b.dev, BOOT, info, size)?.0;
    bdev.sync_all().map_err(target_err(&b.dev, "fsync"))?;
    verify_image(&bdev, &b.dev, info)?;
    slot_boot::retarget(&b.dev, slot, &b.root_partuuid)?;
    log::info!(slot = slot.as_str(), dev = b.dev.display().to_string().as_str();
        "wrote the slot's boot partition ({}, root PARTUUID {})", slot_boot::label(slot), b.root_partuuid);
    Ok(written)
}

/// What a slot written from `manifest` holds.
fn record(manifest: &Manifest) -> SlotRecord {
    SlotRecord {
        version: manifest.version.clone(),
        sha256: manifest.rootfs.sha256.clone(),
        size: manifest.rootfs.size,
    }
}

/// Records what the slot holds, then arms the trial in one atomic boot-state write.
fn arm(
    root: &Root,
    prep: &Prepared,
    manifest: &Manifest,
    opts: &Options,
    written: u64,
    downloaded: Option<u64>,
    boot_target: Option<PathBuf>,
) -> Result<Report, UpdateError> {
    let slot = prep.slot;
    slots::write_record(root, slot, Some(record(manifest)))?;
    // Written before arming: a record without an armed trial reads as "failed", never as
    // a trial that silently did not happen.
    trial::write(
        root,
        &TrialRecord {
            slot,
            version: manifest.version.clone(),
            tries: opts.tries,
            recorded: Recorded::Armed,
            reason: None,
        },
    )?;
    // Arm: the one boot-state change, atomic.
    let mut vars = prep.env.load()?;
    let armed = BootState {
        active: prep.state.active,
        trial: Some(slot),
        tries: opts.tries,
    };
    armed.apply(&mut vars);
    prep.env.store(&vars)?;
    log::info!(slot = slot.as_str(), version = manifest.version.as_str(), tries = opts.tries;
        "trial armed: the next boot starts slot {slot}");
    Ok(Report {
        slot,
        target: prep.target.clone(),
        version: manifest.version.clone(),
        size: manifest.rootfs.size,
        bytes_written: written,
        bytes_downloaded: downloaded,
        running_slot_lookup: None,
        boot_target,
        tries: opts.tries,
    })
}

/// Decompresses the image `name` in a second thread; this one hashes, compares and writes.
/// Returns the bytes actually written, and the decoder (read to its end) to go on from.
fn stream_into<D: Read + Send>(
    mut decoder: D,
    dev: &File,
    target: &Path,
    name: &str,
    image: &ImageInfo,
    slot_size: u64,
) -> Result<(u64, D), UpdateError> {
    let (full_tx, full_rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(2);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<D, BundleError> {
            while let Ok(mut buf) = empty_rx.recv() {
                buf.resize(CHUNK, 0);
                let n = fleet_bundle::read_up_to(&mut decoder, &mut buf)
                    .map_err(|e| BundleError::io(name, e))?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if full_tx.send(buf).is_err() || n < CHUNK {
                    break;
                }
            }
            Ok(decoder)
        });
        let result = write_chunks(&full_rx, &empty_tx, dev, target, name, image, slot_size);
        drop(full_rx);
        drop(empty_tx);
        let read_result = reader
            .join()
            .unwrap_or_else(|_| Err(BundleError::Layout("decompressor thread panicked".into())));
        // A stream error (truncation) explains a short write better than the size check.
        let decoder = read_result?;
        Ok((result?, decoder))
    })
}

fn write_chunks(
    full: &Receiver<Vec<u8>>,
    empty: &SyncSender<Vec<u8>>,
    dev: &File,
    target: &Path,
    name: &str,
    image: &ImageInfo,
    slot_size: u64,
) -> Result<u64, UpdateError> {
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    let mut written = 0u64;
    let mut current = vec![0u8; CHUNK];
    while let Ok(buf) = full.recv() {
        let n = buf.len();
        if offset + n as u64 > image.size.min(slot_size) {
            return Err(BundleError::Mismatch(format!(
                "{name}: more than the {} bytes the manifest announces",
                image.size
            ))
            .into());
        }
        hasher.update(&buf);
        let cur = &mut current[..n];
        dev.read_exact_at(cur, offset)
            .map_err(target_err(target, "read"))?;
        // Write runs of blocks that differ; identical blocks are left alone.
        let mut i = 0;
        while i < n {
            let end = (i + BLOCK).min(n);
            if buf[i..end] == cur[i..end] {
                i = end;
                continue;
            }
            let start = i;
            while i < n {
                let e = (i + BLOCK).min(n);
                if buf[i..e] == cur[i..e] {
                    break;
                }
                i = e;
            }
            dev.write_all_at(&buf[start..i], offset + start as u64)
                .map_err(target_err(target, "write"))?;
            written += (i - start) as u64;
        }
        offset += n as u64;
        let _ = empty.send(buf);
    }
    fleet_bundle::check_image(name, image, offset, &fleet_bundle::hex(&hasher.finalize()))?;
    Ok(written)
}

/// Re-reads the image from the device (page cache dropped) and checks the manifest's hash.
fn verify_image(dev: &File, target: &Path, image: &ImageInfo) -> Result<(), UpdateError> {
    let _ = nix::fcntl::posix_fadvise(
        dev.as_fd(),
        0,
        image.size as i64,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < image.size {
        let n = (image.size - offset).min(CHUNK as u64) as usize;
        dev.read_exact_at(&mut buf[..n], offset)
            .map_err(target_err(target, "read back"))?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    let got = fleet_bundle::hex(&hasher.finalize());
    if got != image.sha256 {
        return Err(UpdateError::VerifyFailed {
            path: target.to_path_buf(),
            got,
        });
    }
    Ok(())
}

/// The release keys a bundle must be signed with: `keys` (a directory), else the image's.
pub(super) fn trusted_keys(
    root: &Root,
    keys: Option<&Path>,
) -> Result<Vec<(PathBuf, fleet_bundle::VerifyingKey)>, UpdateError> {
    let dir = keys.map_or_else(|| root.path(fleet_bundle::KEYS_DIR), Path::to_path_buf);
    Ok(keys::read_public_dir(&dir)?)
}
