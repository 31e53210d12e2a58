//! Deterministic flows through the channel state machine: the effects each end must produce
//! at each moment (disputes, watch defence, settlement, reopening), and that replayed or
//! out-of-order chain facts are handled by rule, not by luck.

use alloy_primitives::{Address, B256};
use infhub_core::channel::{step, ChannelParams, ChannelState, Effect, Input, Role, Status};
use infhub_core::messages::{HubSigned, PaymentKind, Signed};
use infhub_core::{Amount, Domain, Error, PrivateKey};

fn key(seed: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&seed.to_be_bytes());
    PrivateKey::from_bytes(b).expect("key")
}

struct Setup {
    hub: PrivateKey,
    user: PrivateKey,
    domain: Domain,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            hub: key(1),
            user: key(2),
            domain: Domain { chain_id: 5, verifying_contract: Address::repeat_byte(0x33) },
        }
    }

    fn params(&self, role: Role) -> ChannelParams {
        ChannelParams { domain: self.domain, hub: self.hub.address(), role, max_withdrawal_expiry_blocks: 50 }
    }

    /// A channel with 100 deposited, a debit of 30 (nonce 1) and two credits (5, then 25).
    fn busy_channel(&self, role: Role) -> ChannelState {
        let p = self.params(role);
        let mut st = ChannelState::opened(self.user.address(), 1);
        let go = |st: &ChannelState, i: Input| step(st, &p, i).expect("valid step").0;
        st = go(&st, Input::ChainDeposited { epoch: 1, total_deposited: Amount(100) });
        let d = st.next_debit(PaymentKind::Internal, Address::repeat_byte(9), Amount(30), B256::ZERO).expect("debit");
        st = go(&st, Input::Debit(Signed::new(d, &self.domain, &self.user)));
        for amt in [5, 20] {
            let c = st.next_credit(Amount(amt)).expect("credit");
            st = go(&st, Input::Credit(HubSigned::new(c, &self.domain, &self.hub)));
        }
        st
    }
}

fn run(st: &ChannelState, p: &ChannelParams, inputs: Vec<Input>) -> (ChannelState, Vec<Effect>) {
    let mut st = st.clone();
    let mut all = Vec::new();
    for i in inputs {
        let (next, effects) = step(&st, p, i).expect("valid step");
        st = next;
        all.extend(effects);
    }
    (st, all)
}

#[test]
fn hub_close_with_stale_state_is_defended_by_the_wallet_once() {
    let s = Setup::new();
    let p = s.params(Role::User);
    let st = s.busy_channel(Role::User);
    assert_eq!(st.balance(), Ok(Amount(95)));
    // The hub closes with only the first credit on chain.
    let (st, effects) = run(
        &st,
        &p,
        vec![
            Input::ChainExitStarted { epoch: 1, settle_block: 40 },
            Input::ChainCreditSubmitted { epoch: 1, cumulative: Amount(5) },
            Input::Block(30),
            Input::Block(31),
        ],
    );
    let newest = st.credit.clone().expect("credit");
    assert_eq!(effects, vec![Effect::SubmitCredit(newest)], "exactly one defence, with the newest credit");
    // Once the contract holds it, nothing more to do; at the settle block, settle is due once.
    let (st, effects) = run(
        &st,
        &p,
        vec![
            Input::ChainCreditSubmitted { epoch: 1, cumulative: Amount(25) },
            Input::Block(39),
            Input::Block(40),
            Input::Block(41),
        ],
    );
    assert_eq!(effects, vec![Effect::SettleDue]);
    let (st, effects) = run(&st, &p, vec![Input::ChainSettled { epoch: 1, paid: Amount(95) }]);
    assert_eq!(effects, vec![Effect::Settled { paid: Amount(95), expected: Amount(95) }]);
    assert_eq!(st.status, Status::Settled);
}

#[test]
fn user_exit_without_debits_is_disputed_by_the_hub() {
    let s = Setup::new();
    let p = s.params(Role::Hub);
    let st = s.busy_channel(Role::Hub);
    let (st, effects) = run(&st, &p, vec![Input::ChainExitStarted { epoch: 1, settle_block: 20 }, Input::Block(10)]);
    assert_eq!(effects, vec![Effect::SubmitDebit(st.debit.expect("debit"))]);
    // The hub's end does not defend the user's credits.
    assert!(!effects.iter().any(|e| matches!(e, Effect::SubmitCredit(_))));
    // A settlement that ignored the dispute is reported: paid 125 where 95 was owed.
    let (_, effects) = run(&st, &p, vec![Input::ChainSettled { epoch: 1, paid: Amount(125) }]);
    assert_eq!(effects, vec![Effect::Settled { paid: Amount(125), expected: Amount(95) }]);
}

