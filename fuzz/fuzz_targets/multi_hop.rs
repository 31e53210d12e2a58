#![no_main]
//! cargo-fuzz entry for the `multi_hop` target (see `infhub_fuzz::targets::multi_hop`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| infhub_fuzz::targets::multi_hop(data));
