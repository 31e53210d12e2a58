//! Hostile clients against the real `infhub` node binary on loopback (issue 19): for a bounded
//! time (`INFHUB_HOSTILE_SECS`, default 8), attackers on 127.0.0.1 flood login challenges, hold
//! slow headers and slow bodies, guess session tokens, send oversized headers, pipeline requests, replay one
//! registration, exhaust streams and send malformed WebSocket frames, all at once; meanwhile an
//! honest user on 127.0.0.2 logs in, pays and receives each credit on her stream. The test
//! fails if any honest step fails or a guessed token is accepted, and prints the honest
//! latencies, what the attackers got, and the node's peak memory.

use crate::harness::{Env, INF};
use alloy::primitives::{Address, B256, U256};
use futures_util::StreamExt;
use infhub_core::messages::{Login, PaymentKind, Signed};
use infhub_core::{Amount, Debit, Domain, PrivateKey, Registration};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the attackers were answered: HTTP status (or "closed") → count, per attack.
type Tally = Arc<Mutex<BTreeMap<String, BTreeMap<String, u64>>>>;

fn count(t: &Tally, attack: &str, outcome: impl ToString) {
    let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
    *t.entry(attack.into()).or_default().entry(outcome.to_string()).or_default() += 1;
}

fn honest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// POSTs `body` as JSON and reads the answer as JSON (any status).
async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let answer = http.post(url).json(body).send().await.map_err(|e| e.to_string())?;
    answer.json().await.map_err(|e| e.to_string())
}

async fn login(http: &reqwest::Client, base: &str, key: &PrivateKey, domain: &Domain) -> Result<String, String> {
    let user = key.address();
    let c = post_json(http, &format!("{base}/v1/auth/challenge"), &json!({"user": user})).await?;
    let challenge: B256 = serde_json::from_value(c["challenge"].clone()).map_err(|e| format!("{e}: {c}"))?;
    let signed = Signed::new(Login { user, challenge }, domain, key);
    let body = json!({"user": user, "challenge": challenge, "signature": signed.signature});
    let s = post_json(http, &format!("{base}/v1/auth/session"), &body).await?;
    s["token"].as_str().map(str::to_string).ok_or_else(|| format!("no session: {s}"))
}

