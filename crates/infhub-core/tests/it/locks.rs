//! Property tests of a channel direction's pending locks (spec §5.11a, §5.17): over any
//! sequence of adds, settlements with right or wrong scalars, late settlements and expiries,
//! value is conserved (the running total, the pending locks and the refunds always add up to
//! what was locked), every refusal is the named rule, and a close resolved by the contract's
//! rule pays the receiver exactly the settled total plus the pending locks that opened, even
//! when the sender registered its own older proofs first or dropped a lock in a same-total
//! proof. proptest prints the failing case and persists its seed on failure.

use alloy_primitives::{keccak256, Address, B256, U256};
use infhub_core::lock_book::{close_charge, LockBook, Registration};
use infhub_core::point_lock::{Lock, Scalar};
use infhub_core::{Amount, Domain, Error};
use proptest::prelude::*;

const MAX_EXPIRY_BLOCKS: u64 = 40;

#[derive(Clone, Debug)]
enum Op {
    Add { amount: u16, expiry_in: u8 },
    Settle { which: u8, right_scalar: bool },
    Advance { blocks: u8 },
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u16.., 0u8..60).prop_map(|(amount, expiry_in)| Op::Add { amount, expiry_in }),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(which, right_scalar)| Op::Settle { which, right_scalar }),
        2 => (0u8..20).prop_map(|blocks| Op::Advance { blocks }),
        1 => Just(Op::Expire),
    ]
}

fn scalar_of(id: u64) -> Scalar {
    Scalar::from_bytes(keccak256(id.to_be_bytes())).expect("a hash below n")
}

