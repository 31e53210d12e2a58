//! The restart measurement: fills a durable ledger (the node's embedded file store, with the
//! node's default snapshot interval and archive) with signed transfers, then times reopening
//! it the way a node restarts: load the newest snapshot, replay the log after it. The fill
//! leaves the worst tail on purpose: a whole snapshot interval of records after the last
//! snapshot. It also reports disk bytes per transfer before and after the final snapshot
//! (compacted segments move to `archive/`, the history). It drives the ledger and the node's
//! history index directly (as the node's writer does), without HTTP or a chain, so it
//! measures recovery alone: the ledger (snapshot + tail) and the history index (checkpoint +
//! the same tail), and then one history page read from the archive.

use alloy::primitives::{B256, U256};
use infhub_core::channel::CheckedDebit;
use infhub_core::ledger::{ChainEvent, Command, LedgerParams, LogPosition};
use infhub_core::messages::{Eip712Message, PaymentKind, Signed, SignedDebit};
use infhub_core::{Address, Amount, Debit, Domain, PrivateKey};
use infhub_hub::ledger::{HubLedger, HubLedgerConfig};
use infhub_ledger::fs::OsFs;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

const ACCOUNTS: usize = 1_000;
const BATCH: usize = 1_000;
/// The node's default `node.snapshot_every_records`.
pub(crate) const SNAPSHOT_EVERY_RECORDS: u64 = 100_000;
/// The node's default `limits.transfer_ids_kept`.
const TRANSFER_IDS_KEPT: usize = 1_000_000;
/// The node's default `node.max_segment_bytes`.
const MAX_SEGMENT_BYTES: u64 = 64 << 20;

/// Seed of the restart measurement's keys.
const SEED: u64 = 0x5245_5354;

pub(crate) fn key(i: u64) -> PrivateKey {
    crate::account_key(SEED, i as usize)
}

fn bytes_in(dir: &Path) -> u64 {
    crate::dir_bytes(dir)
}

/// Opens the hub's state in `dir` as the node does (ledger, then history), with snapshots and
/// history checkpoints every `snapshot_every_records` records.
pub(crate) fn open(
    dir: &Path,
    hub: &PrivateKey,
    params: LedgerParams,
    snapshot_every_records: u64,
) -> Result<HubLedger, String> {
    let config = HubLedgerConfig {
        data_dir: dir.to_path_buf(),
        max_segment_bytes: MAX_SEGMENT_BYTES,
        snapshot_every_records,
        max_batch_commands: BATCH + 1,
        background_snapshots: false,
    };
    HubLedger::open(OsFs, &config, params, hub.clone()).map_err(crate::fail)
}

/// Signs and checks `debits` on every core (the fill's signing is not what is measured).
fn sign_and_check(debits: Vec<(Debit, &PrivateKey)>, domain: &Domain) -> Vec<(Command, Option<CheckedDebit>)> {
    let one = |(d, k): &(Debit, &PrivateKey)| {
        let signed: SignedDebit = Signed { message: *d, signature: d.sign(domain, k) };
        (Command::Transfer(signed), CheckedDebit::check(signed, domain).ok())
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = debits.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> =
            debits.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>())).collect();
        parts.into_iter().flat_map(|p| p.join().expect("signing thread")).collect()
    })
}

