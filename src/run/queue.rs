//! The queue between the pump and extraction: a few chunks in memory, then a spill file.
//!
//! SPEC §5.2 asks for three things at once when recording falls behind an agent that prints
//! flat out: nothing dropped, memory bounded, and no backpressure on passthrough. A bounded
//! channel alone gives up the last one — once it is full the pump stops reading, and the
//! agent's writes block as if the terminal were slow. So when the in-memory part
//! ([`MEM_CHUNKS`] chunks) is full, chunks go to an unlinked temporary file instead, and
//! extraction reads them back in order once it has caught up. Only if the file grows past
//! [`SPILL_CAP`] (or cannot be written at all) does the pump wait — the last resort that keeps
//! every byte and a bound on disk use as well; `/tmp` is often RAM-backed.
//!
//! Order is kept simply: while the file holds anything, new chunks are appended to it rather
//! than put in memory, and extraction takes memory first, then the file. The file holds the
//! agent's unredacted output for a moment, so it has no name (unlinked at creation, mode
//! 0600) and is truncated whenever it has been read to its end.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::pump::Chunk;
use crate::event::Stream;

/// Chunks held in memory: 32 × 64 KiB reads = 2 MiB.
pub const MEM_CHUNKS: usize = 32;
/// Most bytes the spill file may hold before the pump waits for extraction.
pub const SPILL_CAP: u64 = 256 << 20;

/// Per spilled chunk: stream (1), seconds (8), nanoseconds (4), length (4).
const HEADER: usize = 17;

struct Spill {
    file: File,
    /// Where the next chunk is written / read.
    write_at: u64,
    read_at: u64,
    chunks: usize,
}

#[derive(Default)]
struct Inner {
    mem: VecDeque<Chunk>,
    spill: Option<Spill>,
    /// The spill file could not be created or written: from now on the pump waits instead.
    spill_failed: bool,
    sender_gone: bool,
    receiver_gone: bool,
    /// Largest backlog the file held, for the debug log.
    spilled_peak: u64,
}

impl Inner {
    fn spilled(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.write_at - s.read_at)
    }

    fn spill_pending(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| s.chunks > 0)
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Signalled when a chunk arrives or the sender leaves.
    filled: Condvar,
    /// Signalled when a chunk is taken or the receiver leaves.
    drained: Condvar,
    mem_chunks: usize,
    spill_cap: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; carry on with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pump's end.
pub struct Sender(Arc<Shared>);
/// A view of how much is queued, for telling the user why wrapper is still busy.
pub struct Backlog(Arc<Shared>);

impl Backlog {
    /// Bytes queued in memory and in the spill file, not yet taken by extraction.
    pub fn bytes(&self) -> u64 {
        let g = self.0.lock();
        g.mem.iter().map(|c| c.data.len() as u64).sum::<u64>() + g.spilled()
    }
}
/// Extraction's end.
pub struct Receiver(Arc<Shared>);

/// The receiver has gone: nobody will read what is sent.
#[derive(Debug)]
pub struct Disconnected;

/// A queue with the default sizes.
pub fn queue() -> (Sender, Receiver) {
    queue_with(MEM_CHUNKS, SPILL_CAP)
}

