//! Fuzz target: arbitrary bytes to `runoff::fuzzing::config`, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = runoff::fuzzing::config(data);
});