/// Fills `dl` with `count` transfers around the ring of `users`, continuing from `next_id`.
pub(crate) fn fill(
    hl: &mut HubLedger,
    users: &[PrivateKey],
    nonce: &mut [u64],
    next_id: &mut u64,
    count: usize,
    domain: &Domain,
) -> Result<(), String> {
    let mut done = 0;
    while done < count {
        let n = BATCH.min(count - done).min(users.len());
        let mut debits = Vec::with_capacity(n);
        for j in 0..n {
            let payer = (*next_id as usize + j) % users.len();
            nonce[payer] += 1;
            let d = Debit {
                user: users[payer].address(),
                epoch: 1,
                nonce: nonce[payer],
                cumulative_debit: Amount(nonce[payer] as u128),
                locked_amount: Amount::ZERO,
                locks_root: B256::ZERO,
                kind: PaymentKind::Internal as u8,
                recipient: users[(payer + 1) % users.len()].address(),
                amount: Amount(1),
                payment_id: B256::from(U256::from(*next_id + j as u64 + 1)),
            };
            debits.push((d, &users[payer]));
        }
        for (r, _) in hl.commit(sign_and_check(debits, domain), false).map_err(crate::fail)?.results {
            r.map_err(|e| format!("a fill transfer was refused: {e}"))?;
        }
        *next_id += n as u64;
        done += n;
    }
    Ok(())
}

/// A fresh hub ledger in `dir` whose `users` each hold a funded channel.
pub(crate) fn open_with_genesis(
    dir: &Path,
    hub: &PrivateKey,
    params: LedgerParams,
    users: &[PrivateKey],
) -> Result<HubLedger, String> {
    let mut hl = open(dir, hub, params, SNAPSHOT_EVERY_RECORDS)?;
    let mut genesis = vec![ChainEvent::ReserveDeposited { reserve_after: Amount(1) }];
    for u in users {
        genesis.push(ChainEvent::ChannelOpened { user: u.address(), epoch: 1, opened_by: hub.address() });
        genesis.push(ChainEvent::Deposited { user: u.address(), epoch: 1, total_deposited: Amount(1 << 40) });
    }
    let commands: Vec<Command> = genesis
        .into_iter()
        .enumerate()
        .map(|(i, event)| Command::Chain { at: LogPosition { block: 1, log_index: i as u64 }, event })
        .collect();
    for chunk in commands.chunks(BATCH) {
        hl.execute(chunk.to_vec()).map_err(crate::fail)?;
    }
    Ok(hl)
}

/// The ledger parameters of a filled bench ledger of `accounts` accounts (the node's defaults
/// where it has them).
pub(crate) fn params_for(hub: &PrivateKey, domain: Domain, accounts: usize) -> LedgerParams {
    LedgerParams {
        domain,
        hub: hub.address(),
        max_withdrawal_expiry_blocks: 100,
        max_accounts: accounts,
        max_queued_payouts: 1,
        max_payment_amount: Amount(u64::MAX as u128),
        transfer_ids_kept: TRANSFER_IDS_KEPT,
    }
}

