//! The chunked install: only what the device lacks is fetched. Each chunk of the signed index
//! ([`fleet_bundle::index`]) is found, in this order, in the target slot at its own offset
//! (an earlier, interrupted attempt already wrote it: this is what makes a rerun resume), in
//! the running slot, or fetched: missing chunks are grouped into ranges of the bundle's
//! compressed entry, neighbours merged when the gap is cheaper than another request. Every
//! chunk is checked against its sha256 before it is written, local copies included.
//!
//! Where the running slot's chunks are: its kept index ([`super::slot_index`]) when there is
//! one, so the first range goes out at once and the local copies run beside the transfer;
//! else a scan of the whole slot (chunked the same way, so moved content is found) before
//! the first range, and then, when the ranges (with their requests) would cost at least as
//! much as the whole entry, the whole entry is fetched in large ranges instead.

use std::collections::HashMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fleet_bundle::index::{self, Index, Layout, Placed};

use super::UpdateError;
use super::source::Source;
use super::verify::{self, Checker};

/// Largest range fetched at once (memory bound, and what a dropped link costs again).
const MAX_RANGE: u64 = 4 << 20;

/// What one more range costs beside its bytes, by how the source asks for ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeCost {
    /// Fetching the skipped chunks between two needed ones costs less than another range up
    /// to this gap.
    merge_gap: u64,
    /// The whole entry is fetched instead of the ranges only when the ranges would cost at
    /// least as much with this per range, so that never downloads more than the ranges.
    per_range: u64,
}

impl RangeCost {
    /// One range per request: a request and its response headers (~512 bytes), and a round
    /// trip on a slow link. Index layout FLEETIX2 has 4 KiB chunks (ext4 directory blocks,
    /// ~1 KiB compressed) a few KiB apart; a 32 KiB gap fetched 2.7x the needed bytes on
    /// bench-ota's pair (a).
    pub const ALONE: RangeCost = RangeCost {
        merge_gap: 4 * 1024,
        per_range: 512,
    };
    /// Several ranges per request (`multipart/byteranges`): a part's header, ~110 bytes from
    /// nginx. On bench-ota's pair (a) (1681 chunks to fetch, many of them directory blocks of
    /// ~100 bytes compressed) a 4 KiB gap fetched 3.31 MB, 1 KiB 2.92 MB, 256 bytes 2.86 MB,
    /// none 2.86 MB.
    pub const IN_GROUPS: RangeCost = RangeCost {
        merge_gap: 256,
        per_range: 128,
    };

    /// The cost for a source that asks `per_request` ranges per request at most.
    pub fn asking(per_request: usize) -> RangeCost {
        if per_request > 1 {
            RangeCost::IN_GROUPS
        } else {
            RangeCost::ALONE
        }
    }
}

/// A range of the compressed entry to fetch (offsets relative to the entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

/// Groups the chunks to fetch into ranges; all of the entry when that is no dearer.
/// Ranges always start and end at chunk edges, at most [`MAX_RANGE`] long (a chunk is
/// never split between two requests).
pub fn ranges(chunks: &[(Placed, bool)], costs: RangeCost) -> Vec<Range> {
    let needed = group(
        chunks.iter().filter(|(_, f)| *f).map(|(p, _)| p),
        costs.merge_gap,
    );
    let cost = |rs: &[Range]| -> u64 {
        rs.iter()
            .map(|r| r.end - r.start + costs.per_range)
            .sum::<u64>()
    };
    let all = group(chunks.iter().map(|(p, _)| p), u64::MAX);
    if !needed.is_empty() && cost(&all) <= cost(&needed) {
        all
    } else {
        needed
    }
}

fn group<'a>(chunks: impl Iterator<Item = &'a Placed>, gap: u64) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    for p in chunks {
        let (start, end) = (p.zoffset, p.zoffset + u64::from(p.chunk.zlen));
        match out.last_mut() {
            Some(r) if start - r.end <= gap && end - r.start <= MAX_RANGE => r.end = end,
            _ => out.push(Range { start, end }),
        }
    }
    out
}

fn chunk_err(offset: u64, reason: impl Into<String>) -> UpdateError {
    UpdateError::Chunk {
        offset,
        reason: reason.into(),
    }
}

/// Reads `len` bytes at `offset`; `None` past the end of the device.
fn read_at(file: &File, offset: u64, len: u32) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).ok().map(|()| buf)
}

/// The running slot's chunks, cut in `layout`: where each first occurs, by digest.
pub struct Scanned {
    layout: Layout,
    at: HashMap<[u8; 32], u64>,
}

