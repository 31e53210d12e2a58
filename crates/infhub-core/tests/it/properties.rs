//! Property tests: conservation of value across any sequence of valid steps, and every
//! invalid input rejected with the right named error.
//!
//! The harness runs, for each user, the channel state machine twice (the hub's end and the
//! wallet's end) and the contract model as the chain. After every step it checks that both
//! ends agree on the balance, that the contract's tokens equal the users' claims plus the
//! hub's equity, and at the end that every user's exit pays exactly its off-chain balance.
//! proptest prints the failing case and persists its seed on failure.

use alloy_primitives::{Address, B256, U256};
use infhub_core::channel::{step, ChannelParams, ChannelState, Effect, Input, Role, Status};
use infhub_core::contract::{ContractConfig, ContractModel};
use infhub_core::messages::{Eip712Message, HubSigned, PaymentKind, Signed};
use infhub_core::{Amount, Domain, Error, PrivateKey, Signature};
use proptest::prelude::*;

const USERS: usize = 4;
const CHALLENGE: u64 = 10;

fn key(seed: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&seed.to_be_bytes());
    PrivateKey::from_bytes(b).expect("valid key")
}

fn domain() -> Domain {
    Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) }
}

#[derive(Clone, Debug)]
enum Op {
    Deposit(usize, u64),
    ReserveDeposit(u64),
    Pay(usize, usize, u64),
    Purchase(usize, u64),
    External(usize, u64),
    Withdraw(usize, u64),
    LetWithdrawalExpire(usize, u64),
    Realize(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let amt = 1u64..5_000;
    prop_oneof![
        (u.clone(), amt.clone()).prop_map(|(u, a)| Op::Deposit(u, a)),
        amt.clone().prop_map(Op::ReserveDeposit),
        (u.clone(), 0..USERS, amt.clone()).prop_map(|(a, b, x)| Op::Pay(a, b, x)),
        (u.clone(), amt.clone()).prop_map(|(u, a)| Op::Purchase(u, a)),
        (u.clone(), amt.clone()).prop_map(|(u, a)| Op::External(u, a)),
        (u.clone(), amt.clone()).prop_map(|(u, a)| Op::Withdraw(u, a)),
        (u.clone(), amt).prop_map(|(u, a)| Op::LetWithdrawalExpire(u, a)),
        u.prop_map(Op::Realize),
    ]
}

struct World {
    hub: PrivateKey,
    users: Vec<PrivateKey>,
    chain: ContractModel,
    hub_end: Vec<ChannelState>,
    wallet_end: Vec<ChannelState>,
    hub_params: ChannelParams,
    wallet_params: ChannelParams,
    block: u64,
    /// What the hub put in minus what it sold (its equity), tracked independently.
    hub_equity: u128,
    payments: u64,
}

impl World {
    fn new() -> World {
        let hub = key(0x0048_5542);
        let users: Vec<PrivateKey> = (0..USERS as u64).map(|i| key(0xA000 + i)).collect();
        let config = ContractConfig {
            domain: domain(),
            hub: hub.address(),
            challenge_period_blocks: CHALLENGE,
            reserve_notice_blocks: 2 * CHALLENGE,
        };
        let mut chain = ContractModel::new(config).expect("config");
        let mut hub_end = Vec::new();
        let mut wallet_end = Vec::new();
        for u in &users {
            let epoch = chain.open_channel(u.address(), u.address()).expect("open");
            hub_end.push(ChannelState::opened(u.address(), epoch));
            wallet_end.push(ChannelState::opened(u.address(), epoch));
        }
        let params =
            |role| ChannelParams { domain: domain(), hub: hub.address(), role, max_withdrawal_expiry_blocks: 100 };
        World {
            hub_params: params(Role::Hub),
            wallet_params: params(Role::User),
            hub,
            users,
            chain,
            hub_end,
            wallet_end,
            block: 1,
            hub_equity: 0,
            payments: 0,
        }
    }

