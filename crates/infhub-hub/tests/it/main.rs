//! The hub's shell on in-process seams: one test per duty, each playing the worst the network,
//! the chain and a restart can do to it. No anvil: the chain is the core's contract model
//! behind the in-memory chain source, the hub's transactions go through the recording
//! broadcaster, and its disk is the simulated one.

mod crash_points;
mod harness;

use harness::{World, CHALLENGE, CONFIRMATIONS, RESEND_AFTER};
use infhub_core::contract::ChainStatus;
use infhub_core::duties::{HubTx, RealizePolicy};
use infhub_core::ledger::Command;
use infhub_core::messages::{PaymentKind, Signed};
use infhub_core::{Address, Amount};
use infhub_hub::answers::{payment_answer, NotApplied};
use infhub_hub::notice::NoticeBody;
use infhub_hub::status::PayoutStatus;

#[test]
fn an_exit_from_an_old_backup_is_answered_with_the_newest_debit_then_settled() {
    let mut w = World::new(2, 1_000, 10_000, RealizePolicy::OFF);
    let to = w.user(1);
    w.pay(0, PaymentKind::Internal, to, 300);
    let alice = w.user(0);
    w.chain.exit_without_proofs(alice);
    w.mine_and_tick(CONFIRMATIONS + 1);
    assert_eq!(w.executed("submitDebit"), vec![(w.executed("submitDebit")[0].0, true)], "one dispute, accepted");
    assert_eq!(w.chain.model.channel(alice).debit.cumulative, Amount(300), "the contract holds her debit");
    w.mine_and_tick(CHALLENGE + CONFIRMATIONS);
    assert_eq!(w.chain.status(alice), ChainStatus::Settled);
    assert_eq!(w.executed("settle").len(), 1, "settled once");
    let paid = w.chain.model.sent_to.get(&alice).copied().unwrap_or_default();
    assert_eq!(paid, alloy::primitives::U256::from(700), "paid her balance, not her deposit");
}

/// A database outage is not a channel close (spec §7): while the hub's storage is down, a user
/// exits with an old backup; the duties answer from memory (the confirmed exit applied to a
/// copy of the ledger), dispute with the newest debit and settle, all within the challenge
/// period and without one commit. When storage is back, the kept events are recorded in order,
/// once, and the ledger agrees with the chain.
#[test]
fn an_exit_during_a_storage_outage_is_disputed_from_memory_and_recorded_once_storage_is_back() {
    let mut w = World::new(2, 1_000, 10_000, RealizePolicy::OFF);
    let to = w.user(1);
    w.pay(0, PaymentKind::Internal, to, 300);
    let alice = w.user(0);
    w.chain.exit_without_proofs(alice);
    w.mine_and_tick_with_storage_down(CONFIRMATIONS + 1);
    let disputes = w.executed("submitDebit");
    assert_eq!(disputes.len(), 1, "disputed during the outage: {disputes:?}");
    assert!(disputes[0].1, "the contract accepted the dispute");
    assert_eq!(w.chain.model.channel(alice).debit.cumulative, Amount(300), "the contract holds her debit");
    w.mine_and_tick_with_storage_down(CHALLENGE + CONFIRMATIONS);
    assert_eq!(w.chain.status(alice), ChainStatus::Settled, "settled during the outage");
    assert_eq!(w.chain.model.sent_to.get(&alice).copied().unwrap_or_default(), alloy::primitives::U256::from(700));
    let recorded = |w: &mut World| w.hub().ledger.ledger().account(&alice).expect("account").channel.status;
    assert_eq!(recorded(&mut w), infhub_core::channel::Status::Open, "nothing recorded while storage is down");

    // Storage is back: everything kept is recorded, once, in order.
    w.mine_and_tick(1);
    assert_eq!(recorded(&mut w), infhub_core::channel::Status::Settled, "the exit and settlement are recorded");
    let refused = w.hub().duties.view().refused_events.clone();
    assert_eq!(refused.count, 0, "no event refused or applied twice: {refused:?}");
    w.mine_and_tick(CONFIRMATIONS + RESEND_AFTER + 1);
    assert_eq!(w.executed("submitDebit").len(), 1, "not disputed again");
    assert_eq!(w.executed("settle").len(), 1, "not settled again");
    let solvent = w.hub().ledger.ledger().liquidity();
    assert_eq!(solvent.committed.0 + solvent.free.0, solvent.reserve.0, "{solvent:?}");
}

