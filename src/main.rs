//! The `wrapper` binary: all the work is in the library; this only maps the outcome to the
//! process exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let code = wrapper::main_with_args(std::env::args_os().collect());
    ExitCode::from(u8::try_from(code).unwrap_or(125))
}

/// glibc raises its mmap threshold to the size of each large block freed, up to 32 MiB, and
/// then keeps blocks that size in the threads' arenas: the capture's 256 KiB blocks, the
/// writer's messages and the pump's buffers, freed on one thread after use on another, stay
/// resident long after. A fixed threshold (which also fixes the trim threshold at 128 KiB)
/// sends them back to the system when freed: 1.5-2.5 MiB less peak RSS on the standard input
/// with the database, for ~0.3 s more system time per million lines in page faults
/// (docs/PERFORMANCE.md).
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread
    // exists, as glibc asks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
