//! Fuzz target: arbitrary bytes to `runoff::fuzzing::json_compare`, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| runoff::fuzzing::json_compare(data));
