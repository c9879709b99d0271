//! `make fuzz`: [`rustygate::fuzzing::jwt_token`] under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustygate::fuzzing::jwt_token(data));