#[test]
fn withdrawal_hold_is_kept_through_expiry_and_released_after() {
    let s = Setup::new();
    let p = s.params(Role::Hub);
    let st = s.busy_channel(Role::Hub);
    let w = st.next_withdrawal(Amount(90), 12).expect("withdrawal");
    let req = Input::WithdrawalRequest { withdrawal: w, user_signature: w_sig(&s, &w), block: 10 };
    let (st, effects) = run(&st, &p, vec![req]);
    assert_eq!(effects, vec![Effect::CoSignWithdrawal(w)]);
    assert_eq!(st.balance(), Ok(Amount(5)), "the amount is held");
    // The held amount cannot be paid away.
    let d = st.next_debit(PaymentKind::External, Address::repeat_byte(4), Amount(6), B256::ZERO).expect("debit");
    let err = step(&st, &p, Input::Debit(Signed::new(d, &s.domain, &s.user))).err();
    assert_eq!(err, Some(Error::InsufficientBalance));
    let (st, effects) = run(&st, &p, vec![Input::Block(12)]);
    assert!(effects.is_empty(), "still usable at its expiry block");
    let (st, effects) = run(&st, &p, vec![Input::Block(13)]);
    assert_eq!(effects, vec![Effect::WithdrawalHoldReleased(w)]);
    assert_eq!(st.balance(), Ok(Amount(95)));
}

fn w_sig(s: &Setup, w: &infhub_core::Withdrawal) -> infhub_core::Signature {
    use infhub_core::messages::Eip712Message;
    w.sign(&s.domain, &s.user)
}

#[test]
fn a_withdrawal_seen_on_chain_consumes_the_hold_and_replays_are_no_ops() {
    let s = Setup::new();
    let p = s.params(Role::Hub);
    let st = s.busy_channel(Role::Hub);
    let w = st.next_withdrawal(Amount(40), 20).expect("withdrawal");
    let req = Input::WithdrawalRequest { withdrawal: w, user_signature: w_sig(&s, &w), block: 10 };
    let ev = Input::ChainWithdrawn { epoch: 1, total_withdrawn: Amount(40) };
    let (st, effects) = run(&st, &p, vec![req, ev.clone(), ev, Input::Block(30)]);
    assert_eq!(effects, vec![Effect::CoSignWithdrawal(w)], "no release: the withdrawal executed");
    assert_eq!(st.withdrawn, Amount(40));
    assert_eq!(st.balance(), Ok(Amount(55)));
    // A withdrawal the hub never co-signed is a contradiction, not something to apply.
    let err = step(&st, &p, Input::ChainWithdrawn { epoch: 1, total_withdrawn: Amount(50) }).err();
    assert_eq!(err, Some(Error::ChainEventInconsistent));
}

#[test]
fn exit_voids_a_pending_withdrawal_and_reopening_starts_fresh() {
    let s = Setup::new();
    let p = s.params(Role::Hub);
    let st = s.busy_channel(Role::Hub);
    let w = st.next_withdrawal(Amount(10), 20).expect("withdrawal");
    let req = Input::WithdrawalRequest { withdrawal: w, user_signature: w_sig(&s, &w), block: 10 };
    let (st, effects) = run(&st, &p, vec![req, Input::ChainExitStarted { epoch: 1, settle_block: 30 }]);
    assert_eq!(effects, vec![Effect::CoSignWithdrawal(w), Effect::WithdrawalHoldReleased(w)]);
    // No payments while closing.
    let d = st.next_debit(PaymentKind::Internal, Address::repeat_byte(4), Amount(1), B256::ZERO).expect("debit");
    assert_eq!(step(&st, &p, Input::Debit(Signed::new(d, &s.domain, &s.user))).err(), Some(Error::ChannelNotOpen));
    // Reopening needs settlement first, then the next epoch exactly.
    assert_eq!(step(&st, &p, Input::ChainOpened { epoch: 2 }).err(), Some(Error::ChainEventInconsistent));
    let (st, _) = run(&st, &p, vec![Input::ChainSettled { epoch: 1, paid: Amount(95) }]);
    assert_eq!(step(&st, &p, Input::ChainOpened { epoch: 3 }).err(), Some(Error::ChainEventInconsistent));
    let (st, effects) = run(&st, &p, vec![Input::ChainOpened { epoch: 2 }]);
    assert_eq!(effects, vec![Effect::Reopened { epoch: 2 }]);
    assert_eq!((st.epoch, st.balance(), st.debit_nonce(), st.credit_nonce()), (2, Ok(Amount::ZERO), 0, 0));
    // Events of the old epoch are refused; proofs of the old epoch too.
    assert_eq!(
        step(&st, &p, Input::ChainDeposited { epoch: 1, total_deposited: Amount(1) }).err(),
        Some(Error::ChainEventInconsistent)
    );
    let old = Signed::new(d, &s.domain, &s.user);
    assert_eq!(step(&st, &p, Input::Debit(old)).err(), Some(Error::EpochMismatch));
}

