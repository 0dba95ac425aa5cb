//! The few tar (ustar) features a bundle needs: regular files, in order, streamed. Written by
//! hand so a bundle is read with no buffering beyond one 512-byte header and no seeking.

use std::io::{self, Read, Write};

const BLOCK: u64 = 512;

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Bytes of zeros after an entry of `size` bytes (to the next 512-byte block).
pub fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "stream ended early (truncated bundle)",
    )
}

/// Reads a tar stream entry by entry; `Read` yields the current entry's bytes.
pub struct TarReader<R> {
    inner: R,
    remaining: u64,
    pad: u64,
    /// Bytes consumed from `inner` so far.
    position: u64,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            pad: 0,
            position: 0,
        }
    }

    /// Bytes of the current entry not read yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Offset in the stream just past the current entry's data.
    pub fn entry_end(&self) -> u64 {
        self.position + self.remaining
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.inner.read(&mut buf[..want])?;
            if got == 0 {
                return Err(truncated());
            }
            n -= got as u64;
            self.position += got as u64;
        }
        Ok(())
    }

    /// Moves to the next regular file: `Some((name, size))`, or `None` at the end marker.
    pub fn next_file(&mut self) -> io::Result<Option<(String, u64)>> {
        let rest = self.remaining + self.pad;
        self.skip(rest)?;
        self.remaining = 0;
        self.pad = 0;
        let mut header = [0u8; BLOCK as usize];
        self.inner.read_exact(&mut header).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                truncated()
            } else {
                e
            }
        })?;
        self.position += BLOCK;
        if header.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("tar: {what}"));
        let stored = octal(&header[148..156]).ok_or_else(|| bad("bad header checksum field"))?;
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    b as u64
                }
            })
            .sum();
        if sum != stored {
            return Err(bad("header checksum mismatch"));
        }
        if !matches!(header[156], b'0' | 0) {
            return Err(bad("only regular files are allowed in a bundle"));
        }
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).into_owned();
        let size = octal(&header[124..136]).ok_or_else(|| bad("bad size field"))?;
        self.remaining = size;
        self.pad = padding(size);
        Ok(Some((name, size)))
    }

    /// Reads the whole current entry (which must be at most `limit` bytes).
    pub fn read_entry(&mut self, limit: u64) -> io::Result<Vec<u8>> {
        if self.remaining > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry of {} bytes is larger than {limit}", self.remaining),
            ));
        }
        let mut out = Vec::with_capacity(self.remaining as usize);
        self.read_to_end(&mut out)?;
        Ok(out)
    }
}

impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let got = self.inner.read(&mut buf[..want])?;
        if got == 0 {
            return Err(truncated());
        }
        self.remaining -= got as u64;
        self.position += got as u64;
        Ok(got)
    }
}

/// Writes the 512-byte ustar header of a regular file.
pub fn write_header(out: &mut impl Write, name: &str, size: u64) -> io::Result<()> {
    if name.len() >= 100 || size >= 1 << 33 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tar: {name} ({size} bytes) does not fit a ustar header"),
        ));
    }
    let mut h = [0u8; BLOCK as usize];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.write_all(&h)
}

/// Pads an entry of `size` bytes to the block size.
pub fn write_padding(out: &mut impl Write, size: u64) -> io::Result<()> {
    out.write_all(&vec![0u8; padding(size) as usize])
}

/// The end-of-archive marker: two zero blocks.
pub fn write_end(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK as usize])
}
