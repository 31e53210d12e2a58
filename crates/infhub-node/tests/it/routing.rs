//! The exchange of link announcements and the routes they give (spec §5.18), with three hub
//! nodes on one anvil: A holds a link at B, B one at C, B charges a fee. Each hub announces
//! the direction it pays over; A learns B's announcement of B→C from B and quotes the route
//! A→B→C with B's fee; an amount no link carries has no route.

use crate::harness::*;
use crate::links::{balance_of, deploy_hub_of, link_of, link_until};
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use infhub_chain::anvil;
use infhub_core::PrivateKey;
use serde_json::{json, Value};

/// Hub keys of B and C (A is dev key 0).
const HUB_B: usize = 4;
const HUB_C: usize = 3;

pub(crate) fn hub_address(index: usize) -> Address {
    PrivateKey::from_bytes(anvil::dev_key(index).0).expect("key").address()
}

/// `from` opens a link at `to` and funds it with 300 from its link key.
pub(crate) async fn link(chain: &Chain, from: &Http, to: &InProcessNode, peer: Address) {
    let (s, v) = from.post("/v1/operator/links", Some(OPERATOR), &json!({"hubUrl": to.url})).await;
    assert_eq!(s, 200, "{v}");
    let (_, list) = from.get("/v1/operator/links", Some(OPERATOR)).await;
    let link_address: Address = serde_json::from_value(list["linkAddress"].clone()).expect("linkAddress");
    let mut minter = anvil::sender(&chain.provider, anvil::dev_key(0)).await.expect("sender");
    anvil::mint(&mut minter, chain.d.token, link_address, U256::from(1_000u64)).await.expect("mint");
    let eth = U256::from(10u64).pow(U256::from(18u64));
    let _: () = chain.provider.raw_request("anvil_setBalance".into(), (link_address, eth)).await.expect("gas");
    link_until(chain, from, peer, "the link open", |l| l["state"] == "open").await;
    let path = format!("/v1/operator/links/{peer}/deposits");
    let (s, v) = from.post(&path, Some(OPERATOR), &json!({"amount": "300"})).await;
    assert_eq!(s, 200, "{v}");
    link_until(chain, from, peer, "the link funded", |l| balance_of(l) == 300 && l["job"].is_null()).await;
}

/// Hubs A, B (fee 2 + 1%) and C on one anvil, A's link at B and B's link at C funded with 300.
pub(crate) struct ThreeHubs {
    pub chain: Chain,
    pub d_b: anvil::Deployment,
    pub d_c: anvil::Deployment,
    pub tmp: tempfile::TempDir,
    pub node_a: InProcessNode,
    pub node_b: InProcessNode,
    pub node_c: InProcessNode,
    pub http_a: Http,
    pub http_b: Http,
    pub config_b: infhub_node::config::Config,
    pub config_c: infhub_node::config::Config,
}

/// The configuration of another hub `d` on `chain` with hub key `key`, in `dir`: quick chain
/// polling and link rounds, as the multi-hub tests want.
pub(crate) fn hub_config(
    chain: &Chain,
    d: &anvil::Deployment,
    key: usize,
    dir: &std::path::Path,
) -> infhub_node::config::Config {
    let mut c = infhub_node::dev::config(&chain.anvil, d, "127.0.0.1:0".into(), dir.to_path_buf());
    c.chain.hub_key.0 = anvil::dev_key(key);
    c.chain.poll_interval_ms = 50;
    c.node.link_watch_interval_ms = 200;
    c
}

