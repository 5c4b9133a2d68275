//! The queue between the pump and extraction: a few chunks in memory, then a spill file.
//!
//! SPEC §5.2 asks for three things at once when recording falls behind an agent that prints
//! flat out: nothing dropped, memory bounded, and no backpressure on passthrough. A bounded
//! channel alone gives up the last one — once it is full the pump stops reading, and the
//! agent's writes block as if the terminal were slow. So when the in-memory part
//! ([`MEM_BYTES`], at most [`MEM_CHUNKS`] chunks) is full, chunks go to an unlinked temporary
//! file instead, and extraction reads them back in order once it has caught up. Only if the
//! file grows past [`SPILL_CAP`] (or cannot be written at all) does the pump wait — the last
//! resort that keeps every byte and a bound on disk use as well; `/tmp` is often RAM-backed.
//!
//! Order is kept simply: while the file holds anything, new chunks are appended to it rather
//! than put in memory, and extraction takes memory first, then the file. The file is a ring:
//! a chunk that does not fit before [`SPILL_CAP`] goes to the start once extraction has read
//! past that much, so the file never grows beyond the cap however long the flood lasts, and
//! the pump never waits for a full drain. The file holds the agent's unredacted output for a
//! moment, so it has no name (unlinked at creation, mode 0600) and is truncated whenever it
//! has been read to its end.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use std::time::SystemTime;

use crate::event::Stream;

/// Bytes read from one stream at one moment: what the pump (or the PTY loop) hands to
/// extraction.
pub struct Chunk {
    pub stream: Stream,
    pub data: Vec<u8>,
    pub at: SystemTime,
}

/// Bytes of chunks held in memory (their buffers' capacity): 32 full 64 KiB reads.
///
/// Bounded in bytes, not in chunks: a pty gives a read per line the program writes (~100
/// bytes), and a bound of 32 chunks had PTY mode spill nearly every read to the file (two
/// writes and a read of it per chunk: 28 k spilled of 200 k lines of `cat`) while 3 KiB sat
/// in memory.
pub const MEM_BYTES: usize = 2 << 20;
/// Chunks held in memory at most, whatever their size.
pub const MEM_CHUNKS: usize = 4096;
/// Most bytes the spill file may hold before the pump waits for extraction.
pub const SPILL_CAP: u64 = 256 << 20;

/// Per spilled chunk: stream (1), seconds (8), nanoseconds (4), length (4).
const HEADER: usize = 17;

struct Spill {
    file: File,
    /// Where the next chunk is written / read.
    write_at: u64,
    read_at: u64,
    /// The writer went back to the start of the file: the chunks from `read_at` end here,
    /// and the reader continues at 0. While set, the writer may only fill up to `read_at`.
    wrap_at: Option<u64>,
    chunks: usize,
}

impl Spill {
    /// Where a record of `need` bytes can go without passing `cap` or overwriting unread
    /// chunks, and whether it means wrapping to the start. `None`: no room now.
    fn place(&self, need: u64, cap: u64) -> Option<(u64, bool)> {
        match self.wrap_at {
            Some(_) => (self.write_at + need <= self.read_at).then_some((self.write_at, false)),
            None if self.write_at + need <= cap => Some((self.write_at, false)),
            // Wrapping with nothing unread would be pointless; the file restarts at 0 then.
            None if need <= self.read_at && self.chunks > 0 => Some((0, true)),
            None => None,
        }
    }

    /// Bytes of unread chunks.
    fn held(&self) -> u64 {
        match self.wrap_at {
            Some(w) => (w - self.read_at) + self.write_at,
            None => self.write_at - self.read_at,
        }
    }
}

#[derive(Default)]
struct Inner {
    mem: VecDeque<Chunk>,
    /// The capacity of the buffers in `mem`.
    mem_bytes: usize,
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
        self.spill.as_ref().map_or(0, Spill::held)
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
    mem_bytes: usize,
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
    queue_with(MEM_CHUNKS, MEM_BYTES, SPILL_CAP)
}

