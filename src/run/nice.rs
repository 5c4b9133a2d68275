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

/// How much less the recording threads weigh: nice +10 is about a tenth of a nice-0
/// thread's share of a busy core under Linux's scheduler.
const NICE: libc::c_int = 10;

/// Lowers the calling thread's priority (Linux: each thread has its own nice value).
///
/// Only for threads that start no processes: a child inherits the nice value of the thread
/// that forks it, and the agent must run as it would alone.
pub fn background() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's own id changes nothing but its priority;
    // a failure (not possible for lowering one's own) leaves it as it was.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE);
    }
}