/// Sends `head` on a raw connection from 127.0.0.1 and returns the status line's code, or
/// "closed".
async fn raw(addr: SocketAddr, head: &[u8], wait: Duration) -> String {
    let Ok(mut conn) = tokio::net::TcpStream::connect(addr).await else { return "refused".into() };
    if conn.write_all(head).await.is_err() {
        return "closed".into();
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(wait, conn.read(&mut buf)).await {
        Ok(Ok(n)) if n > 12 => String::from_utf8_lossy(&buf[9..12]).to_string(),
        Ok(_) => "closed".into(),
        Err(_) => "no answer".into(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// One signed registration sent 200 times at once; tallies the answers and how many distinct
/// transactions they name.
async fn replay_registration(base: String, domain: Domain, newcomer: PrivateKey, tally: Tally) {
    let r = Registration { user: newcomer.address(), valid_until_block: u64::MAX / 2 };
    let body = json!(Signed::new(r, &domain, &newcomer));
    let http = reqwest::Client::new();
    let sends = (0..200).map(|_| http.post(format!("{base}/v1/registrations")).json(&body).send());
    let answers = futures_util::future::join_all(sends).await;
    let mut txs = std::collections::BTreeSet::new();
    for a in answers {
        match a {
            Ok(r) => {
                count(&tally, "registration replay", r.status().as_u16());
                let v: Value = r.json().await.unwrap_or_default();
                if let Some(tx) = v["txHash"].as_str() {
                    txs.insert(tx.to_string());
                }
            }
            Err(_) => count(&tally, "registration replay", "error"),
        }
    }
    count(&tally, "registration replay", format!("{} distinct transactions", txs.len()));
}

/// Where the attacks aim, and until when.
struct Target {
    base: String,
    ws_base: String,
    addr: SocketAddr,
    deadline: Instant,
    domain: Domain,
    victim: Address,
}

/// Starts every attack; each runs until the deadline. `token` is the attacking account's
/// session; `newcomer` signs the replayed registration.
fn spawn_attacks(
    target: &Target,
    tally: &Tally,
    token: String,
    newcomer: PrivateKey,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (base, ws_base) = (target.base.clone(), target.ws_base.clone());
    let (addr, deadline, domain, victim) = (target.addr, target.deadline, target.domain, target.victim);
    let mut attacks = Vec::new();

    // Challenge floods with random addresses.
    for _ in 0..6 {
        let (base, tally) = (base.clone(), tally.clone());
        attacks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let user = Address::from_word(B256::from(U256::from(i ^ 0xDEAD_0000)));
                match http.post(format!("{base}/v1/auth/challenge")).json(&json!({"user": user})).send().await {
                    Ok(r) => count(&tally, "challenge flood", r.status().as_u16()),
                    Err(_) => count(&tally, "challenge flood", "error"),
                }
            }
        }));
    }
    // Slow bodies: each connection sends half a body and stalls until the node gives up on it.
    for _ in 0..200 {
        let tally = tally.clone();
        attacks.push(tokio::spawn(async move {
            let head = b"POST /v1/transfers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"message\":";
            while Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
                count(&tally, "slow body", raw(addr, head, left).await);
            }
        }));
    }
    // Headers that never finish (slowloris).
    for _ in 0..100 {
        let tally = tally.clone();
        attacks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
                count(&tally, "slow headers", raw(addr, b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ", left).await);
            }
        }));
    }
    // Session token guessing, oversized headers and pipelining.
    {
        let (base, tally) = (base.clone(), tally.clone());
        attacks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let guess = format!("{:064x}", U256::from(i).wrapping_mul(U256::from(0x9E37_79B9_7F4A_7C15u64)));
                match http.get(format!("{base}/v1/accounts/{victim}")).bearer_auth(guess).send().await {
                    Ok(r) => count(&tally, "token guessing", r.status().as_u16()),
                    Err(_) => count(&tally, "token guessing", "error"),
                }
                let mut huge = String::from("GET /v1/info HTTP/1.1\r\nHost: x\r\n");
                for h in 0..400 {
                    huge.push_str(&format!("X-Pad-{h}: {}\r\n", "a".repeat(200)));
                }
                huge.push_str("\r\n");
                count(&tally, "header flood", raw(addr, huge.as_bytes(), Duration::from_secs(5)).await);
                let pipelined = "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n".repeat(300);
                count(&tally, "pipelining", raw(addr, pipelined.as_bytes(), Duration::from_secs(5)).await);
            }
        }));
    }
    // One signed registration replayed 200 times at once (a fresh key).
    attacks.push(tokio::spawn(replay_registration(base.clone(), domain, newcomer, tally.clone())));
    // Stream exhaustion and malformed frames from one account (logged in before the floods).
    {
        let (ws_base, tally) = (ws_base.clone(), tally.clone());
        attacks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            while Instant::now() < deadline {
                match tokio_tungstenite::connect_async(format!("{ws_base}/v1/stream?token={token}")).await {
                    Ok((s, _)) => {
                        count(&tally, "stream exhaustion", 101);
                        held.push(s);
                    }
                    Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                        count(&tally, "stream exhaustion", r.status().as_u16())
                    }
                    Err(_) => count(&tally, "stream exhaustion", "error"),
                }
                // A hand-made upgrade, then bytes that are no WebSocket frame.
                let head = format!(
                    "GET /v1/stream?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                );
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(&[0xFF; 64]);
                count(&tally, "malformed frames", raw(addr, &bytes, Duration::from_secs(2)).await);
            }
            drop(held);
        }));
    }

    attacks
}