/// Runs the measurement with `transfers` transfers; returns the figures.
pub(crate) fn run(transfers: usize) -> Result<Value, String> {
    let dir = tempfile::Builder::new().prefix("infhub-restart-").tempdir().map_err(crate::fail)?;
    let hub = key(u64::MAX);
    let domain = Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) };
    let params = params_for(&hub, domain, ACCOUNTS);
    let users: Vec<PrivateKey> = (0..ACCOUNTS as u64).map(key).collect();
    let mut hl = open_with_genesis(dir.path(), &hub, params, &users)?;

    // Fill: payer i pays payer i+1 around a ring, snapshots every interval as the node takes
    // them; the last interval's worth of transfers goes in after an explicit snapshot with the
    // automatic ones off, so the restart replays a whole interval (the worst case).
    let started = Instant::now();
    let tail = transfers.min(SNAPSHOT_EVERY_RECORDS as usize - SNAPSHOT_EVERY_RECORDS as usize / BATCH - 1);
    let (mut nonce, mut next_id) = (vec![0u64; ACCOUNTS], 0u64);
    let mut last_report = Instant::now();
    while (next_id as usize) < transfers - tail {
        let n = (transfers - tail - next_id as usize).min(100 * BATCH);
        fill(&mut hl, &users, &mut nonce, &mut next_id, n, &domain)?;
        if last_report.elapsed().as_secs() >= 30 {
            println!("  filled {next_id} of {transfers} transfers ({:.0} s)", started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
    }
    hl.snapshot().map_err(crate::fail)?;
    drop(hl);
    let mut hl = open(dir.path(), &hub, params, 0)?;
    fill(&mut hl, &users, &mut nonce, &mut next_id, tail, &domain)?;
    let fill_secs = started.elapsed().as_secs_f64();
    let state = hl.ledger().clone();
    let log_bytes = bytes_in(dir.path());
    let snapshot_bytes = crate::dir_bytes_matching(dir.path(), ".snap");
    let history_bytes = bytes_in(&dir.path().join("history"));
    let entries = hl.history().entries_count();
    drop(hl);

    // The node's restart: the ledger, then the history index from its checkpoint.
    let t = Instant::now();
    let mut hl = open(dir.path(), &hub, params, 0)?;
    let restart_secs = t.elapsed().as_secs_f64();
    let ledger_open_secs = hl.open_timings().ledger.as_secs_f64();
    let history = hl.history();
    if hl.ledger() != &state {
        return Err("the restart (snapshot + tail) did not reproduce the ledger".into());
    }
    if history.entries_count() != entries || history.last_seq() != state.next_seq - 1 {
        return Err(format!(
            "the history index reopened with {} entries up to seq {}, not {entries} up to {}",
            history.entries_count(),
            history.last_seq(),
            state.next_seq - 1
        ));
    }
    // One page of the oldest account's history, newest first, with its proofs signed; then
    // one deep in the archive.
    let user = users[0].address();
    let heads = history.heads(&user).ok_or("the first account has no history")?;
    let reader = history.reader();
    let t = Instant::now();
    let page = reader.page(&user, heads, u64::MAX, 50).map_err(crate::fail)?;
    let page_millis = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let deep = reader.page(&user, heads, state.next_seq / 10, 50).map_err(crate::fail)?;
    let deep_page_millis = t.elapsed().as_secs_f64() * 1e3;
    if page.len() < 50.min(transfers) || deep.iter().any(|e| e.seq >= state.next_seq / 10) {
        return Err(format!("history pages read back wrong: {} and {} entries", page.len(), deep.len()));
    }
    let recovery = hl.recovery();
    // After a final snapshot: what a restart would read, against what the history keeps.
    hl.snapshot().map_err(crate::fail)?;
    let live_bytes = bytes_in(dir.path()) - bytes_in(&dir.path().join("archive"));
    let archive_bytes = bytes_in(&dir.path().join("archive"));
    drop(hl);
    let t = Instant::now();
    let hl = open(dir.path(), &hub, params, 0)?;
    let restart_after_snapshot_secs = t.elapsed().as_secs_f64();
    if hl.ledger() != &state {
        return Err("the restart from the final snapshot did not reproduce the ledger".into());
    }
    let per = |b: u64| b as f64 / transfers as f64;
    Ok(json!({
        "transfers": transfers,
        "accounts": ACCOUNTS,
        "snapshotEveryRecords": SNAPSHOT_EVERY_RECORDS,
        "transferIdsKept": TRANSFER_IDS_KEPT,
        "fillSeconds": fill_secs,
        "restartSeconds": restart_secs,
        "ledgerOpenSeconds": ledger_open_secs,
        "historyOpenSeconds": restart_secs - ledger_open_secs,
        "historyIndexBytesPerTransfer": per(history_bytes),
        "historyPageMillis": page_millis,
        "historyDeepPageMillis": deep_page_millis,
        "snapshotSeq": recovery.snapshot_seq,
        "replayedRecords": recovery.replayed,
        "replayedRecordsPerSecond": recovery.replayed as f64 / ledger_open_secs,
        "snapshotBytes": snapshot_bytes,
        "restartAfterFinalSnapshotSeconds": restart_after_snapshot_secs,
        "logBytesPerTransfer": per(log_bytes),
        "liveBytesPerTransferAfterSnapshot": per(live_bytes),
        "archiveBytesPerTransfer": per(archive_bytes),
    }))
}
