#![no_main]
//! cargo-fuzz entry for the `chain_log` target (see `infhub_fuzz::targets::chain_log`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| infhub_fuzz::targets::chain_log(data));
