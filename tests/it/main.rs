//! Integration tests: the real binary, real child processes, real signals, real SQLite files.

mod corpus;
mod git;
mod hardening;
mod harness;
mod hostile;
mod jobs;
mod otel;
mod otlp;
mod passthrough;
mod patterns;
mod run;
mod signals;
