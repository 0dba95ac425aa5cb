//! The write engine. One thread decompresses into page-aligned chunks; this thread finds the
//! ranges to write (bmap, or data vs all-zero blocks), hashes them once and hands each chunk to
//! one writer thread per target, so several targets are written in parallel from a single
//! decompression. Boot-partition edits are applied in memory before the first write. Behind
//! each writer a verifier thread syncs every window of written batches, drops it from the
//! page cache, reads it back from the target and compares it with the batch hashes, so the
//! read-back overlaps decompression and writing instead of following them.

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::aligned::{ALIGN, AlignedBuf, Chunk, Pool};
use crate::bootfs::{BootError, Edits, FLEET_BOOT_LABEL, Slice};
use crate::inspect::{PartInfo, find_boot, probe_fs};
use crate::source::{Source, SourceError, read_up_to};
use crate::table::{Partition, Table, TableError, logicals_in_head};
use crate::target::{Target, TargetError, target_err};
pub use crate::target::{TargetInfo, check_target};

/// Unit of decompression, hashing and writing.
const CHUNK: usize = 8 << 20;
/// Granularity of zero-block detection.
const BLOCK: usize = 64 << 10;
/// Edits need the image up to the end of the boot partition in memory.
const MAX_BOOT_END: u64 = 1 << 30;
/// Chunks queued per writer: enough to ride out a slow write without holding much memory.
const QUEUE: usize = 4;
/// Written bytes synced and handed to the verifier at a time: large enough that the
/// `fdatasync` per window costs little, small enough that the read-back trails closely.
const WINDOW: u64 = 64 << 20;

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
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{path}: target too small: {have} bytes, the image needs {need}")]
    TooSmall { path: PathBuf, have: u64, need: u64 },
    #[error(
        "{path}: verification failed: bytes {start}..{end} read back differ from what was written"
    )]
    Verify { path: PathBuf, start: u64, end: u64 },
    #[error("{path}: given twice")]
    Duplicate { path: PathBuf },
    #[error("{path}: aborted: another error stopped the flash")]
    Aborted { path: PathBuf },
    #[error("out of memory for the flash buffers")]
    NoMemory,
    #[error("boot partition ends at {0} bytes, too far to edit while flashing")]
    BootTooFar(u64),
    #[error("image has no FAT boot partition to apply --config etc. to")]
    NoBoot,
    #[error("{}", path.display())]
    Boot {
        path: PathBuf,
        #[source]
        source: BootError,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip all-zero blocks: holes in fresh files, offloaded zeroing on block devices.
    pub sparse: bool,
    pub verify: bool,
    pub edits: Edits,
    /// Only these (start, len) byte ranges are written (a bmap); edits are added to them.
    pub map: Option<Vec<(u64, u64)>>,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub image_size: u64,
    /// Bytes written with data (zero blocks included when the target needed them written).
    pub written: u64,
    /// All-zero bytes left as holes or zeroed by the device (not transferred, so not read back).
    pub zeroed: u64,
    pub verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Writing,
    Verifying,
}

/// Flashes `source` (opened from `image`) to every target. Errors that concern the image or
/// any target's checks stop everything before the first write; errors while writing or
/// verifying one target are returned for that target alone.
/// `progress(phase, done, total)` is called from this thread.
pub fn flash(
    image: &Path,
    source: Source,
    targets: &[PathBuf],
    opts: &Options,
    progress: &mut dyn FnMut(Phase, u64, Option<u64>),
) -> Result<Vec<Result<Stats, FlashError>>, FlashError> {
    let mut infos = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].contains(t) {
            return Err(FlashError::Duplicate { path: t.clone() });
        }
        infos.push(check_target(t)?);
    }
    let created: Vec<bool> = targets.iter().map(|t| !t.exists()).collect();
    let result = Flash {
        image,
        targets,
        infos: &infos,
        opts,
    }
    .run(source, progress);
    // A file this call created holds nothing useful after a failure.
    let failed = |i: usize| match &result {
        Err(_) => true,
        Ok(r) => r.get(i).is_none_or(Result::is_err),
    };
    for (i, t) in targets.iter().enumerate() {
        if created[i] && failed(i) {
            let _ = std::fs::remove_file(t);
        }
    }
    result
}

