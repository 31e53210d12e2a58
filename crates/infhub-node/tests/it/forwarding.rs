//! A payment across hubs (spec §5.23a) with two hub nodes on one anvil and real wallets: hub A
//! holds a link at hub B; Alice (a user of A) pays the invoice of Bob (a user of B). A commits
//! Alice's lock, forwards the invoice over its link with an earlier expiry, Bob claims at B,
//! A learns the scalar from its link and Alice settles her lock with it: Bob is paid, Alice
//! charged, A's link at B pays it, and nobody else moves. A payment larger than the link holds
//! has no route and locks nothing.

use crate::harness::*;
use crate::links::{balance_of, deploy_hub_b, link_of, link_until, HUB_B_KEY_INDEX};
use alloy::primitives::U256;
use alloy::providers::Provider;
use infhub_chain::anvil;
use infhub_core::{Amount, PrivateKey};
use infhub_wallet::store::WalletDir;
use infhub_wallet::Wallet as UserWallet;
use serde_json::json;

/// A wallet of dev key `index` registered at the hub at `hub_url`.
pub(crate) async fn user_at(chain: &Chain, dir: &std::path::Path, index: usize, hub_url: &str) -> UserWallet {
    let key = PrivateKey::from_bytes(anvil::dev_key(index).0).expect("key");
    let dir = WalletDir::new(dir.join(format!("wallet-{index}")));
    UserWallet::register(dir, key, anvil::dev_key(index), hub_url, &chain.anvil.url, &mut |_| {})
        .await
        .expect("registered")
}

/// Alice registered at the hub at `url_a` with 500 deposited, and Bob registered at the hub at
/// `url_c`: the payer and payee of the multi-hub tests.
pub(crate) async fn alice_and_bob(
    chain: &Chain,
    dir: &std::path::Path,
    url_a: &str,
    url_c: &str,
) -> (UserWallet, UserWallet) {
    let mut alice = user_at(chain, dir, 1, url_a).await;
    alice.deposit(infhub_core::Amount(500), &mut |_| {}).await.expect("deposit");
    (alice, user_at(chain, dir, 2, url_c).await)
}

/// Two hubs on one anvil, blocks coming every 250 ms, and hub A's link at hub B funded with 300.
pub(crate) struct TwoHubs {
    pub chain: Chain,
    pub d_b: anvil::Deployment,
    pub node_a: InProcessNode,
    pub node_b: InProcessNode,
    pub http_a: Http,
    pub http_b: Http,
    pub peer: alloy::primitives::Address,
    pub tmp: tempfile::TempDir,
    config_a: infhub_node::config::Config,
    miner: tokio::task::JoinHandle<()>,
}

impl TwoHubs {
    pub(crate) async fn start() -> TwoHubs {
        let chain = Chain::start().await;
        let d_b = deploy_hub_b(&chain).await;
        let tmp = tempfile::tempdir().expect("tmp");
        let mut config_a = chain.config(tmp.path().join("a"));
        config_a.node.link_watch_interval_ms = 200;
        let node_a = InProcessNode::start(config_a.clone()).await;
        let mut config_b = infhub_node::dev::config(&chain.anvil, &d_b, "127.0.0.1:0".into(), tmp.path().join("b"));
        config_b.chain.hub_key.0 = anvil::dev_key(HUB_B_KEY_INDEX);
        config_b.chain.poll_interval_ms = 50;
        let node_b = InProcessNode::start(config_b).await;
        let (http_a, http_b) = (Http::new(&node_a.url), Http::new(&node_b.url));
        // Blocks keep coming, as on a live chain: wallets wait for confirmations.
        let miner = mine_continuously(&chain, 250);

        // A opens and funds its link at B.
        let peer = d_b.hub;
        let (s, v) = http_a.post("/v1/operator/links", Some(OPERATOR), &json!({"hubUrl": node_b.url})).await;
        assert_eq!(s, 200, "{v}");
        let (_, list) = http_a.get("/v1/operator/links", Some(OPERATOR)).await;
        let link_address: alloy::primitives::Address =
            serde_json::from_value(list["linkAddress"].clone()).expect("linkAddress");
        let mut minter = anvil::sender(&chain.provider, anvil::dev_key(0)).await.expect("sender");
        anvil::mint(&mut minter, chain.d.token, link_address, U256::from(1_000u64)).await.expect("mint");
        let eth = U256::from(10u64).pow(U256::from(18u64));
        let _: () = chain.provider.raw_request("anvil_setBalance".into(), (link_address, eth)).await.expect("gas");
        link_until(&chain, &http_a, peer, "A's link open at B", |l| l["state"] == "open").await;
        let (s, v) = http_a
            .post(&format!("/v1/operator/links/{peer}/deposits"), Some(OPERATOR), &json!({"amount": "300"}))
            .await;
        assert_eq!(s, 200, "{v}");
        link_until(&chain, &http_a, peer, "the link funded", |l| balance_of(l) == 300 && l["job"].is_null()).await;

        TwoHubs { chain, d_b, node_a, node_b, http_a, http_b, peer, tmp, config_a, miner }
    }