    /// Applies `input` to both ends of user `u`'s channel; both must agree on the verdict.
    fn both(&mut self, u: usize, input: Input) -> Result<(Vec<Effect>, Vec<Effect>), Error> {
        let h = step(&self.hub_end[u], &self.hub_params, input.clone());
        let w = step(&self.wallet_end[u], &self.wallet_params, input);
        match (h, w) {
            (Ok((hs, he)), Ok((ws, we))) => {
                self.hub_end[u] = hs;
                self.wallet_end[u] = ws;
                Ok((he, we))
            }
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "the two ends disagree on the error");
                Err(a)
            }
            (h, w) => panic!("the two ends disagree: hub {h:?}, wallet {w:?}"),
        }
    }

    fn block(&mut self, n: u64) -> Vec<(usize, Effect)> {
        self.block = n;
        let mut out = Vec::new();
        for u in 0..USERS {
            let (he, we) = self.both(u, Input::Block(n)).expect("block");
            out.extend(he.into_iter().chain(we).map(|e| (u, e)));
        }
        out
    }

    /// Reserve the hub may still commit: reserve minus what channels may draw from it.
    fn free_reserve(&self) -> u128 {
        let mut owed = U256::ZERO;
        for (u, st) in self.hub_end.iter().enumerate() {
            let claim = U256::from(st.balance().expect("balance").0);
            let funds = self.chain.channel(self.users[u].address()).funds();
            owed += claim.saturating_sub(funds);
        }
        self.chain.reserve.saturating_sub(owed).to::<u128>()
    }

    fn check(&self) {
        self.chain.check_invariant();
        let mut claims = 0u128;
        for u in 0..USERS {
            let hb = self.hub_end[u].balance().expect("hub balance");
            let wb = self.wallet_end[u].balance().expect("wallet balance");
            assert_eq!(hb, wb, "user {u}: hub and wallet disagree on the balance");
            claims += hb.0;
        }
        assert_eq!(
            self.chain.token_balance,
            U256::from(claims) + U256::from(self.hub_equity),
            "tokens != users' claims + hub equity"
        );
    }

    fn next_payment_id(&mut self) -> B256 {
        self.payments += 1;
        B256::from(U256::from(self.payments))
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Deposit(u, amt) => {
                let user = self.users[u].address();
                let total = self.chain.deposit(self.block, user, U256::from(amt)).expect("deposit");
                self.both(u, Input::ChainDeposited { epoch: self.hub_end[u].epoch, total_deposited: total })
                    .expect("deposit event");
                // A duplicated event is harmless (running totals).
                self.both(u, Input::ChainDeposited { epoch: self.hub_end[u].epoch, total_deposited: total })
                    .expect("duplicate deposit event");
            }
            Op::ReserveDeposit(amt) => {
                self.chain.deposit_reserve(U256::from(amt)).expect("reserve");
                self.hub_equity += u128::from(amt);
            }
            Op::Pay(a, b, amt) => {
                let amt = Amount(u128::from(amt));
                let pid = self.next_payment_id();
                let recipient = self.users[b].address();
                let d = self.wallet_end[a].next_debit(PaymentKind::Internal, recipient, amt, pid).expect("debit");
                let signed = Signed::new(d, &domain(), &self.users[a]);
                let balance = self.hub_end[a].balance().expect("balance");
                // The hub's ledger only accepts a payment its reserve can back (inbound liquidity).
                if amt > balance || a == b || amt.0 > self.free_reserve() {
                    let r = step(&self.hub_end[a], &self.hub_params, Input::Debit(signed));
                    if a == b {
                        assert_eq!(r.err(), Some(Error::RecipientMustNotBeSender));
                    } else if amt > balance {
                        assert_eq!(r.err(), Some(Error::InsufficientBalance));
                    }
                    return;
                }
                let (he, _) = self.both(a, Input::Debit(signed)).expect("valid debit accepted");
                assert_eq!(he, vec![Effect::DebitAccepted(signed)]);
                let c = self.hub_end[b].next_credit(amt).expect("credit");
                let credit = HubSigned::new(c, &domain(), &self.hub);
                self.both(b, Input::Credit(credit)).expect("credit accepted");
            }
            Op::Purchase(u, amt) => {
                let amt = u128::from(amt);
                if amt > self.free_reserve() {
                    return;
                }
                let c = self.hub_end[u].next_credit(Amount(amt)).expect("credit");
                self.both(u, Input::Credit(HubSigned::new(c, &domain(), &self.hub))).expect("purchase credit");
                self.hub_equity -= amt;
            }
            Op::External(u, amt) => {
                let amt = Amount(u128::from(amt));
                if amt > self.hub_end[u].balance().expect("balance") || amt.0 > self.free_reserve() {
                    return;
                }
                let pid = self.next_payment_id();
                let to = Address::repeat_byte(0xEE);
                let d = self.wallet_end[u].next_debit(PaymentKind::External, to, amt, pid).expect("debit");
                self.both(u, Input::Debit(Signed::new(d, &domain(), &self.users[u]))).expect("external debit");
                self.chain.payout(self.hub.address(), pid, &[to], &[U256::from(amt.0)]).expect("payout");
            }
            Op::Withdraw(u, amt) | Op::LetWithdrawalExpire(u, amt) => {
                let amt = Amount(u128::from(amt));
                if amt > self.hub_end[u].balance().expect("balance") {
                    return;
                }
                let expiry = self.block + 5;
                let w = self.wallet_end[u].next_withdrawal(amt, expiry).expect("withdrawal");
                let user_sig = w.sign(&domain(), &self.users[u]);
                let req = Input::WithdrawalRequest { withdrawal: w, user_signature: user_sig, block: self.block };
                let (he, _) = self.both(u, req).expect("withdrawal co-signed");
                assert_eq!(he, vec![Effect::CoSignWithdrawal(w)]);
                if matches!(op, Op::Withdraw(..)) {
                    let hub_sig = w.sign(&domain(), &self.hub);
                    self.chain.withdraw(self.block, &w, &user_sig.0, &hub_sig.0).expect("withdraw on chain");
                    let ev = Input::ChainWithdrawn { epoch: w.epoch, total_withdrawn: w.cumulative_withdrawn };
                    self.both(u, ev).expect("withdrawn event");
                } else {
                    let before = self.hub_end[u].balance().expect("balance");
                    let effects = self.block(expiry);
                    assert!(effects.iter().all(|(_, e)| !matches!(e, Effect::WithdrawalHoldReleased(_))));
                    let effects = self.block(expiry + 1);
                    assert!(effects.contains(&(u, Effect::WithdrawalHoldReleased(w))), "hold released after expiry");
                    assert_eq!(self.hub_end[u].balance().expect("balance").0, before.0 + amt.0);
                }
            }
            Op::Realize(u) => {
                let Some(d) = self.hub_end[u].debit else { return };
                let on_chain = self.chain.channel(d.message.user).debit.nonce;
                if d.message.nonce <= on_chain {
                    return;
                }
                self.chain.realize_debit(self.hub.address(), &d.message, &d.signature.0).expect("realize");
                let ev = Input::ChainDebitSubmitted { epoch: d.message.epoch, cumulative: d.message.cumulative_debit };
                self.both(u, ev).expect("debit submitted event");
            }
        }
    }

    /// Every user exits alone with the wallet's newest credit; the hub disputes with its newest
    /// debit; settlement must pay exactly each user's off-chain balance.
    fn everyone_exits(&mut self) {
        let expected: Vec<Amount> = (0..USERS).map(|u| self.wallet_end[u].balance().expect("balance")).collect();
        let start = self.block + 1;
        self.block = start;
        for u in 0..USERS {
            let user = self.users[u].clone();
            let (credit, sig) = match &self.wallet_end[u].credit {
                Some(c) => (c.message, c.proof_bytes()),
                None => (
                    self.hub_end[u]
                        .next_credit(Amount::ZERO)
                        .map(|mut c| {
                            c.nonce = 0;
                            c
                        })
                        .expect("empty credit"),
                    vec![],
                ),
            };
            self.chain.start_exit(user.address(), start, &credit, &sig).expect("exit");
            let epoch = self.hub_end[u].epoch;
            self.both(u, Input::ChainExitStarted { epoch, settle_block: start + CHALLENGE }).expect("exit event");
            if credit.nonce != 0 {
                self.both(u, Input::ChainCreditSubmitted { epoch, cumulative: credit.cumulative_credit })
                    .expect("credit event");
            }
        }
        // The hub's end reacts to the next block with its disputes.
        for (u, e) in self.block(start + 1) {
            match e {
                Effect::SubmitDebit(d) => {
                    self.chain.submit_debit(self.block, &d.message, &d.signature.0).expect("dispute accepted");
                    let ev =
                        Input::ChainDebitSubmitted { epoch: d.message.epoch, cumulative: d.message.cumulative_debit };
                    self.both(u, ev).expect("debit event");
                }
                Effect::SubmitCredit(_) => panic!("the wallet already submitted its newest credit"),
                other => panic!("unexpected effect {other:?}"),
            }
        }
        let due = self.block(start + CHALLENGE);
        assert_eq!(due.iter().filter(|(_, e)| *e == Effect::SettleDue).count(), 2 * USERS, "settle due on both ends");
        for (u, want) in expected.iter().enumerate() {
            let s = self.chain.settle(self.block, self.users[u].address()).expect("settle");
            assert!(s.shortfall.is_zero(), "user {u} short-paid: {s:?}");
            let paid = Amount(s.paid.to::<u128>());
            assert_eq!(paid, *want, "user {u} paid its off-chain balance");
            let epoch = self.hub_end[u].epoch;
            let (he, we) = self.both(u, Input::ChainSettled { epoch, paid }).expect("settled");
            assert_eq!(he, vec![Effect::Settled { paid, expected: paid }]);
            assert_eq!(we, he);
            assert_eq!(self.hub_end[u].status, Status::Settled);
        }
        assert_eq!(self.chain.token_balance, U256::from(self.hub_equity), "only the hub's equity remains");
        assert_eq!(self.chain.total_channel_funds, U256::ZERO);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Value is conserved across any sequence of valid steps, and every exit pays exactly the
    /// off-chain balance.
    #[test]
    fn value_is_conserved_and_exits_pay_the_balance(ops in proptest::collection::vec(op(), 1..60)) {
        let mut w = World::new();
        w.check();
        for op in &ops {
            w.apply(op);
            w.check();
        }
        w.everyone_exits();
    }
}

