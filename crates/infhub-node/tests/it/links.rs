//! Hub-to-hub links (spec §5.23) with two hubs on one anvil, both nodes in process: hub B opens
//! a link at hub A through its operator API, funds it from its link key, pays a user of A over
//! it and is paid by one, keeps it across a restart, and each refusal (its own contract, a
//! peer that does not answer, a bad URL, an unknown link, a second job while a deposit runs, a
//! payment the peer refuses) is answered by name; when A closes the link, B's link follows the
//! close and its key is paid the link's balance on chain.

use crate::harness::*;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use infhub_chain::anvil;
use infhub_core::messages::PaymentKind;
use infhub_core::PrivateKey;
use infhub_node::dev::{DEV_CHALLENGE_PERIOD_BLOCKS, DEV_RESERVE_NOTICE_BLOCKS};
use serde_json::{json, Value};

/// The dev key that runs hub B.
pub(crate) const HUB_B_KEY_INDEX: usize = 4;

/// Deploys hub B's contract on A's token and registry, with a reserve from B's key.
pub(crate) async fn deploy_hub_b(chain: &Chain) -> anvil::Deployment {
    deploy_hub_of(chain, HUB_B_KEY_INDEX).await
}

/// Deploys a hub contract run by dev key `index` on A's token and registry, with a reserve.
pub(crate) async fn deploy_hub_of(chain: &Chain, index: usize) -> anvil::Deployment {
    let reserve = U256::from(1_000_000u64);
    infhub_node::dev::deploy_other_hub(
        &chain.provider,
        &chain.d,
        index,
        reserve,
        DEV_CHALLENGE_PERIOD_BLOCKS,
        DEV_RESERVE_NOTICE_BLOCKS,
    )
    .await
    .expect("hub deployed")
}

/// The link named by `peer` in B's list of links.
pub(crate) async fn link_of(http: &Http, peer: Address) -> Value {
    let (s, v) = http.get("/v1/operator/links", Some(OPERATOR)).await;
    assert_eq!(s, 200, "{v}");
    v["links"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["peerContract"] == json!(peer))
        .cloned()
        .unwrap_or_else(|| panic!("no link to {peer} in {v}"))
}

/// Mines a block now and then (the link's wallet waits for confirmations) until `done` holds
/// for B's link to `peer`.
pub(crate) async fn link_until(
    chain: &Chain,
    http: &Http,
    peer: Address,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(60, what, || async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        chain.mine(1).await;
        let link = link_of(http, peer).await;
        done(&link).then_some(link)
    })
    .await
}

pub(crate) fn balance_of(link: &Value) -> u128 {
    link["channel"]["balance"].as_str().and_then(|b| b.parse().ok()).unwrap_or(0)
}

/// What B's operator API refuses before any link exists.
async fn refusals_before_a_link(http_b: &Http, url_a: &str, url_b: &str, peer: Address) {
    let (s, v) = http_b.post("/v1/operator/links", Some(OPERATOR), &json!({"hubUrl": url_b})).await;
    assert_eq!((s, code(&v)), (422, "link_to_own_hub"), "{v}");
    let (s, v) = http_b.post("/v1/operator/links", Some(OPERATOR), &json!({"hubUrl": "ftp://x"})).await;
    assert_eq!((s, code(&v)), (400, "malformed_request"), "{v}");
    let (s, v) = http_b.post("/v1/operator/links", Some(OPERATOR), &json!({"hubUrl": "http://127.0.0.1:1"})).await;
    assert_eq!((s, code(&v)), (502, "peer_hub_unreachable"), "{v}");
    let (s, v) =
        http_b.post(&format!("/v1/operator/links/{peer}/deposits"), Some(OPERATOR), &json!({"amount": "1"})).await;
    assert_eq!((s, code(&v)), (404, "unknown_link"), "{v}");
    let (s, v) = http_b.post("/v1/operator/links", None, &json!({"hubUrl": url_a})).await;
    assert_eq!(s, 401, "the operator token is required: {v}");
}

