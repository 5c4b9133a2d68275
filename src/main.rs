//! The `wrapper` binary: all the work is in the library; this only maps the outcome to the
//! process exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = wrapper::main_with_args(std::env::args_os().collect());
    ExitCode::from(u8::try_from(code).unwrap_or(125))
}
