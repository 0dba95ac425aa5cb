//! The chunk index of a bundle's root image, for updates that download only what the device
//! lacks (`fleetd update install URL`).
//!
//! Chunking is content-defined over whole 4 KiB blocks: a block ends a chunk when a fast hash
//! of its bytes has its low [`MASK_BITS`] bits zero (at least [`MIN_BLOCKS`], at most
//! [`MAX_BLOCKS`] blocks per chunk). ext4 places file data in 4 KiB blocks, so content moved
//! by a rebuild moves by whole blocks: cutting only at block edges loses nothing against
//! byte-granular CDC (casync, FastCDC), and a boundary depends on one block only, so chunk
//! edges realign right after an insertion. Each chunk is its own zstd frame in
//! `rootfs.ext4.zst` (frames concatenated are one valid zstd stream, so the same file serves
//! a full streamed install), addressable by the cumulative compressed lengths in the index.
//! In format 2 every frame is compressed with the bundle's dictionary (`rootfs.dict`).
//!
//! Index format (`rootfs.index`, signed through its sha256 in the manifest): magic
//! `FLEETIX1`, u32 LE block size, u32 LE chunk count, then per chunk u32 LE uncompressed
//! length, u32 LE compressed length, 32-byte sha256 of the uncompressed bytes.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

pub const BLOCK: usize = 4096;
pub const MIN_BLOCKS: usize = 4;
pub const MAX_BLOCKS: usize = 64;
/// A block ends a chunk with probability 1/2^MASK_BITS once the minimum is reached: chunks
/// average about MIN + 2^MASK_BITS blocks (80 KiB).
pub const MASK_BITS: u32 = 4;
const MAGIC: &[u8; 8] = b"FLEETIX1";
const ENTRY: usize = 40;

/// One chunk of the root image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub len: u32,
    pub zlen: u32,
    pub sha256: [u8; 32],
}

/// The chunks in image order, with their offsets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
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
        let mut out = Vec::with_capacity(16 + ENTRY * self.chunks.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(BLOCK as u32).to_le_bytes());
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for c in &self.chunks {
            out.extend_from_slice(&c.len.to_le_bytes());
            out.extend_from_slice(&c.zlen.to_le_bytes());
            out.extend_from_slice(&c.sha256);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Index, String> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err("not a fleet chunk index (magic FLEETIX1 missing)".into());
        }
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
        if bytes.len() != 16 + count * ENTRY {
            return Err(format!(
                "{} bytes for {count} chunks (want {})",
                bytes.len(),
                16 + count * ENTRY
            ));
        }
        let chunks = bytes[16..]
            .chunks_exact(ENTRY)
            .map(|e| {
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(&e[8..]);
                Chunk {
                    len: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
                    zlen: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                    sha256,
                }
            })
            .collect();
        Ok(Index { chunks })
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

/// The cut hash of one block (64-bit multiply-xorshift over its words).
fn block_hash(block: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for w in block.chunks(8) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 29;
    }
    h
}

/// Splits `data` (a whole image or any run of whole blocks) into chunk lengths.
pub struct Chunker {
    blocks: usize,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker::new()
    }
}

impl Chunker {
    pub fn new() -> Chunker {
        Chunker { blocks: 0 }
    }

    /// Feeds one block (the last may be short); true when it ends a chunk.
    pub fn push(&mut self, block: &[u8]) -> bool {
        self.blocks += 1;
        let cut = self.blocks >= MAX_BLOCKS
            || (self.blocks >= MIN_BLOCKS && block_hash(block) & ((1 << MASK_BITS) - 1) == 0);
        if cut {
            self.blocks = 0;
        }
        cut
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

/// Cuts what `r` yields into the index's chunks, calling `chunk` with each in order. The one
/// chunking loop: the bundle builder and the device (looking for chunks in its running slot)
/// must cut the same content the same way.
pub fn split<E>(
    r: &mut impl Read,
    read_err: impl Fn(io::Error) -> E,
    mut chunk: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut chunker = Chunker::new();
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_BLOCKS * BLOCK);
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = crate::read_up_to(r, &mut block).map_err(&read_err)?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&block[..n]);
        if chunker.push(&block[..n]) || n < BLOCK {
            chunk(&pending)?;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        chunk(&pending)?;
    }
    Ok(())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_lens(data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        split(
            &mut &data[..],
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

    #[test]
    fn boundaries_realign_after_an_inserted_block() {
        let data = noise(7, 400 * BLOCK);
        let mut shifted = noise(9, 3 * BLOCK);
        shifted.extend_from_slice(&data);
        let a = chunk_lens(&data);
        let b = chunk_lens(&shifted);
        assert!(
            a.iter()
                .all(|l| (MIN_BLOCKS * BLOCK..=MAX_BLOCKS * BLOCK).contains(l))
        );
        // Apart from the first chunk or two, the chunk sequence is the same.
        let tail = |v: &[usize]| v[v.len() - (a.len() - 2)..].to_vec();
        assert_eq!(tail(&a), tail(&b));
    }

    #[test]
    fn index_round_trips_and_refuses_garbage() {
        let idx = Index {
            chunks: vec![
                Chunk {
                    len: 16384,
                    zlen: 100,
                    sha256: [1; 32],
                },
                Chunk {
                    len: 4096,
                    zlen: 7,
                    sha256: [2; 32],
                },
            ],
        };
        let bytes = idx.encode();
        assert_eq!(Index::decode(&bytes).unwrap(), idx);
        let placed: Vec<_> = idx.placed().collect();
        assert_eq!((placed[1].offset, placed[1].zoffset), (16384, 100));
        assert!(Index::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Index::decode(b"FLEETIX0........").is_err());
    }
}
