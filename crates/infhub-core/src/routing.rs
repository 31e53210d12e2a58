//! Routing between hubs (spec §5.18): signed announcements of link directions, and the payer's
//! hub's search for the cheapest paths to the payee's hub, with fees computed from the payee's
//! end, a risk term learned from failures, and a split over several paths when one lacks
//! capacity.
//!
//! Pure: the graph is a value, announcements arrive as inputs, and the search is deterministic
//! (ties broken by address), so every hub computes the same routes from the same graph.

use crate::eip712::{Domain, Eip712Message, Encoder};
use crate::messages::Signed;
use crate::{Amount, Error};
use alloy_primitives::{b256, Address, B256};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// Most link directions a graph holds.
pub const MAX_LINKS: usize = 100_000;
/// Most links on one path.
pub const MAX_HOPS: usize = 8;
/// Most parts a payment is split into.
pub const MAX_PARTS: usize = 8;
/// Most paths one search returns.
pub const MAX_PATHS: usize = 16;
/// The proportional fee's unit: parts per million.
pub const FEE_PPM_UNIT: u32 = 1_000_000;

/// One direction of a hub-to-hub link, as the hub that pays over it announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LinkAnnouncement {
    /// The hub that pays over the link (and signs this).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub from_hub: Address,
    /// The hub it pays.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub to_hub: Address,
    /// What it can carry now.
    pub capacity: Amount,
    /// Fee per forwarded payment.
    pub base_fee: Amount,
    /// Fee per forwarded amount, in parts per million.
    pub fee_ppm: u32,
    /// The smallest amount it forwards.
    pub min_amount: Amount,
    /// The largest amount it forwards.
    pub max_amount: Amount,
    /// Raised by every new announcement of this direction.
    pub sequence: u64,
}

/// EIP-712 type string of [`LinkAnnouncement`].
pub const LINK_ANNOUNCEMENT_TYPE: &str = "LinkAnnouncement(address fromHub,address toHub,uint128 capacity,uint128 baseFee,uint32 feePpm,uint128 minAmount,uint128 maxAmount,uint64 sequence)";

impl Eip712Message for LinkAnnouncement {
    const TYPE: &'static str = LINK_ANNOUNCEMENT_TYPE;
    const TYPE_HASH: B256 = b256!("505aa94088e7bf288dc462cc82dcb50ef831e0529dd3939f9da1bd0553e7a1de");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.from_hub);
        e.address(self.to_hub);
        e.u128(self.capacity.0);
        e.u128(self.base_fee.0);
        e.u64(u64::from(self.fee_ppm));
        e.u128(self.min_amount.0);
        e.u128(self.max_amount.0);
        e.u64(self.sequence);
        e.finish()
    }
}

impl LinkAnnouncement {
    /// The fee the paying hub charges to forward `amount`: `baseFee + ⌈amount·feePpm/10⁶⌉`.
    pub fn fee(&self, amount: Amount) -> Result<Amount, Error> {
        let proportional = amount.0.checked_mul(u128::from(self.fee_ppm)).ok_or(Error::AmountTooLarge)?;
        let proportional = proportional.div_ceil(u128::from(FEE_PPM_UNIT));
        self.base_fee.checked_add(Amount(proportional))
    }

    /// Whether the link forwards `amount` with `capacity` left.
    fn carries(&self, amount: Amount, capacity: Amount) -> bool {
        amount >= self.min_amount && amount <= self.max_amount && amount <= capacity
    }
}

/// One link of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Hop {
    /// The hub paying over the link.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub from_hub: Address,
    /// The hub paid.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub to_hub: Address,
    /// The amount the link carries.
    pub amount: Amount,
    /// The fee `to_hub` keeps for forwarding over the next link (zero on the last link).
    pub fee: Amount,
}

/// A path and what it costs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Route {
    /// The links, from the payer's hub to the payee's.
    pub hops: Vec<Hop>,
    /// What the payer's hub sends over the first link (the amount plus every fee).
    pub sent: Amount,
    /// The fees together.
    pub fees: Amount,
    /// Fees plus the risk term: what the search minimised.
    pub cost: Amount,
}

