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

/// How much less the recording threads weigh: nice +10 (relative to wrapper's own) is about a
/// tenth of a nice-0 thread's share of a busy core under Linux's scheduler.
const NICE: libc::c_int = 10;

/// Puts the calling thread [`NICE`] below wrapper's main thread (to at most 19; Linux: each
/// thread has its own nice value), if it is not there already (a thread started by one that
/// called this inherits its value).
///
/// Only for threads that start no processes: a child inherits the nice value of the thread
/// that forks it, and the agent must run as it would alone.
pub fn background() {
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
        let target = (main + NICE).min(19);
        if now < target {
            libc::setpriority(libc::PRIO_PROCESS, tid, target);
        }
    }
}
