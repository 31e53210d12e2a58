//! Locks in proofs (spec §5.17a) through the channel machine at both ends: the user's
//! outgoing locks on her debits, the hub's locks to her on its credits. Each attack test has a
//! dishonest signer build a proof its own key can sign that would erase or shrink a lock it
//! owes, or settle one without its scalar, and checks the honest end refuses it by the named
//! rule. A property test runs both ends in lockstep over random lock changes and payments and
//! checks that they agree, that every proof carries its book, and that value is conserved.

use alloy_primitives::{keccak256, Address, B256};
use infhub_core::channel::{
    step, ChannelParams, ChannelState, Effect, Input, LockChange, Role, MAX_LOCK_EXPIRY_BLOCKS,
};
use infhub_core::messages::{Credit, Debit, HubSigned, PaymentKind, Signed, SignedCredit, SignedDebit};
use infhub_core::point_lock::{locks_root, Lock, Scalar};
use infhub_core::{Amount, Domain, Error, PrivateKey};
use proptest::prelude::*;

fn key(seed: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&seed.to_be_bytes());
    PrivateKey::from_bytes(b).expect("key")
}

fn scalar_of(id: u64) -> Scalar {
    Scalar::from_bytes(keccak256(id.to_be_bytes())).expect("a hash below n")
}

fn lock(id: u64, amount: u128, expiry_block: u64) -> Lock {
    Lock {
        lock_id: B256::from(keccak256(id.to_le_bytes())),
        amount: Amount(amount),
        expiry_block,
        point: scalar_of(id).point().address(),
    }
}

struct Ends {
    hub: PrivateKey,
    user: PrivateKey,
    domain: Domain,
    /// The hub's copy of the channel.
    at_hub: ChannelState,
    /// The wallet's copy.
    at_user: ChannelState,
}

impl Ends {
    /// A channel with 100 deposited, both ends at block 10.
    fn new() -> Ends {
        let (hub, user) = (key(1), key(2));
        let domain = Domain { chain_id: 5, verifying_contract: Address::repeat_byte(0x33) };
        let mut e = Ends {
            at_hub: ChannelState::opened(user.address(), 1),
            at_user: ChannelState::opened(user.address(), 1),
            hub,
            user,
            domain,
        };
        e.both(Input::ChainDeposited { epoch: 1, total_deposited: Amount(100) });
        e.both(Input::Block(10));
        e
    }

    fn params(&self, role: Role) -> ChannelParams {
        ChannelParams { domain: self.domain, hub: self.hub.address(), role, max_withdrawal_expiry_blocks: 50 }
    }

    fn both(&mut self, input: Input) {
        self.at_hub = step(&self.at_hub, &self.params(Role::Hub), input.clone()).expect("hub end").0;
        self.at_user = step(&self.at_user, &self.params(Role::User), input).expect("user end").0;
    }

    fn sign_debit(&self, d: Debit) -> SignedDebit {
        Signed::new(d, &self.domain, &self.user)
    }

    fn sign_credit(&self, c: Credit) -> SignedCredit {
        HubSigned::new(c, &self.domain, &self.hub)
    }

    /// The user's honest lock debit, stepped at both ends.
    fn lock_debit(&mut self, change: LockChange) -> SignedDebit {
        let d = self.sign_debit(self.at_user.next_lock_debit(&self.params(Role::User), &change).expect("debit"));
        self.both(Input::DebitLock { debit: d, change });
        d
    }

    /// The hub's honest lock credit, stepped at both ends.
    fn lock_credit(&mut self, change: LockChange) -> SignedCredit {
        let c = self.at_hub.next_lock_credit(&self.params(Role::Hub), &change, 0).expect("credit");
        let c = self.sign_credit(c);
        self.both(Input::CreditLock { credit: c.clone(), change });
        c
    }

    fn hub_refuses(&self, input: Input) -> Error {
        step(&self.at_hub, &self.params(Role::Hub), input).expect_err("the hub's end refuses")
    }

    fn user_refuses(&self, input: Input) -> Error {
        step(&self.at_user, &self.params(Role::User), input).expect_err("the wallet refuses")
    }
}

