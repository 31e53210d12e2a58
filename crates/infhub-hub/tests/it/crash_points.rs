//! Every crash point of the hub's state: the ledger and its history together, as the node and
//! the simulator open them. A workload of payments (with snapshots, history checkpoints,
//! segment rotation and archiving) runs on the simulated disk with a crash after its k-th
//! file operation, for every k; each crashed disk restarts with every choice a real disk may
//! make (unsynced directory changes kept or lost; none, half or all of each file's unsynced
//! bytes). The state must open, the history must answer every acknowledged payment with its
//! receipt, and both must keep working.

use infhub_core::ledger::{ChainEvent, Command, Ledger, LedgerParams, LogPosition, Outcome};
use infhub_core::messages::{Eip712Message, PaymentKind, Signed, SignedDebit};
use infhub_core::{Address, Amount, Domain, PrivateKey, B256, U256};
use infhub_hub::ledger::{HubLedger, HubLedgerConfig};
use infhub_ledger::history::FirstResult;
use infhub_ledger::simfs::{FixedChoices, SimDisk};

const USERS: usize = 4;
const BATCHES: usize = 20;

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

/// Small segments and frequent snapshots and checkpoints, so the workload does all of it often.
fn open(disk: &SimDisk, hub: &PrivateKey) -> Result<HubLedger<SimDisk>, String> {
    let config = HubLedgerConfig {
        data_dir: "/crash/hub".into(),
        max_segment_bytes: 3_000,
        snapshot_every_records: 7,
        max_batch_commands: 100,
        background_snapshots: false,
    };
    HubLedger::open(disk.clone(), &config, params(hub), hub.clone()).map_err(|e| e.to_string())
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

/// The payments one batch applied, with their sequence numbers.
type Applied = Vec<(SignedDebit, u64)>;

/// The clean run: its batches, and for each batch the payments it applied.
fn workload(hub: &PrivateKey, users: &[PrivateKey]) -> (Vec<Vec<Command>>, Vec<Applied>) {
    let disk = SimDisk::new();
    let mut hl = open(&disk, hub).expect("a clean open");
    let mut events = vec![ChainEvent::ReserveDeposited { reserve_after: Amount(1_000_000) }];
    for u in users {
        events.push(ChainEvent::ChannelOpened { user: u.address(), epoch: 1, opened_by: hub.address() });
        events.push(ChainEvent::Deposited { user: u.address(), epoch: 1, total_deposited: Amount(10_000) });
    }
    let mut next: Vec<Command> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Command::Chain { at: LogPosition { block: 1, log_index: i as u64 }, event })
        .collect();
    let (mut batches, mut paid) = (Vec::new(), Vec::new());
    for b in 0..=BATCHES {
        let commit = hl.commit(next.iter().cloned().map(|c| (c, None)).collect(), false).expect("a clean batch");
        let mut applied = Vec::new();
        for (c, (r, seq)) in next.iter().zip(commit.results) {
            assert!(r.is_ok(), "every command of the workload applies: {r:?}");
            if let (Command::Transfer(d), Ok(Outcome::Paid { .. })) = (c, r) {
                applied.push((*d, seq.expect("logged")));
            }
        }
        batches.push(next);
        paid.push(applied);
        next = payments(hl.ledger(), users, b);
    }
    (batches, paid)
}

fn run_until_crash(disk: &SimDisk, hub: &PrivateKey, batches: &[Vec<Command>]) -> usize {
    let Ok(mut hl) = open(disk, hub) else { return 0 };
    for (i, b) in batches.iter().enumerate() {
        if hl.commit(b.iter().cloned().map(|c| (c, None)).collect(), false).is_err() {
            return i;
        }
    }
    batches.len()
}

/// Every payment of the first `acked` batches is in the history, with its receipt.
fn check_history(hl: &HubLedger<SimDisk>, paid: &[Applied], acked: usize, what: &str) {
    let history = hl.history();
    assert_eq!(history.last_seq(), hl.ledger().next_seq - 1, "{what}: the history indexes the whole log");
    let reader = history.reader();
    let domain = hl.ledger().params.domain;
    for (d, seq) in paid[..acked].iter().flatten() {
        let m = d.message;
        let heads = history.heads(&m.user).unwrap_or_else(|| panic!("{what}: no history for {}", m.user));
        let found = reader.payment_at(&m.user, heads, &m.payment_id, *seq);
        match found {
            Ok(Some(FirstResult::Paid(p))) if p.receipt.message.debit_digest == m.digest(&domain) => {}
            other => panic!("{what}: payment at seq {seq} reads back as {other:?}"),
        }
    }
}

#[test]
fn every_crash_point_of_the_ledger_and_its_history_reopens_with_every_acknowledged_payment() {
    let hub = key(0x0048_5542);
    let users: Vec<PrivateKey> = (0..USERS as u64).map(|i| key(0xA000 + i)).collect();
    let (batches, paid) = workload(&hub, &users);
    let total_ops = {
        let disk = SimDisk::new();
        assert_eq!(run_until_crash(&disk, &hub, &batches), batches.len());
        disk.ops()
    };
    let mut checked = 0;
    for k in 0..=total_ops {
        let disk = SimDisk::new();
        disk.schedule_crash(k);
        let acked = run_until_crash(&disk, &hub, &batches);
        for choices in FixedChoices::all() {
            let what = format!("crash after op {k}, {choices:?}");
            let restarted = disk.fork();
            restarted.restart(&mut { choices });
            let mut hl = open(&restarted, &hub)
                .unwrap_or_else(|e| panic!("{what}: does not open: {e}\ndisk: {:?}", restarted.listing()));
            check_history(&hl, &paid, acked, &what);
            // It keeps working: the ledger takes a new payment and the history answers for it.
            // The genesis again if it did not all survive (its events apply once, by position).
            let more = match acked {
                0 => batches[0].clone(),
                _ => payments(hl.ledger(), &users, 1_000 + k as usize),
            };
            let commit = hl.commit(more.iter().cloned().map(|c| (c, None)).collect(), false).expect("a new batch");
            let mut fresh = Vec::new();
            for (c, (r, seq)) in more.iter().zip(commit.results) {
                if let (Command::Transfer(d), Ok(Outcome::Paid { .. })) = (c, r) {
                    fresh.push((*d, seq.expect("logged")));
                }
            }
            let transfers = more.iter().filter(|c| matches!(c, Command::Transfer(_))).count();
            assert_eq!(fresh.len(), transfers, "{what}: the new payments apply");
            drop(hl);
            let again = open(&restarted, &hub).unwrap_or_else(|e| panic!("{what}: a clean reopen: {e}"));
            check_history(&again, &[fresh], 1, &format!("{what}, reopened after a new batch"));
            checked += 1;
        }
    }
    println!("{} crash points ({checked} restarts) of a workload of {total_ops} file operations", total_ops + 1);
    assert!(total_ops > 200, "the workload is too small to reach snapshots and checkpoints: {total_ops}");
}
