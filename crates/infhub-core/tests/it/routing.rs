//! Routing between hubs (spec §5.18): announcements taken only when signed, newer and well
//! formed; fees computed from the payee's end; the cheapest paths first, loop-free and within
//! capacity; failures steering the search away; a split when no single path carries the
//! amount; and, over random graphs, the cheapest route agreeing with an exhaustive search.
//! proptest prints the failing case and persists its seed on failure.

use alloy_primitives::{keccak256, Address};
use infhub_core::messages::{Eip712Message, Signed};
use infhub_core::routing::{Graph, LinkAnnouncement, Route, Scorer, LINK_ANNOUNCEMENT_TYPE, MAX_HOPS};
use infhub_core::{Amount, Domain, Error, PrivateKey};
use proptest::prelude::*;

fn key(i: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&(0x4855_4200 + i).to_be_bytes());
    PrivateKey::from_bytes(b).expect("key")
}

fn domain() -> Domain {
    Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x5E) }
}

fn announce(g: &mut Graph, from: u64, to: u64, capacity: u128, base: u128, ppm: u32) {
    let a = LinkAnnouncement {
        from_hub: key(from).address(),
        to_hub: key(to).address(),
        capacity: Amount(capacity),
        base_fee: Amount(base),
        fee_ppm: ppm,
        min_amount: Amount(1),
        max_amount: Amount(u128::from(u64::MAX)),
        sequence: 1,
    };
    g.apply(&Signed::new(a, &domain(), &key(from)), &domain()).expect("announcement taken");
}

fn path(r: &Route) -> Vec<Address> {
    let mut p: Vec<Address> = r.hops.iter().map(|h| h.from_hub).collect();
    p.push(r.hops.last().expect("a link").to_hub);
    p
}

fn hubs(ids: &[u64]) -> Vec<Address> {
    ids.iter().map(|&i| key(i).address()).collect()
}

#[test]
fn the_type_hash_is_the_type_string_s() {
    assert_eq!(LinkAnnouncement::TYPE_HASH, keccak256(LINK_ANNOUNCEMENT_TYPE));
}

#[test]
fn announcements_are_taken_only_signed_newer_and_well_formed() {
    let mut g = Graph::default();
    let a = LinkAnnouncement {
        from_hub: key(1).address(),
        to_hub: key(2).address(),
        capacity: Amount(100),
        base_fee: Amount(1),
        fee_ppm: 1_000,
        min_amount: Amount(1),
        max_amount: Amount(100),
        sequence: 5,
    };
    let forged = Signed::new(a, &domain(), &key(2));
    assert_eq!(g.apply(&forged, &domain()), Err(Error::WrongSigner), "only fromHub announces its direction");
    let other_chain = Domain { chain_id: 1, ..domain() };
    assert_eq!(g.apply(&Signed::new(a, &other_chain, &key(1)), &domain()), Err(Error::WrongSigner));
    g.apply(&Signed::new(a, &domain(), &key(1)), &domain()).expect("taken");
    let same = Signed::new(a, &domain(), &key(1));
    assert_eq!(g.apply(&same, &domain()), Err(Error::AnnouncementStale), "a replay changes nothing");
    for bad in [
        LinkAnnouncement { fee_ppm: 1_000_001, sequence: 6, ..a },
        LinkAnnouncement { min_amount: Amount(101), sequence: 6, ..a },
        LinkAnnouncement { to_hub: a.from_hub, sequence: 6, ..a },
    ] {
        assert_eq!(g.apply(&Signed::new(bad, &domain(), &key(1)), &domain()), Err(Error::AnnouncementInvalid));
    }
    let newer = LinkAnnouncement { capacity: Amount(7), sequence: 6, ..a };
    g.apply(&Signed::new(newer, &domain(), &key(1)), &domain()).expect("newer");
    assert_eq!(g.link(a.from_hub, a.to_hub).map(|l| l.capacity), Some(Amount(7)));
}

