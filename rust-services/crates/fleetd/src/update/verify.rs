//! Checking a chunk's bytes against the signed index, and the read-back of the written image.
//!
//! All-zero chunks (the unused blocks of a root image: a third of bench-ota's 512 MiB device
//! root) are told by their bytes, not hashed: bytes that are all zero match a chunk exactly
//! when its digest is the digest of zeros of its length, computed once per length. Bytes
//! that are all zero but name another digest cannot match (they hash to the zero digest),
//! so a blank target slot is checked without hashing at all.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fleet_bundle::index::{BLOCK, Chunk, Index, Layout, MAX_BLOCKS, Placed, is_zeros};
use sha2::{Digest, Sha256};

use super::UpdateError;

/// The index's chunks checked against bytes, zero chunks without hashing.
pub struct Checker {
    layout: Layout,
    /// The digest of zeros, per chunk length present in the index.
    zero: HashMap<u32, [u8; 32]>,
}

impl Checker {
    pub fn new(index: &Index) -> Checker {
        Checker::with_zero_lens(index.layout, index.chunks.iter().map(|c| c.len).collect())
    }

    /// Without an index (a slot cut before the bundle's index is read): zeros told at every
    /// length of whole blocks a chunk can have.
    pub fn for_layout(layout: Layout) -> Checker {
        let lens = (1..=MAX_BLOCKS).map(|k| (k * BLOCK) as u32).collect();
        Checker::with_zero_lens(layout, lens)
    }

