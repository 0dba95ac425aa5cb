//! A sector write-back buffer between fatfs and the card.
//!
//! fatfs 0.3 writes a directory entry field by field (name, attributes, cluster, size: a
//! dozen small writes into one sector). Written through, each is a version of the sector
//! the card may keep at a power cut: tests/powerloss found half-written entries (a new
//! name over a deleted entry's old cluster and size). Here every write lands in a sector
//! buffer, and [`WriteBack::write_out`] writes each changed sector once, whole, at the
//! caller's barriers. The handle is shared ([`Shared`]) so the barrier can reach the buffer
//! fatfs holds.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

const SECTOR: u64 = 512;

pub struct WriteBack<T> {
    inner: T,
    pos: u64,
    dirty: BTreeMap<u64, Vec<u8>>,
}

impl<T: Read + Write + Seek> WriteBack<T> {
    pub fn new(inner: T) -> Self {
        WriteBack {
            inner,
            pos: 0,
            dirty: BTreeMap::new(),
        }
    }

    fn sector(&mut self, n: u64) -> io::Result<&mut Vec<u8>> {
        if !self.dirty.contains_key(&n) {
            let mut buf = vec![0u8; SECTOR as usize];
            self.inner.seek(SeekFrom::Start(n * SECTOR))?;
            self.inner.read_exact(&mut buf)?;
            self.dirty.insert(n, buf);
        }
        self.dirty
            .get_mut(&n)
            .ok_or_else(|| io::Error::other("sector buffer lost a sector"))
    }

    /// Writes every changed sector (contiguous runs as one write), in sector order.
    pub fn write_out(&mut self) -> io::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut run: Option<(u64, Vec<u8>)> = None;
        for (n, data) in dirty {
            match &mut run {
                Some((start, bytes)) if *start + bytes.len() as u64 / SECTOR == n => {
                    bytes.extend_from_slice(&data);
                }
                _ => {
                    if let Some((start, bytes)) = run.take() {
                        self.inner.seek(SeekFrom::Start(start * SECTOR))?;
                        self.inner.write_all(&bytes)?;
                    }
                    run = Some((n, data));
                }
            }
        }
        if let Some((start, bytes)) = run {
            self.inner.seek(SeekFrom::Start(start * SECTOR))?;
            self.inner.write_all(&bytes)?;
        }
        self.inner.flush()
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: Read + Write + Seek> Read for WriteBack<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.pos / SECTOR;
        let off = (self.pos % SECTOR) as usize;
        let len = buf.len().min(SECTOR as usize - off);
        if let Some(s) = self.dirty.get(&n) {
            buf[..len].copy_from_slice(&s[off..off + len]);
            self.pos += len as u64;
            return Ok(len);
        }
        self.inner.seek(SeekFrom::Start(self.pos))?;
        let got = self.inner.read(&mut buf[..len])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<T: Read + Write + Seek> Write for WriteBack<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.pos / SECTOR;
        let off = (self.pos % SECTOR) as usize;
        let len = buf.len().min(SECTOR as usize - off);
        let s = self.sector(n)?;
        s[off..off + len].copy_from_slice(&buf[..len]);
        self.pos += len as u64;
        Ok(len)
    }

    /// Nothing: the buffer is written out only at the caller's barriers.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: Read + Write + Seek> Seek for WriteBack<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => {
                let end = self.inner.seek(SeekFrom::End(0))?;
                end.checked_add_signed(d)
            }
        };
        self.pos = new.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// A [`WriteBack`] shared between fatfs (which owns its stream) and the barrier.
pub struct Shared<T>(pub Rc<RefCell<WriteBack<T>>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Rc::clone(&self.0))
    }
}

impl<T: Read + Write + Seek> Read for Shared<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl<T: Read + Write + Seek> Write for Shared<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

impl<T: Read + Write + Seek> Seek for Shared<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.borrow_mut().seek(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn writes_reach_the_inner_stream_only_at_write_out_and_whole() {
        let mut wb = WriteBack::new(Cursor::new(vec![7u8; 2048]));
        wb.seek(SeekFrom::Start(510)).unwrap();
        wb.write_all(&[1, 2, 3, 4]).unwrap();
        let mut back = [0u8; 6];
        wb.seek(SeekFrom::Start(509)).unwrap();
        wb.read_exact(&mut back).unwrap();
        assert_eq!(back, [7, 1, 2, 3, 4, 7]);
        assert_eq!(
            wb.inner.get_ref()[510],
            7,
            "written through before write_out"
        );
        wb.write_out().unwrap();
        let inner = wb.into_inner().into_inner();
        assert_eq!(&inner[509..515], &[7, 1, 2, 3, 4, 7]);
        assert_eq!(inner.len(), 2048);
    }
}