#[test]
fn a_dispute_dropped_or_reorganised_away_is_sent_again_until_the_chain_holds_it() {
    let mut w = World::new(2, 1_000, 10_000, RealizePolicy::OFF);
    let to = w.user(1);
    w.pay(0, PaymentKind::Internal, to, 300);
    let alice = w.user(0);
    w.chain.exit_without_proofs(alice);
    // Confirm the exit; the hub's answer is lost by the node.
    for _ in 0..CONFIRMATIONS + 1 {
        w.chain.mine();
        w.hub().tick(true).expect("up");
        w.drop_outbox();
    }
    let sent_before = w.hub().duties.broadcaster().sent().len();
    assert!(sent_before >= 1, "the dispute was sent");
    // Nothing more until the resend interval has passed.
    w.chain.mine();
    w.hub().tick(true).expect("up");
    assert!(w.drop_outbox().is_empty(), "not resent at once");
    // Then it is sent again; this time it is mined, and a reorg takes the block back.
    for _ in 0..RESEND_AFTER {
        w.chain.mine();
        w.hub().tick(true).expect("up");
    }
    let resent = w.deliver();
    assert_eq!(resent.len(), 1, "resent after {RESEND_AFTER} blocks");
    w.chain.mine();
    w.chain.reorg(1);
    assert_eq!(w.chain.model.channel(alice).debit.cumulative, Amount(0), "the reorg took the dispute back");
    // The hub saw it mined; once that block's height is confirmed without the event, it sends
    // the dispute again at once.
    w.mine_and_tick(CONFIRMATIONS + RESEND_AFTER + 1);
    assert_eq!(w.chain.model.channel(alice).debit.cumulative, Amount(300), "the contract holds her debit");
    w.mine_and_tick(CHALLENGE + CONFIRMATIONS);
    assert_eq!(w.chain.status(alice), ChainStatus::Settled);
    assert_eq!(w.chain.model.sent_to.get(&alice).copied().unwrap_or_default(), alloy::primitives::U256::from(700));
}

#[test]
fn payouts_go_out_in_batches_and_their_status_follows_them_to_confirmed_execution() {
    let mut w = World::new(2, 1_000, 10_000, RealizePolicy::OFF);
    let outside = Address::repeat_byte(0x5A);
    let d = w.pay(0, PaymentKind::External, outside, 120);
    let (payer, id) = (d.message.user, d.message.payment_id);
    let status = |w: &mut World| {
        let hub = w.hub();
        hub.duties.view().statuses.payout(hub.ledger.ledger(), payer, id)
    };
    assert_eq!(status(&mut w), PayoutStatus::Queued);
    // The batch is taken and sent; the node loses it.
    w.chain.mine();
    w.hub().tick(true).expect("up");
    let lost = w.drop_outbox();
    assert_eq!(lost.len(), 1);
    assert!(matches!(status(&mut w), PayoutStatus::Sent { tx_hash: Some(_), .. }), "{:?}", status(&mut w));
    // Resent after the interval, mined, then confirmed.
    for _ in 0..RESEND_AFTER {
        w.chain.mine();
        w.hub().tick(true).expect("up");
    }
    assert_eq!(w.deliver().len(), 1, "resent");
    w.chain.mine();
    let notices = w.hub().tick(true).expect("up");
    assert!(matches!(status(&mut w), PayoutStatus::Mined { .. }), "{:?}", status(&mut w));
    assert!(notices.iter().any(|n| matches!(n.body, NoticeBody::Payout { status: PayoutStatus::Mined { .. }, .. })));
    w.mine_and_tick(CONFIRMATIONS + 1);
    assert!(matches!(status(&mut w), PayoutStatus::Executed { tx_hash: Some(_), block: Some(_), .. }));
    assert_eq!(w.chain.model.sent_to.get(&outside).copied(), Some(alloy::primitives::U256::from(120)));
    assert_eq!(w.executed("payout").iter().filter(|(_, ok)| *ok).count(), 1, "paid once");
    // After a restart the status is still executed (without the transaction's details).
    w.restart_hub();
    assert_eq!(status(&mut w), PayoutStatus::Executed { batch_id: None, tx_hash: None, block: None });
}