    /// Stops hub A, runs `meanwhile`, and starts A again on the same address.
    pub(crate) async fn restart_a(mut self, meanwhile: impl std::future::Future<Output = ()>) -> TwoHubs {
        let addr = self.node_a.url.trim_start_matches("http://").to_string();
        self.node_a.stop().await;
        meanwhile.await;
        let mut config = self.config_a.clone();
        config.node.listen = addr;
        self.node_a = InProcessNode::start(config).await;
        self
    }

    pub(crate) async fn stop(self) {
        self.miner.abort();
        self.node_b.stop().await;
        self.node_a.stop().await;
    }
}

#[test]
fn a_user_of_one_hub_pays_an_invoice_of_a_user_of_another_over_the_link_between_them() {
    rt().block_on(async {
        let hubs = TwoHubs::start().await;
        let TwoHubs { chain, http_a, http_b, tmp, node_a, node_b, .. } = &hubs;
        let peer = hubs.peer;
        // Alice at A with 500, Bob at B with nothing.
        let mut alice = user_at(chain, tmp.path(), 1, &node_a.url).await;
        alice.deposit(Amount(500), &mut |_| {}).await.expect("deposit");
        let mut bob = user_at(chain, tmp.path(), 2, &node_b.url).await;

        // A payee B does not know: B refuses, Alice's wallet cancels her lock at once.
        let stranger = PrivateKey::from_bytes(anvil::dev_key(3).0).expect("key");
        let domain_b = infhub_core::Domain { chain_id: chain.d.chain_id, verifying_contract: hubs.d_b.hub };
        let host_b = node_b.url.trim_start_matches("http://");
        let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_secs() + 600;
        let nowhere =
            infhub_core::invoice::issue(&stranger, host_b, &domain_b, Amount(20), expires, "", Default::default())
                .expect("invoice");
        let err = alice.pay_invoice(&nowhere).await.expect_err("B does not know the payee");
        assert_eq!(err.code(), "unknown_account", "{err}");
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert_eq!(alice.spendable().expect("balance"), Amount(500), "her lock is back at once");

        // More than the link holds: no route, before anything is locked.
        let big = bob.issue_invoice(Amount(301), "too much for the link", 600).expect("invoice");
        let err = alice.pay_invoice(&big).await.expect_err("over the link's capacity");
        assert_eq!(err.code(), "no_route", "A's quote knows its link's capacity: {err}");
        assert_eq!(alice.spendable().expect("balance"), Amount(500), "nothing locked");

        // Bob's invoice of 120, paid by Alice through A and its link at B.
        let invoice = bob.issue_invoice(Amount(120), "a book", 600).expect("invoice");
        let answer = alice.pay_invoice(&invoice).await.expect("paid");
        assert!(answer["forwarded"]["nextHubAnswer"]["receipt"].is_object(), "B accepted A's lock: {answer}");
        assert_eq!(alice.spendable().expect("balance"), Amount(380), "Alice's lock is held");
        let a_lock = alice.channel().expect("ch").debit_locks.get(&invoice.message.invoice_id).copied().expect("lock");
        let link = link_of(http_a, peer).await;
        assert_eq!(balance_of(&link), 180, "A's lock at B is held out of its link: {link}");

        // Bob claims at B; A learns the scalar from its link; Alice settles.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while bob.spendable().expect("balance") != Amount(120) {
            assert!(std::time::Instant::now() < deadline, "Bob not paid at B");
            let _ = bob.sync().await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        loop {
            let ch = alice.channel().expect("channel");
            if ch.debit_locks.is_empty() && ch.cumulative_debit() == Amount(120) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "Alice's lock not settled with the scalar A learned");
            let _ = alice.sync().await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(alice.spendable().expect("balance"), Amount(380));
        let link = link_until(chain, http_a, peer, "A's lock at B settled", |l| {
            l["channel"]["cumulativeDebit"] == "120" && balance_of(l) == 180
        })
        .await;
        assert!(link["lastError"].is_null(), "{link}");
        assert!(a_lock.expiry_block > 0, "Alice's lock had an expiry");

        // The hubs' own views agree with the wallets.
        let (_, bob_at_b) = http_b
            .get(&format!("/v1/operator/accounts?prefix={}", &format!("{:x}", bob.user())[..8]), Some(OPERATOR))
            .await;
        assert!(bob_at_b.to_string().contains("\"120\""), "B shows Bob's 120: {bob_at_b}");
        hubs.stop().await;
    });
}

