//! Every write names the account it spends from (a payer's debit, a withdrawal), and one
//! account's flood would otherwise take the single writer's time from everyone else. Each
//! account therefore draws its writes from a budget refilled continuously at
//! `limits.writes_per_second_per_account` (a token bucket holding one second's worth); beyond
//! it the answer is `account_rate_limited` (429) with the wait until one more fits. This is
//! per account, beside the per-source-address limits of the HTTP layer: many addresses cannot
//! pool their budgets onto one account, and one address serving many accounts (a front-end)
//! does not throttle them together. Accounts tracked are bounded; the first tracked are
//! forgotten first (a forgotten account starts again with a full budget, which is at most one
//! second's burst), in constant time, so addresses made up by the thousand cannot make the
//! budget itself slow.

use infhub_core::Address;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most accounts whose budgets are tracked at once.
pub(super) const MAX_TRACKED_ACCOUNTS: usize = 100_000;

/// The per-account budgets.
pub(super) struct WriteBudget {
    per_second: u32,
    inner: Mutex<(HashMap<Address, Bucket>, VecDeque<Address>)>,
}

/// An account's tokens and when they were last refilled.
type Bucket = (f64, Instant);

impl WriteBudget {
    pub(super) fn new(per_second: u32) -> WriteBudget {
        WriteBudget { per_second, inner: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    /// Takes `writes` from `account`'s budget at `now` (all or none): None when they fit, else
    /// the wait until they would.
    pub(super) fn take(&self, account: Address, writes: u32, now: Instant) -> Option<Duration> {
        let rate = f64::from(self.per_second.max(1));
        let wanted = f64::from(writes);
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *inner;
        if !map.contains_key(&account) {
            if map.len() >= MAX_TRACKED_ACCOUNTS {
                if let Some(first) = order.pop_front() {
                    map.remove(&first);
                }
            }
            order.push_back(account);
        }
        let (tokens, at) = map.entry(account).or_insert((rate, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(rate.max(wanted));
        *at = now;
        if *tokens < wanted {
            return Some(Duration::from_secs_f64((wanted - *tokens) / rate));
        }
        *tokens -= wanted;
        None
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.inner.lock().expect("lock").0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(i: u32) -> Address {
        let mut b = [0u8; 20];
        b[16..].copy_from_slice(&i.to_be_bytes());
        Address::from(b)
    }

    #[test]
    fn each_account_has_a_budget_that_refills_and_a_refusal_spends_nothing() {
        let t0 = Instant::now();
        let b = WriteBudget::new(10);
        assert_eq!(b.take(account(1), 8, t0), None);
        let wait = b.take(account(1), 3, t0).expect("over the budget");
        assert_eq!(wait, Duration::from_millis(100), "one more write fits in a tenth of a second");
        assert_eq!(b.take(account(2), 10, t0), None, "another account's budget is its own");
        assert_eq!(b.take(account(1), 2, t0), None, "the refused three spent nothing");
        assert!(b.take(account(1), 1, t0).is_some());
        assert_eq!(b.take(account(1), 5, t0 + Duration::from_millis(500)), None, "refilled");
        // A batch larger than a second's worth still fits, once, from a full bucket after waiting.
        let wait = b.take(account(3), 25, t0).expect("more than the bucket holds");
        assert_eq!(b.take(account(3), 25, t0 + wait), None);
    }

    #[test]
    fn tracked_accounts_are_bounded() {
        let t0 = Instant::now();
        let b = WriteBudget::new(1);
        for i in 0..(MAX_TRACKED_ACCOUNTS as u32 + 3) {
            assert_eq!(b.take(account(i), 1, t0 + Duration::from_micros(u64::from(i))), None);
        }
        assert_eq!(b.tracked(), MAX_TRACKED_ACCOUNTS);
        assert!(
            b.take(account(MAX_TRACKED_ACCOUNTS as u32 + 2), 1, t0 + Duration::from_secs(0)).is_some(),
            "kept: the newest"
        );
    }
}
