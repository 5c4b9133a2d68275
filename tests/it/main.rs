//! Integration tests: the real binary, real child processes, real signals, real SQLite files.

mod capture;
mod corpus;
mod hardening;
mod harness;
mod hostile;
mod jobs;
mod passthrough;
mod patterns;
mod run;
mod serve;
mod signals;