#[test]
fn a_restarted_hub_sends_again_whatever_is_still_due_and_the_contract_executes_it_once() {
    let mut w = World::new(2, 1_000, 10_000, RealizePolicy::OFF);
    let outside = Address::repeat_byte(0x5A);
    w.pay(0, PaymentKind::External, outside, 120);
    // The batch is sent and mined, then the hub dies before the execution is confirmed.
    w.chain.mine();
    w.hub().tick(true).expect("up");
    w.deliver();
    w.chain.mine();
    w.restart_hub();
    // The new process knows nothing it sent: the batch is in flight in the ledger, so it is
    // sent again; the contract refuses the second execution.
    w.hub().tick(true).expect("up");
    assert_eq!(w.deliver().len(), 1, "the in-flight batch is resent after the restart");
    w.mine_and_tick(CONFIRMATIONS + 2);
    let payouts = w.executed("payout");
    assert_eq!(payouts.iter().filter(|(_, ok)| *ok).count(), 1, "executed once: {payouts:?}");
    assert_eq!(w.chain.model.sent_to.get(&outside).copied(), Some(alloy::primitives::U256::from(120)));
    assert_eq!(w.hub().ledger.ledger().payout_batches_in_flight().count(), 0, "confirmed");
}

#[test]
fn realizations_keep_payments_flowing_on_a_small_reserve_and_their_gas_is_counted() {
    // A payee's credit is backed by the reserve until the payer's debit is realized: 40
    // payments of 90 need 3,600 of reserve without realizations; this hub has 1,000.
    let policy =
        RealizePolicy { when_free_reserve_below: Amount(500), when_payer_reaches: Amount(u128::MAX), max_per_tx: 50 };
    let mut w = World::new(3, 100_000, 1_000, policy);
    let (b, c) = (w.user(1), w.user(2));
    for round in 0..40 {
        let to = if round % 2 == 0 { b } else { c };
        w.pay(0, PaymentKind::Internal, to, 90);
        w.mine_and_tick(1);
    }
    let counters = w.hub().duties.view().counters;
    assert!((3..=15).contains(&counters.realizations_mined), "batched, only when low: {counters:?}");
    assert_eq!(counters.realization_gas, counters.realizations_mined * 50_000, "gas of the mined ones");
    let l = w.hub().ledger.ledger().liquidity();
    assert_eq!(l.committed.0 + l.free.0, l.reserve.0, "{l:?}");
    assert!(l.reserve.0 > 1_000 + 2_000, "the reserve grew by what was realized: {l:?}");
    // Without realizations the same payments are refunded once the reserve is committed.
    let mut without = World::new(3, 100_000, 1_000, RealizePolicy::OFF);
    let (b, c) = (without.user(1), without.user(2));
    let mut refunded = 0;
    for round in 0..40u8 {
        let to = if round % 2 == 0 { b } else { c };
        let payer = without.user(0);
        let ch = without.hub().ledger.ledger().account(&payer).expect("a").channel.clone();
        let id = infhub_core::B256::repeat_byte(round + 1);
        let d = ch.next_debit(PaymentKind::Internal, to, Amount(90), id).expect("debit");
        let signed = infhub_core::messages::Signed::new(d, &without.domain, &without.users[0]);
        let commit = without.hub().execute(vec![(Command::Transfer(signed), None)]).expect("durable");
        refunded += matches!(commit.results[0].0, Ok(infhub_core::ledger::Outcome::Refunded { .. })) as u32;
        without.mine_and_tick(1);
    }
    assert_eq!(refunded, 40 - 11, "a reserve of 1,000 backs eleven payments of 90");
}