/// Payer's hub 0, payee's hub 9. Two ways: 0→1→9 (hub 1 charges 5 + 1 %) and 0→2→3→9
/// (hubs 2 and 3 charge 1 each). The fee of the hub paying the last link is on the amount.
#[test]
fn the_cheapest_paths_come_first_priced_from_the_payee_s_end() {
    let mut g = Graph::default();
    announce(&mut g, 0, 1, 10_000, 0, 0);
    announce(&mut g, 1, 9, 10_000, 5, 10_000);
    announce(&mut g, 0, 2, 10_000, 0, 0);
    announce(&mut g, 2, 3, 10_000, 1, 0);
    announce(&mut g, 3, 9, 10_000, 1, 0);
    let (payer, payee) = (key(0).address(), key(9).address());
    let routes = g.routes(payer, payee, Amount(1_000), 3, &Scorer::default());
    assert_eq!(routes.len(), 2, "exactly two loop-free paths");
    assert_eq!(path(&routes[0]), hubs(&[0, 2, 3, 9]));
    assert_eq!((routes[0].fees, routes[0].sent), (Amount(2), Amount(1_002)));
    assert_eq!(routes[0].hops.iter().map(|h| h.amount.0).collect::<Vec<_>>(), vec![1_002, 1_001, 1_000]);
    assert_eq!(path(&routes[1]), hubs(&[0, 1, 9]));
    assert_eq!(routes[1].fees, Amount(15), "5 + 1 % of 1,000");
    // Failures steer the search away from the cheaper path.
    let mut scorer = Scorer { penalty_per_failure: Amount(20), ..Scorer::default() };
    scorer.failed(key(2).address(), key(3).address());
    let routes = g.routes(payer, payee, Amount(1_000), 1, &scorer);
    assert_eq!(path(&routes[0]), hubs(&[0, 1, 9]));
    // Capacity: 0→2 cannot carry 20,000; 0→1 and 1→9 neither: no single path.
    assert!(g.routes(payer, payee, Amount(20_000), 2, &Scorer::default()).is_empty());
    assert_eq!(g.split_routes(payer, payee, Amount(30_000), &Scorer::default()), Err(Error::NoRoute));
}

#[test]
fn a_payment_no_path_carries_is_split_within_capacities() {
    let mut g = Graph::default();
    announce(&mut g, 0, 1, 600, 0, 0);
    announce(&mut g, 1, 9, 600, 1, 0);
    announce(&mut g, 0, 2, 700, 0, 0);
    announce(&mut g, 2, 9, 700, 2, 0);
    let (payer, payee) = (key(0).address(), key(9).address());
    assert!(g.routes(payer, payee, Amount(1_000), 4, &Scorer::default()).is_empty());
    let parts = g.split_routes(payer, payee, Amount(1_000), &Scorer::default()).expect("split");
    let delivered: u128 = parts.iter().map(|r| r.hops.last().expect("link").amount.0).sum();
    assert_eq!(delivered, 1_000, "the parts deliver the whole amount");
    let mut used = std::collections::BTreeMap::new();
    for r in &parts {
        for h in &r.hops {
            *used.entry((h.from_hub, h.to_hub)).or_insert(0u128) += h.amount.0;
        }
    }
    for ((from, to), amount) in used {
        assert!(amount <= g.link(from, to).expect("link").capacity.0, "within capacity");
    }
}

#[test]
fn paths_longer_than_max_hops_are_not_taken() {
    let mut g = Graph::default();
    for i in 0..=MAX_HOPS as u64 {
        announce(&mut g, i, i + 1, 1_000, 0, 0);
    }
    let payer = key(0).address();
    assert_eq!(g.routes(payer, key(MAX_HOPS as u64).address(), Amount(10), 1, &Scorer::default()).len(), 1);
    assert!(g.routes(payer, key(MAX_HOPS as u64 + 1).address(), Amount(10), 1, &Scorer::default()).is_empty());
}