/// A queue holding up to `mem_chunks` chunks and `mem_bytes` bytes in memory (at least one
/// chunk, however large), and up to `spill_cap` bytes in its file.
pub fn queue_with(mem_chunks: usize, mem_bytes: usize, spill_cap: u64) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner::default()),
        filled: Condvar::new(),
        drained: Condvar::new(),
        mem_chunks: mem_chunks.max(1),
        mem_bytes,
        spill_cap,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `chunk`. Returns at once unless both memory and the spill file are full (or
    /// the file cannot be written); then waits for extraction to make room.
    pub fn send(&self, chunk: Chunk) -> Result<(), Disconnected> {
        self.send_inner(chunk, true).map_err(|_| Disconnected)
    }

    /// Like [`send`](Self::send) but gives the chunk back instead of waiting when full.
    #[cfg(test)]
    fn try_send(&self, chunk: Chunk) -> Result<(), Option<Chunk>> {
        self.send_inner(chunk, false)
    }

    /// `Err(None)`: the receiver is gone; `Err(Some(chunk))`: full and told not to wait.
    fn send_inner(&self, chunk: Chunk, wait: bool) -> Result<(), Option<Chunk>> {
        let s = &*self.0;
        let mut g = s.lock();
        loop {
            if g.receiver_gone {
                return Err(None);
            }
            let size = chunk.data.capacity();
            if !g.spill_pending()
                && g.mem.len() < s.mem_chunks
                && (g.mem.is_empty() || g.mem_bytes + size <= s.mem_bytes)
            {
                g.mem_bytes += size;
                g.mem.push_back(chunk);
                s.filled.notify_one();
                return Ok(());
            }
            if !g.spill_failed {
                match spill_write(&mut g, &chunk, s.spill_cap) {
                    Ok(true) => {
                        g.spilled_peak = g.spilled_peak.max(g.spilled());
                        s.filled.notify_one();
                        return Ok(());
                    }
                    Ok(false) => {}
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
            if !wait {
                return Err(Some(chunk));
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
                g.mem_bytes -= c.data.capacity();
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
        g.mem_bytes = 0;
        g.spill = None;
        self.0.drained.notify_all();
    }
}

/// Appends `chunk` to the spill file if there is room for it under `cap`. `Ok(false)`: no
/// room until extraction reads some.
fn spill_write(g: &mut Inner, chunk: &Chunk, cap: u64) -> io::Result<bool> {
    let need = (HEADER + chunk.data.len()) as u64;
    if g.spill.is_none() {
        if need > cap {
            return Ok(false);
        }
        g.spill = Some(Spill {
            file: tempfile::tempfile()?,
            write_at: 0,
            read_at: 0,
            wrap_at: None,
            chunks: 0,
        });
    }
    let Some(spill) = g.spill.as_mut() else {
        return Err(io::Error::other("no spill file"));
    };
    let Some((pos, wraps)) = spill.place(need, cap) else {
        return Ok(false);
    };
    let at = chunk.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let len = u32::try_from(chunk.data.len()).map_err(io::Error::other)?;
    let mut head = [0u8; HEADER];
    head[0] = chunk.stream.index() as u8;
    head[1..9].copy_from_slice(&at.as_secs().to_le_bytes());
    head[9..13].copy_from_slice(&at.subsec_nanos().to_le_bytes());
    head[13..17].copy_from_slice(&len.to_le_bytes());
    spill.file.write_all_at(&head, pos)?;
    spill.file.write_all_at(&chunk.data, pos + HEADER as u64)?;
    // Only now that the record is whole does it count.
    if wraps {
        spill.wrap_at = Some(spill.write_at);
    }
    spill.write_at = pos + need;
    spill.chunks += 1;
    Ok(true)
}

fn spill_read(g: &mut Inner) -> io::Result<Chunk> {
    let Some(spill) = g.spill.as_mut() else {
        return Err(io::Error::other("no spill file"));
    };
    if spill.wrap_at.is_some_and(|w| spill.read_at >= w) {
        spill.read_at = 0;
        spill.wrap_at = None;
    }
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
        spill.wrap_at = None;
        // Best effort: the chunk in hand is good either way, and the next writes simply
        // overwrite from 0.
        if let Err(e) = spill.file.set_len(0) {
            tracing::debug!("cannot truncate the spill file: {e}");
        }
    }
    let stream = Stream::from_index(head[0] as usize).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("spill file: unknown stream {}", head[0]),
        )
    })?;
    Ok(Chunk {
        stream,
        data,
        at: UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: usize) -> Chunk {
        Chunk {
            stream: Stream::ALL[i % Stream::ALL.len()],
            data: format!("chunk {i}\n").repeat(i % 7 + 1).into_bytes(),
            at: UNIX_EPOCH + Duration::new(1_700_000_000 + i as u64, (i * 1000) as u32),
        }
    }

    #[test]
    fn spills_past_memory_without_blocking_and_keeps_order() {
        let (tx, rx) = queue_with(4, MEM_BYTES, 1 << 20);
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

    /// Memory holds many small chunks (a pty's reads) and few large ones: the bound is their
    /// bytes. One chunk larger than the whole bound still goes to memory when it is empty.
    #[test]
    fn memory_is_bounded_in_bytes_not_in_chunks() {
        let small = |i: usize| Chunk {
            data: vec![b'a' + (i % 26) as u8; 10],
            ..chunk(i)
        };
        let (tx, rx) = queue_with(MEM_CHUNKS, 4096, 1 << 20);
        for i in 0..400 {
            tx.send(small(i)).expect("send");
        }
        assert_eq!(
            rx.spill_file_len(),
            0,
            "400 chunks of 10 bytes fit in 4 KiB"
        );
        for i in 0..400 {
            assert_eq!(rx.recv_timeout(None).expect("chunk").data, small(i).data);
        }
        let big = |i: usize| Chunk {
            data: vec![b'0' + (i % 10) as u8; 1500],
            ..chunk(i)
        };
        for i in 0..3 {
            tx.send(big(i)).expect("send");
        }
        assert!(
            rx.spill_file_len() > 0,
            "the third chunk of 1500 bytes passes 4 KiB"
        );
        for i in 0..3 {
            assert_eq!(rx.recv_timeout(None).expect("chunk").data, big(i).data);
        }
        let huge = Chunk {
            data: vec![b'h'; 10_000],
            ..chunk(0)
        };
        let len = rx.spill_file_len();
        tx.send(huge).expect("send");
        assert_eq!(rx.spill_file_len(), len, "a chunk alone goes to memory");
        assert_eq!(rx.recv_timeout(None).expect("chunk").data.len(), 10_000);
    }

    #[test]
    fn a_full_spill_makes_the_sender_wait_and_order_survives_refills() {
        let (tx, rx) = queue_with(2, MEM_BYTES, 4096);
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

    impl Receiver {
        fn spill_file_len(&self) -> u64 {
            let g = self.0.lock();
            g.spill
                .as_ref()
                .map_or(0, |s| s.file.metadata().expect("metadata").len())
        }
    }

    /// A flood that extraction never quite catches up with: the file must stay within its
    /// cap (it is a ring), order must hold, and the sender must find room again as soon as
    /// some is read, not only after a full drain.
    #[test]
    fn under_a_sustained_flood_the_spill_file_stays_within_its_cap() {
        let cap = 4096;
        let (tx, rx) = queue_with(2, MEM_BYTES, cap);
        let (mut sent, mut got) = (0usize, 0usize);
        let mut rng = 0x9e37_79b9_u32;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng as usize
        };
        let mut peak = 0;
        while sent < 20_000 {
            let before = (sent, got);
            // Fill until full...
            loop {
                match tx.try_send(chunk(sent)) {
                    Ok(()) => sent += 1,
                    Err(Some(_)) => break,
                    Err(None) => panic!("receiver gone"),
                }
            }
            peak = peak.max(rx.spill_file_len());
            assert!(
                rx.spill_file_len() <= cap,
                "spill file {} > cap",
                rx.spill_file_len()
            );
            // ...then read a few, never all, so the file is never drained to empty.
            for _ in 0..=next() % 3 {
                if sent - got <= 4 {
                    break;
                }
                let c = rx.recv_timeout(Some(Duration::ZERO)).expect("chunk");
                assert_eq!(c.data, chunk(got).data, "chunk {got}");
                assert_eq!(c.at, chunk(got).at, "chunk {got}");
                got += 1;
            }
            assert_ne!(
                before,
                (sent, got),
                "stuck: no room for the sender though {} chunks are unread",
                sent - got
            );
        }
        assert!(
            peak > cap / 2,
            "the test should fill the file (peak {peak})"
        );
        drop(tx);
        while got < sent {
            let c = rx.recv_timeout(Some(Duration::ZERO)).expect("chunk");
            assert_eq!(c.data, chunk(got).data, "chunk {got}");
            got += 1;
        }
        assert!(matches!(
            rx.recv_timeout(Some(Duration::ZERO)),
            Err(RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn empty_queue_times_out_and_a_gone_receiver_fails_the_sender() {
        let (tx, rx) = queue_with(1, MEM_BYTES, 0);
        assert!(matches!(
            rx.recv_timeout(Some(Duration::from_millis(5))),
            Err(RecvTimeoutError::Timeout)
        ));
        drop(rx);
        assert!(tx.send(chunk(1)).is_err());
    }
}
