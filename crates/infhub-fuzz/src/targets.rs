//! The targets. Every one is listed in [`ALL`] with its name (the corpus directory name).

use crate::Input;
use alloy::sol_types::SolEvent;
use alloy_primitives::{Address, Bytes, B256};
use infhub_chain::bindings::IInfHub;
use infhub_chain::events::{decode_event, RawLog};
use infhub_core::channel::{self, ChannelParams, ChannelState, Input as ChannelInput, Role};
use infhub_core::ledger::{ChainEvent, Command, Ledger, LedgerParams, LogPosition};
use infhub_core::messages::{HubSigned, Signed, SignedCredit, SignedDebit};
use infhub_core::{Amount, Domain, PaymentKind, PrivateKey, Registration, Withdrawal};
use infhub_ledger::file::{FileStore, FileStoreOptions};
use infhub_ledger::LogStore;

/// A fuzz target.
pub type Target = fn(&[u8]);

/// Every target with its name.
pub const ALL: &[(&str, Target)] = &[
    ("api_messages", api_messages),
    ("chain_log", chain_log),
    ("log_segment", log_segment),
    ("channel_machine", channel_machine),
    ("ledger_machine", ledger_machine),
    ("multi_hop", multi_hop),
];

fn key(n: u8) -> PrivateKey {
    let mut b = [0u8; 32];
    b[31] = n.max(1);
    b[0] = 0x11;
    PrivateKey::from_bytes(b).expect("valid fixed key")
}

fn domain() -> Domain {
    Domain { chain_id: 31_337, verifying_contract: Address::repeat_byte(0xC0) }
}

/// The JSON decoders of the API and wallet (debits, credits, withdrawals, registrations):
/// a value decodes and re-encodes to itself, and its signature checks answer without panic.
pub fn api_messages(data: &[u8]) {
    let d = domain();
    if let Ok(m) = serde_json::from_slice::<SignedDebit>(data) {
        let again: SignedDebit = serde_json::from_str(&serde_json::to_string(&m).expect("encode")).expect("decode");
        assert_eq!(again, m, "debit JSON round trip");
        let _ = m.verify(&d, m.message.user);
        let _ = PaymentKind::from_u8(m.message.kind);
    }
    if let Ok(m) = serde_json::from_slice::<SignedCredit>(data) {
        let again: SignedCredit = serde_json::from_str(&serde_json::to_string(&m).expect("encode")).expect("decode");
        assert_eq!(again, m, "credit JSON round trip");
        let _ = m.verify(&d, key(1).address());
    }
    if let Ok(m) = serde_json::from_slice::<Signed<Withdrawal>>(data) {
        let _ = m.verify(&d, m.message.user);
    }
    if let Ok(m) = serde_json::from_slice::<Signed<Registration>>(data) {
        let _ = m.verify(&d, key(2).address());
    }
}

/// The contract-log decoder: any topics and data decode to an event, to "not ours", or to a
/// specific error.
pub fn chain_log(data: &[u8]) {
    let mut input = Input::new(data);
    let signatures = [
        IInfHub::ChannelOpened::SIGNATURE_HASH,
        IInfHub::Deposited::SIGNATURE_HASH,
        IInfHub::Withdrawn::SIGNATURE_HASH,
        IInfHub::ExitStarted::SIGNATURE_HASH,
        IInfHub::DebitSubmitted::SIGNATURE_HASH,
        IInfHub::CreditSubmitted::SIGNATURE_HASH,
        IInfHub::DebitRealized::SIGNATURE_HASH,
        IInfHub::Settled::SIGNATURE_HASH,
        IInfHub::ReserveDeposited::SIGNATURE_HASH,
        IInfHub::CustodialDeposited::SIGNATURE_HASH,
        IInfHub::ReserveWithdrawn::SIGNATURE_HASH,
        IInfHub::PayoutBatchExecuted::SIGNATURE_HASH,
        IInfHub::CheckpointPosted::SIGNATURE_HASH,
        IInfHub::HubHaltedByComplaint::SIGNATURE_HASH,
        IInfHub::DebitChallenged::SIGNATURE_HASH,
        IInfHub::DebitChallengeAnswered::SIGNATURE_HASH,
    ];
    let n = input.below(5) as usize;
    let mut topics = Vec::with_capacity(n);
    for i in 0..n {
        let choice = input.u8();
        if i == 0 && (choice as usize) < signatures.len() * 16 {
            topics.push(signatures[choice as usize % signatures.len()]);
        } else {
            topics.push(B256::from(input.bytes32()));
        }
    }
    let log = RawLog {
        block_number: input.u64(),
        block_hash: B256::ZERO,
        log_index: input.u64(),
        address: Address::ZERO,
        topics,
        data: Bytes::copy_from_slice(input.rest()),
        transaction_hash: None,
    };
    let _ = decode_event(&log);
}

