#![no_main]
//! cargo-fuzz target: see `wrapper_fuzz::codeblock` for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wrapper_fuzz::codeblock(data));