/// Reads, chunks and hashes the running slot whole, cut in `layout` (the way the bundle
/// builder cuts), the digests taken on every core. A read error, or `stop`, ends it early:
/// what was found stays usable, the rest is fetched.
pub fn scan(active: &File, size: u64, layout: Layout, stop: &AtomicBool) -> Scanned {
    let mut at = HashMap::new();
    let mut file = active;
    if file.seek(SeekFrom::Start(0)).is_ok() {
        // Zero chunks (a third of bench-ota's 512 MiB root) told by their bytes.
        let checker = Checker::for_layout(layout);
        let _ = index::split_digested(
            &mut file.take(size),
            layout,
            |_| (),
            |chunk| checker.digest(chunk),
            |start, _, digest| {
                if stop.load(Ordering::Acquire) {
                    return Err(());
                }
                at.entry(digest).or_insert(start);
                Ok(())
            },
        );
    }
    Scanned { layout, at }
}

/// A [`scan`] under way on a thread of its own (started while the bundle's head is fetched:
/// the link is busy then, the CPU and the storage are not); stopped when dropped unfinished.
pub struct EarlyScan {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Scanned>>,
}

impl EarlyScan {
    /// Scans `size` bytes of `active` in `layout`; `None` when the slot cannot be opened
    /// again for it (the install then scans when it needs to).
    pub fn start(active: &File, size: u64, layout: Layout) -> Option<EarlyScan> {
        let file = active.try_clone().ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || scan(&file, size, layout, &stop))
        };
        Some(EarlyScan {
            stop,
            handle: Some(handle),
        })
    }

    /// What the scan found, once it has read the whole slot.
    pub fn finish(mut self) -> Option<Scanned> {
        self.handle.take()?.join().ok()
    }
}

impl Drop for EarlyScan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Progress every few seconds: to the journal, and to the terminal when there is one.
struct Progress {
    started: Instant,
    last: Instant,
    total: u64,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            started: Instant::now(),
            last: Instant::now(),
            total,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: u64, force: bool) {
        if !force && self.last.elapsed() < Duration::from_secs(3) {
            return;
        }
        self.last = Instant::now();
        // The total is an estimate (the chunks to fetch, not the neighbours a range takes
        // along to save a request): never shown below what came.
        self.total = self.total.max(done);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(done)) as f64 / rate
        } else {
            0.0
        };
        let line = format!(
            "fetched {done} of {} bytes, {:.0} KiB/s, ETA {:.0} s",
            self.total,
            rate / 1024.0,
            eta
        );
        log::info!("{line}");
        if self.tty {
            eprintln!("{line}");
        }
    }
}

/// The running slot, to copy chunks from.
pub struct Active<'a> {
    pub file: &'a File,
    pub path: &'a Path,
    /// Bytes of its image (its ext4 filesystem).
    pub size: u64,
    /// Its chunk list kept on the device ([`super::slot_index`]): no scan needed.
    pub stored: Option<&'a Index>,
    /// Else its chunks as [`scan`] found them, if scanned already.
    pub scanned: Option<&'a Scanned>,
}

/// How the running slot's chunks were looked up (the install's JSON `running_slot_lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lookup {
    /// Its kept chunk index: no scan.
    StoredIndex,
    /// Read, chunked and hashed whole before the first range.
    Scan,
    /// No running slot to copy from.
    None,
}

/// What [`write`] did.
pub struct Written {
    pub bytes: u64,
    pub lookup: Lookup,
}

/// Where a chunk comes from, as planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Already right in the target slot (checked).
    Target,
    /// At this offset of the running slot: checked in the target, else copied (re-hashed).
    Copy(u64),
    /// To fetch (neither slot holds it).
    Fetch,
    /// Not in the running slot: checked in the target (beside the transfer), else fetched.
    CheckTarget,
}

/// Part of the compressed entry to fetch, and the chunks (ordinals) to write from it.
struct Job {
    range: Range,
    chunks: Vec<usize>,
}

/// Groups chunks to fetch into jobs as they come (in image order), by the rule of [`group`],
/// handing each over once it is closed. With the merge gap above the cost per range this is
/// never dearer than the whole entry but for one range per [`MAX_RANGE`].
struct Jobs<'a> {
    tx: std::sync::mpsc::Sender<Job>,
    placed: &'a [Placed],
    open: Option<Job>,
    merge_gap: u64,
}

impl Jobs<'_> {
    fn push(&mut self, i: usize) {
        let p = &self.placed[i];
        let (start, end) = (p.zoffset, p.zoffset + u64::from(p.chunk.zlen));
        if let Some(job) = &mut self.open
            && start - job.range.end <= self.merge_gap
            && end - job.range.start <= MAX_RANGE
        {
            job.range.end = end;
            job.chunks.push(i);
            return;
        }
        self.flush();
        self.open = Some(Job {
            range: Range { start, end },
            chunks: vec![i],
        });
    }

    fn flush(&mut self) {
        if let Some(job) = self.open.take() {
            // The fetcher has stopped (failed): nothing left to do with the job.
            let _ = self.tx.send(job);
        }
    }
}