/// The log store's recovery: a segment holding arbitrary bytes after its header opens (a torn
/// tail is cut) or is refused as corrupt; it never panics, and what it returns is in order.
pub fn log_segment(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = b"INFHLOG1".to_vec();
    bytes.extend_from_slice(data);
    std::fs::write(dir.path().join("log-00000000000000000001.seg"), &bytes).expect("write segment");
    let Ok(mut store) = FileStore::open(dir.path(), FileStoreOptions::default()) else { return };
    if let Ok(records) = store.load_records(0) {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1, "records returned out of order");
        }
    }
}

/// The channel state machine at both ends, driven by a byte-chosen sequence of debits,
/// credits, withdrawal requests, blocks and chain events, valid and invalid. A refused input
/// leaves the state unchanged; an accepted one keeps the balance non-negative (asserted by
/// the machine itself) and the nonces monotonic.
pub fn channel_machine(data: &[u8]) {
    let mut input = Input::new(data);
    let user = key(7);
    let hub = key(1);
    let role = if input.u8().is_multiple_of(2) { Role::Hub } else { Role::User };
    let params = ChannelParams { domain: domain(), hub: hub.address(), role, max_withdrawal_expiry_blocks: 100 };
    let mut state = ChannelState::opened(user.address(), 1);
    let mut steps = 0;
    while !input.is_empty() && steps < 64 {
        steps += 1;
        let small = |input: &mut Input| Amount(input.below(1_000) as u128);
        let op = input.u8() % 15;
        let ch_input = match op {
            12 | 13 => {
                let Some(lock_input) = lock_input(&mut input, &state, &params, op == 12, [&user, &hub]) else {
                    continue;
                };
                lock_input
            }
            0 | 1 => {
                let amount = small(&mut input);
                let recipient = Address::repeat_byte(input.u8());
                let Ok(mut d) = state.next_debit(PaymentKind::Internal, recipient, amount, B256::from(input.bytes32()))
                else {
                    continue;
                };
                match input.u8() % 6 {
                    0 => d.nonce = d.nonce.wrapping_add(input.u64() % 3).wrapping_sub(1),
                    1 => d.cumulative_debit = Amount(input.u128()),
                    2 => d.kind = input.u8(),
                    3 => d.epoch = input.u64() % 3,
                    _ => {}
                }
                let signer = if input.u8().is_multiple_of(8) { &hub } else { &user };
                ChannelInput::Debit(Signed::new(d, &params.domain, signer))
            }
            2 | 3 => {
                let Ok(mut c) = state.next_credit(small(&mut input)) else { continue };
                if input.u8().is_multiple_of(5) {
                    c.nonce = c.nonce.wrapping_add(input.u64() % 4);
                }
                let signer = if input.u8().is_multiple_of(8) { &user } else { &hub };
                ChannelInput::Credit(HubSigned::new(c, &params.domain, signer))
            }
            4 => {
                let Ok(w) = state.next_withdrawal(small(&mut input), state.block + input.below(200)) else { continue };
                let sig = Signed::new(w, &params.domain, &user).signature;
                ChannelInput::WithdrawalRequest { withdrawal: w, user_signature: sig, block: state.block }
            }
            5 => ChannelInput::Block(state.block + input.below(40)),
            6 => ChannelInput::ChainDeposited {
                epoch: state.epoch,
                total_deposited: Amount(state.deposited.0 + input.below(2_000) as u128),
            },
            7 => ChannelInput::ChainWithdrawn {
                epoch: state.epoch,
                total_withdrawn: state.withdrawal_hold.map_or(state.withdrawn, |h| h.cumulative_withdrawn),
            },
            8 => ChannelInput::ChainExitStarted { epoch: state.epoch, settle_block: state.block + input.below(30) },
            9 => {
                ChannelInput::ChainDebitSubmitted { epoch: state.epoch, cumulative: Amount(input.below(5_000) as u128) }
            }
            10 => ChannelInput::ChainCreditSubmitted {
                epoch: state.epoch,
                cumulative: Amount(input.below(5_000) as u128),
            },
            11 => {
                // A refused debit with its refund: any amount (the balance is not checked), a
                // refund of the next credit that may be short, exact or generous.
                let amount = Amount(input.below(5_000) as u128);
                let recipient = Address::repeat_byte(input.u8());
                let Ok(d) = state.next_debit(PaymentKind::Internal, recipient, amount, B256::from(input.bytes32()))
                else {
                    continue;
                };
                let Ok(mut c) = state.next_credit(amount) else { continue };
                c.cumulative_credit = Amount(c.cumulative_credit.0.saturating_sub(1) + input.below(3) as u128);
                let signer = if input.u8().is_multiple_of(8) { &user } else { &hub };
                ChannelInput::DebitRefunded {
                    debit: Signed::new(d, &params.domain, &user),
                    refund: HubSigned::new(c, &params.domain, signer),
                }
            }
            _ => ChannelInput::ChainSettled { epoch: state.epoch, paid: Amount(input.below(5_000) as u128) },
        };
        let before = state.clone();
        match channel::step(&state, &params, ch_input) {
            Ok((next, _effects)) => {
                assert!(next.debit_nonce() >= before.debit_nonce(), "debit nonce went back");
                assert!(next.credit_nonce() >= before.credit_nonce(), "credit nonce went back");
                assert!(next.cumulative_debit() >= before.cumulative_debit(), "debit total went back");
                assert!(next.cumulative_credit() >= before.cumulative_credit(), "credit total went back");
                if next.debit_nonce() > before.debit_nonce() && next.credit_nonce() > before.credit_nonce() {
                    // A refund: the balance never falls.
                    assert!(next.balance().ok() >= before.balance().ok(), "a refund lowered the balance");
                }
                assert!(next.balance().is_ok(), "negative balance accepted");
                assert_eq!(next.signed_debit_locks().1, next.debit_locks.root(&params.domain).0, "debit root");
                assert_eq!(next.signed_credit_locks().1, next.credit_locks.root(&params.domain).0, "credit root");
                state = next;
            }
            Err(_) => assert_eq!(state, before, "a refused input changed the state"),
        }
    }
}