struct Flash<'a> {
    image: &'a Path,
    targets: &'a [PathBuf],
    infos: &'a [TargetInfo],
    opts: &'a Options,
}

/// A planned piece of a chunk: `[start, end)` relative to the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    zero: bool,
    start: usize,
    end: usize,
}

/// A writer's read-back progress, polled by the main thread.
#[derive(Default)]
struct Counters {
    to_verify: AtomicU64,
    verified: AtomicU64,
}

struct Batch {
    chunk: Chunk,
    offset: u64,
    segs: Vec<Seg>,
    /// SHA-256 of the batch's data segments (not the zero ones), in order.
    hash: Digest256,
}

type Digest256 = [u8; 32];

enum Msg {
    Batch(Arc<Batch>),
    End { image_size: u64 },
}

impl Flash<'_> {
    fn read_err(&self) -> impl Fn(io::Error) -> FlashError + '_ {
        |source| FlashError::Read {
            path: self.image.into(),
            source,
        }
    }

    fn run(
        &self,
        source: Source,
        progress: &mut dyn FnMut(Phase, u64, Option<u64>),
    ) -> Result<Vec<Result<Stats, FlashError>>, FlashError> {
        let chunks = spawn_reader(source.reader);
        let mut exhausted = false;
        let mut next = || -> Result<Option<Chunk>, FlashError> {
            match chunks.recv() {
                Ok(Ok(c)) => Ok(Some(c)),
                Ok(Err(e)) => Err(self.read_err()(e)),
                Err(_) => Ok(None),
            }
        };

        // The head: enough for the table and, with edits, the whole boot partition.
        let mut head: Vec<u8> = Vec::new();
        fill(&mut head, 1 << 20, &mut next, &mut exhausted)?;
        let table = Table::from_head(&head).map_err(|source| FlashError::NotImage {
            path: self.image.into(),
            source,
        })?;
        let need = table.min_disk_size.max(source.size.unwrap_or(0));
        for (t, info) in self.targets.iter().zip(self.infos) {
            if let Some(have) = info.size
                && have < need
            {
                return Err(FlashError::TooSmall {
                    path: t.clone(),
                    have,
                    need,
                });
            }
        }
        let edited = if self.opts.edits.is_empty() {
            Vec::new()
        } else {
            self.edit_head(&mut head, &table, &mut next, &mut exhausted)?
        };
        // With a bmap, the edited ranges must be written even where the map has none.
        let map = self.opts.map.clone().map(|mut m| {
            m.extend(edited.iter().copied());
            merge(m)
        });

        let mut opened = Vec::new();
        for (t, info) in self.targets.iter().zip(self.infos) {
            opened.push(Target::open(t, info)?);
        }
        let counters: Vec<Arc<Counters>> = opened.iter().map(|_| Arc::default()).collect();
        let mut senders = Vec::new();
        let mut writers: Vec<JoinHandle<Result<Stats, FlashError>>> = Vec::new();
        for (target, verified) in opened.into_iter().zip(&counters) {
            let (tx, rx) = mpsc::sync_channel(QUEUE);
            senders.push(tx);
            let (sparse, verify, verified) = (self.opts.sparse, self.opts.verify, verified.clone());
            writers.push(std::thread::spawn(move || {
                write_target(target, &rx, sparse, verify, &verified)
            }));
        }
        let total = source.size.or(Some(table.min_disk_size));
        let mut planner = Planner {
            map: map.as_deref(),
            map_index: 0,
            sparse: self.opts.sparse,
        };
        let mut offset = 0u64;
        let mut send = |chunk: Chunk, offset: &mut u64| {
            let segs = planner.plan(&chunk, *offset);
            let hash = hash_data(&chunk, &segs);
            let len = chunk.len() as u64;
            let batch = Arc::new(Batch {
                chunk,
                offset: *offset,
                segs,
                hash,
            });
            for tx in &senders {
                // A writer that failed keeps draining; one that is gone reports its error.
                let _ = tx.send(Msg::Batch(batch.clone()));
            }
            *offset += len;
            progress(Phase::Writing, *offset, total);
        };
        let streamed = (|| -> Result<(), FlashError> {
            for piece in head.chunks(CHUNK) {
                let mut buf = AlignedBuf::new(piece.len()).ok_or(FlashError::NoMemory)?;
                buf.spare()[..piece.len()].copy_from_slice(piece);
                buf.set_len(piece.len());
                send(Chunk::standalone(buf), &mut offset);
            }
            drop(std::mem::take(&mut head));
            if !exhausted {
                while let Some(chunk) = next()? {
                    send(chunk, &mut offset);
                }
            }
            if offset < table.min_disk_size {
                return Err(FlashError::Truncated {
                    path: self.image.into(),
                    have: offset,
                    need: table.min_disk_size,
                });
            }
            Ok(())
        })();
        if let Err(e) = streamed {
            // Closing the channels without End makes every writer stop.
            drop(senders);
            for w in writers {
                let _ = w.join();
            }
            return Err(e);
        }
        for tx in &senders {
            let _ = tx.send(Msg::End { image_size: offset });
        }
        drop(senders);
        if self.opts.verify {
            let sum = |f: fn(&Counters) -> &AtomicU64| -> u64 {
                counters.iter().map(|c| f(c).load(Ordering::Relaxed)).sum()
            };
            while !writers.iter().all(JoinHandle::is_finished) {
                let total = sum(|c| &c.to_verify);
                progress(Phase::Verifying, sum(|c| &c.verified), Some(total));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(writers
            .into_iter()
            .zip(self.targets)
            .map(|(w, t)| {
                w.join()
                    .unwrap_or_else(|_| Err(FlashError::Aborted { path: t.clone() }))
            })
            .collect())
    }

    /// Reads the image up to the end of its boot partition into `head` and applies the
    /// edits there; returns the byte ranges they changed.
    fn edit_head(
        &self,
        head: &mut Vec<u8>,
        table: &Table,
        next: &mut dyn FnMut() -> Result<Option<Chunk>, FlashError>,
        exhausted: &mut bool,
    ) -> Result<Vec<(u64, u64)>, FlashError> {
        // In disk order: the partition labelled fleet-boot wins (on the tryboot layout it is
        // the first logical partition, after fleet-auto and the slots' boot partitions);
        // without one, the first FAT partition. The scan stops at the first ext2/3/4
        // partition (a root: the configuration partition comes before the roots on every
        // layout), so only the head of the image up to there is held in memory. Logical
        // partitions appear as the head grows over their extended boot records, so the chain
        // is read again from the head at each step.
        let is_extended = |p: &Partition| matches!(p.type_id.as_str(), "05" | "0f" | "85");
        let mut seen: Vec<PartInfo> = Vec::new();
        let mut done: Vec<u64> = Vec::new();
        loop {
            let mut current = table.partitions.clone();
            for ext in table.partitions.iter().filter(|p| is_extended(p)) {
                for l in logicals_in_head(head, ext) {
                    if !current.iter().any(|c| c.start == l.start) {
                        current.push(l);
                    }
                }
            }
            let Some(p) = current
                .iter()
                .filter(|p| !done.contains(&p.start))
                .min_by_key(|p| p.start)
                .cloned()
            else {
                break;
            };
            done.push(p.start);
            // The extended container: read its first boot record, then look again.
            let want = p.start + if is_extended(&p) { 512 } else { 2048 };
            if want > MAX_BOOT_END {
                break;
            }
            fill(head, want, next, exhausted)?;
            if is_extended(&p) {
                continue;
            }
            let (filesystem, label) =
                probe_fs(&mut Cursor::new(&head), &p).map_err(self.read_err())?;
            let root = filesystem.as_deref().is_some_and(|f| f.starts_with("ext"));
            let labelled = filesystem.as_deref() == Some("vfat")
                && label
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(FLEET_BOOT_LABEL));
            seen.push(PartInfo {
                part: p,
                filesystem,
                label,
            });
            if labelled || root {
                break;
            }
        }
        let boot = find_boot(&seen)
            .and_then(|n| seen.iter().find(|i| i.part.number == n))
            .map(|i| i.part.clone())
            .ok_or(FlashError::NoBoot)?;
        if boot.end() > MAX_BOOT_END {
            return Err(FlashError::BootTooFar(boot.end()));
        }
        fill(head, boot.end(), next, exhausted)?;
        if (head.len() as u64) < boot.end() {
            return Err(FlashError::Truncated {
                path: self.image.into(),
                have: head.len() as u64,
                need: table.min_disk_size,
            });
        }
        let mut recorder = Recorder {
            inner: Cursor::new(head),
            writes: Vec::new(),
        };
        let slice = Slice::new(&mut recorder, boot.start, boot.size).map_err(self.read_err())?;
        self.opts
            .edits
            .apply(slice, &mut crate::bootfs::no_barrier)
            .map_err(|source| FlashError::Boot {
                path: self.image.into(),
                source,
            })?;
        Ok(recorder.writes)
    }
}