#[test]
fn a_lock_debit_adds_settles_and_the_balance_counts_it_at_both_ends() {
    let mut e = Ends::new();
    let l = lock(1, 30, 40);
    let d = e.lock_debit(LockChange::Add(l));
    assert_eq!(
        (d.message.kind, d.message.amount, d.message.payment_id),
        (PaymentKind::LockAdd as u8, Amount(30), l.lock_id)
    );
    assert_eq!(d.message.recipient, e.hub.address());
    assert_eq!((d.message.locked_amount, d.message.cumulative_debit), (Amount(30), Amount::ZERO));
    assert_eq!(d.message.locks_root, locks_root(&e.domain, &[l]).expect("root").0);
    assert_eq!(e.at_hub.balance(), Ok(Amount(70)));
    assert_eq!(e.at_user.balance(), Ok(Amount(70)));
    // A payment after it carries the pending lock.
    let pay = e.at_user.next_debit(PaymentKind::Internal, Address::repeat_byte(9), Amount(5), B256::ZERO).expect("d");
    assert_eq!((pay.locked_amount, pay.locks_root), (d.message.locked_amount, d.message.locks_root));
    e.both(Input::Debit(e.sign_debit(pay)));
    // Settled with its scalar: the amount joins the running total, the book empties.
    let settle = e.lock_debit(LockChange::Settle { lock_id: l.lock_id, scalar: scalar_of(1) });
    assert_eq!((settle.message.cumulative_debit, settle.message.locked_amount), (Amount(35), Amount::ZERO));
    assert_eq!(settle.message.locks_root, B256::ZERO);
    assert_eq!(e.at_hub, e.at_user, "both ends hold the same state");
    assert_eq!(e.at_hub.balance(), Ok(Amount(65)));
}

#[test]
fn a_lock_that_does_not_fit_the_balance_is_refused() {
    let mut e = Ends::new();
    e.lock_debit(LockChange::Add(lock(1, 60, 40)));
    let change = LockChange::Add(lock(2, 41, 40));
    let mut d = e.at_user.next_lock_debit(&e.params(Role::User), &change).expect("built");
    d.nonce = e.at_user.debit_nonce() + 1;
    assert_eq!(e.hub_refuses(Input::DebitLock { debit: e.sign_debit(d), change }), Error::InsufficientBalance);
    // And a payment cannot spend what is locked.
    let pay = e.at_user.next_debit(PaymentKind::Internal, Address::repeat_byte(9), Amount(41), B256::ZERO).expect("d");
    assert_eq!(e.hub_refuses(Input::Debit(e.sign_debit(pay))), Error::InsufficientBalance);
}

/// The payer's attack on the hop that forwarded her lock: a newer proof her key can sign that
/// drops the lock before its expiry, as a plain payment, as a drop, or as a lock proof whose
/// root leaves it out.
#[test]
fn a_payer_cannot_erase_a_pending_lock_with_a_newer_proof() {
    let mut e = Ends::new();
    let l = lock(1, 30, 40);
    e.lock_debit(LockChange::Add(l));
    // A payment proof with an empty book.
    let mut pay =
        e.at_user.next_debit(PaymentKind::Internal, Address::repeat_byte(9), Amount(1), B256::ZERO).expect("d");
    (pay.locked_amount, pay.locks_root) = (Amount::ZERO, B256::ZERO);
    assert_eq!(e.hub_refuses(Input::Debit(e.sign_debit(pay))), Error::LocksRootMismatch);
    // A drop before the expiry block is past.
    let drop = LockChange::Drop { lock_id: l.lock_id };
    assert_eq!(e.at_user.next_lock_debit(&e.params(Role::User), &drop), Err(Error::LockNotExpired));
    let mut forged =
        e.at_user.next_lock_debit(&e.params(Role::User), &LockChange::Cancel { lock_id: l.lock_id }).expect("d");
    forged.kind = PaymentKind::LockDrop as u8;
    assert_eq!(e.hub_refuses(Input::DebitLock { debit: e.sign_debit(forged), change: drop }), Error::LockNotExpired);
    // Another lock added with a root that silently leaves the first out.
    let second = lock(2, 10, 40);
    let mut add = e.at_user.next_lock_debit(&e.params(Role::User), &LockChange::Add(second)).expect("d");
    (add.locks_root, add.locked_amount) = (locks_root(&e.domain, &[second]).expect("root").0, Amount(40));
    assert_eq!(
        e.hub_refuses(Input::DebitLock { debit: e.sign_debit(add), change: LockChange::Add(second) }),
        Error::LocksRootMismatch
    );
    // At the block after the expiry the drop is honest and accepted.
    e.both(Input::Block(41));
    e.lock_debit(drop);
    assert_eq!(e.at_hub.balance(), Ok(Amount(100)));
}