/// A lock proof for the channel machine (spec §5.17a): on the user's debits or the hub's
/// credits, a byte-chosen change (add, settle with the right or a wrong scalar, drop, cancel)
/// over a few lock ids, sometimes with a tampered root or signer.
fn lock_input(
    input: &mut Input<'_>,
    state: &ChannelState,
    params: &ChannelParams,
    on_debit: bool,
    [user, hub]: [&PrivateKey; 2],
) -> Option<ChannelInput> {
    use infhub_core::channel::LockChange;
    use infhub_core::point_lock::{Lock, Scalar};
    let id = u64::from(input.u8() % 8);
    let scalar = |id: u64| Scalar::from_bytes(alloy_primitives::keccak256(id.to_be_bytes())).expect("below n");
    let lock_id = B256::repeat_byte(id as u8 + 1);
    let change = match input.u8() % 4 {
        0 => LockChange::Add(Lock {
            lock_id,
            amount: Amount(input.below(500) as u128),
            expiry_block: state.block + input.below(80),
            point: scalar(id).point().address(),
        }),
        1 => LockChange::Settle { lock_id, scalar: scalar(id + u64::from(input.u8().is_multiple_of(4))) },
        2 => LockChange::Drop { lock_id },
        _ => LockChange::Cancel { lock_id },
    };
    let tamper = input.u8() % 8;
    if on_debit {
        let mut d = state.next_lock_debit(params, &change).ok()?;
        if tamper == 0 {
            d.locks_root = B256::from(input.bytes32());
        } else if tamper == 1 {
            d.locked_amount = Amount(input.below(1_000) as u128);
        }
        let signer = if tamper == 2 { hub } else { user };
        Some(ChannelInput::DebitLock { debit: Signed::new(d, &params.domain, signer), change })
    } else {
        let mut c = state.next_lock_credit(params, &change, 0).ok()?;
        if tamper == 0 {
            c.locks_root = B256::from(input.bytes32());
        } else if tamper == 1 {
            c.cumulative_credit = Amount(input.below(1_000) as u128);
        }
        let signer = if tamper == 2 { user } else { hub };
        Some(ChannelInput::CreditLock { credit: HubSigned::new(c, &params.domain, signer), change })
    }
}

