//! Merchants' webhooks and event feed (spec §5.24): a merchant's back end names a URL, the hub
//! posts the account's new entries there in order, signed with the secret it was shown, retries
//! a receiver that fails, and resumes from the durable cursor after a restart; the same feed is
//! pulled by cursor. A private host is refused unless the operator allows it.

use crate::harness::*;
use crate::towers::put;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use infhub_core::messages::PaymentKind;
use infhub_core::B256;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the receiver got: each body with its signature header.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A merchant's receiver: records each body with its signature header, and refuses (500) the
/// first `refuse_first` deliveries.
async fn receiver(refuse_first: usize) -> (String, Received) {
    let got: Received = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let seen = got.clone();
    let app = Router::new().route(
        "/hooks/infhub",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (seen, refused) = (seen.clone(), refused.clone());
            async move {
                if refused.fetch_add(1, Ordering::SeqCst) < refuse_first {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let sig = headers.get("x-infhub-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
                seen.lock().expect("lock").push((sig.to_string(), body.to_vec()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks/infhub", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// The seqs of the events delivered so far, each checked against the secret.
fn delivered(got: &Received, secret: &B256) -> Vec<u64> {
    let mut seqs = Vec::new();
    for (sig, body) in got.lock().expect("lock").iter() {
        assert_eq!(sig, &infhub_node::webhooks::signature(secret, body), "every body signed with the secret");
        let v: Value = serde_json::from_slice(body).expect("json");
        seqs.extend(v["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")));
    }
    seqs
}

#[test]
fn a_merchant_gets_its_new_entries_signed_in_order_after_failures_and_a_restart() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.node.webhooks_to_private_hosts = false;
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        let (mut payer, mut merchant) = crate::locks::payer_and_payee(&chain, &http).await;
        let token = merchant.token.clone();
        let token = token.as_deref();
        let path = format!("/v1/accounts/{}/webhook", merchant.address());
        let (url, got) = receiver(2).await;

        // Refusals by name: a loopback host on a hub that posts only to public ones, not a URL,
        // someone else's session, no webhook yet.
        let (s, v) = put(&http, &path, token, &json!({"url": url})).await;
        assert_eq!((s, code(&v)), (422, "webhook_host_not_allowed"), "{v}");
        let (s, v) = put(&http, &path, token, &json!({"url": "ftp://shop.example/x"})).await;
        assert_eq!((s, code(&v)), (400, "malformed_request"), "{v}");
        let (s, v) = put(&http, &path, payer.token.as_deref(), &json!({"url": "https://shop.example/x"})).await;
        assert_eq!(s, 403, "only the account's own session: {v}");
        let (s, v) = http.get(&path, token).await;
        assert_eq!((s, code(&v)), (404, "unknown_webhook"), "{v}");
        node.stop().await;

        // The operator allows a receiver on this machine.
        config.node.webhooks_to_private_hosts = true;
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        merchant.login(&http, &domain).await;
        let token = merchant.token.clone();
        let token = token.as_deref();
        let (s, v) = put(&http, &path, token, &json!({"url": url})).await;
        assert_eq!(s, 200, "{v}");
        let secret: B256 = serde_json::from_value(v["secret"].clone()).expect("secret");
        let from = v["cursor"].as_u64().expect("cursor");
        let (s, shown) = http.get(&path, token).await;
        assert_eq!((s, shown["url"].as_str()), (200, Some(url.as_str())), "{shown}");
        assert!(shown.get("secret").is_none(), "the secret is shown only once: {shown}");

        // Three payments to the merchant; the receiver refuses the first two deliveries.
        for id in 1..=3u64 {
            let (s, v) =
                payer.pay(&http, &domain, PaymentKind::Internal, merchant.address(), 10 + id as u128, id).await;
            assert_eq!(s, 200, "{v}");
        }
        let feed = |after: u64| {
            let (http, merchant) = (&http, &merchant);
            async move {
                let path = format!("/v1/accounts/{}/events?after={after}", merchant.address());
                let (s, v) = http.get(&path, merchant.token.as_deref()).await;
                assert_eq!(s, 200, "{v}");
                v
            }
        };
        let new = feed(from).await;
        let want: Vec<u64> =
            new["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
        assert_eq!(want.len(), 3, "three payments received: {new}");
        assert!(new["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["kind"] == "transfer_in" && e["atMs"].is_u64()));
        eventually(30, "the three events delivered", || async { (delivered(&got, &secret) == want).then_some(()) })
            .await;
        let (_, shown) = http.get(&path, token).await;
        assert_eq!(shown["cursor"].as_u64(), want.last().copied(), "{shown}");
        assert_eq!(
            feed(new["nextAfter"].as_u64().expect("next")).await["events"],
            json!([]),
            "nothing after the cursor"
        );

        // A restart resumes from the durable cursor: only what comes after is delivered.
        node.stop().await;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        merchant.login(&http, &domain).await;
        let token = merchant.token.clone();
        let token = token.as_deref();
        let (s, v) = payer.pay(&http, &domain, PaymentKind::Internal, merchant.address(), 7, 4).await;
        assert_eq!(s, 200, "{v}");
        eventually(30, "the fourth event delivered once", || async {
            let seqs = delivered(&got, &secret);
            (seqs.len() == 4).then_some(seqs)
        })
        .await;
        let seqs = delivered(&got, &secret);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, none twice: {seqs:?}");
        let deleted =
            http.client.delete(format!("{}{path}", http.base)).bearer_auth(token.expect("session")).send().await;
        assert_eq!(deleted.expect("delete").status().as_u16(), 200);
        let (s, v) = http.get(&path, token).await;
        assert_eq!((s, code(&v)), (404, "unknown_webhook"), "{v}");
        node.stop().await;
    });
}
