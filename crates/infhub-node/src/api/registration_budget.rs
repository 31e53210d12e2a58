//! Registration costs the hub gas (it opens the channel on chain), so anyone able to reach the
//! API could make it spend without limit. New registrations therefore draw on two budgets,
//! refilled continuously: one for the whole hub (`limits.registrations_per_hour`) and one per
//! source address (`limits.registrations_per_hour_per_address`). Beyond either the answer is
//! `registration_rate_limited` (429) with the seconds until one more fits; an account already
//! open, or whose opening was already paid for (a wallet retrying while it is mined), draws
//! nothing. Addresses and accounts tracked are bounded; the oldest are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most source addresses whose budgets are tracked at once.
pub(super) const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// A continuously refilled budget of `per_hour` registrations (a token bucket).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_hour: u32, now: Instant) -> Bucket {
        Bucket { tokens: f64::from(per_hour), at: now }
    }

    /// Refills to `now`; None when one registration fits, else the wait until it does.
    fn wait(&mut self, per_hour: u32, now: Instant) -> Option<Duration> {
        let rate = f64::from(per_hour) / 3_600.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(per_hour));
        self.at = now;
        (self.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }
}

/// Which budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Exhausted {
    /// The hub's, for everyone.
    Hub(Duration),
    /// This source address's.
    Address(Duration),
}

/// The budgets.
pub(super) struct RegistrationBudget {
    per_hour: u32,
    per_hour_per_address: u32,
    inner: Mutex<Inner>,
}

struct Inner {
    hub: Bucket,
    addresses: HashMap<IpAddr, Bucket>,
    order: VecDeque<IpAddr>,
    /// Accounts whose registration drew on the budget, newest last.
    paid: std::collections::HashSet<infhub_core::Address>,
    paid_order: VecDeque<infhub_core::Address>,
}

impl RegistrationBudget {
    pub(super) fn new(per_hour: u32, per_hour_per_address: u32, now: Instant) -> RegistrationBudget {
        let inner = Inner {
            hub: Bucket::full(per_hour, now),
            addresses: HashMap::new(),
            order: VecDeque::new(),
            paid: std::collections::HashSet::new(),
            paid_order: VecDeque::new(),
        };
        RegistrationBudget { per_hour, per_hour_per_address, inner: Mutex::new(inner) }
    }

    /// Takes one registration of `user` from `address`'s budget and the hub's (from neither
    /// unless both have one; nothing when `user`'s was taken before). No address (a request
    /// served without a socket): the hub's alone.
    pub(super) fn take(
        &self,
        user: infhub_core::Address,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Exhausted> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Inner { hub, addresses, order, paid, paid_order } = &mut *inner;
        if paid.contains(&user) {
            return Ok(());
        }
        if let Some(wait) = hub.wait(self.per_hour, now) {
            return Err(Exhausted::Hub(wait));
        }
        if let Some(a) = address {
            if !addresses.contains_key(&a) {
                if addresses.len() >= MAX_TRACKED_ADDRESSES {
                    if let Some(oldest) = order.pop_front() {
                        addresses.remove(&oldest);
                    }
                }
                addresses.insert(a, Bucket::full(self.per_hour_per_address, now));
                order.push_back(a);
            }
            let bucket = addresses.get_mut(&a).expect("inserted above");
            if let Some(wait) = bucket.wait(self.per_hour_per_address, now) {
                return Err(Exhausted::Address(wait));
            }
            bucket.tokens -= 1.0;
        }
        hub.tokens -= 1.0;
        if paid.len() >= MAX_TRACKED_ADDRESSES {
            if let Some(oldest) = paid_order.pop_front() {
                paid.remove(&oldest);
            }
        }
        paid.insert(user);
        paid_order.push_back(user);
        Ok(())
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.inner.lock().expect("lock").addresses.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u32) -> Option<IpAddr> {
        Some(IpAddr::from(i.to_be_bytes()))
    }

    fn user(i: u32) -> infhub_core::Address {
        let mut b = [0u8; 20];
        b[16..].copy_from_slice(&i.to_be_bytes());
        infhub_core::Address::from(b)
    }

    #[test]
    fn each_address_and_the_hub_have_a_budget_that_refills() {
        let t0 = Instant::now();
        let b = RegistrationBudget::new(5, 2, t0);
        b.take(user(101), ip(1), t0).expect("first");
        b.take(user(101), ip(1), t0).expect("the same account again draws nothing");
        b.take(user(102), ip(1), t0).expect("second");
        let Err(Exhausted::Address(wait)) = b.take(user(103), ip(1), t0) else { panic!("the address's third") };
        assert_eq!(wait.as_secs(), 1_800, "2 per hour: one more in half an hour");
        b.take(user(104), ip(2), t0).expect("another address");
        b.take(user(105), ip(3), t0).expect("another address");
        b.take(user(106), None, t0).expect("no address: the hub's budget alone");
        assert!(matches!(b.take(user(107), ip(4), t0), Err(Exhausted::Hub(_))), "the hub's five are spent");
        // A refused take spends nothing: address 1 is still at zero, not below.
        let later = t0 + Duration::from_secs(1_800);
        b.take(user(108), ip(1), later).expect("refilled by half an hour");
        assert!(matches!(b.take(user(109), ip(1), later), Err(Exhausted::Address(_))));
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let t0 = Instant::now();
        let b = RegistrationBudget::new(u32::MAX, 1, t0);
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 10) {
            b.take(user(i), ip(i), t0).expect("a fresh address");
        }
        assert_eq!(b.tracked(), MAX_TRACKED_ADDRESSES);
    }
}
