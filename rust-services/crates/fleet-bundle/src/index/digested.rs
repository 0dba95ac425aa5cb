//! [`split`](super::split) with each chunk's digest taken on every core: a device scanning its
//! running slot (512 MiB to cut and hash) while the bundle's head is fetched.
//!
//! The calling thread reads and cuts [`Piece`]s; the chunks of each are handed out in tasks to
//! a worker per other core (and to the calling thread when it may not read further ahead),
//! which take the digests; the caller gets the chunks back in image order, with their
//! digests, as each piece is done. At most [`IN_FLIGHT`] pieces are in memory.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use super::{Layout, Piece, Pieces};

/// Pieces read and not yet handed back (each [`super::PIECE`] bytes and the chunk carried).
const IN_FLIGHT: usize = 4;
/// Bytes of chunks a worker takes at once.
const TASK: usize = 512 << 10;
/// Worker threads at most: beyond, the reading and cutting on one thread is the limit.
const MAX_WORKERS: usize = 4;

struct Task {
    seq: u64,
    piece: Arc<Piece>,
    /// The piece's spans `first..first + count`.
    first: usize,
    count: usize,
}

impl Task {
    fn run(self, digest: &impl Fn(&[u8]) -> [u8; 32], stop: &AtomicBool) -> Done {
        let Task {
            seq,
            piece,
            first,
            count,
        } = self;
        let digests = if stop.load(Ordering::Relaxed) {
            Vec::new()
        } else {
            let chunks = piece.chunks().skip(first).take(count);
            chunks.map(|(_, chunk)| digest(chunk)).collect()
        };
        Done {
            seq,
            first,
            digests: Ok(digests),
        }
    }
}

struct Done {
    seq: u64,
    first: usize,
    /// Or the worker's panic.
    digests: std::thread::Result<Vec<[u8; 32]>>,
}

/// A piece handed out, its digests as they come back.
struct Flight {
    piece: Arc<Piece>,
    digests: Vec<[u8; 32]>,
    tasks_left: usize,
}

