#![no_main]
//! cargo-fuzz target: see `wrapper_fuzz::patterns` for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wrapper_fuzz::patterns(data));