    fn with_zero_lens(layout: Layout, mut lens: Vec<u32>) -> Checker {
        lens.sort_unstable();
        lens.dedup();
        // One pass over zeros as long as the longest chunk, the digest taken at each length.
        let mut zero = HashMap::with_capacity(lens.len());
        let (mut hasher, mut hashed) = (Sha256::new(), 0u32);
        let zeros = [0u8; 4096];
        for len in lens {
            while hashed < len {
                let n = (len - hashed).min(zeros.len() as u32);
                hasher.update(&zeros[..n as usize]);
                hashed += n;
            }
            let mut digest: [u8; 32] = hasher.clone().finalize().into();
            digest[layout.hash_len()..].fill(0);
            zero.insert(len, digest);
        }
        Checker { layout, zero }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether `chunk` is all zeros.
    pub fn is_zero_chunk(&self, chunk: &Chunk) -> bool {
        self.zero.get(&chunk.len) == Some(&chunk.sha256)
    }

    /// Whether `bytes` are `chunk`'s (the same answer as comparing their digest).
    pub fn holds(&self, chunk: &Chunk, bytes: &[u8]) -> bool {
        if bytes.len() != chunk.len as usize {
            return false;
        }
        if is_zeros(bytes) {
            return self.is_zero_chunk(chunk);
        }
        !self.is_zero_chunk(chunk) && self.layout.digest(bytes) == chunk.sha256
    }

    /// The digest of `bytes` in the index's layout (zeros without hashing).
    pub fn digest(&self, bytes: &[u8]) -> [u8; 32] {
        match self.zero.get(&(bytes.len() as u32)) {
            Some(zero) if is_zeros(bytes) => *zero,
            _ => self.layout.digest(bytes),
        }
    }
}

/// Largest run of neighbouring final chunks read back at once: one large read instead of one
/// per chunk (4 KiB directory blocks are chunks of their own, and dropping a chunk's pages
/// just before reading it also dropped the kernel's read-ahead of the next).
const READ_BACK_RUN: u64 = 8 << 20;

/// Reads every chunk back from `target` once it is final (synced), in runs of neighbours,
/// each run's pages dropped from the cache first, and checks it against the signed index.
/// Not in image order: a chunk is checked as soon as it is final, so the check keeps up with
/// the copies while the download still fills the gaps (a whole-image hash would wait for the
/// download's last chunk before hashing everything after it). The next run is asked of the
/// media (its pages dropped, then read ahead by the kernel) before the current one is
/// checked, so the reads and the hashing overlap.
pub fn read_back(
    target: &File,
    path: &Path,
    placed: &[Placed],
    checker: &Checker,
    finals: &[AtomicBool],
    stop: &AtomicBool,
) -> Result<(), UpdateError> {
    let mut checked = vec![false; placed.len()];
    // Chunks before this one are all checked.
    let mut first = 0usize;
    let mut buf = Vec::new();
    // A run asked ahead: its pages dropped and being read.
    let mut ahead: Option<(usize, usize)> = None;
    while first < placed.len() {
        let mut progress = false;
        let mut from = first;
        while let Some((i, end)) = ahead.take().or_else(|| {
            next_run(placed, &checked, finals, from).inspect(|&r| ask(target, placed, r))
        }) {
            let (start, len) = span(placed, (i, end));
            buf.resize(len as usize, 0);
            target
                .read_exact_at(&mut buf, start)
                .map_err(|source| UpdateError::Target {
                    path: path.to_path_buf(),
                    action: "read back",
                    source,
                })?;
            ahead = next_run(placed, &checked, finals, end);
            if let Some(next) = ahead {
                ask(target, placed, next);
            }
            for (k, p) in placed[i..end].iter().enumerate() {
                let at = (p.offset - start) as usize;
                if !checker.holds(&p.chunk, &buf[at..at + p.chunk.len as usize]) {
                    return Err(UpdateError::Chunk {
                        offset: p.offset,
                        reason: format!(
                            "read back from {}, its bytes differ from the signed index: the storage did not keep what was written",
                            path.display()
                        ),
                    });
                }
                checked[i + k] = true;
            }
            progress = true;
            from = end;
        }
        while first < placed.len() && checked[first] {
            first += 1;
        }
        if !progress && first < placed.len() {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// The first final, unchecked chunk at or after `from` and the final, unchecked ones right
/// after it (within [`READ_BACK_RUN`]): the chunks `[i, end)`.
fn next_run(
    placed: &[Placed],
    checked: &[bool],
    finals: &[AtomicBool],
    from: usize,
) -> Option<(usize, usize)> {
    let usable = |k: usize| !checked[k] && finals[k].load(Ordering::Acquire);
    let i = (from..placed.len()).find(|&k| usable(k))?;
    let start = placed[i].offset;
    let mut end = i + 1;
    while end < placed.len()
        && usable(end)
        && placed[end].offset + u64::from(placed[end].chunk.len) - start <= READ_BACK_RUN
    {
        end += 1;
    }
    Some((i, end))
}

/// Drops the run's pages from the cache (they were synced: clean) and asks the kernel to read
/// them again from the media, without waiting.
fn ask(target: &File, placed: &[Placed], run: (usize, usize)) {
    let (start, len) = span(placed, run);
    for advice in [
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
    ] {
        // Advice only: without it the run is still read (from the cache, or the media).
        let _ = nix::fcntl::posix_fadvise(target.as_fd(), start as i64, len as i64, advice);
    }
}

/// Where the chunks `[i, end)` lie in the image: their first byte and their length.
fn span(placed: &[Placed], (i, end): (usize, usize)) -> (u64, u64) {
    let start = placed[i].offset;
    let last = &placed[end - 1];
    (start, last.offset + u64::from(last.chunk.len) - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(image: &[u8], lens: &[usize]) -> Index {
        let mut at = 0;
        let chunks = lens
            .iter()
            .map(|&len| {
                let c = Chunk {
                    len: len as u32,
                    zlen: 1,
                    sha256: Layout::V2.digest(&image[at..at + len]),
                };
                at += len;
                c
            })
            .collect();
        Index {
            layout: Layout::V2,
            chunks,
        }
    }

    #[test]
    fn without_an_index_zeros_of_any_length_get_the_layouts_digest() {
        let checker = Checker::for_layout(Layout::V2);
        for len in [4096, 3 * 4096, 64 * 4096, 100] {
            let zeros = vec![0u8; len];
            assert_eq!(checker.digest(&zeros), Layout::V2.digest(&zeros), "{len}");
        }
        let mut data = vec![0u8; 8192];
        data[8000] = 1;
        assert_eq!(checker.digest(&data), Layout::V2.digest(&data));
    }

    #[test]
    fn zero_chunks_are_told_without_hashing_and_agree_with_the_digest() {
        let mut image = vec![0u8; 3 * 4096 + 8192 + 100];
        image[3 * 4096 + 5] = 7;
        let index = index_of(&image, &[4096, 8192, 4096, 4096, 100]);
        let checker = Checker::new(&index);
        let zero: Vec<bool> = index
            .chunks
            .iter()
            .map(|c| checker.is_zero_chunk(c))
            .collect();
        assert_eq!(zero, [true, true, false, true, true]);
        for p in index.placed() {
            let bytes = &image[p.offset as usize..][..p.chunk.len as usize];
            assert!(checker.holds(&p.chunk, bytes));
            assert_eq!(checker.digest(bytes), p.chunk.sha256);
        }
        // Zeros where data belongs, data where zeros belong, a short read: no match.
        let data = index.chunks[2];
        assert!(!checker.holds(&data, &[0u8; 4096]));
        let mut not_zero = vec![0u8; 4096];
        not_zero[4095] = 1;
        assert!(!checker.holds(&index.chunks[0], &not_zero));
        assert!(!checker.holds(&index.chunks[0], &[0u8; 4095]));
    }

    #[test]
    fn the_read_back_names_the_chunk_the_storage_did_not_keep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot");
        let image: Vec<u8> = (0..5 * 4096u32).map(|i| (i % 251) as u8).collect();
        let index = index_of(&image, &[4096, 8192, 4096, 4096]);
        let placed: Vec<Placed> = index.placed().collect();
        let checker = Checker::new(&index);
        let finals: Vec<AtomicBool> = placed.iter().map(|_| AtomicBool::new(true)).collect();
        let stop = AtomicBool::new(false);
        std::fs::write(&path, &image).unwrap();
        let file = File::open(&path).unwrap();
        read_back(&file, &path, &placed, &checker, &finals, &stop).unwrap();
        // One byte of the third chunk lost.
        let mut kept = image.clone();
        kept[3 * 4096 + 10] ^= 1;
        std::fs::write(&path, &kept).unwrap();
        let file = File::open(&path).unwrap();
        let err = read_back(&file, &path, &placed, &checker, &finals, &stop).unwrap_err();
        assert!(
            matches!(err, UpdateError::Chunk { offset, .. } if offset == 3 * 4096),
            "{err}"
        );
        // Chunks not final yet are waited for, and checked out of order once they are.
        std::fs::write(&path, &image).unwrap();
        let file = File::open(&path).unwrap();
        finals[0].store(false, Ordering::Release);
        std::thread::scope(|s| {
            let waiting = s.spawn(|| read_back(&file, &path, &placed, &checker, &finals, &stop));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiting.is_finished());
            finals[0].store(true, Ordering::Release);
            waiting.join().unwrap().unwrap();
        });
    }
}