#[test]
fn deposits_are_reported_when_mined_and_forgotten_when_confirmed_or_reorganised_away() {
    let mut w = World::new(1, 1_000, 10_000, RealizePolicy::OFF);
    let alice = w.user(0);
    w.chain.deposit(alice, 50);
    w.chain.mine();
    let notices = w.hub().tick(true).expect("up");
    assert!(notices.iter().any(|n| n.user == alice && matches!(n.body, NoticeBody::DepositSeen { .. })));
    assert_eq!(w.hub().duties.view().statuses.pending_deposits(&alice).len(), 1);
    w.chain.reorg(1);
    w.chain.mine();
    let notices = w.hub().tick(true).expect("up");
    assert!(notices.iter().any(|n| matches!(n.body, NoticeBody::DepositReorgedOut { .. })), "{notices:?}");
    assert!(w.hub().duties.view().statuses.pending_deposits(&alice).is_empty());
    w.chain.deposit(alice, 70);
    w.mine_and_tick(CONFIRMATIONS + 1);
    assert!(w.hub().duties.view().statuses.pending_deposits(&alice).is_empty(), "confirmed");
    assert_eq!(w.hub().ledger.ledger().account(&alice).expect("a").channel.deposited, Amount(1_070));
}

#[test]
fn registrations_waiting_together_open_in_one_transaction_and_a_refused_batch_falls_back() {
    let mut w = World::new(1, 1_000, 10_000, RealizePolicy::OFF);
    let users: Vec<Address> = (0..3u8).map(|i| Address::repeat_byte(0x70 + i)).collect();
    let hashes = infhub_hub::run_ready(w.hub().duties.open_channels(&users));
    assert!(hashes.iter().all(|h| h.as_ref().ok() == hashes[0].as_ref().ok()), "one transaction: {hashes:?}");
    assert_eq!(w.deliver().len(), 1);
    // The node refuses the batch: each is sent alone, each gets its own answer.
    let more: Vec<Address> = (0..2u8).map(|i| Address::repeat_byte(0x80 + i)).collect();
    w.hub()
        .duties
        .broadcaster_mut()
        .refuse_next(infhub_chain::ChainError::TransactionRejected { reason: "gas".into() });
    let hashes = infhub_hub::run_ready(w.hub().duties.open_channels(&more));
    assert!(hashes.iter().all(|h| h.is_ok()) && hashes[0].as_ref().ok() != hashes[1].as_ref().ok(), "{hashes:?}");
    assert_eq!(w.deliver().len(), 2);
    w.mine_and_tick(CONFIRMATIONS + 1);
    for u in users.iter().chain(&more) {
        assert!(w.hub().ledger.ledger().account(u).is_some(), "{u} tracked");
    }
}

#[test]
fn a_retried_payment_gets_its_first_answer_even_once_the_ledger_forgot_its_id() {
    let mut w = World::new(2, 1_000, 10_000, RealizePolicy::OFF);
    let to = w.user(1);
    let first = w.pay(0, PaymentKind::Internal, to, 10);
    // More payments than the ledger remembers ids of (8).
    for _ in 0..10 {
        w.pay(0, PaymentKind::Internal, to, 1);
    }
    let domain = w.domain;
    let (payer_key, other_key) = (w.users[0].clone(), w.users[1].clone());
    let hub = w.hub();
    let commit = hub.execute(vec![(Command::Transfer(first), None)]).expect("durable");
    let sequenced = commit.results.into_iter().next().expect("one");
    assert_eq!(sequenced.0, Err(infhub_core::Error::NonceMustIncrease), "the ledger forgot the id");
    let history = || {
        let h = hub.ledger.history();
        (h.reader(), h.heads(&first.message.user))
    };
    let answer = payment_answer(history, &domain, &first, sequenced).expect("first answer");
    assert!(answer.replayed);
    assert_eq!(answer.result.receipt.message.payment_id, first.message.payment_id);
    // A different debit at the same nonce is not that payment: refused.
    let mut other = first;
    other.message.amount = Amount(11);
    let out = payment_answer(history, &domain, &other, (Err(infhub_core::Error::NonceMustIncrease), None));
    assert_eq!(out, Err(NotApplied::Refused(infhub_core::Error::InvalidSignature)), "its signature is not the payer's");
    let other = Signed::new(other.message, &domain, &payer_key);
    let out = payment_answer(history, &domain, &other, (Err(infhub_core::Error::NonceMustIncrease), None));
    assert_eq!(out, Err(NotApplied::Refused(infhub_core::Error::NonceMustIncrease)));
    // The payment itself resent with someone else's signature gets no success answer.
    let forged = Signed::new(first.message, &domain, &other_key);
    let out = payment_answer(history, &domain, &forged, (Err(infhub_core::Error::NonceMustIncrease), None));
    assert_eq!(out, Err(NotApplied::Refused(infhub_core::Error::InvalidSignature)));
}

