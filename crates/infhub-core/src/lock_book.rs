//! A channel direction's pending point locks, off chain and through a close (spec §5.11a,
//! §5.17): what both ends of a channel and the contract's model must agree on before locks
//! can ride on proofs.
//!
//! Off chain, a direction is its running total plus the pending locks ([`LockBook`]): adding a
//! lock leaves the total alone, settling one with its scalar moves the amount into the total,
//! and an expired one is dropped. Each change is followed by a proof carrying the total and the
//! book's `lockedAmount` and `locksRoot`. Through a close, the contract charges the signer the
//! largest of the stored total and each registered proof's total plus its revealed locks
//! ([`CloseCharge`], D43), so a lock dropped by a newer proof with the same total is still
//! owed, and a lock settled before the close is never charged twice.
//!
//! Pure state: blocks are inputs, reveals are given as the block the registry recorded.

use crate::point_lock::{locks_root, Lock, Scalar, MAX_PENDING_LOCKS};
use crate::{Amount, Domain, Error};
use alloy_primitives::{B256, U256};
use std::collections::BTreeMap;

/// A direction's pending locks, by lock id.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockBook {
    locks: BTreeMap<B256, Lock>,
    locked: Amount,
}

impl LockBook {
    /// The sum of the pending locks (a proof's `lockedAmount`).
    pub fn locked(&self) -> Amount {
        self.locked
    }

    /// How many locks are pending.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// The book holding exactly `locks`, whatever their expiries (a wallet rebuilding the hub's
    /// book from the list the hub shows it): ids unique (`LockIdReused`), amounts non-zero, at
    /// most [`MAX_PENDING_LOCKS`] (`TooManyPendingLocks`), the sum in range.
    pub fn from_locks(locks: &[Lock]) -> Result<LockBook, Error> {
        if locks.len() > MAX_PENDING_LOCKS {
            return Err(Error::TooManyPendingLocks);
        }
        let mut book = LockBook::default();
        for lock in locks {
            if lock.amount == Amount::ZERO {
                return Err(Error::AmountMustNotBeZero);
            }
            if book.locks.contains_key(&lock.lock_id) {
                return Err(Error::LockIdReused);
            }
            book.locked = book.locked.checked_add(lock.amount)?;
            book.locks.insert(lock.lock_id, *lock);
        }
        Ok(book)
    }

    /// The pending locks, by lock id.
    pub fn iter(&self) -> impl Iterator<Item = &Lock> {
        self.locks.values()
    }

    /// The pending lock `lock_id`, if any.
    pub fn get(&self, lock_id: &B256) -> Option<&Lock> {
        self.locks.get(lock_id)
    }

    /// The proof's `locksRoot` and `lockedAmount` over the pending locks.
    pub fn root(&self, domain: &Domain) -> (B256, Amount) {
        let locks: Vec<Lock> = self.locks.values().copied().collect();
        // Every lock was checked on the way in (unique id, non-zero, sum in range, count).
        locks_root(domain, &locks).expect("a lock book holds only valid sets")
    }

    /// Adds `lock` at `block`: its expiry must be later than `block` (`ExpiryMustBeInFuture`)
    /// and at most `max_expiry_blocks` after it (`ExpiryTooFar`); its id new
    /// (`LockIdReused`), its amount non-zero, at most [`MAX_PENDING_LOCKS`] pending
    /// (`TooManyPendingLocks`). The caller checks that the sender's balance covers its total
    /// plus [`LockBook::locked`] afterwards.
    pub fn add(&mut self, lock: Lock, block: u64, max_expiry_blocks: u64) -> Result<(), Error> {
        if lock.amount == Amount::ZERO {
            return Err(Error::AmountMustNotBeZero);
        }
        if lock.expiry_block <= block {
            return Err(Error::ExpiryMustBeInFuture);
        }
        if lock.expiry_block - block > max_expiry_blocks {
            return Err(Error::ExpiryTooFar);
        }
        if self.locks.contains_key(&lock.lock_id) {
            return Err(Error::LockIdReused);
        }
        if self.locks.len() >= MAX_PENDING_LOCKS {
            return Err(Error::TooManyPendingLocks);
        }
        self.locked = self.locked.checked_add(lock.amount)?;
        self.locks.insert(lock.lock_id, lock);
        Ok(())
    }