pub(crate) async fn three_hubs() -> ThreeHubs {
    let chain = Chain::start().await;
    let (d_b, d_c) = (deploy_hub_of(&chain, HUB_B).await, deploy_hub_of(&chain, HUB_C).await);
    let tmp = tempfile::tempdir().expect("tmp");
    let start = |d: &anvil::Deployment, key: usize, name: &str| hub_config(&chain, d, key, &tmp.path().join(name));
    let mut config_a = chain.config(tmp.path().join("a"));
    config_a.node.link_watch_interval_ms = 200;
    let mut config_b = start(&d_b, HUB_B, "b");
    config_b.node.link_base_fee = infhub_core::Amount(2);
    config_b.node.link_fee_ppm = 10_000;
    let node_a = InProcessNode::start(config_a).await;
    let node_b = InProcessNode::start(config_b.clone()).await;
    let config_c = start(&d_c, HUB_C, "c");
    let node_c = InProcessNode::start(config_c.clone()).await;
    let (http_a, http_b) = (Http::new(&node_a.url), Http::new(&node_b.url));
    link(&chain, &http_a, &node_b, d_b.hub).await;
    link(&chain, &http_b, &node_c, d_c.hub).await;
    ThreeHubs { chain, d_b, d_c, tmp, node_a, node_b, node_c, http_a, http_b, config_b, config_c }
}

/// Pays `invoice` from `payer` as soon as her hub quotes a route to the payee's hub (within
/// 60 s: the announcements travel one link per watch round); the hub's answer.
async fn pay_when_routed(payer: &mut infhub_wallet::Wallet, invoice: &infhub_core::invoice::SignedInvoice) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match payer.pay_invoice(invoice).await {
            Ok(answer) => return answer,
            Err(e) if e.code() == "no_route" && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("paying across hubs: {e}"),
        }
    }
}