/// Writes the image into `target` and verifies it (each chunk read back with the page cache
/// dropped, against the signed index: [`verify::read_back`]); returns the bytes written.
/// `data` is the offset of the compressed entry in the bundle.
///
/// Four threads work at once, so the install takes about max(download, local work): one
/// fetches and writes the ranges of missing chunks (the requests of the next small ranges
/// sent ahead, [`announce`]); one plans them (with the running slot's
/// kept index it only checks the target slot, chunk by chunk ahead of the fetcher; without
/// one, the running slot is scanned first, on every core); one copies the
/// chunks the running slot holds, each hashed again (a mismatch is fetched after the rest);
/// one reads the chunks back as they become final.
#[allow(clippy::too_many_arguments)]
pub fn write(
    src: &mut dyn Source,
    index: &Index,
    data: u64,
    target: &File,
    target_path: &Path,
    active: Option<Active<'_>>,
    dictionary: Option<&[u8]>,
) -> Result<Written, UpdateError> {
    let checker = Checker::new(index);
    let costs = RangeCost::asking(src.ranges_per_request());
    let mut frames = index::FrameDecoder::new(dictionary).map_err(|e| chunk_err(0, e))?;
    let placed: Vec<Placed> = index.placed().collect();
    let (lookup, plan, ranged) = match &active {
        // A kept index cuts and names chunks in its own layout: only one in the bundle's is
        // of use (else the running slot is scanned the bundle's way).
        Some(Active {
            stored: Some(stored),
            path,
            ..
        }) if stored.layout == index.layout => {
            let mut at: HashMap<[u8; 32], u64> = HashMap::new();
            for p in stored.placed() {
                at.entry(p.chunk.sha256).or_insert(p.offset);
            }
            let plan: Vec<Plan> = placed
                .iter()
                .map(|p| {
                    at.get(&p.chunk.sha256)
                        .map_or(Plan::CheckTarget, |&o| Plan::Copy(o))
                })
                .collect();
            let copies = plan.iter().filter(|p| matches!(p, Plan::Copy(_))).count();
            log::info!(
                "running slot {}: its kept chunk index used, no scan: {copies} of {} chunks are there (copied and hashed again beside the download), the other {} are checked in the target slot, else fetched",
                path.display(),
                placed.len(),
                placed.len() - copies
            );
            (Lookup::StoredIndex, plan, None)
        }
        _ => {
            let (plan, lookup) = scan_plan(&placed, &checker, target, active.as_ref());
            let fetch: Vec<(Placed, bool)> = placed
                .iter()
                .zip(&plan)
                .map(|(p, f)| (*p, *f == Plan::Fetch))
                .collect();
            (lookup, plan, Some(ranges(&fetch, costs)))
        }
    };
    let estimate: u64 = placed
        .iter()
        .zip(&plan)
        .filter(|(_, f)| matches!(f, Plan::Fetch | Plan::CheckTarget))
        .map(|(p, _)| u64::from(p.chunk.zlen))
        .sum();
    if let Some(ranges) = &ranged {
        let count = |want: fn(&Plan) -> bool| plan.iter().filter(|f| want(f)).count();
        log::info!(
            "{} chunks: {} already in the target slot, {} from the running slot, {} to fetch in {} ranges ({} of {} compressed bytes)",
            placed.len(),
            count(|f| *f == Plan::Target),
            count(|f| matches!(f, Plan::Copy(_))),
            count(|f| *f == Plan::Fetch),
            ranges.len(),
            ranges.iter().map(|r| r.end - r.start).sum::<u64>(),
            index.compressed_len()
        );
    }

    let finals: Vec<AtomicBool> = placed.iter().map(|_| AtomicBool::new(false)).collect();
    let stop = AtomicBool::new(false);
    let (copy_tx, copy_rx) = std::sync::mpsc::channel::<(usize, u64)>();
    let (job_tx, job_rx) = std::sync::mpsc::channel::<Job>();
    let stats = Stats::default();
    let bytes = std::thread::scope(|s| {
        let (placed, plan, finals, stop, stats) = (&placed, &plan, &finals, &stop, &stats);
        let checker = &checker;
        let planner = {
            let job_tx = job_tx.clone();
            s.spawn(move || {
                let r = plan_jobs(
                    placed, checker, plan, ranged, costs, target, job_tx, copy_tx, finals, stop,
                    stats,
                );
                if r.is_err() {
                    stop.store(true, Ordering::Release);
                }
                r
            })
        };
        let copier = {
            let job_tx = job_tx.clone();
            let from = active.as_ref().map(|a| (a.file, a.path));
            s.spawn(move || {
                let r = copy_local(
                    placed,
                    checker,
                    costs,
                    from,
                    target,
                    target_path,
                    copy_rx,
                    job_tx,
                    finals,
                    stop,
                    stats,
                );
                if r.is_err() {
                    stop.store(true, Ordering::Release);
                }
                r
            })
        };
        drop(job_tx);
        let reader = s.spawn(move || {
            let r = verify::read_back(target, target_path, placed, checker, finals, stop);
            if r.is_err() {
                // A read-back that failed makes the rest of the download pointless.
                stop.store(true, Ordering::Release);
            }
            r
        });
        let fetched = fetch(
            src,
            checker,
            placed,
            job_rx,
            data,
            &mut frames,
            target,
            target_path,
            estimate,
            finals,
            stop,
            stats,
        );
        if fetched.is_err() {
            stop.store(true, Ordering::Release);
        }
        let joined = |h: std::thread::ScopedJoinHandle<'_, Result<u64, UpdateError>>, what| {
            h.join()
                .unwrap_or_else(|_| Err(chunk_err(0, format!("the {what} thread panicked"))))
        };
        let planned = joined(planner, "planning");
        let copied = joined(copier, "copying");
        let checked = reader
            .join()
            .unwrap_or_else(|_| Err(chunk_err(0, "the read-back thread panicked")));
        // The first failure stops the others: the planner, the copier and the read-back
        // then end quietly, the fetcher with "stopped", reported only when nothing else is.
        checked?;
        planned?;
        let copied = copied?;
        Ok::<u64, UpdateError>(copied + fetched?)
    })?;
    log::info!(
        "{} chunks: {} already in the target slot, {} copied from the running slot, {} fetched in {} ranges; {} local copies did not match their hash and were fetched",
        placed.len(),
        stats.in_target.load(Ordering::Relaxed),
        stats.copied.load(Ordering::Relaxed),
        stats.fetched.load(Ordering::Relaxed),
        stats.ranges.load(Ordering::Relaxed),
        stats.mismatched.load(Ordering::Relaxed)
    );
    Ok(Written { bytes, lookup })
}