#[test]
fn confirmed_height_never_goes_back() {
    let s = Setup::new();
    let p = s.params(Role::User);
    let (st, _) = run(&ChannelState::opened(s.user.address(), 1), &p, vec![Input::Block(10)]);
    assert_eq!(step(&st, &p, Input::Block(9)).err(), Some(Error::ChainEventInconsistent));
}

#[test]
fn wallet_accepts_a_newer_credit_after_missing_some() {
    let s = Setup::new();
    let p = s.params(Role::User);
    let st = ChannelState::opened(s.user.address(), 1);
    let mut c = st.next_credit(Amount(50)).expect("credit");
    c.nonce = 4; // credits 1..3 were never delivered; only the newest matters
    let (st, _) = run(&st, &p, vec![Input::Credit(HubSigned::new(c, &s.domain, &s.hub))]);
    assert_eq!(st.cumulative_credit(), Amount(50));
    // The hub's own end takes gaps too (credit nonces are ledger positions) but never a nonce
    // that does not rise.
    let hp = s.params(Role::Hub);
    let fresh = ChannelState::opened(s.user.address(), 1);
    let (after, _) = run(&fresh, &hp, vec![Input::Credit(HubSigned::new(c, &s.domain, &s.hub))]);
    assert_eq!(after.credit_nonce(), 4);
    let mut again = after.next_credit(Amount(1)).expect("credit");
    again.nonce = 4;
    assert_eq!(
        step(&after, &hp, Input::Credit(HubSigned::new(again, &s.domain, &s.hub))).err(),
        Some(Error::NonceMustIncrease)
    );
}

#[test]
fn a_credit_reaching_the_wallet_after_a_close_began_is_kept_and_defended_with() {
    let s = Setup::new();
    let p = s.params(Role::User);
    let st = s.busy_channel(Role::User);
    // The hub signed a third credit while the channel was open; the user's exit (from an
    // older backup, holding none of the credits) is confirmed before that credit arrives.
    let late = HubSigned::new(st.next_credit(Amount(10)).expect("credit"), &s.domain, &s.hub);
    let (st, _) = run(&st, &p, vec![Input::ChainExitStarted { epoch: 1, settle_block: 40 }]);
    let (st, effects) = run(&st, &p, vec![Input::Credit(late.clone()), Input::Block(30)]);
    assert_eq!(st.credit, Some(late.clone()), "kept: it only helps the user's defence");
    assert_eq!(effects, vec![Effect::CreditAccepted(late.clone()), Effect::SubmitCredit(late)]);
    assert_eq!(st.balance(), Ok(Amount(105)));
    // The hub's end never takes a credit while closing (it issues none), and nobody after
    // settlement.
    let hub = s.params(Role::Hub);
    let closing = run(&s.busy_channel(Role::Hub), &hub, vec![Input::ChainExitStarted { epoch: 1, settle_block: 40 }]).0;
    let c = HubSigned::new(closing.next_credit(Amount(1)).expect("credit"), &s.domain, &s.hub);
    assert_eq!(step(&closing, &hub, Input::Credit(c)).err(), Some(Error::ChannelNotOpen));
    let settled = run(&st, &p, vec![Input::ChainSettled { epoch: 1, paid: Amount(105) }]).0;
    let c = HubSigned::new(settled.next_credit(Amount(1)).expect("credit"), &s.domain, &s.hub);
    assert_eq!(step(&settled, &p, Input::Credit(c)).err(), Some(Error::ChannelNotOpen));
}
