#![no_main]
//! cargo-fuzz entry for the `ledger_machine` target (see `infhub_fuzz::targets::ledger_machine`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| infhub_fuzz::targets::ledger_machine(data));
