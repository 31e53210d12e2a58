//! Every crash point of the file store, enumerated (issue 25). A workload that rotates
//! segments, writes snapshots and archives covered segments runs on the simulated disk with a
//! crash after its k-th file operation, for every k; each crashed disk is restarted with every
//! choice a real disk may make (unsynced directory changes kept or lost; none, half or all of
//! each file's unsynced bytes), and must open to exactly the acknowledged state (or that plus
//! any prefix of the batch in flight: its records stand alone and none was answered), with a
//! history that holds every record once, and must keep working.

use infhub_core::ledger::{ChainEvent, Command, Ledger, LedgerParams, LogPosition};
use infhub_core::messages::{PaymentKind, Signed};
use infhub_core::{Address, Amount, Domain, PrivateKey, B256, U256};
use infhub_ledger::durable::{DurableLedger, DurableParams};
use infhub_ledger::file::{FileStore, FileStoreOptions};
use infhub_ledger::simfs::{FixedChoices, SimDisk};
use std::path::PathBuf;

const USERS: usize = 4;
const BATCHES: usize = 24;

fn key(seed: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&seed.to_be_bytes());
    PrivateKey::from_bytes(b).expect("key")
}

fn params(hub: &PrivateKey) -> LedgerParams {
    LedgerParams {
        domain: Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) },
        hub: hub.address(),
        max_withdrawal_expiry_blocks: 100,
        max_accounts: 100,
        max_queued_payouts: 100,
        max_payment_amount: Amount(1_000_000_000),
        transfer_ids_kept: 1_000,
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/crash/store")
}

/// Small segments and frequent snapshots, so the workload rotates, snapshots and archives
/// many times.
fn open(disk: &SimDisk, hub: &PrivateKey) -> Result<DurableLedger<FileStore<SimDisk>>, String> {
    let options = FileStoreOptions { max_segment_bytes: 3_000, snapshots_kept: 2, archive_compacted: true };
    let store = FileStore::open_on(disk.clone(), dir(), options).map_err(|e| e.to_string())?;
    let dp = DurableParams { snapshot_every_records: 9, max_batch_commands: 100 };
    DurableLedger::open(store, params(hub), hub.clone(), dp).map_err(|e| e.to_string())
}

/// The workload: a genesis batch, then batches of payments around the ring of users; and the
/// ledger after each acknowledged batch (index 0: nothing acknowledged).
fn workload(hub: &PrivateKey, users: &[PrivateKey]) -> (Vec<Vec<Command>>, Vec<Ledger>, Vec<Command>) {
    let disk = SimDisk::new();
    let mut dl = open(&disk, hub).expect("a clean open");
    let mut states = vec![dl.ledger().clone()];
    let mut events = vec![ChainEvent::ReserveDeposited { reserve_after: Amount(1_000_000) }];
    for u in users {
        events.push(ChainEvent::ChannelOpened { user: u.address(), epoch: 1, opened_by: hub.address() });
        events.push(ChainEvent::Deposited { user: u.address(), epoch: 1, total_deposited: Amount(10_000) });
    }
    let genesis: Vec<Command> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Command::Chain { at: LogPosition { block: 1, log_index: i as u64 }, event })
        .collect();
    let mut batches = Vec::new();
    let mut next = genesis;
    for b in 0..=BATCHES {
        for r in dl.execute(next.clone()).expect("a batch of the clean run") {
            r.expect("every command of the workload applies");
        }
        batches.push(next);
        states.push(dl.ledger().clone());
        // Built against the state after this batch, so a crashed run replays the same batches.
        next = payments(dl.ledger(), users, b);
    }
    let log = dl.history().expect("the clean run's log").into_iter().map(|r| r.command).collect();
    (batches, states, log)
}

/// The ledger after the first `records` records of the clean run's log, sealed as a reopen
/// seals an unsealed tail.
fn replayed(hub: &PrivateKey, log: &[Command], records: usize) -> Ledger {
    let mut l = Ledger::new(params(hub));
    for c in &log[..records] {
        l.apply(hub, c.clone()).expect("the clean log replays");
    }
    if l.unsealed_proofs() > 0 {
        l.apply(hub, Command::SealProofs).expect("seal");
    }
    l
}

/// Two payments around the ring, built against `ledger`.
fn payments(ledger: &Ledger, users: &[PrivateKey], b: usize) -> Vec<Command> {
    (0..2)
        .map(|i| {
            let (a, to) = ((b + i) % USERS, (b + i + 1) % USERS);
            let ch = &ledger.account(&users[a].address()).expect("account").channel;
            let id = B256::from(U256::from(b * 10 + i));
            let d =
                ch.next_debit(PaymentKind::Internal, users[to].address(), Amount(1 + i as u128), id).expect("debit");
            Command::Transfer(Signed::new(d, &ledger.params.domain, &users[a]))
        })
        .collect()
}

