//! The chunk index of a bundle's root image, for updates that download only what the device
//! lacks (`fleetd update install URL`).
//!
//! Chunking is content-defined over whole 4 KiB blocks: a block ends a chunk when a fast hash
//! of its bytes has its low mask bits zero (at least [`MIN_BLOCKS`], at most [`MAX_BLOCKS`]
//! blocks per chunk). ext4 places file data in 4 KiB blocks, so content moved by a rebuild
//! moves by whole blocks: cutting only at block edges loses nothing against byte-granular CDC
//! (casync, FastCDC), and a boundary depends on one block only, so chunk edges realign right
//! after an insertion. Each chunk is its own zstd frame in `rootfs.ext4.zst` (frames
//! concatenated are one valid zstd stream, so the same file serves a full streamed install),
//! addressable by the cumulative compressed lengths in the index. In format 2 and later every
//! frame is compressed with the bundle's dictionary (`rootfs.dict`).
//!
//! Two layouts, told apart by the index's magic ([`Layout`]). `FLEETIX2` (format 3) also
//! makes every ext4 directory block and extent-tree block a chunk of its own: `mkfs.ext4 -d`
//! writes a directory's block between file data, and a package added early in the tree walk
//! renumbers the inodes after it, so every later directory block changes; as a chunk of its
//! own such a block costs its 4 KiB, not the ~80 KiB chunk around it. A block is a directory
//! block when its bytes are a chain of directory entries ending exactly at the block's end
//! (with or without `metadata_csum`, whose tail is such an entry), an extent block when it
//! starts with the extent header magic and sane counts: both depend on that block alone, so
//! the running slot is cut the same way.
//!
//! Index format (`rootfs.index`, signed through its sha256 in the manifest): magic, u32 LE
//! block size, u32 LE chunk count, then per chunk u32 LE uncompressed length, u32 LE
//! compressed length and the chunk's sha256: whole (32 bytes) in `FLEETIX1`, its first 16
//! bytes in `FLEETIX2` (the index is downloaded: 24 bytes a chunk instead of 40; 128 bits
//! stay far beyond any accidental match, and the image as a whole is still checked against
//! its full sha256 in the signed manifest).

use std::io::{self, Read};

use sha2::{Digest, Sha256};

mod digested;
pub use digested::split_digested;

pub const BLOCK: usize = 4096;
pub const MIN_BLOCKS: usize = 4;
pub const MAX_BLOCKS: usize = 64;

/// How an index cuts the image and names its chunks; fixed by the index's magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `FLEETIX1` (bundle formats 1 and 2): content cuts only, a block ends a chunk with
    /// probability 1/16 (about 80 KiB on average); whole sha256.
    V1,
    /// `FLEETIX2` (format 3): ext4 directory and extent blocks alone, content cuts with
    /// probability 1/8 otherwise (about 48 KiB); sha256 truncated to 16 bytes.
    #[default]
    V2,
}

impl Layout {
    /// The layout of a bundle format's index.
    pub fn of_format(format: u32) -> Layout {
        if format >= 3 { Layout::V2 } else { Layout::V1 }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::V1 => "FLEETIX1",
            Layout::V2 => "FLEETIX2",
        }
    }

    fn magic(self) -> &'static [u8; 8] {
        match self {
            Layout::V1 => b"FLEETIX1",
            Layout::V2 => b"FLEETIX2",
        }
    }

    /// Bytes of a chunk's sha256 the index keeps.
    pub fn hash_len(self) -> usize {
        match self {
            Layout::V1 => 32,
            Layout::V2 => 16,
        }
    }

    /// A block ends a chunk when this many low bits of its cut hash are zero.
    fn mask_bits(self) -> u32 {
        match self {
            Layout::V1 => 4,
            Layout::V2 => 3,
        }
    }

    /// The chunk's name in this layout: its sha256, past [`Layout::hash_len`] bytes zeroed.
    pub fn digest(self, data: &[u8]) -> [u8; 32] {
        let mut h = sha256(data);
        h[self.hash_len()..].fill(0);
        h
    }

    /// A block that is a chunk of its own.
    fn alone(self, block: &[u8]) -> bool {
        self == Layout::V2
            && block.len() == BLOCK
            && (is_dir_block(block) || is_extent_block(block))
    }
}