/// The hub closes a dormant user's channel holding none of her debits: it puts its own newest
/// credit to her on record while the challenge period runs (the HonourCredit duty, §5.10), once,
/// and the settlement pays her deposit and what she received.
#[test]
fn a_hub_close_puts_the_hubs_newest_credit_on_record_and_the_settlement_pays_it() {
    let mut w = World::new(2, 1_000, 10_000, RealizePolicy::OFF);
    let alice = w.user(0);
    w.pay(1, PaymentKind::Internal, alice, 300);
    let close = HubTx::HubClose { user: alice, debit: None };
    let hash = infhub_hub::run_ready(w.hub().duties.request(close.clone())).expect("sent");
    let again = infhub_hub::run_ready(w.hub().duties.request(close)).expect("answered");
    assert_eq!(again, hash, "a repeated close is answered with the first transaction");
    w.deliver();
    assert_eq!(w.executed("startHubClose").len(), 1, "one close sent");
    assert_eq!(w.chain.model.channel(alice).credit.cumulative, Amount(0), "the close carries no credit");
    w.mine_and_tick(CONFIRMATIONS + 1 + RESEND_AFTER);
    let honoured = w.executed("submitCredit");
    assert_eq!(honoured.len(), 1, "sent once and not again once on record: {honoured:?}");
    assert!(honoured[0].1, "the contract accepted it");
    assert_eq!(w.chain.model.channel(alice).credit.cumulative, Amount(300), "her credit is on record");
    w.mine_and_tick(CHALLENGE + CONFIRMATIONS);
    assert_eq!(w.chain.status(alice), ChainStatus::Settled);
    assert_eq!(w.chain.model.sent_to.get(&alice).copied().unwrap_or_default(), alloy::primitives::U256::from(1_300));
}

/// One signed registration sent many times, at once and afterwards, opens its channel with one
/// transaction: every repeat is answered with that transaction's hash.
#[test]
fn a_registration_repeated_many_times_sends_one_opening() {
    let mut w = World::new(1, 1_000, 10_000, RealizePolicy::OFF);
    let newcomer = Address::repeat_byte(0x5A);
    let before = w.hub().duties.broadcaster().sent().len();
    let first = infhub_hub::run_ready(w.hub().duties.open_channels(&[newcomer; 200]));
    let hash = *first[0].as_ref().expect("sent");
    assert!(first.iter().all(|a| a.as_ref().ok() == Some(&hash)), "every copy gets the one transaction");
    let open_user = w.user(0);
    for _ in 0..50 {
        let again = infhub_hub::run_ready(w.hub().duties.open_channels(&[newcomer, open_user]));
        assert_eq!(again[0].as_ref().ok(), Some(&hash), "a repeat is answered with the first transaction");
    }
    let openings = w.hub().duties.broadcaster().sent().len() - before;
    assert_eq!(openings, 2, "one opening for the newcomer and one for the open user's repeated request");
    w.deliver();
    w.mine_and_tick(CONFIRMATIONS + 1);
    assert!(w.hub().ledger.ledger().account(&newcomer).is_some(), "the channel opened");
}