/// The payer's request to forward, signed by `w` (its lock debit on top of its totals).
/// Bob's side of an invoice at hub B: his key, B's domain and host, and an expiry ten minutes
/// on.
struct BobAtB {
    key: PrivateKey,
    domain: infhub_core::Domain,
    host: String,
    expires: u64,
}

/// A payer registered at hub A with 500 deposited and confirmed, and Bob's side at hub B.
async fn payer_and_bob(hubs: &TwoHubs) -> (Wallet, BobAtB) {
    let mut payer = Wallet::new(&hubs.chain, 1).await;
    register(&hubs.chain, &hubs.http_a, &mut payer).await;
    payer.approve_and_deposit(&hubs.chain, 500).await;
    eventually(30, "the deposit confirmed", || async {
        let (_, v) = payer.account(&hubs.http_a).await;
        (v["balance"] == "500").then_some(())
    })
    .await;
    let bob = BobAtB {
        key: PrivateKey::from_bytes(anvil::dev_key(2).0).expect("key"),
        domain: infhub_core::Domain { chain_id: hubs.chain.d.chain_id, verifying_contract: hubs.d_b.hub },
        host: hubs.node_b.url.trim_start_matches("http://").to_string(),
        expires: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_secs() + 600,
    };
    (payer, bob)
}

fn forward_request(
    hubs: &TwoHubs,
    w: &Wallet,
    lock: &infhub_core::point_lock::Lock,
    invoice: &infhub_core::invoice::SignedInvoice,
) -> serde_json::Value {
    use infhub_core::messages::PaymentKind;
    let domain = hubs.chain.domain();
    let debit = crate::locks::lock_debit(w, &domain, hubs.chain.anvil_hub(), PaymentKind::LockAdd, lock, &[*lock], 0);
    json!({"debit": w.sign_debit(&domain, debit), "lock": lock, "invoice": invoice})
}

