//! A payment split over several routes (spec §5.23c). First the payee's hub alone: parts sent
//! to it with its own step are checked by name, and nothing is locked to the payee until the
//! parts cover her invoice; her one reveal opens every part with her scalar less its tweak.
//! Then four hub nodes on one anvil: Alice at A pays Bob at C more than either route (A→B→C,
//! A→D→C) carries, so A splits it; Bob is paid the whole and the scalar comes back over both.

use crate::harness::*;
use crate::links::{balance_of, deploy_hub_of, link_until};
use crate::locks::lock_debit;
use crate::routing::{hub_address, hub_config, link, sync_until};
use infhub_chain::anvil;
use infhub_core::messages::PaymentKind;
use infhub_core::point_lock::{Lock, Point, Scalar};
use infhub_core::Amount;
use serde_json::{json, Value};

/// Three accounts of one hub: payers 1 and 3 with 500 each, payee 2; 1,000 in the reserve.
async fn two_payers_and_a_payee(chain: &Chain, http: &Http) -> (Wallet, Wallet, Wallet) {
    let (mut a, mut b, mut c) = (Wallet::new(chain, 1).await, Wallet::new(chain, 2).await, Wallet::new(chain, 3).await);
    for w in [&mut a, &mut b, &mut c] {
        register(chain, http, w).await;
    }
    a.approve_and_deposit(chain, 500).await;
    c.approve_and_deposit(chain, 500).await;
    let (s, v) = http.post("/v1/operator/reserve/top-ups", Some(OPERATOR), &json!({"amount": "1000"})).await;
    assert_eq!(s, 200, "{v}");
    eventually(20, "deposits and reserve confirmed", || async {
        chain.mine(1).await;
        let (_, liq) = http.get("/v1/operator/liquidity", Some(OPERATOR)).await;
        let (_, va) = a.account(http).await;
        let (_, vc) = c.account(http).await;
        let funded = va["balance"] == "500" && vc["balance"] == "500";
        (funded && amount(&liq["liquidity"]["reserve"]) >= 1_000).then_some(())
    })
    .await;
    (a, b, c)
}

fn tweak(n: u64) -> Scalar {
    Scalar::from_bytes(alloy::primitives::keccak256(n.to_be_bytes())).expect("below n")
}

/// One hub collecting Bob's invoice of 400 (payee `b`) from payers `a` and `c` (500 each), with
/// the hub's address and confirmed block, and the configuration adjusted by `adjust`.
struct OneHubSplit {
    chain: Chain,
    node: InProcessNode,
    http: Http,
    invoice: infhub_core::invoice::SignedInvoice,
    z: Scalar,
    step_expiry: u64,
    own_hub: Value,
    _dir: tempfile::TempDir,
}

async fn one_hub_split(
    adjust: impl FnOnce(&mut infhub_node::config::Config),
    description: &str,
) -> (OneHubSplit, (Wallet, Wallet, Wallet)) {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = chain.config(dir.path().to_path_buf());
    adjust(&mut config);
    let node = InProcessNode::start(config).await;
    let http = Http::new(&node.url);
    let wallets = two_payers_and_a_payee(&chain, &http).await;
    let (_, info) = http.get("/v1/info", None).await;
    let head = info["confirmedBlock"].as_u64().expect("block");
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_secs() + 600;
    let host = node.url.trim_start_matches("http://");
    let invoice = infhub_core::invoice::issue(
        &wallets.1.key,
        host,
        &chain.domain(),
        Amount(400),
        expires,
        description,
        Default::default(),
    )
    .expect("invoice");
    let z = infhub_core::invoice::invoice_scalar(&wallets.1.key, invoice.message.invoice_id);
    let own_hub = info["hub"].clone();
    (OneHubSplit { chain, node, http, invoice, z, step_expiry: head + 200, own_hub, _dir: dir }, wallets)
}