/// A lock command for the ledger machine (spec §5.17b): the user's lock debit or the hub's lock
/// credit, built from the channel at the ledger's block as a wallet would, then perhaps broken.
fn lock_command(
    input: &mut Input<'_>,
    mut ch: ChannelState,
    ledger: &Ledger,
    on_debit: bool,
    [user, hub]: [&PrivateKey; 2],
    payee: Address,
) -> Option<Command> {
    use infhub_core::channel::LockChange;
    ch.block = ledger.block;
    let as_transfer = input.u8().is_multiple_of(2);
    let p = ChannelParams {
        domain: ledger.params.domain,
        hub: hub.address(),
        role: Role::User,
        max_withdrawal_expiry_blocks: 100,
    };
    match lock_input(input, &ch, &p, on_debit, [user, hub])? {
        ChannelInput::DebitLock { debit, change: LockChange::Add(lock) } if as_transfer => {
            Some(Command::LockedTransfer { debit, lock, payee })
        }
        ChannelInput::DebitLock { debit, change } => Some(Command::DebitLock { debit, change }),
        ChannelInput::CreditLock { change, .. } => Some(Command::CreditLock { user: user.address(), change }),
        _ => None,
    }
}

/// A chain event about `user`'s channel `ch` for the ledger machine: a deposit, an exit, a
/// reserve deposit, a submitted debit, a reveal in the point registry (of a lock point the
/// lock ops use) or a lock registration or resolution, with byte-chosen amounts.
fn chain_event_for(input: &mut Input<'_>, user: Address, ch: &ChannelState, ledger: &Ledger) -> ChainEvent {
    use infhub_core::messages::Eip712Message;
    use infhub_core::point_lock::Scalar;
    match input.u8() % 7 {
        4 => {
            let id = u64::from(input.u8() % 8);
            let scalar = Scalar::from_bytes(alloy_primitives::keccak256(id.to_be_bytes())).expect("below n");
            ChainEvent::PointRevealed { point: scalar.point().address(), scalar }
        }
        5 => {
            let digest = ch.debit.map(|d| d.message.digest(&ledger.params.domain)).unwrap_or_default();
            let lock = ch.debit_locks.iter().nth(input.below(3) as usize).copied();
            ChainEvent::LockRegistered {
                user,
                epoch: ch.epoch,
                hub_locks: false,
                proof_digest: digest,
                lock_id: lock.map(|l| l.lock_id).unwrap_or_default(),
                amount: lock.map_or(Amount(1), |l| l.amount),
            }
        }
        6 => {
            let followed = ledger.locks.registered();
            let (proof_digest, lock_id) = followed.first().map(|(k, _)| *k).unwrap_or_default();
            ChainEvent::LockResolved { user, epoch: ch.epoch, proof_digest, lock_id }
        }
        0 => ChainEvent::Deposited {
            user,
            epoch: ch.epoch,
            total_deposited: Amount(ch.deposited.0 + input.below(500) as u128),
        },
        1 => ChainEvent::ExitStarted { user, epoch: ch.epoch, settle_block: ledger.block + 5 },
        2 => ChainEvent::ReserveDeposited { reserve_after: Amount(ledger.reserve.0 + input.below(500) as u128) },
        _ => ChainEvent::DebitSubmitted { user, epoch: ch.epoch, cumulative: Amount(input.below(5_000) as u128) },
    }
}