#[test]
fn a_lock_debit_must_name_its_lock_pay_the_hub_and_have_the_right_kind() {
    let mut e = Ends::new();
    let l = lock(1, 30, 40);
    let change = LockChange::Add(l);
    let honest = e.at_user.next_lock_debit(&e.params(Role::User), &change).expect("d");
    let refused = |d: Debit| e.hub_refuses(Input::DebitLock { debit: e.sign_debit(d), change });
    assert_eq!(refused(Debit { recipient: Address::repeat_byte(9), ..honest }), Error::RecipientMustBeHub);
    assert_eq!(refused(Debit { amount: Amount(29), ..honest }), Error::LockMismatch);
    assert_eq!(refused(Debit { payment_id: B256::repeat_byte(1), ..honest }), Error::LockMismatch);
    assert_eq!(refused(Debit { kind: PaymentKind::LockSettle as u8, ..honest }), Error::LockKindMismatch);
    assert_eq!(refused(Debit { cumulative_debit: Amount(1), ..honest }), Error::CumulativeMismatch);
    // A lock kind sent as a plain payment is refused, whatever its figures.
    assert_eq!(e.hub_refuses(Input::Debit(e.sign_debit(honest))), Error::LockKindMismatch);
    // Signed by someone else.
    let stranger = Signed::new(honest, &e.domain, &key(9));
    assert_eq!(e.hub_refuses(Input::DebitLock { debit: stranger, change }), Error::WrongSigner);
    e.lock_debit(change);
    // The same lock id again.
    let again = LockChange::Add(lock(1, 5, 40));
    assert_eq!(e.at_user.next_lock_debit(&e.params(Role::User), &again), Err(Error::LockIdReused));
    // An expiry too far ahead, or not ahead at all.
    let far = LockChange::Add(lock(2, 5, 10 + MAX_LOCK_EXPIRY_BLOCKS + 1));
    assert_eq!(e.at_user.next_lock_debit(&e.params(Role::User), &far), Err(Error::ExpiryTooFar));
    let past = LockChange::Add(lock(3, 5, 10));
    assert_eq!(e.at_user.next_lock_debit(&e.params(Role::User), &past), Err(Error::ExpiryMustBeInFuture));
}

/// A settlement needs the scalar that opens the lock. The payer's settlement of her own lock
/// pays the hub by her signature, so both ends take it after the expiry too (the hub may have
/// learned the scalar in time, she late); only the hub's settlement of its own lock is bound to
/// the expiry at the hub's end (next test).
#[test]
fn a_settlement_needs_the_scalar_and_the_payers_own_counts_after_the_expiry() {
    let mut e = Ends::new();
    let l = lock(1, 30, 40);
    e.lock_debit(LockChange::Add(l));
    let wrong = LockChange::Settle { lock_id: l.lock_id, scalar: scalar_of(2) };
    assert_eq!(e.at_hub.next_lock_debit(&e.params(Role::Hub), &wrong), Err(Error::ScalarDoesNotOpenLock));
    e.both(Input::Block(41));
    let late = LockChange::Settle { lock_id: l.lock_id, scalar: scalar_of(1) };
    let d = e.lock_debit(late);
    assert_eq!(d.message.cumulative_debit, Amount(30), "she paid the lock");
    assert_eq!(e.at_hub, e.at_user);
}

