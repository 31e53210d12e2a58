//! Three hubs as real processes on one anvil (spec §5.23b): hub A (the scenarios' hub), B and C,
//! A's link at B and B's link at C opened and funded through the operator API, wallets as
//! processes. Alice at A pays Bob's invoice at C through B; B is killed with SIGKILL with both
//! of its locks live, Bob claims at C while B is down, B restarts from its data directory and
//! the payment completes: Bob paid, Alice charged the invoice and B's fee, no channel closed.
//! Then with the payee's hub C SIGKILLed before a payment and never back: every lock expires
//! and is dropped by its sender, Alice is refunded in full and no link closes. Then A and C
//! colluding to settle around B (they cannot: only Alice and B know B's tweak), and A going
//! silent after forwarding (B claims through the point registry and `unlock`, and A, back
//! while B is down, learns the scalar there).

use crate::harness::*;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use infhub_chain::anvil::{self, Deployment};
use serde_json::{json, Value};

/// Dev keys of hubs B and C.
const HUB_B: usize = 4;
const HUB_C: usize = 3;

async fn deploy_hub_of(env: &Env, key: usize) -> Deployment {
    let (challenge, notice) = (CHALLENGE_PERIOD_BLOCKS, 2 * CHALLENGE_PERIOD_BLOCKS);
    infhub_node::dev::deploy_other_hub(&env.provider, &env.d, key, U256::from(1_000 * INF), challenge, notice)
        .await
        .expect("hub deployed")
}

fn hub_config(env: &Env, d: &Deployment, key: usize, name: &str, fee: u128) -> infhub_node::config::Config {
    let port = anvil::free_port().expect("port");
    let mut c = infhub_node::dev::config(&env.anvil, d, format!("127.0.0.1:{port}"), env.tmp.path().join(name));
    c.chain.hub_key.0 = anvil::dev_key(key);
    c.chain.poll_interval_ms = 100;
    c.node.link_watch_interval_ms = 300;
    c.node.link_base_fee = infhub_core::Amount(fee);
    c.node.log = "warn".into();
    c
}

async fn operator_call(url: String, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let r = match body {
        Some(b) => client.post(&url).json(&b),
        None => client.get(&url),
    };
    r.bearer_auth(OPERATOR).send().await.expect("operator request").json().await.expect("json")
}

fn link_to(list: &Value, peer: Address) -> Value {
    let links = list["links"].as_array().cloned().unwrap_or_default();
    links.into_iter().find(|l| l["peerContract"] == json!(peer)).unwrap_or_default()
}

/// The hub at `from` opens a link at the hub at `to` (contract `peer`) and funds it with 300 INF.
async fn link(env: &Env, from: &str, to: &str, peer: Address) {
    let opened = operator_call(format!("{from}/v1/operator/links"), Some(json!({"hubUrl": to}))).await;
    assert!(opened["link"].is_object(), "{opened}");
    let list = operator_call(format!("{from}/v1/operator/links"), None).await;
    let address: Address = serde_json::from_value(list["linkAddress"].clone()).expect("linkAddress");
    let mut minter = anvil::sender(&env.provider, anvil::dev_key(0)).await.expect("sender");
    anvil::mint(&mut minter, env.d.token, address, U256::from(1_000 * INF)).await.expect("mint");
    let eth = U256::from(10u64).pow(U256::from(18u64));
    let _: () = env.provider.raw_request("anvil_setBalance".into(), (address, eth)).await.expect("gas");
    env.until(60, "the link open", || async {
        link_to(&operator_call(format!("{from}/v1/operator/links"), None).await, peer)["state"] == "open"
    })
    .await;
    let deposit = json!({"amount": (300 * INF).to_string()});
    operator_call(format!("{from}/v1/operator/links/{peer}/deposits"), Some(deposit)).await;
    env.until(60, "the link funded", || async {
        let l = link_to(&operator_call(format!("{from}/v1/operator/links"), None).await, peer);
        l["channel"]["balance"] == (300 * INF).to_string()
    })
    .await;
}

/// Hubs B and C as processes, A's link at B and B's at C open and funded with 300 INF each,
/// Alice at A with 100 INF, and Bob registered at C.
struct ThreeHubs {
    env: Env,
    d_b: Deployment,
    d_c: Deployment,
    config_b: infhub_node::config::Config,
    url_b: String,
    hub_b: Process,
    hub_c: Process,
    alice: User,
    bob: User,
}

