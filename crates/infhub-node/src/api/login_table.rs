//! Login state (challenges, sessions) that a flood cannot use to lock anyone out (issue 19).
//!
//! Entries of addresses the ledger knows (accounts, custodial accounts) are capped per address:
//! a new one replaces that address's oldest, so one account cannot grow the table and no one
//! else's entries are touched. Entries of addresses the ledger does not know (a fresh key
//! logging in before its channel opens, or a flood of random addresses) share one bounded pool
//! whose oldest entry is evicted for a new one: a flood churns only that pool, never refuses,
//! and never reaches the accounts' entries. Memory is bounded by
//! `per_account_max × accounts + strangers_max`.

use alloy::primitives::Address;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Instant;

/// One kind of login state (challenges or sessions), keyed by a random value.
#[derive(Debug)]
pub(super) struct LoginTable<K> {
    entries: HashMap<K, (Address, Instant)>,
    per_account: HashMap<Address, VecDeque<K>>,
    strangers: VecDeque<K>,
    per_account_max: usize,
    strangers_max: usize,
}

impl<K: Clone + Eq + Hash> LoginTable<K> {
    /// A table keeping at most `per_account_max` entries per known address and
    /// `strangers_max` entries of unknown addresses (each at least 1).
    pub(super) fn new(per_account_max: usize, strangers_max: usize) -> LoginTable<K> {
        assert!(per_account_max >= 1 && strangers_max >= 1, "login tables need room for one entry");
        LoginTable {
            entries: HashMap::new(),
            per_account: HashMap::new(),
            strangers: VecDeque::new(),
            per_account_max,
            strangers_max,
        }
    }

    /// Adds `key` for `user`, valid until `expiry`; `known` says whether the ledger knows the
    /// address. Evicts as the module says; returns how many entries it evicted.
    pub(super) fn insert(&mut self, key: K, user: Address, expiry: Instant, known: bool) -> usize {
        let mut evicted = 0;
        if known {
            let queue = self.per_account.entry(user).or_default();
            // Drop what was taken or expired, then the oldest while full.
            queue.retain(|k| self.entries.get(k).is_some_and(|(_, exp)| *exp > Instant::now()));
            while queue.len() >= self.per_account_max {
                if let Some(old) = queue.pop_front() {
                    self.entries.remove(&old);
                    evicted += 1;
                }
            }
            queue.push_back(key.clone());
        } else {
            while self.strangers.len() >= self.strangers_max {
                if let Some(old) = self.strangers.pop_front() {
                    if self.entries.remove(&old).is_some() {
                        evicted += 1;
                    }
                }
            }
            self.strangers.push_back(key.clone());
        }
        self.entries.insert(key, (user, expiry));
        evicted
    }

    /// The entry of `key`, if present (expired or not: the caller judges).
    pub(super) fn get(&self, key: &K) -> Option<(Address, Instant)> {
        self.entries.get(key).copied()
    }

    /// Removes and returns the entry of `key`.
    pub(super) fn take(&mut self, key: &K) -> Option<(Address, Instant)> {
        let entry = self.entries.remove(key)?;
        if let Some(queue) = self.per_account.get_mut(&entry.0) {
            queue.retain(|k| k != key);
            if queue.is_empty() {
                self.per_account.remove(&entry.0);
            }
        }
        // A stranger's key stays in the eviction queue until it reaches the front; it holds
        // no entry, so the bound on memory still holds.
        Some(entry)
    }

    /// Entries held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// A flood of unknown addresses churns the strangers' pool and never evicts an account's
    /// entry; an account's own entries are capped.
    #[test]
    fn a_flood_of_strangers_never_evicts_an_accounts_entry() {
        let mut t: LoginTable<u64> = LoginTable::new(2, 100);
        let alice = Address::repeat_byte(0xA1);
        t.insert(1, alice, later(), true);
        for k in 1_000..101_000u64 {
            t.insert(
                k,
                Address::from_word(alloy::primitives::B256::from(alloy::primitives::U256::from(k))),
                later(),
                false,
            );
        }
        assert!(t.len() <= 101, "bounded: {}", t.len());
        assert_eq!(t.get(&1).map(|(u, _)| u), Some(alice), "alice's entry survived the flood");
        assert!(t.get(&100_999).is_some() && t.get(&1_000).is_none(), "the newest stranger kept, the oldest evicted");
        // Alice's third entry replaces her first.
        t.insert(2, alice, later(), true);
        assert_eq!(t.insert(3, alice, later(), true), 1);
        assert!(t.get(&1).is_none() && t.get(&2).is_some() && t.get(&3).is_some());
        assert_eq!(t.take(&2).map(|(u, _)| u), Some(alice));
        assert!(t.take(&2).is_none(), "taken once");
    }
}