/// Runs the batches on `disk` until the scheduled crash strikes; returns how many were
/// acknowledged.
fn run_until_crash(disk: &SimDisk, hub: &PrivateKey, batches: &[Vec<Command>]) -> usize {
    let Ok(mut dl) = open(disk, hub) else { return 0 };
    for (i, b) in batches.iter().enumerate() {
        if dl.execute(b.clone()).is_err() {
            return i;
        }
    }
    batches.len()
}

#[test]
fn every_crash_point_of_rotation_snapshot_and_archive_reopens_to_the_acknowledged_state() {
    let hub = key(0x0048_5542);
    let users: Vec<PrivateKey> = (0..USERS as u64).map(|i| key(0xA000 + i)).collect();
    let (batches, states, log) = workload(&hub, &users);
    let records_after = |batches: usize| states[batches.min(states.len() - 1)].next_seq as usize - 1;
    // How many file operations the whole workload performs.
    let total_ops = {
        let disk = SimDisk::new();
        assert_eq!(run_until_crash(&disk, &hub, &batches), batches.len());
        disk.ops()
    };
    let mut checked = 0;
    let mut archived_seen = false;
    for k in 0..=total_ops {
        let disk = SimDisk::new();
        disk.schedule_crash(k);
        let acked = run_until_crash(&disk, &hub, &batches);
        for choices in FixedChoices::all() {
            let restarted = disk.fork();
            restarted.restart(&mut { choices });
            let listing = restarted.listing();
            archived_seen |= listing.iter().any(|(name, _)| name.contains("/archive/"));
            let mut dl = open(&restarted, &hub).unwrap_or_else(|e| {
                panic!("crash after op {k}, {choices:?}: the store does not open: {e}\ndisk: {listing:?}")
            });
            let got = dl.ledger().clone();
            // Every acknowledged record, perhaps a prefix of the batch in flight, nothing else.
            let kept = got.next_seq as usize - 1 - usize::from(dl.recovery().sealed_on_open);
            assert!(
                (records_after(acked)..=records_after(acked + 1)).contains(&kept),
                "crash after op {k}, {choices:?}: {acked} batches acknowledged ({} records), {kept} records recovered",
                records_after(acked)
            );
            assert!(
                got == replayed(&hub, &log, kept),
                "crash after op {k}, {choices:?}: the reopened ledger is not the log's first {kept} records"
            );
            let matches = |i: usize| states.get(i).is_some_and(|s| *s == got);
            // The history holds every record once, in order.
            let history = dl.history().unwrap_or_else(|e| panic!("crash after op {k}, {choices:?}: history: {e}"));
            assert_eq!(history.len() as u64, got.next_seq - 1, "crash after op {k}, {choices:?}: history length");
            assert!(
                history.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1),
                "crash after op {k}, {choices:?}: history out of order"
            );
            // The reader (by the segments' offset indexes, as the history index reads) finds
            // every record too.
            if got.next_seq > 1 {
                let read = dl.store().reader().read_range(1, got.next_seq - 1);
                let read = read.unwrap_or_else(|e| panic!("crash after op {k}, {choices:?}: the reader: {e}"));
                assert!(
                    read.iter().map(|r| r.seq).eq(history.iter().map(|r| r.seq)),
                    "crash after op {k}, {choices:?}: the reader and the log disagree"
                );
            }
            // And it keeps working: the next batch (if any) applies and survives a clean reopen.
            let next = if matches(acked + 1) { acked + 1 } else { acked };
            if let Some(b) = batches.get(next).filter(|_| matches(next)) {
                dl.execute(b.clone()).unwrap_or_else(|e| panic!("crash after op {k}, {choices:?}: next batch: {e}"));
                let after = dl.ledger().clone();
                drop(dl);
                let again = open(&restarted, &hub).expect("a clean reopen");
                assert_eq!(*again.ledger(), after, "crash after op {k}, {choices:?}: reopened after the next batch");
            }
            checked += 1;
        }
    }
    println!("{} crash points ({checked} restarts) of a workload of {total_ops} file operations", total_ops + 1);
    assert!(archived_seen, "the workload never archived a segment: it tests too little");
    assert!(total_ops > 200, "the workload is too small to reach rotation, snapshots and archiving: {total_ops}");
}
