//! Registrations arriving together: the hub opens their channels in one `openChannels`
//! transaction (up to the contract's `MAX_OPEN_BATCH`), and every channel is opened once.

use crate::harness::*;
use infhub_core::messages::{Registration, Signed};
use infhub_core::PrivateKey;
use std::collections::HashSet;

#[test]
fn concurrent_registrations_share_transactions_and_every_channel_opens() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let node = InProcessNode::start(chain.config(dir.path().to_path_buf())).await;
        let http = Http::new(&node.url);
        let head = chain.head().await;
        let users: Vec<PrivateKey> = (0..40u64)
            .map(|i| {
                let mut b = [0u8; 32];
                b[24..].copy_from_slice(&(0x5EED_0000 + i).to_be_bytes());
                PrivateKey::from_bytes(b).expect("key")
            })
            .collect();
        let bodies: Vec<serde_json::Value> = users
            .iter()
            .map(|k| {
                let r = Registration { user: k.address(), valid_until_block: head + 100 };
                serde_json::to_value(Signed::new(r, &domain, k)).expect("json")
            })
            .collect();
        let answers =
            futures_util::future::join_all(bodies.iter().map(|b| http.post("/v1/registrations", None, b))).await;
        let mut hashes = HashSet::new();
        for (s, v) in &answers {
            assert_eq!(*s, 200, "{v}");
            assert_eq!(v["status"], "opening", "{v}");
            hashes.insert(v["txHash"].as_str().expect("tx hash").to_string());
        }
        assert!(hashes.len() < users.len(), "40 registrations at once went out as {} transactions", hashes.len());
        chain.mine(2).await;
        eventually(20, "every channel open in the ledger", || async {
            let (_, info) = http.get("/v1/info", None).await;
            (info["accounts"].as_u64() == Some(users.len() as u64)).then_some(())
        })
        .await;
        // A second registration of an open channel answers "open" without a transaction.
        let (s, v) = http.post("/v1/registrations", None, &bodies[7]).await;
        assert_eq!((s, &v["status"]), (200, &serde_json::json!("open")), "{v}");
    })
}

/// Registration costs the hub gas, so new ones draw on a budget per source address (and one for
/// the hub): past it `registration_rate_limited` (429); an account already open draws nothing.
#[test]
fn new_registrations_beyond_the_address_budget_are_refused_by_name() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.limits.registrations_per_hour_per_address = 3;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let head = chain.head().await;
        let body = |i: u64| {
            let mut b = [0u8; 32];
            b[24..].copy_from_slice(&(0x00B0_0000 + i).to_be_bytes());
            let k = PrivateKey::from_bytes(b).expect("key");
            let r = Registration { user: k.address(), valid_until_block: head + 100 };
            serde_json::to_value(Signed::new(r, &domain, &k)).expect("json")
        };
        for i in 0..3 {
            let (s, v) = http.post("/v1/registrations", None, &body(i)).await;
            assert_eq!(s, 200, "{v}");
        }
        let (s, v) = http.post("/v1/registrations", None, &body(3)).await;
        assert_eq!(s, 429, "{v}");
        assert_eq!(v["error"]["code"], "registration_rate_limited", "{v}");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains("this address's"), "{v}");
        // Once the first is open, registering it again costs nothing and is still answered.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            chain.mine(1).await;
            let (s, v) = http.post("/v1/registrations", None, &body(0)).await;
            assert_eq!(s, 200, "an open account's registration draws nothing: {v}");
            if v["status"] == "open" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the channel never opened: {v}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
}