/// The hub's attack on the user it owes a lock: a newer credit its key can sign that drops the
/// lock before the expiry, or settles it without raising the total.
#[test]
fn a_hub_cannot_erase_or_underpay_a_lock_it_owes_the_user() {
    let mut e = Ends::new();
    let l = lock(7, 25, 40);
    let c = e.lock_credit(LockChange::Add(l));
    assert_eq!((c.message.locked_amount, c.message.cumulative_credit), (Amount(25), Amount::ZERO));
    assert_eq!(e.at_user.balance(), Ok(Amount(100)), "an incoming lock is not spendable until settled");
    // A plain credit with an empty book.
    let mut plain = e.at_hub.next_credit(Amount(1)).expect("c");
    (plain.locked_amount, plain.locks_root) = (Amount::ZERO, B256::ZERO);
    assert_eq!(e.user_refuses(Input::Credit(e.sign_credit(plain))), Error::LocksRootMismatch);
    // A drop before the expiry.
    let cancel =
        e.at_hub.next_lock_credit(&e.params(Role::Hub), &LockChange::Cancel { lock_id: l.lock_id }, 0).expect("c");
    let drop = LockChange::Drop { lock_id: l.lock_id };
    assert_eq!(
        e.user_refuses(Input::CreditLock { credit: e.sign_credit(cancel), change: drop }),
        Error::LockNotExpired
    );
    // A settlement that does not raise the total by the lock.
    let settle = LockChange::Settle { lock_id: l.lock_id, scalar: scalar_of(7) };
    let mut short = e.at_hub.next_lock_credit(&e.params(Role::Hub), &settle, 0).expect("c");
    short.cumulative_credit = Amount(24);
    assert_eq!(
        e.user_refuses(Input::CreditLock { credit: e.sign_credit(short), change: settle }),
        Error::CumulativeMismatch
    );
    // The honest settlement.
    let paid = e.lock_credit(settle);
    assert_eq!((paid.message.cumulative_credit, paid.message.locked_amount), (Amount(25), Amount::ZERO));
    assert_eq!(e.at_user.balance(), Ok(Amount(125)));
    assert_eq!(e.at_hub, e.at_user);
}

/// The hub settles its lock to the user at its own confirmed block, no later than the expiry;
/// the wallet, already past the expiry by its own view of the chain, still takes the payment
/// (it only raises her total). The hub's end never settles late.
#[test]
fn a_wallet_takes_the_hubs_settlement_that_arrives_after_the_expiry_it_sees() {
    let mut e = Ends::new();
    let l = lock(3, 20, 40);
    e.lock_credit(LockChange::Add(l));
    let settle = LockChange::Settle { lock_id: l.lock_id, scalar: scalar_of(3) };
    e.at_hub = step(&e.at_hub, &e.params(Role::Hub), Input::Block(40)).expect("hub").0;
    e.at_user = step(&e.at_user, &e.params(Role::User), Input::Block(45)).expect("user").0;
    let c = e.sign_credit(e.at_hub.next_lock_credit(&e.params(Role::Hub), &settle, 0).expect("on time at the hub"));
    let input = Input::CreditLock { credit: c, change: settle };
    e.at_user = step(&e.at_user, &e.params(Role::User), input).expect("taken late").0;
    assert_eq!(e.at_user.balance(), Ok(Amount(120)));
    let mut late = Ends::new();
    late.lock_credit(LockChange::Add(l));
    late.both(Input::Block(41));
    assert_eq!(late.at_hub.next_lock_credit(&late.params(Role::Hub), &settle, 0), Err(Error::LockExpired));
    // Likewise her own lock added by a debit the hub applied in time: her end records it when
    // the receipt comes, past the expiry by her view; the hub's end refuses a late addition.
    let mut own = Ends::new();
    let add = LockChange::Add(lock(4, 10, 12));
    let d = own.sign_debit(own.at_user.next_lock_debit(&own.params(Role::User), &add).expect("signed at 10"));
    own.at_hub = step(&own.at_hub, &own.params(Role::Hub), Input::DebitLock { debit: d, change: add }).expect("hub").0;
    own.at_user = step(&own.at_user, &own.params(Role::User), Input::Block(20)).expect("user").0;
    own.at_user =
        step(&own.at_user, &own.params(Role::User), Input::DebitLock { debit: d, change: add }).expect("late").0;
    assert_eq!(own.at_user.debit_locks, own.at_hub.debit_locks);
    let mut hub_late = Ends::new();
    hub_late.both(Input::Block(20));
    assert_eq!(hub_late.hub_refuses(Input::DebitLock { debit: d, change: add }), Error::ExpiryMustBeInFuture);
}

