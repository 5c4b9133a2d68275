//! One file per subcommand other than the run path: each parses nothing (clap did) and
//! returns its exit code or an error that carries one.

pub mod backup;
pub mod code_blocks;
pub mod db;
pub mod events;
pub mod export;
pub mod import_spool;
pub mod patterns;
pub mod prune;
pub mod replay;
pub mod search;
pub mod serve;
pub mod sessions;
pub mod show;
pub mod stats;
pub mod timeline;
pub mod view;
