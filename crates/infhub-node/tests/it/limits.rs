//! Named limits answer with a specific error instead of queueing without bound, and a
//! withdrawal authorization that expires unused releases its hold.

use crate::harness::*;
use alloy::primitives::{Address, B256};
use infhub_core::messages::{Login, Signed};
use serde_json::json;

#[test]
fn full_limits_shed_with_named_errors_and_an_unused_withdrawal_releases_its_hold() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.limits.max_websockets = 2;
        config.limits.max_streams_per_account = 1;
        config.limits.max_pending_challenges = 3;
        config.limits.max_challenges_per_account = 2;
        config.limits.max_sessions = 3;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let mut a = Wallet::new(&chain, 1).await;
        register(&chain, &http, &mut a).await; // logs in once

        // A flood of challenges and sessions for addresses the ledger does not know churns only
        // the strangers' pools: every request is answered, and an account still logs in.
        for i in 0..200u64 {
            let stranger = Address::from_word(B256::from(alloy::primitives::U256::from(0xF00D + i)));
            let (s, v) = http.post("/v1/auth/challenge", None, &json!({"user": stranger})).await;
            assert_eq!(s, 200, "a stranger's challenge is answered (the oldest is evicted): {v}");
        }
        for i in 0..10u64 {
            let mut stranger = Wallet::new(&chain, 3 + (i as usize % 3)).await;
            stranger.login(&http, &domain).await;
        }
        a.login(&http, &domain).await;
        let (s, v) = a.account(&http).await;
        assert_eq!(s, 200, "the account's new session works after the flood: {v}");
        // An account's own challenges are capped: a third replaces its first.
        let mut issued = Vec::new();
        for _ in 0..3 {
            let (s, c) = http.post("/v1/auth/challenge", None, &json!({"user": a.address()})).await;
            assert_eq!(s, 200, "{c}");
            issued.push(serde_json::from_value::<B256>(c["challenge"].clone()).expect("challenge"));
        }
        let login = |challenge: B256| {
            let signed = Signed::new(Login { user: a.address(), challenge }, &domain, &a.key);
            json!({"user": a.address(), "challenge": challenge, "signature": signed.signature})
        };
        let (s, v) = http.post("/v1/auth/session", None, &login(issued[0])).await;
        assert_eq!((s, code(&v)), (401, "unknown_challenge"), "the oldest was replaced: {v}");
        let (s, v) = http.post("/v1/auth/session", None, &login(issued[2])).await;
        assert_eq!(s, 200, "the newest still logs in: {v}");

        // WebSocket streams: one per account, two in all.
        let url =
            format!("{}/v1/stream?token={}", node.url.replace("http://", "ws://"), a.token.as_deref().expect("t"));
        let (first, _) = tokio_tungstenite::connect_async(&url).await.expect("first stream");
        let refused = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Ok(_) => 200,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(refused(tokio_tungstenite::connect_async(&url).await), 503, "a second stream of the same account");
        let operator_url = format!("{}/v1/stream?token={OPERATOR}", node.url.replace("http://", "ws://"));
        let (_operator_stream, _) = tokio_tungstenite::connect_async(&operator_url).await.expect("another holder");
        drop(first);
        eventually(10, "a closed stream frees its account's slot", || async {
            (refused(tokio_tungstenite::connect_async(&url).await) == 200).then_some(())
        })
        .await;
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