/// Cuts what `r` yields into chunks of `layout` and calls `on_chunk` with each chunk's offset,
/// bytes and `digest`, in image order. `on_chunk` may end it with an error; after a read
/// error, the chunks cut before it are handed over first.
pub fn split_digested<E>(
    r: &mut impl Read,
    layout: Layout,
    read_err: impl Fn(io::Error) -> E,
    digest: impl Fn(&[u8]) -> [u8; 32] + Sync,
    mut on_chunk: impl FnMut(u64, &[u8], [u8; 32]) -> Result<(), E>,
) -> Result<(), E> {
    // This thread reads and cuts, and takes tasks too when it cannot read ahead further.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get() - 1)
        .clamp(1, MAX_WORKERS);
    let stop = AtomicBool::new(false);
    let (task_tx, task_rx) = mpsc::channel::<Task>();
    let task_rx = Mutex::new(task_rx);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (task_rx, digest, stop) = (&task_rx, &digest, &stop);
            s.spawn(move || {
                loop {
                    // The lock is held while waiting for a task, not while working on one.
                    let next = task_rx
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .recv();
                    let Ok(task) = next else { break };
                    // A panic goes to the caller, which waits for this task's digests.
                    let (seq, first) = (task.seq, task.first);
                    let done =
                        std::panic::catch_unwind(AssertUnwindSafe(|| task.run(digest, stop)))
                            .unwrap_or_else(|panic| Done {
                                seq,
                                first,
                                digests: Err(panic),
                            });
                    if done_tx.send(done).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut order = InOrder {
            flights: VecDeque::new(),
            first_seq: 0,
            spare: Vec::new(),
        };
        let mut pieces = Pieces::new(r, layout);
        let mut seq = 0u64;
        let end = loop {
            // Pieces whose digests are all back go to the caller; wait for the oldest when
            // IN_FLIGHT are out.
            while let Ok(done) = done_rx.try_recv() {
                order.take(done);
            }
            if let Err(e) = order.hand_over(&mut on_chunk) {
                break End::Stopped(e);
            }
            if order.flights.len() >= IN_FLIGHT {
                // No room to read more: take a task here too, else wait for digests. (A
                // worker waiting for a task holds the lock: then none is queued.)
                let task = task_rx.try_lock().ok().and_then(|rx| rx.try_recv().ok());
                match task {
                    Some(task) => order.take(task.run(&digest, &stop)),
                    None => match done_rx.recv() {
                        Ok(done) => order.take(done),
                        // Every worker gone (they catch their panics: not while tasks are out).
                        Err(_) => break End::Input(None),
                    },
                }
                continue;
            }
            match pieces.next(order.spare.pop().unwrap_or_default()) {
                Ok(Some(piece)) => order.hand_out(seq, piece, &task_tx),
                Ok(None) => break End::Input(None),
                Err(e) => break End::Input(Some(read_err(e))),
            }
            seq += 1;
        };
        let result = match end {
            End::Stopped(e) => Err(e),
            // The chunks cut before a read error are handed over before it.
            End::Input(read) => order
                .drain(&done_rx, &mut on_chunk)
                .and(read.map_or(Ok(()), Err)),
        };
        stop.store(true, Ordering::Relaxed);
        drop(task_tx);
        result
    })
}

enum End<E> {
    /// The input's end, or a read error.
    Input(Option<E>),
    /// `on_chunk`'s error.
    Stopped(E),
}

/// The pieces handed out, oldest first, and buffers to reuse.
struct InOrder {
    flights: VecDeque<Flight>,
    /// `seq` of `flights[0]`.
    first_seq: u64,
    spare: Vec<Vec<u8>>,
}

impl InOrder {
    /// Sends `piece`'s chunks to the workers in tasks of about [`TASK`] bytes.
    fn hand_out(&mut self, seq: u64, piece: Piece, tasks: &mpsc::Sender<Task>) {
        let piece = Arc::new(piece);
        let mut tasks_left = 0;
        let (mut first, mut bytes) = (0, 0);
        for (i, &(_, len)) in piece.spans.iter().enumerate() {
            bytes += len;
            if bytes >= TASK || i + 1 == piece.spans.len() {
                let task = Task {
                    seq,
                    piece: Arc::clone(&piece),
                    first,
                    count: i + 1 - first,
                };
                // Fails only when every worker is gone: the wait for its digests sees it.
                let _ = tasks.send(task);
                tasks_left += 1;
                (first, bytes) = (i + 1, 0);
            }
        }
        self.flights.push_back(Flight {
            digests: vec![[0; 32]; piece.spans.len()],
            piece,
            tasks_left,
        });
    }

    fn take(&mut self, done: Done) {
        let Some(flight) = (done.seq.checked_sub(self.first_seq))
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.flights.get_mut(i))
        else {
            return;
        };
        let digests = done
            .digests
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        flight.digests[done.first..done.first + digests.len()].copy_from_slice(&digests);
        flight.tasks_left -= 1;
    }

    /// Hands the finished pieces at the front to `on_chunk`.
    fn hand_over<E>(
        &mut self,
        on_chunk: &mut impl FnMut(u64, &[u8], [u8; 32]) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.flights.front().is_some_and(|f| f.tasks_left == 0) {
            let Some(Flight { piece, digests, .. }) = self.flights.pop_front() else {
                break;
            };
            self.first_seq += 1;
            for ((offset, bytes), digest) in piece.chunks().zip(digests) {
                on_chunk(offset, bytes, digest)?;
            }
            if let Ok(piece) = Arc::try_unwrap(piece) {
                self.spare.push(piece.bytes);
            }
        }
        Ok(())
    }

    /// Waits for every piece out and hands them over.
    fn drain<E>(
        &mut self,
        done_rx: &mpsc::Receiver<Done>,
        on_chunk: &mut impl FnMut(u64, &[u8], [u8; 32]) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            self.hand_over(on_chunk)?;
            if self.flights.is_empty() {
                return Ok(());
            }
            match done_rx.recv() {
                Ok(done) => self.take(done),
                // Every worker gone (they catch their panics: not while tasks are out).
                Err(_) => return Ok(()),
            }
        }
    }
}