#[derive(Default)]
struct Stats {
    in_target: AtomicUsize,
    copied: AtomicUsize,
    fetched: AtomicUsize,
    ranges: AtomicUsize,
    mismatched: AtomicUsize,
}

/// Without a kept index: the running slot scanned whole ([`scan`]), then the chunks it does
/// not hold are checked in the target slot (an earlier, interrupted attempt may have written
/// them). One it holds is checked in the target by the copier, before it writes.
fn scan_plan(
    placed: &[Placed],
    checker: &Checker,
    target: &File,
    active: Option<&Active<'_>>,
) -> (Vec<Plan>, Lookup) {
    // Scanned already (beside the fetch of the bundle's head) when cut in the index's layout.
    let rescanned;
    let found = match active {
        Some(Active {
            scanned: Some(s), ..
        }) if s.layout == checker.layout() => Some(&s.at),
        Some(a) => {
            rescanned = scan(a.file, a.size, checker.layout(), &AtomicBool::new(false));
            Some(&rescanned.at)
        }
        None => None,
    };
    let plan: Vec<Plan> = placed
        .iter()
        .map(|p| match found.and_then(|f| f.get(&p.chunk.sha256)) {
            Some(&at) => Plan::Copy(at),
            None if target_holds(target, checker, p) => Plan::Target,
            None => Plan::Fetch,
        })
        .collect();
    let Some(a) = active else {
        return (plan, Lookup::None);
    };
    log::info!(
        "running slot {}: scanned (no kept chunk index): {} of {} chunks found",
        a.path.display(),
        plan.iter().filter(|f| matches!(f, Plan::Copy(_))).count(),
        placed.len()
    );
    (plan, Lookup::Scan)
}

/// Whether the target slot already holds chunk `p` at its place.
fn target_holds(target: &File, checker: &Checker, p: &Placed) -> bool {
    read_at(target, p.offset, p.chunk.len).is_some_and(|b| checker.holds(&p.chunk, &b))
}

/// Whether the target slot holds `bytes` at `offset`. Its first block is compared first: a
/// chunk that differs (a blank slot) costs one block's read, not the chunk's.
fn target_equals(target: &File, offset: u64, bytes: &[u8]) -> bool {
    let head = bytes.len().min(index::BLOCK);
    if read_at(target, offset, head as u32).as_deref() != Some(&bytes[..head]) {
        return false;
    }
    head == bytes.len()
        || read_at(target, offset + head as u64, (bytes.len() - head) as u32).as_deref()
            == Some(&bytes[head..])
}

/// Hands each chunk to where it is done: final when the target holds it, to the copier, or to
/// the fetcher (the planned ranges first, when there are any; else grouped as they come).
#[allow(clippy::too_many_arguments)]
fn plan_jobs(
    placed: &[Placed],
    checker: &Checker,
    plan: &[Plan],
    ranged: Option<Vec<Range>>,
    costs: RangeCost,
    target: &File,
    job_tx: std::sync::mpsc::Sender<Job>,
    copy_tx: std::sync::mpsc::Sender<(usize, u64)>,
    finals: &[AtomicBool],
    stop: &AtomicBool,
    stats: &Stats,
) -> Result<u64, UpdateError> {
    if let Some(ranges) = ranged {
        let mut fetch = plan
            .iter()
            .enumerate()
            .filter(|(_, f)| **f == Plan::Fetch)
            .map(|(i, _)| i)
            .peekable();
        for r in ranges {
            let chunks: Vec<usize> = std::iter::from_fn(|| {
                fetch.next_if(|&i| placed[i].zoffset + u64::from(placed[i].chunk.zlen) <= r.end)
            })
            .collect();
            let _ = job_tx.send(Job { range: r, chunks });
        }
        if let Some(i) = fetch.next() {
            return Err(chunk_err(placed[i].offset, "not in any planned range"));
        }
    }
    let mut jobs = Jobs {
        tx: job_tx,
        placed,
        open: None,
        merge_gap: costs.merge_gap,
    };
    for (i, (p, f)) in placed.iter().zip(plan).enumerate() {
        if stop.load(Ordering::Acquire) {
            // Another part failed and reports why.
            return Ok(0);
        }
        match f {
            Plan::Target => {
                stats.in_target.fetch_add(1, Ordering::Relaxed);
                finals[i].store(true, Ordering::Release);
            }
            Plan::Copy(at) => {
                let _ = copy_tx.send((i, *at));
            }
            Plan::Fetch => {}
            Plan::CheckTarget if target_holds(target, checker, p) => {
                stats.in_target.fetch_add(1, Ordering::Relaxed);
                finals[i].store(true, Ordering::Release);
            }
            Plan::CheckTarget => jobs.push(i),
        }
    }
    jobs.flush();
    Ok(0)
}

