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