/// Writes `head` (and no more) on a raw connection to the node, then reads whatever answer
/// comes within `secs`: (status, JSON body, seconds taken).
async fn raw_request(url: &str, head: &str, secs: u64) -> (u16, serde_json::Value, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let started = std::time::Instant::now();
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(secs), async {
        let mut chunk = [0u8; 4096];
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    if let Some(body_at) = text.find("\r\n\r\n") {
                        if serde_json::from_str::<serde_json::Value>(&text[body_at + 4..]).is_ok() {
                            return;
                        }
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.find("\r\n\r\n").and_then(|i| serde_json::from_str(&text[i + 4..]).ok()).unwrap_or_default();
    (status, body, started.elapsed().as_secs_f64())
}

/// A client that sends bodies slowly or declares a huge one holds nothing for long, and one
/// source address cannot take every slot: an honest client from another address is served.
#[test]
fn slow_bodies_time_out_huge_ones_are_refused_at_once_and_one_address_gets_a_share() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        // Long enough that the two slow holders below overlap for a good while even when the
        // machine is loaded (at 700 ms a CI run once missed the window in which both held).
        config.limits.request_timeout_ms = 2_500;
        config.limits.max_requests_in_flight_per_address = 2;
        config.limits.header_read_timeout_ms = 500;
        let node = InProcessNode::start(config).await;

        // Headers that never finish: the connection is closed at the header deadline.
        let (s, _, secs) = raw_request(&node.url, "GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow:", 10).await;
        assert!(s == 0 || s == 408, "no answer to unfinished headers but a close, got {s}");
        assert!(secs < 5.0, "closed at the header deadline, not after {secs:.1} s");
        let slow = "POST /v1/transfers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"mess";

        // A declared 1 GB body: refused before any of it is read.
        let huge = "POST /v1/transfers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n";
        let (s, v, _) = raw_request(&node.url, huge, 5).await;
        assert_eq!((s, code(&v)), (413, "request_too_large"), "{v}");

        // A body that never completes: answered 408 at the deadline, not held.
        let (s, v, secs) = raw_request(&node.url, slow, 15).await;
        assert_eq!((s, code(&v)), (408, "request_timeout"), "{v}");
        assert!(secs < 7.0, "answered at the 2.5 s deadline, not after {secs:.1} s");

        // Two slow bodies from 127.0.0.1 hold its share; a third request from it is refused at
        // once, and a client from 127.0.0.2 is served meanwhile.
        let url = node.url.clone();
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let url = url.clone();
                // A probe below may take one of the two places first; a holder refused for
                // that tries again (found in CI: the probe and a holder raced for the share).
                tokio::spawn(async move {
                    loop {
                        let answer = raw_request(&url, slow, 15).await;
                        if answer.0 != 503 {
                            return answer;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        let v = eventually(10, "the two slow requests to hold 127.0.0.1's share", || async {
            let (s, v, _) = raw_request(&node.url, "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n", 5).await;
            (s == 503).then_some(v)
        })
        .await;
        assert_eq!(code(&v), "limit_exceeded", "{v}");
        let other = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .expect("client");
        let r = other.get(format!("{}/v1/info", node.url)).send().await.expect("another address");
        assert_eq!(r.status().as_u16(), 200, "another address is served while 127.0.0.1 is at its share");
        for h in holders {
            let (s, _, _) = h.await.expect("join");
            assert_eq!(s, 408);
        }
        let (s, _, _) = raw_request(&node.url, "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n", 5).await;
        assert_eq!(s, 200, "the share is free again once the slow requests ended");
        node.stop().await;
    });
}

/// One address cannot open more than its share of connections: the next is closed at once, a
/// client from another address is served, and the share frees as connections close.
#[test]
fn one_address_gets_a_share_of_the_connections() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.limits.max_connections_per_address = 3;
        let node = InProcessNode::start(config).await;
        let addr = node.url.trim_start_matches("http://").to_string();
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(tokio::net::TcpStream::connect(&addr).await.expect("connect"));
        }
        let info = "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n";
        eventually(10, "the node to count the three idle connections", || async {
            let (s, _, _) = raw_request(&node.url, info, 5).await;
            (s == 0).then_some(())
        })
        .await;
        let other =
            reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().expect("client");
        let r = other.get(format!("{}/v1/info", node.url)).send().await.expect("another address");
        assert_eq!(r.status().as_u16(), 200, "another address is served");
        idle.pop();
        eventually(10, "a closed connection frees its address's share", || async {
            let (s, _, _) = raw_request(&node.url, info, 5).await;
            (s == 200).then_some(())
        })
        .await;
        node.stop().await;
    });
}

/// One account's writes draw on its own budget (`limits.writes_per_second_per_account`): past it
/// `account_rate_limited` (429) while another account pays on; a debit forged in its name draws
/// nothing from it; a batch is counted per payer, all or none; the budget refills.
#[test]
fn an_account_that_writes_too_fast_is_told_to_wait_and_a_forger_cannot_spend_its_budget() {
    use infhub_core::messages::PaymentKind;
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.limits.writes_per_second_per_account = 3;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let (mut a, mut b) = (Wallet::new(&chain, 1).await, Wallet::new(&chain, 2).await);
        register(&chain, &http, &mut a).await;
        register(&chain, &http, &mut b).await;
        a.approve_and_deposit(&chain, 1_000).await;
        b.approve_and_deposit(&chain, 1_000).await;
        settle_chain(&chain, &http).await;
        // Forged debits in a's name (signed by b) are refused by the ledger and cost a nothing.
        for i in 0..5 {
            let d = a.debit(PaymentKind::Internal, b.address(), 1, payment_id(100 + i));
            let forged = serde_json::to_value(Signed::new(d, &domain, &b.key)).expect("json");
            let (s, v) = http.post("/v1/transfers", None, &forged).await;
            assert_eq!((s, code(&v)), (401, "wrong_signer"), "{v}");
        }
        // A batch of four from a is over her three: refused whole, nothing applied.
        let batch: Vec<serde_json::Value> = (0..4)
            .map(|i| {
                let mut d = a.debit(PaymentKind::Internal, b.address(), 1, payment_id(200 + i));
                d.nonce += i;
                d.cumulative_debit = infhub_core::Amount(d.cumulative_debit.0 + u128::from(i));
                a.sign_debit(&domain, d)
            })
            .collect();
        let (s, v) = http.post("/v1/transfers/batch", None, &json!({"transfers": batch})).await;
        assert_eq!((s, code(&v)), (429, "account_rate_limited"), "{v}");
        let mut limited = 0;
        for id in 1..=6 {
            let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 1, id).await;
            assert!(id > 1 || s == 200, "the forgeries and the refused batch left a's budget whole: {v}");
            match s {
                200 => {}
                429 => {
                    assert_eq!(code(&v), "account_rate_limited", "{v}");
                    limited += 1;
                }
                _ => panic!("{v}"),
            }
        }
        assert!(limited >= 2, "six payments at once, three a second: {limited} refused");
        let (s, v) = b.pay(&http, &domain, PaymentKind::Internal, a.address(), 1, 1).await;
        assert_eq!(s, 200, "another account's budget is its own: {v}");
        // Refilled after a second.
        let mut refilled = false;
        for _ in 0..25 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 1, 50).await;
            assert!(s == 200 || code(&v) == "account_rate_limited", "{v}");
            if s == 200 {
                refilled = true;
                break;
            }
        }
        assert!(refilled, "a's budget refills within five seconds");
        node.stop().await;
    });
}