/// Copies handed to the sync thread at once (the read-back must see the device). With one
/// batch syncing and one queued, at most twice this is dirty: what a fetcher's sync, which
/// flushes the whole target, may have to wait for.
const COPY_SYNC: u64 = 8 << 20;

/// Copies chunks from the running slot: each is read from the running slot and hashed again,
/// left alone when the target already holds the same bytes, else written; one whose copy no longer
/// matches its hash (slot changed, kept index wrong) is fetched once the copying is done.
/// Written copies are synced (and so made final) by a thread of their own, every
/// [`COPY_SYNC`] bytes, while the copying goes on: a sync waits for the media, the copying
/// for the CPU.
#[allow(clippy::too_many_arguments)]
fn copy_local(
    placed: &[Placed],
    checker: &Checker,
    costs: RangeCost,
    active: Option<(&File, &Path)>,
    target: &File,
    target_path: &Path,
    rx: std::sync::mpsc::Receiver<(usize, u64)>,
    job_tx: std::sync::mpsc::Sender<Job>,
    finals: &[AtomicBool],
    stop: &AtomicBool,
    stats: &Stats,
) -> Result<u64, UpdateError> {
    std::thread::scope(|s| {
        // One batch synced while the next is written, at most.
        let (sync_tx, sync_rx) = std::sync::mpsc::sync_channel::<Vec<usize>>(1);
        let syncer = s.spawn(move || {
            for chunks in sync_rx {
                Unsynced { chunks, bytes: 0 }.settle(target, target_path, finals)?;
            }
            Ok::<(), UpdateError>(())
        });
        // In a closure of its own: a failed copy still joins the sync thread below.
        let copied = (|| {
            let mut late = Jobs {
                tx: job_tx,
                placed,
                open: None,
                merge_gap: costs.merge_gap,
            };
            let mut written = 0u64;
            let mut unsynced = Unsynced::default();
            let flush = |unsynced: &mut Unsynced| {
                unsynced.bytes = 0;
                if unsynced.chunks.is_empty()
                    || sync_tx.send(std::mem::take(&mut unsynced.chunks)).is_ok()
                {
                    Ok(())
                } else {
                    Err(chunk_err(0, "the sync thread stopped"))
                }
            };
            loop {
                let (i, at) = match rx.try_recv() {
                    Ok(m) => m,
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        // Nothing queued: make what was copied final before waiting.
                        flush(&mut unsynced)?;
                        match rx.recv() {
                            Ok(m) => m,
                            Err(_) => break,
                        }
                    }
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                };
                let p = &placed[i];
                if stop.load(Ordering::Acquire) {
                    // Another part failed and reports why.
                    return Ok(written);
                }
                // The running slot's copy is hashed (zeros need no copy); the target's bytes
                // are then only compared with it (one hash per chunk, not two).
                let copy = if checker.is_zero_chunk(&p.chunk) {
                    Some(vec![0u8; p.chunk.len as usize])
                } else {
                    active
                        .and_then(|(file, _)| read_at(file, at, p.chunk.len))
                        .filter(|b| checker.holds(&p.chunk, b))
                };
                let held = match &copy {
                    Some(bytes) => target_equals(target, p.offset, bytes),
                    None => target_holds(target, checker, p),
                };
                if held {
                    stats.in_target.fetch_add(1, Ordering::Relaxed);
                    finals[i].store(true, Ordering::Release);
                    continue;
                }
                let Some(bytes) = copy else {
                    stats.mismatched.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "chunk at byte {} of the image: the running slot's copy at byte {at} does not match its hash; fetched instead",
                        p.offset
                    );
                    late.push(i);
                    continue;
                };
                written += write_chunk(target, target_path, p, &bytes)?;
                stats.copied.fetch_add(1, Ordering::Relaxed);
                unsynced.push(i, bytes.len() as u64);
                if unsynced.bytes >= COPY_SYNC {
                    flush(&mut unsynced)?;
                }
            }
            flush(&mut unsynced)?;
            late.flush();
            Ok(written)
        })();
        drop(sync_tx);
        let synced = syncer
            .join()
            .unwrap_or_else(|_| Err(chunk_err(0, "the sync thread panicked")));
        // A failed sync is the cause of a copier that could not hand its chunks over.
        synced?;
        copied
    })
}

