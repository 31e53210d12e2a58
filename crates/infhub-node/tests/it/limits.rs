//! Named limits answer with a specific error instead of queueing without bound, and a
//! withdrawal authorization that expires unused releases its hold.

use crate::harness::*;
use serde_json::json;

#[test]
fn full_limits_shed_with_named_errors_and_an_unused_withdrawal_releases_its_hold() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.limits.max_websockets = 1;
        config.limits.max_pending_challenges = 3;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let mut a = Wallet::new(&chain, 1).await;
        register(&chain, &http, &mut a).await; // uses one challenge, consumed by the login

        // Challenges: three outstanding at most.
        for _ in 0..3 {
            let (s, v) = http.post("/v1/auth/challenge", None, &json!({"user": a.address()})).await;
            assert_eq!(s, 200, "{v}");
        }
        let (s, v) = http.post("/v1/auth/challenge", None, &json!({"user": a.address()})).await;
        assert_eq!((s, code(&v)), (503, "limit_exceeded"), "{v}");

        // WebSocket streams: one at most.
        let url =
            format!("{}/v1/stream?token={}", node.url.replace("http://", "ws://"), a.token.as_deref().expect("t"));
        let (_first, _) = tokio_tungstenite::connect_async(&url).await.expect("first stream");
        let second = tokio_tungstenite::connect_async(&url).await;
        match second {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 503),
            other => panic!("second stream must be refused with 503, got {other:?}"),
        }
        let (_, metrics) = http.get("/metrics", None).await;
        assert!(!metrics.as_str().expect("text").contains("infhub_shed_total 0"), "shed requests not counted");

        // A withdrawal co-signed but never executed: the hold is released after its expiry.
        a.approve_and_deposit(&chain, 500).await;
        settle_chain(&chain, &http).await;
        let head = chain.head().await;
        let (_, body) = a.withdrawal(&domain, 200, head + 3);
        let (s, v) = http.post("/v1/withdrawals", None, &body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(amount(&a.account(&http).await.1["balance"]), 300, "withdrawal not held");
        chain.mine(6).await;
        eventually(15, "hold released after expiry", || async {
            let (_, v) = a.account(&http).await;
            (amount(&v["balance"]) == 500).then_some(())
        })
        .await;
        node.stop().await;
    });
}
