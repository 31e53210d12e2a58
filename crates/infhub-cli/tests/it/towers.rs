//! Watchtowers end to end (spec §5.10a), every part a real process: the hub node, a tower
//! (`infhub tower`) and the wallet CLI against anvil. The user adds the tower and stops her
//! wallet; she is paid while it is off (the hub pushes the credit to the tower: the wallet
//! never saw it); the hub's key then closes her channel with no credit on record and the hub
//! goes silent. The tower alone defends, settles, and she is paid exactly her off-chain balance
//! less the fee she offered.

use crate::harness::{Env, INF};
use infhub_chain::anvil;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct TowerProcess(Child);

impl Drop for TowerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_tower(env: &Env, key_index: usize) -> (TowerProcess, String) {
    let key_file = env.tmp.path().join("tower.key");
    std::fs::write(&key_file, anvil::DEV_KEYS[key_index]).expect("key file");
    let port = anvil::free_port().expect("port");
    let child = Command::new(env!("CARGO_BIN_EXE_infhub"))
        .args(["tower", "--rpc-url", &env.anvil.url, "--contract", &env.d.hub.to_string()])
        .arg("--key-file")
        .arg(&key_file)
        .arg("--data-dir")
        .arg(env.tmp.path().join("tower-data"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--grace-blocks", "2", "--poll-interval-ms", "100"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("infhub tower");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/health")).await.is_err() {
        assert!(Instant::now() < deadline, "the tower did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (TowerProcess(child), url)
}

async fn held_total(tower_url: &str, user: alloy::primitives::Address) -> Option<u128> {
    let r = reqwest::get(format!("{tower_url}/v1/appointments/{user}")).await.ok()?;
    let v: Value = r.json().await.ok()?;
    v["receipt"]["message"]["cumulativeCredit"].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tower_fed_only_by_the_hub_defends_an_offline_user_for_her_fee() {
    let mut env = Env::start().await;
    let (tower, tower_url) = start_tower(&env, 5).await;
    let tower_addr = infhub_core::PrivateKey::from_bytes(anvil::dev_key(5).0).expect("key").address();
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.register(&alice).await;
    env.register(&bob).await;
    env.ok(&alice, &["deposit", "40"]);
    // A tenth of what the tower saves her, at most 2 INF.
    let added = env.ok(&alice, &["towers", "add", &tower_url, "--max-fee", "2", "--share-bps", "1000"]);
    assert_eq!(added["tower"].as_str().map(str::to_lowercase), Some(tower_addr.to_string().to_lowercase()), "{added}");
    let listed = env.ok(&alice, &["towers", "list"]);
    assert_eq!(listed["towers"].as_array().map(Vec::len), Some(1), "{listed}");

    // Alice's wallet is off from here on. Bob pays her twice; only the hub can tell the tower.
    env.purchase(bob.address, 30 * INF, 1).await;
    env.ok(&bob, &["pay", &alice.address.to_string(), "4"]);
    env.ok(&bob, &["pay", &alice.address.to_string(), "6"]);
    env.until(30, "the hub to push alice's newest credit to the tower", || async {
        held_total(&tower_url, alice.address).await == Some(10 * INF)
    })
    .await;
    let alice_before = env.token_balance(alice.address).await;
    let tower_before = env.token_balance(tower_addr).await;

    // The hub's process stops, and its key closes alice's channel with no credit on record.
    env.kill_hub();
    env.stale_hub_close(alice.address).await;
    env.until(120, "the tower to defend and settle alice's channel", || async {
        env.token_balance(alice.address).await > alice_before
    })
    .await;
    let paid = env.token_balance(alice.address).await - alice_before;
    let fee = env.token_balance(tower_addr).await - tower_before;
    // Her claim: 40 deposited + 10 received = 50. The tower raised it from 40 to 50: a tenth
    // of 10 is 1, under the 2 cap.
    assert_eq!(fee, INF, "the tower earned exactly its share of what it saved");
    assert_eq!(paid, 49 * INF, "alice is paid her off-chain balance less the fee");
    // Her wallet, back on line, sees the settlement and the fee it paid.
    env.start_hub().await;
    let seen = env
        .until_value(60, "alice's wallet to see the settlement", || async {
            let v = env.ok(&alice, &["balance"]);
            (v["status"]["state"] == "settled").then_some(v)
        })
        .await;
    assert_eq!(seen["towerFeesPaid"], serde_json::json!(INF.to_string()), "{seen}");
    drop(tower);
}

/// A tower checks checkpoints for an offline user (spec §5.16): the hub pushes each user's
/// leaves of every confirmed checkpoint to her towers; a hub built to count half of Alice's
/// credit in her leaf (the test-only `dishonest_understate_credit_of`) is caught by her tower,
/// which holds the credit (the hub pushed it there) and proves the misstatement on chain while
/// Alice's wallet is off: the contract halts the hub.
#[tokio::test(flavor = "multi_thread")]
async fn a_tower_proves_a_checkpoint_that_misstates_an_offline_users_credit() {
    use alloy::providers::Provider;
    use alloy::sol_types::SolCall;
    use infhub_chain::bindings::IInfHub;
    let alice_addr = infhub_core::PrivateKey::from_bytes(anvil::dev_key(1).0).expect("key").address();
    let env = Env::start_with(|c| {
        c.checkpoints.interval_blocks = 5;
        c.checkpoints.dishonest_understate_credit_of = Some(alice_addr);
    })
    .await;
    let (_tower, tower_url) = start_tower(&env, 5).await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.register(&alice).await;
    env.register(&bob).await;
    env.ok(&alice, &["towers", "add", &tower_url, "--max-fee", "1", "--share-bps", "1000"]);
    // Alice's wallet is off from here on; Bob pays her 8 and the hub pushes the credit.
    env.ok(&bob, &["deposit", "20"]);
    env.ok(&bob, &["pay", &alice.address.to_string(), "8"]);
    env.until(30, "the hub to push alice's credit to her tower", || async {
        held_total(&tower_url, alice.address).await == Some(8 * INF)
    })
    .await;
    // The next checkpoints count 4 of her 8; the hub pushes her leaf to her tower, which
    // complains on chain.
    let halted = env
        .until_value(90, "the tower to halt the hub", || async {
            let req = alloy::rpc::types::TransactionRequest::default()
                .to(env.d.hub)
                .input(IInfHub::haltedAtCheckpointCall {}.abi_encode().into());
            let raw = env.provider.call(req).await.ok()?;
            let at = IInfHub::haltedAtCheckpointCall::abi_decode_returns(&raw).ok()?;
            (at != 0).then_some(at)
        })
        .await;
    let metrics = reqwest::get(format!("{tower_url}/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("infhub_tower_checkpoint_complaints_sent_total 1"), "{metrics}");
    assert!(!metrics.contains("infhub_tower_checkpoint_leaves_checked_total 0\n"), "{metrics}");
    // Leaves a forger hands the tower are refused by rule: a path into another root.
    let body = serde_json::json!({"checkpoint": halted, "proofs": [{
        "leaf": {"account": bob.address, "kind": "channel", "epoch": 1, "deposited": "1", "withdrawn": "0",
                 "creditNonce": 0, "creditTotal": "0", "debitNonce": 0, "debitTotal": "0", "liability": "0",
                 "salt": format!("0x{}", "11".repeat(32))},
        "path": {"index": 0, "siblings": []}}]});
    let r = reqwest::Client::new()
        .post(format!("{tower_url}/v1/checkpoint-proofs"))
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("json");
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("root_mismatch")), "{v}");
}