/// Chunks written to the target since its last sync, and their bytes (as the writer counts
/// them): final, for the read-back, only once synced.
#[derive(Default)]
struct Unsynced {
    chunks: Vec<usize>,
    bytes: u64,
}

impl Unsynced {
    fn push(&mut self, chunk: usize, bytes: u64) {
        self.chunks.push(chunk);
        self.bytes += bytes;
    }

    /// Syncs the target, then counts the chunks final.
    fn settle(
        &mut self,
        target: &File,
        path: &Path,
        finals: &[AtomicBool],
    ) -> Result<(), UpdateError> {
        if !self.chunks.is_empty() {
            sync(target, path)?;
            for i in self.chunks.drain(..) {
                finals[i].store(true, Ordering::Release);
            }
        }
        self.bytes = 0;
        Ok(())
    }
}

fn sync(target: &File, path: &Path) -> Result<(), UpdateError> {
    target.sync_data().map_err(|source| UpdateError::Target {
        path: path.to_path_buf(),
        action: "fsync",
        source,
    })
}

/// Requests sent ahead of their turn, at most, one range each: enough to keep a link busy
/// through the round trips of small ranges (4 KiB directory blocks are ranges of their own).
/// A source that asks several ranges per request has two requests' worth ahead.
const AHEAD_REQUESTS: usize = 16;
/// Bytes of the ranges requested ahead, at most: what a killed install may have had in
/// flight besides its current range (fetched again by the rerun), about one chunk.
const AHEAD_BYTES: u64 = 64 << 10;

/// Sends the requests of the next queued ranges ahead, within [`AHEAD_REQUESTS`] ranges and
/// [`AHEAD_BYTES`]; `announced` counts the queue's first jobs whose request is out. A source
/// that asks several ranges per request gets them once half the bounds are free, so that
/// one request carries many ranges, not the one that has just been read.
fn announce(
    src: &mut dyn Source,
    data: u64,
    queue: &std::collections::VecDeque<Job>,
    announced: &mut usize,
) {
    let len = |j: &Job| j.range.end - j.range.start;
    let mut bytes: u64 = queue.iter().take(*announced).map(len).sum();
    let per_request = src.ranges_per_request().max(1);
    let most = if per_request > 1 {
        2 * per_request
    } else {
        AHEAD_REQUESTS
    };
    if per_request > 1 && *announced > 0 && (bytes > AHEAD_BYTES / 2 || *announced > most / 2) {
        return;
    }
    let mut ranges = Vec::new();
    for job in queue.iter().skip(*announced).take(most - *announced) {
        if bytes + len(job) > AHEAD_BYTES {
            break;
        }
        ranges.push((data + job.range.start, len(job)));
        bytes += len(job);
        *announced += 1;
    }
    for some in ranges.chunks(per_request) {
        src.prefetch_all(some);
    }
}