    /// Settles `lock_id` with `scalar` at `block` (no later than its expiry, `LockExpired`;
    /// the scalar must open its point, `ScalarDoesNotOpenLock`): the lock leaves the book and
    /// its amount is returned, for the caller to add to the direction's running total.
    pub fn settle(&mut self, lock_id: &B256, scalar: &Scalar, block: u64) -> Result<Lock, Error> {
        let lock = *self.locks.get(lock_id).ok_or(Error::UnknownLock)?;
        if block > lock.expiry_block {
            return Err(Error::LockExpired);
        }
        if scalar.point().address() != lock.point {
            return Err(Error::ScalarDoesNotOpenLock);
        }
        self.remove(lock_id);
        Ok(lock)
    }

    /// Drops every lock whose expiry is before `block` (a reveal at the expiry block still
    /// counts on chain, so a lock is dropped only once that block is past), returning them.
    pub fn expire(&mut self, block: u64) -> Vec<Lock> {
        let expired: Vec<B256> = self.locks.values().filter(|l| l.expiry_block < block).map(|l| l.lock_id).collect();
        expired.iter().map(|id| self.remove(id)).collect()
    }

    /// Drops `lock_id` whatever its expiry (`UnknownLock` if it is not pending): the receiver's
    /// cancel, or the sender's drop once the caller checked the expiry.
    pub fn drop_lock(&mut self, lock_id: &B256) -> Result<Lock, Error> {
        if !self.locks.contains_key(lock_id) {
            return Err(Error::UnknownLock);
        }
        Ok(self.remove(lock_id))
    }

    fn remove(&mut self, lock_id: &B256) -> Lock {
        let lock = self.locks.remove(lock_id).expect("present");
        self.locked = self.locked.checked_sub_or(lock.amount, Error::AmountTooLarge).expect("the sum covers each lock");
        lock
    }
}

/// One registration of D43: a lock under a signed proof's root, with the block its point was
/// first revealed (None: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The registered proof's digest.
    pub proof: B256,
    /// Its running total.
    pub proof_cumulative: Amount,
    /// The lock.
    pub lock: Lock,
    /// The registry's first reveal of the lock's point.
    pub revealed_at: Option<u64>,
}

impl Registration {
    /// Whether the lock opened: revealed no later than its expiry.
    pub fn opened(&self) -> bool {
        self.revealed_at.is_some_and(|at| at <= self.lock.expiry_block)
    }
}

/// What the contract charges a direction's signer once its close's locks are resolved (D43).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseCharge {
    /// The charge: the largest of the stored total and each proof's total plus its opened locks.
    pub charge: Amount,
    /// What goes to the receiver beyond the stored total.
    pub to_receiver: Amount,
    /// What the escrow gives back to the sender.
    pub to_sender: Amount,
}