/// One chunk of the root image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub len: u32,
    pub zlen: u32,
    /// [`Layout::digest`] of the chunk's bytes (in `V2`, its last 16 bytes are zero).
    pub sha256: [u8; 32],
}

/// The chunks in image order, with their offsets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
    pub layout: Layout,
    pub chunks: Vec<Chunk>,
}

/// A chunk with its place in the image and in the compressed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub chunk: Chunk,
    pub offset: u64,
    pub zoffset: u64,
}

impl Index {
    pub fn encode(&self) -> Vec<u8> {
        let hash_len = self.layout.hash_len();
        let mut out = Vec::with_capacity(16 + (8 + hash_len) * self.chunks.len());
        out.extend_from_slice(self.layout.magic());
        out.extend_from_slice(&(BLOCK as u32).to_le_bytes());
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for c in &self.chunks {
            out.extend_from_slice(&c.len.to_le_bytes());
            out.extend_from_slice(&c.zlen.to_le_bytes());
            out.extend_from_slice(&c.sha256[..hash_len]);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Index, String> {
        let layout = [Layout::V1, Layout::V2]
            .into_iter()
            .find(|l| bytes.len() >= 16 && &bytes[..8] == l.magic())
            .ok_or("not a fleet chunk index (magic FLEETIX1 or FLEETIX2 missing)")?;
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if u32_at(8) as usize != BLOCK {
            return Err(format!(
                "block size {} (this fleetd chunks by {BLOCK})",
                u32_at(8)
            ));
        }
        let count = u32_at(12) as usize;
        let entry = 8 + layout.hash_len();
        if bytes.len() as u64 != 16 + count as u64 * entry as u64 {
            return Err(format!(
                "{} bytes for {count} chunks (want {})",
                bytes.len(),
                16 + count as u64 * entry as u64
            ));
        }
        let chunks = bytes[16..]
            .chunks_exact(entry)
            .map(|e| {
                let mut sha256 = [0u8; 32];
                sha256[..entry - 8].copy_from_slice(&e[8..]);
                Chunk {
                    len: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
                    zlen: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                    sha256,
                }
            })
            .collect();
        Ok(Index { layout, chunks })
    }

    /// [`Layout::digest`] in this index's layout: what a chunk's `sha256` is compared with.
    pub fn digest(&self, data: &[u8]) -> [u8; 32] {
        self.layout.digest(data)
    }

    /// Chunks with their offsets in the image and in the compressed entry.
    pub fn placed(&self) -> impl Iterator<Item = Placed> + '_ {
        let (mut offset, mut zoffset) = (0u64, 0u64);
        self.chunks.iter().map(move |&chunk| {
            let p = Placed {
                chunk,
                offset,
                zoffset,
            };
            offset += u64::from(chunk.len);
            zoffset += u64::from(chunk.zlen);
            p
        })
    }

    pub fn image_len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.len)).sum()
    }

    pub fn compressed_len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.zlen)).sum()
    }
}

/// A zero block's cut hash (the unused space of a root image, a third of bench-ota's 512 MiB
/// one), taken once.
fn zero_block_hash() -> u64 {
    static ZERO: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ZERO.get_or_init(|| block_hash(&ZERO_BLOCK))
}

const MIX_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(h: u64, word: u64) -> u64 {
    let h = (h ^ word).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 29)
}

fn word_at(bytes: &[u8], at: usize) -> u64 {
    let w = &bytes[at..at + 8];
    u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
}

/// The cut hash of one block: 64-bit multiply-xorshift over its words (the last, of a short
/// block, padded with zeros).
fn block_hash(block: &[u8]) -> u64 {
    let whole = block.len() / 8 * 8;
    let mut h = (0..whole)
        .step_by(8)
        .fold(MIX_SEED, |h, at| mix(h, word_at(block, at)));
    if whole < block.len() {
        let mut last = [0u8; 8];
        last[..block.len() - whole].copy_from_slice(&block[whole..]);
        h = mix(h, u64::from_le_bytes(last));
    }
    h
}

