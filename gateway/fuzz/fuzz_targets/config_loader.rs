//! `make fuzz`: [`rustygate::fuzzing::config_loader`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustygate::fuzzing::config_loader(data));