impl OneHubSplit {
    /// A part from `w`: its lock of `lock_amount` expiring at `expiry` on the point `named`, sent
    /// with `on` as its point in full and the hub's own step (tweak `y`, `step_amount`). The
    /// debit and the request.
    #[expect(clippy::too_many_arguments, reason = "every field a test may get wrong on purpose")]
    fn part(
        &self,
        w: &Wallet,
        on: Point,
        named: Point,
        lock_amount: u128,
        expiry: u64,
        y: &Scalar,
        step_amount: u128,
    ) -> (infhub_core::Debit, Lock, Value) {
        let (domain, id) = (self.chain.domain(), self.invoice.message.invoice_id);
        let lock = Lock { lock_id: id, amount: Amount(lock_amount), expiry_block: expiry, point: named.address() };
        let debit = lock_debit(w, &domain, self.chain.anvil_hub(), PaymentKind::LockAdd, &lock, &[lock], 0);
        let step = json!({"nextHub": self.own_hub, "tweak": y, "amount": step_amount.to_string(),
                          "expiryBlock": self.step_expiry});
        let body = json!({"debit": w.sign_debit(&domain, debit), "lock": lock, "invoice": self.invoice,
                          "lockPoint": alloy::primitives::FixedBytes(on.compressed()),
                          "route": [sealed_step(&step, anvil::dev_key(0), id)]});
        (debit, lock, body)
    }
}

