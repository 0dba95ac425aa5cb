//! The chunked install: only what the device lacks is fetched. Each chunk of the signed index
//! ([`fleet_bundle::index`]) is found, in this order, in the target slot at its own offset
//! (an earlier, interrupted attempt already wrote it: this is what makes a rerun resume), in
//! the running slot (chunked the same way, so moved content is found), or fetched: missing
//! chunks are grouped into ranges of the bundle's compressed entry, neighbours merged when
//! the gap is cheaper than another request. Every chunk is checked against its sha256 before
//! it is written, local copies included; when the ranges (with their requests) would cost at
//! least as much as the whole entry, the whole entry is fetched in large ranges instead.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fleet_bundle::ImageInfo;
use fleet_bundle::index::{self, Index, Placed};
use sha2::{Digest, Sha256};

use super::UpdateError;
use super::source::Source;

/// Fetching the skipped chunks between two needed ones costs less than a new request up to
/// this gap (a request and its response headers, plus a round trip on a slow link). Small:
/// index layout FLEETIX2 has 4 KiB chunks (ext4 directory blocks, ~1 KiB compressed) a few
/// KiB apart, and a 32 KiB gap fetched 2.7x the needed bytes on bench-ota's pair (a).
const MERGE_GAP: u64 = 4 * 1024;
/// Largest range fetched at once (memory bound, and what a dropped link costs again).
const MAX_RANGE: u64 = 4 << 20;
/// What one more request costs beside its body (request and response headers): the whole
/// entry is fetched instead of the ranges only when the ranges would cost at least as much
/// with this per request, so the fallback never downloads more than the partial install.
const REQUEST_COST: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// Already right in the target slot.
    Target,
    /// At this offset of the running slot.
    Active(u64),
    Fetch,
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
pub fn ranges(chunks: &[(Placed, bool)]) -> Vec<Range> {
    let needed = group(chunks.iter().filter(|(_, f)| *f).map(|(p, _)| p), MERGE_GAP);
    let cost = |rs: &[Range]| -> u64 {
        rs.iter()
            .map(|r| r.end - r.start + REQUEST_COST)
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

/// Where each needed chunk of the running slot is: its image chunked the same way. A read
/// error ends the scan early: what was found stays usable, the rest is fetched.
fn scan_active(
    active: &File,
    size: u64,
    layout: index::Layout,
    wanted: &HashSet<[u8; 32]>,
) -> HashMap<[u8; 32], u64> {
    let mut found = HashMap::new();
    let mut start = 0u64;
    let mut file = active;
    if file.seek(SeekFrom::Start(0)).is_err() {
        return found;
    }
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file.take(size));
    let _ = index::split(
        &mut reader,
        layout,
        |_| (),
        |chunk| {
            let sha = layout.digest(chunk);
            if wanted.contains(&sha) {
                found.entry(sha).or_insert(start);
            }
            start += chunk.len() as u64;
            Ok(())
        },
    );
    found
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

/// Writes the image into `target` and verifies it (read back with the page cache dropped,
/// against the manifest's sha256); returns the bytes written. `data` is the offset of the
/// compressed entry in the bundle; `active` the running slot and its image size.
///
/// The local work runs beside the transfer, so the install takes about as long as the
/// download: the target slot is checked while the running slot is scanned, and the
/// read-back follows the writes chunk by chunk in a second thread while ranges arrive.
#[allow(clippy::too_many_arguments)]
pub fn write(
    src: &mut dyn Source,
    index: &Index,
    data: u64,
    target: &File,
    target_path: &Path,
    active: Option<(&File, &Path, u64)>,
    dictionary: Option<&[u8]>,
    image: &ImageInfo,
) -> Result<u64, UpdateError> {
    let mut frames = index::FrameDecoder::new(dictionary).map_err(|e| chunk_err(0, e))?;
    let placed: Vec<Placed> = index.placed().collect();
    let every: HashSet<[u8; 32]> = placed.iter().map(|p| p.chunk.sha256).collect();
    let (mut from, found) = std::thread::scope(|s| {
        let every = &every;
        let layout = index.layout;
        let scan =
            active.map(|(file, _, size)| s.spawn(move || scan_active(file, size, layout, every)));
        let from: Vec<From> = placed
            .iter()
            .map(|p| match read_at(target, p.offset, p.chunk.len) {
                Some(bytes) if index.digest(&bytes) == p.chunk.sha256 => From::Target,
                _ => From::Fetch,
            })
            .collect();
        let found = scan.and_then(|h| h.join().ok()).unwrap_or_default();
        (from, found)
    });
    if let Some((_, path, _)) = active {
        let missing: HashSet<&[u8; 32]> = placed
            .iter()
            .zip(&from)
            .filter(|(_, f)| **f == From::Fetch)
            .map(|(p, _)| &p.chunk.sha256)
            .collect();
        log::info!(
            "running slot {}: {} of {} missing chunks found",
            path.display(),
            missing.iter().filter(|h| found.contains_key(**h)).count(),
            missing.len()
        );
    }
    for (p, f) in placed.iter().zip(from.iter_mut()) {
        if *f == From::Fetch
            && let Some(&at) = found.get(&p.chunk.sha256)
        {
            *f = From::Active(at);
        }
    }
    let plan: Vec<(Placed, bool)> = placed
        .iter()
        .zip(&from)
        .map(|(p, f)| (*p, *f == From::Fetch))
        .collect();
    let total = index.compressed_len();
    let ranges = ranges(&plan);
    let to_fetch: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    let counts = |want: fn(&From) -> bool| from.iter().filter(|f| want(f)).count();
    log::info!(
        "{} chunks: {} already in the target slot, {} from the running slot, {} to fetch in {} ranges ({to_fetch} of {total} compressed bytes)",
        placed.len(),
        counts(|f| *f == From::Target),
        counts(|f| matches!(f, From::Active(_))),
        counts(|f| *f == From::Fetch),
        ranges.len()
    );

    // Local copies first (synced once: the read-back must see the device, not the cache),
    // then the ranges in order, each fetched chunk written and synced as soon as its frame
    // has arrived: a broken transfer or a power cut costs at most the chunk in flight.
    let mut written = 0u64;
    for (p, f) in placed.iter().zip(&from) {
        let From::Active(at) = f else { continue };
        let (file, path, _) = active.ok_or_else(|| chunk_err(p.offset, "no running slot"))?;
        let bytes = read_at(file, *at, p.chunk.len).ok_or_else(|| {
            chunk_err(
                p.offset,
                format!("cannot read it back from {}", path.display()),
            )
        })?;
        // Re-hashed: the running slot is read again, not trusted from the scan.
        if index.digest(&bytes) != p.chunk.sha256 {
            return Err(chunk_err(p.offset, "the running slot's copy changed"));
        }
        written += write_chunk(target, target_path, p, &bytes)?;
    }
    sync(target, target_path)?;
    let fetched_done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let r = read_back(target, target_path, &plan, &fetched_done, &stop, image);
            if r.is_err() {
                // A read-back that failed makes the rest of the download pointless.
                stop.store(true, Ordering::Release);
            }
            r
        });
        let fetched = fetch(
            src,
            index.layout,
            &plan,
            &ranges,
            data,
            &mut frames,
            target,
            target_path,
            to_fetch,
            &fetched_done,
            &stop,
        );
        if fetched.is_err() {
            stop.store(true, Ordering::Release);
        }
        let checked = checker
            .join()
            .unwrap_or_else(|_| Err(chunk_err(0, "the read-back thread panicked")));
        // A failed read-back stopped the transfer: its error is the one to report; a
        // failed transfer stops the read-back, which then reports nothing.
        checked?;
        Ok(written + fetched?)
    })
}

