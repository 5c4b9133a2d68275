//! One file per subcommand other than the run path: each parses nothing (clap did) and
//! returns its exit code or an error that carries one.

pub mod db;
pub mod import_spool;
pub mod patterns;