/// The link direction a refused forward names (spec §5.18): the hub whose step failed and the
/// hub it was to pay. Hubs pass it upstream with the refusal; the payer's hub counts it in its
/// route search's risk term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FailingLink {
    /// The hub whose step failed.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub from_hub: Address,
    /// The hub it was to pay.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub to_hub: Address,
}

/// What the search weighs besides fees: links that failed recently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scorer {
    /// Failures per link direction.
    pub failures: BTreeMap<(Address, Address), u32>,
    /// The cost of one recorded failure.
    pub penalty_per_failure: Amount,
}

impl Scorer {
    /// Records a failure of `from → to` (a typed failure naming the link).
    pub fn failed(&mut self, from: Address, to: Address) {
        let n = self.failures.entry((from, to)).or_insert(0);
        *n = n.saturating_add(1);
    }

    fn penalty(&self, from: Address, to: Address) -> u128 {
        let n = self.failures.get(&(from, to)).copied().unwrap_or(0);
        self.penalty_per_failure.0.saturating_mul(u128::from(n))
    }
}

/// The link directions a hub knows, from verified announcements.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    links: BTreeMap<(Address, Address), LinkAnnouncement>,
    /// Links by the hub they pay, for the search from the payee's end.
    into: BTreeMap<Address, BTreeSet<Address>>,
    /// Each announcing hub's public key, recovered from its announcements' signatures: what a
    /// payer seals that hub's route step to (spec §5.23d).
    keys: BTreeMap<Address, crate::point_lock::Point>,
}

impl Graph {
    /// How many link directions it holds.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The announcement of `from → to`, if any.
    pub fn link(&self, from: Address, to: Address) -> Option<&LinkAnnouncement> {
        self.links.get(&(from, to))
    }

    /// Takes a signed announcement: signed by its `fromHub` in `domain`, newer than the one
    /// held (`AnnouncementStale`), well formed (`AnnouncementInvalid`), within `MAX_LINKS`.
    pub fn apply(&mut self, signed: &Signed<LinkAnnouncement>, domain: &Domain) -> Result<(), Error> {
        let a = signed.message;
        signed.verify(domain, a.from_hub)?;
        if a.from_hub == a.to_hub || a.fee_ppm > FEE_PPM_UNIT || a.min_amount > a.max_amount {
            return Err(Error::AnnouncementInvalid);
        }
        match self.links.get(&(a.from_hub, a.to_hub)) {
            Some(held) if held.sequence >= a.sequence => return Err(Error::AnnouncementStale),
            Some(_) => {}
            None if self.links.len() >= MAX_LINKS => return Err(Error::TooManyLinks),
            None => {}
        }
        let key = signed.signature.recover_key(a.digest(domain))?;
        assert_eq!(key.address(), a.from_hub, "a verified announcement's key is its signer's");
        self.links.insert((a.from_hub, a.to_hub), a);
        self.into.entry(a.to_hub).or_default().insert(a.from_hub);
        self.keys.insert(a.from_hub, key);
        Ok(())
    }

    /// The public key of `hub`, if it announced a link (spec §5.23d).
    pub fn hub_key(&self, hub: Address) -> Option<crate::point_lock::Point> {
        self.keys.get(&hub).copied()
    }

    /// Up to `k` (at most [`MAX_PATHS`]) cheapest loop-free routes of at most [`MAX_HOPS`]
    /// links delivering `amount` from `payer_hub` to `payee_hub`, cheapest first (Yen's
    /// algorithm). Empty when none carries it.
    pub fn routes(
        &self,
        payer_hub: Address,
        payee_hub: Address,
        amount: Amount,
        k: usize,
        scorer: &Scorer,
    ) -> Vec<Route> {
        let search = Search { graph: self, capacity: &BTreeMap::new(), scorer, payer_hub, amount };
        search.k_cheapest(payee_hub, k.min(MAX_PATHS))
    }

