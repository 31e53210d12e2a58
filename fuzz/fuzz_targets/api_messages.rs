#![no_main]
//! cargo-fuzz entry for the `api_messages` target (see `infhub_fuzz::targets::api_messages`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| infhub_fuzz::targets::api_messages(data));