/// Fetches the jobs' ranges as they come and writes their chunks, synced before they are
/// counted final, in groups whose compressed bytes stay within the largest chunk's (what a
/// power cut may cost again). Stops early when `stop` is set (another thread failed).
#[allow(clippy::too_many_arguments)]
fn fetch(
    src: &mut dyn Source,
    checker: &Checker,
    placed: &[Placed],
    jobs: std::sync::mpsc::Receiver<Job>,
    data: u64,
    frames: &mut index::FrameDecoder,
    target: &File,
    target_path: &Path,
    estimate: u64,
    finals: &[AtomicBool],
    stop: &AtomicBool,
    stats: &Stats,
) -> Result<u64, UpdateError> {
    let name = src.name();
    // What a power cut may make the rerun fetch again, at most: one chunk's bytes (the
    // largest chunk's). Fetched chunks are synced in groups within that bound, not one by one:
    // a chunk is often a single 4 KiB directory block, ~1 KiB compressed, and a sync per chunk
    // cost more than its transfer (thousands of syncs for a one-package update; on an SD card,
    // milliseconds each).
    let at_risk_max = placed
        .iter()
        .map(|p| u64::from(p.chunk.zlen))
        .max()
        .unwrap_or(0);
    // Fetched chunks not yet synced, counted in compressed bytes (what the bound is about).
    let mut unsynced = Unsynced::default();
    let settle = |unsynced: &mut Unsynced| unsynced.settle(target, target_path, finals);
    let mut progress = Progress::new(estimate);
    let mut written = 0u64;
    // Bytes of the ranges already read through, and in all.
    let (mut ranges_done, mut fetched) = (0u64, 0u64);
    // Jobs handed over but not started; the first `announced` of them have their request out.
    let mut queue: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    let mut announced = 0usize;
    loop {
        queue.extend(jobs.try_iter());
        let job = match queue.pop_front() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        announced = announced.saturating_sub(1);
        announce(src, data, &queue, &mut announced);
        let Job { range: r, chunks } = job;
        stats.ranges.fetch_add(1, Ordering::Relaxed);
        let mut reader = src.stream(data + r.start, r.end - r.start)?;
        let mut pos = r.start;
        for i in chunks {
            let p = &placed[i];
            if stop.load(Ordering::Acquire) {
                return Err(chunk_err(
                    p.offset,
                    "stopped: another part of the install failed",
                ));
            }
            let broken = |e: std::io::Error| super::source::SourceError::Http {
                url: name.clone(),
                reason: e.to_string(),
            };
            if pos < p.zoffset {
                // A chunk between two needed ones, fetched because that was cheaper.
                let gap = p.zoffset - pos;
                std::io::copy(&mut (&mut reader).take(gap), &mut std::io::sink())
                    .map_err(broken)?;
            }
            if unsynced.bytes + u64::from(p.chunk.zlen) > at_risk_max {
                settle(&mut unsynced)?;
            }
            let mut frame = vec![0u8; p.chunk.zlen as usize];
            reader.read_exact(&mut frame).map_err(broken)?;
            pos = p.zoffset + u64::from(p.chunk.zlen);
            fetched = ranges_done + (pos - r.start);
            progress.update(fetched, false);
            let out = frames
                .decompress(&frame, p.chunk.len)
                .map_err(|e| chunk_err(p.offset, e))?;
            if !checker.holds(&p.chunk, &out) {
                return Err(chunk_err(
                    p.offset,
                    "its sha256 differs from the signed index (tampered or corrupt)",
                ));
            }
            written += write_chunk(target, target_path, p, &out)?;
            stats.fetched.fetch_add(1, Ordering::Relaxed);
            unsynced.push(i, u64::from(p.chunk.zlen));
        }
        ranges_done += r.end - r.start;
        // Before waiting for the next range's bytes, or when no range is left.
        if queue.is_empty() {
            settle(&mut unsynced)?;
        }
    }
    settle(&mut unsynced)?;
    progress.update(fetched, true);
    Ok(written)
}

