//! Fuzz target: arbitrary bytes to `runoff::fuzzing::request_head`, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = runoff::fuzzing::request_head(data);
});