#[test]
fn a_hub_opens_funds_and_pays_over_a_link_to_another_hub_and_keeps_it_across_a_restart() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let d_b = deploy_hub_b(&chain).await;
        let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let node_a = InProcessNode::start(chain.config(dir_a.path().to_path_buf())).await;
        let mut config_b = infhub_node::dev::config(&chain.anvil, &d_b, "127.0.0.1:0".into(), dir_b.path().into());
        config_b.chain.hub_key.0 = anvil::dev_key(HUB_B_KEY_INDEX);
        config_b.chain.poll_interval_ms = 50;
        config_b.node.link_watch_interval_ms = 200;
        let node_b = InProcessNode::start(config_b.clone()).await;
        let (http_a, http_b) = (Http::new(&node_a.url), Http::new(&node_b.url));
        let peer = chain.d.hub;

        refusals_before_a_link(&http_b, &node_a.url, &node_b.url, peer).await;

        // Open: answered at once, the channel opens in the background; opening again is a no-op.
        let (s, v) = http_b.post("/v1/operator/links", Some(OPERATOR), &json!({"hubUrl": node_a.url})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["opened"], true, "{v}");
        let (_, list) = http_b.get("/v1/operator/links", Some(OPERATOR)).await;
        let link_address: Address = serde_json::from_value(list["linkAddress"].clone()).expect("linkAddress");
        let hub_b = PrivateKey::from_bytes(anvil::dev_key(HUB_B_KEY_INDEX).0).expect("key").address();
        assert_ne!(link_address, hub_b, "the link key is not the hub key (its nonces are the chain sender's)");
        link_until(&chain, &http_b, peer, "the link open", |l| l["state"] == "open").await;
        let (s, v) = http_b.post("/v1/operator/links", Some(OPERATOR), &json!({"hubUrl": node_a.url})).await;
        assert_eq!((s, &v["opened"]), (200, &json!(false)), "{v}");
        let (s, account) = http_a
            .get(&format!("/v1/operator/accounts?prefix={}", &format!("{link_address:x}")[..8]), Some(OPERATOR))
            .await;
        assert_eq!(s, 200, "{account}");
        assert!(
            account.to_string().to_lowercase().contains(&format!("{link_address:#x}")),
            "B's link is an account of A: {account}"
        );

        // Fund: the link key needs INF and gas; a second job while the deposit runs is refused.
        let mut minter = anvil::sender(&chain.provider, anvil::dev_key(0)).await.expect("sender");
        anvil::mint(&mut minter, chain.d.token, link_address, U256::from(1_000u64)).await.expect("mint");
        let eth = U256::from(10u64).pow(U256::from(18u64));
        let _: () = chain.provider.raw_request("anvil_setBalance".into(), (link_address, eth)).await.expect("gas");
        let deposits = format!("/v1/operator/links/{peer}/deposits");
        let payments = format!("/v1/operator/links/{peer}/payments");
        let (s, v) = http_b.post(&deposits, Some(OPERATOR), &json!({"amount": "300"})).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = http_b.post(&deposits, Some(OPERATOR), &json!({"amount": "5"})).await;
        assert_eq!((s, code(&v)), (409, "link_busy"), "one job per link: {v}");
        let (s, v) = http_b.post(&payments, Some(OPERATOR), &json!({"recipient": hub_b, "amount": "5"})).await;
        assert_eq!((s, code(&v)), (409, "link_busy"), "{v}");
        let link =
            link_until(&chain, &http_b, peer, "the deposit confirmed", |l| l["job"].is_null() && balance_of(l) == 300)
                .await;
        assert!(link["lastError"].is_null() && link["lastJob"]["error"].is_null(), "{link}");
        let (s, v) = http_b.post(&deposits, Some(OPERATOR), &json!({"amount": "5000"})).await;
        assert_eq!(s, 200, "the deposit runs in the background: {v}");
        let link = link_until(&chain, &http_b, peer, "an unfunded deposit refused", |l| l["job"].is_null()).await;
        assert_eq!(link["lastJob"]["error"]["code"], "invalid_input", "more than the link key holds: {link}");
        assert_eq!(balance_of(&link), 300, "{link}");

        // B pays a user of A over the link; a user of A pays B's link.
        let domain_a = chain.domain();
        let mut user = Wallet::new(&chain, 1).await;
        register(&chain, &http_a, &mut user).await;
        let (s, v) =
            http_b.post(&payments, Some(OPERATOR), &json!({"recipient": user.address(), "amount": "100"})).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["peerAnswer"]["result"]["receipt"].is_object(), "A's receipt, checked by the link's wallet: {v}");
        let (_, account) = user.account(&http_a).await;
        assert_eq!(amount(&account["balance"]), 100, "{account}");
        assert_eq!(balance_of(&link_of(&http_b, peer).await), 200);
        let stranger = Address::repeat_byte(0x77);
        let (s, v) = http_b.post(&payments, Some(OPERATOR), &json!({"recipient": stranger, "amount": "10"})).await;
        assert_eq!((s, code(&v)), (422, "unknown_account"), "A's refusal passes on under its own code: {v}");
        assert_eq!(balance_of(&link_of(&http_b, peer).await), 200, "a refused payment is refunded");
        let (s, v) = user.pay(&http_a, &domain_a, PaymentKind::Internal, link_address, 40, 1).await;
        assert_eq!(s, 200, "{v}");
        link_until(&chain, &http_b, peer, "A's credit taken by the link", |l| balance_of(l) == 240).await;

        // A restart of B reopens the link from its directory; it still pays.
        node_b.stop().await;
        let node_b = InProcessNode::start(config_b).await;
        let http_b = Http::new(&node_b.url);
        link_until(&chain, &http_b, peer, "the link reopened", |l| l["state"] == "open" && balance_of(l) == 240).await;
        let (s, v) =
            http_b.post(&payments, Some(OPERATOR), &json!({"recipient": user.address(), "amount": "15"})).await;
        assert_eq!(s, 200, "{v}");
        let (_, account) = user.account(&http_a).await;
        assert_eq!(amount(&account["balance"]), 75, "100 in, 40 out, 15 in: {account}");
        assert_eq!(balance_of(&link_of(&http_b, peer).await), 225);

        // A closes the link: B's link task follows the close through the wallet's defence and
        // the link key is paid its balance on chain; a payment over a settled link is refused.
        let before = chain.token_balance(link_address).await;
        let (s, v) = http_a.post("/v1/operator/closes", Some(OPERATOR), &json!({"user": link_address})).await;
        assert_eq!(s, 200, "{v}");
        link_until(&chain, &http_b, peer, "the link settled", |l| l["state"] == "settled").await;
        let paid = eventually(30, "the link key paid", || async {
            chain.mine(1).await;
            let now = chain.token_balance(link_address).await;
            (now > before).then_some(now - before)
        })
        .await;
        assert_eq!(paid, U256::from(225u64), "the link's whole balance");
        let (s, v) = http_b.post(&payments, Some(OPERATOR), &json!({"recipient": user.address(), "amount": "1"})).await;
        assert_eq!((s, code(&v)), (422, "channel_not_open"), "{v}");
        node_b.stop().await;
        node_a.stop().await;
    });
}