/// The hub's ledger, driven by a byte-chosen sequence of commands (transfers between three
/// users, purchases, withdrawals, payout batches, chain events and blocks, custodial
/// transfers), valid and invalid. After every command the ledger's own invariant check runs
/// (obligations, custodial totals, non-negative balances), and a refused command changes
/// nothing.
pub fn ledger_machine(data: &[u8]) {
    let mut input = Input::new(data);
    let hub = key(1);
    let users = [key(7), key(8), key(9)];
    let params = LedgerParams {
        domain: domain(),
        hub: hub.address(),
        max_withdrawal_expiry_blocks: 100,
        max_accounts: 16,
        max_queued_payouts: 8,
        max_payment_amount: Amount(1_000_000),
        transfer_ids_kept: 4,
    };
    let mut ledger = Ledger::new(params);
    let mut pos = LogPosition { block: 1, log_index: 0 };
    let mut next_pos = |input: &mut Input| {
        if input.u8().is_multiple_of(4) {
            pos.block += 1;
            pos.log_index = 0;
        } else {
            pos.log_index += 1;
        }
        pos
    };
    let mut genesis = vec![Command::Chain {
        at: next_pos(&mut input),
        event: ChainEvent::ReserveDeposited { reserve_after: Amount(50_000) },
    }];
    for u in &users {
        genesis.push(Command::Chain {
            at: next_pos(&mut input),
            event: ChainEvent::ChannelOpened { user: u.address(), epoch: 1, opened_by: hub.address() },
        });
        genesis.push(Command::Chain {
            at: next_pos(&mut input),
            event: ChainEvent::Deposited { user: u.address(), epoch: 1, total_deposited: Amount(1_000) },
        });
    }
    for c in genesis {
        ledger.apply(&hub, c).expect("genesis applies");
    }
    let mut steps = 0;
    while !input.is_empty() && steps < 64 {
        steps += 1;
        let who = input.below(3) as usize;
        let u = &users[who];
        let ch = ledger.account(&u.address()).map(|a| a.channel.clone());
        let op = input.u8() % 11;
        let command = match op {
            9 | 10 => {
                let Some(ch) = ch else { continue };
                let payee = users[(who + 1) % 3].address();
                let Some(command) = lock_command(&mut input, ch, &ledger, op == 9, [u, &hub], payee) else { continue };
                command
            }
            0..=2 => {
                let Some(ch) = ch else { continue };
                let to = users[(who + 1 + input.below(2) as usize) % 3].address();
                let kind = if input.u8().is_multiple_of(4) { PaymentKind::External } else { PaymentKind::Internal };
                let amount = Amount(input.below(1_500) as u128);
                let Ok(mut d) = ch.next_debit(kind, to, amount, B256::repeat_byte(input.u8())) else { continue };
                if input.u8().is_multiple_of(6) {
                    d.nonce = d.nonce.wrapping_sub(1);
                }
                Command::Transfer(Signed::new(d, &params.domain, u))
            }
            3 => Command::Purchase {
                user: u.address(),
                amount: Amount(input.below(3_000) as u128),
                purchase_id: B256::repeat_byte(input.u8()),
            },
            4 => {
                let Some(ch) = ch else { continue };
                let Ok(w) = ch.next_withdrawal(Amount(input.below(1_500) as u128), ch.block + input.below(150)) else {
                    continue;
                };
                Command::Withdraw { withdrawal: w, user_signature: Signed::new(w, &params.domain, u).signature }
            }
            5 => Command::TakePayoutBatch { max: input.below(5) as usize },
            6 => Command::Block(ledger.block + input.below(20)),
            7 => {
                let Some(ch) = ch else { continue };
                let event = chain_event_for(&mut input, u.address(), &ch, &ledger);
                Command::Chain { at: next_pos(&mut input), event }
            }
            _ => Command::Chain {
                at: LogPosition { block: input.below(3), log_index: input.below(3) },
                event: ChainEvent::ReserveDeposited { reserve_after: Amount(0) },
            },
        };
        let before = ledger.clone();
        match ledger.apply(&hub, command) {
            Ok(_) => {
                ledger.check_invariants();
                check_lock_duties(&ledger);
            }
            Err(_) => assert_eq!(ledger, before, "a refused command changed the ledger"),
        }
    }
}

/// Every lock registration the duties ask for proves its lock into the debit it names, and
/// every reveal is of the scalar of a lock the ledger holds.
fn check_lock_duties(ledger: &Ledger) {
    use infhub_core::duties::{due, HubTx, RealizePolicy};
    use infhub_core::messages::Eip712Message;
    for duty in due(ledger, &RealizePolicy::OFF) {
        match duty.tx {
            HubTx::RegisterDebitLock { debit, lock, path } => {
                let leaf = lock.digest(&ledger.params.domain);
                let root = path.iter().fold(leaf, |node, sibling| infhub_core::merkle::hash_pair(node, *sibling));
                assert_eq!(root, debit.message.locks_root, "a registration's path must prove its lock");
            }
            HubTx::RevealPoint(scalar) => {
                let point = scalar.point().address();
                let held = ledger.locks.opened().iter().any(|((payer, id), s)| {
                    *s == scalar
                        && ledger
                            .account(payer)
                            .and_then(|a| a.channel.debit_locks.get(id))
                            .is_some_and(|l| l.point == point)
                });
                assert!(held, "a reveal must open a pending lock the hub learned");
            }
            _ => {}
        }
    }
}