/// Syncs `w` with its hub until `done` holds, or panics with `what` at `deadline`.
pub(crate) async fn sync_until(
    w: &mut infhub_wallet::Wallet,
    deadline: std::time::Instant,
    what: &str,
    done: impl Fn(&infhub_wallet::Wallet) -> bool,
) {
    while !done(w) {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        let _ = w.sync().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A wallet's running total of debits.
fn debit_of(w: &infhub_wallet::Wallet) -> infhub_core::Amount {
    w.channel().map(|c| c.cumulative_debit()).unwrap_or_default()
}

#[test]
fn hubs_exchange_link_announcements_and_quote_a_route_with_the_forwarding_hubs_fee() {
    rt().block_on(async {
        let ThreeHubs { chain, tmp: _tmp, node_a, node_b, node_c, http_a, http_b, .. } = three_hubs().await;

        // B announces B→C with its fees, signed by its hub key.
        let (b_ann, c_hub) = (
            eventually(30, "B's announcement", || async {
                let (_, v) = http_b.get("/v1/announcements", None).await;
                let list = v["announcements"].as_array().cloned().unwrap_or_default();
                list.into_iter().find(|a| a["message"]["toHub"] == json!(hub_address(HUB_C)))
            })
            .await,
            hub_address(HUB_C),
        );
        assert_eq!(b_ann["message"]["fromHub"], json!(hub_address(HUB_B)), "{b_ann}");
        assert_eq!((&b_ann["message"]["baseFee"], &b_ann["message"]["feePpm"]), (&json!("2"), &json!(10_000)));
        assert_eq!(b_ann["message"]["capacity"], "300");

        // A learns it from B and quotes A→B→C: B keeps 2 + 1% of 10, rounded up.
        let quote: Value = eventually(30, "A's route to C", || async {
            chain.mine(1).await;
            let (s, v) = http_a.get(&format!("/v1/routes?toHub={c_hub}&amount=10"), None).await;
            (s == 200).then_some(v)
        })
        .await;
        let route = &quote["routes"][0];
        let hops = route["hops"].as_array().expect("hops");
        assert_eq!(hops.len(), 2, "{quote}");
        assert_eq!((&hops[0]["fromHub"], &hops[0]["toHub"]), (&json!(hub_address(0)), &json!(hub_address(HUB_B))));
        assert_eq!((&hops[0]["amount"], &hops[0]["fee"]), (&json!("13"), &json!("3")), "{quote}");
        assert_eq!((&hops[1]["amount"], &hops[1]["fee"]), (&json!("10"), &json!("0")), "{quote}");
        assert_eq!((&route["sent"], &route["fees"]), (&json!("13"), &json!("3")), "{quote}");
        let (_, a_ann) = http_a.get("/v1/announcements", None).await;
        assert_eq!(a_ann["announcements"].as_array().map(Vec::len), Some(2), "its own and B's: {a_ann}");

        // More than the links carry: no route, by name.
        let (s, v) = http_a.get(&format!("/v1/routes?toHub={c_hub}&amount=400"), None).await;
        assert_eq!((s, code(&v)), (422, "no_route"), "{v}");
        node_c.stop().await;
        node_b.stop().await;
        node_a.stop().await;
    });
}

/// A payment through an intermediate hub (spec §5.23b): Alice at A pays Bob's invoice at C over
/// A's link at B and B's link at C. A quotes the route with B's fee and a different point on
/// every link (Alice's lock is not on the invoice's point, so B's upstream and downstream locks
/// cannot be matched or settled around it); Bob claims at C, B steps the scalar upstream with
/// its tweak, A with its own, and Alice settles with a scalar that, plus the quote's tweak sum,
/// is the invoice's proof of payment. Everyone ends as the route says: Bob +10, Alice −13,
/// B +3.
#[test]
fn a_payment_crosses_an_intermediate_hub_with_its_own_point_on_every_link_and_pays_its_fee() {
    use infhub_core::Amount;
    rt().block_on(async {
        let ThreeHubs { chain, d_b, d_c, tmp, node_a, node_b, node_c, http_a, http_b, .. } = three_hubs().await;
        let miner = mine_continuously(&chain, 250);
        let (mut alice, mut bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(10), "two hops", 600).expect("invoice");
        let z = infhub_core::point_lock::Point::from_compressed(&invoice.message.payment_point).expect("point");

        // A knows B→C once B announced it: pay as soon as A quotes a route.
        let answer = pay_when_routed(&mut alice, &invoice).await;
        assert!(answer["forwarded"]["nextHubAnswer"].is_object(), "{answer}");
        assert_eq!(answer["quote"]["fees"], "3", "the fees are shown with the answer: {answer}");
        let lock = alice.channel().expect("ch").debit_locks.get(&invoice.message.invoice_id).copied().expect("lock");
        assert_eq!(lock.amount, Amount(13), "the invoice plus B's fee, 2 + 1% of 10 rounded up");
        assert_ne!(lock.point, z.address(), "Alice's lock is on its own point, not the invoice's");
        assert_eq!(alice.spendable().expect("balance"), Amount(487));

        // Bob claims at C; the scalar steps upstream through B and A to Alice.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        sync_until(&mut bob, deadline, "Bob not paid at C", |w| w.spendable().ok() == Some(Amount(10))).await;
        while alice.channel().expect("channel").cumulative_debit() != Amount(13) {
            if std::time::Instant::now() > deadline {
                let (_, la) = http_a.get("/v1/operator/links", Some(OPERATOR)).await;
                let (_, lb) = http_b.get("/v1/operator/links", Some(OPERATOR)).await;
                panic!("Alice's lock not settled through B and A: A {la} B {lb}");
            }
            let _ = alice.sync().await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let a_link = link_until(&chain, &http_a, d_b.hub, "A's lock at B settled", |l| {
            l["channel"]["cumulativeDebit"] == "13" && l["unfinishedForwards"] == 0
        })
        .await;
        assert_eq!(balance_of(&a_link), 287, "{a_link}");
        let b_link = link_until(&chain, &http_b, d_c.hub, "B's lock at C settled", |l| {
            l["channel"]["cumulativeDebit"] == "10" && l["unfinishedForwards"] == 0
        })
        .await;
        assert_eq!(balance_of(&b_link), 290, "{b_link}");
        // A payer who allows less than the route's fees signs nothing.
        let dear = bob.issue_invoice(Amount(10), "again", 600).expect("invoice");
        let before = alice.spendable().expect("balance");
        let err = alice.pay_invoice_with_max_fee(&dear, Amount(2)).await.expect_err("fees above her limit");
        assert_eq!(err.code(), "fee_above_limit", "{err}");
        assert_eq!(alice.spendable().expect("balance"), before, "nothing locked");
        // B: paid 13 by A's link (an account of B), paid out 10 over its own link: its fee is 3.
        let (_, accounts) = http_b.get("/v1/operator/accounts?limit=10", Some(OPERATOR)).await;
        let a_link_at_b =
            accounts["accounts"].as_array().expect("accounts").iter().find(|a| a["balance"] == "287").cloned();
        assert!(a_link_at_b.is_some(), "A's link holds 300 − 13 at B: {accounts}");
        miner.abort();
        node_c.stop().await;
        node_b.stop().await;
        node_a.stop().await;
    });
}

/// Hub B, in the middle of a route, checks its own step against what a dishonest hub A (its
/// link's owner, signing with A's link key) asks: a point that does not lead to the invoice's
/// (a step that would let A and C settle around B), a lock that does not cover B's fee, an
/// expiry that leaves B no time, a point that is not the lock's, a next hub B has no link to,
/// more than B's link can carry, a step sealed to another hub or for another payment (spec
/// §5.23d). Each is refused by name and nothing is locked at B.
#[test]
fn an_intermediate_hub_refuses_by_name_every_step_that_would_cost_it() {
    use infhub_core::point_lock::{Lock, Point, Scalar};
    use infhub_core::Amount;
    rt().block_on(async {
        let ThreeHubs { chain, d_b, d_c, tmp: _tmp, node_a, node_b, node_c, http_a, http_b, .. } = three_hubs().await;

        // A's link key, as a dishonest A would use it; Bob's invoice at C.
        let (key, key_bytes) = infhub_node::links::link_key(&anvil::dev_key(0)).expect("link key");
        let sender = anvil::sender(&chain.provider, key_bytes).await.expect("sender");
        let a_link = Wallet { key, chain: sender, epoch: 1, debit_nonce: 0, cumulative_debit: 0, token: None };
        let bob = PrivateKey::from_bytes(anvil::dev_key(2).0).expect("key");
        let domain_c = infhub_core::Domain { chain_id: chain.d.chain_id, verifying_contract: d_c.hub };
        let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_secs() + 600;
        let host_c = node_c.url.trim_start_matches("http://");
        let invoice = infhub_core::invoice::issue(&bob, host_c, &domain_c, Amount(10), expires, "", Default::default())
            .expect("invoice");
        let z = Point::from_compressed(&invoice.message.payment_point).expect("point");
        let tweak = Scalar::new(U256::from(12_345u64)).expect("tweak");
        let other = Scalar::new(U256::from(54_321u64)).expect("tweak");
        let head = chain.head().await;
        let step = json!({"nextHub": hub_address(HUB_C), "tweak": tweak, "amount": "10", "expiryBlock": head + 300});
        let domain_b = infhub_core::Domain { chain_id: chain.d.chain_id, verifying_contract: d_b.hub };
        let request = |point: Point, amount: u128, expiry: u64, step: Value| {
            let lock = Lock {
                lock_id: invoice.message.invoice_id,
                amount: Amount(amount),
                expiry_block: expiry,
                point: point.address(),
            };
            let kind = infhub_core::messages::PaymentKind::LockAdd;
            let debit = crate::locks::lock_debit(&a_link, &domain_b, hub_address(HUB_B), kind, &lock, &[lock], 0);
            let compressed = alloy::primitives::FixedBytes(point.compressed());
            json!({"debit": a_link.sign_debit(&domain_b, debit), "lock": lock, "invoice": invoice,
                   "lockPoint": compressed, "route": [sealed_step(&step, anvil::dev_key(HUB_B), invoice.message.invoice_id)]})
        };
        let t1 = z.untweaked(&tweak).expect("point");
        let wrong = z.untweaked(&other).expect("point");
        let mut unknown = step.clone();
        unknown["nextHub"] = json!(Address::repeat_byte(0x42));
        let mut too_much = step.clone();
        too_much["amount"] = json!("1000");
        let mut mismatched = request(t1, 13, head + 340, step.clone());
        mismatched["lockPoint"] = json!(alloy::primitives::FixedBytes(wrong.compressed()));
        // A step sealed to another hub (A itself), or for another payment: B cannot open it.
        let id = invoice.message.invoice_id;
        let mut misdirected = request(t1, 13, head + 340, step.clone());
        misdirected["route"] = json!([sealed_step(&step, anvil::dev_key(0), id)]);
        let mut replayed = request(t1, 13, head + 340, step.clone());
        replayed["route"] = json!([sealed_step(&step, anvil::dev_key(HUB_B), alloy::primitives::B256::repeat_byte(9))]);
        let attempts = [
            ("step_unreadable", misdirected),
            ("step_unreadable", replayed),
            ("point_chain_broken", request(wrong, 13, head + 340, step.clone())),
            ("fee_insufficient", request(t1, 12, head + 340, step.clone())),
            ("expiry_too_soon", request(t1, 13, head + 339, step.clone())),
            ("lock_mismatch", mismatched),
            ("unknown_next_hub", request(t1, 13, head + 340, unknown)),
            ("insufficient_capacity", request(t1, 1_013, head + 340, too_much)),
        ];
        for (expected, body) in attempts {
            let (s, v) = http_b.post("/v1/forwarded-transfers", None, &body).await;
            assert_eq!(code(&v), expected, "HTTP {s}: {v}");
            // A refusal about a link names it (spec §5.18); one about the payment does not.
            let named = &v["error"]["failingLink"];
            match expected {
                "insufficient_capacity" | "fee_insufficient" | "expiry_too_soon" => {
                    assert_eq!(named, &json!({"fromHub": hub_address(HUB_B), "toHub": hub_address(HUB_C)}), "{v}");
                }
                "unknown_next_hub" => assert_eq!(named["fromHub"], json!(hub_address(HUB_B)), "{v}"),
                _ => assert!(named.is_null(), "{v}"),
            }
        }
        let link = crate::links::link_of(&http_a, d_b.hub).await;
        assert_eq!(balance_of(&link), 300, "nothing locked at B: {link}");
        node_c.stop().await;
        node_b.stop().await;
        node_a.stop().await;
    });
}

/// The payee's hub goes silent mid-payment (spec §5.23a/b): C is down when Alice pays Bob
/// through B. B holds A's lock and keeps its own lock to C pending; A answers Alice with the
/// refusal but does not agree to cancel her lock (its own lock at B is live: B could still be
/// paid). C returns, B's link resends its lock, Bob claims, and the scalar comes back through B
/// and A: every honest party whole, no channel closed.
#[test]
fn a_payment_whose_payee_hub_is_down_completes_when_it_returns_and_nothing_is_cancelled_early() {
    use infhub_core::Amount;
    rt().block_on(async {
        let ThreeHubs { chain, d_c, tmp, node_a, node_b, node_c, http_a, http_b, config_c, .. } = three_hubs().await;
        let miner = mine_continuously(&chain, 250);
        let (mut alice, mut bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(10), "while C sleeps", 600).expect("invoice");
        // A must know the route (B's announcement) before C goes down: its quote needs C's info.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let c_hub = hub_address(HUB_C);
        loop {
            let (s, _) = http_a.get(&format!("/v1/routes?toHub={c_hub}&amount=10"), None).await;
            if s == 200 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no route to C");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let (_, info) = Http::new(&node_c.url).get("/v1/info", None).await;
        assert_eq!(info["hub"], json!(c_hub));
        // The quote reads C's info; take it while C is up, then stop C before the payment.
        let addr_c = node_c.url.trim_start_matches("http://").to_string();
        let quote = http_a.post("/v1/payment-quotes", None, &json!({"invoice": invoice})).await;
        assert_eq!(quote.0, 200, "{}", quote.1);
        node_c.stop().await;
        let err = alice.pay_invoice(&invoice).await.expect_err("C is down");
        assert!(err.to_string().contains("after its expiry"), "her lock is not cancelled early: {err}");
        assert_eq!(alice.spendable().expect("balance"), Amount(487), "Alice's lock stays");
        let b_link = crate::links::link_of(&http_b, d_c.hub).await;
        assert!(!b_link["channel"]["pendingLock"].is_null(), "B keeps its lock to C to resend: {b_link}");

        // C returns on the same address; B's link resends its lock; Bob claims; Alice settles.
        let mut config = config_c;
        config.node.listen = addr_c;
        let node_c = InProcessNode::start(config).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        sync_until(&mut bob, deadline, "Bob not paid after C returned", |w| w.spendable().ok() == Some(Amount(10)))
            .await;
        sync_until(&mut alice, deadline, "Alice's lock not settled after C returned", |w| debit_of(w) == Amount(13))
            .await;
        assert_eq!(alice.spendable().expect("balance"), Amount(487));
        assert!(alice.channel().expect("channel").debit_locks.is_empty());
        miner.abort();
        node_c.stop().await;
        node_b.stop().await;
        node_a.stop().await;
    });
}

/// The hub in the middle stops mid-payment (spec §5.23a/b): B holds A's lock and its own lock
/// at C when it stops; Bob claims at C while B is down; B starts again from its data directory,
/// reads its unfinished forward from its link's file, steps the scalar C learned upstream with
/// its tweak, and Alice settles through A.
#[test]
fn a_payment_completes_after_the_intermediate_hub_restarts_mid_payment() {
    use infhub_core::Amount;
    rt().block_on(async {
        let ThreeHubs { chain, d_b, tmp, node_a, node_b, node_c, http_a, config_b, .. } = three_hubs().await;
        let miner = mine_continuously(&chain, 250);
        let (mut alice, mut bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(10), "B restarts", 600).expect("invoice");
        pay_when_routed(&mut alice, &invoice).await;
        let addr_b = node_b.url.trim_start_matches("http://").to_string();
        node_b.stop().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        sync_until(&mut bob, deadline, "Bob not paid at C while B is down", |w| w.spendable().ok() == Some(Amount(10)))
            .await;
        let mut config = config_b;
        config.node.listen = addr_b;
        let node_b = InProcessNode::start(config).await;
        sync_until(&mut alice, deadline, "Alice's lock not settled after B restarted", |w| debit_of(w) == Amount(13))
            .await;
        let a_link = link_until(&chain, &http_a, d_b.hub, "A's lock at B settled", |l| {
            l["channel"]["cumulativeDebit"] == "13" && l["unfinishedForwards"] == 0
        })
        .await;
        assert_eq!(balance_of(&a_link), 287, "{a_link}");
        miner.abort();
        node_c.stop().await;
        node_b.stop().await;
        node_a.stop().await;
    });
}

/// The payee's hub stays offline past the expiry (spec §5.23a/b): C is down when Alice pays Bob
/// through B and does not return. Every lock expires and is dropped by its sender: Alice's at A,
/// A's link's at B; B's lock to C was never applied. Everyone is refunded and no channel closes.
#[test]
fn a_payment_whose_payee_hub_stays_offline_past_the_expiry_refunds_everyone_and_closes_nothing() {
    use infhub_core::Amount;
    rt().block_on(async {
        let ThreeHubs { chain, d_b, d_c, tmp, node_a, node_b, node_c, http_a, http_b, .. } = three_hubs().await;
        let miner = mine_continuously(&chain, 250);
        let (mut alice, bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(10), "never claimed", 600).expect("invoice");
        let c_hub = hub_address(HUB_C);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (s, _) = http_a.post("/v1/payment-quotes", None, &json!({"invoice": invoice})).await;
            if s == 200 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no route to C at {c_hub}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        node_c.stop().await;
        let err = alice.pay_invoice(&invoice).await.expect_err("C is down");
        assert!(err.to_string().contains("after its expiry"), "{err}");
        let lock = alice.channel().expect("ch").debit_locks.get(&invoice.message.invoice_id).copied().expect("lock");

        // Past Alice's expiry: every sender drops its lock.
        miner.abort();
        let head = chain.head().await;
        chain.mine(lock.expiry_block.saturating_sub(head) + 5).await;
        let miner = mine_continuously(&chain, 250);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        while !alice.channel().expect("channel").debit_locks.is_empty() {
            assert!(std::time::Instant::now() < deadline, "Alice's expired lock not dropped");
            let _ = alice.sync().await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(alice.spendable().expect("balance"), Amount(500), "Alice refunded");
        assert_eq!(alice.channel().expect("channel").cumulative_debit(), Amount(0));
        let a_link = link_until(&chain, &http_a, d_b.hub, "A's link refunded at B", |l| {
            balance_of(l) == 300 && l["unfinishedForwards"] == 0
        })
        .await;
        assert_eq!(a_link["state"], "open", "no channel closed: {a_link}");
        let b_link = link_of(&http_b, d_c.hub).await;
        assert_eq!((balance_of(&b_link), &b_link["state"]), (300, &json!("open")), "B paid nothing: {b_link}");
        miner.abort();
        node_b.stop().await;
        node_a.stop().await;
    });
}

/// The upstream hub goes silent after forwarding (spec §5.23b, §5.15): A stops once Alice's
/// payment is through; Bob claims at C and B learns the scalar for A's lock, which A is not
/// there to settle. B closes A's link: its duties reveal the scalar in the point registry,
/// register A's lock and, after the settlement, unlock it: B is paid through the registry
/// without A. When A returns, B is down too: A learns the scalar from the registry and Alice
/// settles: A paid B 13 out of its link and is paid 13 by Alice; everyone whole.
#[test]
fn a_hub_claims_through_the_registry_when_its_upstream_is_silent_and_the_upstream_learns_it_there() {
    use infhub_core::Amount;
    rt().block_on(async {
        let ThreeHubs { chain, d_b, tmp, node_a, node_b, node_c, http_a, http_b, .. } = three_hubs().await;
        let miner = mine_continuously(&chain, 250);
        let config_a = {
            let mut c = chain.config(tmp.path().join("a"));
            c.node.link_watch_interval_ms = 200;
            c.node.listen = node_a.url.trim_start_matches("http://").to_string();
            c
        };
        let (mut alice, mut bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(10), "A goes silent", 600).expect("invoice");
        pay_when_routed(&mut alice, &invoice).await;
        let (_, list) = http_a.get("/v1/operator/links", Some(OPERATOR)).await;
        let a_link: Address = serde_json::from_value(list["linkAddress"].clone()).expect("linkAddress");
        node_a.stop().await;

        // Bob claims; B learns the scalar for A's lock and, A being silent, closes A's link.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        sync_until(&mut bob, deadline, "Bob not paid at C", |w| w.spendable().ok() == Some(Amount(10))).await;
        eventually(60, "B learned the scalar of A's lock", || async {
            let (_, v) = http_b.get(&format!("/v1/accounts/{a_link}"), Some(OPERATOR)).await;
            let outgoing = v["locks"]["outgoing"].as_array().cloned().unwrap_or_default();
            outgoing.iter().any(|l| !l["scalar"].is_null()).then_some(())
        })
        .await;
        let tokens_before = chain.token_balance(a_link).await;
        let (s, v) = http_b.post("/v1/operator/closes", Some(OPERATOR), &json!({"user": a_link})).await;
        assert_eq!(s, 200, "{v}");
        let paid = eventually(120, "A's link settled at B, its lock paid to B through the registry", || async {
            let now = chain.token_balance(a_link).await;
            (now > tokens_before).then_some(now - tokens_before)
        })
        .await;
        assert_eq!(paid, U256::from(287u64), "A's link is paid its deposit less the lock");

        // A returns while B is down: it learns the scalar from the registry; Alice settles.
        node_b.stop().await;
        let node_a = InProcessNode::start(config_a).await;
        let later = deadline + std::time::Duration::from_secs(60);
        sync_until(&mut alice, later, "Alice not settled after A returned", |w| debit_of(w) == Amount(13)).await;
        let a_view =
            link_until(&chain, &http_a, d_b.hub, "A's forward finished", |l| l["unfinishedForwards"] == 0).await;
        assert_eq!(a_view["state"], "settled", "{a_view}");
        miner.abort();
        node_c.stop().await;
        node_a.stop().await;
    });
}

/// The tweaks a hub's forwards file (under its data directory) holds for the lock `lock_id`,
/// and all the text of its data directory.
fn tweaks_held(data_dir: &std::path::Path, lock_id: alloy::primitives::B256) -> (Vec<String>, String) {
    let (mut tweaks, mut text) = (Vec::new(), String::new());
    let mut dirs = vec![data_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("data dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let Ok(content) = std::fs::read_to_string(&path) else { continue };
            if path.file_name().is_some_and(|n| n == "forwards.jsonl") {
                for line in content.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
                    if line["lockId"] == json!(lock_id) && line["tweak"].is_string() {
                        tweaks.push(line["tweak"].as_str().expect("tweak").to_string());
                    }
                }
            }
            text.push_str(&content);
        }
    }
    tweaks.sort();
    tweaks.dedup();
    (tweaks, text)
}

/// Hubs A and C collude to settle around B (the wormhole attack, spec §5.23d, D61): Alice at A
/// pays Bob's invoice at C through B, and with both of B's locks live C hands A the payee's
/// scalar `z` (C learns it when Bob claims; here from Bob's key). A holds its own tweak and, of
/// B's step, only what Alice sealed to B: no scalar A can form from `z` and what it holds opens
/// Alice's lock, so A cannot take her payment while B's locks expire. B's tweak, which only
/// Alice and B hold, is exactly what is missing: with it the scalar opens her lock (so on the
/// design where A drew the tweaks, D53, the attack succeeds). Then Bob claims honestly and the
/// payment completes through B, which keeps its fee.
#[test]
fn hubs_on_both_sides_of_an_honest_hub_cannot_settle_around_it() {
    use infhub_core::point_lock::Scalar;
    use infhub_core::Amount;
    rt().block_on(async {
        let ThreeHubs { chain, d_b, tmp, node_a, node_b, node_c, http_a, config_b, .. } = three_hubs().await;
        let miner = mine_continuously(&chain, 250);
        let (mut alice, mut bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(10), "around B", 600).expect("invoice");
        let id = invoice.message.invoice_id;
        let answer = pay_when_routed(&mut alice, &invoice).await;
        assert!(answer["forwarded"]["nextHubAnswer"].is_object(), "B forwarded to C: {answer}");
        let lock = alice.channel().expect("channel").debit_locks.get(&id).copied().expect("Alice's lock");

        // What the colluders hold: z (from C), A's tweak (A's records), and A's whole store.
        let z = infhub_core::invoice::invoice_scalar(&PrivateKey::from_bytes(anvil::dev_key(2).0).expect("key"), id);
        let (a_tweaks, a_text) = tweaks_held(&tmp.path().join("a"), id);
        let (b_tweaks, _) = tweaks_held(&config_b.node.data_dir, id);
        let parse = |t: &String| -> Scalar { serde_json::from_value(json!(t)).expect("tweak") };
        let (y_a, y_b) = match (a_tweaks.as_slice(), b_tweaks.as_slice()) {
            ([a], [b]) => (parse(a), parse(b)),
            _ => panic!("one tweak each: A {a_tweaks:?}, B {b_tweaks:?}"),
        };
        assert!(!a_text.contains(&b_tweaks[0]), "A's store never holds B's tweak");
        let guesses = [z, z.upstream(&y_a).expect("scalar"), z.add(&y_a).expect("scalar")];
        for guess in guesses {
            assert_ne!(guess.point().address(), lock.point, "A and C open Alice's lock without B");
        }
        let with_b = z.upstream(&y_b).and_then(|t| t.upstream(&y_a)).expect("scalar");
        assert_eq!(with_b.point().address(), lock.point, "B's tweak is what the colluders lack");

        // The honest end: Bob claims, the scalar steps back through B; B keeps its fee of 3.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        sync_until(&mut bob, deadline, "Bob not paid at C", |w| w.spendable().ok() == Some(Amount(10))).await;
        sync_until(&mut alice, deadline, "Alice's lock not settled", |w| debit_of(w) == Amount(13)).await;
        let a_link = link_until(&chain, &http_a, d_b.hub, "A's lock at B settled", |l| {
            l["channel"]["cumulativeDebit"] == "13" && l["unfinishedForwards"] == 0
        })
        .await;
        assert_eq!(balance_of(&a_link), 287, "A paid B 13 for the 10 B paid C: {a_link}");
        miner.abort();
        node_c.stop().await;
        node_b.stop().await;
        node_a.stop().await;
    });
}