/// A signed proof's figures, as the receiver keeps them.
#[derive(Clone)]
struct Proof {
    digest: B256,
    cumulative: Amount,
    locks: Vec<Lock>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn locks_conserve_value_and_a_close_pays_what_opened(ops in proptest::collection::vec(op(), 1..80), reveal_mask in any::<u64>()) {
        let domain = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(7) };
        let mut book = LockBook::default();
        let (mut block, mut cumulative, mut locked_in, mut refunded) = (100u64, Amount::ZERO, 0u128, 0u128);
        let mut next_id = 0u64;
        let mut proofs: Vec<Proof> = Vec::new();
        for op in ops {
            match op {
                Op::Add { amount, expiry_in } => {
                    next_id += 1;
                    let lock = Lock {
                        lock_id: B256::from(U256::from(next_id)),
                        amount: Amount(u128::from(amount)),
                        expiry_block: block + u64::from(expiry_in),
                        point: scalar_of(next_id).point().address(),
                    };
                    match book.add(lock, block, MAX_EXPIRY_BLOCKS) {
                        Ok(()) => locked_in += u128::from(amount),
                        Err(e) => {
                            let want = if expiry_in == 0 { Error::ExpiryMustBeInFuture } else { Error::ExpiryTooFar };
                            prop_assert_eq!(e, want);
                            prop_assert!(expiry_in == 0 || u64::from(expiry_in) > MAX_EXPIRY_BLOCKS);
                        }
                    }
                }
                Op::Settle { which, right_scalar } => {
                    let id = u64::from(which) % (next_id + 1);
                    let lock_id = B256::from(U256::from(id));
                    let scalar = if right_scalar { scalar_of(id) } else { scalar_of(id + 1_000) };
                    let before = book.get(&lock_id).copied();
                    match (book.settle(&lock_id, &scalar, block), before) {
                        (Ok(l), Some(b)) => {
                            prop_assert!(right_scalar && block <= b.expiry_block);
                            cumulative = cumulative.checked_add(l.amount).expect("small");
                        }
                        (Err(Error::UnknownLock), None) => {}
                        (Err(Error::LockExpired), Some(b)) => prop_assert!(block > b.expiry_block),
                        (Err(Error::ScalarDoesNotOpenLock), Some(_)) => prop_assert!(!right_scalar),
                        (other, b) => prop_assert!(false, "settle gave {:?} for {:?}", other, b),
                    }
                }
                Op::Advance { blocks } => block += u64::from(blocks),
                Op::Expire => {
                    for l in book.expire(block) {
                        prop_assert!(l.expiry_block < block);
                        refunded += l.amount.0;
                    }
                }
            }
            // Conservation: every locked unit is settled, pending or refunded.
            prop_assert_eq!(cumulative.0 + book.locked().0 + refunded, locked_in);
            let (root, locked) = book.root(&domain);
            prop_assert_eq!(locked, book.locked());
            let digest = keccak256([root.as_slice(), &cumulative.0.to_be_bytes()].concat());
            let mut locks: Vec<Lock> = Vec::new();
            for i in 1..=next_id {
                if let Some(l) = book.get(&B256::from(U256::from(i))) {
                    locks.push(*l);
                }
            }
            proofs.push(Proof { digest, cumulative, locks });
        }
        // The close: the sender's newest proof is stored; each pending lock of it opens or not
        // by the mask. The receiver registers every lock of the newest proof; the sender first
        // registers the same locks through every older proof that carries them.
        let newest = proofs.last().expect("one op at least").clone();
        let opened = |l: &Lock| reveal_mask & (1 << (l.lock_id.0[31] % 64)) != 0;
        let revealed = |l: &Lock| if opened(l) { Some(l.expiry_block) } else { Some(l.expiry_block + 1) };
        let mut regs = Vec::new();
        // A proof is signed once per change: steps that changed nothing re-sign the same one.
        let mut registered = std::collections::BTreeSet::from([newest.digest]);
        for p in &proofs[..proofs.len() - 1] {
            if !registered.insert(p.digest) {
                continue;
            }
            for l in &p.locks {
                if newest.locks.contains(l) {
                    regs.push(Registration { proof: p.digest, proof_cumulative: p.cumulative, lock: *l, revealed_at: revealed(l) });
                }
            }
        }
        for l in &newest.locks {
            regs.push(Registration { proof: newest.digest, proof_cumulative: newest.cumulative, lock: *l, revealed_at: revealed(l) });
        }
        let escrow = regs.iter().fold(Amount::ZERO, |a, r| a.checked_add(r.lock.amount).expect("small"));
        let charge = close_charge(newest.cumulative, &regs, escrow).expect("no registration twice");
        let opened_sum: u128 = newest.locks.iter().filter(|l| opened(l)).map(|l| l.amount.0).sum();
        prop_assert_eq!(charge.charge, Amount(newest.cumulative.0 + opened_sum));
        prop_assert_eq!(charge.to_receiver, Amount(opened_sum));
        prop_assert_eq!(charge.to_sender.0 + charge.to_receiver.0, escrow.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The contract model's registration, escrow and unlock (the mirror of
    /// `InfHubSettlement.sol`) pay exactly what `close_charge` says for any set of signed
    /// proofs, registrations, reveals (before or after each expiry) and unlock order, with the
    /// accounting invariant after every call; every refusal is the named rule.
    #[test]
    fn the_contract_model_unlocks_what_close_charge_says(
        totals in proptest::collection::vec(0u16..300, 1..4),
        amounts in proptest::collection::vec(1u16..200, 1..4),
        registrations in proptest::collection::vec((any::<u8>(), any::<u8>()), 0..10),
        reveal_mask in any::<u8>(),
        late_mask in any::<u8>(),
        unlock_seed in any::<u64>(),
    ) {
        use infhub_core::contract::{ContractConfig, ContractModel, LockDirection};
        use infhub_core::merkle::MerkleTree;
        use infhub_core::messages::{Debit, Eip712Message, Signed};
        use infhub_core::point_lock::locks_root;
        use infhub_core::PrivateKey;
        let domain = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(7) };
        let hub = PrivateKey::from_bytes([1; 32]).expect("key");
        let user_key = PrivateKey::from_bytes([2; 32]).expect("key");
        let user = user_key.address();
        let mut model = ContractModel::new(ContractConfig {
            domain,
            hub: hub.address(),
            challenge_period_blocks: 10,
            reserve_notice_blocks: 20,
        })
        .expect("model");
        model.deposit_reserve(U256::from(100_000u64)).expect("reserve");
        model.open_channel(user, user).expect("open");
        model.deposit(1, user, U256::from(2_000u64)).expect("deposit");
        // Locks ride several proofs; each proof's total grows (sorted), as a real sender's do.
        let locks: Vec<Lock> = amounts
            .iter()
            .enumerate()
            .map(|(i, a)| Lock {
                lock_id: B256::repeat_byte(i as u8 + 1),
                amount: Amount(u128::from(*a)),
                expiry_block: 60 + i as u64,
                point: scalar_of(i as u64).point().address(),
            })
            .collect();
        let mut totals = totals;
        totals.sort_unstable();
        let (root, locked) = locks_root(&domain, &locks).expect("root");
        let tree = MerkleTree::new(locks.iter().map(|l| l.digest(&domain)).collect());
        let proofs: Vec<Signed<Debit>> = totals
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let d = Debit {
                    user,
                    epoch: 1,
                    nonce: i as u64 + 1,
                    cumulative_debit: Amount(u128::from(*t)),
                    locked_amount: locked,
                    locks_root: root,
                    kind: 0,
                    recipient: hub.address(),
                    amount: Amount(1),
                    payment_id: B256::repeat_byte(i as u8),
                };
                Signed::new(d, &domain, &user_key)
            })
            .collect();
        let stored = proofs.last().expect("at least one");
        model.start_hub_close(hub.address(), 10, user, &stored.message, &stored.signature.0).expect("close");
        model.check_invariant();
        let mut registered = Vec::new();
        for (p, l) in registrations {
            let (p, l) = (usize::from(p) % proofs.len(), usize::from(l) % locks.len());
            let path = tree.path(locks[l].digest(&domain)).expect("path");
            let r = model.register_debit_lock(11, &proofs[p].message, &proofs[p].signature.0, &locks[l], path.nodes());
            if registered.contains(&(p, l)) {
                prop_assert_eq!(r, Err(Error::LockAlreadyRegistered));
            } else {
                prop_assert_eq!(r, Ok(()));
                registered.push((p, l));
            }
            model.check_invariant();
        }
        // A lock of another root is refused by name.
        if let Some(&(p, _)) = registered.first() {
            let mut forged = locks[0];
            forged.amount = Amount(forged.amount.0 + 1);
            let path = tree.path(locks[0].digest(&domain)).expect("path");
            let r = model.register_debit_lock(11, &proofs[p].message, &proofs[p].signature.0, &forged, path.nodes());
            prop_assert_eq!(r, Err(Error::LockNotUnderRoot));
        }
        // Reveals: the mask picks the points, the late mask puts a reveal after its expiry.
        let revealed_at = |l: usize| -> Option<u64> {
            (reveal_mask >> l & 1 == 1).then(|| if late_mask >> l & 1 == 1 { locks[l].expiry_block + 1 } else { 30 })
        };
        let balance_before = model.sent_to.get(&user).copied().unwrap_or_default();
        let reserve_before = model.reserve;
        model.settle(20, user).expect("settle");
        model.check_invariant();
        // Unlock in a seeded order once every expiry passed.
        let mut order = registered.clone();
        let mut seed = unlock_seed;
        for i in (1..order.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for &(p, l) in &order {
            let digest = proofs[p].message.digest(&domain);
            model.unlock(200, digest, locks[l].lock_id, revealed_at(l)).expect("unlock");
            model.check_invariant();
        }
        prop_assert_eq!(model.total_escrow, U256::ZERO, "every escrow resolved");
        // The rule, from the core's own statement of it.
        let regs: Vec<Registration> = registered
            .iter()
            .map(|&(p, l)| Registration {
                proof: proofs[p].message.digest(&domain),
                proof_cumulative: proofs[p].message.cumulative_debit,
                lock: locks[l],
                revealed_at: revealed_at(l),
            })
            .collect();
        let charge = close_charge(stored.message.cumulative_debit, &regs, Amount(u128::MAX)).expect("charge").charge;
        let owed = U256::from(2_000u64).saturating_sub(U256::from(charge.0));
        let received = model.sent_to.get(&user).copied().unwrap_or_default() - balance_before;
        prop_assert_eq!(received, owed, "the user receives her deposit less the charge");
        prop_assert_eq!(model.reserve - reserve_before, U256::from(2_000u64) - owed, "the hub the rest");
        prop_assert_eq!(model.lock_direction(user, 1, LockDirection::User).unresolved, 0);
    }
}
