//! The hub's ledger state machine, driven together with the contract model as its chain.
//!
//! The harness plays the hub node's role: it applies commands to the ledger, carries out the
//! resulting chain actions on the contract model, and feeds the model's events back as
//! confirmed chain events. After every command the ledger's incremental totals must equal a
//! recomputation, the liquidity rule must hold, and the ledger's mirror of the reserve and of
//! every channel's funds must equal the contract's. At the end every user exits and must be
//! paid in full.

use alloy_primitives::{Address, B256, U256};
use infhub_core::channel::Effect;
use infhub_core::contract::{ContractConfig, ContractModel};
use infhub_core::ledger::{ChainEvent, CheckpointHeader, Command, Ledger, LedgerParams, LogPosition, Outcome};
use infhub_core::messages::{Eip712Message, PaymentKind, Signed};
use infhub_core::{Amount, Domain, Error, PrivateKey};
use proptest::prelude::*;

const USERS: usize = 4;

fn key(seed: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&seed.to_be_bytes());
    PrivateKey::from_bytes(b).expect("key")
}

fn domain() -> Domain {
    Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) }
}

struct Hub {
    key: PrivateKey,
    users: Vec<PrivateKey>,
    ledger: Ledger,
    chain: ContractModel,
    block: u64,
    next_id: u64,
    log_index: u64,
    /// The point registry's `revealedAt`, for the lock duties.
    revealed: std::collections::HashMap<Address, u64>,
}

impl Hub {
    /// The checkpoint of these books (spec §5.16), built as the hub's shell builds it: its
    /// leaves sum to the liquidity rule's commitments, its tree proves every leaf into that
    /// total, the ledger's mirror of `liabilityInflowsTotal` is the contract's, and the contract
    /// (its model) accepts it at the reserve it holds, while one unit more is refused.
    fn check_checkpoint(&self) {
        use infhub_core::contract::PostedCheckpoint;
        assert_eq!(
            U256::from(self.ledger.checkpoints.liability_inflows.0),
            self.chain.liability_inflows_total,
            "the ledger mirrors liabilityInflowsTotal"
        );
        let (header, built) = self.build_checkpoint();
        let total: u128 = built.leaves().iter().map(|l| l.liability.0).sum();
        assert_eq!(total, self.ledger.checkpoint_liability(), "the leaves sum to the rule's commitments");
        assert_eq!(built.root().sum, U256::from(total));
        for l in built.leaves().iter().step_by(7) {
            let proofs = built.proofs_of(l.account);
            let p = proofs.iter().find(|p| p.leaf == *l).expect("its proof");
            p.path.verify(l.node(&built.domain), built.root()).expect("every leaf proves into the root");
        }
        let post = |liability: U256| {
            let mut chain = self.chain.clone();
            let c = PostedCheckpoint { total_liability: liability, ..header.checkpoint };
            chain.post_checkpoint(self.key.address(), self.block.max(self.ledger.block) + 1, header.id, c)
        };
        assert_eq!(post(U256::from(total)), Ok(()), "a liquid ledger's checkpoint is accepted");
        let room = self.chain.reserve - U256::from(self.ledger.earmarked.0);
        assert_eq!(post(room + U256::from(1)), Err(Error::CheckpointInsolvent), "one unit past the reserve is refused");
    }

    /// The next checkpoint of the ledger as it stands, the way the hub's shell builds it.
    fn build_checkpoint(&self) -> (CheckpointHeader, infhub_core::checkpoint::BuiltCheckpoint) {
        use infhub_core::checkpoint::{BuiltCheckpoint, CheckpointDomain};
        use infhub_core::contract::PostedCheckpoint;
        let d = CheckpointDomain {
            chain_id: self.chain.config.domain.chain_id,
            contract: self.chain.config.domain.verifying_contract,
            checkpoint_id: self.ledger.checkpoints.next_id(),
        };
        let secret = B256::repeat_byte(7);
        let built = BuiltCheckpoint::build(d, self.ledger.checkpoint_leaves(&d, &secret), &secret);
        let header = CheckpointHeader {
            id: d.checkpoint_id,
            checkpoint: PostedCheckpoint {
                root: built.root().hash,
                total_liability: built.root().sum,
                ledger_seq: self.ledger.next_seq - 1,
                chain_block: self.ledger.block,
                inflows_through: U256::from(self.ledger.checkpoints.liability_inflows.0),
            },
        };
        (header, built)
    }

    fn new() -> Hub {
        Hub::keeping_transfer_ids(1_000)
    }

    fn keeping_transfer_ids(transfer_ids_kept: usize) -> Hub {
        let key = key(0x0048_5542);
        let users: Vec<PrivateKey> = (0..USERS as u64).map(|i| self::key(0xA000 + i)).collect();
        let params = LedgerParams {
            domain: domain(),
            hub: key.address(),
            max_withdrawal_expiry_blocks: 100,
            max_accounts: 1_000,
            max_queued_payouts: 3,
            max_payment_amount: Amount(1_000_000),
            transfer_ids_kept,
        };
        let config = ContractConfig {
            domain: domain(),
            hub: key.address(),
            challenge_period_blocks: 10,
            reserve_notice_blocks: 20,
        };
        let mut hub = Hub {
            ledger: Ledger::new(params),
            chain: ContractModel::new(config).expect("config"),
            key,
            users,
            block: 1,
            next_id: 0,
            log_index: 0,
            revealed: std::collections::HashMap::new(),
        };
        for i in 0..USERS {
            let u = hub.users[i].address();
            // The hub opens them (registrations), so the ledger tracks them before any deposit.
            let h = hub.key.address();
            let epoch = hub.chain.open_channel(h, u).expect("open");
            hub.event(ChainEvent::ChannelOpened { user: u, epoch, opened_by: h });
        }
        hub
    }

    fn event(&mut self, ev: ChainEvent) -> Vec<(Address, Effect)> {
        self.log_index += 1;
        let at = LogPosition { block: self.block, log_index: self.log_index };
        match self.ledger.apply_sealed(&self.key, Command::Chain { at, event: ev }) {
            Ok(Outcome::Applied(effects)) => effects,
            other => panic!("chain event {ev:?} not applied: {other:?}"),
        }
    }

    fn id(&mut self) -> B256 {
        self.next_id += 1;
        B256::from(U256::from(self.next_id))
    }

    fn amount(x: U256) -> Amount {
        Amount(x.to::<u128>())
    }

    fn deposit(&mut self, u: usize, amount: u128) {
        let user = self.users[u].address();
        let total = self.chain.deposit(self.block, user, U256::from(amount)).expect("deposit");
        let epoch = self.chain.channel(user).epoch;
        self.event(ChainEvent::Deposited { user, epoch, total_deposited: total });
    }

    fn reserve_deposit(&mut self, amount: u128) {
        self.chain.deposit_reserve(U256::from(amount)).expect("reserve");
        self.event(ChainEvent::ReserveDeposited { reserve_after: Self::amount(self.chain.reserve) });
    }

    fn pay(&mut self, from: usize, to: usize, amount: u128, kind: PaymentKind) -> Result<Outcome, Error> {
        let recipient =
            if kind == PaymentKind::Internal { self.users[to].address() } else { Address::repeat_byte(0xEE) };
        let payer = self.users[from].address();
        let id = self.id();
        let st = &self.ledger.account(&payer).expect("account").channel;
        let d = st.next_debit(kind, recipient, Amount(amount), id)?;
        let signed = Signed::new(d, &domain(), &self.users[from]);
        self.ledger.apply_sealed(&self.key, Command::Transfer(signed))
    }

    fn run_payout_batch(&mut self) {
        let Ok(Outcome::PayoutBatch(batch)) = self.ledger.apply_sealed(&self.key, Command::TakePayoutBatch { max: 10 })
        else {
            panic!("batch")
        };
        if batch.is_empty() {
            return;
        }
        let to: Vec<Address> = batch.iter().map(|p| p.recipient).collect();
        let amounts: Vec<U256> = batch.iter().map(|p| U256::from(p.amount.0)).collect();
        let id = infhub_core::ledger::payout_batch_id(&batch);
        assert_eq!(self.ledger.payout_batches_in_flight().last().map(|b| b.id), Some(id), "the batch is in flight");
        let total = self.chain.payout(self.key.address(), id, &to, &amounts).expect("payout on chain");
        self.event(ChainEvent::PayoutBatchExecuted {
            batch_id: id,
            total: Self::amount(total),
            reserve_after: Self::amount(self.chain.reserve),
        });
    }

    fn withdraw(&mut self, u: usize, amount: u128) -> Result<(), Error> {
        let user = self.users[u].address();
        let st = &self.ledger.account(&user).expect("account").channel;
        let w = st.next_withdrawal(Amount(amount), self.block + 5)?;
        let user_sig = w.sign(&domain(), &self.users[u]);
        let out = self.ledger.apply_sealed(&self.key, Command::Withdraw { withdrawal: w, user_signature: user_sig })?;
        let Outcome::WithdrawalCoSigned { withdrawal, hub_signature } = out else { panic!("{out:?}") };
        assert_eq!(withdrawal, w);
        let before = self.chain.reserve;
        self.chain.withdraw(self.block, &w, &user_sig.0, &hub_signature.0).expect("withdraw on chain");
        let from_reserve = Self::amount(before - self.chain.reserve);
        self.event(ChainEvent::Withdrawn {
            user,
            epoch: w.epoch,
            total_withdrawn: w.cumulative_withdrawn,
            from_reserve,
        });
        Ok(())
    }

    fn realize(&mut self, u: usize) {
        let user = self.users[u].address();
        let Some(d) = self.ledger.account(&user).expect("account").channel.debit else { return };
        if d.message.nonce <= self.chain.channel(user).debit.nonce {
            return;
        }
        let moved = self.chain.realize_debit(self.key.address(), &d.message, &d.signature.0).expect("realize");
        let epoch = d.message.epoch;
        self.event(ChainEvent::DebitSubmitted { user, epoch, cumulative: d.message.cumulative_debit });
        self.event(ChainEvent::DebitRealized {
            user,
            epoch,
            moved: Self::amount(moved),
            reserve_after: Self::amount(self.chain.reserve),
        });
    }

    fn check(&self) {
        self.ledger.check_invariants();
        assert!(self.ledger.is_liquid(), "ledger broke the liquidity rule");
        self.check_checkpoint();
        assert_eq!(U256::from(self.ledger.reserve.0), self.chain.reserve, "mirrored reserve");
        for u in &self.users {
            let a = self.ledger.account(&u.address()).expect("account");
            assert_eq!(
                U256::from(a.funds()),
                self.chain.channel(u.address()).funds(),
                "mirrored funds of {}",
                u.address()
            );
        }
    }

    /// Every user exits with its newest credit; the ledger's disputes go on chain; all settle.
    fn everyone_exits(&mut self) {
        let expected: Vec<u128> =
            self.users.iter().map(|u| self.ledger.account(&u.address()).expect("a").channel.claim().0).collect();
        self.block += 1;
        for u in 0..USERS {
            let user = self.users[u].address();
            let ch = &self.ledger.account(&user).expect("a").channel;
            let (credit, sig) = match &ch.credit {
                Some(c) => (c.message, c.proof_bytes()),
                None => {
                    let mut c = ch.next_credit(Amount::ZERO).expect("c");
                    c.nonce = 0;
                    (c, vec![])
                }
            };
            self.chain.start_exit(user, self.block, &credit, &sig).expect("exit");
            let c = self.chain.channel(user);
            self.event(ChainEvent::ExitStarted { user, epoch: c.epoch, settle_block: c.settle_block });
            if credit.nonce != 0 {
                self.event(ChainEvent::CreditSubmitted { user, epoch: c.epoch, cumulative: credit.cumulative_credit });
            }
        }
        self.block += 1;
        let Ok(Outcome::Applied(effects)) = self.ledger.apply_sealed(&self.key, Command::Block(self.block)) else {
            panic!()
        };
        for (user, e) in effects {
            if let Effect::SubmitDebit(d) = e {
                self.chain.submit_debit(self.block, &d.message, &d.signature.0).expect("dispute");
                self.event(ChainEvent::DebitSubmitted {
                    user,
                    epoch: d.message.epoch,
                    cumulative: d.message.cumulative_debit,
                });
            }
        }
        self.block += 20;
        let Ok(Outcome::Applied(effects)) = self.ledger.apply_sealed(&self.key, Command::Block(self.block)) else {
            panic!()
        };
        assert_eq!(effects.iter().filter(|(_, e)| *e == Effect::SettleDue).count(), USERS);
        for (u, want) in expected.iter().enumerate() {
            let user = self.users[u].address();
            let s = self.chain.settle(self.block, user).expect("settle");
            assert!(s.shortfall.is_zero(), "user {u} short-paid");
            assert_eq!(s.paid, U256::from(*want), "user {u} paid its claim");
            let epoch = self.chain.channel(user).epoch;
            let effects = self.event(ChainEvent::Settled {
                user,
                epoch,
                paid: Self::amount(s.paid),
                reserve_after: Self::amount(self.chain.reserve),
            });
            assert_eq!(effects, vec![(user, Effect::Settled { paid: Self::amount(s.paid), expected: Amount(*want) })]);
            self.check();
        }
    }
}

#[test]
fn internal_payment_returns_receipt_and_payee_credit() {
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    let out = h.pay(0, 1, 120, PaymentKind::Internal).expect("paid");
    let Outcome::Paid { receipt, credit: Some(credit), payout: None } = out else { panic!("{out:?}") };
    receipt.verify(&domain(), h.key.address()).expect("receipt signed by the hub");
    let payer = h.ledger.account(&h.users[0].address()).expect("payer").channel.clone();
    let debit = payer.debit.expect("debit stored");
    assert_eq!(receipt.message.debit_digest, debit.message.digest(&domain()), "receipt names the debit");
    assert_eq!(receipt.message.payment_id, debit.message.payment_id);
    credit.verify(&domain(), h.key.address()).expect("credit signed by the hub");
    assert_eq!(credit.message.user, h.users[1].address());
    assert_eq!(credit.message.cumulative_credit, Amount(120));
    assert_eq!(payer.balance(), Ok(Amount(380)));
    h.check();
}

