//! Recording yields to passing through.
//!
//! The threads that record (extraction and its helper, the screen model, capture, the writer
//! and its checkpointer) run at a lower priority than the agent, the pump that passes its
//! output through, and everything else on the machine. When the cores are free this changes
//! nothing; when they are not, the agent and the user's terminal are served first, and
//! recording catches up when it can: output waits in the queue (which spills to a file, and
//! never holds the pump back before its cap, `queue.rs`), not in the agent's writes.
//!
//! Measured (`scripts/yield_bench.sh`): an agent that floods its output (`cat` of the
//! standard input, twice) while two CPU-bound jobs of its own run, 2.0 s each alone: with the
//! recording threads at nice 0 the slower job took 3.6-4.3 s, at +10 2.1-2.7 s, and the whole
//! session (everything recorded) took as long either way, 4.3-5.0 s (four interleaved runs on
//! two cores; docs/PERFORMANCE.md, fourteenth session).

/// How far below wrapper's own priority a recording thread runs. Each yields to the ones whose
/// work it waits on: the writer and capture take what extraction hands them, and the
/// checkpointer copies what the writer committed, with a backstop (the writer checkpoints
/// itself when the WAL grows past its limit, `store/writer.rs`), so it can wait longest.
///
/// Under Linux's scheduler nice +10 is about a tenth of a nice-0 thread's share of a busy core,
/// and each step about 1.25× less. Measured on a flood of the standard input into the
/// database (two cores, interleaved pairs, docs/PERFORMANCE.md, seventeenth session): with
/// every recording thread at +10 the threads that wait on extraction took its core when it
/// woke them, while the other core idled ~20% of the run; these steps made the run 2-3%
/// faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorder {
    /// Extraction, its helper and the screen model (and the rules' compilation they wait on).
    Reader,
    /// The writer: SQLite's inserts.
    Writer,
    /// Output capture: masking and compression.
    Capture,
    /// The writer's checkpointer.
    Checkpointer,
}

impl Recorder {
    fn nice(self) -> libc::c_int {
        match self {
            Recorder::Reader => 10,
            Recorder::Writer => 11,
            Recorder::Capture => 13,
            Recorder::Checkpointer => 19,
        }
    }
}

/// Puts the calling thread `role`'s [`Recorder::nice`] below wrapper's main thread (to at
/// most 19; Linux: each thread has its own nice value), if it is not there already (a thread
/// started by one that called this inherits its value).
///
/// Only for threads that start no processes: a child inherits the nice value of the thread
/// that forks it, and the agent must run as it would alone.
pub fn background(role: Recorder) {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority reads a priority; setpriority on the calling thread's own id
    // changes nothing but its priority; a failure leaves it as it was.
    unsafe {
        // -1 is also a valid nice value: errno tells an error apart.
        let nice_of = |id: libc::id_t| {
            *libc::__errno_location() = 0;
            let n = libc::getpriority(libc::PRIO_PROCESS, id);
            (n != -1 || *libc::__errno_location() == 0).then_some(n)
        };
        let tid = libc::gettid() as libc::id_t;
        // The process id names the main thread.
        let (Some(main), Some(now)) = (nice_of(libc::getpid() as libc::id_t), nice_of(tid)) else {
            return;
        };
        let target = (main + role.nice()).min(19);
        if now < target {
            libc::setpriority(libc::PRIO_PROCESS, tid, target);
        }
    }
}
