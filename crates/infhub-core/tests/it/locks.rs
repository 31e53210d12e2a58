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
