//! Fuzz target: arbitrary bytes to `runoff::fuzzing::websocket_frames`, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = runoff::fuzzing::websocket_frames(data);
});
