//! Fuzz target: arbitrary bytes to `runoff::fuzzing::websocket_frames`, which must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| runoff::fuzzing::websocket_frames(data));