/// A payer, a forger and a careless payer each try to make hub A forward what it must not: a
/// lock on another point than the invoice's, one that pays less than the invoice, one that
/// leaves the next hop no time, an invoice the payee did not sign, one for a hub A has no link
/// to, and a debit the payer did not sign. Each is refused by name and nothing is locked or
/// forwarded; then the honest request is forwarded once, and its retry is answered from the
/// first without a second forward.
#[test]
#[expect(clippy::too_many_lines, reason = "one story: the refusals, then the honest forwards against the same state")]
fn a_hub_refuses_by_name_every_forward_it_must_not_make_and_forwards_a_retry_once() {
    rt().block_on(async {
        let hubs = TwoHubs::start().await;
        let (http_a, peer) = (&hubs.http_a, hubs.peer);
        let (mut payer, bob) = payer_and_bob(&hubs).await;
        let (domain_b, host_b, expires) = (bob.domain, bob.host.clone(), bob.expires);
        let bob = bob.key;
        let invoice = |key: &PrivateKey, host: &str, domain: &infhub_core::Domain, id: u8| {
            infhub_core::invoice::issue(
                key,
                host,
                domain,
                Amount(50),
                expires,
                "tea",
                alloy::primitives::B256::repeat_byte(id),
            )
            .expect("invoice")
        };
        let good = invoice(&bob, &host_b, &domain_b, 1);
        let scalar = infhub_core::invoice::invoice_scalar(&bob, good.message.invoice_id);
        let head = hubs.chain.head().await;
        let lock = infhub_core::point_lock::Lock {
            lock_id: good.message.invoice_id,
            amount: Amount(50),
            expiry_block: head + 400,
            point: scalar.point().address(),
        };
        let stranger_point = infhub_core::point_lock::Scalar::from_bytes(alloy::primitives::B256::repeat_byte(7))
            .expect("scalar")
            .point()
            .address();
        let mallory = PrivateKey::from_bytes(anvil::dev_key(3).0).expect("key");
        let mut forged_invoice = invoice(&mallory, &host_b, &domain_b, 1);
        forged_invoice.message.payee = good.message.payee.clone();
        let attempts = [
            (
                "lock_mismatch",
                forward_request(&hubs, &payer, &infhub_core::point_lock::Lock { point: stranger_point, ..lock }, &good),
            ),
            (
                "fee_insufficient",
                forward_request(&hubs, &payer, &infhub_core::point_lock::Lock { amount: Amount(49), ..lock }, &good),
            ),
            (
                "expiry_too_soon",
                forward_request(
                    &hubs,
                    &payer,
                    &infhub_core::point_lock::Lock { expiry_block: head + 45, ..lock },
                    &good,
                ),
            ),
            ("wrong_signer", forward_request(&hubs, &payer, &lock, &forged_invoice)),
            ("unknown_next_hub", forward_request(&hubs, &payer, &lock, &invoice(&bob, "127.0.0.1:1", &domain_b, 1))),
        ];
        for (expected, body) in attempts {
            let (s, v) = http_a.post("/v1/forwarded-transfers", None, &body).await;
            assert_eq!(code(&v), expected, "HTTP {s}: {v}");
        }
        let mut forged_debit = forward_request(&hubs, &payer, &lock, &good);
        forged_debit["debit"]["signature"] =
            forward_request(&hubs, &Wallet::new(&hubs.chain, 3).await, &lock, &good)["debit"]["signature"].clone();
        let (_, v) = http_a.post("/v1/forwarded-transfers", None, &forged_debit).await;
        assert!(matches!(code(&v), "invalid_signature" | "wrong_signer"), "{v}");
        let (_, account) = payer.account(http_a).await;
        assert_eq!(account["balance"], "500", "nothing locked: {account}");
        assert_eq!(balance_of(&link_of(http_a, peer).await), 300, "nothing forwarded");

        // An honest request for a payee B does not know: B refuses, A says so; the payer's lock
        // stays until its expiry (she drops it then), the link pays nothing.
        let body = forward_request(&hubs, &payer, &lock, &good);
        let (s, v) = http_a.post("/v1/forwarded-transfers", None, &body).await;
        assert_eq!(s, 200, "the payer's lock is committed: {v}");
        assert_eq!(v["forwarded"]["error"]["code"], "unknown_account", "{v}");
        payer.debit_nonce += 1;
        assert_eq!(balance_of(&link_of(http_a, peer).await), 300, "nothing forwarded");
        // A agrees to her cancel of that lock before its expiry: her amount is back.
        let domain = hubs.chain.domain();
        let kind = infhub_core::messages::PaymentKind::LockDrop;
        let cancel = crate::locks::lock_debit(&payer, &domain, hubs.chain.anvil_hub(), kind, &lock, &[], 0);
        let change = json!({"cancel": {"lockId": lock.lock_id}});
        let body = json!({"debit": payer.sign_debit(&domain, cancel), "change": change});
        let (s, v) = http_a.post("/v1/lock-debits", None, &body).await;
        assert_eq!(s, 200, "{v}");
        payer.debit_nonce += 1;
        let (_, account) = payer.account(http_a).await;
        assert_eq!(account["balance"], "500", "the refused forward's lock is cancelled: {account}");

        // Bob registered at B: a new invoice is forwarded, and its retry answered from the first.
        let _bob_wallet = user_at(&hubs.chain, hubs.tmp.path(), 2, &hubs.node_b.url).await;
        let second = invoice(&bob, &host_b, &domain_b, 2);
        let point = infhub_core::invoice::invoice_scalar(&bob, second.message.invoice_id).point().address();
        let lock2 = infhub_core::point_lock::Lock { lock_id: second.message.invoice_id, point, ..lock };
        let debit = crate::locks::lock_debit(
            &payer,
            &hubs.chain.domain(),
            hubs.chain.anvil_hub(),
            infhub_core::messages::PaymentKind::LockAdd,
            &lock2,
            &[lock2],
            0,
        );
        let body = json!({"debit": payer.sign_debit(&hubs.chain.domain(), debit), "lock": lock2, "invoice": second});
        let (s, v) = http_a.post("/v1/forwarded-transfers", None, &body).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["forwarded"]["nextHubAnswer"]["receipt"].is_object(), "{v}");
        let (s, again) = http_a.post("/v1/forwarded-transfers", None, &body).await;
        assert_eq!((s, &again["replayed"]), (200, &json!(true)), "{again}");
        assert_eq!(again["receipt"], v["receipt"], "the first answer's receipt");
        let link = link_of(http_a, peer).await;
        assert_eq!(balance_of(&link), 250, "forwarded once: {link}");
        let (_, account) = payer.account(http_a).await;
        assert_eq!(account["balance"], "450", "the forwarded lock is held once: {account}");
        payer.debit_nonce += 1;
        // A forward the next hub accepted cannot be cancelled before its expiry.
        let kind = infhub_core::messages::PaymentKind::LockDrop;
        let cancel = crate::locks::lock_debit(&payer, &domain, hubs.chain.anvil_hub(), kind, &lock2, &[], 0);
        let change = json!({"cancel": {"lockId": lock2.lock_id}});
        let body = json!({"debit": payer.sign_debit(&domain, cancel), "change": change});
        let (_, v) = http_a.post("/v1/lock-debits", None, &body).await;
        assert_eq!(code(&v), "lock_not_expired", "{v}");
        hubs.stop().await;
    });
}

