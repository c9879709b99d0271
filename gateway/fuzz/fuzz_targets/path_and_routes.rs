//! `make fuzz`: [`rustygate::fuzzing::path_and_routes`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustygate::fuzzing::path_and_routes(data));
