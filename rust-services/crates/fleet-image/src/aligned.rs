//! Page-aligned buffers for `O_DIRECT` I/O, recycled through a pool so the decompressor does
//! not fault in fresh pages for every chunk.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::mpsc::{Receiver, Sender, channel};

/// Alignment `O_DIRECT` needs for memory, offsets and lengths (page size covers all the
/// logical block sizes in use: 512 and 4096).
pub const ALIGN: usize = 4096;

/// A zero-initialised heap buffer whose start is `ALIGN`-aligned; `len` bytes are in use.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `cap` is rounded up to a multiple of `ALIGN`; `None` when the allocation fails.
    pub fn new(cap: usize) -> Option<AlignedBuf> {
        let cap = cap.max(ALIGN).div_ceil(ALIGN) * ALIGN;
        let layout = Layout::from_size_align(cap, ALIGN).ok()?;
        // SAFETY: layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(AlignedBuf { ptr, cap, len: 0 })
    }

    /// The whole capacity, for filling; call `set_len` afterwards.
    pub fn spare(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for cap initialised bytes and uniquely borrowed through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.cap);
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for cap >= len initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::from_size_align(self.cap, ALIGN) {
            // SAFETY: allocated in `new` with this same layout.
            unsafe { dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

/// A chunk of the image that goes back to its pool when the last writer drops it.
pub struct Chunk {
    buf: Option<AlignedBuf>,
    home: Option<Sender<AlignedBuf>>,
}

impl Chunk {
    /// A chunk that is freed, not recycled, when dropped.
    pub fn standalone(buf: AlignedBuf) -> Chunk {
        Chunk {
            buf: Some(buf),
            home: None,
        }
    }
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let (Some(buf), Some(home)) = (self.buf.take(), &self.home) {
            // The pool is gone once the reader has finished: then the buffer is freed.
            let _ = home.send(buf);
        }
    }
}

/// Buffers of one size, handed out as `AlignedBuf` and returned by dropping `Chunk`s.
pub struct Pool {
    size: usize,
    home: Sender<AlignedBuf>,
    free: Receiver<AlignedBuf>,
}

impl Pool {
    pub fn new(size: usize) -> Pool {
        let (home, free) = channel();
        Pool { size, home, free }
    }

    pub fn get(&self) -> Option<AlignedBuf> {
        match self.free.try_recv() {
            Ok(mut b) => {
                b.set_len(0);
                Some(b)
            }
            Err(_) => AlignedBuf::new(self.size),
        }
    }

    pub fn chunk(&self, buf: AlignedBuf) -> Chunk {
        Chunk {
            buf: Some(buf),
            home: Some(self.home.clone()),
        }
    }
}