    /// Routes for `amount`, split over up to [`MAX_PARTS`] parts when no single path carries it
    /// (spec §5.23c): each part takes the cheapest path over links no earlier part uses (a
    /// lock id is unique on a link, and every part of one payment carries the payment's id),
    /// for the most that path carries of what is left (halving to find an amount it carries,
    /// then searching up to its limit). `NoRoute` when the parts cannot cover it.
    pub fn split_routes(
        &self,
        payer_hub: Address,
        payee_hub: Address,
        amount: Amount,
        scorer: &Scorer,
    ) -> Result<Vec<Route>, Error> {
        if amount == Amount::ZERO {
            return Err(Error::AmountMustNotBeZero);
        }
        let used: BTreeMap<(Address, Address), Amount> = BTreeMap::new();
        let mut banned_links = BTreeSet::new();
        let mut parts = Vec::new();
        let mut left = amount;
        while left > Amount::ZERO {
            if parts.len() == MAX_PARTS {
                return Err(Error::NoRoute);
            }
            let search = |part: Amount| Search { graph: self, capacity: &used, scorer, payer_hub, amount: part };
            let mut part = left;
            let route = loop {
                if let Some(r) = search(part).cheapest(payee_hub, &BTreeSet::new(), &banned_links) {
                    break r;
                }
                if part.0 <= 1 {
                    return Err(Error::NoRoute);
                }
                part = Amount(part.0 / 2);
            };
            // The path carries `part`; find the most of `left` it carries (feasibility only
            // falls as the amount grows: capacities and maxima are upper bounds).
            let path: Vec<Address> = std::iter::once(payer_hub).chain(route.hops.iter().map(|h| h.to_hub)).collect();
            let (mut lo, mut hi, mut best) = (part.0, left.0, route);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                match search(Amount(mid)).price(&path) {
                    Some(r) => (lo, best) = (mid, r),
                    None => hi = mid - 1,
                }
            }
            banned_links.extend(best.hops.iter().map(|h| (h.from_hub, h.to_hub)));
            left = Amount(left.0 - lo);
            parts.push(best);
        }
        Ok(parts)
    }
}

/// One search: the graph, what earlier parts used of it, the scorer, the ends and the amount.
struct Search<'a> {
    graph: &'a Graph,
    capacity: &'a BTreeMap<(Address, Address), Amount>,
    scorer: &'a Scorer,
    payer_hub: Address,
    amount: Amount,
}