// ------------------------------------------------------------------ invalid inputs

#[derive(Clone, Copy, Debug)]
enum DebitFault {
    WrongEpoch,
    StaleNonce,
    SkippedNonce,
    ZeroAmount,
    OverBalance,
    CumulativeOff,
    WrongSigner,
    MalformedSignature,
    UnknownKind,
    Locked,
    OtherUser,
    PayingSelf,
    ZeroRecipient,
}

fn debit_fault() -> impl Strategy<Value = DebitFault> {
    use DebitFault::*;
    prop_oneof![
        Just(WrongEpoch),
        Just(StaleNonce),
        Just(SkippedNonce),
        Just(ZeroAmount),
        Just(OverBalance),
        Just(CumulativeOff),
        Just(WrongSigner),
        Just(MalformedSignature),
        Just(UnknownKind),
        Just(Locked),
        Just(OtherUser),
        Just(PayingSelf),
        Just(ZeroRecipient),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A channel with some history; a debit broken in one way is rejected with that rule's
    /// name, and a correct one is accepted.
    #[test]
    fn invalid_debits_get_the_named_error(
        deposit in 100u64..1_000_000,
        prior in 0usize..4,
        amount in 1u64..100,
        fault in debit_fault(),
    ) {
        let w = World::new();
        let alice = &w.users[0];
        let mut st = ChannelState::opened(alice.address(), 1);
        st = step(&st, &w.hub_params, Input::ChainDeposited { epoch: 1, total_deposited: Amount(u128::from(deposit)) }).expect("deposit").0;
        for i in 0..prior {
            let d = st.next_debit(PaymentKind::Internal, w.users[1].address(), Amount(1), B256::from(U256::from(i))).expect("debit");
            st = step(&st, &w.hub_params, Input::Debit(Signed::new(d, &domain(), alice))).expect("prior debit").0;
        }
        let good = st.next_debit(PaymentKind::Internal, w.users[1].address(), Amount(u128::from(amount)), B256::repeat_byte(7)).expect("debit");
        let mut d = good;
        let mut signer = alice.clone();
        let mut sig_override: Option<Signature> = None;
        let want = match fault {
            DebitFault::WrongEpoch => { d.epoch = 2; Error::EpochMismatch }
            DebitFault::StaleNonce => { if prior == 0 { return Ok(()); } d.nonce = prior as u64; Error::NonceMustIncrease }
            DebitFault::SkippedNonce => { d.nonce += 1; Error::NonceMustBeNext }
            DebitFault::ZeroAmount => { d.amount = Amount::ZERO; d.cumulative_debit = st.cumulative_debit(); Error::AmountMustNotBeZero }
            DebitFault::OverBalance => {
                let over = st.balance().expect("balance").0 + 1;
                d.amount = Amount(over);
                d.cumulative_debit = Amount(st.cumulative_debit().0 + over);
                Error::InsufficientBalance
            }
            DebitFault::CumulativeOff => { d.cumulative_debit = Amount(d.cumulative_debit.0 + 1); Error::CumulativeMismatch }
            DebitFault::WrongSigner => { signer = w.users[2].clone(); Error::WrongSigner }
            DebitFault::MalformedSignature => {
                let mut s = d.sign(&domain(), alice);
                s.0[64] = 0;
                sig_override = Some(s);
                Error::InvalidSignature
            }
            DebitFault::UnknownKind => { d.kind = 9; Error::UnknownPaymentKind }
            DebitFault::Locked => { d.locked_amount = Amount(1); Error::LocksRootMismatch }
            DebitFault::OtherUser => { d.user = w.users[3].address(); Error::UserMismatch }
            DebitFault::PayingSelf => { d.recipient = alice.address(); Error::RecipientMustNotBeSender }
            DebitFault::ZeroRecipient => { d.recipient = Address::ZERO; Error::RecipientMustNotBeZero }
        };
        let signature = sig_override.unwrap_or_else(|| d.sign(&domain(), &signer));
        let got = step(&st, &w.hub_params, Input::Debit(Signed { message: d, signature }));
        prop_assert_eq!(got.err(), Some(want), "fault {:?}", fault);
        // The untouched debit is accepted.
        let ok = step(&st, &w.hub_params, Input::Debit(Signed::new(good, &domain(), alice)));
        prop_assert!(ok.is_ok(), "good debit rejected: {:?}", ok.err());
    }

    /// Credits: only the hub's key (judged at the wallet), only forward, only in sequence at the
    /// hub's end.
    #[test]
    fn invalid_credits_get_the_named_error(prior in 0u64..3, amount in 1u128..1_000, which in 0u8..5) {
        let w = World::new();
        let alice = w.users[0].address();
        let mut st = ChannelState::opened(alice, 1);
        for _ in 0..prior {
            let c = st.next_credit(Amount(5)).expect("credit");
            st = step(&st, &w.hub_params, Input::Credit(HubSigned::new(c, &domain(), &w.hub))).expect("prior").0;
        }
        let mut c = st.next_credit(Amount(amount)).expect("credit");
        let mut key = w.hub.clone();
        let want = match which {
            0 => { key = w.users[0].clone(); Error::WrongSigner }
            1 => { c.cumulative_credit = st.cumulative_credit(); Error::CreditMustIncrease }
            // Credit nonces are ledger positions: a gap is fine at both ends.
            2 => { c.nonce += 1; Error::NonceMustBeNext }
            3 => { c.epoch = 0; Error::EpochMismatch }
            _ => { if prior == 0 { return Ok(()); } c.nonce = prior; Error::NonceMustIncrease }
        };
        // The wallet's end judges credits from outside, the signer included; the hub's end only
        // steps credits it signed itself (D20) and checks every rule but the signature.
        let user_params = ChannelParams { role: Role::User, ..w.hub_params };
        let at_wallet = step(&st, &user_params, Input::Credit(HubSigned::new(c, &domain(), &key)));
        let at_hub = step(&st, &w.hub_params, Input::Credit(HubSigned::new(c, &domain(), &key)));
        match want {
            Error::NonceMustBeNext => prop_assert!(at_wallet.is_ok(), "{:?}", at_wallet.err()),
            _ => prop_assert_eq!(at_wallet.err(), Some(want)),
        }
        match want {
            Error::WrongSigner | Error::NonceMustBeNext => prop_assert!(at_hub.is_ok(), "{:?}", at_hub.err()),
            _ => prop_assert_eq!(at_hub.err(), Some(want)),
        }
    }

    /// Withdrawal requests: expiry window, increase, balance, one at a time.
    #[test]
    fn invalid_withdrawals_get_the_named_error(deposit in 10u128..10_000, block in 10u64..1_000, which in 0u8..5) {
        let w = World::new();
        let alice = &w.users[0];
        let mut st = ChannelState::opened(alice.address(), 1);
        st = step(&st, &w.hub_params, Input::ChainDeposited { epoch: 1, total_deposited: Amount(deposit) }).expect("deposit").0;
        let mut wd = st.next_withdrawal(Amount(1), block + 10).expect("withdrawal");
        let want = match which {
            0 => { wd.expiry_block = block; Error::ExpiryMustBeInFuture }
            1 => { wd.expiry_block = block + 101; Error::ExpiryTooFar }
            2 => { wd.cumulative_withdrawn = Amount::ZERO; Error::WithdrawalMustIncrease }
            3 => { wd.cumulative_withdrawn = Amount(deposit + 1); Error::InsufficientBalance }
            _ => {
                let first = Input::WithdrawalRequest { withdrawal: wd, user_signature: wd.sign(&domain(), alice), block };
                st = step(&st, &w.hub_params, first).expect("first withdrawal").0;
                wd = st.next_withdrawal(Amount(1), block + 10).expect("second");
                Error::WithdrawalPending
            }
        };
        let req = Input::WithdrawalRequest { withdrawal: wd, user_signature: wd.sign(&domain(), alice), block };
        prop_assert_eq!(step(&st, &w.hub_params, req).err(), Some(want));
    }
}
