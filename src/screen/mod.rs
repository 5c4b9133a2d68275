//! The screen: what a person reads on a terminal, from the bytes a program wrote to it.
//!
//! Pure, no I/O (SPEC §10, PTY mode).

pub mod modes;