/// [`block_hash`] of each whole block of `blocks`, into `out`; zero blocks' told by their
/// bytes. One block's hash is a chain of dependent multiplies: four blocks' chains side by
/// side keep the core's multiplier busy.
fn block_hashes(blocks: &[u8], out: &mut Vec<u64>) {
    out.clear();
    out.resize(blocks.len() / BLOCK, zero_block_hash());
    let mut group = [0usize; 4];
    let mut filled = 0;
    for (i, block) in blocks.chunks_exact(BLOCK).enumerate() {
        if is_zeros(block) {
            continue;
        }
        group[filled] = i;
        filled += 1;
        if filled == group.len() {
            let b = group.map(|i| &blocks[i * BLOCK..(i + 1) * BLOCK]);
            let mut h = [MIX_SEED; 4];
            for at in (0..BLOCK).step_by(8) {
                for lane in 0..4 {
                    h[lane] = mix(h[lane], word_at(b[lane], at));
                }
            }
            for lane in 0..4 {
                out[group[lane]] = h[lane];
            }
            filled = 0;
        }
    }
    for &i in &group[..filled] {
        out[i] = block_hash(&blocks[i * BLOCK..(i + 1) * BLOCK]);
    }
}

/// An ext4 directory block (linear leaf or htree node): directory entries (u32 inode, u16
/// record length, u8 name length, u8 file type) whose record lengths chain, each whole and
/// 4-byte aligned, exactly to the block's end. An all-zero block has record length 0: no.
fn is_dir_block(block: &[u8]) -> bool {
    let mut at = 0;
    while at < block.len() {
        if at + 8 > block.len() {
            return false;
        }
        let rec_len = usize::from(u16::from_le_bytes([block[at + 4], block[at + 5]]));
        let (name_len, file_type) = (usize::from(block[at + 6]), block[at + 7]);
        // 0..=7: the ext4 file types; 0xde: the metadata_csum tail entry.
        if rec_len < 12
            || rec_len % 4 != 0
            || at + rec_len > block.len()
            || 8 + name_len > rec_len
            || (file_type > 7 && file_type != 0xde)
        {
            return false;
        }
        at += rec_len;
    }
    true
}

/// An ext4 extent-tree block: header magic 0xF30A, entries <= max <= what a block holds,
/// depth within ext4's limit of 5.
fn is_extent_block(block: &[u8]) -> bool {
    let u16_at = |at: usize| u16::from_le_bytes([block[at], block[at + 1]]);
    u16_at(0) == 0xF30A
        && u16_at(2) <= u16_at(4)
        && usize::from(u16_at(4)) <= (block.len() - 12) / 12
        && u16_at(6) <= 5
}

/// Where one block goes: whether the pending chunk ends before it, and whether it ends a chunk.
struct Cut {
    before: bool,
    after: bool,
}

/// Cuts a run of blocks into chunks, one block at a time.
struct Chunker {
    layout: Layout,
    blocks: usize,
}

impl Chunker {
    /// Feeds one block (the last may be short) and its [`block_hash`].
    fn push(&mut self, block: &[u8], hash: u64) -> Cut {
        if self.layout.alone(block) {
            let before = self.blocks > 0;
            self.blocks = 0;
            return Cut {
                before,
                after: true,
            };
        }
        self.blocks += 1;
        let after = self.blocks >= MAX_BLOCKS
            || (self.blocks >= MIN_BLOCKS && hash & ((1 << self.layout.mask_bits()) - 1) == 0);
        if after {
            self.blocks = 0;
        }
        Cut {
            before: false,
            after,
        }
    }
}