/// A queue holding `mem_chunks` chunks in memory and up to `spill_cap` bytes in its file.
pub fn queue_with(mem_chunks: usize, spill_cap: u64) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner::default()),
        filled: Condvar::new(),
        drained: Condvar::new(),
        mem_chunks: mem_chunks.max(1),
        spill_cap,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `chunk`. Returns at once unless both memory and the spill file are full (or
    /// the file cannot be written); then waits for extraction to make room.
    pub fn send(&self, chunk: Chunk) -> Result<(), Disconnected> {
        let s = &*self.0;
        let mut g = s.lock();
        loop {
            if g.receiver_gone {
                return Err(Disconnected);
            }
            if !g.spill_pending() && g.mem.len() < s.mem_chunks {
                g.mem.push_back(chunk);
                s.filled.notify_one();
                return Ok(());
            }
            let room = g.spilled() + (HEADER + chunk.data.len()) as u64 <= s.spill_cap;
            if !g.spill_failed && room {
                match spill_write(&mut g, &chunk) {
                    Ok(()) => {
                        g.spilled_peak = g.spilled_peak.max(g.spilled());
                        s.filled.notify_one();
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(
                            "cannot spill agent output to a temporary file ({e}); \
                             wrapper now reads the agent only as fast as it records"
                        );
                        g.spill_failed = true;
                        continue;
                    }
                }
            }
            g = s.drained.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.sender_gone = true;
        if g.spilled_peak > 0 {
            tracing::debug!(
                "spill file held at most {} bytes of agent output",
                g.spilled_peak
            );
        }
        self.0.filled.notify_all();
    }
}

impl Receiver {
    pub fn backlog(&self) -> Backlog {
        Backlog(self.0.clone())
    }

    /// The next chunk, waiting at most `timeout` (`None`: as long as it takes). Chunks come
    /// in the order they were sent. `Disconnected` once the sender is gone and all is read.
    pub fn recv_timeout(&self, timeout: Option<Duration>) -> Result<Chunk, RecvTimeoutError> {
        let s = &*self.0;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = s.lock();
        loop {
            if let Some(c) = g.mem.pop_front() {
                s.drained.notify_one();
                return Ok(c);
            }
            if g.spill_pending() {
                match spill_read(&mut g) {
                    Ok(c) => {
                        s.drained.notify_one();
                        return Ok(c);
                    }
                    Err(e) => {
                        // Cannot happen short of a failing disk; what was spilled is gone,
                        // so say so rather than pretend.
                        tracing::error!(
                            "lost spilled agent output (it was shown, not recorded): {e}"
                        );
                        g.spill = None;
                        g.spill_failed = true;
                        s.drained.notify_all();
                        continue;
                    }
                }
            }
            if g.sender_gone {
                return Err(RecvTimeoutError::Disconnected);
            }
            g = match deadline {
                None => s.filled.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(RecvTimeoutError::Timeout);
                    }
                    s.filled
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.receiver_gone = true;
        g.mem.clear();
        g.spill = None;
        self.0.drained.notify_all();
    }
}

fn spill_write(g: &mut Inner, chunk: &Chunk) -> io::Result<()> {
    if g.spill.is_none() {
        g.spill = Some(Spill {
            file: tempfile::tempfile()?,
            write_at: 0,
            read_at: 0,
            chunks: 0,
        });
    }
    let Some(spill) = g.spill.as_mut() else {
        return Err(io::Error::other("no spill file"));
    };
    let at = chunk.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let len = u32::try_from(chunk.data.len()).map_err(io::Error::other)?;
    let mut head = [0u8; HEADER];
    head[0] = chunk.stream.index() as u8;
    head[1..9].copy_from_slice(&at.as_secs().to_le_bytes());
    head[9..13].copy_from_slice(&at.subsec_nanos().to_le_bytes());
    head[13..17].copy_from_slice(&len.to_le_bytes());
    spill.file.write_all_at(&head, spill.write_at)?;
    spill
        .file
        .write_all_at(&chunk.data, spill.write_at + HEADER as u64)?;
    spill.write_at += (HEADER + chunk.data.len()) as u64;
    spill.chunks += 1;
    Ok(())
}

fn spill_read(g: &mut Inner) -> io::Result<Chunk> {
    let Some(spill) = g.spill.as_mut() else {
        return Err(io::Error::other("no spill file"));
    };
    let mut head = [0u8; HEADER];
    spill.file.read_exact_at(&mut head, spill.read_at)?;
    let word = |r: std::ops::Range<usize>| -> [u8; 8] {
        let mut w = [0u8; 8];
        w[..r.len()].copy_from_slice(&head[r]);
        w
    };
    let secs = u64::from_le_bytes(word(1..9));
    let nanos = u64::from_le_bytes(word(9..13)) as u32;
    let len = u64::from_le_bytes(word(13..17)) as usize;
    let mut data = vec![0u8; len];
    spill
        .file
        .read_exact_at(&mut data, spill.read_at + HEADER as u64)?;
    spill.read_at += (HEADER + len) as u64;
    spill.chunks -= 1;
    if spill.chunks == 0 {
        // Read to its end: start over, and give the space back.
        spill.read_at = 0;
        spill.write_at = 0;
        spill.file.set_len(0)?;
    }
    Ok(Chunk {
        stream: if head[0] == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        },
        data,
        at: UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: usize) -> Chunk {
        Chunk {
            stream: if i % 3 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            data: format!("chunk {i}\n").repeat(i % 7 + 1).into_bytes(),
            at: UNIX_EPOCH + Duration::new(1_700_000_000 + i as u64, (i * 1000) as u32),
        }
    }

    #[test]
    fn spills_past_memory_without_blocking_and_keeps_order() {
        let (tx, rx) = queue_with(4, 1 << 20);
        // Nobody reads yet: 1,000 sends must all return (4 in memory, the rest in the file).
        for i in 0..1000 {
            tx.send(chunk(i)).expect("send");
        }
        drop(tx);
        for i in 0..1000 {
            let c = rx.recv_timeout(None).expect("chunk");
            let want = chunk(i);
            assert_eq!(c.data, want.data, "chunk {i}");
            assert_eq!(c.stream, want.stream, "chunk {i}");
            assert_eq!(c.at, want.at, "chunk {i}");
        }
        assert!(matches!(
            rx.recv_timeout(None),
            Err(RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn a_full_spill_makes_the_sender_wait_and_order_survives_refills() {
        let (tx, rx) = queue_with(2, 4096);
        let sender = std::thread::spawn(move || {
            for i in 0..5000 {
                tx.send(chunk(i)).expect("send");
            }
        });
        for i in 0..5000 {
            let c = rx
                .recv_timeout(Some(Duration::from_secs(30)))
                .expect("chunk");
            assert_eq!(c.data, chunk(i).data, "chunk {i}");
        }
        sender.join().expect("sender");
        assert!(matches!(
            rx.recv_timeout(Some(Duration::from_millis(1))),
            Err(RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn empty_queue_times_out_and_a_gone_receiver_fails_the_sender() {
        let (tx, rx) = queue_with(1, 0);
        assert!(matches!(
            rx.recv_timeout(Some(Duration::from_millis(5))),
            Err(RecvTimeoutError::Timeout)
        ));
        drop(rx);
        assert!(tx.send(chunk(1)).is_err());
    }
}
