//! The operator's list of accounts (spec §5.22): a page of accounts in address order after a
//! cursor, filtered by an address prefix, kind, state or the frozen flag. No index is kept for
//! it (an operator's list is rare; a sorted index of every address would cost memory on every
//! hub): a page scans the accounts once and keeps the `limit` smallest addresses past the
//! cursor in a bounded heap, O(accounts · log limit).

use super::Ledger;
use crate::channel::Status;
use crate::{Address, Amount};
use serde::Serialize;
use std::collections::BinaryHeap;

/// Most accounts one page lists.
pub const MAX_ACCOUNTS_PER_PAGE: usize = 1_000;

/// Which accounts a page lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only addresses whose lower-case hex (without `0x`) starts with this.
    pub prefix: Option<String>,
    /// Only channels (`Some(false)`) or only custodial accounts (`Some(true)`).
    pub custodial: Option<bool>,
    /// Only accounts in this state (`open`, `closing`, `settled`, `custodial`).
    pub state: Option<String>,
    /// Only frozen (`Some(true)`) or only not frozen accounts.
    pub frozen: Option<bool>,
}

/// One account as the operator's list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AccountSummary {
    /// Its address.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub address: Address,
    /// `channel` or `custodial`.
    pub kind: &'static str,
    /// `open`, `closing`, `settled` (channels) or `custodial`.
    pub state: &'static str,
    /// What it may spend now (a settled channel: zero).
    pub balance: Amount,
    /// Whether the operator froze it.
    pub frozen: bool,
}

impl Ledger {
    /// Up to `limit` (at most [`MAX_ACCOUNTS_PER_PAGE`]) accounts past `after` in address
    /// order that pass `filter`.
    pub fn account_page(&self, after: Option<Address>, limit: usize, filter: &AccountFilter) -> Vec<AccountSummary> {
        let limit = limit.min(MAX_ACCOUNTS_PER_PAGE);
        let prefix = filter.prefix.as_deref().map(|p| p.trim_start_matches("0x").to_ascii_lowercase());
        let passes = |s: &AccountSummary| {
            prefix.as_deref().is_none_or(|p| alloy_primitives::hex::encode(s.address.as_slice()).starts_with(p))
                && filter.custodial.is_none_or(|c| c == (s.kind == "custodial"))
                && filter.state.as_deref().is_none_or(|st| st == s.state)
                && filter.frozen.is_none_or(|f| f == s.frozen)
        };
        let channels = self.accounts.iter().map(|(a, acct)| {
            let ch = &acct.channel;
            let (state, balance) = match ch.status {
                Status::Open => ("open", ch.balance().unwrap_or(Amount::ZERO)),
                Status::Closing { .. } => ("closing", ch.balance().unwrap_or(Amount::ZERO)),
                Status::Settled => ("settled", Amount::ZERO),
            };
            AccountSummary { address: *a, kind: "channel", state, balance, frozen: self.frozen.contains(a) }
        });
        let custodial = self.custodial.values().map(|c| AccountSummary {
            address: c.account,
            kind: "custodial",
            state: "custodial",
            balance: c.balance,
            frozen: self.frozen.contains(&c.account),
        });
        // A max-heap by address holds the `limit` smallest seen so far.
        let mut heap: BinaryHeap<ByAddress> = BinaryHeap::with_capacity(limit + 1);
        for s in channels.chain(custodial) {
            if limit == 0 || after.is_some_and(|a| s.address <= a) || !passes(&s) {
                continue;
            }
            if heap.len() == limit && heap.peek().is_some_and(|top| s.address >= top.0.address) {
                continue;
            }
            heap.push(ByAddress(s));
            if heap.len() > limit {
                heap.pop();
            }
        }
        heap.into_sorted_vec().into_iter().map(|b| b.0).collect()
    }
}

/// A summary ordered by its address alone.
#[derive(PartialEq, Eq)]
struct ByAddress(AccountSummary);

impl Ord for ByAddress {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.address.cmp(&other.0.address)
    }
}

impl PartialOrd for ByAddress {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