#[test]
fn a_pre_checked_debit_applies_like_an_unchecked_one_and_a_mismatched_check_is_ignored() {
    use infhub_core::channel::CheckedDebit;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    let payer = h.users[0].address();
    let next = |h: &mut Hub, amount: u128| {
        let id = h.id();
        let st = &h.ledger.account(&payer).expect("account").channel;
        let d = st.next_debit(PaymentKind::Internal, h.users[1].address(), Amount(amount), id).expect("debit");
        Signed::new(d, &domain(), &h.users[0])
    };
    // Checked on "another thread", applied without a second recovery: same outcome as apply.
    let good = next(&mut h, 10);
    let checked = CheckedDebit::check(good, &domain()).expect("signed by its user");
    let mut twin = h.ledger.clone();
    let a = h.ledger.apply_checked(&h.key, Command::Transfer(good), Some(checked)).expect("paid");
    let b = twin.apply(&h.key, Command::Transfer(good)).expect("paid");
    assert_eq!(a, b);
    assert_eq!(h.ledger, twin);
    // A forged debit cannot ride on the check of another debit: the ledger checks it itself.
    let honest = next(&mut h, 10);
    let honest_check = CheckedDebit::check(honest, &domain()).expect("signed");
    let mut forged = honest;
    forged.signature = Signed::new(honest.message, &domain(), &h.users[2]).signature;
    let refused = h.ledger.apply_checked(&h.key, Command::Transfer(forged), Some(honest_check));
    assert_eq!(refused, Err(Error::WrongSigner));
    // A check made in another domain does not count either.
    let other = Domain { chain_id: 999, ..domain() };
    assert_eq!(CheckedDebit::check(honest, &other).err(), Some(Error::WrongSigner));
    let foreign = Signed::new(honest.message, &other, &h.users[0]);
    let foreign_check = CheckedDebit::check(foreign, &other).expect("valid in its own domain");
    let refused = h.ledger.apply_checked(&h.key, Command::Transfer(foreign), Some(foreign_check));
    assert_eq!(refused, Err(Error::WrongSigner));
    h.check();
}

#[test]
fn duplicate_payment_returns_first_result_and_reused_id_is_refused() {
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    let payer = h.users[0].address();
    let st = h.ledger.account(&payer).expect("a").channel.clone();
    let d = st.next_debit(PaymentKind::Internal, h.users[1].address(), Amount(10), B256::repeat_byte(1)).expect("d");
    let signed = Signed::new(d, &domain(), &h.users[0]);
    let first_seq = h.ledger.next_seq;
    h.ledger.apply_sealed(&h.key, Command::Transfer(signed)).expect("first");
    let before = h.ledger.clone();
    assert_eq!(h.ledger.apply_sealed(&h.key, Command::Transfer(signed)), Ok(Outcome::Duplicate { first_seq }));
    assert_eq!(h.ledger, before, "a duplicate changes nothing");
    // Same payment id, different payment (next nonce, another amount).
    let st = h.ledger.account(&payer).expect("a").channel.clone();
    let other =
        st.next_debit(PaymentKind::Internal, h.users[1].address(), Amount(11), B256::repeat_byte(1)).expect("d");
    let r = h.ledger.apply_sealed(&h.key, Command::Transfer(Signed::new(other, &domain(), &h.users[0])));
    assert_eq!(r, Err(Error::PaymentIdReused));
    assert_eq!(h.ledger, before, "a refused command changes nothing");
}

#[test]
fn only_the_newest_internal_transfer_ids_are_remembered_and_a_forgotten_retry_cannot_pay_twice() {
    let mut h = Hub::keeping_transfer_ids(2);
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    let payer = h.users[0].address();
    // An external payment first: its id is kept for good (payout batch ids derive from it).
    let st = h.ledger.account(&payer).expect("a").channel.clone();
    let d = st.next_debit(PaymentKind::External, Address::repeat_byte(0xEE), Amount(5), B256::repeat_byte(0x77));
    let external = Signed::new(d.expect("d"), &domain(), &h.users[0]);
    let external_seq = h.ledger.next_seq;
    assert!(matches!(h.ledger.apply_sealed(&h.key, Command::Transfer(external)), Ok(Outcome::Paid { .. })));
    let mut sent = Vec::new();
    for i in 1..=3u8 {
        let st = h.ledger.account(&payer).expect("a").channel.clone();
        let d =
            st.next_debit(PaymentKind::Internal, h.users[1].address(), Amount(10), B256::repeat_byte(i)).expect("d");
        let signed = Signed::new(d, &domain(), &h.users[0]);
        let seq = h.ledger.next_seq;
        assert!(matches!(h.ledger.apply_sealed(&h.key, Command::Transfer(signed)), Ok(Outcome::Paid { .. })));
        sent.push((signed, seq));
    }
    // A snapshot keeps the window in order: the restored ledger forgets the same ids next.
    let bytes = bincode::serialize(&h.ledger).expect("encode");
    let mut restored: Ledger = bincode::deserialize(&bytes).expect("decode");
    restored.rebuild_indexes();
    assert_eq!(restored, h.ledger);
    for ledger in [&mut h.ledger.clone(), &mut restored.clone()] {
        let before = ledger.clone();
        for &(signed, first_seq) in &sent[1..] {
            assert_eq!(ledger.apply_sealed(&h.key, Command::Transfer(signed)), Ok(Outcome::Duplicate { first_seq }));
        }
        // The oldest id is forgotten; its nonce is spent, so the retry is refused, not paid again.
        assert_eq!(ledger.apply_sealed(&h.key, Command::Transfer(sent[0].0)), Err(Error::NonceMustIncrease));
        assert_eq!(*ledger, before, "retries change nothing");
        // The next payment pushes the second one out as well.
        let st = ledger.account(&payer).expect("a").channel.clone();
        let d =
            st.next_debit(PaymentKind::Internal, h.users[1].address(), Amount(10), B256::repeat_byte(9)).expect("d");
        let r = ledger.apply_sealed(&h.key, Command::Transfer(Signed::new(d, &domain(), &h.users[0])));
        assert!(matches!(r, Ok(Outcome::Paid { .. })), "{r:?}");
        assert_eq!(ledger.apply_sealed(&h.key, Command::Transfer(sent[1].0)), Err(Error::NonceMustIncrease));
        let (signed, first_seq) = sent[2];
        assert_eq!(ledger.apply_sealed(&h.key, Command::Transfer(signed)), Ok(Outcome::Duplicate { first_seq }));
        assert_eq!(
            ledger.apply_sealed(&h.key, Command::Transfer(external)),
            Ok(Outcome::Duplicate { first_seq: external_seq })
        );
        assert_eq!(ledger.account(&payer).expect("a").channel.cumulative_debit(), Amount(45), "5 out, then 4 × 10");
    }
}

/// The rule a payment was refused by: refunded (final) or refused outright (nothing changed).
fn refusal(r: &Result<Outcome, Error>) -> Option<Error> {
    match r {
        Err(e) => Some(*e),
        Ok(Outcome::Refunded { refused, .. }) => Some(*refused),
        Ok(_) => None,
    }
}

/// Balances, obligations and every total that moves money, but not nonces.
fn money(l: &infhub_core::ledger::Ledger) -> Vec<u128> {
    let mut v = vec![l.obligations, l.payouts_pending.0, l.custodial_total, l.reserve.0, l.free_reserve()];
    let mut accounts: Vec<_> = l.accounts().collect();
    accounts.sort_by_key(|(a, _)| **a);
    for (_, a) in accounts {
        v.push(a.channel.balance().expect("balance").0);
        v.push(a.channel.claim().0);
    }
    v
}

#[test]
fn refusals_are_named_final_and_move_no_money() {
    let mut h = Hub::new();
    h.deposit(0, 500);
    let payer = h.users[0].address();
    let before = h.ledger.clone();
    let nonces = |l: &infhub_core::ledger::Ledger| {
        let c = &l.account(&payer).expect("payer").channel;
        (c.debit_nonce(), c.credit_nonce())
    };
    // Refused for a reason of state: refunded. The debit is spent (its nonce and total), the
    // payer holds a credit of its amount back, and no money moved.
    let refunded = [
        // No reserve: the payee's credit cannot be backed until the payer's debit is realized.
        (h.pay(0, 1, 100, PaymentKind::Internal), Error::ReserveInsufficient),
        (h.pay(0, 0, 10, PaymentKind::External), Error::ReserveInsufficient),
        (h.pay(0, 1, 600, PaymentKind::Internal), Error::InsufficientBalance),
        (h.pay(0, 1, 2_000_000, PaymentKind::Internal), Error::AmountTooLarge),
    ];
    let mut last_refund_nonce = 0;
    for (i, (r, rule)) in refunded.into_iter().enumerate() {
        assert_eq!(refusal(&r), Some(rule), "refusal {i}");
        let Ok(Outcome::Refunded { refund, .. }) = r else { panic!("refusal {i} not refunded: {r:?}") };
        assert_eq!(refund.message.user, payer, "the refund is the payer's");
        // Credit nonces are ledger positions: they rise with every refund, with gaps.
        assert!(refund.message.nonce > last_refund_nonce, "one refund credit per refusal");
        last_refund_nonce = refund.message.nonce;
        refund.verify(&domain(), h.key.address()).expect("the refund is signed by the hub (sealed)");
    }
    assert_eq!(nonces(&h.ledger), (4, last_refund_nonce), "four debits spent, four refunds issued");
    assert_eq!(money(&h.ledger), money(&before), "no money moved");
    // A retry of a refunded payment gets its first result, and never applies it.
    let c = h.ledger.account(&payer).expect("payer").channel.clone();
    let retry = c.debit.expect("the last refunded debit");
    assert!(matches!(h.ledger.apply_sealed(&h.key, Command::Transfer(retry)), Ok(Outcome::Duplicate { .. })));
    // A purchase is no debit: refused outright.
    let after_refunds = h.ledger.clone();
    let r = h
        .ledger
        .apply(&h.key, Command::Purchase { user: h.users[2].address(), amount: Amount(1), purchase_id: B256::ZERO });
    assert_eq!(r, Err(Error::ReserveInsufficient));
    // Refused for a rule of the debit itself: nothing changes, nothing is spent.
    assert_eq!(h.pay(0, 0, 10, PaymentKind::Internal), Err(Error::RecipientMustNotBeSender));
    let stranger = key(77);
    let d = infhub_core::channel::ChannelState::opened(stranger.address(), 1)
        .next_debit(PaymentKind::Internal, h.users[1].address(), Amount(1), B256::ZERO)
        .expect("d");
    let r = h.ledger.apply_sealed(&h.key, Command::Transfer(Signed::new(d, &domain(), &stranger)));
    assert_eq!(r, Err(Error::UnknownAccount), "an unknown payer has no channel to refund");
    // A debit that would be refunded but is not signed by the payer: refused by its signature.
    let d = c.next_debit(PaymentKind::Internal, h.users[1].address(), Amount(1_000), B256::repeat_byte(3)).expect("d");
    let r = h.ledger.apply_sealed(&h.key, Command::Transfer(Signed::new(d, &domain(), &stranger)));
    assert_eq!(r, Err(Error::WrongSigner), "a forged debit is never refunded");
    assert_eq!(h.ledger, after_refunds, "refusals without a refund change nothing");
    // An unknown payee: refunded.
    let d = c.next_debit(PaymentKind::Internal, stranger.address(), Amount(1), B256::repeat_byte(4)).expect("d");
    let r = h.ledger.apply_sealed(&h.key, Command::Transfer(Signed::new(d, &domain(), &h.users[0])));
    assert_eq!(refusal(&r), Some(Error::UnknownAccount));
    assert!(matches!(r, Ok(Outcome::Refunded { .. })));
    h.ledger.check_invariants();
}

#[test]
fn realizing_a_debit_frees_reserve_for_the_payee() {
    let mut h = Hub::new();
    h.reserve_deposit(100);
    h.deposit(0, 500);
    h.pay(0, 1, 100, PaymentKind::Internal).expect("within the reserve");
    assert_eq!(h.ledger.free_reserve(), 0);
    assert_eq!(refusal(&h.pay(0, 1, 1, PaymentKind::Internal)), Some(Error::ReserveInsufficient));
    h.realize(0);
    assert_eq!(h.ledger.free_reserve(), 100, "the payer's 100 moved to the reserve");
    h.pay(0, 1, 50, PaymentKind::Internal).expect("now backed");
    h.check();
}

#[test]
fn external_payouts_queue_with_a_limit_and_settle_in_batches() {
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    for _ in 0..3 {
        let out = h.pay(0, 0, 10, PaymentKind::External).expect("queued");
        assert!(matches!(out, Outcome::Paid { payout: Some(_), credit: None, .. }));
    }
    assert_eq!(refusal(&h.pay(0, 0, 10, PaymentKind::External)), Some(Error::PayoutQueueFull));
    assert_eq!(h.ledger.payouts_pending, Amount(30));
    assert_eq!(h.ledger.free_reserve(), 970);
    h.run_payout_batch();
    assert_eq!(h.ledger.payouts_pending, Amount::ZERO);
    assert_eq!(h.ledger.reserve, Amount(970));
    assert_eq!(h.chain.sent_to.get(&Address::repeat_byte(0xEE)), Some(&U256::from(30)));
    h.check();
}

/// After the contract halted the hub (a proven or unanswered complaint, §5.16) it refuses every
/// payout: a payer charged for an external payment then would never see it made. So the
/// ledger refunds new external payments and refuses custodial withdrawals with `HubHalted`,
/// and no payout duty is due (it would only burn gas); internal payments go on.
#[test]
fn a_halted_hub_takes_no_payment_it_could_never_pay_out() {
    use infhub_core::duties::{due, DutyKey, RealizePolicy};
    use infhub_core::ledger::custodial_address;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.pay(0, 0, 10, PaymentKind::External).expect("queued");
    let Ok(Outcome::PayoutBatch(batch)) = h.ledger.apply_sealed(&h.key, Command::TakePayoutBatch { max: 10 }) else {
        panic!("a batch")
    };
    assert_eq!(batch.len(), 1);
    let payout_duties =
        |l: &Ledger| due(l, &RealizePolicy::OFF).iter().filter(|d| matches!(d.key, DutyKey::Payout(_))).count();
    assert_eq!(payout_duties(&h.ledger), 1, "an honest hub sends its payouts");
    let carol = custodial_address("carol");
    let opened = h.ledger.apply_sealed(&h.key, Command::OpenCustodial { account: carol, api_key_hash: B256::ZERO });
    assert_eq!(opened, Ok(Outcome::CustodialOpened));
    let id = h.id();
    h.ledger.apply_sealed(&h.key, Command::Purchase { user: carol, amount: Amount(40), purchase_id: id }).expect("buy");

    h.event(ChainEvent::HubHalted { id: 1 });
    let payer = h.users[0].address();
    let before = h.ledger.account(&payer).expect("payer").channel.balance().expect("balance");
    assert_eq!(refusal(&h.pay(0, 0, 10, PaymentKind::External)), Some(Error::HubHalted));
    let after = h.ledger.account(&payer).expect("payer").channel.balance().expect("balance");
    assert_eq!(after, before, "refunded: the payer keeps her money");
    let w = Command::CustodialWithdraw {
        from: carol,
        recipient: Address::repeat_byte(0xEE),
        amount: Amount(10),
        transfer_id: h.id(),
    };
    assert_eq!(h.ledger.apply_sealed(&h.key, w), Err(Error::HubHalted));
    assert_eq!(h.ledger.custodial(&carol).expect("carol").balance, Amount(40));
    assert_eq!(payout_duties(&h.ledger), 0, "no payout is sent to a halted contract");
    h.pay(0, 1, 10, PaymentKind::Internal).expect("internal payments go on");
    h.check();
}