fn write_chunk(target: &File, path: &Path, p: &Placed, bytes: &[u8]) -> Result<u64, UpdateError> {
    target
        .write_all_at(bytes, p.offset)
        .map_err(|source| UpdateError::Target {
            path: path.to_path_buf(),
            action: "write",
            source,
        })?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_bundle::index::Chunk;

    fn plan(zlens: &[u32], fetch: &[bool]) -> Vec<(Placed, bool)> {
        let idx = Index {
            layout: Default::default(),
            chunks: zlens
                .iter()
                .map(|&zlen| Chunk {
                    len: 65536,
                    zlen,
                    sha256: [0; 32],
                })
                .collect(),
        };
        idx.placed().zip(fetch.iter().copied()).collect()
    }

    /// Records the requests sent ahead: the ranges each asks.
    struct Announced {
        per_request: usize,
        requests: Vec<Vec<(u64, u64)>>,
    }

    impl Announced {
        fn new(per_request: usize) -> Announced {
            Announced {
                per_request,
                requests: Vec::new(),
            }
        }
    }

    impl Source for Announced {
        fn name(&self) -> String {
            "announced".into()
        }
        fn size(&self) -> u64 {
            u64::MAX
        }
        fn read_range(
            &mut self,
            _: u64,
            _: u64,
        ) -> Result<Vec<u8>, super::super::source::SourceError> {
            Ok(Vec::new())
        }
        fn fetched(&self) -> u64 {
            0
        }
        fn ranges_per_request(&mut self) -> usize {
            self.per_request
        }
        fn prefetch_all(&mut self, ranges: &[(u64, u64)]) {
            self.requests.push(ranges.to_vec());
        }
    }

    fn job(start: u64, end: u64) -> Job {
        Job {
            range: Range { start, end },
            chunks: Vec::new(),
        }
    }

    /// `n` ranges of 3000 bytes, 10 KB apart.
    fn small_jobs(n: u64) -> std::collections::VecDeque<Job> {
        (0..n)
            .map(|i| job(i * 10_000, i * 10_000 + 3_000))
            .collect()
    }

    #[test]
    fn small_ranges_are_requested_ahead_within_the_bounds() {
        let mut src = Announced::new(1);
        let mut queue = small_jobs(20);
        let mut announced = 0;
        announce(&mut src, 100, &queue, &mut announced);
        // 16 requests at most (3 KB each: well within the byte bound); offsets in the bundle.
        assert_eq!(announced, AHEAD_REQUESTS);
        assert_eq!(src.requests[0], [(100, 3_000)]);
        // The first is taken: one more is announced, none twice.
        queue.pop_front();
        announced -= 1;
        announce(&mut src, 100, &queue, &mut announced);
        assert_eq!(src.requests.len(), AHEAD_REQUESTS + 1);
        assert_eq!(src.requests[AHEAD_REQUESTS], [(100 + 160_000, 3_000)]);
        // A range larger than the byte bound is never requested ahead, nor what follows it.
        let queue: std::collections::VecDeque<Job> = [
            job(0, 1_000),
            job(1_000, 1_000 + AHEAD_BYTES),
            job(200_000, 201_000),
        ]
        .into();
        let (mut src, mut announced) = (Announced::new(1), 0);
        announce(&mut src, 0, &queue, &mut announced);
        assert_eq!((announced, src.requests), (1, vec![vec![(0, 1_000)]]));
    }

    #[test]
    fn ranges_ahead_go_in_few_requests_when_the_source_can() {
        let mut src = Announced::new(16);
        let mut queue = small_jobs(60);
        let mut announced = 0;
        announce(&mut src, 0, &queue, &mut announced);
        // The byte bound: 21 ranges of 3000 bytes, in requests of 16 at most.
        let fit = (AHEAD_BYTES / 3_000) as usize;
        assert_eq!(announced, fit);
        assert_eq!(
            src.requests.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![16, fit - 16]
        );
        // Taking ranges one by one sends nothing until half the bytes ahead are free, then one
        // request for them.
        let half = (AHEAD_BYTES / 2 / 3_000) as usize;
        for taken in 1..=fit - half {
            queue.pop_front();
            announced -= 1;
            announce(&mut src, 0, &queue, &mut announced);
            let sent = if taken < fit - half { 2 } else { 3 };
            assert_eq!(src.requests.len(), sent, "after {taken} taken");
        }
        assert_eq!(src.requests[2].len(), fit - half);
        assert_eq!(src.requests[2][0], (fit as u64 * 10_000, 3_000));
        assert_eq!(announced, fit);
    }

    #[test]
    fn neighbours_merge_and_far_chunks_do_not() {
        // 3 KB gap merges, 100 KB gap does not.
        let p = plan(
            &[20_000, 3_000, 20_000, 100_000, 20_000, 50_000],
            &[true, false, true, false, true, false],
        );
        let r = ranges(&p, RangeCost::ALONE);
        assert_eq!(
            r,
            vec![
                Range {
                    start: 0,
                    end: 43_000
                },
                Range {
                    start: 143_000,
                    end: 163_000
                }
            ]
        );
    }

    #[test]
    fn nearly_everything_means_the_whole_entry() {
        let p = plan(
            &[40_000, 1_000, 40_000, 100_000],
            &[true, false, true, true],
        );
        assert_eq!(
            ranges(&p, RangeCost::ALONE),
            vec![Range {
                start: 0,
                end: 181_000
            }]
        );
    }

    #[test]
    fn the_whole_entry_only_when_it_costs_no_more() {
        // 90% of the entry is needed, in two ranges: fetching all would cost 10% more.
        let p = plan(&[45_000, 100_000, 855_000], &[true, false, true]);
        assert_eq!(
            ranges(&p, RangeCost::ALONE),
            vec![
                Range {
                    start: 0,
                    end: 45_000
                },
                Range {
                    start: 145_000,
                    end: 1_000_000
                }
            ]
        );
    }

    /// A slot image: pseudo-random blocks and a run of zeros, as a file.
    fn slot_image() -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut image: Vec<u8> = (0..6 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        image[2 << 20..3 << 20].fill(0);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &image).unwrap();
        (file, image)
    }

    #[test]
    fn scan_finds_every_chunk_where_the_builder_cut_it() {
        let (file, image) = slot_image();
        let layout = Layout::default();
        let mut want: HashMap<[u8; 32], u64> = HashMap::new();
        let mut at = 0u64;
        index::split(
            &mut &image[..],
            layout,
            |e| e,
            |c| {
                want.entry(layout.digest(c)).or_insert(at);
                at += c.len() as u64;
                Ok::<(), std::io::Error>(())
            },
        )
        .unwrap();
        let scanned = scan(
            file.as_file(),
            image.len() as u64,
            layout,
            &AtomicBool::new(false),
        );
        assert!(want.len() > 50, "{} chunks", want.len());
        assert_eq!(scanned.at, want);
        // Asked to stop before it starts: nothing found, nothing wrong.
        let stopped = scan(
            file.as_file(),
            image.len() as u64,
            layout,
            &AtomicBool::new(true),
        );
        assert!(stopped.at.is_empty());
    }

    #[test]
    fn an_early_scan_gives_the_scan_or_stops_when_dropped() {
        let (file, image) = slot_image();
        let layout = Layout::default();
        let whole = scan(
            file.as_file(),
            image.len() as u64,
            layout,
            &AtomicBool::new(false),
        );
        let early = EarlyScan::start(file.as_file(), image.len() as u64, layout).unwrap();
        assert_eq!(early.finish().unwrap().at, whole.at);
        // Dropped unfinished (a refused bundle): the thread is stopped and joined.
        let early = EarlyScan::start(file.as_file(), image.len() as u64, layout).unwrap();
        drop(early);
    }
}
