//! The idempotency keys of the newest internal transfers, in a window of fixed size.

use super::PaymentRef;
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// The idempotency keys of the newest signed transfers, oldest first, at most a given number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RecentTransfers {
    order: VecDeque<(Address, B256)>,
    by_key: HashMap<(Address, B256), PaymentRef>,
}

impl RecentTransfers {
    pub(super) fn get(&self, key: &(Address, B256)) -> Option<&PaymentRef> {
        self.by_key.get(key)
    }

    /// Remembers `key` (new: the caller checked it is unseen), forgetting the oldest beyond `kept`.
    pub(super) fn insert(&mut self, key: (Address, B256), at: PaymentRef, kept: usize) {
        let fresh = self.by_key.insert(key, at).is_none();
        assert!(fresh, "a transfer id was remembered twice");
        self.order.push_back(key);
        while self.order.len() > kept {
            let old = self.order.pop_front().expect("longer than kept");
            self.by_key.remove(&old).expect("every remembered key is in the map");
        }
        assert_eq!(self.order.len(), self.by_key.len(), "transfer-id window and map disagree");
    }
}

// In a snapshot: the keys in order with their references (the map is rebuilt on load).
impl Serialize for RecentTransfers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.order.len()))?;
        for key in &self.order {
            seq.serialize_element(&(key, &self.by_key[key]))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for RecentTransfers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries: Vec<((Address, B256), PaymentRef)> = Vec::deserialize(d)?;
        let mut r = RecentTransfers { order: VecDeque::with_capacity(entries.len()), by_key: HashMap::new() };
        r.by_key.reserve(entries.len());
        for (key, at) in entries {
            if r.by_key.insert(key, at).is_some() {
                return Err(serde::de::Error::custom("a transfer id appears twice in the snapshot"));
            }
            r.order.push_back(key);
        }
        Ok(r)
    }
}
