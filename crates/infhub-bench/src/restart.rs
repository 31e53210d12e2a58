//! The restart measurement: fills a durable ledger (the node's embedded file store) with
//! signed transfers, then times reopening it by full log replay and from a snapshot, and
//! reports disk bytes per transfer before and after the snapshot (the compacted segments move
//! to `archive/`, the history). It drives the ledger directly, without HTTP or a chain, so it
//! measures recovery alone.

use alloy::primitives::{B256, U256};
use infhub_core::ledger::{ChainEvent, Command, LedgerParams, LogPosition};
use infhub_core::messages::{Eip712Message, PaymentKind, Signed};
use infhub_core::{Address, Amount, Debit, Domain, PrivateKey};
use infhub_ledger::file::{FileStore, FileStoreOptions};
use infhub_ledger::{DurableLedger, DurableParams};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

const ACCOUNTS: usize = 1_000;
const BATCH: usize = 1_000;

/// Seed of the restart measurement's keys.
const SEED: u64 = 0x5245_5354;

fn key(i: u64) -> PrivateKey {
    crate::account_key(SEED, i as usize)
}

fn bytes_in(dir: &Path) -> u64 {
    crate::dir_bytes(dir)
}

fn open(dir: &Path, hub: &PrivateKey, params: LedgerParams) -> Result<DurableLedger<FileStore>, String> {
    let options = FileStoreOptions { max_segment_bytes: 64 << 20, snapshots_kept: 2, archive_compacted: true };
    let store = FileStore::open(dir, options).map_err(crate::fail)?;
    let dp = DurableParams { snapshot_every_records: 0, max_batch_commands: BATCH };
    DurableLedger::open(store, params, hub.clone(), dp).map_err(crate::fail)
}

/// Runs the measurement with `transfers` transfers; returns the figures.
pub fn run(transfers: usize) -> Result<Value, String> {
    let dir = tempfile::Builder::new().prefix("infhub-restart-").tempdir().map_err(crate::fail)?;
    let hub = key(u64::MAX);
    let domain = Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) };
    let params = LedgerParams {
        domain,
        hub: hub.address(),
        max_withdrawal_expiry_blocks: 100,
        max_accounts: ACCOUNTS,
        max_queued_payouts: 1,
        max_payment_amount: Amount(u64::MAX as u128),
    };
    let users: Vec<PrivateKey> = (0..ACCOUNTS as u64).map(key).collect();
    let mut dl = open(dir.path(), &hub, params)?;
    let mut genesis = vec![ChainEvent::ReserveDeposited { reserve_after: Amount(1) }];
    for u in &users {
        genesis.push(ChainEvent::ChannelOpened { user: u.address(), epoch: 1 });
        genesis.push(ChainEvent::Deposited { user: u.address(), epoch: 1, total_deposited: Amount(1 << 40) });
    }
    let commands: Vec<Command> = genesis
        .into_iter()
        .enumerate()
        .map(|(i, event)| Command::Chain { at: LogPosition { block: 1, log_index: i as u64 }, event })
        .collect();
    for chunk in commands.chunks(BATCH) {
        dl.execute(chunk.to_vec()).map_err(crate::fail)?;
    }

    // Fill: payer i pays payer i+1 around a ring; signing happens here, outside the timings.
    let fill = Instant::now();
    let mut nonce = vec![0u64; ACCOUNTS];
    let mut id = 0u64;
    while (id as usize) < transfers {
        let n = BATCH.min(transfers - id as usize).min(ACCOUNTS);
        let mut batch = Vec::with_capacity(n);
        for j in 0..n {
            let payer = (id as usize + j) % ACCOUNTS;
            nonce[payer] += 1;
            let d = Debit {
                user: users[payer].address(),
                epoch: 1,
                nonce: nonce[payer],
                cumulative_debit: Amount(nonce[payer] as u128),
                locked_amount: Amount::ZERO,
                locks_root: B256::ZERO,
                kind: PaymentKind::Internal as u8,
                recipient: users[(payer + 1) % ACCOUNTS].address(),
                amount: Amount(1),
                payment_id: B256::from(U256::from(id + j as u64 + 1)),
            };
            batch.push(Command::Transfer(Signed { message: d, signature: d.sign(&domain, &users[payer]) }));
        }
        for r in dl.execute(batch).map_err(crate::fail)? {
            r.map_err(|e| format!("a fill transfer was refused: {e}"))?;
        }
        id += n as u64;
    }
    let fill_secs = fill.elapsed().as_secs_f64();
    let state = dl.ledger().clone();
    let log_bytes = bytes_in(dir.path());
    drop(dl);

    let t = Instant::now();
    let mut dl = open(dir.path(), &hub, params)?;
    let replay_secs = t.elapsed().as_secs_f64();
    if dl.ledger() != &state {
        return Err("replay did not reproduce the ledger".into());
    }
    dl.snapshot().map_err(crate::fail)?;
    let live_bytes = bytes_in(dir.path()) - bytes_in(&dir.path().join("archive"));
    let archive_bytes = bytes_in(&dir.path().join("archive"));
    drop(dl);
    let t = Instant::now();
    let dl = open(dir.path(), &hub, params)?;
    let snapshot_secs = t.elapsed().as_secs_f64();
    if dl.ledger() != &state {
        return Err("the snapshot did not reproduce the ledger".into());
    }
    let per = |b: u64| b as f64 / transfers as f64;
    Ok(json!({
        "transfers": transfers,
        "accounts": ACCOUNTS,
        "fillSeconds": fill_secs,
        "restartByReplaySeconds": replay_secs,
        "replayedTransfersPerSecond": transfers as f64 / replay_secs,
        "restartFromSnapshotSeconds": snapshot_secs,
        "logBytesPerTransfer": per(log_bytes),
        "liveBytesPerTransferAfterSnapshot": per(live_bytes),
        "archiveBytesPerTransfer": per(archive_bytes),
    }))
}