/// Resolves a direction's registrations against `escrow` (what `settle` held back). A
/// registration of the same proof and lock twice is `LockAlreadyRegistered`; the receiver never
/// gets more than the escrow.
pub fn close_charge(
    stored_cumulative: Amount,
    registrations: &[Registration],
    escrow: Amount,
) -> Result<CloseCharge, Error> {
    let mut per_proof: BTreeMap<B256, U256> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in registrations {
        if !seen.insert((r.proof, r.lock.lock_id)) {
            return Err(Error::LockAlreadyRegistered);
        }
        let entry = per_proof.entry(r.proof).or_insert_with(|| U256::from(r.proof_cumulative.0));
        if r.opened() {
            *entry += U256::from(r.lock.amount.0);
        }
    }
    let stored = U256::from(stored_cumulative.0);
    let best = per_proof.values().copied().fold(stored, U256::max);
    let rise = best - stored;
    let to_receiver = rise.min(U256::from(escrow.0));
    let to_receiver = Amount(u128::try_from(to_receiver).expect("at most the escrow"));
    let charge = u128::try_from(best).map(Amount).unwrap_or(Amount::MAX);
    Ok(CloseCharge { charge, to_receiver, to_sender: Amount(escrow.0 - to_receiver.0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;

    fn scalar(v: u64) -> Scalar {
        Scalar::new(U256::from(v)).expect("in range")
    }

    fn lock(id: u8, amount: u128, expiry: u64, t: u64) -> Lock {
        Lock {
            lock_id: B256::repeat_byte(id),
            amount: Amount(amount),
            expiry_block: expiry,
            point: scalar(t).point().address(),
        }
    }

    #[test]
    fn a_book_adds_settles_and_expires_by_the_rules() {
        let d = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(1) };
        let mut book = LockBook::default();
        assert_eq!(book.add(lock(1, 10, 100, 11), 100, 50), Err(Error::ExpiryMustBeInFuture));
        assert_eq!(book.add(lock(1, 10, 151, 11), 100, 50), Err(Error::ExpiryTooFar));
        assert_eq!(book.add(lock(1, 0, 120, 11), 100, 50), Err(Error::AmountMustNotBeZero));
        book.add(lock(1, 10, 120, 11), 100, 50).expect("add");
        book.add(lock(2, 5, 110, 12), 100, 50).expect("add");
        assert_eq!(book.add(lock(1, 7, 130, 13), 100, 50), Err(Error::LockIdReused));
        assert_eq!(book.locked(), Amount(15));
        assert_eq!(book.root(&d).1, Amount(15));
        let id1 = B256::repeat_byte(1);
        assert_eq!(book.settle(&id1, &scalar(12), 105), Err(Error::ScalarDoesNotOpenLock));
        assert_eq!(book.settle(&id1, &scalar(11), 121), Err(Error::LockExpired));
        assert_eq!(book.settle(&B256::ZERO, &scalar(11), 105), Err(Error::UnknownLock));
        assert_eq!(book.settle(&id1, &scalar(11), 120).expect("at its expiry block").amount, Amount(10));
        assert!(book.expire(110).is_empty(), "a reveal at the expiry block still counts");
        assert_eq!(book.expire(111).len(), 1);
        assert!(book.is_empty());
        assert_eq!(book.root(&d), (B256::ZERO, Amount::ZERO));
    }

    fn reg(proof: u8, cumulative: u128, l: Lock, revealed_at: Option<u64>) -> Registration {
        Registration { proof: B256::repeat_byte(proof), proof_cumulative: Amount(cumulative), lock: l, revealed_at }
    }

    /// The attack D43 stops: the payer signs P1 (total 100, lock 10 pending), then P2 (total
    /// 100, a higher nonce, the lock dropped) after the next hop forwarded. The stored proof is
    /// P2, yet the receiver registering the lock through P1 is paid it.
    #[test]
    fn a_lock_dropped_by_a_same_total_proof_is_still_charged() {
        let l = lock(1, 10, 100, 11);
        let c = close_charge(Amount(100), &[reg(1, 100, l, Some(90))], Amount(10)).expect("charge");
        assert_eq!(c, CloseCharge { charge: Amount(110), to_receiver: Amount(10), to_sender: Amount(0) });
        // Revealed one block late: back to the sender.
        let late = close_charge(Amount(100), &[reg(1, 100, l, Some(101))], Amount(10)).expect("charge");
        assert_eq!(late, CloseCharge { charge: Amount(100), to_receiver: Amount(0), to_sender: Amount(10) });
    }

    #[test]
    fn a_lock_settled_before_the_close_is_not_charged_twice_and_registering_twice_is_refused() {
        let l = lock(1, 10, 100, 11);
        // P1 (90 + lock), P2 (100: the lock settled into the total), stored P2.
        let c = close_charge(Amount(100), &[reg(1, 90, l, Some(50))], Amount(10)).expect("charge");
        assert_eq!(c.charge, Amount(100));
        assert_eq!(c.to_receiver, Amount(0));
        assert_eq!(c.to_sender, Amount(10));
        let twice = close_charge(Amount(100), &[reg(1, 90, l, Some(50)), reg(1, 90, l, Some(50))], Amount(20));
        assert_eq!(twice, Err(Error::LockAlreadyRegistered));
        // The sender registers through its older proof first; the receiver's registration
        // through the newest still counts.
        let both =
            close_charge(Amount(100), &[reg(1, 90, l, Some(50)), reg(2, 100, l, Some(50))], Amount(20)).expect("c");
        assert_eq!((both.charge, both.to_receiver, both.to_sender), (Amount(110), Amount(10), Amount(10)));
        // Never more than the escrow.
        let short = close_charge(Amount(100), &[reg(2, 100, l, Some(50))], Amount(4)).expect("c");
        assert_eq!((short.to_receiver, short.to_sender), (Amount(4), Amount(0)));
    }
}
