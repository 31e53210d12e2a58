//! The exchange of link announcements between hubs and the routes they give (spec §5.18).
//!
//! A hub announces each of its links' directions it pays over (its link at a peer: capacity
//! = the link's balance, its fees from `routing.*`), signed by its hub key in the point
//! registry's domain, and serves them with every announcement it learned at
//! `GET /v1/announcements`. Each link's watch round fetches the peer's announcements and keeps
//! those that verify in the core's [`Graph`], from which `GET /v1/routes` quotes the cheapest
//! routes and their fees. What it learns is bounded by the graph's `MAX_LINKS`.

use alloy::primitives::{Address, B256};
use infhub_core::messages::Signed;
use infhub_core::routing::{FailingLink, Graph, LinkAnnouncement, Route, Scorer};
use infhub_core::{Amount, Domain, Error, PrivateKey};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The announcements a hub holds, in the domain that signed them (`GET /v1/announcements`).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Announcements {
    /// The signing domain.
    pub domain: infhub_core::Domain,
    /// Every announcement held, signed by the hub that pays over the link.
    pub announcements: Vec<Signed<LinkAnnouncement>>,
}

/// Most announcements one fetch from a peer takes.
pub const MAX_ANNOUNCEMENTS_PER_FETCH: usize = 10_000;
/// Largest answer read from a peer's `/v1/announcements`, in bytes.
pub const MAX_ANNOUNCEMENTS_BYTES: usize = 8 << 20;

/// The fees this hub charges to forward over its links.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fees {
    /// Per forwarded payment.
    pub base_fee: Amount,
    /// Per forwarded amount, in parts per million.
    pub fee_ppm: u32,
}

/// What a fetch from a peer did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// New or newer announcements kept.
    pub kept: usize,
    /// Ones that did not verify or were malformed.
    pub refused: usize,
}

struct Known {
    graph: Graph,
    signed: BTreeMap<(Address, Address), Signed<LinkAnnouncement>>,
    sequence: u64,
}

/// This hub's view of the network's links.
pub struct Routing {
    key: PrivateKey,
    domain: Domain,
    fees: Fees,
    known: Mutex<Known>,
    http: reqwest::Client,
    /// Link directions refused forwards named, with when and whose payment it was (at most
    /// `MAX_FAILURES_KEPT`, each counted for `FAILURE_MEMORY`): the route search's risk term
    /// for that payer's quotes (spec §5.18).
    failures: Mutex<std::collections::VecDeque<(std::time::Instant, Address, FailingLink)>>,
}

/// How long a refused forward's link counts against routes through it.
pub const FAILURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// Most failures remembered (the oldest are forgotten first).
pub const MAX_FAILURES_KEPT: usize = 1_024;

/// What one remembered failure adds to a route's cost: one INF, above any fee a route
/// through a working link would charge for the payments the tests and the benchmark make, so
/// the search takes another route when there is one and this one only when there is not.
pub const FAILURE_PENALTY: Amount = Amount(1_000_000_000_000_000_000);

impl Routing {
    /// A view signing with `key` in `domain` (chain id and point registry).
    pub fn new(key: PrivateKey, domain: Domain, fees: Fees) -> Routing {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Routing {
            key,
            domain,
            fees,
            known: Mutex::new(Known { graph: Graph::default(), signed: BTreeMap::new(), sequence: 0 }),
            http,
            failures: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The chain's point registry (the announcements' domain).
    pub fn registry(&self) -> Address {
        self.domain.verifying_contract
    }

    /// The chain the announcements are signed for.
    pub fn chain_id(&self) -> u64 {
        self.domain.chain_id
    }

    /// What this hub charges to forward `amount` over one of its links.
    pub fn fee(&self, amount: Amount) -> Result<Amount, Error> {
        let a = LinkAnnouncement {
            from_hub: self.hub(),
            to_hub: self.hub(),
            capacity: amount,
            base_fee: self.fees.base_fee,
            fee_ppm: self.fees.fee_ppm,
            min_amount: amount,
            max_amount: amount,
            sequence: 0,
        };
        a.fee(amount)
    }

    /// This hub's address.
    pub fn hub(&self) -> Address {
        self.key.address()
    }

    /// The public key of `hub` (this hub's own, or one recovered from a verified announcement
    /// of it): what a payer seals that hub's route step to (spec §5.23d).
    pub fn hub_key(&self, hub: Address) -> Option<infhub_core::point_lock::Point> {
        if hub == self.hub() {
            return Some(self.own_key());
        }
        self.known().graph.hub_key(hub)
    }

    /// Remembers that a forward of `payer`'s payment over `link` was refused (spec §5.18).
    pub fn failed(&self, payer: Address, link: FailingLink) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_FAILURES_KEPT {
            failures.pop_front();
        }
        failures.push_back((std::time::Instant::now(), payer, link));
        tracing::info!(from = %link.from_hub, to = %link.to_hub, "a forward over this link was refused; routes avoid it for a while");
    }

    /// The route search's risk term for `payer`'s quotes: the failures of her payments in the
    /// last [`FAILURE_MEMORY`] (none without a payer). Only her own: what one payer's failed
    /// payments teach never steers another's (a payer can make her own payments fail at will).
    fn scorer(&self, payer: Option<Address>) -> Scorer {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while failures.front().is_some_and(|(at, ..)| at.elapsed() > FAILURE_MEMORY) {
            failures.pop_front();
        }
        let mut scorer = Scorer { penalty_per_failure: FAILURE_PENALTY, ..Scorer::default() };
        for (_, _, link) in failures.iter().filter(|(_, whose, _)| Some(*whose) == payer) {
            scorer.failed(link.from_hub, link.to_hub);
        }
        scorer
    }