/// Multi-hop building blocks (spec §5.17–§5.19): the invoice and user-address decoders round
/// trip and their checks answer without panic; points and scalars decode or are refused; a
/// byte-chosen routing graph yields only real loop-free routes whose amounts and fees add up
/// within capacity, and splits that deliver exactly the amount; a byte-chosen sequence of lock
/// adds, settlements and expiries conserves value.
pub fn multi_hop(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => multi_hop_decoders(input.rest()),
        1 => multi_hop_routes(&mut input),
        _ => multi_hop_locks(&mut input),
    }
}

fn multi_hop_decoders(rest: &[u8]) {
    use infhub_core::invoice::{SignedInvoice, UserAddress};
    use infhub_core::point_lock::{Point, Scalar};
    if let Ok(inv) = serde_json::from_slice::<SignedInvoice>(rest) {
        let again: SignedInvoice = serde_json::from_str(&serde_json::to_string(&inv).expect("encode")).expect("decode");
        assert_eq!(again, inv, "invoice JSON round trip");
        let _ = inv.check(&domain(), 0);
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(a) = text.parse::<UserAddress>() {
            assert_eq!(a.to_string().parse::<UserAddress>(), Ok(a.clone()), "user address round trip");
        }
    }
    if let Some(bytes) = rest.get(..33) {
        if let Ok(p) = Point::from_compressed(&bytes.try_into().expect("33 bytes")) {
            assert_eq!(Point::from_compressed(&p.compressed()), Ok(p));
        }
    }
    multi_hop_sealed_steps(rest);
    if let Some(bytes) = rest.get(..32) {
        if let Ok(s) = Scalar::from_bytes(B256::from_slice(bytes)) {
            assert_eq!(Scalar::new(s.value()), Ok(s));
            if let Ok(up) = s.upstream(&s) {
                panic!("t − t is 0, never a scalar: {up:?}");
            }
        }
    }
}

/// Sealed route steps (spec §5.23d) from untrusted bytes: a step's encoding decodes or is
/// refused and round-trips when it decodes; a sealed step in JSON opens or is refused
/// `StepUnreadable`, never panics; a step sealed with fuzzed keys opens with its hub's key only.
fn multi_hop_sealed_steps(rest: &[u8]) {
    use infhub_core::point_lock::Scalar;
    use infhub_core::sealed_step::{open_step, seal_step, RouteStep, SealedStep};
    if let Ok(step) = RouteStep::decode(rest) {
        assert_eq!(step.encode().as_slice(), rest, "a route step's encoding round trip");
    }
    let hub = Scalar::from_bytes(B256::repeat_byte(0x11)).expect("a scalar");
    if let Ok(sealed) = serde_json::from_slice::<SealedStep>(rest) {
        match open_step(&sealed, &hub, B256::ZERO) {
            Ok(step) => assert!(step.encode().len() == infhub_core::sealed_step::ROUTE_STEP_BYTES),
            Err(e) => assert_eq!(e, infhub_core::Error::StepUnreadable),
        }
    }
    let (Some(a), Some(b)) = (rest.get(..32), rest.get(32..64)) else { return };
    let (Ok(key), Ok(ephemeral)) = (Scalar::from_bytes(B256::from_slice(a)), Scalar::from_bytes(B256::from_slice(b)))
    else {
        return;
    };
    let step = RouteStep {
        next_hub: alloy_primitives::Address::from_slice(&a[..20]),
        tweak: ephemeral,
        amount: Amount(u128::from_be_bytes(a[..16].try_into().expect("16 bytes"))),
        expiry_block: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
    };
    let lock_id = B256::from_slice(b);
    let sealed = seal_step(&step, &key.point(), &ephemeral, lock_id).expect("a step seals");
    assert_eq!(open_step(&sealed, &key, lock_id), Ok(step), "opens with its hub's key");
    if key != hub {
        assert!(open_step(&sealed, &hub, lock_id).is_err(), "and with no other");
    }
}

