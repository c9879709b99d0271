//! `make fuzz`: [`rustygate::fuzzing::header_rules`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustygate::fuzzing::header_rules(data));