async fn three_hubs() -> ThreeHubs {
    let env = Env::start_with(|c| c.node.link_watch_interval_ms = 300).await;
    let (d_b, d_c) = (deploy_hub_of(&env, HUB_B).await, deploy_hub_of(&env, HUB_C).await);
    let (config_b, config_c) = (hub_config(&env, &d_b, HUB_B, "b", 2), hub_config(&env, &d_c, HUB_C, "c", 0));
    let (url_b, url_c) = (format!("http://{}", config_b.node.listen), format!("http://{}", config_c.node.listen));
    let hub_b = Process(env.spawn_other_node(&config_b, "b"));
    let hub_c = Process(env.spawn_other_node(&config_c, "c"));
    wait_serving(&url_b, 30).await;
    wait_serving(&url_c, 30).await;
    link(&env, &env.hub_url, &url_b, d_b.hub).await;
    link(&env, &url_b, &url_c, d_c.hub).await;

    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.register(&alice).await;
    env.ok(&alice, &["deposit", "100"]);
    env.ok(&bob, &["register", "--hub-url", &url_c, "--rpc-url", &env.anvil.url]);
    let bob_at_c = format!("{url_c}/v1/accounts/{}", bob.address);
    env.until(60, "C to follow Bob's channel", || async {
        let r = reqwest::Client::new().get(&bob_at_c).bearer_auth(OPERATOR).send().await;
        r.is_ok_and(|r| r.status().is_success())
    })
    .await;
    ThreeHubs { env, d_b, d_c, config_b, url_b, hub_b, hub_c, alice, bob }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_through_a_hub_killed_mid_payment_completes_after_its_restart() {
    let ThreeHubs { env, d_c, config_b, url_b, mut hub_b, hub_c: _hub_c, alice, bob, .. } = three_hubs().await;
    let invoice = env.ok(&bob, &["invoice", "10", "--description", "through B"])["invoice"].to_string();
    // A knows B→C once B's announcement reached it.
    let paid = env
        .until_value(60, "Alice's payment through B", || async {
            let (ok, v) = env.wallet(&alice, &["pay-invoice", &invoice]);
            match ok {
                true => Some(v),
                false if v["error"]["code"] == "no_route" => None,
                false => panic!("paying through B: {v}"),
            }
        })
        .await;
    let fee = 2;
    assert_eq!(amount(&paid["fees"]), fee, "B's base fee, shown before: {paid}");

    // SIGKILL B with A's lock and its own lock at C live; Bob claims at C meanwhile.
    hub_b.0.kill().expect("kill B");
    hub_b.0.wait().expect("B gone");
    env.until(60, "Bob paid at C while B is down", || async {
        let v = env.ok(&bob, &["balance"]);
        amount(&v["balance"]) == 10 * INF
    })
    .await;
    let _hub_b = Process(env.spawn_other_node(&config_b, "b"));
    wait_serving(&url_b, 30).await;
    env.until(90, "Alice's lock settled through B and A (her debits: the invoice and B's fee)", || async {
        let v = env.ok(&alice, &["balance"]);
        v["cumulativeDebit"].is_string() && amount(&v["cumulativeDebit"]) == 10 * INF + fee
    })
    .await;
    let b_links = operator_call(format!("{url_b}/v1/operator/links"), None).await;
    assert_eq!(link_to(&b_links, d_c.hub)["unfinishedForwards"], 0, "{b_links}");
}

/// The payee's hub is SIGKILLed before the payment and stays away past the expiry (spec
/// §5.23a/b; the in-process version is `infhub-node`'s routing test): Alice's payment through B
/// is answered "after its expiry"; once it passes, every sender drops its lock: Alice is
/// refunded in full at A, A's link at B is whole again, B paid C nothing, and no link closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_payment_whose_payee_hub_is_killed_and_stays_away_refunds_everyone_and_closes_nothing() {
    let ThreeHubs { env, d_b, d_c, url_b, hub_c, hub_b: _hub_b, alice, bob, .. } = three_hubs().await;
    let invoice_value = env.ok(&bob, &["invoice", "10", "--description", "never claimed"])["invoice"].clone();
    let invoice = invoice_value.to_string();
    // A quotes once it knows the route B→C (B's announcement reached it).
    let quote = format!("{}/v1/payment-quotes", env.hub_url);
    env.until(60, "A to know the route to C", || async {
        let r = reqwest::Client::new().post(&quote).json(&json!({"invoice": invoice_value})).send().await;
        r.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let mut hub_c = hub_c;
    hub_c.0.kill().expect("kill C");
    hub_c.0.wait().expect("C gone");
    let (paid, answer) = env.wallet(&alice, &["pay-invoice", &invoice]);
    assert!(!paid, "C is down: the payment cannot complete: {answer}");
    assert!(answer.to_string().contains("expiry"), "the lock waits for its expiry: {answer}");

    // Past the payer's expiry, every sender drops its lock.
    anvil::mine(&env.provider, infhub_wallet::wallet::PAY_INVOICE_EXPIRY_BLOCKS + 10).await.expect("mine");
    env.until(120, "Alice refunded in full", || async {
        let _ = env.wallet(&alice, &["sync"]);
        let v = env.ok(&alice, &["balance"]);
        amount(&v["balance"]) == 100 * INF
    })
    .await;
    env.until(90, "A's link whole again at B", || async {
        let l = link_to(&operator_call(format!("{}/v1/operator/links", env.hub_url), None).await, d_b.hub);
        l["channel"]["balance"] == (300 * INF).to_string() && l["unfinishedForwards"] == 0
    })
    .await;
    let a_link = link_to(&operator_call(format!("{}/v1/operator/links", env.hub_url), None).await, d_b.hub);
    assert_eq!(a_link["state"], "open", "no link closed: {a_link}");
    let b_link = link_to(&operator_call(format!("{url_b}/v1/operator/links"), None).await, d_c.hub);
    assert_eq!(b_link["channel"]["balance"], (300 * INF).to_string(), "B paid C nothing: {b_link}");
    assert_eq!(b_link["state"], "open", "{b_link}");
}

/// The tweaks the forwards files under `data_dir` hold for the lock `lock_id`, and all the text
/// of the directory.
fn tweaks_held(data_dir: &std::path::Path, lock_id: &Value) -> (Vec<String>, String) {
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
                    if line["lockId"] == *lock_id && line["tweak"].is_string() {
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

/// Alice's pending lock at A for the invoice `lock_id` (A's operator view of her account).
async fn alice_lock(env: &Env, alice: &User, lock_id: &Value) -> Value {
    let (_, account) = account_at(&env.hub_url, alice.address).await;
    let outgoing = account["locks"]["outgoing"].as_array().cloned().unwrap_or_default();
    outgoing.into_iter().map(|l| l["lock"].clone()).find(|l| l["lockId"] == *lock_id).expect("Alice's lock")
}

/// Pays `invoice` from `payer` once A knows the route to the payee's hub; the wallet's answer.
async fn pay_when_routed(env: &Env, payer: &User, invoice: &str) -> Value {
    env.until_value(60, "the payment routed", || async {
        let (ok, v) = env.wallet(payer, &["pay-invoice", invoice]);
        match ok {
            true => Some(v),
            false if v["error"]["code"] == "no_route" => None,
            false => panic!("paying through B: {v}"),
        }
    })
    .await
}

/// Hubs A and C collude to settle around B (the wormhole attack, spec §5.23d, D61), as real
/// processes: with both of B's locks live, C hands A the payee's scalar `z` (here from Bob's
/// key). A's store holds its own tweak and never B's, so no scalar A can form opens Alice's
/// lock; B's tweak, in B's store, is exactly what is missing. Bob then claims and the payment
/// completes through B, which keeps its fee.
#[tokio::test(flavor = "multi_thread")]
async fn hubs_a_and_c_cannot_settle_around_b() {
    use infhub_core::point_lock::Scalar;
    let ThreeHubs { env, d_b, config_b, hub_b: _hub_b, hub_c: _hub_c, alice, bob, .. } = three_hubs().await;
    let invoice = env.ok(&bob, &["invoice", "10", "--description", "around B"])["invoice"].clone();
    let id = invoice["message"]["invoiceId"].clone();
    pay_when_routed(&env, &alice, &invoice.to_string()).await;
    let lock = alice_lock(&env, &alice, &id).await;

    let lock_id: alloy::primitives::B256 = serde_json::from_value(id.clone()).expect("id");
    let bob_key = infhub_core::PrivateKey::from_bytes(anvil::dev_key(2).0).expect("key");
    let z = infhub_core::invoice::invoice_scalar(&bob_key, lock_id);
    let (a_tweaks, a_text) = tweaks_held(&env.config.node.data_dir, &id);
    let (b_tweaks, _) = tweaks_held(&config_b.node.data_dir, &id);
    let parse = |t: &String| -> Scalar { serde_json::from_value(json!(t)).expect("tweak") };
    let (y_a, y_b) = match (a_tweaks.as_slice(), b_tweaks.as_slice()) {
        ([a], [b]) => (parse(a), parse(b)),
        _ => panic!("one tweak each: A {a_tweaks:?}, B {b_tweaks:?}"),
    };
    assert!(!a_text.contains(&b_tweaks[0]), "A's store never holds B's tweak");
    let point = |t: Scalar| json!(t.point().address());
    for guess in [z, z.upstream(&y_a).expect("scalar"), z.add(&y_a).expect("scalar")] {
        assert_ne!(point(guess), lock["point"], "A and C open Alice's lock without B: {lock}");
    }
    let with_b = z.upstream(&y_b).and_then(|t| t.upstream(&y_a)).expect("scalar");
    assert_eq!(point(with_b), lock["point"], "B's tweak is what the colluders lack");

    env.until(60, "Bob paid at C", || async { amount(&env.ok(&bob, &["balance"])["balance"]) == 10 * INF }).await;
    env.until(90, "Alice's lock settled through B", || async {
        let v = env.ok(&alice, &["balance"]);
        v["cumulativeDebit"].is_string() && amount(&v["cumulativeDebit"]) == 10 * INF + 2
    })
    .await;
    env.until(60, "A's lock at B settled, B's fee kept", || async {
        let l = link_to(&operator_call(format!("{}/v1/operator/links", env.hub_url), None).await, d_b.hub);
        l["channel"]["cumulativeDebit"] == (10 * INF + 2).to_string() && l["unfinishedForwards"] == 0
    })
    .await;
}

/// Hub A goes silent after forwarding (SIGKILL, spec §5.23b, §5.15), as real processes: Bob
/// claims at C, B learns the scalar of A's lock, which A is not there to settle; B's operator
/// closes A's link and B's duties reveal the scalar in the point registry, register A's lock and
/// unlock it after the settlement: A's link is paid its deposit less the payment and B's fee.
/// B is then SIGKILLed and A restarts: it learns the scalar from the registry and Alice settles.
#[tokio::test(flavor = "multi_thread")]
async fn a_hub_whose_upstream_is_killed_claims_through_the_registry() {
    let ThreeHubs { mut env, d_b, url_b, mut hub_b, hub_c: _hub_c, alice, bob, .. } = three_hubs().await;
    let invoice = env.ok(&bob, &["invoice", "10", "--description", "A goes silent"])["invoice"].to_string();
    pay_when_routed(&env, &alice, &invoice).await;
    let links = operator_call(format!("{}/v1/operator/links", env.hub_url), None).await;
    let a_link: Address = serde_json::from_value(links["linkAddress"].clone()).expect("linkAddress");
    env.kill_hub();

    env.until(60, "Bob paid at C", || async { amount(&env.ok(&bob, &["balance"])["balance"]) == 10 * INF }).await;
    env.until(60, "B learned the scalar of A's lock", || async {
        let (_, v) = account_at(&url_b, a_link).await;
        let outgoing = v["locks"]["outgoing"].as_array().cloned().unwrap_or_default();
        outgoing.iter().any(|l| !l["scalar"].is_null())
    })
    .await;
    let before = env.token_balance(a_link).await;
    let closed = operator_call(format!("{url_b}/v1/operator/closes"), Some(json!({"user": a_link}))).await;
    assert!(closed.get("error").is_none(), "{closed}");
    env.until(120, "A's link settled at B, its lock paid to B through the registry", || async {
        env.token_balance(a_link).await > before
    })
    .await;
    let paid = env.token_balance(a_link).await - before;
    assert_eq!(paid, 300 * INF - (10 * INF + 2), "A's link is paid its deposit less the lock");

    hub_b.0.kill().expect("kill B");
    hub_b.0.wait().expect("B gone");
    env.start_hub().await;
    env.until(120, "Alice settled after A returned (the scalar from the registry)", || async {
        let _ = env.wallet(&alice, &["sync"]);
        let v = env.ok(&alice, &["balance"]);
        v["cumulativeDebit"].is_string() && amount(&v["cumulativeDebit"]) == 10 * INF + 2
    })
    .await;
    env.until(60, "A's forward finished", || async {
        let l = link_to(&operator_call(format!("{}/v1/operator/links", env.hub_url), None).await, d_b.hub);
        l["unfinishedForwards"] == 0 && l["state"] == "settled"
    })
    .await;
}