fn sync(target: &File, path: &Path) -> Result<(), UpdateError> {
    target.sync_data().map_err(|source| UpdateError::Target {
        path: path.to_path_buf(),
        action: "fsync",
        source,
    })
}

/// Fetches the ranges and writes their needed chunks; counts each written and synced one in
/// `done`. Stops early when `stop` is set (the read-back failed).
#[allow(clippy::too_many_arguments)]
fn fetch(
    src: &mut dyn Source,
    layout: index::Layout,
    plan: &[(Placed, bool)],
    ranges: &[Range],
    data: u64,
    frames: &mut index::FrameDecoder,
    target: &File,
    target_path: &Path,
    to_fetch: u64,
    done: &AtomicUsize,
    stop: &AtomicBool,
) -> Result<u64, UpdateError> {
    let name = src.name();
    let mut progress = Progress::new(to_fetch);
    let mut written = 0u64;
    // Bytes of the ranges already read through, and in all.
    let (mut ranges_done, mut fetched) = (0u64, 0u64);
    let mut chunks = plan
        .iter()
        .filter(|(_, fetch)| *fetch)
        .map(|(p, _)| p)
        .peekable();
    for r in ranges {
        let mut reader = src.stream(data + r.start, r.end - r.start)?;
        let mut pos = r.start;
        while let Some(p) = chunks.next_if(|p| p.zoffset + u64::from(p.chunk.zlen) <= r.end) {
            if stop.load(Ordering::Acquire) {
                return Err(chunk_err(p.offset, "stopped: the read-back failed"));
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
            let mut frame = vec![0u8; p.chunk.zlen as usize];
            reader.read_exact(&mut frame).map_err(broken)?;
            pos = p.zoffset + u64::from(p.chunk.zlen);
            fetched = ranges_done + (pos - r.start);
            progress.update(fetched, false);
            let out = frames
                .decompress(&frame, p.chunk.len)
                .map_err(|e| chunk_err(p.offset, e))?;
            if layout.digest(&out) != p.chunk.sha256 {
                return Err(chunk_err(
                    p.offset,
                    "its sha256 differs from the signed index (tampered or corrupt)",
                ));
            }
            written += write_chunk(target, target_path, p, &out)?;
            // Durable before the next one is read: after a power cut, the rerun finds every
            // fetched chunk but the one in flight in the target slot and does not fetch it
            // again.
            sync(target, target_path)?;
            done.fetch_add(1, Ordering::Release);
        }
        ranges_done += r.end - r.start;
    }
    if let Some(p) = chunks.next() {
        return Err(chunk_err(p.offset, "not in any planned range"));
    }
    progress.update(fetched, true);
    Ok(written)
}

/// Reads the image back from `target` in order, each chunk once it is final (a fetched one
/// when `done` has counted it), with its pages dropped from the cache first, and checks the
/// whole against the manifest's sha256.
fn read_back(
    target: &File,
    path: &Path,
    plan: &[(Placed, bool)],
    done: &AtomicUsize,
    stop: &AtomicBool,
    image: &ImageInfo,
) -> Result<(), UpdateError> {
    let mut hasher = Sha256::new();
    let mut buf = Vec::new();
    let mut ordinal = 0usize;
    let mut size = 0u64;
    for (p, fetched) in plan {
        if *fetched {
            while done.load(Ordering::Acquire) <= ordinal {
                if stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            ordinal += 1;
        }
        let _ = nix::fcntl::posix_fadvise(
            target.as_fd(),
            p.offset as i64,
            i64::from(p.chunk.len),
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        buf.resize(p.chunk.len as usize, 0);
        target
            .read_exact_at(&mut buf, p.offset)
            .map_err(|source| UpdateError::Target {
                path: path.to_path_buf(),
                action: "read back",
                source,
            })?;
        hasher.update(&buf);
        size += u64::from(p.chunk.len);
    }
    let got = fleet_bundle::hex(&hasher.finalize());
    if size != image.size || got != image.sha256 {
        return Err(UpdateError::VerifyFailed {
            path: path.to_path_buf(),
            got,
        });
    }
    Ok(())
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

    #[test]
    fn neighbours_merge_and_far_chunks_do_not() {
        // 3 KB gap merges, 100 KB gap does not.
        let p = plan(
            &[20_000, 3_000, 20_000, 100_000, 20_000, 50_000],
            &[true, false, true, false, true, false],
        );
        let r = ranges(&p);
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
            ranges(&p),
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
            ranges(&p),
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
}