/// Decompressed image in aligned chunks from a reader thread, so decompression overlaps
/// hashing and writing.
fn spawn_reader(mut reader: Box<dyn Read + Send>) -> mpsc::Receiver<io::Result<Chunk>> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    std::thread::spawn(move || {
        let pool = Pool::new(CHUNK);
        loop {
            let Some(mut buf) = pool.get() else {
                let _ = tx.send(Err(io::Error::from(io::ErrorKind::OutOfMemory)));
                break;
            };
            let want = CHUNK.min(buf.capacity());
            match read_up_to(&mut reader, &mut buf.spare()[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    buf.set_len(n);
                    if tx.send(Ok(pool.chunk(buf))).is_err() {
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

fn fill(
    head: &mut Vec<u8>,
    want: u64,
    next: &mut dyn FnMut() -> Result<Option<Chunk>, FlashError>,
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

/// Decides what of each chunk is written.
struct Planner<'a> {
    map: Option<&'a [(u64, u64)]>,
    /// First map range that may still overlap the data to come.
    map_index: usize,
    sparse: bool,
}

impl Planner<'_> {
    fn plan(&mut self, data: &[u8], offset: u64) -> Vec<Seg> {
        let mut segs: Vec<Seg> = Vec::new();
        let mut push = |zero: bool, start: usize, end: usize| match segs.last_mut() {
            Some(last) if last.zero == zero && last.end >= start => last.end = last.end.max(end),
            _ => segs.push(Seg { zero, start, end }),
        };
        let end = offset + data.len() as u64;
        if let Some(map) = self.map {
            while let Some(&(s, l)) = map.get(self.map_index) {
                if s + l <= offset {
                    self.map_index += 1;
                    continue;
                }
                if s >= end {
                    break;
                }
                // Widened to whole pages (unmapped bytes are "don't care") so the writes
                // can bypass the page cache; chunks start on page boundaries.
                let a = (s.max(offset) - offset) as usize / ALIGN * ALIGN;
                let b = ((s + l).min(end) - offset) as usize;
                let b = b.div_ceil(ALIGN).saturating_mul(ALIGN).min(data.len());
                if self.sparse {
                    // Mapped but all zeros (filesystems map blocks they zeroed): no transfer.
                    let mut at = a;
                    while at < b {
                        let next = ((at / BLOCK + 1) * BLOCK).min(b);
                        push(is_zero(&data[at..next]), at, next);
                        at = next;
                    }
                } else {
                    push(false, a, b);
                }
                if s + l <= end {
                    self.map_index += 1;
                } else {
                    break;
                }
            }
        } else if !self.sparse {
            push(false, 0, data.len());
        } else {
            for (i, block) in data.chunks(BLOCK).enumerate() {
                push(is_zero(block), i * BLOCK, i * BLOCK + block.len());
            }
        }
        segs
    }
}

/// The hash each target's read-back of a batch must match (computed once for all targets).
fn hash_data(data: &[u8], segs: &[Seg]) -> Digest256 {
    let mut hash = Sha256::new();
    for s in segs.iter().filter(|s| !s.zero) {
        hash.update(&data[s.start..s.end]);
    }
    hash.finalize().into()
}

/// What the verifier checks for one batch on one target: the pieces that were transferred
/// (`(start, len, zero)`, absolute), and the hash its data pieces must have.
struct Check {
    pieces: Vec<(u64, u64, bool)>,
    hash: Digest256,
}

/// Written batches not yet handed to the verifier.
#[derive(Default)]
struct Window {
    checks: Vec<Check>,
    start: u64,
    end: u64,
    bytes: u64,
}

/// One target's thread: writes every batch and, with `verify`, hands each window of written
/// batches to a verifier thread that trails it; at `End` syncs and waits for the verifier.
fn write_target(
    target: Target,
    rx: &mpsc::Receiver<Msg>,
    sparse: bool,
    verify: bool,
    counters: &Counters,
) -> Result<Stats, FlashError> {
    std::thread::scope(|scope| {
        let (check_tx, check_rx) = mpsc::channel::<Window>();
        let verifier = verify.then(|| {
            let target = &target;
            scope.spawn(move || verify_windows(target, &check_rx, counters))
        });
        let check_tx = verifier.is_some().then_some(check_tx);
        let written = write_batches(&target, rx, sparse, &check_tx, counters);
        // Closing the channel ends the verifier after the windows it has.
        drop(check_tx);
        let verified = match verifier {
            Some(v) => v.join().unwrap_or_else(|_| {
                Err(FlashError::Aborted {
                    path: target.path.clone(),
                })
            }),
            None => Ok(()),
        };
        // The verifier's error first: a writer stopped by it only says "aborted".
        verified?;
        let mut stats = written?;
        stats.verified = verify;
        Ok(stats)
    })
}

fn write_batches(
    target: &Target,
    rx: &mpsc::Receiver<Msg>,
    sparse: bool,
    check_tx: &Option<mpsc::Sender<Window>>,
    counters: &Counters,
) -> Result<Stats, FlashError> {
    let mut stats = Stats::default();
    let mut window = Window::default();
    let hand_over = |window: &mut Window| match check_tx {
        Some(tx) => {
            counters
                .to_verify
                .fetch_add(window.bytes, Ordering::Relaxed);
            // A verifier that stopped early has failed: stop writing, its error says why.
            tx.send(std::mem::take(window))
                .map_err(|_| FlashError::Aborted {
                    path: target.path.clone(),
                })
        }
        None => Ok(()),
    };
    for msg in rx {
        let batch = match msg {
            Msg::Batch(b) => b,
            Msg::End { image_size } => {
                stats.image_size = image_size;
                target
                    .finish(image_size)
                    .map_err(target_err(&target.path))?;
                hand_over(&mut window)?;
                return Ok(stats);
            }
        };
        let mut check = Check {
            pieces: Vec::new(),
            hash: batch.hash,
        };
        for seg in &batch.segs {
            let data = &batch.chunk[seg.start..seg.end];
            let at = batch.offset + seg.start as u64;
            let written = if seg.zero {
                target.zero(data, at, sparse)
            } else {
                target.write_at(data, at).map(|()| true)
            };
            let len = data.len() as u64;
            match written {
                Ok(true) => stats.written += len,
                // Not transferred (a hole, or the device's own write-zeroes command):
                // nothing of ours to read back.
                Ok(false) => {
                    stats.zeroed += len;
                    continue;
                }
                Err(e) => return Err(write_error(&target.path, e, at, data.len())),
            }
            match check.pieces.last_mut() {
                Some((s, l, z)) if *z == seg.zero && *s + *l == at => *l += len,
                _ => check.pieces.push((at, len, seg.zero)),
            }
            if window.bytes == 0 {
                window.start = at;
            }
            window.end = at + len;
            window.bytes += len;
        }
        window.checks.push(check);
        if window.bytes >= WINDOW {
            hand_over(&mut window)?;
        }
    }
    Err(FlashError::Aborted {
        path: target.path.clone(),
    })
}

fn write_error(path: &Path, e: io::Error, at: u64, len: usize) -> FlashError {
    if e.raw_os_error() == Some(nix::libc::ENOSPC) {
        FlashError::TooSmall {
            path: path.into(),
            have: at,
            need: at + len as u64,
        }
    } else {
        target_err(path)(e).into()
    }
}

/// What the verifier's reader hands its hasher.
enum ReadBack {
    /// `n` bytes read into the buffer; `zero` pieces must read as zeros.
    Piece {
        buf: AlignedBuf,
        n: usize,
        zero: bool,
    },
    /// The batch whose pieces came before is complete: compare.
    End {
        hash: Digest256,
        start: u64,
        end: u64,
    },
}

/// The verifier: for each window, `settle` (fdatasync, drop the cached pages), then read
/// every transferred piece back from the target; data must hash to its batch's hash,
/// written zero pieces must read as zeros. Reading and hashing run in two threads (the
/// next piece is read while one is hashed). Stops at the first difference.
fn verify_windows(
    target: &Target,
    windows: &mpsc::Receiver<Window>,
    counters: &Counters,
) -> Result<(), FlashError> {
    // Filled buffers go to the hasher; emptied ones come back.
    let (full_tx, full_rx) = mpsc::sync_channel::<ReadBack>(2);
    let (empty_tx, empty_rx) = mpsc::channel::<AlignedBuf>();
    for _ in 0..3 {
        let _ = empty_tx.send(AlignedBuf::new(CHUNK).ok_or(FlashError::NoMemory)?);
    }
    let path = &target.path;
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || -> Result<(), FlashError> {
            let mut hash = Sha256::new();
            let mut zeros_ok = true;
            for msg in full_rx {
                match msg {
                    ReadBack::Piece { mut buf, n, zero } => {
                        let piece = &buf.spare()[..n];
                        if zero {
                            zeros_ok &= piece.chunks(BLOCK).all(is_zero);
                        } else {
                            hash.update(piece);
                        }
                        counters.verified.fetch_add(n as u64, Ordering::Relaxed);
                        let _ = empty_tx.send(buf);
                    }
                    ReadBack::End {
                        hash: expected,
                        start,
                        end,
                    } => {
                        let got: Digest256 = std::mem::take(&mut hash).finalize().into();
                        if !std::mem::replace(&mut zeros_ok, true) || got != expected {
                            return Err(FlashError::Verify {
                                path: path.clone(),
                                start,
                                end,
                            });
                        }
                    }
                }
            }
            Ok(())
        });
        let read = (|| -> Result<(), FlashError> {
            for window in windows {
                if window.bytes == 0 {
                    // Only batches with nothing transferred: nothing to read.
                    continue;
                }
                target
                    .settle(window.start, window.end)
                    .map_err(target_err(path))?;
                for check in window.checks {
                    for &(start, len, zero) in &check.pieces {
                        let mut at = start;
                        while at < start + len {
                            // The hasher stopped (a difference): its error is the result.
                            let Ok(mut buf) = empty_rx.recv() else {
                                return Ok(());
                            };
                            let n = usize::try_from(start + len - at)
                                .unwrap_or(CHUNK)
                                .min(CHUNK);
                            target
                                .read_at(&mut buf.spare()[..n], at)
                                .map_err(target_err(path))?;
                            if full_tx.send(ReadBack::Piece { buf, n, zero }).is_err() {
                                return Ok(());
                            }
                            at += n as u64;
                        }
                    }
                    let (start, end) = match (check.pieces.first(), check.pieces.last()) {
                        (Some(f), Some(l)) => (f.0, l.0 + l.1),
                        _ => (0, 0),
                    };
                    let end_msg = ReadBack::End {
                        hash: check.hash,
                        start,
                        end,
                    };
                    if full_tx.send(end_msg).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })();
        drop(full_tx);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(FlashError::Aborted { path: path.clone() }));
        hashed.and(read)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(map: Option<&[(u64, u64)]>, sparse: bool) -> Planner<'_> {
        Planner {
            map,
            map_index: 0,
            sparse,
        }
    }

    #[test]
    fn sparse_plan_splits_zero_blocks() {
        let mut data = vec![0u8; 4 * BLOCK];
        data[BLOCK + 7] = 1;
        data[3 * BLOCK] = 1;
        let segs = planner(None, true).plan(&data, 0);
        let kinds: Vec<(bool, usize, usize)> =
            segs.iter().map(|s| (s.zero, s.start, s.end)).collect();
        assert_eq!(
            kinds,
            vec![
                (true, 0, BLOCK),
                (false, BLOCK, 2 * BLOCK),
                (true, 2 * BLOCK, 3 * BLOCK),
                (false, 3 * BLOCK, 4 * BLOCK)
            ]
        );
    }

    #[test]
    fn map_plan_widens_to_pages_and_keeps_the_tail() {
        let map = [(100u64, 10u64), (5000, 100), (3 * ALIGN as u64 + 10, 5)];
        let data = vec![1u8; 3 * ALIGN + 20];
        let segs = planner(Some(&map), false).plan(&data, 0);
        let spans: Vec<(usize, usize)> = segs.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(spans, vec![(0, 2 * ALIGN), (3 * ALIGN, 3 * ALIGN + 20)]);
    }

    #[test]
    fn sparse_map_plan_leaves_zero_blocks_of_mapped_ranges_untransferred() {
        let map = [(0u64, 3 * BLOCK as u64)];
        let mut data = vec![0u8; 4 * BLOCK];
        data[2 * BLOCK] = 1;
        data[3 * BLOCK] = 1; // unmapped: not written at all
        let segs = planner(Some(&map), true).plan(&data, 0);
        let kinds: Vec<(bool, usize, usize)> =
            segs.iter().map(|s| (s.zero, s.start, s.end)).collect();
        assert_eq!(
            kinds,
            vec![(true, 0, 2 * BLOCK), (false, 2 * BLOCK, 3 * BLOCK)]
        );
    }

    /// Writes a window to a real file through `Target`, optionally changes one byte of the
    /// file behind its back, and runs the verifier over it.
    fn verify_after_write(corrupt_at: Option<u64>) -> Result<(), FlashError> {
        let path = std::env::temp_dir().join(format!(
            "fleet-verify-test-{}-{}",
            std::process::id(),
            corrupt_at.unwrap_or(0)
        ));
        let _ = std::fs::remove_file(&path);
        let info = check_target(&path).expect("check target");
        let target = Target::open(&path, &info).expect("open target");
        let mut checks = Vec::new();
        let mut window = Window::default();
        for i in 0..3u8 {
            let mut data = AlignedBuf::new(2 * BLOCK).expect("buffer");
            data.spare().fill(i + 1);
            data.set_len(2 * BLOCK);
            let at = u64::from(i) * 2 * BLOCK as u64;
            target.write_at(&data, at).expect("write");
            let segs = [Seg {
                zero: false,
                start: 0,
                end: 2 * BLOCK,
            }];
            checks.push(Check {
                pieces: vec![(at, 2 * BLOCK as u64, false)],
                hash: hash_data(&data, &segs),
            });
            window.end = at + 2 * BLOCK as u64;
            window.bytes += 2 * BLOCK as u64;
        }
        window.checks = checks;
        target.finish(window.end).expect("finish");
        if let Some(at) = corrupt_at {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("reopen");
            std::os::unix::fs::FileExt::write_all_at(&f, b"X", at).expect("corrupt");
            f.sync_all().expect("sync");
        }
        let (tx, rx) = mpsc::channel();
        tx.send(window).expect("send");
        drop(tx);
        let result = verify_windows(&target, &rx, &Counters::default());
        let _ = std::fs::remove_file(&path);
        result
    }

    #[test]
    fn verifier_reads_back_and_names_the_batch_that_differs() {
        assert!(verify_after_write(None).is_ok());
        let at = 2 * BLOCK as u64 + 1000;
        match verify_after_write(Some(at)) {
            Err(FlashError::Verify { start, end, .. }) => {
                assert_eq!((start, end), (2 * BLOCK as u64, 4 * BLOCK as u64));
            }
            other => panic!("expected a verify error, got {other:?}"),
        }
    }

    #[test]
    fn merge_joins_touching_ranges() {
        assert_eq!(
            merge(vec![(10, 5), (0, 10), (20, 1)]),
            vec![(0, 15), (20, 1)]
        );
    }
}