/// A wallet that missed a lock credit cannot check the next credit's root: it refuses it (and
/// asks the hub for what it missed) rather than accept a book it cannot open.
#[test]
fn a_wallet_that_missed_a_lock_credit_refuses_the_next_credit() {
    let mut e = Ends::new();
    let change = LockChange::Add(lock(7, 25, 40));
    let missed = e.sign_credit(e.at_hub.next_lock_credit(&e.params(Role::Hub), &change, 0).expect("c"));
    e.at_hub =
        step(&e.at_hub, &e.params(Role::Hub), Input::CreditLock { credit: missed.clone(), change }).expect("hub").0;
    let next = e.sign_credit(e.at_hub.next_credit(Amount(3)).expect("c"));
    assert_eq!(e.user_refuses(Input::Credit(next.clone())), Error::LocksRootMismatch);
    e.at_user = step(&e.at_user, &e.params(Role::User), Input::CreditLock { credit: missed, change }).expect("late").0;
    e.at_user = step(&e.at_user, &e.params(Role::User), Input::Credit(next)).expect("then in order").0;
    assert_eq!(e.at_user.balance(), Ok(Amount(103)));
}

#[test]
fn lock_changes_are_reported_as_effects_and_survive_a_serde_round_trip() {
    let e = Ends::new();
    let change = LockChange::Settle { lock_id: B256::repeat_byte(1), scalar: scalar_of(3) };
    let json = serde_json::to_string(&change).expect("encode");
    assert_eq!(serde_json::from_str::<LockChange>(&json).expect("decode"), change);
    assert!(serde_json::from_str::<Scalar>("\"0x0\"").is_err(), "a zero scalar does not decode");
    let add = LockChange::Add(lock(1, 30, 40));
    let d = e.sign_debit(e.at_user.next_lock_debit(&e.params(Role::User), &add).expect("d"));
    let (_, effects) = step(&e.at_hub, &e.params(Role::Hub), Input::DebitLock { debit: d, change: add }).expect("ok");
    assert_eq!(effects, vec![Effect::DebitLockApplied { debit: d, change: add }]);
}

#[derive(Clone, Debug)]
enum Op {
    UserLock { amount: u8, expiry_in: u8 },
    HubLock { amount: u8, expiry_in: u8 },
    Settle { user_side: bool, which: u8 },
    Drop { user_side: bool, which: u8, cancel: bool },
    Pay { amount: u8 },
    Credit { amount: u8 },
    Advance { blocks: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8.., 1u8..80).prop_map(|(amount, expiry_in)| Op::UserLock { amount, expiry_in }),
        3 => (1u8.., 1u8..80).prop_map(|(amount, expiry_in)| Op::HubLock { amount, expiry_in }),
        2 => (any::<bool>(), any::<u8>()).prop_map(|(user_side, which)| Op::Settle { user_side, which }),
        2 => (any::<bool>(), any::<u8>(), any::<bool>()).prop_map(|(user_side, which, cancel)| Op::Drop { user_side, which, cancel }),
        2 => (1u8..).prop_map(|amount| Op::Pay { amount }),
        1 => (1u8..).prop_map(|amount| Op::Credit { amount }),
        2 => (0u8..30).prop_map(|blocks| Op::Advance { blocks }),
    ]
}

/// A pending lock and the id its scalar is derived from.
type Pending = (u64, Lock);

