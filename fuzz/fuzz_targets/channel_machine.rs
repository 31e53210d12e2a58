#![no_main]
//! cargo-fuzz entry for the `channel_machine` target (see `infhub_fuzz::targets::channel_machine`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| infhub_fuzz::targets::channel_machine(data));