/// Decompresses chunk frames, with the bundle's dictionary when it has one.
pub struct FrameDecoder(zstd::bulk::Decompressor<'static>);

impl FrameDecoder {
    pub fn new(dictionary: Option<&[u8]>) -> Result<FrameDecoder, String> {
        zstd::bulk::Decompressor::with_dictionary(dictionary.unwrap_or_default())
            .map(FrameDecoder)
            .map_err(|e| format!("zstd dictionary: {e}"))
    }

    /// Decompresses one chunk's frame, which must give exactly `len` bytes.
    pub fn decompress(&mut self, frame: &[u8], len: u32) -> Result<Vec<u8>, String> {
        let out = self
            .0
            .decompress(frame, len as usize)
            .map_err(|e| e.to_string())?;
        if out.len() != len as usize {
            return Err(format!("{} bytes, the index says {len}", out.len()));
        }
        Ok(out)
    }
}

/// Bytes read and cut at once ([`Pieces`]).
const PIECE: usize = 2 << 20;

/// Whole chunks read at once: their bytes, where the first begins in the image, and each
/// chunk's start and length within `bytes` (which may hold more: its allocation is reused).
pub(crate) struct Piece {
    pub bytes: Vec<u8>,
    pub offset: u64,
    pub spans: Vec<(usize, usize)>,
}

impl Piece {
    pub fn chunks(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.spans
            .iter()
            .map(|&(start, len)| (self.offset + start as u64, &self.bytes[start..start + len]))
    }
}

/// The one chunking loop: the bundle builder and the device (looking for chunks in its
/// running slot) must cut the same content the same way. Reads [`PIECE`] bytes at a time
/// straight into the piece's buffer and cuts them there; the chunk still open at a piece's
/// end starts the next one.
pub(crate) struct Pieces<R> {
    r: R,
    chunker: Chunker,
    /// Where `carry` begins in the image.
    offset: u64,
    carry: Vec<u8>,
    /// A read error met after some bytes of the last piece: told by the next call.
    failed: Option<io::Error>,
    ended: bool,
    /// The cut hashes of the piece's blocks (reused).
    hashes: Vec<u64>,
}

impl<R: Read> Pieces<R> {
    pub fn new(r: R, layout: Layout) -> Pieces<R> {
        Pieces {
            r,
            chunker: Chunker { layout, blocks: 0 },
            offset: 0,
            carry: Vec::new(),
            failed: None,
            ended: false,
            hashes: Vec::new(),
        }
    }

    /// The next piece, in `bytes` (a spare buffer, or empty); `None` after the last. After a
    /// read error, the chunks cut before it come first, then the error.
    pub fn next(&mut self, mut bytes: Vec<u8>) -> io::Result<Option<Piece>> {
        if let Some(e) = self.failed.take() {
            self.ended = true;
            return Err(e);
        }
        if self.ended {
            return Ok(None);
        }
        let carried = self.carry.len();
        // Never shrunk, so a reused buffer is not zeroed again.
        if bytes.len() < carried + PIECE {
            bytes.resize(carried + PIECE, 0);
        }
        bytes[..carried].copy_from_slice(&self.carry);
        let mut filled = carried;
        while filled < carried + PIECE {
            match self.r.read(&mut bytes[filled..carried + PIECE]) {
                Ok(0) => {
                    self.ended = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Cut the whole blocks read before it; the open chunk is lost.
                    filled -= (filled - carried) % BLOCK;
                    self.failed = Some(e);
                    break;
                }
            }
        }
        block_hashes(&bytes[carried..filled], &mut self.hashes);
        let mut spans = Vec::new();
        let mut start = 0;
        let mut at = carried;
        while at < filled {
            let n = BLOCK.min(filled - at);
            let block = &bytes[at..at + n];
            let hash = match self.hashes.get((at - carried) / BLOCK) {
                Some(&hash) if n == BLOCK => hash,
                _ => block_hash(block),
            };
            let cut = self.chunker.push(block, hash);
            if cut.before && at > start {
                spans.push((start, at - start));
                start = at;
            }
            at += n;
            // Only the image's last block is short.
            if cut.after || n < BLOCK {
                spans.push((start, at - start));
                start = at;
            }
        }
        if self.ended && start < filled {
            spans.push((start, filled - start));
            start = filled;
        }
        self.carry.clear();
        if self.failed.is_none() {
            self.carry.extend_from_slice(&bytes[start..filled]);
        }
        let offset = self.offset;
        self.offset += start as u64;
        if spans.is_empty() && self.ended {
            return Ok(None);
        }
        Ok(Some(Piece {
            bytes,
            offset,
            spans,
        }))
    }
}

/// Cuts what `r` yields into chunks of `layout`, calling `chunk` with each in order
/// ([`Pieces`]; [`split_digested`] takes the chunks' digests on every core).
pub fn split<E>(
    r: &mut impl Read,
    layout: Layout,
    read_err: impl Fn(io::Error) -> E,
    mut chunk: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut pieces = Pieces::new(r, layout);
    let mut spare = Vec::new();
    while let Some(piece) = pieces.next(spare).map_err(&read_err)? {
        for (_, bytes) in piece.chunks() {
            chunk(bytes)?;
        }
        spare = piece.bytes;
    }
    Ok(())
}

static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

/// Whether every byte is zero: compared with a zero block (memcmp), fast even unoptimised.
pub fn is_zeros(bytes: &[u8]) -> bool {
    bytes
        .chunks(BLOCK)
        .all(|piece| piece == &ZERO_BLOCK[..piece.len()])
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_lens(data: &[u8], layout: Layout) -> Vec<usize> {
        let mut out = Vec::new();
        split(
            &mut &data[..],
            layout,
            |e| e,
            |c| {
                out.push(c.len());
                Ok::<(), io::Error>(())
            },
        )
        .unwrap();
        out
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A directory block as mkfs.ext4 writes it with metadata_csum: ".", "..", one entry
    /// taking the rest, and the 12-byte checksum tail.
    fn dir_block(inode: u32) -> Vec<u8> {
        let mut b = Vec::new();
        let mut entry = |ino: u32, rec_len: u16, name: &[u8], ty: u8| {
            b.extend_from_slice(&ino.to_le_bytes());
            b.extend_from_slice(&rec_len.to_le_bytes());
            b.push(name.len() as u8);
            b.push(ty);
            b.extend_from_slice(name);
            b.resize(b.len() + usize::from(rec_len) - 8 - name.len(), 0);
        };
        entry(inode, 12, b".", 2);
        entry(2, 12, b"..", 2);
        entry(inode + 1, (BLOCK - 24 - 12) as u16, b"curl", 1);
        entry(0, 12, b"", 0xde);
        b.truncate(BLOCK - 4);
        b.extend_from_slice(&inode.wrapping_mul(2_654_435_761).to_le_bytes());
        assert_eq!(b.len(), BLOCK);
        b
    }

    #[test]
    fn ext4_directory_and_extent_blocks_are_recognised() {
        assert!(is_dir_block(&dir_block(12)));
        // Without metadata_csum the last entry runs to the block's end.
        let mut plain = dir_block(12);
        plain[24 + 4..24 + 6].copy_from_slice(&((BLOCK - 24) as u16).to_le_bytes());
        assert!(is_dir_block(&plain));
        let mut broken = dir_block(12);
        broken[24 + 4] = 13; // record length not 4-byte aligned
        assert!(!is_dir_block(&broken));
        assert!(!is_dir_block(&[0u8; BLOCK]));
        assert!(!is_dir_block(&noise(3, BLOCK)));
        let mut extent = noise(4, BLOCK);
        extent[..8].copy_from_slice(&[0x0a, 0xf3, 3, 0, 84, 1, 0, 0]);
        assert!(is_extent_block(&extent));
        extent[4] = 85; // eh_max 341: more than a block holds
        assert!(!is_extent_block(&extent));
    }

    #[test]
    fn boundaries_realign_after_an_inserted_block() {
        for layout in [Layout::V1, Layout::V2] {
            let data = noise(7, 400 * BLOCK);
            let mut shifted = noise(9, 3 * BLOCK);
            shifted.extend_from_slice(&data);
            let a = chunk_lens(&data, layout);
            let b = chunk_lens(&shifted, layout);
            assert!(
                a.iter()
                    .all(|l| (MIN_BLOCKS * BLOCK..=MAX_BLOCKS * BLOCK).contains(l))
            );
            // Apart from the first chunk or two, the chunk sequence is the same.
            let tail = |v: &[usize]| v[v.len() - (a.len() - 2)..].to_vec();
            assert_eq!(tail(&a), tail(&b));
        }
    }

    /// The chunking rule one block at a time, as the index format describes it.
    fn cut_block_by_block(data: &[u8], layout: Layout) -> Vec<(u64, usize)> {
        let mut chunker = Chunker { layout, blocks: 0 };
        let (mut out, mut start) = (Vec::new(), 0usize);
        for (i, block) in data.chunks(BLOCK).enumerate() {
            let at = i * BLOCK;
            let cut = chunker.push(block, block_hash(block));
            if cut.before && at > start {
                out.push((start as u64, at - start));
                start = at;
            }
            if cut.after || block.len() < BLOCK {
                out.push((start as u64, at + block.len() - start));
                start = at + block.len();
            }
        }
        if start < data.len() {
            out.push((start as u64, data.len() - start));
        }
        out
    }

    /// Several pieces of noise, zeros, directory blocks, and a last block shorter than a
    /// block.
    fn mixed_image() -> Vec<u8> {
        let mut data = noise(11, PIECE + 300 * BLOCK);
        data.extend(std::iter::repeat_n(0u8, PIECE / 2 + 7 * BLOCK));
        for i in 0..40u32 {
            data.extend(dir_block(100 + i));
            data.extend(noise(u64::from(i), (i as usize % 9) * BLOCK));
        }
        data.extend(noise(13, PIECE + 1000));
        data
    }

    #[test]
    fn four_block_hashes_at_once_are_each_blocks_own() {
        let mut data = noise(3, 11 * BLOCK);
        data[5 * BLOCK..6 * BLOCK].fill(0);
        let mut hashes = Vec::new();
        block_hashes(&data, &mut hashes);
        let one_by_one: Vec<u64> = data.chunks(BLOCK).map(block_hash).collect();
        assert_eq!(hashes, one_by_one);
    }

    #[test]
    fn split_cuts_across_pieces_as_block_by_block() {
        let data = mixed_image();
        for layout in [Layout::V1, Layout::V2] {
            let mut got = Vec::new();
            let mut at = 0u64;
            split(
                &mut &data[..],
                layout,
                |e| e,
                |c| {
                    got.push((at, c.len()));
                    at += c.len() as u64;
                    Ok::<(), io::Error>(())
                },
            )
            .unwrap();
            assert_eq!(got, cut_block_by_block(&data, layout), "{layout:?}");
            assert_eq!(at, data.len() as u64);
        }
        // Reads that return a few bytes at a time cut the same.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut lens = Vec::new();
        split(
            &mut Trickle(&data),
            Layout::V2,
            |e| e,
            |c| {
                lens.push(c.len());
                Ok::<(), io::Error>(())
            },
        )
        .unwrap();
        let want: Vec<usize> = cut_block_by_block(&data, Layout::V2)
            .iter()
            .map(|c| c.1)
            .collect();
        assert_eq!(lens, want);
    }

    #[test]
    fn split_digested_gives_what_split_gives_in_order() {
        let data = mixed_image();
        let layout = Layout::V2;
        let want: Vec<_> = cut_block_by_block(&data, layout)
            .into_iter()
            .map(|(at, len)| {
                (
                    at,
                    len,
                    layout.digest(&data[at as usize..at as usize + len]),
                )
            })
            .collect();
        let mut got = Vec::new();
        split_digested(
            &mut &data[..],
            layout,
            |e| e,
            |c| layout.digest(c),
            |at, c, digest| {
                got.push((at, c.len(), digest));
                Ok(())
            },
        )
        .unwrap();
        assert!(want.len() > 100, "{} chunks", want.len());
        assert_eq!(got, want);
    }

    #[test]
    fn split_digested_hands_over_what_was_cut_before_a_read_error_or_a_stop() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("bad sector"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data = noise(5, 5 * PIECE / 2);
        let mut got = 0usize;
        let r = split_digested(
            &mut Failing(&data),
            Layout::V2,
            |e| e.to_string(),
            sha256,
            |at, c, _| {
                assert_eq!(at, got as u64);
                got += c.len();
                Ok(())
            },
        );
        assert_eq!(r, Err("bad sector".to_string()));
        // All but the chunk being cut when the read failed.
        assert!(got > data.len() - MAX_BLOCKS * BLOCK, "{got}");
        // Stopped by on_chunk after 1 MiB: nothing after.
        let mut accepted = 0usize;
        let r = split_digested(
            &mut &data[..],
            Layout::V2,
            |e| e.to_string(),
            sha256,
            |_, c, _| {
                if accepted >= 1 << 20 {
                    return Err("stopped".to_string());
                }
                accepted += c.len();
                Ok(())
            },
        );
        assert_eq!(r, Err("stopped".to_string()));
        assert!((1 << 20..(1 << 20) + MAX_BLOCKS * BLOCK).contains(&accepted));
    }

    #[test]
    fn a_panic_taking_a_digest_reaches_the_caller() {
        let data = noise(6, 3 * PIECE);
        // A chunk of the second piece, whichever thread takes it.
        let (at, len) = cut_block_by_block(&data, Layout::V2)
            .into_iter()
            .find(|&(at, _)| at > PIECE as u64)
            .unwrap();
        let poisoned = &data[at as usize..at as usize + len];
        let result = std::panic::catch_unwind(|| {
            split_digested(
                &mut &data[..],
                Layout::V2,
                |e| e,
                |c| {
                    assert!(c != poisoned, "digest failed");
                    sha256(c)
                },
                |_, _, _| Ok::<(), io::Error>(()),
            )
        });
        assert!(result.is_err());
    }

    #[test]
    fn a_changed_directory_block_changes_only_itself_in_v2() {
        let mut old = noise(7, 200 * BLOCK);
        old.splice(100 * BLOCK..100 * BLOCK, dir_block(500));
        let mut new = noise(7, 200 * BLOCK);
        new.splice(100 * BLOCK..100 * BLOCK, dir_block(501));
        let changed = |layout: Layout| {
            let names = |d: &[u8]| {
                let mut out = Vec::new();
                split(
                    &mut &d[..],
                    layout,
                    |e| e,
                    |c| {
                        out.push((c.len(), layout.digest(c)));
                        Ok::<(), io::Error>(())
                    },
                )
                .unwrap();
                out
            };
            let have = names(&old);
            names(&new)
                .into_iter()
                .filter(|c| !have.contains(c))
                .map(|(len, _)| len)
                .collect::<Vec<_>>()
        };
        assert_eq!(changed(Layout::V2), vec![BLOCK]);
        // V1: the whole chunk around it (or two, when the block was or is a cut).
        assert!(changed(Layout::V1).iter().sum::<usize>() > BLOCK);
    }

    #[test]
    fn index_round_trips_in_both_layouts_and_refuses_garbage() {
        for layout in [Layout::V1, Layout::V2] {
            let idx = Index {
                layout,
                chunks: vec![
                    Chunk {
                        len: 16384,
                        zlen: 100,
                        sha256: layout.digest(b"one"),
                    },
                    Chunk {
                        len: 4096,
                        zlen: 7,
                        sha256: layout.digest(b"two"),
                    },
                ],
            };
            let bytes = idx.encode();
            assert_eq!(bytes.len(), 16 + 2 * (8 + layout.hash_len()));
            assert_eq!(Index::decode(&bytes).unwrap(), idx);
            let placed: Vec<_> = idx.placed().collect();
            assert_eq!((placed[1].offset, placed[1].zoffset), (16384, 100));
            assert!(Index::decode(&bytes[..bytes.len() - 1]).is_err());
        }
        assert_eq!(&Layout::V2.digest(b"x")[..16], &sha256(b"x")[..16]);
        assert_eq!(Layout::V2.digest(b"x")[16..], [0; 16]);
        assert!(Index::decode(b"FLEETIX0........").is_err());
    }
}
