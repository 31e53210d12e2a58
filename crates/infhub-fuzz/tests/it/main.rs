//! Runs every fuzz target over its committed corpus (`fuzz/corpus/<target>/`) and over a
//! seeded batch of random inputs, on the stable toolchain. A panic is a failure; the seed of
//! the random batch is printed so a failure replays (`INFHUB_FUZZ_SEED`).

use infhub_fuzz::targets::ALL;
use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    manifest_dir().join("../../fuzz/corpus").join(target)
}

#[test]
fn every_target_runs_its_committed_corpus() {
    for (name, target) in ALL {
        let dir = corpus_dir(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut n = 0;
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "target {name} panicked on {}", path.display());
            n += 1;
        }
        assert!(n >= 3, "target {name} has only {n} corpus files in {}", dir.display());
        println!("{name}: {n} corpus inputs ok");
    }
}

#[test]
fn every_target_survives_seeded_random_inputs() {
    let seed: u64 = std::env::var("INFHUB_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
    });
    println!("INFHUB_FUZZ_SEED={seed}");
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, target) in ALL {
        let runs = if *name == "log_segment" { 30 } else { 150 };
        for run in 0..runs {
            let len = (next() % 600) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "target {name} panicked on random input {run} of seed {seed}: {data:?}");
        }
    }
}

/// Rewrites the seed corpus (`cargo test -p infhub-fuzz -- --ignored write_seed_corpus`).
#[test]
#[ignore]
fn write_seed_corpus() {
    use infhub_core::messages::Signed;
    use infhub_core::{Amount, Domain, PaymentKind, PrivateKey};
    let key = PrivateKey::from_bytes([0x42; 32]).expect("key");
    let domain = Domain { chain_id: 31_337, verifying_contract: alloy_primitives::Address::repeat_byte(0xC0) };
    let ch = infhub_core::channel::ChannelState::opened(key.address(), 1);
    let debit = ch
        .next_debit(PaymentKind::Internal, alloy_primitives::Address::repeat_byte(3), Amount(5), [9u8; 32].into())
        .expect("debit");
    let credit = ch.next_credit(Amount(7)).expect("credit");
    let w = ch.next_withdrawal(Amount(1), 10).expect("withdrawal");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(name), data).expect("write");
    };
    write(
        "api_messages",
        "debit.json",
        serde_json::to_string(&Signed::new(debit, &domain, &key)).expect("j").as_bytes(),
    );
    write(
        "api_messages",
        "credit.json",
        serde_json::to_string(&Signed::new(credit, &domain, &key)).expect("j").as_bytes(),
    );
    write(
        "api_messages",
        "withdrawal.json",
        serde_json::to_string(&Signed::new(w, &domain, &key)).expect("j").as_bytes(),
    );
    write("api_messages", "broken.json", b"{\"message\":{\"user\":\"0x12\"},\"signature\":\"0x\"}");
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for target in ["chain_log", "channel_machine", "ledger_machine"] {
        for i in 0..4 {
            let data: Vec<u8> = (0..(64 + 96 * i)).map(|_| next() as u8).collect();
            write(target, &format!("random-{i}"), &data);
        }
    }
    // A real segment body: records written by the file store, then a torn copy.
    let dir = tempfile::tempdir().expect("tmp");
    {
        use infhub_core::ledger::{Command, Outcome};
        use infhub_ledger::{LogRecord, LogStore};
        let mut store = infhub_ledger::file::FileStore::open(dir.path(), Default::default()).expect("store");
        let records: Vec<LogRecord> = (1..=3)
            .map(|seq| LogRecord {
                seq,
                at_ms: seq,
                command: Command::Block(seq),
                outcome: Outcome::Applied(Vec::new()),
            })
            .collect();
        store.append(&records).expect("append");
    }
    let seg = std::fs::read(dir.path().join("log-00000000000000000001.seg")).expect("segment");
    let body = &seg[8..];
    write("log_segment", "three-records", body);
    write("log_segment", "torn", &body[..body.len() - 3]);
    let mut damaged = body.to_vec();
    damaged[12] ^= 0xFF;
    write("log_segment", "damaged-first", &damaged);
    write("log_segment", "empty", b"");
}

/// This crate's directory as cargo sets it when running the test (not the compile-time path,
/// which a build cache shared between checkouts can carry over from another clone).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The multi-hop corpus reaches past the decoders: its invoice and user address decode.
#[test]
fn the_multi_hop_corpus_decodes() {
    let dir = corpus_dir("multi_hop");
    let invoice = std::fs::read(dir.join("invoice.json")).expect("invoice seed");
    let decoded = serde_json::from_slice::<infhub_core::invoice::SignedInvoice>(&invoice[1..]);
    assert!(decoded.is_ok(), "{decoded:?}");
    let address = std::fs::read(dir.join("user_address.txt")).expect("address seed");
    let parsed = std::str::from_utf8(&address[1..]).expect("utf8").parse::<infhub_core::invoice::UserAddress>();
    assert!(parsed.is_ok(), "{parsed:?}");
}
