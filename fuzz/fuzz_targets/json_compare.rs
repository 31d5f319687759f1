//! Fuzz target: arbitrary bytes to `runoff::fuzzing::json_compare`, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = runoff::fuzzing::json_compare(data);
});
