//! Issue 22 end to end: the node posts checkpoints on anvil, each wallet checks its leaf with
//! `infhub wallet verify`, and a deliberately dishonest hub (the test-only switch that leaves
//! one user's credit out of her leaf) is caught by that user's wallet, while the others' leaves
//! check out.

use crate::harness::{Env, INF};
use alloy::providers::Provider;
use serde_json::Value;

/// The hub's newest posted checkpoint (`GET /v1/checkpoints`), if any.
async fn posted(env: &Env) -> Option<Value> {
    let v: Value = reqwest::get(format!("{}/v1/checkpoints", env.hub_url)).await.ok()?.json().await.ok()?;
    v.get("posted").filter(|p| !p.is_null()).cloned()
}

async fn block_time(env: &Env, number: u64) -> u64 {
    let block = env.provider.get_block_by_number(number.into()).await.expect("rpc").expect("block");
    block.header.timestamp
}

#[tokio::test(flavor = "multi_thread")]
async fn wallets_verify_each_checkpoint_and_catch_a_hub_that_omits_a_credit() {
    let bob = infhub_core::PrivateKey::from_bytes(infhub_chain::anvil::dev_key(2).0).expect("key").address();
    let env = Env::start_with(|c| {
        c.checkpoints.interval_blocks = 5;
        c.checkpoints.dishonest_omit_credit_of = Some(bob);
    })
    .await;
    let (alice, bob, carol) = (env.user(1, "alice"), env.user(2, "bob"), env.user(3, "carol"));
    for u in [&alice, &bob, &carol] {
        env.register(u);
    }
    env.ok(&alice, &["deposit", "100"]);
    env.ok(&alice, &["pay", &bob.address.to_string(), "30"]);
    env.ok(&alice, &["pay", &carol.address.to_string(), "20"]);
    // Each payee's wallet takes its credit (journaled with the time it arrived).
    env.ok(&bob, &["balance"]);
    env.ok(&carol, &["balance"]);
    let credits_held_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();

    // A checkpoint whose block was mined after both credits arrived.
    let cp = env
        .until_value(60, "a checkpoint of a block after the credits", || async {
            let p = posted(&env).await?;
            let block = p["chainBlock"].as_u64()?;
            (block_time(&env, block).await > credits_held_at).then_some(p)
        })
        .await;
    let id = cp["id"].as_u64().expect("id").to_string();
    assert!(cp["totalLiability"].as_str().is_some(), "{cp}");

    // Alice (payer: her funds cover her claim) and carol (credited 20) check out.
    let v = env.ok(&alice, &["verify", "--id", &id, "--clock-skew-secs", "0"]);
    assert_eq!(v["verdict"], "ok", "{v}");
    assert_eq!(v["leaf"]["debitTotal"], (50 * INF).to_string(), "alice's leaf counts her two debits: {v}");
    let v = env.ok(&carol, &["verify", "--id", &id, "--clock-skew-secs", "0"]);
    assert_eq!(v["verdict"], "ok", "{v}");
    assert_eq!(v["leaf"]["liability"], (20 * INF).to_string(), "carol's credit is counted as owed: {v}");
    // Bob's leaf leaves out his 30: his wallet names the fault and exits non-zero.
    let (ok, v) = env.wallet(&bob, &["verify", "--id", &id, "--clock-skew-secs", "0"]);
    assert!(!ok, "the omission must fail bob's check: {v}");
    assert_eq!(v["error"]["code"], "leaf_omits_credit", "{v}");
    let journal = env.ok(&bob, &["history", "--limit", "5"]);
    assert!(journal.to_string().contains("omits a credit"), "the fault is journaled: {journal}");
    // Without an id the wallet checks the contract's newest checkpoint.
    let (ok, v) = env.wallet(&bob, &["verify", "--clock-skew-secs", "0"]);
    assert!(!ok && v["error"]["code"] == "leaf_omits_credit", "{v}");
}
