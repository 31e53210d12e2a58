#![no_main]
//! cargo-fuzz entry for the `log_segment` target (see `infhub_fuzz::targets::log_segment`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| infhub_fuzz::targets::log_segment(data));
