//! `--store-bench N`: the durable ledger alone on each of its stores, in the same run: N signed
//! payments in group commits of `BATCH`, on the embedded file store and on PostgreSQL (a
//! throwaway PostgreSQL 15 the bench starts on a loopback port, `synchronous_commit` on: each
//! commit waits for its WAL flush, as each file batch waits for its `fdatasync`). Prints each
//! store's payments per second, the p50 and p99 commit latency, and the ratio (issue 23's
//! target: PostgreSQL within 1.5× of the file store). Signing happens outside the timed part;
//! the ledger's own checks (signature recovery included) are inside it, the same for both.

use infhub_core::ledger::{ChainEvent, Command, Ledger, LedgerParams, LogPosition};
use infhub_core::messages::{PaymentKind, Signed};
use infhub_core::{Address, Amount, Domain, PrivateKey, B256, U256};
use infhub_ledger::durable::{DurableLedger, DurableParams};
use infhub_ledger::file::{FileStore, FileStoreOptions};
use infhub_ledger::store::LogStore;
use infhub_pg::server::LocalPostgres;
use infhub_pg::{PgStore, PgStoreOptions};
use serde_json::json;
use std::time::{Duration, Instant};

/// Payments per group commit.
const BATCH: usize = 64;
/// Accounts paying around a ring.
const USERS: usize = 256;
/// Most payments this mode runs.
pub(crate) const MAX_STORE_BENCH_PAYMENTS: usize = 1_000_000;

fn key(i: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&(0xB000 + i).to_be_bytes());
    PrivateKey::from_bytes(b).expect("key")
}

struct Figures {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Genesis and `n` payments on `store`; the timed figures.
fn drive<S: LogStore>(store: S, hub: &PrivateKey, users: &[PrivateKey], n: usize) -> Result<Figures, String> {
    let params = LedgerParams {
        domain: Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) },
        hub: hub.address(),
        max_withdrawal_expiry_blocks: 100,
        max_accounts: 10_000,
        max_queued_payouts: 1_000,
        max_payment_amount: Amount(1_000_000_000),
        transfer_ids_kept: 100_000,
    };
    let dp = DurableParams { snapshot_every_records: 100_000, max_batch_commands: 1_000 };
    let mut dl = DurableLedger::open(store, params, hub.clone(), dp).map_err(|e| format!("open: {e}"))?;
    let mut events = vec![ChainEvent::ReserveDeposited { reserve_after: Amount(1_000_000_000) }];
    for u in users {
        events.push(ChainEvent::ChannelOpened { user: u.address(), epoch: 1, opened_by: hub.address() });
        events.push(ChainEvent::Deposited { user: u.address(), epoch: 1, total_deposited: Amount(1_000_000_000) });
    }
    let genesis = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Command::Chain { at: LogPosition { block: 1, log_index: i as u64 }, event })
        .collect();
    dl.execute(genesis).map_err(|e| format!("genesis: {e}"))?;
    let mut latencies = Vec::with_capacity(n / BATCH + 1);
    let (mut done, mut id, mut round) = (0usize, 0u64, 0usize);
    let mut busy = Duration::ZERO;
    while done < n {
        let size = BATCH.min(n - done);
        let cmds = batch(dl.ledger(), users, round, size, &mut id);
        let t = Instant::now();
        for r in dl.execute(cmds).map_err(|e| format!("batch: {e}"))? {
            r.map_err(|e| format!("payment refused: {e}"))?;
        }
        let took = t.elapsed();
        busy += took;
        latencies.push(took);
        done += size;
        round += 1;
    }
    latencies.sort();
    Ok(Figures {
        per_sec: n as f64 / busy.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    })
}

/// One group commit of payments around the ring (one per payer, so each is valid in order).
fn batch(ledger: &Ledger, users: &[PrivateKey], round: usize, size: usize, id: &mut u64) -> Vec<Command> {
    (0..size)
        .map(|i| {
            let (a, b) = ((i + round * BATCH) % users.len(), (i + round * BATCH + 1) % users.len());
            *id += 1;
            let ch = &ledger.account(&users[a].address()).expect("account").channel;
            let d = ch
                .next_debit(PaymentKind::Internal, users[b].address(), Amount(1), B256::from(U256::from(*id)))
                .expect("debit");
            Command::Transfer(Signed::new(d, &ledger.params.domain, &users[a]))
        })
        .collect()
}

pub(crate) fn run_store_bench(n: usize, json_out: &std::path::Path) -> Result<(), String> {
    if n == 0 || n > MAX_STORE_BENCH_PAYMENTS {
        return Err(format!("--store-bench must be in 1..={MAX_STORE_BENCH_PAYMENTS}"));
    }
    let hub = key(0);
    let users: Vec<PrivateKey> = (1..=USERS as u64).map(key).collect();
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    println!("infhub-bench store: {n} signed payments in group commits of {BATCH}, {USERS} accounts");
    let file = FileStore::open(dir.path().join("file"), FileStoreOptions::default()).map_err(|e| e.to_string())?;
    let f = drive(file, &hub, &users, n)?;
    println!("file store:  {:>9.0} payments/s, commit p50 {:.2} ms, p99 {:.2} ms", f.per_sec, f.p50_ms, f.p99_ms);
    let server = LocalPostgres::start(dir.path()).map_err(|e| format!("postgres: {e}"))?;
    let store =
        PgStore::open(&PgStoreOptions::new(server.url(), "bench")).map_err(|e| format!("postgres store: {e}"))?;
    let p = drive(store, &hub, &users, n)?;
    drop(server);
    let ratio = f.per_sec / p.per_sec;
    println!("postgres:    {:>9.0} payments/s, commit p50 {:.2} ms, p99 {:.2} ms", p.per_sec, p.p50_ms, p.p99_ms);
    println!("ratio file/postgres: {ratio:.2} (issue 23's target: at most 1.5)");
    let out = json!({
        "payments": n, "batch": BATCH, "accounts": USERS,
        "file": {"perSec": f.per_sec, "p50Ms": f.p50_ms, "p99Ms": f.p99_ms},
        "postgres": {"perSec": p.per_sec, "p50Ms": p.p50_ms, "p99Ms": p.p99_ms},
        "ratioFileOverPostgres": ratio,
    });
    std::fs::write(json_out, serde_json::to_vec_pretty(&out).expect("json")).map_err(|e| e.to_string())
}
