//! Integration tests: the real binary, real child processes, real signals, real SQLite files.

mod agent_json;
mod agents_tui;
mod capture;
mod corpus;
mod first_contact;
mod git;
mod hardening;
mod harness;
mod hostile;
mod jobs;
mod otel;
mod otlp;
mod passthrough;
mod patterns;
mod pty;
mod quality;
mod run;
mod screen;
mod secrets;
mod serve;
mod signals;
mod store_open;