impl Search<'_> {
    fn left(&self, a: &LinkAnnouncement) -> Amount {
        let used = self.capacity.get(&(a.from_hub, a.to_hub)).copied().unwrap_or(Amount::ZERO);
        Amount(a.capacity.0.saturating_sub(used.0))
    }

    /// Prices `path` (hubs from the payer's to the payee's) from the payee's end; None when a
    /// link is missing or cannot carry its amount, or a sum overflows.
    fn price(&self, path: &[Address]) -> Option<Route> {
        if path.len() < 2 || path.len() > MAX_HOPS + 1 || path[0] != self.payer_hub {
            return None;
        }
        let mut need = self.amount;
        let mut next_fee = Amount::ZERO;
        let mut hops = Vec::with_capacity(path.len() - 1);
        let mut penalty = 0u128;
        for w in path.windows(2).rev() {
            let link = self.graph.link(w[0], w[1])?;
            if !link.carries(need, self.left(link)) {
                return None;
            }
            hops.push(Hop { from_hub: w[0], to_hub: w[1], amount: need, fee: next_fee });
            penalty = penalty.saturating_add(self.scorer.penalty(w[0], w[1]));
            if w[0] != self.payer_hub {
                next_fee = link.fee(need).ok()?;
                need = need.checked_add(next_fee).ok()?;
            }
        }
        hops.reverse();
        let fees = Amount(need.0 - self.amount.0);
        Some(Route { hops, sent: need, fees, cost: Amount(fees.0.saturating_add(penalty)) })
    }

    /// The cheapest path from `start` to `payee_hub` avoiding `banned_hubs` and `banned_links`,
    /// by a search from the payee's end (what each hub must receive depends on the links after
    /// it); priced whole from the payer's hub when `start` is it, else as a spur.
    fn spur(
        &self,
        start: Address,
        payee_hub: Address,
        banned_hubs: &BTreeSet<Address>,
        banned_links: &BTreeSet<(Address, Address)>,
        max_links: usize,
    ) -> Option<Vec<Address>> {
        // Label per hub: (cost, need, hops, next hub).
        let mut best: BTreeMap<Address, (u128, Amount, usize, Address)> = BTreeMap::new();
        let mut heap = BinaryHeap::new();
        best.insert(payee_hub, (0, self.amount, 0, payee_hub));
        heap.push(Reverse((0u128, payee_hub)));
        while let Some(Reverse((cost, v))) = heap.pop() {
            let (c, need, hops, _) = best[&v];
            if c != cost {
                continue;
            }
            if v == start {
                break;
            }
            if hops == max_links {
                continue;
            }
            for &u in self.graph.into.get(&v).into_iter().flatten() {
                if banned_hubs.contains(&u) || banned_links.contains(&(u, v)) || (u != start && u == self.payer_hub) {
                    continue;
                }
                let link = &self.graph.links[&(u, v)];
                if !link.carries(need, self.left(link)) {
                    continue;
                }
                // The payer's hub charges nothing on its own payment.
                let fee = if u == self.payer_hub {
                    Amount::ZERO
                } else {
                    let Ok(fee) = link.fee(need) else { continue };
                    fee
                };
                let Ok(need_u) = need.checked_add(fee) else { continue };
                let cost_u = cost.saturating_add(fee.0).saturating_add(self.scorer.penalty(u, v));
                let better = best.get(&u).is_none_or(|&(c, _, _, _)| cost_u < c);
                if better {
                    best.insert(u, (cost_u, need_u, hops + 1, v));
                    heap.push(Reverse((cost_u, u)));
                }
            }
        }
        best.get(&start)?;
        let mut path = vec![start];
        while *path.last().expect("non-empty") != payee_hub {
            let next = best[path.last().expect("non-empty")].3;
            path.push(next);
        }
        Some(path)
    }

    fn cheapest(
        &self,
        payee_hub: Address,
        banned_hubs: &BTreeSet<Address>,
        banned_links: &BTreeSet<(Address, Address)>,
    ) -> Option<Route> {
        let path = self.spur(self.payer_hub, payee_hub, banned_hubs, banned_links, MAX_HOPS)?;
        self.price(&path)
    }

    /// Yen's algorithm: each next path deviates from an earlier one at a spur hub.
    fn k_cheapest(&self, payee_hub: Address, k: usize) -> Vec<Route> {
        let Some(first) = self.cheapest(payee_hub, &BTreeSet::new(), &BTreeSet::new()) else { return Vec::new() };
        let mut found: Vec<(Vec<Address>, Route)> = vec![(path_of(&first), first)];
        let mut candidates: BTreeMap<(u128, Vec<Address>), Route> = BTreeMap::new();
        while found.len() < k {
            let last = found.last().expect("non-empty").0.clone();
            for i in 0..last.len() - 1 {
                let root = &last[..=i];
                let banned_links: BTreeSet<(Address, Address)> = found
                    .iter()
                    .filter(|(p, _)| p.len() > i + 1 && &p[..=i] == root)
                    .map(|(p, _)| (p[i], p[i + 1]))
                    .collect();
                let banned_hubs: BTreeSet<Address> = root[..i].iter().copied().collect();
                let Some(spur) = self.spur(last[i], payee_hub, &banned_hubs, &banned_links, MAX_HOPS - i) else {
                    continue;
                };
                let mut path = root[..i].to_vec();
                path.extend(spur);
                if found.iter().any(|(p, _)| *p == path) {
                    continue;
                }
                if let Some(route) = self.price(&path) {
                    candidates.entry((route.cost.0, path)).or_insert(route);
                }
            }
            let Some((key, route)) = candidates.pop_first() else { break };
            found.push((key.1, route));
        }
        found.into_iter().map(|(_, r)| r).collect()
    }
}

fn path_of(route: &Route) -> Vec<Address> {
    let mut path: Vec<Address> = route.hops.iter().map(|h| h.from_hub).collect();
    path.push(route.hops.last().expect("a route has a link").to_hub);
    path
}