#[test]
fn the_payees_hub_locks_a_split_payment_to_her_only_once_its_parts_cover_it() {
    rt().block_on(async {
        // Bob's invoice of 400; a part of 300 from payer 1 and one of 100 from payer 3, each on
        // the invoice's point less its own tweak.
        let (split, (mut a, b, mut c)) = one_hub_split(|_| {}, "split").await;
        let OneHubSplit { chain, http, invoice, z, step_expiry, .. } = &split;
        let (domain, hub) = (chain.domain(), chain.anvil_hub());
        let id = invoice.message.invoice_id;
        let (ya, yc) = (tweak(1), tweak(2));
        let (step_expiry, z) = (*step_expiry, *z);
        let part = |w: &Wallet, on: Point, named: Point, lock_amount: u128, expiry: u64, y: &Scalar, step_amount: u128| {
            let (debit, _, body) = split.part(w, on, named, lock_amount, expiry, y, step_amount);
            (debit, body)
        };
        let pa = z.point().untweaked(&ya).expect("point");
        let wrong = z.point().untweaked(&tweak(3)).expect("point");
        let margin = infhub_core::channel::LOCK_REVEAL_MARGIN_BLOCKS;
        let ok_expiry = step_expiry + margin;
        let attempts = [
            ("point_chain_broken", part(&a, wrong, wrong, 300, ok_expiry, &ya, 300).1),
            ("fee_insufficient", part(&a, pa, pa, 299, ok_expiry, &ya, 300).1),
            ("expiry_too_soon", part(&a, pa, pa, 300, ok_expiry - 1, &ya, 300).1),
            ("lock_mismatch", part(&a, pa, wrong, 300, ok_expiry, &ya, 300).1),
        ];
        for (expected, body) in attempts {
            let (s, v) = http.post("/v1/forwarded-transfers", None, &body).await;
            assert_eq!(code(&v), expected, "HTTP {s}: {v}");
        }

        // The first part is held; nothing is locked to Bob yet.
        let (debit, body) = part(&a, pa, pa, 300, ok_expiry, &ya, 300);
        let (s, v) = http.post("/v1/forwarded-transfers", None, &body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!((&v["collected"]["locked"], &v["collected"]["collected"]), (&json!(false), &json!("300")), "{v}");
        a.accepted(&debit);
        let (_, acct_b) = b.account(http).await;
        assert_eq!(acct_b["locks"]["incoming"], json!([]), "not before the parts cover the invoice: {acct_b}");

        // The second covers it: one lock of 400 to Bob on the invoice's point.
        let pc = z.point().untweaked(&yc).expect("point");
        let (debit, body) = part(&c, pc, pc, 100, ok_expiry + 5, &yc, 100);
        let (s, v) = http.post("/v1/forwarded-transfers", None, &body).await;
        assert_eq!((s, &v["collected"]["locked"]), (200, &json!(true)), "{v}");
        c.accepted(&debit);
        let (_, acct_b) = b.account(http).await;
        let incoming = &acct_b["locks"]["incoming"];
        assert_eq!(incoming.as_array().map(Vec::len), Some(1), "{acct_b}");
        assert_eq!((&incoming[0]["amount"], &incoming[0]["expiryBlock"]), (&json!("400"), &json!(step_expiry)));
        assert_eq!(incoming[0]["point"], json!(z.point().address()), "{acct_b}");

        // Bob reveals z; each payer reads her part's scalar (z less her tweak) and settles.
        let reveal = json!({"user": b.address(), "lockId": id, "scalar": z});
        let (s, v) = http.post("/v1/lock-reveals", None, &reveal).await;
        assert_eq!((s, &v["credit"]["message"]["cumulativeCredit"]), (200, &json!("400")), "{v}");
        for (w, y, amount) in [(&mut a, ya, 300u128), (&mut c, yc, 100)] {
            let (_, acct) = w.account(http).await;
            let learned: Scalar = serde_json::from_value(acct["locks"]["outgoing"][0]["scalar"].clone()).expect("scalar");
            assert_eq!(learned, z.upstream(&y).expect("scalar"), "{acct}");
            let lock = Lock {
                lock_id: id,
                amount: Amount(amount),
                expiry_block: 0,
                point: learned.point().address(),
            };
            let settle = lock_debit(w, &domain, hub, PaymentKind::LockSettle, &lock, &[], amount);
            let body = json!({"debit": w.sign_debit(&domain, settle), "change": {"settle": {"lockId": id, "scalar": learned}}});
            let (s, v) = http.post("/v1/lock-debits", None, &body).await;
            assert_eq!(s, 200, "{v}");
            w.accepted(&settle);
        }
        let mut balances: Vec<Value> = Vec::new();
        for w in [&a, &b, &c] {
            balances.push(w.account(http).await.1["balance"].clone());
        }
        assert_eq!(balances, vec![json!("200"), json!("400"), json!("400")]);
        split.node.stop().await;
    });
}

/// The payee's hub abandons a split payment its parts do not cover in time (spec §5.23c step
/// 8): a part of 300 of Bob's 400 is held; past the collection timeout (2 s here) the payer's
/// lock shows `cancellable`, her cancel before the expiry is agreed to, a later part is refused
/// `split_abandoned`, and nothing was ever locked to Bob. Before the timeout the same cancel is
/// refused: the hub agrees only to what it abandoned.
#[test]
fn the_payees_hub_abandons_a_split_payment_its_parts_do_not_cover_in_time() {
    rt().block_on(async {
        let adjust = |c: &mut infhub_node::config::Config| {
            c.node.split_collection_timeout_ms = 2_000;
            c.node.link_watch_interval_ms = 200;
        };
        let (split, (mut a, b, c)) = one_hub_split(adjust, "late").await;
        let OneHubSplit { chain, http, invoice, z, step_expiry, .. } = &split;
        let (domain, hub, id) = (chain.domain(), chain.anvil_hub(), invoice.message.invoice_id);
        let expiry = step_expiry + infhub_core::channel::LOCK_REVEAL_MARGIN_BLOCKS;
        let part = |w: &Wallet, y: &Scalar, amount: u128| {
            let on = z.point().untweaked(y).expect("point");
            split.part(w, on, on, amount, expiry, y, amount)
        };
        let cancel_of = |w: &Wallet, lock: &Lock| {
            let cancel = lock_debit(w, &domain, hub, PaymentKind::LockDrop, lock, &[], 0);
            json!({"debit": w.sign_debit(&domain, cancel), "change": {"cancel": {"lockId": id}}})
        };

        let (debit, lock_a, body) = part(&a, &tweak(1), 300);
        let (s, v) = http.post("/v1/forwarded-transfers", None, &body).await;
        assert_eq!((s, &v["collected"]["locked"]), (200, &json!(false)), "{v}");
        a.accepted(&debit);
        let (s, v) = http.post("/v1/lock-debits", None, &cancel_of(&a, &lock_a)).await;
        assert_eq!((s, code(&v)), (422, "lock_not_expired"), "not abandoned yet: {v}");

        // Past the timeout a round abandons it: her lock shows cancellable.
        eventually(30, "the collection abandoned", || async {
            let (_, v) = a.account(http).await;
            (v["locks"]["outgoing"][0]["cancellable"] == json!(true)).then_some(())
        })
        .await;
        let (_, _, late) = part(&c, &tweak(2), 100);
        let (_, v) = http.post("/v1/forwarded-transfers", None, &late).await;
        assert_eq!(code(&v), "split_abandoned", "{v}");
        let (s, v) = http.post("/v1/lock-debits", None, &cancel_of(&a, &lock_a)).await;
        assert_eq!(s, 200, "the abandoned part's cancel is agreed to: {v}");
        let (_, acct_a) = a.account(http).await;
        assert_eq!((&acct_a["balance"], &acct_a["locks"]["outgoing"]), (&json!("500"), &json!([])), "{acct_a}");
        let (_, acct_b) = b.account(http).await;
        assert_eq!(acct_b["locks"]["incoming"], json!([]), "nothing ever locked to Bob: {acct_b}");
        split.node.stop().await;
    });
}

/// Four hub nodes on one anvil: A's links at B and D, B's and D's links at C, 300 each; B
/// charges 2 plus 1%, D nothing (each configuration of B, C and D adjusted by `adjust`, given
/// the hub's letter); blocks every 250 ms.
struct FourHubs {
    chain: Chain,
    d_b: anvil::Deployment,
    d_c: anvil::Deployment,
    d_d: anvil::Deployment,
    tmp: tempfile::TempDir,
    nodes: [InProcessNode; 4],
    http_a: Http,
    http_b: Http,
    http_d: Http,
    miner: tokio::task::JoinHandle<()>,
}

const HUB_B: usize = 4;
const HUB_C: usize = 3;
const HUB_D: usize = 5;

async fn four_hubs(adjust: impl Fn(char, &mut infhub_node::config::Config)) -> FourHubs {
    let chain = Chain::start().await;
    let (d_b, d_c, d_d) =
        (deploy_hub_of(&chain, HUB_B).await, deploy_hub_of(&chain, HUB_C).await, deploy_hub_of(&chain, HUB_D).await);
    let tmp = tempfile::tempdir().expect("tmp");
    let config = |d: &anvil::Deployment, key: usize, name: &str| hub_config(&chain, d, key, &tmp.path().join(name));
    let mut config_a = chain.config(tmp.path().join("a"));
    config_a.node.link_watch_interval_ms = 200;
    let mut config_b = config(&d_b, HUB_B, "b");
    config_b.node.link_base_fee = Amount(2);
    config_b.node.link_fee_ppm = 10_000;
    adjust('b', &mut config_b);
    let mut config_c = config(&d_c, HUB_C, "c");
    adjust('c', &mut config_c);
    let mut config_d = config(&d_d, HUB_D, "d");
    adjust('d', &mut config_d);
    let node_a = InProcessNode::start(config_a).await;
    let node_b = InProcessNode::start(config_b).await;
    let node_c = InProcessNode::start(config_c).await;
    let node_d = InProcessNode::start(config_d).await;
    let (http_a, http_b, http_d) = (Http::new(&node_a.url), Http::new(&node_b.url), Http::new(&node_d.url));
    link(&chain, &http_a, &node_b, d_b.hub).await;
    link(&chain, &http_a, &node_d, d_d.hub).await;
    link(&chain, &http_b, &node_c, d_c.hub).await;
    link(&chain, &http_d, &node_c, d_c.hub).await;
    let miner = mine_continuously(&chain, 250);
    FourHubs { chain, d_b, d_c, d_d, tmp, nodes: [node_a, node_b, node_c, node_d], http_a, http_b, http_d, miner }
}

/// Stops the miner and the four nodes, the last started first.
async fn stop_all(miner: tokio::task::JoinHandle<()>, nodes: [InProcessNode; 4]) {
    miner.abort();
    for node in nodes.into_iter().rev() {
        node.stop().await;
    }
}

/// Waits until A knows both routes to C.
async fn both_routes_known(http_a: &Http) {
    let c_hub = hub_address(HUB_C);
    eventually(60, "A knows both routes to C", || async {
        let (_, v) = http_a.get(&format!("/v1/routes?toHub={c_hub}&amount=50&k=4"), None).await;
        (v["routes"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
}

/// Alice at A pays Bob at C 400 when A's links at B and D and their links at C hold 300 each:
/// no route carries it, so A splits it over A→D→C (300, D charges nothing) and A→B→C (100 plus
/// B's fee of 3), one lock of 403 from Alice. C locks 400 to Bob once both parts are in; Bob's
/// claim opens both parts, B and D step the scalars upstream, and Alice settles with a scalar
/// that, plus the quote's tweak sum, is the invoice's proof of payment.
#[test]
fn a_payment_no_route_carries_is_split_over_two_routes_and_settles_on_both() {
    rt().block_on(async {
        let FourHubs { chain, d_b, d_c, d_d, tmp, nodes, http_a, http_b, http_d, miner } = four_hubs(|_, _| {}).await;
        let node_a = &nodes[0];
        let node_c = &nodes[2];
        let (mut alice, mut bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(400), "more than one route carries", 600).expect("invoice");
        let z = Point::from_compressed(&invoice.message.payment_point).expect("point");

        // A quotes a split once it knows both B→C and D→C.
        both_routes_known(&http_a).await;
        let answer = alice.pay_invoice(&invoice).await.expect("paid");
        let parts = answer["forwarded"]["parts"].as_array().cloned().unwrap_or_default();
        assert_eq!(parts.len(), 2, "{answer}");
        assert!(parts.iter().all(|p| p["nextHubAnswer"].is_object()), "{answer}");
        assert_eq!(answer["quote"]["fees"], "3", "B's fee on its part of 100: {answer}");
        let lock = alice.channel().expect("ch").debit_locks.get(&invoice.message.invoice_id).copied().expect("lock");
        assert_eq!(lock.amount, Amount(403), "one lock for both parts and B's fee");
        // Both parts start from her one point: it plus the tweak sum is the invoice's.
        let tweak_sum: Scalar = serde_json::from_value(answer["quote"]["tweakSum"].clone()).expect("tweakSum");
        assert_eq!(lock.point, z.untweaked(&tweak_sum).expect("point").address(), "{answer}");
        assert_ne!(lock.point, z.address(), "not the invoice's own point");

        // Bob is paid the whole; both parts settle back to Alice.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        sync_until(&mut bob, deadline, "Bob not paid at C", |w| w.spendable().ok() == Some(Amount(400))).await;
        sync_until(&mut alice, deadline, "Alice's lock not settled", |w| {
            w.channel().is_ok_and(|c| c.cumulative_debit() == Amount(403))
        })
        .await;
        let proof = alice.channel().expect("ch");
        assert!(proof.debit_locks.get(&invoice.message.invoice_id).is_none(), "settled");
        for (http, peer, debit) in
            [(&http_a, d_b.hub, 103u128), (&http_a, d_d.hub, 300), (&http_b, d_c.hub, 100), (&http_d, d_c.hub, 300)]
        {
            let l = link_until(&chain, http, peer, "a part's lock settled", |l| {
                l["channel"]["cumulativeDebit"] == json!(debit.to_string()) && l["unfinishedForwards"] == 0
            })
            .await;
            assert_eq!(balance_of(&l), 300 - debit, "{l}");
        }
        stop_all(miner, nodes).await;
    });
}

/// A route whose hub refuses the forward is learned and the payment tried again over another
/// (spec §5.18): D, the cheaper hub, forwards nothing (`node.max_forwards_per_link = 0`), so
/// Alice's first attempt through D is refused `link_busy` naming D's link to C; her lock is
/// cancelled, A counts the link against routes through it in her quotes (only hers: a payer
/// can fail her own payments at will, and must not steer others'), and her wallet's second
/// attempt goes through B and pays Bob, with B's fee.
#[test]
fn a_refused_route_is_learned_and_the_payment_retried_over_another() {
    rt().block_on(async {
        let FourHubs { chain, d_b, d_d, tmp, nodes, http_a, miner, .. } = four_hubs(|hub, c| {
            if hub == 'd' {
                c.node.max_forwards_per_link = 0
            }
        })
        .await;
        let (node_a, node_c) = (&nodes[0], &nodes[2]);
        let (mut alice, mut bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(10), "D is closed for forwarding", 600).expect("invoice");
        both_routes_known(&http_a).await;
        let c_hub = hub_address(HUB_C);
        let (_, before) = http_a.get(&format!("/v1/routes?toHub={c_hub}&amount=10&k=4"), None).await;
        assert_eq!(before["routes"][0]["hops"][0]["toHub"], json!(hub_address(HUB_D)), "D is cheaper: {before}");

        let answer = alice.pay_invoice(&invoice).await.expect("paid on the second attempt");
        assert_eq!(answer["attempts"], 2, "{answer}");
        assert_eq!(answer["quote"]["hops"][0]["toHub"], json!(hub_address(HUB_B)), "through B: {answer}");
        assert_eq!(answer["quote"]["fees"], "3", "B's fee: {answer}");
        // Her failure counts in her own quotes only: another payer's still go through D first.
        let routes_for =
            |payer: alloy::primitives::Address| format!("/v1/routes?toHub={c_hub}&amount=10&k=4&payer={payer}");
        let (_, after) = http_a.get(&routes_for(alice.user()), None).await;
        let first_hop = |v: &Value| v["routes"][0]["hops"][0]["toHub"].clone();
        assert_eq!(first_hop(&after), json!(hub_address(HUB_B)), "D's link counts against it: {after}");
        let (_, others) = http_a.get(&routes_for(bob.user()), None).await;
        assert_eq!(first_hop(&others), json!(hub_address(HUB_D)), "not in another payer's: {others}");

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        sync_until(&mut bob, deadline, "Bob not paid at C", |w| w.spendable().ok() == Some(Amount(10))).await;
        sync_until(&mut alice, deadline, "Alice's lock not settled", |w| {
            w.channel().is_ok_and(|c| c.cumulative_debit() == Amount(13))
        })
        .await;
        let d_link = crate::links::link_of(&http_a, d_d.hub).await;
        assert_eq!(balance_of(&d_link), 300, "nothing went through D: {d_link}");
        let b_link = link_until(&chain, &http_a, d_b.hub, "A's lock at B settled", |l| {
            l["channel"]["cumulativeDebit"] == "13" && l["unfinishedForwards"] == 0
        })
        .await;
        assert_eq!(balance_of(&b_link), 287, "{b_link}");
        stop_all(miner, nodes).await;
    });
}

/// A split payment whose parts cannot all arrive is cancelled early (spec §5.23c, §5.23a): D
/// forwards nothing, so of Alice's 400 to Bob only B's part of 100 reaches C; C abandons the
/// collection once its timeout passes (never locking anything to Bob), and the cancels run
/// back: B's link cancels its lock at C, B's forward fails, A's link cancels its lock at B,
/// A's forwards have all failed, and Alice's next sync cancels her lock, long before its
/// expiry. Everyone is whole and no channel closed.
#[test]
fn a_split_payment_whose_parts_cannot_all_arrive_is_cancelled_before_its_expiry() {
    rt().block_on(async {
        let FourHubs { chain, d_b, d_c, d_d, tmp, nodes, http_a, http_b, miner, .. } = four_hubs(|hub, c| match hub {
            'd' => c.node.max_forwards_per_link = 0,
            'c' => c.node.split_collection_timeout_ms = 3_000,
            _ => {}
        })
        .await;
        let (node_a, node_c) = (&nodes[0], &nodes[2]);
        let (mut alice, mut bob) = crate::forwarding::alice_and_bob(&chain, tmp.path(), &node_a.url, &node_c.url).await;
        let invoice = bob.issue_invoice(Amount(400), "one part cannot arrive", 600).expect("invoice");
        both_routes_known(&http_a).await;
        let answer = alice.pay_invoice(&invoice).await.expect("one part forwarded");
        let parts = answer["forwarded"]["parts"].as_array().cloned().unwrap_or_default();
        assert_eq!(parts.len(), 2, "{answer}");
        assert_eq!(parts.iter().filter(|p| p["error"]["code"] == "link_busy").count(), 1, "D's part refused: {answer}");
        let lock = alice.channel().expect("ch").debit_locks.get(&invoice.message.invoice_id).copied().expect("lock");
        assert_eq!(alice.spendable().expect("balance"), Amount(500 - lock.amount.0));

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        sync_until(&mut alice, deadline, "Alice's lock not cancelled", |w| {
            w.channel().is_ok_and(|c| c.debit_locks.get(&invoice.message.invoice_id).is_none())
        })
        .await;
        assert!(chain.head().await < lock.expiry_block, "cancelled before its expiry");
        assert_eq!(alice.spendable().expect("balance"), Amount(500), "Alice whole");
        assert_eq!(alice.channel().expect("ch").cumulative_debit(), Amount(0), "nothing paid");
        for (http, peer) in [(&http_a, d_b.hub), (&http_a, d_d.hub), (&http_b, d_c.hub)] {
            let l = link_until(&chain, http, peer, "the link whole and its forwards finished", |l| {
                balance_of(l) == 300 && l["unfinishedForwards"] == 0
            })
            .await;
            assert_eq!(l["state"], "open", "no channel closed: {l}");
        }
        let _ = bob.sync().await;
        assert_eq!(bob.spendable().expect("balance"), Amount(0), "nothing locked to Bob");
        stop_all(miner, nodes).await;
    });
}