/// Prints what the honest user saw and what the attackers got.
fn report(secs: u64, logins: &mut [f64], payments: &mut [f64], credits: u64, tally: &Tally, peak: f64) {
    logins.sort_by(f64::total_cmp);
    payments.sort_by(f64::total_cmp);
    println!("hostile clients for {secs} s; the honest user (127.0.0.2) meanwhile:");
    println!(
        "  {} logins, p50 {:.1} / p99 {:.1} / max {:.1} ms; {} payments, p50 {:.1} / p99 {:.1} / max {:.1} ms; {credits} credits streamed",
        logins.len(),
        percentile(logins, 0.5),
        percentile(logins, 0.99),
        logins.last().copied().unwrap_or(f64::NAN),
        payments.len(),
        percentile(payments, 0.5),
        percentile(payments, 0.99),
        payments.last().copied().unwrap_or(f64::NAN),
    );
    for (attack, answers) in tally.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        println!("  {attack}: {answers:?}");
    }
    println!("  node peak memory (VmHWM): {peak:.0} MiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn honest_users_are_served_while_hostile_clients_attack() {
    let secs: u64 = std::env::var("INFHUB_HOSTILE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let env = Env::start().await;
    let (alice, bob, mallory) = (env.user(1, "alice"), env.user(2, "bob"), env.user(3, "mallory"));
    env.register(&alice).await;
    env.register(&bob).await;
    env.register(&mallory).await;
    env.ok(&alice, &["deposit", "100"]);
    let domain = Domain { chain_id: env.d.chain_id, verifying_contract: env.d.hub };
    let key = |i: usize| PrivateKey::from_bytes(infhub_chain::anvil::dev_key(i).0).expect("key");
    let (alice_key, bob_key, mallory_key) = (key(1), key(2), key(3));
    let base = env.hub_url.clone();
    let addr: SocketAddr = base.trim_start_matches("http://").parse().expect("addr");
    let ws_base = base.replace("http://", "ws://");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tally: Tally = Arc::default();
    let token = login(&reqwest::Client::new(), &base, &mallory_key, &domain).await.expect("mallory logs in");
    let target = Target { base: base.clone(), ws_base: ws_base.clone(), addr, deadline, domain, victim: alice.address };
    let attacks = spawn_attacks(&target, &tally, token, key(4));
    // The honest user: log in, pay, and see each credit arrive on the payee's stream.
    let http = honest_client();
    let bob_token = login(&http, &base, &bob_key, &domain).await.expect("bob logs in");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).expect("bind 127.0.0.2");
    let tcp = socket.connect(addr).await.expect("connect");
    let (mut bob_stream, _) = tokio_tungstenite::client_async(format!("{ws_base}/v1/stream?token={bob_token}"), tcp)
        .await
        .expect("bob's stream");
    let (mut logins, mut payments) = (Vec::new(), Vec::new());
    let mut cumulative = 0u128;
    let mut nonce = 0u64;
    while Instant::now() < deadline {
        let t = Instant::now();
        let token = login(&http, &base, &alice_key, &domain).await;
        logins.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(token.is_ok(), "an honest login failed under attack: {token:?}");
        nonce += 1;
        cumulative += INF / 100;
        let d = Debit {
            user: alice.address,
            epoch: 1,
            nonce,
            cumulative_debit: Amount(cumulative),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
            kind: PaymentKind::Internal as u8,
            recipient: bob.address,
            amount: Amount(INF / 100),
            payment_id: B256::from(U256::from(nonce)),
        };
        let t = Instant::now();
        let r = http.post(format!("{base}/v1/transfers")).json(&Signed::new(d, &domain, &alice_key)).send().await;
        payments.push(t.elapsed().as_secs_f64() * 1e3);
        let status = r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(status, 200, "an honest payment failed under attack: {r:?}");
    }
    // Each payment's credit reached bob's stream.
    let mut credits = 0u64;
    let until = Instant::now() + Duration::from_secs(20);
    while credits < nonce {
        let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until.into(), bob_stream.next()).await else { break };
        let v: Value = serde_json::from_str(msg.to_text().unwrap_or("{}")).unwrap_or_default();
        if v["notice"]["type"] == "credit" {
            credits += 1;
        }
    }
    for a in attacks {
        let _ = a.await;
    }
    let peak = env.hub_pid().map(peak_rss_mib).unwrap_or(f64::NAN);
    report(secs, &mut logins, &mut payments, credits, &tally, peak);
    assert!(nonce >= 3, "the honest user made too few payments to judge ({nonce})");
    assert_eq!(credits, nonce, "every honest payment's credit reached the payee's stream");
    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        !t["token guessing"].contains_key("200"),
        "a guessed session token was accepted: {:?}",
        t["token guessing"]
    );
    assert!(
        t["stream exhaustion"].get("101").copied().unwrap_or(0) <= 4,
        "one account held more streams than its share: {:?}",
        t["stream exhaustion"]
    );
    assert!(
        t["registration replay"].keys().any(|k| k == "1 distinct transactions" || k == "0 distinct transactions"),
        "a replayed registration sent more than one transaction: {:?}",
        t["registration replay"]
    );
    assert!(peak < 1024.0, "the node's memory grew to {peak:.0} MiB");
}
