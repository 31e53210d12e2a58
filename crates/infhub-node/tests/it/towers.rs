//! The towers a user names (spec §5.10a): only her session or the operator may set them, the
//! list is checked and durable across a restart, and the hub pushes her newest credit to them:
//! at once when the list is set (a credit issued before), and after each new credit.

use crate::harness::*;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// A stand-in tower that records what it is given (credits and debits) and answers like a tower.
async fn recording_tower() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = |seen: Arc<Mutex<Vec<Value>>>| {
        post(move |Json(body): Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(body);
                Json(json!({"receipt": null}))
            }
        })
    };
    let app = Router::new().route("/v1/appointments", record(got.clone())).route("/v1/debits", record(got.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

pub(crate) async fn put(http: &Http, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut r = http.client.put(format!("{}{path}", http.base)).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn credit_totals(got: &Arc<Mutex<Vec<Value>>>) -> Vec<u128> {
    got.lock()
        .expect("lock")
        .iter()
        .filter_map(|v| v["credit"]["message"]["cumulativeCredit"].as_str().and_then(|s| s.parse().ok()))
        .collect()
}

#[test]
fn a_users_towers_are_checked_durable_and_fed_her_newest_credit() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let node = InProcessNode::start(chain.config(dir.path().to_path_buf())).await;
        let http = Http::new(&node.url);
        let (mut a, mut b) = (Wallet::new(&chain, 1).await, Wallet::new(&chain, 2).await);
        register(&chain, &http, &mut a).await;
        register(&chain, &http, &mut b).await;
        let path = format!("/v1/accounts/{}/towers", a.address());
        // A credit issued before she names any tower.
        let buy = json!({"user": a.address(), "amount": "700", "purchaseId": payment_id(1)});
        assert_eq!(http.post("/v1/operator/purchases", Some(OPERATOR), &buy).await.0, 200);

        let (url, got) = recording_tower().await;
        let cases = [
            (b.token.as_deref(), json!({"towers": [url.clone()]}), 403, "forbidden"),
            (None, json!({"towers": [url.clone()]}), 401, "unauthorized"),
            (a.token.as_deref(), json!({"towers": vec![url.clone(); 5].iter().enumerate().map(|(i, u)| format!("{u}/{i}")).collect::<Vec<_>>()}), 400, "limit_exceeded"),
            (a.token.as_deref(), json!({"towers": ["ftp://tower"]}), 400, "malformed_request"),
            (a.token.as_deref(), json!({"towers": "http://not-a-list"}), 400, "malformed_request"),
        ];
        for (token, body, status, want) in cases {
            let (s, v) = put(&http, &path, token, &body).await;
            assert_eq!((s, code(&v)), (status, want), "{body}: {v}");
        }
        let stranger = format!("/v1/accounts/{}/towers", alloy::primitives::Address::repeat_byte(0x42));
        let (s, v) = put(&http, &stranger, Some(OPERATOR), &json!({"towers": [url.clone()]})).await;
        assert_eq!((s, code(&v)), (404, "unknown_account"), "{v}");
        assert!(got.lock().expect("lock").is_empty(), "nothing was pushed for a refused list");

        let (s, v) = put(&http, &path, a.token.as_deref(), &json!({"towers": [format!("{url}/")]})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["towers"], json!([url.clone()]), "normalised (no trailing slash)");
        // The credit issued before the list was set reaches the tower at once.
        eventually(20, "the existing credit pushed", || async { credit_totals(&got).contains(&700).then_some(()) }).await;
        // And each new one after it.
        let buy = json!({"user": a.address(), "amount": "50", "purchaseId": payment_id(2)});
        assert_eq!(http.post("/v1/operator/purchases", Some(OPERATOR), &buy).await.0, 200);
        eventually(20, "the new credit pushed", || async { credit_totals(&got).contains(&750).then_some(()) }).await;
        let pushed_for: Vec<Value> = got.lock().expect("lock").iter().map(|v| v["credit"]["message"]["user"].clone()).collect();
        assert!(pushed_for.iter().all(|u| u.as_str().map(str::to_lowercase) == Some(a.address().to_string().to_lowercase())), "only her credits: {pushed_for:?}");

        // Durable: a restarted node still has her list.
        node.stop().await;
        let node = InProcessNode::start(chain.config(dir.path().to_path_buf())).await;
        let http = Http::new(&node.url);
        let (s, v) = http.get(&path, Some(OPERATOR)).await;
        assert_eq!((s, v["towers"].clone()), (200, json!([url])), "{v}");
        node.stop().await;
    });
}

/// The operator's towers get each payer's newest debit after each payment (a second line of
/// defence against her exit with an older one while the node is down), and every user's newest
/// debit when the node starts.
#[test]
fn the_operators_towers_are_fed_each_payers_newest_debit() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let (url, got) = recording_tower().await;
        let mut config = chain.config(dir.path().to_path_buf());
        config.towers.operator_towers = vec![url.clone()];
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        let (mut a, mut b) = (Wallet::new(&chain, 1).await, Wallet::new(&chain, 2).await);
        register(&chain, &http, &mut a).await;
        register(&chain, &http, &mut b).await;
        let buy = json!({"user": a.address(), "amount": "1000", "purchaseId": payment_id(1)});
        assert_eq!(http.post("/v1/operator/purchases", Some(OPERATOR), &buy).await.0, 200);
        let debit_totals = |got: &Arc<Mutex<Vec<Value>>>| -> Vec<u128> {
            got.lock()
                .expect("lock")
                .iter()
                .filter_map(|v| v["debit"]["message"]["cumulativeDebit"].as_str().and_then(|s| s.parse().ok()))
                .collect()
        };
        for (i, amount) in [(10u64, 30u128), (11, 45)] {
            let (s, v) = a.pay(&http, &domain, infhub_core::PaymentKind::Internal, b.address(), amount, i).await;
            assert_eq!(s, 200, "{v}");
        }
        eventually(20, "the payer's newest debit pushed", || async { debit_totals(&got).contains(&75).then_some(()) })
            .await;
        // A user-signed debit, not a credit, and only the payer's.
        let users: Vec<Value> =
            got.lock().expect("lock").iter().map(|v| v["debit"]["message"]["user"].clone()).collect();
        assert!(
            users.iter().all(|u| u.as_str().map(str::to_lowercase) == Some(a.address().to_string().to_lowercase())),
            "{users:?}"
        );
        // A restarted node hands its towers every user's newest debit again.
        node.stop().await;
        got.lock().expect("lock").clear();
        let node = InProcessNode::start(config).await;
        eventually(20, "the newest debit pushed after a restart", || async {
            debit_totals(&got).contains(&75).then_some(())
        })
        .await;
        node.stop().await;
    });
}