/// One of a direction's pending locks, in the order they were added.
fn pick(pending: &[Pending], which: u8) -> Option<Pending> {
    (!pending.is_empty()).then(|| pending[usize::from(which) % pending.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Both ends accept exactly the same proofs, every proof carries its direction's book, and
    /// what the user locked, settled and got back adds up.
    #[test]
    fn both_ends_agree_on_every_lock_change(ops in proptest::collection::vec(op(), 1..60)) {
        let mut e = Ends::new();
        let (mut user_locks, mut hub_locks): (Vec<Pending>, Vec<Pending>) = (Vec::new(), Vec::new());
        let (mut next_id, mut settled_out, mut settled_in, mut paid, mut credited) = (0u64, 0u128, 0u128, 0u128, 0u128);
        for op in ops {
            match op {
                Op::UserLock { amount, expiry_in } | Op::HubLock { amount, expiry_in } => {
                    next_id += 1;
                    let user_side = matches!(op, Op::UserLock { .. });
                    let l = lock(next_id, u128::from(amount), e.at_hub.block + u64::from(expiry_in));
                    let change = LockChange::Add(l);
                    if user_side {
                        let Ok(d) = e.at_user.next_lock_debit(&e.params(Role::User), &change) else { continue };
                        let d = e.sign_debit(d);
                        let at_hub = step(&e.at_hub, &e.params(Role::Hub), Input::DebitLock { debit: d, change });
                        let at_user = step(&e.at_user, &e.params(Role::User), Input::DebitLock { debit: d, change });
                        prop_assert_eq!(at_hub.is_ok(), at_user.is_ok());
                        if let (Ok(h), Ok(u)) = (at_hub, at_user) {
                            (e.at_hub, e.at_user) = (h.0, u.0);
                            user_locks.push((next_id, l));
                        } else {
                            prop_assert!(u128::from(amount) > e.at_user.balance().expect("balance").0, "refused only for the balance");
                        }
                    } else {
                        e.lock_credit(change);
                        hub_locks.push((next_id, l));
                    }
                }
                Op::Settle { user_side, which } => {
                    let pending = if user_side { &mut user_locks } else { &mut hub_locks };
                    let Some((id, l)) = pick(pending, which) else { continue };
                    if e.at_hub.block > l.expiry_block { continue }
                    let change = LockChange::Settle { lock_id: l.lock_id, scalar: scalar_of(id) };
                    pending.retain(|(i, _)| *i != id);
                    if user_side { e.lock_debit(change); settled_out += l.amount.0 } else { e.lock_credit(change); settled_in += l.amount.0 }
                }
                Op::Drop { user_side, which, cancel } => {
                    let pending = if user_side { &mut user_locks } else { &mut hub_locks };
                    let Some((id, l)) = pick(pending, which) else { continue };
                    let change = if cancel { LockChange::Cancel { lock_id: l.lock_id } } else { LockChange::Drop { lock_id: l.lock_id } };
                    if !cancel && e.at_hub.block <= l.expiry_block {
                        let refused = if user_side {
                            e.at_user.next_lock_debit(&e.params(Role::User), &change).err()
                        } else {
                            e.at_hub.next_lock_credit(&e.params(Role::Hub), &change, 0).err()
                        };
                        prop_assert_eq!(refused, Some(Error::LockNotExpired));
                        continue;
                    }
                    pending.retain(|(i, _)| *i != id);
                    if user_side { e.lock_debit(change); } else { e.lock_credit(change); }
                }
                Op::Pay { amount } => {
                    let Ok(d) = e.at_user.next_debit(PaymentKind::Internal, Address::repeat_byte(9), Amount(u128::from(amount)), B256::from(keccak256(next_id.to_be_bytes()))) else { continue };
                    let d = e.sign_debit(d);
                    let at_hub = step(&e.at_hub, &e.params(Role::Hub), Input::Debit(d));
                    let at_user = step(&e.at_user, &e.params(Role::User), Input::Debit(d));
                    prop_assert_eq!(at_hub.as_ref().err(), at_user.as_ref().err());
                    if at_hub.is_ok() { e.both(Input::Debit(d)); paid += u128::from(amount); }
                }
                Op::Credit { amount } => {
                    let c = e.sign_credit(e.at_hub.next_credit(Amount(u128::from(amount))).expect("c"));
                    e.both(Input::Credit(c));
                    credited += u128::from(amount);
                }
                Op::Advance { blocks } => e.both(Input::Block(e.at_hub.block + u64::from(blocks))),
            }
            prop_assert_eq!(&e.at_hub, &e.at_user);
            let user_pending: u128 = user_locks.iter().map(|(_, l)| l.amount.0).sum();
            let hub_pending: u128 = hub_locks.iter().map(|(_, l)| l.amount.0).sum();
            prop_assert_eq!(e.at_hub.debit_locks.locked(), Amount(user_pending));
            prop_assert_eq!(e.at_hub.credit_locks.locked(), Amount(hub_pending));
            let expect_root = |locks: &[(u64, Lock)]| {
                let ls: Vec<Lock> = locks.iter().map(|(_, l)| *l).collect();
                locks_root(&e.domain, &ls).expect("root")
            };
            prop_assert_eq!(e.at_hub.signed_debit_locks(), (Amount(user_pending), expect_root(&user_locks).0));
            prop_assert_eq!(e.at_hub.signed_credit_locks(), (Amount(hub_pending), expect_root(&hub_locks).0));
            prop_assert_eq!(e.at_hub.cumulative_debit(), Amount(paid + settled_out));
            prop_assert_eq!(e.at_hub.cumulative_credit(), Amount(credited + settled_in));
            prop_assert_eq!(e.at_hub.balance(), Ok(Amount(100 + credited + settled_in - paid - settled_out - user_pending)));
        }
    }
}

/// A wallet that missed lock credits catches up from the hub's list of its pending locks, but
/// only if the list opens the credit's root, no lock changed, and a lock that vanished before
/// its expiry is covered by the rise of the total (it settled).
#[test]
fn a_wallet_catches_up_on_missed_lock_credits_only_with_a_list_that_proves_them() {
    let mut e = Ends::new();
    let hub_p = e.params(Role::Hub);
    let (l1, l2) = (lock(1, 25, 40), lock(2, 10, 50));
    // The hub adds two locks the wallet never hears of.
    for l in [l1, l2] {
        let change = LockChange::Add(l);
        let c = e.sign_credit(e.at_hub.next_lock_credit(&hub_p, &change, 0).expect("c"));
        e.at_hub = step(&e.at_hub, &hub_p, Input::CreditLock { credit: c, change }).expect("hub").0;
    }
    let newest = e.at_hub.credit.clone().expect("credit");
    assert_eq!(e.user_refuses(Input::Credit(newest.clone())), Error::CreditMustIncrease, "as a plain credit");
    assert_eq!(
        e.user_refuses(Input::CreditResync { credit: newest.clone(), locks: vec![l1] }),
        Error::LocksRootMismatch
    );
    let (mut forged1, _) = (l1, ());
    forged1.point = Address::repeat_byte(1);
    assert_eq!(
        e.user_refuses(Input::CreditResync { credit: newest.clone(), locks: vec![forged1, l2] }),
        Error::LocksRootMismatch,
        "a list that does not open the root"
    );
    let resync = |e: &mut Ends, credit: SignedCredit, locks: Vec<Lock>| {
        e.at_user =
            step(&e.at_user, &e.params(Role::User), Input::CreditResync { credit, locks }).expect("caught up").0;
    };
    resync(&mut e, newest, vec![l2, l1]);
    assert_eq!(e.at_user.credit_locks, e.at_hub.credit_locks);
    // The hub silently drops l1 before its expiry (a credit it signs with l2 alone, no rise).
    let cancel = LockChange::Cancel { lock_id: l1.lock_id };
    let dropped = e.sign_credit(e.at_hub.next_lock_credit(&hub_p, &cancel, 0).expect("c"));
    assert_eq!(e.user_refuses(Input::CreditResync { credit: dropped, locks: vec![l2] }), Error::LockNotExpired);
    // It settles l1 instead (the user revealed), then pays 3 more: the rise covers l1.
    let settle = LockChange::Settle { lock_id: l1.lock_id, scalar: scalar_of(1) };
    let c = e.sign_credit(e.at_hub.next_lock_credit(&hub_p, &settle, 0).expect("c"));
    e.at_hub = step(&e.at_hub, &hub_p, Input::CreditLock { credit: c, change: settle }).expect("hub").0;
    let plain = e.sign_credit(e.at_hub.next_credit(Amount(3)).expect("c"));
    e.at_hub = step(&e.at_hub, &hub_p, Input::Credit(plain.clone())).expect("hub").0;
    // A changed leaf under the same id is refused even when the list opens the root.
    let mut altered = l2;
    altered.amount = Amount(9);
    let (root, sum) = locks_root(&e.domain, &[altered]).expect("root");
    let mut lie = plain.message;
    (lie.locks_root, lie.locked_amount) = (root, sum);
    let lie = e.sign_credit(lie);
    assert_eq!(e.user_refuses(Input::CreditResync { credit: lie, locks: vec![altered] }), Error::LocksRootMismatch);
    resync(&mut e, plain, vec![l2]);
    assert_eq!(e.at_user, e.at_hub);
    assert_eq!(e.at_user.balance(), Ok(Amount(128)));
    // The hub's end never catches up this way.
    let again = e.at_hub.credit.clone().expect("c");
    assert_eq!(e.hub_refuses(Input::CreditResync { credit: again, locks: vec![l2] }), Error::LocksRootMismatch);
}