fn multi_hop_routes(input: &mut Input<'_>) {
    use infhub_core::routing::{Graph, LinkAnnouncement, Scorer};
    let hubs = 2 + input.below(5) as u8;
    let mut graph = Graph::default();
    for _ in 0..input.below(20) {
        let (from, to) = (input.below(u64::from(hubs)) as u8, input.below(u64::from(hubs)) as u8);
        let a = LinkAnnouncement {
            from_hub: key(from + 1).address(),
            to_hub: key(to + 1).address(),
            capacity: Amount(u128::from(input.u64() % 5_000)),
            base_fee: Amount(u128::from(input.u8())),
            fee_ppm: (input.u64() % 1_100_000) as u32,
            min_amount: Amount(u128::from(input.u8() % 4)),
            max_amount: Amount(u128::from(input.u64() % 6_000)),
            sequence: input.u64() % 4,
        };
        let _ = graph.apply(&Signed::new(a, &domain(), &key(from + 1)), &domain());
    }
    let (payer, payee) = (key(1).address(), key(hubs).address());
    let amount = Amount(1 + u128::from(input.u64() % 3_000));
    let capacity_ok = |from, to, amount: Amount| graph.link(from, to).is_some_and(|l| amount <= l.capacity);
    for r in graph.routes(payer, payee, amount, 1 + input.below(4) as usize, &Scorer::default()) {
        assert_eq!(r.hops.first().map(|h| h.from_hub), Some(payer));
        assert_eq!(r.hops.last().map(|h| (h.to_hub, h.amount, h.fee)), Some((payee, amount, Amount::ZERO)));
        let mut seen = std::collections::BTreeSet::from([payer]);
        for (i, h) in r.hops.iter().enumerate() {
            assert!(seen.insert(h.to_hub), "a loop");
            assert!(capacity_ok(h.from_hub, h.to_hub, h.amount), "over capacity");
            if let Some(next) = r.hops.get(i + 1) {
                assert_eq!(h.to_hub, next.from_hub, "a broken path");
                assert_eq!(h.amount.0, next.amount.0 + h.fee.0, "amounts and fees add up");
            }
        }
        assert_eq!(r.sent.0, amount.0 + r.fees.0);
    }
    if let Ok(parts) = graph.split_routes(payer, payee, amount, &Scorer::default()) {
        let delivered: u128 = parts.iter().map(|r| r.hops.last().expect("a link").amount.0).sum();
        assert_eq!(delivered, amount.0, "the parts deliver the amount");
        let mut used = std::collections::BTreeSet::new();
        for h in parts.iter().flat_map(|r| r.hops.iter()) {
            assert!(used.insert((h.from_hub, h.to_hub)), "two parts share a link (one lock id per link)");
            assert!(capacity_ok(h.from_hub, h.to_hub, h.amount), "a part overdraws a link");
        }
    }
}

fn multi_hop_locks(input: &mut Input<'_>) {
    use infhub_core::lock_book::LockBook;
    use infhub_core::point_lock::{Lock, Scalar};
    let scalar = |i: u64| Scalar::new(alloy_primitives::U256::from(i + 1)).expect("small scalar");
    let (mut book, mut block, mut next) = (LockBook::default(), 100u64, 0u64);
    let (mut locked_in, mut settled, mut refunded) = (0u128, 0u128, 0u128);
    while !input.is_empty() {
        match input.u8() % 4 {
            0 => {
                next += 1;
                let amount = u128::from(input.u8());
                let lock = Lock {
                    lock_id: B256::from(alloy_primitives::U256::from(next)),
                    amount: Amount(amount),
                    expiry_block: block + input.below(60),
                    point: scalar(next).point().address(),
                };
                if book.add(lock, block, 40).is_ok() {
                    locked_in += amount;
                }
            }
            1 => {
                let id = input.below(next + 1);
                let t = if input.u8().is_multiple_of(2) { scalar(id) } else { scalar(id + 7) };
                if let Ok(l) = book.settle(&B256::from(alloy_primitives::U256::from(id)), &t, block) {
                    assert!(l.expiry_block >= block && t.point().address() == l.point);
                    settled += l.amount.0;
                }
            }
            2 => block += input.below(20),
            _ => refunded += book.expire(block).iter().map(|l| l.amount.0).sum::<u128>(),
        }
        assert_eq!(settled + book.locked().0 + refunded, locked_in, "locks conserve value");
    }
    let _ = book.root(&domain());
}