/// Every loop-free path of at most MAX_HOPS links, priced: the exhaustive answer.
fn all_paths(g: &Graph, n: u64, from: u64, to: u64, amount: u128) -> Vec<(Vec<Address>, u128)> {
    let mut out = Vec::new();
    let mut stack = vec![vec![from]];
    while let Some(p) = stack.pop() {
        let last = *p.last().expect("non-empty");
        if last == to {
            // Price from the payee's end.
            let mut need = amount;
            let mut ok = true;
            for w in p.windows(2).rev() {
                let l = g.link(key(w[0]).address(), key(w[1]).address()).expect("link");
                if need > l.capacity.0 || need < l.min_amount.0 || need > l.max_amount.0 {
                    ok = false;
                    break;
                }
                if w[0] != from {
                    need += l.fee(Amount(need)).expect("fee").0;
                }
            }
            if ok {
                out.push((p.iter().map(|&i| key(i).address()).collect(), need - amount));
            }
            continue;
        }
        if p.len() > MAX_HOPS {
            continue;
        }
        for next in 0..n {
            if !p.contains(&next) && g.link(key(last).address(), key(next).address()).is_some() {
                let mut q = p.clone();
                q.push(next);
                stack.push(q);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_cheapest_route_agrees_with_an_exhaustive_search(
        links in proptest::collection::vec((0u64..7, 0u64..7, 50u128..2_000, 0u128..20, 0u32..50_000), 4..25),
        amount in 1u128..500,
    ) {
        let mut g = Graph::default();
        for (from, to, capacity, base, ppm) in links {
            if from != to && g.link(key(from).address(), key(to).address()).is_none() {
                announce(&mut g, from, to, capacity, base, ppm);
            }
        }
        let routes = g.routes(key(0).address(), key(6).address(), Amount(amount), 4, &Scorer::default());
        let all = all_paths(&g, 7, 0, 6, amount);
        let best = all.iter().map(|(_, fee)| *fee).min();
        prop_assert_eq!(routes.first().map(|r| r.fees.0), best, "the cheapest fee");
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in routes.iter().enumerate() {
            let p = path(r);
            prop_assert!(seen.insert(p.clone()), "paths are distinct");
            let unique: std::collections::BTreeSet<_> = p.iter().collect();
            prop_assert_eq!(unique.len(), p.len(), "loop-free");
            prop_assert!(all.iter().any(|(q, fee)| *q == p && *fee == r.fees.0), "a real path at its real price");
            if i > 0 {
                prop_assert!(routes[i - 1].cost <= r.cost, "cheapest first");
            }
        }
        prop_assert_eq!(routes.len(), all.len().min(4), "as many as exist, up to k");
    }
}

/// Parts of one payment never share a link (each carries the payment's lock id), and each
/// takes the most its path carries: 1,200 over paths of 600 and 700 (with fees on the second
/// link) is two parts of 599 and 601, not halves that leave one short.
#[test]
fn split_parts_use_disjoint_links_and_fill_each_path() {
    let mut g = Graph::default();
    announce(&mut g, 0, 1, 600, 0, 0);
    announce(&mut g, 1, 9, 600, 1, 0);
    announce(&mut g, 0, 2, 700, 0, 0);
    announce(&mut g, 2, 9, 700, 2, 0);
    let (payer, payee) = (key(0).address(), key(9).address());
    let parts = g.split_routes(payer, payee, Amount(1_200), &Scorer::default()).expect("split");
    let mut links = std::collections::BTreeSet::new();
    for r in &parts {
        for h in &r.hops {
            assert!(links.insert((h.from_hub, h.to_hub)), "a link used twice: {parts:?}");
            let l = g.link(h.from_hub, h.to_hub).expect("link");
            assert!(h.amount <= l.capacity, "within capacity: {parts:?}");
        }
    }
    let delivered: Vec<u128> = parts.iter().map(|r| r.hops.last().expect("link").amount.0).collect();
    assert_eq!(delivered.iter().sum::<u128>(), 1_200, "{parts:?}");
    assert_eq!(delivered.len(), 2, "{parts:?}");
    assert!(g.split_routes(payer, payee, Amount(1_300), &Scorer::default()).is_err(), "more than both carry");
}