    /// This hub's public key.
    pub fn own_key(&self) -> infhub_core::point_lock::Point {
        let secret = infhub_core::point_lock::Scalar::from_bytes(B256::from(self.key.secret_bytes()))
            .expect("a signing key is a scalar in 1..n");
        secret.point()
    }

    /// Announces this hub's direction to `peer_hub` with `capacity`, if it changed (a new
    /// sequence number each time).
    pub fn announce(&self, peer_hub: Address, capacity: Amount) {
        let mut known = self.known();
        if let Some(held) = known.graph.link(self.hub(), peer_hub) {
            if held.capacity == capacity && held.base_fee == self.fees.base_fee && held.fee_ppm == self.fees.fee_ppm {
                return;
            }
        }
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let sequence = u64::try_from(now_ms).unwrap_or(u64::MAX).max(known.sequence + 1);
        known.sequence = sequence;
        let a = LinkAnnouncement {
            from_hub: self.hub(),
            to_hub: peer_hub,
            capacity,
            base_fee: self.fees.base_fee,
            fee_ppm: self.fees.fee_ppm,
            // A link with nothing in it yet carries nothing (and is still well formed).
            min_amount: Amount(1).min(capacity),
            max_amount: capacity,
            sequence,
        };
        let signed = Signed::new(a, &self.domain, &self.key);
        match known.graph.apply(&signed, &self.domain) {
            Ok(()) => {
                known.signed.insert((a.from_hub, a.to_hub), signed);
            }
            Err(e) => tracing::warn!(error = %e, "own announcement refused"),
        }
    }

    /// Every announcement held, for `GET /v1/announcements`.
    pub fn announcements(&self) -> Announcements {
        let known = self.known();
        Announcements { domain: self.domain, announcements: known.signed.values().copied().collect() }
    }

    /// Takes the announcements of the hub at `url` that verify and are newer than those held.
    pub async fn learn_from(&self, url: &str) -> Result<Learned, String> {
        let url = format!("{}/v1/announcements", url.trim_end_matches('/'));
        let response = self.http.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
        let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if bytes.len() > MAX_ANNOUNCEMENTS_BYTES {
            return Err(format!("{url}: answer over {MAX_ANNOUNCEMENTS_BYTES} bytes"));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))?;
        let list = v["announcements"].as_array().ok_or_else(|| format!("{url}: no announcements"))?;
        let mut learned = Learned::default();
        let mut known = self.known();
        for item in list.iter().take(MAX_ANNOUNCEMENTS_PER_FETCH) {
            let Ok(signed) = serde_json::from_value::<Signed<LinkAnnouncement>>(item.clone()) else {
                learned.refused += 1;
                continue;
            };
            if signed.message.from_hub == self.hub() {
                continue; // this hub's own word about itself is its own
            }
            match known.graph.apply(&signed, &self.domain) {
                Ok(()) => {
                    known.signed.insert((signed.message.from_hub, signed.message.to_hub), signed);
                    learned.kept += 1;
                }
                Err(Error::AnnouncementStale) => {}
                Err(_) => learned.refused += 1,
            }
        }
        Ok(learned)
    }

    /// Parts of a payment of `amount` to `payee_hub` over disjoint links, when no single
    /// route carries it (spec §5.23c); `NoRoute` when they cannot cover it.
    pub fn split_routes(
        &self,
        payee_hub: Address,
        amount: Amount,
        payer: Option<Address>,
    ) -> Result<Vec<Route>, Error> {
        let scorer = self.scorer(payer);
        self.known().graph.split_routes(self.hub(), payee_hub, amount, &scorer)
    }

    /// Up to `k` cheapest routes from this hub to `payee_hub` for `amount`, weighing `payer`'s
    /// recent failures if given.
    pub fn routes(&self, payee_hub: Address, amount: Amount, k: usize, payer: Option<Address>) -> Vec<Route> {
        let scorer = self.scorer(payer);
        self.known().graph.routes(self.hub(), payee_hub, amount, k, &scorer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(byte: u8, fees: Fees) -> Routing {
        let domain = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(0xee) };
        Routing::new(PrivateKey::from_bytes([byte; 32]).expect("key"), domain, fees)
    }

    /// A hub's own announcement is re-signed only when its figures change, with a higher
    /// sequence, and verifies in the registry's domain; a forged one is refused by a learner.
    #[test]
    fn own_announcements_change_only_with_their_figures_and_forgeries_do_not_verify() {
        let a = routing(1, Fees { base_fee: Amount(2), fee_ppm: 10_000 });
        let peer = Address::repeat_byte(9);
        a.announce(peer, Amount(0));
        let empty = serde_json::to_value(a.announcements()).expect("json")["announcements"][0].clone();
        assert_eq!(empty["message"]["capacity"], "0", "a link not funded yet is announced too: {empty}");
        a.announce(peer, Amount(100));
        let first = serde_json::to_value(a.announcements()).expect("json")["announcements"][0].clone();
        a.announce(peer, Amount(100));
        assert_eq!(
            serde_json::to_value(a.announcements()).expect("json")["announcements"][0],
            first,
            "unchanged figures, no new sequence"
        );
        a.announce(peer, Amount(90));
        let second = serde_json::to_value(a.announcements()).expect("json")["announcements"][0].clone();
        assert!(second["message"]["sequence"].as_u64() > first["message"]["sequence"].as_u64());
        let signed: Signed<LinkAnnouncement> = serde_json::from_value(second).expect("signed");
        let b = routing(2, Fees::default());
        let mut graph = Graph::default();
        graph.apply(&signed, &b.domain).expect("verifies");
        let mut forged = signed;
        forged.message.capacity = Amount(1_000_000);
        assert!(Graph::default().apply(&forged, &b.domain).is_err(), "a changed figure breaks the signature");
    }
}
