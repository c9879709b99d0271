//! `make fuzz`: [`rustygate::fuzzing::plugin_abi`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustygate::fuzzing::plugin_abi(data));