#[test]
fn withdrawal_is_co_signed_held_and_mirrored() {
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 100);
    h.pay(0, 1, 60, PaymentKind::Internal).expect("pay");
    // Bob withdraws 60 with no deposit: the reserve advances it.
    h.withdraw(1, 60).expect("withdraw");
    assert_eq!(h.ledger.reserve, Amount(940));
    assert_eq!(h.ledger.account(&h.users[1].address()).expect("a").chain.advanced_from_reserve, Amount(60));
    assert_eq!(h.withdraw(1, 1).err(), Some(Error::InsufficientBalance));
    h.check();
}

#[derive(Clone, Debug)]
enum Op {
    Deposit(usize, u64),
    Reserve(u64),
    Pay(usize, usize, u64),
    External(usize, u64),
    Purchase(usize, u64),
    Withdraw(usize, u64),
    Batch,
    Realize(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let a = 1u64..3_000;
    prop_oneof![
        (u.clone(), a.clone()).prop_map(|(u, a)| Op::Deposit(u, a)),
        a.clone().prop_map(Op::Reserve),
        (u.clone(), 0..USERS, a.clone()).prop_map(|(x, y, a)| Op::Pay(x, y, a)),
        (u.clone(), a.clone()).prop_map(|(u, a)| Op::External(u, a)),
        (u.clone(), a.clone()).prop_map(|(u, a)| Op::Purchase(u, a)),
        (u.clone(), a).prop_map(|(u, a)| Op::Withdraw(u, a)),
        Just(Op::Batch),
        u.prop_map(Op::Realize),
    ]
}

/// Errors the ledger may give for a random command from an honest harness.
fn expected_refusal(e: &Error) -> bool {
    matches!(
        e,
        Error::ReserveInsufficient
            | Error::InsufficientBalance
            | Error::RecipientMustNotBeSender
            | Error::PayoutQueueFull
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ledger_mirrors_the_contract_and_stays_liquid(ops in proptest::collection::vec(op(), 1..80)) {
        let mut h = Hub::new();
        for op in &ops {
            let before = h.ledger.clone();
            let r = match *op {
                Op::Deposit(u, a) => { h.deposit(u, a.into()); Ok(()) }
                Op::Reserve(a) => { h.reserve_deposit(a.into()); Ok(()) }
                Op::Pay(x, y, a) => h.pay(x, y, a.into(), PaymentKind::Internal).map(|_| ()),
                Op::External(u, a) => h.pay(u, u, a.into(), PaymentKind::External).map(|_| ()),
                Op::Purchase(u, a) => {
                    let id = h.id();
                    h.ledger.apply_sealed(&h.key, Command::Purchase { user: h.users[u].address(), amount: Amount(a.into()), purchase_id: id }).map(|_| ())
                }
                Op::Withdraw(u, a) => h.withdraw(u, a.into()),
                Op::Batch => { h.run_payout_batch(); Ok(()) }
                Op::Realize(u) => { h.realize(u); Ok(()) }
            };
            if let Err(e) = r {
                prop_assert!(expected_refusal(&e), "unexpected refusal {e:?} for {op:?}");
                prop_assert_eq!(&h.ledger, &before, "a refused command changed the ledger");
            }
            h.check();
        }
        h.run_payout_batch();
        h.everyone_exits();
    }
}

#[test]
fn chain_events_apply_once_by_position() {
    let mut h = Hub::new();
    let at = LogPosition { block: 50, log_index: 3 };
    let ev = ChainEvent::ReserveDeposited { reserve_after: Amount(10) };
    h.ledger.apply_sealed(&h.key, Command::Chain { at, event: ev }).expect("first");
    let before = h.ledger.clone();
    // The same position again, or an earlier one, is a no-op: nothing changes, no seq is taken.
    for again in [at, LogPosition { block: 50, log_index: 2 }, LogPosition { block: 49, log_index: 9 }] {
        let ev = ChainEvent::ReserveDeposited { reserve_after: Amount(99) };
        assert_eq!(
            h.ledger.apply_sealed(&h.key, Command::Chain { at: again, event: ev }),
            Ok(Outcome::Applied(vec![]))
        );
        assert_eq!(h.ledger, before);
    }
    // A confirmed height below the cursor's block is a contradiction.
    assert_eq!(h.ledger.apply_sealed(&h.key, Command::Block(49)), Err(Error::ChainEventInconsistent));
}

#[test]
fn custodial_balances_are_backed_by_the_reserve_and_move_in_every_direction() {
    use infhub_core::ledger::{custodial_address, CustodialResult, CustodialTransfer};
    let mut h = Hub::new();
    h.reserve_deposit(100);
    let (carol, dave) = (custodial_address("carol"), custodial_address("dave"));
    for a in [carol, dave] {
        let out = h.ledger.apply_sealed(&h.key, Command::OpenCustodial { account: a, api_key_hash: B256::ZERO });
        assert_eq!(out, Ok(Outcome::CustodialOpened));
    }
    let again = h.ledger.apply_sealed(&h.key, Command::OpenCustodial { account: carol, api_key_hash: B256::ZERO });
    assert_eq!(again, Err(Error::AccountAlreadyExists));
    let user0 = h.users[0].address();
    let as_channel = h.ledger.apply_sealed(&h.key, Command::OpenCustodial { account: user0, api_key_hash: B256::ZERO });
    assert_eq!(as_channel, Err(Error::AccountAlreadyExists), "a channel's address cannot be custodial");
    // A purchase for a custodial account is backed by the reserve like any other.
    let id = h.id();
    let too_much = Command::Purchase { user: carol, amount: Amount(101), purchase_id: id };
    assert_eq!(h.ledger.apply_sealed(&h.key, too_much), Err(Error::ReserveInsufficient));

    // Deposits for custodial accounts enter the reserve; one for an unknown reference is kept apart.
    let deposit_for = |h: &mut Hub, account: Address, amount: u128| {
        h.chain.deposit_for(account, U256::from(amount)).expect("custodial deposit");
        let reserve_after = Hub::amount(h.chain.reserve);
        h.event(ChainEvent::CustodialDeposited { account, amount: Amount(amount), reserve_after });
    };
    deposit_for(&mut h, carol, 50);
    deposit_for(&mut h, Address::repeat_byte(0x99), 7);
    assert_eq!(h.ledger.custodial(&carol).expect("carol").balance, Amount(50));
    assert_eq!(h.ledger.unattributed, Amount(7));
    h.check();

    let t = |from, to, amount, id: u64| CustodialTransfer {
        from,
        to,
        amount: Amount(amount),
        transfer_id: B256::from(U256::from(9_000 + id)),
    };
    let batch = vec![
        t(carol, dave, 20, 1),
        t(carol, user0, 10, 2),
        t(carol, carol, 1, 3),
        t(user0, dave, 1, 4),
        t(carol, dave, 21, 5),
    ];
    let Ok(Outcome::CustodialTransfers(r)) = h.ledger.apply_sealed(&h.key, Command::CustodialTransfers(batch)) else {
        panic!()
    };
    assert_eq!(r[0], CustodialResult::Moved { credit: None });
    let CustodialResult::Moved { credit: Some(c) } = &r[1] else { panic!("{r:?}") };
    c.verify(&domain(), h.key.address()).expect("hub-signed credit");
    assert_eq!(r[2], CustodialResult::Rejected { error: Error::RecipientMustNotBeSender });
    assert_eq!(r[3], CustodialResult::Rejected { error: Error::NotCustodial });
    assert_eq!(r[4], CustodialResult::Rejected { error: Error::InsufficientBalance }, "carol has 20 left");
    let repeat = h.ledger.apply_sealed(&h.key, Command::CustodialTransfers(vec![t(carol, dave, 20, 1)]));
    assert!(
        matches!(repeat, Ok(Outcome::CustodialTransfers(ref r)) if matches!(r[0], CustodialResult::Duplicate { .. }))
    );
    h.check();

    // Channel → custodial by a signed debit; custodial → chain address from the reserve.
    h.deposit(1, 30);
    let debit = {
        let pid = h.id();
        let st = &h.ledger.account(&h.users[1].address()).expect("a").channel;
        let d = st.next_debit(PaymentKind::Internal, dave, Amount(5), pid).expect("debit");
        Signed::new(d, &domain(), &h.users[1])
    };
    assert!(matches!(
        h.ledger.apply_sealed(&h.key, Command::Transfer(debit)),
        Ok(Outcome::Paid { credit: None, payout: None, .. })
    ));
    assert_eq!(h.ledger.custodial(&dave).expect("dave").balance, Amount(25));
    let w = Command::CustodialWithdraw {
        from: dave,
        recipient: Address::repeat_byte(0xEE),
        amount: Amount(10),
        transfer_id: h.id(),
    };
    assert!(matches!(h.ledger.apply_sealed(&h.key, w), Ok(Outcome::CustodialPayoutQueued(_))));
    h.run_payout_batch();
    h.check();

    // Conversion: carol's whole balance becomes a hub-signed credit in user 2's channel.
    let user2 = h.users[2].address();
    let conv = Command::ConvertToChannel { account: carol, user: user2, transfer_id: h.id() };
    let Ok(Outcome::Converted { credit, amount }) = h.ledger.apply_sealed(&h.key, conv) else { panic!() };
    assert_eq!((amount, credit.message.user, credit.message.cumulative_credit), (Amount(20), user2, Amount(20)));
    let carol_after = h.ledger.custodial(&carol).expect("carol");
    assert_eq!((carol_after.balance, carol_after.linked_channel), (Amount::ZERO, Some(user2)));
    assert_eq!(h.ledger.custodial_total, 15, "dave's 20 + 5 − 10");
    // reserve 157 − 10 paid out; committed: custodial 15 + unattributed 7 + credits 10 + 20.
    assert_eq!(h.ledger.free_reserve(), 147 - 52);
    h.check();
    h.everyone_exits();
}

#[test]
fn custodial_results_survive_the_binary_log_and_keep_their_tagged_json() {
    // Found by the history reading records back: an internally tagged enum serializes with
    // bincode but cannot be read back, so a logged custodial batch made the log unreadable.
    let credit = infhub_core::messages::HubSigned::new(
        infhub_core::messages::Credit {
            user: Address::repeat_byte(2),
            epoch: 1,
            nonce: 3,
            cumulative_credit: Amount(40),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
        },
        &domain(),
        &key(9),
    );
    let outcome = Outcome::CustodialTransfers(vec![
        infhub_core::ledger::CustodialResult::Moved { credit: Some(credit) },
        infhub_core::ledger::CustodialResult::Moved { credit: None },
        infhub_core::ledger::CustodialResult::Duplicate { first_seq: 7 },
        infhub_core::ledger::CustodialResult::Rejected { error: Error::InsufficientBalance },
    ]);
    let bytes = bincode::serialize(&outcome).expect("encode");
    let back: Outcome = bincode::deserialize(&bytes).expect("a logged custodial batch reads back");
    assert_eq!(back, outcome);
    let json = serde_json::to_value(&outcome).expect("json");
    let results = &json["CustodialTransfers"];
    assert_eq!(results[0]["result"], "moved", "{json}");
    assert_eq!(results[2]["result"], "duplicate", "{json}");
    assert_eq!(results[2]["first_seq"], 7, "{json}");
    assert_eq!(results[3]["result"], "rejected", "{json}");
    let from_json: Outcome = serde_json::from_value(json).expect("json back");
    assert_eq!(from_json, outcome);
}

/// Finding 5 of the security review: a debit the hub refused must never be chargeable. The
/// hub refunds it; the wallet's next payment takes the next nonce on top of it. A dishonest hub
/// that kept the refused debit and closes the channel with it (or with anything else the user
/// signed) cannot get the user paid less than her balance, once her newest credit (which carries
/// the refund) is on chain. Before refunds, the wallet signed its next payment with the refused
/// debit's nonce, and a close with the refused debit charged its whole amount.
#[test]
fn a_refused_debit_can_never_be_charged() {
    use infhub_core::channel::{step as channel_step, ChannelParams, Input, Role};
    let mut h = Hub::new();
    h.reserve_deposit(10);
    h.deposit(0, 100);
    let alice = h.users[0].address();
    let bob = h.users[1].address();
    let wallet_params =
        ChannelParams { domain: domain(), hub: h.key.address(), role: Role::User, max_withdrawal_expiry_blocks: 50 };
    let mut wallet = h.ledger.account(&alice).expect("alice").channel.clone();
    // Alice signs 1,000 to Bob (more than she has): refused and refunded.
    let id = h.id();
    let refused = Signed::new(
        wallet.next_debit(PaymentKind::Internal, bob, Amount(1_000), id).expect("d"),
        &domain(),
        &h.users[0],
    );
    let out = h.ledger.apply_sealed(&h.key, Command::Transfer(refused));
    let Ok(Outcome::Refunded { refused: Error::InsufficientBalance, refund }) = out else { panic!("{out:?}") };
    wallet = channel_step(&wallet, &wallet_params, Input::DebitRefunded { debit: refused, refund }).expect("refund").0;
    // Then 5 to Bob: applied, on top of the refused debit.
    let id = h.id();
    let paid =
        Signed::new(wallet.next_debit(PaymentKind::Internal, bob, Amount(5), id).expect("d"), &domain(), &h.users[0]);
    assert_eq!(paid.message.nonce, refused.message.nonce + 1, "the next payment takes the next nonce");
    assert!(matches!(h.ledger.apply_sealed(&h.key, Command::Transfer(paid)), Ok(Outcome::Paid { .. })));
    wallet = channel_step(&wallet, &wallet_params, Input::Debit(paid)).expect("paid").0;
    let balance = wallet.balance().expect("balance");
    assert_eq!(balance, Amount(95));
    assert_eq!(h.ledger.account(&alice).expect("alice").channel.balance(), Ok(balance), "hub and wallet agree");
    // The hub closes with each debit Alice ever signed; her watch submits her newest credit.
    for (name, debit) in [("the refused debit", refused), ("her newest debit", paid)] {
        let mut chain = h.chain.clone();
        chain.start_hub_close(h.key.address(), h.block, alice, &debit.message, &debit.signature.0).expect("close");
        let credit = wallet.credit.clone().expect("the refund");
        chain.submit_credit(h.block + 1, &credit.message, &credit.proof_bytes()).expect("alice's defence");
        // Whatever else the hub submits afterwards cannot lower her claim.
        for d in [refused, paid] {
            let _ = chain.submit_debit(h.block + 2, &d.message, &d.signature.0);
        }
        let settled = chain.settle(h.block + 100, alice).expect("settle");
        assert_eq!(settled.paid, U256::from(balance.0), "a close with {name} pays her balance");
    }
}

/// Finding 6 of the security review: anyone may open channels on chain from fresh addresses.
/// Those empty channels must not use up the ledger's accounts, so a real user registered later
/// is still tracked, and a stranger's channel is followed once it holds money. Before, every
/// `ChannelOpened` created an account until `max_accounts` refused further ones, and later
/// users' deposits were never credited.
#[test]
fn channels_opened_by_strangers_do_not_exhaust_the_ledger() {
    let mut h = Hub::new();
    let max = h.ledger.params.max_accounts;
    let hub = h.key.address();
    let before = h.ledger.account_count();
    for i in 0..(2 * max as u64) {
        let stranger = key(0x5_0000 + i).address();
        let epoch = h.chain.open_channel(stranger, stranger).expect("anyone may open their own channel");
        h.event(ChainEvent::ChannelOpened { user: stranger, epoch, opened_by: stranger });
    }
    assert_eq!(h.ledger.account_count(), before, "empty channels opened by strangers are not tracked");
    // A registration (the hub opens the channel) is tracked.
    let newcomer = key(0x6_0000).address();
    let epoch = h.chain.open_channel(hub, newcomer).expect("open");
    h.event(ChainEvent::ChannelOpened { user: newcomer, epoch, opened_by: hub });
    assert!(h.ledger.account(&newcomer).is_some(), "a registration is tracked");
    // So is a channel its user opened alone, from its first deposit, and the deposit counts.
    let depositor = key(0x5_0000).address();
    let total = h.chain.deposit(h.block, depositor, U256::from(40)).expect("deposit");
    h.event(ChainEvent::Deposited { user: depositor, epoch: 1, total_deposited: total });
    assert_eq!(h.ledger.account(&depositor).map(|a| a.channel.deposited), Some(Amount(40)));
    // And one the hub registers after its user opened it (`ChannelRegistered`).
    let late = key(0x5_0001).address();
    h.event(ChainEvent::ChannelRegistered { user: late, epoch: 1 });
    assert_eq!(h.ledger.account(&late).map(|a| a.channel.epoch), Some(1));
    // Exits of untracked channels concern nobody the hub owes: skipped, not refused.
    let quiet = key(0x5_0002).address();
    let no_credit = infhub_core::Credit {
        user: quiet,
        epoch: 1,
        nonce: 0,
        cumulative_credit: Amount::ZERO,
        locked_amount: Amount::ZERO,
        locks_root: B256::ZERO,
    };
    h.chain.start_exit(quiet, h.block, &no_credit, &[]).expect("exit");
    h.event(ChainEvent::ExitStarted { user: quiet, epoch: 1, settle_block: h.block + 10 });
    assert!(h.ledger.account(&quiet).is_none());
    h.ledger.check_invariants();
}

/// Carries out every duty the ledger has due on the contract model, as the hub's shell does
/// (confirmed at once): returns the duties carried out.
fn carry_out_duties(h: &mut Hub, policy: &infhub_core::duties::RealizePolicy) -> Vec<infhub_core::duties::Duty> {
    use infhub_core::duties::{due, HubTx};
    let duties = due(&h.ledger, policy);
    let hub = h.key.address();
    for duty in &duties {
        match &duty.tx {
            HubTx::SubmitDebit(d) => {
                h.chain.submit_debit(h.block, &d.message, &d.signature.0).expect("dispute");
                let (user, epoch) = (d.message.user, d.message.epoch);
                h.event(ChainEvent::DebitSubmitted { user, epoch, cumulative: d.message.cumulative_debit });
            }
            HubTx::SubmitCredit(c) => {
                h.chain.submit_credit(h.block, &c.message, &c.proof_bytes()).expect("honour the credit");
                let (user, epoch) = (c.message.user, c.message.epoch);
                h.event(ChainEvent::CreditSubmitted { user, epoch, cumulative: c.message.cumulative_credit });
            }
            HubTx::Settle(user) => {
                let s = h.chain.settle(h.block, *user).expect("settle");
                let epoch = h.chain.channel(*user).epoch;
                let reserve_after = Hub::amount(h.chain.reserve);
                h.event(ChainEvent::Settled { user: *user, epoch, paid: Hub::amount(s.paid), reserve_after });
            }
            HubTx::RealizeDebits(debits) => {
                let batch: Vec<_> = debits.iter().map(|d| (d.message, d.signature.0.to_vec())).collect();
                let before = h.chain.clone();
                let moved = h.chain.realize_debits(hub, &batch).expect("realize");
                for (d, m) in debits.iter().zip(moved) {
                    let Some(m) = m else { continue };
                    let (user, epoch) = (d.message.user, d.message.epoch);
                    if before.channel(user).debit.cumulative < d.message.cumulative_debit {
                        h.event(ChainEvent::DebitSubmitted { user, epoch, cumulative: d.message.cumulative_debit });
                    }
                    let reserve_after = Hub::amount(before.reserve + m);
                    h.event(ChainEvent::DebitRealized { user, epoch, moved: Hub::amount(m), reserve_after });
                }
            }
            HubTx::PostCheckpoint(header) => {
                h.chain.post_checkpoint(hub, h.block + 1, header.id, header.checkpoint).expect("post");
                h.event(ChainEvent::CheckpointPosted(*header));
            }
            HubTx::RevealPoint(_) | HubTx::RegisterDebitLock { .. } | HubTx::Unlock { .. } => {
                h.carry_out_lock_duty(&duty.tx);
            }
            other => panic!("no ledger state makes {other:?} due"),
        }
        h.check();
    }
    duties
}

#[test]
fn realizing_when_free_reserve_runs_low_keeps_payments_flowing() {
    use infhub_core::duties::{DutyKey, RealizePolicy};
    let mut h = Hub::new();
    h.reserve_deposit(100);
    h.deposit(0, 10_000);
    // User 0 pays user 1 round after round. Each payment's credit is backed by the reserve
    // until user 0's debit is realized; without realizations the reserve runs dry.
    let mut without = Hub::new();
    without.reserve_deposit(100);
    without.deposit(0, 10_000);
    let mut refused_without = 0;
    for _ in 0..30 {
        if refusal(&without.pay(0, 1, 40, PaymentKind::Internal)).is_some() {
            refused_without += 1;
        }
    }
    assert!(refused_without > 20, "the reserve of 100 backs only two payments of 40: {refused_without} refused");
    let policy =
        RealizePolicy { when_free_reserve_below: Amount(50), when_payer_reaches: Amount(u128::MAX), max_per_tx: 10 };
    let mut realizations = 0;
    for round in 0..30 {
        let r = h.pay(0, 1, 40, PaymentKind::Internal);
        assert_eq!(refusal(&r), None, "round {round}: {r:?}");
        let done = carry_out_duties(&mut h, &policy);
        realizations += done.iter().filter(|d| d.key == DutyKey::Realize).count();
        h.check();
    }
    assert!(realizations >= 10, "one realization per two payments or so: {realizations}");
    let l = h.ledger.liquidity();
    assert_eq!(l.committed.0 + l.free.0, l.reserve.0, "the liquidity picture adds up: {l:?}");
    h.everyone_exits();
}

#[test]
fn a_payer_above_the_threshold_is_realized_whatever_the_free_reserve_and_only_once() {
    use infhub_core::duties::{due, DutyKey, HubTx, RealizePolicy};
    let mut h = Hub::new();
    h.reserve_deposit(100_000);
    h.deposit(0, 1_000);
    h.deposit(2, 1_000);
    let policy = RealizePolicy { when_free_reserve_below: Amount(0), when_payer_reaches: Amount(300), max_per_tx: 10 };
    h.pay(0, 1, 200, PaymentKind::Internal).expect("paid");
    h.pay(2, 1, 100, PaymentKind::Internal).expect("paid");
    assert!(due(&h.ledger, &policy).is_empty(), "below the per-payer threshold: nothing to do");
    h.pay(0, 1, 150, PaymentKind::Internal).expect("paid");
    let duties = due(&h.ledger, &policy);
    let [duty] = duties.as_slice() else { panic!("{duties:?}") };
    let HubTx::RealizeDebits(debits) = &duty.tx else { panic!("{duty:?}") };
    assert_eq!(debits.len(), 1, "only the payer at the threshold, not the one below it");
    assert_eq!(debits[0].message.user, h.users[0].address());
    assert_eq!(h.ledger.liquidity().realizable, Amount(450));
    carry_out_duties(&mut h, &policy);
    assert_eq!(h.ledger.liquidity().realizable, Amount(100), "user 2's debit is left for later");
    assert!(due(&h.ledger, &policy).iter().all(|d| d.key != DutyKey::Realize), "done once confirmed");
}

#[test]
fn a_close_owes_a_dispute_until_the_chain_holds_the_newest_debit_then_a_settlement_until_settled() {
    use infhub_core::duties::{due, Duty, DutyKey, HubTx, RealizePolicy};
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.pay(0, 1, 120, PaymentKind::Internal).expect("paid");
    let user = h.users[0].address();
    let policy = RealizePolicy::OFF;
    assert!(due(&h.ledger, &policy).is_empty());
    // User 0 exits from an old backup: no credit, none of her debits.
    let mut c = h.ledger.account(&user).expect("a").channel.next_credit(Amount::ZERO).expect("c");
    c.nonce = 0;
    h.chain.start_exit(user, h.block, &c, &[]).expect("exit");
    let settle_block = h.chain.channel(user).settle_block;
    h.event(ChainEvent::ExitStarted { user, epoch: 1, settle_block });
    let debit = h.ledger.account(&user).expect("a").channel.debit.expect("debit");
    let dispute = Duty { key: DutyKey::Dispute(user), tx: HubTx::SubmitDebit(debit) };
    assert_eq!(due(&h.ledger, &policy), vec![dispute.clone()]);
    // Still due, block after block, until the chain's record holds it (a lost or reorged
    // transaction changes nothing here: the shell sends it again).
    h.block += 3;
    h.ledger.apply_sealed(&h.key, Command::Block(h.block)).expect("block");
    assert_eq!(due(&h.ledger, &policy), vec![dispute]);
    carry_out_duties(&mut h, &policy);
    assert!(due(&h.ledger, &policy).is_empty(), "the contract holds the newest debit");
    h.block = settle_block;
    h.ledger.apply_sealed(&h.key, Command::Block(h.block)).expect("block");
    assert_eq!(due(&h.ledger, &policy), vec![Duty { key: DutyKey::Settle(user), tx: HubTx::Settle(user) }]);
    carry_out_duties(&mut h, &policy);
    assert!(due(&h.ledger, &policy).is_empty(), "settled");
    assert_eq!(h.chain.channel(user).status, infhub_core::contract::ChainStatus::Settled);
}

#[test]
fn a_hub_close_of_a_dormant_user_puts_the_hubs_newest_credit_on_record_so_settlement_pays_it() {
    use infhub_core::duties::{due, Duty, DutyKey, HubTx, RealizePolicy};
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.deposit(1, 100);
    h.pay(0, 1, 120, PaymentKind::Internal).expect("paid");
    let user = h.users[1].address();
    let owed = h.ledger.account(&user).expect("a").channel.claim();
    assert_eq!(owed, Amount(220));
    // The hub closes user 1's channel (dormant: it never comes back to submit its credit).
    let debit = infhub_core::Debit::none(user, 1);
    h.chain.start_hub_close(h.key.address(), h.block, user, &debit, &[]).expect("hub close");
    let settle_block = h.chain.channel(user).settle_block;
    h.event(ChainEvent::ExitStarted { user, epoch: 1, settle_block });
    let credit = h.ledger.account(&user).expect("a").channel.credit.clone().expect("credit");
    let policy = RealizePolicy::OFF;
    assert_eq!(
        due(&h.ledger, &policy),
        vec![Duty { key: DutyKey::HonourCredit(user), tx: HubTx::SubmitCredit(credit) }],
        "the hub owes the credit it issued, whoever closed"
    );
    carry_out_duties(&mut h, &policy);
    assert!(due(&h.ledger, &policy).is_empty(), "the contract holds the newest credit");
    h.block = settle_block;
    h.ledger.apply_sealed(&h.key, Command::Block(h.block)).expect("block");
    let done = carry_out_duties(&mut h, &policy);
    assert_eq!(done.iter().map(|d| d.key).collect::<Vec<_>>(), vec![DutyKey::Settle(user)]);
    let c = h.chain.channel(user);
    assert_eq!(c.status, infhub_core::contract::ChainStatus::Settled);
    assert_eq!(h.chain.sent_to.get(&user).copied(), Some(U256::from(owed.0)), "paid its whole balance while away");
}

#[test]
fn the_ledger_earmarks_what_the_chain_announces_until_it_executes_is_cancelled_or_expires() {
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    let earmark = |h: &mut Hub, amount: u128| {
        h.ledger.apply_sealed(&h.key, Command::EarmarkReserveWithdrawal { amount: Amount(amount) })
    };
    // The hub earmarks, then announces; the chain's announcement is what counts.
    assert_eq!(earmark(&mut h, 300), Ok(Outcome::Earmarked));
    assert_eq!(earmark(&mut h, 10), Err(Error::ReserveWithdrawalPending), "one at a time");
    let unlock = h.chain.announce_reserve_withdrawal(h.key.address(), h.block, U256::from(300)).expect("announce");
    h.event(ChainEvent::ReserveWithdrawalAnnounced { amount: Amount(300), unlock_block: unlock });
    let w = h.ledger.reserve_withdrawal.expect("recorded");
    assert_eq!((w.amount, w.unlock_block, w.expires_block), (Amount(300), unlock, unlock + (unlock - h.block)));
    assert_eq!(h.ledger.liquidity().free, Amount(700));
    // An announcement of the chain's cannot be released by the ledger alone.
    let release = |h: &mut Hub| h.ledger.apply_sealed(&h.key, Command::ReleaseReserveEarmark);
    assert_eq!(release(&mut h), Err(Error::NoReserveWithdrawalPending));
    // Cancelled on chain: released.
    h.chain.cancel_reserve_withdrawal(h.key.address()).expect("cancel");
    h.event(ChainEvent::ReserveWithdrawalCancelled { amount: Amount(300) });
    assert_eq!((h.ledger.earmarked, h.ledger.reserve_withdrawal), (Amount::ZERO, None));
    // Announced outside the ledger (no earmark first): earmarked all the same; not executed in
    // its window, it expires and the earmark goes with it.
    let unlock = h.chain.announce_reserve_withdrawal(h.key.address(), h.block, U256::from(200)).expect("announce");
    h.event(ChainEvent::ReserveWithdrawalAnnounced { amount: Amount(200), unlock_block: unlock });
    assert_eq!(h.ledger.earmarked, Amount(200));
    let expires = h.ledger.reserve_withdrawal.expect("recorded").expires_block;
    h.ledger.apply_sealed(&h.key, Command::Block(expires - 1)).expect("block");
    assert_eq!(h.ledger.earmarked, Amount(200), "still executable in the last block of its window");
    h.ledger.apply_sealed(&h.key, Command::Block(expires)).expect("block");
    assert_eq!((h.ledger.earmarked, h.ledger.reserve_withdrawal), (Amount::ZERO, None), "expired");
    // An earmark whose announcement never reached the chain is released by the hub.
    assert_eq!(earmark(&mut h, 50), Ok(Outcome::Earmarked));
    assert_eq!(release(&mut h), Ok(Outcome::Earmarked));
    assert_eq!(h.ledger.earmarked, Amount::ZERO);
    h.check();
}

#[test]
fn a_checkpoint_is_built_recorded_posted_on_schedule_and_rebuilt_when_the_chain_never_takes_it() {
    use infhub_core::duties::{due, DutyKey, RealizePolicy};
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.pay(0, 1, 200, PaymentKind::Internal).expect("pay");
    assert_eq!(h.ledger.checkpoint_due(10), None, "no checkpoint before the ledger follows a block");
    h.block = 5;
    h.ledger.apply_sealed(&h.key, Command::Block(5)).expect("block");
    assert_eq!(h.ledger.checkpoint_due(0), None, "interval zero: checkpoints off");
    assert_eq!(h.ledger.checkpoint_due(10), Some(1), "the first is due at once");
    let (header, built) = h.build_checkpoint();
    assert_eq!(header.checkpoint.total_liability, U256::from(h.ledger.checkpoint_liability()));
    assert!(built.proofs_of(h.users[1].address()).iter().any(|p| p.leaf.credit_total == Amount(200)));
    // A dishonest or confused shell cannot record what does not follow or is not yet there.
    let refused = |h: &mut Hub, bad: CheckpointHeader| h.ledger.apply_sealed(&h.key, Command::CheckpointBuilt(bad));
    let mut wrong_id = header;
    wrong_id.id = 2;
    let mut future_seq = header;
    future_seq.checkpoint.ledger_seq = h.ledger.next_seq;
    let mut future_block = header;
    future_block.checkpoint.chain_block = 6;
    let mut future_inflows = header;
    future_inflows.checkpoint.inflows_through = U256::from(1);
    for bad in [wrong_id, future_seq, future_block, future_inflows] {
        assert_eq!(refused(&mut h, bad), Err(Error::CheckpointOutOfOrder), "{bad:?}");
    }
    let no_policy = RealizePolicy::OFF;
    assert!(due(&h.ledger, &no_policy).iter().all(|d| d.key != DutyKey::PostCheckpoint));
    assert_eq!(refused(&mut h, header), Ok(Outcome::CheckpointRecorded));
    assert_eq!(h.ledger.checkpoint_due(10), None, "built and waiting for the chain");
    // Posting is a duty until the chain confirms it; then the next one waits for its interval.
    let duties = carry_out_duties(&mut h, &no_policy);
    assert!(duties.iter().any(|d| d.key == DutyKey::PostCheckpoint));
    assert_eq!(h.ledger.checkpoints.posted, Some(header));
    assert_eq!(h.ledger.checkpoints.pending, None);
    assert!(due(&h.ledger, &no_policy).is_empty(), "nothing due once posted");
    h.block = 14;
    h.ledger.apply_sealed(&h.key, Command::Block(14)).expect("block");
    assert_eq!(h.ledger.checkpoint_due(10), None);
    h.block = 15;
    h.ledger.apply_sealed(&h.key, Command::Block(15)).expect("block");
    assert_eq!(h.ledger.checkpoint_due(10), Some(2));
    // Built, but the chain never takes it: after another interval it is due again, rebuilt.
    let (second, _) = h.build_checkpoint();
    assert_eq!(refused(&mut h, second), Ok(Outcome::CheckpointRecorded));
    h.block = 25;
    h.ledger.apply_sealed(&h.key, Command::Block(25)).expect("block");
    assert_eq!(h.ledger.checkpoint_due(10), Some(2), "a checkpoint the chain never took is rebuilt");
    let (rebuilt, _) = h.build_checkpoint();
    assert_eq!(rebuilt.id, 2);
    assert_eq!(refused(&mut h, rebuilt), Ok(Outcome::CheckpointRecorded));
    assert_eq!(h.ledger.checkpoints.pending, Some(rebuilt));
    // The chain took the older build after all (its transaction was in flight): the chain decides.
    h.chain.post_checkpoint(h.key.address(), 26, 2, second.checkpoint).expect("the older build");
    h.event(ChainEvent::CheckpointPosted(second));
    assert_eq!(h.ledger.checkpoints.posted, Some(second));
    assert_eq!(h.ledger.checkpoints.pending, None);
    h.event(ChainEvent::CheckpointPosted(header));
    assert_eq!(h.ledger.checkpoints.posted, Some(second), "an older event does not go back");
    h.check();
}

/// The contract model's side of complaints (spec §5.16), as the forge suite tests the contract:
/// a leaf that understates a credit the hub signed halts the hub, after which no payout or
/// advanced withdrawal leaves the reserve and no checkpoint is taken; complaints against an
/// honest leaf, with a forged path or the complainer's own signature are refused by name; a
/// user exits with her leaf.
#[test]
fn a_contradicting_leaf_halts_the_model_and_a_leaf_opens_an_exit() {
    use infhub_core::checkpoint::{BuiltCheckpoint, CheckpointDomain, LeafKind};
    use infhub_core::contract::PostedCheckpoint;
    use infhub_core::messages::HubSigned;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.pay(0, 1, 200, PaymentKind::Internal).expect("pay");
    let bob = h.users[1].address();
    let credit = h.ledger.account(&bob).expect("bob").channel.credit.clone().expect("bob's credit");
    let d = CheckpointDomain { chain_id: domain().chain_id, contract: domain().verifying_contract, checkpoint_id: 1 };
    let mut leaves = h.ledger.checkpoint_leaves(&d, &B256::ZERO);
    let honest = BuiltCheckpoint::build(d, leaves.clone(), &B256::ZERO);
    // The dishonest tree: bob's leaf keeps his credit's nonce but counts half its total.
    for l in leaves.iter_mut().filter(|l| l.account == bob && l.kind == LeafKind::Channel) {
        l.credit_total = Amount(l.credit_total.0 / 2);
        l.liability = Amount(l.liability.0 / 2);
    }
    let built = BuiltCheckpoint::build(d, leaves, &B256::ZERO);
    let c = PostedCheckpoint {
        root: built.root().hash,
        total_liability: built.root().sum,
        ledger_seq: 1,
        chain_block: h.block,
        inflows_through: h.chain.liability_inflows_total,
    };
    h.chain.post_checkpoint(h.key.address(), h.block + 1, 1, c).expect("posted");
    let proof = built.proofs_of(bob).into_iter().find(|p| p.leaf.kind == LeafKind::Channel).expect("bob's leaf");
    let honest_proof = honest.proofs_of(bob).into_iter().find(|p| p.leaf.kind == LeafKind::Channel).expect("leaf");
    let sig = credit.proof_bytes();
    let mut chain = h.chain.clone();
    // A path of the tree not posted; the complainer's own signature; an older, lower credit.
    let r = chain.complain_contradicted_credit(1, &honest_proof.leaf, &honest_proof.path, &credit.message, &sig);
    assert_eq!(r, Err(Error::RootMismatch));
    let forged = HubSigned::new(credit.message, &domain(), &h.users[2]).proof_bytes();
    let r = chain.complain_contradicted_credit(1, &proof.leaf, &proof.path, &credit.message, &forged);
    assert_eq!(r, Err(Error::WrongSigner));
    let mut newer = credit.message;
    newer.nonce += 1;
    newer.cumulative_credit = Amount(newer.cumulative_credit.0 + 1);
    let newer_sig = HubSigned::new(newer, &domain(), &h.key).proof_bytes();
    let r = chain.complain_contradicted_credit(1, &proof.leaf, &proof.path, &newer, &newer_sig);
    assert_eq!(r, Err(Error::ComplaintUnfounded), "a newer credit may have come after the checkpoint");
    assert_eq!(chain.halted_at_checkpoint, 0);
    // The credit the hub signed, against its understated leaf: halted.
    chain.complain_contradicted_credit(1, &proof.leaf, &proof.path, &credit.message, &sig).expect("proven");
    assert_eq!(chain.halted_at_checkpoint, 1);
    let next = PostedCheckpoint { ledger_seq: 2, ..c };
    assert_eq!(chain.post_checkpoint(h.key.address(), h.block + 2, 2, next), Err(Error::HubHalted));
    let out = chain.payout(h.key.address(), B256::repeat_byte(9), &[Address::repeat_byte(9)], &[U256::from(1)]);
    assert_eq!(out.map(|_| ()), Err(Error::HubHalted));
    // Bob, who lost his proofs, exits with his (honest-tree) leaf: its credit is on record.
    let mut honest_chain = h.chain.clone();
    let hc = PostedCheckpoint { root: honest.root().hash, total_liability: honest.root().sum, ..c };
    honest_chain.checkpoints.clear();
    honest_chain.post_checkpoint(h.key.address(), h.block + 1, 1, hc).expect("honest posted");
    let alice = h.users[0].address();
    let r = honest_chain.start_exit_from_checkpoint(alice, h.block + 2, 1, &honest_proof.leaf, &honest_proof.path);
    assert_eq!(r, Err(Error::UserMismatch), "not with another's leaf");
    honest_chain
        .start_exit_from_checkpoint(bob, h.block + 2, 1, &honest_proof.leaf, &honest_proof.path)
        .expect("exit from the leaf");
    assert_eq!(honest_chain.channel(bob).credit.cumulative, credit.message.cumulative_credit);
}

/// The contract model's side of the chain-totals complaint and the debit challenge (spec
/// §5.16), on the ledger's own leaves: the payer's honest leaf is challenged and answered with
/// the debit the ledger holds; a tree that inflates her debit cannot be answered and the hub
/// halts after the period; a tree that hides her deposit is proven wrong at once.
#[test]
fn a_challenged_debit_is_answered_by_an_honest_ledger_and_halts_a_dishonest_one() {
    use infhub_core::checkpoint::{BuiltCheckpoint, CheckpointDomain, LeafKind};
    use infhub_core::contract::PostedCheckpoint;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.pay(0, 1, 200, PaymentKind::Internal).expect("pay");
    h.block += 1; // the deposit lies before the checkpoint's block
    let alice = h.users[0].address();
    let signed = h.ledger.account(&alice).expect("alice").channel.debit.expect("alice's debit");
    let post = |chain: &mut ContractModel, id: u64, built: &BuiltCheckpoint| {
        let c = PostedCheckpoint {
            root: built.root().hash,
            total_liability: built.root().sum,
            ledger_seq: id,
            chain_block: h.block,
            inflows_through: chain.liability_inflows_total,
        };
        chain.post_checkpoint(h.key.address(), h.block + 1, id, c).expect("posted");
    };
    let tree = |id: u64, change: &dyn Fn(&mut infhub_core::checkpoint::Leaf)| {
        let d =
            CheckpointDomain { chain_id: domain().chain_id, contract: domain().verifying_contract, checkpoint_id: id };
        let mut leaves = h.ledger.checkpoint_leaves(&d, &B256::ZERO);
        leaves.iter_mut().filter(|l| l.account == alice && l.kind == LeafKind::Channel).for_each(change);
        let built = BuiltCheckpoint::build(d, leaves, &B256::ZERO);
        let proof = built.proofs_of(alice).into_iter().find(|p| p.leaf.kind == LeafKind::Channel).expect("her leaf");
        (built, proof)
    };
    let at = h.block + 1;
    let sig = signed.signature.0.to_vec();

    // Honest: challenged (by her alone), answered with her debit, nothing halts.
    let mut chain = h.chain.clone();
    let (honest, p) = tree(1, &|_| {});
    post(&mut chain, 1, &honest);
    assert_eq!(chain.complain_misstated_chain_totals(1, &p.leaf, &p.path), Err(Error::ComplaintUnfounded));
    let bob = h.users[1].address();
    assert_eq!(chain.challenge_debit(bob, at, 1, &p.leaf, &p.path).map(|_| ()), Err(Error::UserMismatch));
    chain.challenge_debit(alice, at, 1, &p.leaf, &p.path).expect("challenged");
    assert_eq!(chain.challenge_debit(alice, at, 1, &p.leaf, &p.path).map(|_| ()), Err(Error::DebitChallengeOutOfOrder));
    chain.answer_debit_challenge(at + 1, &signed.message, &sig).expect("answered");
    assert_eq!(chain.halt_on_unanswered_challenge(at + 100, alice), Err(Error::NoDebitChallenge));
    assert_eq!(chain.halted_at_checkpoint, 0, "an honest hub is never halted");

    // Inflated debit: her signed debit does not cover it; after the period the hub halts.
    let mut chain = h.chain.clone();
    let (inflated, p) = tree(1, &|l| l.debit_total = Amount(l.debit_total.0 + 1));
    post(&mut chain, 1, &inflated);
    let c = chain.challenge_debit(alice, at, 1, &p.leaf, &p.path).expect("challenged");
    assert_eq!(chain.answer_debit_challenge(at, &signed.message, &sig), Err(Error::AnswerMustCoverDebit));
    assert_eq!(chain.halt_on_unanswered_challenge(c.answer_by_block, alice), Err(Error::ChallengePeriodNotOver));
    chain.halt_on_unanswered_challenge(c.answer_by_block + 1, alice).expect("halted");
    assert_eq!(chain.halted_at_checkpoint, 1);

    // A hidden deposit is proven at once; one made after the checkpoint's block is not.
    let mut chain = h.chain.clone();
    let (hidden, p) = tree(1, &|l| l.deposited = Amount(l.deposited.0 - 1));
    post(&mut chain, 1, &hidden);
    let mut later = chain.clone();
    later.deposit(h.block + 1, alice, U256::from(1)).expect("deposit");
    assert_eq!(later.complain_misstated_chain_totals(1, &p.leaf, &p.path), Err(Error::ComplaintUnfounded));
    chain.complain_misstated_chain_totals(1, &p.leaf, &p.path).expect("proven");
    assert_eq!(chain.halted_at_checkpoint, 1);
}

/// The hub's duty to answer a debit challenge (spec §5.16): due while the period lasts, with
/// the user's newest signed debit, if it covers the challenged total; never otherwise (a hub
/// that invented the debit has nothing to answer with); gone once answered.
#[test]
fn a_debit_challenge_is_a_duty_while_it_can_be_answered() {
    use infhub_core::duties::{due, DutyKey, HubTx, RealizePolicy};
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.pay(0, 1, 200, PaymentKind::Internal).expect("pay");
    let alice = h.users[0].address();
    let signed = h.ledger.account(&alice).expect("alice").channel.debit.expect("her debit");
    let answers = |h: &Hub| -> Vec<HubTx> {
        due(&h.ledger, &RealizePolicy::OFF)
            .into_iter()
            .filter(|d| d.key == DutyKey::AnswerDebitChallenge(alice))
            .map(|d| d.tx)
            .collect()
    };
    let challenge = |total: u128, answer_by_block: u64| ChainEvent::DebitChallenged {
        id: 1,
        account: alice,
        epoch: 1,
        debit_total: Amount(total),
        answer_by_block,
    };
    h.event(challenge(200, h.block + 10));
    assert_eq!(answers(&h), vec![HubTx::AnswerDebitChallenge(signed)], "answered with her debit");
    h.event(ChainEvent::DebitChallengeAnswered { account: alice });
    assert!(answers(&h).is_empty(), "answered: no more duty");
    h.event(challenge(201, h.block + 10));
    assert!(answers(&h).is_empty(), "a total she never signed cannot be answered");
    h.block += 5;
    h.ledger.apply_sealed(&h.key, Command::Block(h.block)).expect("block");
    h.event(challenge(200, h.ledger.block - 1));
    assert!(answers(&h).is_empty(), "past its period an answer would revert");
    let stranger = infhub_core::PrivateKey::from_bytes([0x5a; 32]).expect("key").address();
    let at = h.block + 10;
    h.event(ChainEvent::DebitChallenged {
        id: 1,
        account: stranger,
        epoch: 1,
        debit_total: Amount(1),
        answer_by_block: at,
    });
    assert!(!h.ledger.checkpoints.debit_challenges.contains_key(&stranger), "only followed accounts are kept");
}

/// A custodial key rotation replaces the stored hash; it is refused for a channel account
/// (`NotCustodial`) and for the current hash (`CustodialKeyUnchanged`), and a refusal changes
/// nothing.
#[test]
fn a_custodial_key_rotation_replaces_the_hash_and_refuses_by_name() {
    use infhub_core::ledger::custodial_address;
    let mut h = Hub::new();
    h.deposit(0, 10);
    let carol = custodial_address("carol");
    let (first, second) = (B256::repeat_byte(1), B256::repeat_byte(2));
    let opened = h.ledger.apply_sealed(&h.key, Command::OpenCustodial { account: carol, api_key_hash: first });
    assert_eq!(opened, Ok(Outcome::CustodialOpened));
    let same = h.ledger.apply_sealed(&h.key, Command::RotateCustodialKey { account: carol, api_key_hash: first });
    assert_eq!(same, Err(Error::CustodialKeyUnchanged));
    let channel = h.users[0].address();
    let not_custodial =
        h.ledger.apply_sealed(&h.key, Command::RotateCustodialKey { account: channel, api_key_hash: second });
    assert_eq!(not_custodial, Err(Error::NotCustodial));
    assert_eq!(h.ledger.custodial(&carol).expect("carol").api_key_hash, first, "refusals change nothing");
    let rotated = h.ledger.apply_sealed(&h.key, Command::RotateCustodialKey { account: carol, api_key_hash: second });
    assert_eq!(rotated, Ok(Outcome::CustodialKeyRotated));
    assert_eq!(h.ledger.custodial(&carol).expect("carol").api_key_hash, second);
    h.check();
}

/// A resolved lock's escrow paid to the hub raises the ledger's reserve by running totals; an
/// event whose figures do not follow is `ChainEventInconsistent` and changes nothing.
#[test]
fn escrow_paid_to_the_reserve_is_followed_by_running_totals() {
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    let before = h.ledger.reserve;
    let wrong = ChainEvent::EscrowToReserve { amount: Amount(50), reserve_after: Amount(before.0 + 49) };
    let at = LogPosition { block: h.block, log_index: h.log_index + 1 };
    assert_eq!(h.ledger.apply_sealed(&h.key, Command::Chain { at, event: wrong }), Err(Error::ChainEventInconsistent));
    assert_eq!(h.ledger.reserve, before, "a refused event changes nothing");
    h.event(ChainEvent::EscrowToReserve { amount: Amount(50), reserve_after: Amount(before.0 + 50) });
    assert_eq!(h.ledger.reserve, Amount(before.0 + 50));
    // (No `h.check()`: the harness's model of the contract has no escrow to pay from.)
}

// ---- Point locks in the ledger (spec §5.17b): a conditional payment through the hub.

fn lock_scalar(id: u64) -> infhub_core::point_lock::Scalar {
    infhub_core::point_lock::Scalar::from_bytes(alloy_primitives::keccak256(id.to_be_bytes())).expect("below n")
}

fn point_lock(id: u64, amount: u128, expiry_block: u64) -> infhub_core::point_lock::Lock {
    infhub_core::point_lock::Lock {
        lock_id: B256::from(U256::from(id)),
        amount: Amount(amount),
        expiry_block,
        point: lock_scalar(id).point().address(),
    }
}

impl Hub {
    /// User `u` signs `change` to her outgoing locks, as her wallet builds it at the ledger's block.
    fn debit_lock(&mut self, u: usize, change: infhub_core::channel::LockChange) -> Result<Outcome, Error> {
        let (st, params) = self.wallet_view(u);
        let d = st.next_lock_debit(&params, &change)?;
        let debit = Signed::new(d, &domain(), &self.users[u]);
        self.ledger.apply_sealed(&self.key, Command::DebitLock { debit, change })
    }

    fn credit_lock(&mut self, u: usize, change: infhub_core::channel::LockChange) -> Result<Outcome, Error> {
        let user = self.users[u].address();
        self.ledger.apply_sealed(&self.key, Command::CreditLock { user, change })
    }

    fn advance_to(&mut self, block: u64) {
        self.block = block;
        let out = self.ledger.apply_sealed(&self.key, Command::Block(block));
        assert!(matches!(out, Ok(Outcome::Applied(_))), "{out:?}");
    }

    fn balance(&self, u: usize) -> Amount {
        self.ledger.account(&self.users[u].address()).expect("account").channel.balance().expect("balance")
    }
}

/// User 0 pays user 1 through the hub by point lock: her lock to the hub, the hub's lock to
/// user 1 on the same point; user 1 reveals the scalar to be paid, the hub settles her lock
/// with it. Every proof is sealed and verifies, the books and the checkpoint stay exact at each
/// step, and everyone exits with what the ledger says.
#[test]
fn a_conditional_payment_through_the_hub_settles_both_locks_with_one_scalar() {
    use infhub_core::channel::LockChange;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.advance_to(10);
    let out = h.debit_lock(0, LockChange::Add(point_lock(1, 100, 40))).expect("payer locks");
    let Outcome::DebitLockApplied { receipt, .. } = out else { panic!("{out:?}") };
    receipt.verify(&domain(), h.key.address()).expect("the receipt is sealed");
    assert_eq!(h.balance(0), Amount(400), "the lock is held out of the payer's balance");
    h.check();
    let out = h.credit_lock(1, LockChange::Add(point_lock(1, 100, 30))).expect("hub locks to the payee");
    let Outcome::CreditLockIssued { credit, .. } = out else { panic!("{out:?}") };
    credit.verify(&domain(), h.key.address()).expect("the credit is sealed");
    assert_eq!(credit.message.locked_amount, Amount(100));
    assert_eq!(h.balance(1), Amount(0), "an incoming lock is not spendable");
    assert_eq!(h.ledger.account(&h.users[1].address()).expect("a").obligation(), 100, "the hub owes the lock");
    h.check();
    // The payee reveals her scalar to the hub; the hub settles its lock, then the payer's.
    let settle = LockChange::Settle { lock_id: point_lock(1, 0, 0).lock_id, scalar: lock_scalar(1) };
    h.credit_lock(1, settle).expect("payee paid");
    assert_eq!(h.balance(1), Amount(100));
    h.check();
    h.debit_lock(0, settle).expect("payer settles with the scalar");
    assert_eq!(h.balance(0), Amount(400));
    assert_eq!(h.ledger.account(&h.users[0].address()).expect("a").channel.cumulative_debit(), Amount(100));
    h.check();
    h.everyone_exits();
}

/// A payment forwarded to another hub (spec §5.23a): the payer's lock to this hub is opened by
/// the scalar the next hop gave back. Only her pending lock's own scalar is recorded; once it
/// is, she can no longer drop the lock after its expiry, only settle it.
#[test]
fn a_scalar_learned_downstream_opens_only_the_payers_pending_lock_of_that_point() {
    use infhub_core::channel::LockChange;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.advance_to(10);
    h.debit_lock(0, LockChange::Add(point_lock(1, 100, 40))).expect("payer locks");
    let payer = h.users[0].address();
    let id = point_lock(1, 0, 0).lock_id;
    let learn = |payer, lock_id, scalar| Command::LockScalarLearned { payer, lock_id, scalar };
    assert_eq!(h.ledger.apply_sealed(&h.key, learn(payer, id, lock_scalar(2))), Err(Error::ScalarDoesNotOpenLock));
    let other = point_lock(2, 0, 0).lock_id;
    assert_eq!(h.ledger.apply_sealed(&h.key, learn(payer, other, lock_scalar(2))), Err(Error::UnknownLock));
    let stranger = h.users[1].address();
    assert_eq!(h.ledger.apply_sealed(&h.key, learn(stranger, id, lock_scalar(1))), Err(Error::UnknownLock));
    assert_eq!(h.ledger.locks.scalar_for(&payer, &id), None, "refusals record nothing");
    let out = h.ledger.apply_sealed(&h.key, learn(payer, id, lock_scalar(1)));
    assert_eq!(out, Ok(Outcome::LockScalarNoted { changed: true }));
    assert_eq!(
        h.ledger.apply_sealed(&h.key, learn(payer, id, lock_scalar(1))),
        Ok(Outcome::LockScalarNoted { changed: false })
    );
    assert_eq!(h.ledger.locks.scalar_for(&payer, &id), Some(lock_scalar(1)));
    h.advance_to(41);
    assert_eq!(h.debit_lock(0, LockChange::Drop { lock_id: id }), Err(Error::LockRevealed), "paid downstream");
    h.debit_lock(0, LockChange::Settle { lock_id: id, scalar: lock_scalar(1) }).expect("settled");
    assert_eq!(h.ledger.locks.scalar_for(&payer, &id), None, "forgotten once settled");
    h.check();
}

/// A forward the next hub refused (spec §5.23a): the payer's signed cancel gives her lock back
/// before its expiry, but not once the hub learned its scalar (then it was paid downstream), and
/// a cancel her key did not sign is refused.
#[test]
fn a_cancelled_forward_gives_the_lock_back_unless_its_scalar_was_learned() {
    use infhub_core::channel::LockChange;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.advance_to(10);
    h.debit_lock(0, LockChange::Add(point_lock(1, 100, 400))).expect("lock 1");
    h.debit_lock(0, LockChange::Add(point_lock(2, 50, 400))).expect("lock 2");
    let payer = h.users[0].address();
    let cancel = |h: &Hub, id: u64, signer: usize| {
        let (st, params) = h.wallet_view(0);
        let change = LockChange::Cancel { lock_id: point_lock(id, 0, 0).lock_id };
        let d = st.next_lock_debit(&params, &change).expect("debit");
        Command::CancelForwardedLock { debit: Signed::new(d, &domain(), &h.users[signer]) }
    };
    let forged = cancel(&h, 1, 1);
    assert_eq!(h.ledger.apply_sealed(&h.key, forged), Err(Error::WrongSigner));
    let learn = Command::LockScalarLearned { payer, lock_id: point_lock(2, 0, 0).lock_id, scalar: lock_scalar(2) };
    h.ledger.apply_sealed(&h.key, learn).expect("scalar learned");
    let paid = cancel(&h, 2, 0);
    assert_eq!(h.ledger.apply_sealed(&h.key, paid), Err(Error::LockRevealed), "paid downstream: only settles");
    assert_eq!(h.balance(0), Amount(350));
    let out = h.ledger.apply_sealed(&h.key, cancel(&h, 1, 0)).expect("cancelled");
    let Outcome::DebitLockApplied { receipt, .. } = out else { panic!("{out:?}") };
    receipt.verify(&domain(), h.key.address()).expect("sealed");
    assert_eq!(h.balance(0), Amount(450), "lock 1 is back before its expiry");
    h.check();
}

#[test]
fn the_hub_locks_to_a_user_only_what_its_reserve_covers() {
    use infhub_core::channel::LockChange;
    let mut h = Hub::new();
    h.reserve_deposit(50);
    h.deposit(0, 500);
    h.advance_to(10);
    let before = h.ledger.clone();
    assert_eq!(h.credit_lock(1, LockChange::Add(point_lock(1, 51, 30))), Err(Error::ReserveInsufficient));
    assert_eq!(h.ledger, before, "a refused lock changes nothing");
    h.credit_lock(1, LockChange::Add(point_lock(1, 50, 30))).expect("fits the reserve exactly");
    h.check();
    // The reserve is now committed: a purchase for anyone is refused.
    let out = h.ledger.apply_sealed(
        &h.key,
        Command::Purchase { user: h.users[2].address(), amount: Amount(1), purchase_id: B256::ZERO },
    );
    assert_eq!(out, Err(Error::ReserveInsufficient));
}

/// The payer's attack: taking back a lock the hub forwarded before its expiry, by a drop or a
/// cancel her key signs. Both are refused until the expiry block is past; then she drops it,
/// and the hub drops its own lock to the payee the same way.
#[test]
fn a_payer_cannot_take_back_a_lock_before_its_expiry() {
    use infhub_core::channel::LockChange;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.advance_to(10);
    let id = point_lock(1, 0, 0).lock_id;
    h.debit_lock(0, LockChange::Add(point_lock(1, 100, 40))).expect("lock");
    h.credit_lock(1, LockChange::Add(point_lock(1, 100, 30))).expect("forwarded");
    assert_eq!(h.debit_lock(0, LockChange::Cancel { lock_id: id }), Err(Error::LockNotExpired));
    assert_eq!(h.debit_lock(0, LockChange::Drop { lock_id: id }), Err(Error::LockNotExpired));
    h.advance_to(30);
    assert_eq!(
        h.credit_lock(1, LockChange::Drop { lock_id: id }),
        Err(Error::LockNotExpired),
        "a reveal at block 30 counts"
    );
    h.advance_to(31);
    h.credit_lock(1, LockChange::Drop { lock_id: id }).expect("the hub drops its expired lock");
    assert_eq!(h.ledger.account(&h.users[1].address()).expect("a").obligation(), 0);
    assert_eq!(h.debit_lock(0, LockChange::Drop { lock_id: id }), Err(Error::LockNotExpired), "hers lasts to 40");
    h.advance_to(41);
    h.debit_lock(0, LockChange::Drop { lock_id: id }).expect("expired");
    assert_eq!(h.balance(0), Amount(500));
    h.check();
    h.everyone_exits();
}

impl Hub {
    /// User `u`'s channel as her wallet sees it at the ledger's block, and her end's parameters.
    fn wallet_view(&self, u: usize) -> (infhub_core::channel::ChannelState, infhub_core::channel::ChannelParams) {
        use infhub_core::channel::{ChannelParams, Role};
        let mut st = self.ledger.account(&self.users[u].address()).expect("account").channel.clone();
        st.block = self.ledger.block;
        let params = ChannelParams {
            domain: domain(),
            hub: self.key.address(),
            role: Role::User,
            max_withdrawal_expiry_blocks: 100,
        };
        (st, params)
    }

    /// User `from` pays user `to` by a locked transfer of `lock`.
    fn locked_transfer(
        &mut self,
        from: usize,
        to: usize,
        lock: infhub_core::point_lock::Lock,
    ) -> Result<Outcome, Error> {
        use infhub_core::channel::LockChange;
        let (st, params) = self.wallet_view(from);
        let d = st.next_lock_debit(&params, &LockChange::Add(lock))?;
        let debit = Signed::new(d, &domain(), &self.users[from]);
        let payee = self.users[to].address();
        self.ledger.apply_sealed(&self.key, Command::LockedTransfer { debit, lock, payee })
    }
}

/// The locked transfer links the payer's lock to the hub's lock to the payee: the payee's
/// reveal pays her and hands the scalar to the payer's side, whose lock can then only be
/// settled, also after its expiry (the payer's attempt to drop it is `LockRevealed`).
#[test]
fn a_locked_transfer_is_paid_by_the_payees_reveal_and_the_payer_cannot_drop_it_after() {
    use infhub_core::channel::{LockChange, LOCK_REVEAL_MARGIN_BLOCKS};
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.advance_to(10);
    let lock = point_lock(9, 120, 60);
    let out = h.locked_transfer(0, 1, lock).expect("locked transfer");
    let Outcome::LockedTransferApplied { receipt, payee_credit } = out else { panic!("{out:?}") };
    receipt.verify(&domain(), h.key.address()).expect("sealed receipt");
    payee_credit.verify(&domain(), h.key.address()).expect("sealed credit");
    let payee_lock =
        h.ledger.account(&h.users[1].address()).expect("a").channel.credit_locks.get(&lock.lock_id).copied();
    assert_eq!(payee_lock.map(|l| l.expiry_block), Some(60 - LOCK_REVEAL_MARGIN_BLOCKS), "a reveal margin earlier");
    assert_eq!((h.balance(0), h.balance(1)), (Amount(380), Amount(0)));
    h.check();
    // The same lock id again is refused whole: nothing changes.
    let before = h.ledger.clone();
    assert_eq!(h.locked_transfer(0, 1, point_lock(9, 5, 60)), Err(Error::LockIdReused));
    assert_eq!(h.ledger, before);
    // The payee reveals at her expiry block; the hub learns the scalar for the payer's lock.
    h.advance_to(40);
    h.credit_lock(1, LockChange::Settle { lock_id: lock.lock_id, scalar: lock_scalar(9) }).expect("payee paid");
    assert_eq!(h.balance(1), Amount(120));
    assert_eq!(h.ledger.locks.scalar_for(&h.users[0].address(), &lock.lock_id), Some(lock_scalar(9)));
    // The payer cannot take it back, neither now nor after its expiry.
    assert_eq!(h.debit_lock(0, LockChange::Drop { lock_id: lock.lock_id }), Err(Error::LockNotExpired));
    h.advance_to(61);
    assert_eq!(h.debit_lock(0, LockChange::Drop { lock_id: lock.lock_id }), Err(Error::LockRevealed));
    h.check();
}

#[test]
fn a_payer_settles_a_locked_transfer_with_the_scalar_the_hub_learned() {
    let lock = point_lock(9, 120, 60);
    let mut h = Hub::after_locked_transfer(lock);
    h.settle_both(&lock, 9);
    assert!(h.ledger.locks.is_empty(), "nothing left to link");
    assert_eq!((h.balance(0), h.balance(1)), (Amount(380), Amount(120)));
    h.check();
    h.everyone_exits();
}

#[test]
fn a_locked_transfer_needs_a_reveal_margin_and_another_open_payee() {
    use infhub_core::channel::LOCK_REVEAL_MARGIN_BLOCKS;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.advance_to(10);
    let before = h.ledger.clone();
    assert_eq!(h.locked_transfer(0, 1, point_lock(1, 10, 10 + LOCK_REVEAL_MARGIN_BLOCKS)), Err(Error::ExpiryTooSoon));
    assert_eq!(h.locked_transfer(0, 0, point_lock(1, 10, 60)), Err(Error::RecipientMustNotBeSender));
    assert_eq!(h.locked_transfer(0, 1, point_lock(1, 501, 60)), Err(Error::InsufficientBalance));
    assert_eq!(h.ledger, before, "refusals change nothing");
    h.locked_transfer(0, 1, point_lock(1, 10, 11 + LOCK_REVEAL_MARGIN_BLOCKS)).expect("one block of margin to spare");
    h.check();
}

/// The operator's freeze (spec §5.20): a frozen payer's debit is refused unused, a payment to a
/// frozen payee is refunded, a frozen account cannot withdraw cooperatively, be credited or lock;
/// unfreezing restores everything, and the exit on chain pays a frozen account in full.
#[test]
fn a_frozen_account_neither_pays_nor_is_paid_and_still_exits_in_full() {
    use infhub_core::channel::LockChange;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.deposit(1, 300);
    h.advance_to(10);
    let freeze = |h: &mut Hub, u: usize, frozen: bool| {
        let account = h.users[u].address();
        h.ledger.apply_sealed(&h.key, Command::SetFrozen { account, frozen })
    };
    assert_eq!(freeze(&mut h, 0, true), Ok(Outcome::FrozenSet { changed: true }));
    assert_eq!(freeze(&mut h, 0, true), Ok(Outcome::FrozenSet { changed: false }), "idempotent");
    let stranger = Address::repeat_byte(0x77);
    assert_eq!(
        h.ledger.apply_sealed(&h.key, Command::SetFrozen { account: stranger, frozen: true }),
        Err(Error::UnknownAccount)
    );
    let before = h.ledger.clone();
    assert_eq!(h.pay(0, 1, 10, PaymentKind::Internal), Err(Error::AccountFrozen));
    assert_eq!(h.ledger, before, "refused unused: the nonce is still free");
    let out = h.pay(1, 0, 10, PaymentKind::Internal).expect("answered");
    assert!(matches!(out, Outcome::Refunded { refused: Error::AccountFrozen, .. }), "{out:?}");
    assert_eq!(h.withdraw(0, 10), Err(Error::AccountFrozen));
    let purchase =
        Command::Purchase { user: h.users[0].address(), amount: Amount(5), purchase_id: B256::repeat_byte(5) };
    assert_eq!(h.ledger.apply_sealed(&h.key, purchase), Err(Error::AccountFrozen));
    assert_eq!(h.locked_transfer(1, 0, point_lock(1, 10, 60)), Err(Error::AccountFrozen));
    assert_eq!(h.credit_lock(0, LockChange::Add(point_lock(2, 10, 40))), Err(Error::AccountFrozen));
    h.check();
    assert_eq!(freeze(&mut h, 0, false), Ok(Outcome::FrozenSet { changed: true }));
    h.pay(0, 1, 10, PaymentKind::Internal).expect("paid after unfreezing");
    freeze(&mut h, 1, true).expect("frozen");
    h.check();
    h.everyone_exits();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The operator's list (spec §5.22): walking it page by page from any page size gives
    /// exactly the accounts that pass the filter, in address order, each once.
    #[test]
    fn the_account_list_pages_through_exactly_the_filtered_accounts(
        channels in proptest::collection::btree_set(any::<[u8; 20]>(), 0..40),
        custodial in proptest::collection::btree_set(any::<[u8; 20]>(), 0..10),
        frozen_mask in any::<u64>(),
        page in 1usize..7,
        prefix in proptest::option::of(0u8..16),
        only_frozen in proptest::option::of(any::<bool>()),
    ) {
        use infhub_core::ledger::{AccountFilter, AccountSummary};
        let mut h = Hub::new();
        let hub = h.key.address();
        let mut all: Vec<Address> = h.users.iter().map(|u| u.address()).collect();
        for c in &channels {
            let user = Address::from(*c);
            if all.contains(&user) || user == hub || user == Address::ZERO { continue }
            h.event(ChainEvent::ChannelOpened { user, epoch: 1, opened_by: hub });
            all.push(user);
        }
        for c in &custodial {
            let account = Address::from(*c);
            if all.contains(&account) || account == hub || account == Address::ZERO { continue }
            h.ledger.apply_sealed(&h.key, Command::OpenCustodial { account, api_key_hash: B256::ZERO }).expect("opened");
            all.push(account);
        }
        for (i, a) in all.iter().enumerate() {
            if frozen_mask >> (i % 64) & 1 == 1 {
                h.ledger.apply_sealed(&h.key, Command::SetFrozen { account: *a, frozen: true }).expect("frozen");
            }
        }
        let filter = AccountFilter {
            prefix: prefix.map(|p| format!("0x{p:x}")),
            frozen: only_frozen,
            ..AccountFilter::default()
        };
        let mut want: Vec<Address> = all
            .iter()
            .copied()
            .filter(|a| prefix.is_none_or(|p| a.0[0] >> 4 == p))
            .filter(|a| only_frozen.is_none_or(|f| f == h.ledger.frozen.contains(a)))
            .collect();
        want.sort();
        let mut got: Vec<AccountSummary> = Vec::new();
        let mut after = None;
        let mut ended = false;
        // Every page but the last holds at least one account: a walk longer than that is a bug.
        for _ in 0..=all.len() {
            let p = h.ledger.account_page(after, page, &filter);
            prop_assert!(p.len() <= page);
            let Some(last) = p.last() else { ended = true; break };
            after = Some(last.address);
            got.extend(p);
        }
        prop_assert!(ended, "the walk did not end");
        prop_assert_eq!(got.iter().map(|s| s.address).collect::<Vec<_>>(), want);
        for s in &got {
            prop_assert_eq!(s.kind == "custodial", h.ledger.custodial(&s.address).is_some());
        }
    }
}

impl Hub {
    /// A hub with 1,000 in reserve and user 0's 500 deposited, at block 10, after user 0's
    /// locked transfer of `lock` to user 1.
    fn after_locked_transfer(lock: infhub_core::point_lock::Lock) -> Hub {
        let mut h = Hub::new();
        h.reserve_deposit(1_000);
        h.deposit(0, 500);
        h.advance_to(10);
        h.locked_transfer(0, 1, lock).expect("locked transfer");
        h
    }

    /// User 1 reveals the scalar of point lock `id` to be paid, and user 0 settles her lock
    /// with the scalar the hub learned.
    fn settle_both(&mut self, lock: &infhub_core::point_lock::Lock, id: u64) {
        use infhub_core::channel::LockChange;
        self.credit_lock(1, LockChange::Settle { lock_id: lock.lock_id, scalar: lock_scalar(id) }).expect("payee paid");
        let scalar = self.ledger.locks.scalar_for(&self.users[0].address(), &lock.lock_id).expect("learned");
        self.debit_lock(0, LockChange::Settle { lock_id: lock.lock_id, scalar }).expect("payer settles");
    }

    /// A lock duty's transaction on the contract model and the registry (the harness's
    /// `revealed` map), confirmed at once with the events the contracts emit.
    fn carry_out_lock_duty(&mut self, tx: &infhub_core::duties::HubTx) {
        use infhub_core::duties::HubTx;
        use infhub_core::messages::Eip712Message;
        match tx {
            HubTx::RevealPoint(scalar) => {
                let point = scalar.point().address();
                if !self.revealed.contains_key(&point) {
                    self.revealed.insert(point, self.block);
                    self.event(ChainEvent::PointRevealed { point, scalar: *scalar });
                }
            }
            HubTx::RegisterDebitLock { debit, lock, path } => {
                let m = debit.message;
                self.chain.register_debit_lock(self.block, &m, &debit.signature.0, lock, path).expect("register");
                self.event(ChainEvent::LockRegistered {
                    user: m.user,
                    epoch: m.epoch,
                    hub_locks: false,
                    proof_digest: m.digest(&domain()),
                    lock_id: lock.lock_id,
                    amount: lock.amount,
                });
            }
            HubTx::Unlock { proof_digests, lock_ids } => {
                for (digest, id) in proof_digests.iter().zip(lock_ids) {
                    let registration = self.chain.lock_registrations[&(*digest, *id)];
                    let revealed_at = self.revealed.get(&registration.lock.point).copied();
                    let user = self.chain.locked_proofs[digest].user;
                    let epoch = self.chain.locked_proofs[digest].epoch;
                    let direction = self.chain.locked_proofs[digest].direction;
                    let out = self.chain.unlock(self.block, *digest, *id, revealed_at).expect("unlock");
                    let to_reserve = match direction {
                        infhub_core::contract::LockDirection::User => out.to_receiver,
                        infhub_core::contract::LockDirection::Hub => out.to_sender,
                    };
                    if !to_reserve.is_zero() {
                        let reserve_after = Self::amount(self.chain.reserve);
                        self.event(ChainEvent::EscrowToReserve { amount: Self::amount(to_reserve), reserve_after });
                    }
                    self.event(ChainEvent::LockResolved { user, epoch, proof_digest: *digest, lock_id: *id });
                }
            }
            other => panic!("not a lock duty: {other:?}"),
        }
    }

    /// The payer's empty exit (she never received a credit): her channel closes on chain.
    fn exit_without_credit(&mut self, u: usize) {
        let user = self.users[u].address();
        let ch = &self.ledger.account(&user).expect("a").channel;
        let mut credit = ch.next_credit(Amount::ZERO).expect("credit");
        credit.nonce = 0;
        self.chain.start_exit(user, self.block, &credit, &[]).expect("exit");
        let c = self.chain.channel(user);
        self.event(ChainEvent::ExitStarted { user, epoch: c.epoch, settle_block: c.settle_block });
    }
}

/// The payer who does not settle a lock the hub learned the scalar of (spec §5.11a, "no close
/// because of a lock"): the hub waits while her channel is open and the lock is far from its
/// expiry; from the payee's expiry on it reveals the scalar in the registry; when she exits,
/// the hub registers her pending lock through her newest debit and, after the settlement,
/// unlocks it: the escrow pays the hub's reserve exactly the lock, she gets the rest. Without
/// the registration the contract would pay her the whole deposit (the lock was never in her
/// debit total): the reserve checks below would fail.
#[test]
fn the_hub_reveals_registers_and_unlocks_the_lock_of_a_payer_who_exits_without_settling() {
    use infhub_core::channel::{LockChange, LOCK_REVEAL_MARGIN_BLOCKS};
    use infhub_core::duties::{due, DutyKey, RealizePolicy};
    let lock = point_lock(9, 120, 60);
    let mut h = Hub::after_locked_transfer(lock);
    h.advance_to(30);
    h.credit_lock(1, LockChange::Settle { lock_id: lock.lock_id, scalar: lock_scalar(9) }).expect("payee paid");
    let lock_keys = |h: &Hub| -> Vec<DutyKey> {
        due(&h.ledger, &RealizePolicy::OFF)
            .into_iter()
            .map(|d| d.key)
            .filter(|k| matches!(k, DutyKey::RevealPoint(_) | DutyKey::RegisterLock(..) | DutyKey::Unlock(..)))
            .collect()
    };
    assert_eq!(lock_keys(&h), vec![], "the payer may still settle off chain: no gas spent");
    h.advance_to(60 - LOCK_REVEAL_MARGIN_BLOCKS - 1);
    assert_eq!(lock_keys(&h), vec![]);
    h.advance_to(60 - LOCK_REVEAL_MARGIN_BLOCKS);
    assert_eq!(lock_keys(&h), vec![DutyKey::RevealPoint(lock.point)], "from the payee's expiry on");
    // She exits with nothing from the hub, hoping her unsettled lock comes back to her.
    h.block += 1;
    h.exit_without_credit(0);
    let payer = h.users[0].address();
    let debit = h.ledger.account(&payer).and_then(|a| a.channel.debit).expect("her lock debit");
    let digest = {
        use infhub_core::messages::Eip712Message;
        debit.message.digest(&domain())
    };
    assert_eq!(
        lock_keys(&h),
        vec![DutyKey::RevealPoint(lock.point), DutyKey::RegisterLock(digest, lock.lock_id)],
        "reveal and register while her channel closes"
    );
    let reserve_before = h.chain.reserve;
    carry_out_duties(&mut h, &RealizePolicy::OFF);
    assert_eq!(lock_keys(&h), vec![], "done once confirmed");
    assert!(h.ledger.locks.revealed_at(&lock.point).is_some());
    h.check();
    // The period ends: the hub settles, then unlocks.
    let settle_block = h.chain.channel(payer).settle_block;
    h.advance_to(settle_block);
    let done = carry_out_duties(&mut h, &RealizePolicy::OFF);
    assert!(done.iter().any(|d| d.key == DutyKey::Settle(payer)), "{done:?}");
    assert_eq!(h.chain.sent_to.get(&payer).copied(), Some(U256::from(380)), "paid all but the lock");
    assert_eq!(lock_keys(&h), vec![DutyKey::Unlock(payer, 1)]);
    carry_out_duties(&mut h, &RealizePolicy::OFF);
    assert_eq!(h.chain.reserve, reserve_before + U256::from(120), "the lock paid the hub");
    assert_eq!(h.ledger.reserve.0, 1_000 + 120);
    assert_eq!(h.chain.total_escrow, U256::ZERO);
    assert_eq!(lock_keys(&h), vec![], "resolved: nothing left to do");
    assert!(h.ledger.locks.registered().is_empty(), "the registration is forgotten once resolved");
    assert_eq!(h.balance(1), Amount(120), "the payee keeps what she was paid");
    h.check();
}

/// A payer who settles in time costs the hub nothing on chain: no reveal, no registration,
/// and her close after that has no lock duty.
#[test]
fn a_payer_who_settles_in_time_leaves_the_hub_no_lock_duty() {
    use infhub_core::duties::{due, DutyKey, RealizePolicy};
    let lock = point_lock(3, 70, 60);
    let mut h = Hub::after_locked_transfer(lock);
    h.settle_both(&lock, 3);
    h.advance_to(55);
    h.block += 1;
    h.exit_without_credit(0);
    let keys: Vec<DutyKey> = due(&h.ledger, &RealizePolicy::OFF).into_iter().map(|d| d.key).collect();
    assert_eq!(keys, vec![DutyKey::Dispute(h.users[0].address())], "only her settled total to put on record");
    assert!(h.ledger.locks.is_empty(), "nothing followed");
}

/// A lock nobody claims (spec §5.17b): once the hub's lock to the payee is past its expiry the
/// ledger lists it for the hub to drop, and the drop frees the reserve it held; the payer's
/// lock, a reveal margin later, is hers to drop. Neither is listed or droppable a block early.
#[test]
fn an_unclaimed_lock_expires_and_each_sender_drops_its_own() {
    use infhub_core::channel::LockChange;
    let lock = point_lock(4, 90, 60);
    let mut h = Hub::after_locked_transfer(lock);
    let payee = h.users[1].address();
    assert_eq!(h.ledger.account(&payee).expect("a").obligation(), 90, "the reserve holds the hub's lock");
    h.advance_to(40);
    assert_eq!(h.ledger.expired_forwarded_locks(10), vec![], "a reveal at block 40 still counts");
    h.advance_to(41);
    assert_eq!(h.ledger.expired_forwarded_locks(10), vec![(payee, lock.lock_id)]);
    assert_eq!(h.ledger.expired_forwarded_locks(0), vec![], "at most max");
    h.credit_lock(1, LockChange::Drop { lock_id: lock.lock_id }).expect("the hub drops it");
    assert_eq!(h.ledger.account(&payee).expect("a").obligation(), 0, "the reserve is free again");
    assert_eq!(h.ledger.expired_forwarded_locks(10), vec![]);
    assert_eq!(
        h.debit_lock(0, LockChange::Drop { lock_id: lock.lock_id }),
        Err(Error::LockNotExpired),
        "hers lasts to 60"
    );
    h.advance_to(61);
    h.debit_lock(0, LockChange::Drop { lock_id: lock.lock_id }).expect("the payer drops hers");
    assert_eq!((h.balance(0), h.balance(1)), (Amount(500), Amount(0)), "nothing moved");
    assert!(h.ledger.locks.is_empty(), "nothing left to follow");
    h.check();
    h.everyone_exits();
}

// ---- A payment split over several routes, collected by the payee's hub (spec §5.23c).

/// The payee's point `Z` (scalar `lock_scalar(7)`) and two parts on their own points, `Z − y·G`.
struct Split {
    z: infhub_core::point_lock::Scalar,
    tweaks: [infhub_core::point_lock::Scalar; 2],
    parts: [infhub_core::point_lock::Lock; 2],
}

fn split(amounts: [u128; 2], expiry_block: u64) -> Split {
    let z = lock_scalar(7);
    let tweaks = [lock_scalar(100), lock_scalar(200)];
    let part = |i: usize| infhub_core::point_lock::Lock {
        lock_id: point_lock(7, 0, 0).lock_id,
        amount: Amount(amounts[i]),
        expiry_block,
        point: z.point().untweaked(&tweaks[i]).expect("point").address(),
    };
    Split { z, tweaks, parts: [part(0), part(1)] }
}

impl Hub {
    /// Users 0 and 2 (two previous hubs' link accounts) lock the parts of `s`; the hub locks
    /// `amount` to user 1 on the payee's point unless the ledger refuses.
    fn collect(&mut self, s: &Split, amount: u128, expiry_block: u64, payers: &[usize]) -> Result<Outcome, Error> {
        use infhub_core::ledger::LockPart;
        let lock = infhub_core::point_lock::Lock {
            amount: Amount(amount),
            expiry_block,
            point: s.z.point().address(),
            ..s.parts[0]
        };
        let parts = payers
            .iter()
            .map(|&u| LockPart { payer: self.users[u].address(), tweak: s.tweaks[if u == 0 { 0 } else { 1 }] })
            .collect();
        let payee = self.users[1].address();
        self.ledger.apply_sealed(&self.key, Command::CollectedTransfer { payee, lock, parts })
    }
}

/// Two parts of 60 and 40 from two payers, each on its own point, fund one hub lock of 100 to
/// the payee; nothing is locked to her before they cover it. Her reveal of `z` opens each part
/// with `z` less the part's tweak, and each payer settles her own part with it.
#[test]
fn a_split_payment_is_locked_to_the_payee_once_its_parts_cover_it_and_her_scalar_opens_each_part() {
    use infhub_core::channel::LockChange;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.deposit(2, 500);
    h.advance_to(10);
    let s = split([60, 40], 100);
    h.debit_lock(0, LockChange::Add(s.parts[0])).expect("part 1");
    let before = h.ledger.clone();
    assert_eq!(h.collect(&s, 100, 80, &[0]), Err(Error::PartsDoNotFundLock), "60 of 100");
    assert_eq!(h.collect(&s, 100, 80, &[0, 2]), Err(Error::PartsDoNotFundLock), "part 2 not locked yet");
    assert_eq!(h.ledger, before, "refusals change nothing");
    h.debit_lock(2, LockChange::Add(s.parts[1])).expect("part 2");
    let out = h.collect(&s, 100, 80, &[0, 2]).expect("collected");
    let Outcome::CreditLockIssued { credit, .. } = out else { panic!("{out:?}") };
    credit.verify(&domain(), h.key.address()).expect("sealed");
    assert_eq!(credit.message.locked_amount, Amount(100));
    h.check();
    // The payee reveals z; each part's scalar is z less its tweak.
    let id = s.parts[0].lock_id;
    h.credit_lock(1, LockChange::Settle { lock_id: id, scalar: s.z }).expect("payee paid");
    assert_eq!(h.balance(1), Amount(100));
    for (u, tweak) in [(0, s.tweaks[0]), (2, s.tweaks[1])] {
        let scalar = h.ledger.locks.scalar_for(&h.users[u].address(), &id).expect("the part opened");
        assert_eq!(scalar, s.z.upstream(&tweak).expect("scalar"));
        h.debit_lock(u, LockChange::Settle { lock_id: id, scalar }).expect("the part settles");
    }
    assert_eq!((h.balance(0), h.balance(2)), (Amount(440), Amount(460)));
    assert!(h.ledger.locks.is_empty(), "nothing left to follow");
    h.check();
    h.everyone_exits();
}

/// The rules of a collection, each tried by a hub's shell that got it wrong: parts of another
/// lock id, a payer twice, no parts, a part expiring inside the hub lock's reveal margin, the
/// payee among the payers, a hub lock already expired, and parts that already fund a lock.
#[test]
fn a_collection_refuses_parts_that_do_not_fund_its_lock_by_name() {
    use infhub_core::channel::{LockChange, LOCK_REVEAL_MARGIN_BLOCKS};
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    for u in [0, 1, 2] {
        h.deposit(u, 500);
    }
    h.advance_to(10);
    let s = split([60, 40], 100);
    h.debit_lock(0, LockChange::Add(s.parts[0])).expect("part 1");
    h.debit_lock(2, LockChange::Add(s.parts[1])).expect("part 2");
    let before = h.ledger.clone();
    assert_eq!(h.collect(&s, 100, 80, &[0, 0]), Err(Error::TooManyParts), "a payer twice");
    assert_eq!(h.collect(&s, 100, 80, &[]), Err(Error::TooManyParts), "no parts");
    let late = 100 - LOCK_REVEAL_MARGIN_BLOCKS + 1;
    assert_eq!(h.collect(&s, 100, late, &[0, 2]), Err(Error::PartsDoNotFundLock), "no reveal margin");
    assert_eq!(h.collect(&s, 100, 10, &[0, 2]), Err(Error::ExpiryTooSoon), "already expired");
    h.debit_lock(1, LockChange::Add(s.parts[1])).expect("the payee locks too");
    assert_eq!(h.collect(&s, 100, 80, &[0, 1]), Err(Error::RecipientMustNotBeSender));
    let mut other = split([60, 40], 100);
    other.parts[0].lock_id = point_lock(8, 0, 0).lock_id;
    assert_eq!(h.collect(&other, 100, 80, &[0, 2]), Err(Error::PartsDoNotFundLock), "parts of another id");
    h.ledger = before;
    h.collect(&s, 100, 80, &[0, 2]).expect("collected");
    // The same parts cannot fund a second lock (to the same payee: its id is taken; the rule
    // is the parts', checked first).
    assert_eq!(h.collect(&s, 100, 80, &[0, 2]), Err(Error::PartsDoNotFundLock), "the parts fund one lock");
    h.check();
}

/// The payee reveals on chain instead (her hub was down): the registry's reveal of her point
/// opens both parts, so the hub is paid by both payers. A collection nobody claims expires like
/// a forwarded lock: the hub drops its lock, each payer her own part.
#[test]
fn a_split_payment_opens_from_the_registry_and_expires_like_any_forwarded_lock() {
    use infhub_core::channel::LockChange;
    let mut h = Hub::new();
    h.reserve_deposit(1_000);
    h.deposit(0, 500);
    h.deposit(2, 500);
    h.advance_to(10);
    let s = split([60, 40], 100);
    h.debit_lock(0, LockChange::Add(s.parts[0])).expect("part 1");
    h.debit_lock(2, LockChange::Add(s.parts[1])).expect("part 2");
    let mut unclaimed = h.ledger.clone();
    h.collect(&s, 100, 80, &[0, 2]).expect("collected");
    let id = s.parts[0].lock_id;
    h.event(ChainEvent::PointRevealed { point: s.z.point().address(), scalar: s.z });
    for (u, tweak) in [(0, s.tweaks[0]), (2, s.tweaks[1])] {
        assert_eq!(h.ledger.locks.scalar_for(&h.users[u].address(), &id), s.z.upstream(&tweak).ok());
    }
    // Unclaimed instead: after block 80 the hub drops its lock; the parts last to 100.
    std::mem::swap(&mut h.ledger, &mut unclaimed);
    h.collect(&s, 100, 80, &[0, 2]).expect("collected");
    h.advance_to(81);
    let payee = h.users[1].address();
    assert_eq!(h.ledger.expired_forwarded_locks(10), vec![(payee, id)]);
    h.credit_lock(1, LockChange::Drop { lock_id: id }).expect("dropped");
    h.advance_to(101);
    h.debit_lock(0, LockChange::Drop { lock_id: id }).expect("part 1 back");
    h.debit_lock(2, LockChange::Drop { lock_id: id }).expect("part 2 back");
    assert_eq!((h.balance(0), h.balance(1), h.balance(2)), (Amount(500), Amount(0), Amount(500)));
    assert!(h.ledger.locks.is_empty(), "nothing left to follow");
    h.check();
}