/// Hub A stops right after forwarding Alice's payment; Bob claims it at B while A is down. When
/// A starts again it reads its link's unfinished forward from disk, learns the scalar from B
/// and Alice settles: nothing A acknowledged is lost across the restart.
#[test]
fn a_forward_is_finished_after_the_forwarding_hub_restarts() {
    rt().block_on(async {
        let hubs = TwoHubs::start().await;
        let mut alice = user_at(&hubs.chain, hubs.tmp.path(), 1, &hubs.node_a.url).await;
        alice.deposit(Amount(500), &mut |_| {}).await.expect("deposit");
        let mut bob = user_at(&hubs.chain, hubs.tmp.path(), 2, &hubs.node_b.url).await;
        let invoice = bob.issue_invoice(Amount(70), "soup", 600).expect("invoice");
        alice.pay_invoice(&invoice).await.expect("paid");
        assert_eq!(link_of(&hubs.http_a, hubs.peer).await["unfinishedForwards"], 1);
        let hubs = hubs
            .restart_a(async {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while bob.spendable().expect("balance") != Amount(70) {
                    assert!(std::time::Instant::now() < deadline, "Bob not paid at B");
                    let _ = bob.sync().await;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            })
            .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while alice.channel().expect("channel").cumulative_debit() != Amount(70) {
            assert!(std::time::Instant::now() < deadline, "Alice's lock not settled after A's restart");
            let _ = alice.sync().await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(alice.channel().expect("channel").debit_locks.is_empty());
        let link = link_until(&hubs.chain, &hubs.http_a, hubs.peer, "the forward finished", |l| {
            l["unfinishedForwards"] == 0 && l["channel"]["cumulativeDebit"] == "70"
        })
        .await;
        assert_eq!(balance_of(&link), 230, "{link}");
        hubs.stop().await;
    });
}

/// A refusal of a forward is final for its request (spec §5.23a step 3, D65): hub A refuses a
/// payment its link cannot carry (`insufficient_capacity`); once the link is funded, the very
/// same request (a late copy, a retry that was waiting) is refused again, so the payer's wallet,
/// which took the refusal as final, can give the nonce to its next debit — here a new request
/// for another invoice with the same nonce, which is forwarded.
#[test]
fn a_refused_forward_stays_refused_for_its_request_after_the_link_has_room() {
    rt().block_on(async {
        let hubs = TwoHubs::start().await;
        let (http_a, peer) = (&hubs.http_a, hubs.peer);
        let (payer, bob) = payer_and_bob(&hubs).await;
        let (domain_b, host_b, expires) = (bob.domain, bob.host.clone(), bob.expires);
        let bob = bob.key;
        let head = hubs.chain.head().await;
        let request_for = |id: u8| {
            let invoice = infhub_core::invoice::issue(
                &bob,
                &host_b,
                &domain_b,
                Amount(400),
                expires,
                "a bicycle",
                alloy::primitives::B256::repeat_byte(id),
            )
            .expect("invoice");
            let point = infhub_core::invoice::invoice_scalar(&bob, invoice.message.invoice_id).point().address();
            let lock = infhub_core::point_lock::Lock {
                lock_id: invoice.message.invoice_id,
                amount: Amount(400),
                expiry_block: head + 400,
                point,
            };
            forward_request(&hubs, &payer, &lock, &invoice)
        };
        let first = request_for(1);
        let (_, v) = http_a.post("/v1/forwarded-transfers", None, &first).await;
        assert_eq!(code(&v), "insufficient_capacity", "the link holds 300: {v}");

        let (s, v) = http_a
            .post(&format!("/v1/operator/links/{peer}/deposits"), Some(OPERATOR), &json!({"amount": "200"}))
            .await;
        assert_eq!(s, 200, "{v}");
        link_until(&hubs.chain, http_a, peer, "the link holds 500", |l| balance_of(l) == 500 && l["job"].is_null())
            .await;

        let (_, again) = http_a.post("/v1/forwarded-transfers", None, &first).await;
        assert_eq!(code(&again), "insufficient_capacity", "the same request stays refused: {again}");
        let (_, account) = payer.account(http_a).await;
        assert_eq!(account["balance"], "500", "nothing locked: {account}");

        // The wallet's next debit with that nonce: another invoice, forwarded (B does not know
        // Bob, so B refuses it; A's answer carries that, and the payer's lock is committed).
        let (s, v) = http_a.post("/v1/forwarded-transfers", None, &request_for(2)).await;
        assert_eq!(s, 200, "a new request with the same nonce is taken: {v}");
        assert!(v["receipt"].is_object(), "{v}");
        hubs.stop().await;
    });
}
