//! Issue 22 end to end: the node posts checkpoints on anvil, each wallet checks its leaf with
//! `infhub wallet verify`, and a deliberately dishonest hub (the test-only switch that counts
//! half of one user's credit in her leaf) is caught by that user's wallet while the others'
//! leaves check out; her `complain` proves it on chain, the contract halts the hub, and the
//! honest users then exit in full.

use crate::harness::{amount, Env, User, INF};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IInfHub;
use serde_json::Value;
use std::process::Stdio;

/// `GET /v1/checkpoints`.
async fn checkpoints(env: &Env) -> Option<Value> {
    reqwest::get(format!("{}/v1/checkpoints", env.hub_url)).await.ok()?.json().await.ok()
}

/// The hub's newest posted checkpoint, if any.
async fn posted(env: &Env) -> Option<Value> {
    checkpoints(env).await?.get("posted").filter(|p| !p.is_null()).cloned()
}

/// Runs `watch --complain` as `u` until it says it complained (a proof on chain, or the halt
/// after an unanswered challenge), at most `secs`; returns everything it printed.
async fn watch_until_complained(env: &Env, u: &User, secs: u64) -> String {
    let mut watch = env.wallet_command(u, &["watch", "--complain"]).stdout(Stdio::piped()).spawn().expect("watch");
    let mut out = std::io::BufReader::new(watch.stdout.take().expect("watch stdout"));
    let complained = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let (mut seen, mut line) = (String::new(), String::new());
        while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            seen.push_str(&line);
            if line.contains("\"event\":\"complained\"") {
                return Ok(seen);
            }
            line.clear();
        }
        Err(seen)
    });
    let seen = tokio::time::timeout(std::time::Duration::from_secs(secs), complained).await;
    let _ = watch.kill();
    let _ = watch.wait();
    seen.unwrap_or_else(|_| panic!("the watch did not complain within {secs} s"))
        .expect("join")
        .unwrap_or_else(|s| panic!("{s}"))
}

async fn block_time(env: &Env, number: u64) -> u64 {
    let block = env.provider.get_block_by_number(number.into()).await.expect("rpc").expect("block");
    block.header.timestamp
}

#[tokio::test(flavor = "multi_thread")]
async fn wallets_verify_each_checkpoint_and_a_proven_misstatement_halts_the_hub() {
    let bob = infhub_core::PrivateKey::from_bytes(infhub_chain::anvil::dev_key(2).0).expect("key").address();
    let env = Env::start_with(|c| {
        c.checkpoints.interval_blocks = 5;
        c.checkpoints.dishonest_understate_credit_of = Some(bob);
    })
    .await;
    let (alice, bob, carol) = (env.user(1, "alice"), env.user(2, "bob"), env.user(3, "carol"));
    for u in [&alice, &bob, &carol] {
        env.register(u).await;
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
    let v = env.ok(&alice, &["verify", "--id", &id]);
    assert_eq!(v["verdict"], "ok", "{v}");
    assert_eq!(v["leaf"]["debitTotal"], (50 * INF).to_string(), "alice's leaf counts her two debits: {v}");
    let v = env.ok(&carol, &["verify", "--id", &id]);
    assert_eq!(v["verdict"], "ok", "{v}");
    assert_eq!(v["leaf"]["liability"], (20 * INF).to_string(), "carol's credit is counted as owed: {v}");
    // Bob's leaf counts 15 of his 30: his wallet names the fault and exits non-zero.
    let (ok, v) = env.wallet(&bob, &["verify", "--id", &id]);
    assert!(!ok, "the omission must fail bob's check: {v}");
    assert_eq!(v["error"]["code"], "leaf_omits_credit", "{v}");
    let journal = env.ok(&bob, &["history", "--limit", "5"]);
    assert!(journal.to_string().contains("omits a credit"), "the fault is journaled: {journal}");
    // Without an id the wallet checks the contract's newest checkpoint.
    let (ok, v) = env.wallet(&bob, &["verify"]);
    assert!(!ok && v["error"]["code"] == "leaf_omits_credit", "{v}");

    // Bob's `watch --complain` checks each new checkpoint and proves the misstatement on chain.
    let seen = watch_until_complained(&env, &bob, 90).await;
    assert!(seen.contains("\"event\":\"checkpoint_fault\""), "{seen}");

    // Alice holds no credit the leaf contradicts: nothing to prove. Bob's own `complain` proves
    // it again about the newest checkpoint (a repeated proof is accepted and changes nothing).
    let (ok, v) = env.wallet(&alice, &["complain"]);
    assert!(!ok && v["error"]["code"] == "invalid_input", "{v}");
    let v = env.ok(&bob, &["complain"]);
    assert_eq!(v["heldCredit"]["total"], (30 * INF).to_string(), "{v}");
    assert_eq!(v["leaf"]["creditTotal"], (15 * INF).to_string(), "{v}");
    let req = alloy::rpc::types::TransactionRequest::default()
        .to(env.d.hub)
        .input(IInfHub::haltedAtCheckpointCall {}.abi_encode().into());
    let raw = env.provider.call(req).await.expect("haltedAtCheckpoint");
    let halted = IInfHub::haltedAtCheckpointCall::abi_decode_returns(&raw).expect("decode");
    assert!(halted >= id.parse::<u64>().expect("id"), "the contract halted the hub at a misstated checkpoint");
    // The hub learns it from the chain and posts no more checkpoints.
    env.until(60, "the hub to see itself halted", || async {
        let v = checkpoints(&env).await;
        v.is_some_and(|v| v["haltedAtCheckpoint"].as_u64() == Some(halted))
    })
    .await;

    // The honest users exit in full: alice 100 − 50 = 50; carol 20, starting her exit with her
    // leaf of the newest checkpoint (the way a wallet that lost its proofs exits).
    for (u, owed, how) in [(&alice, 50 * INF, None), (&carol, 20 * INF, Some("--from-checkpoint"))] {
        let before = env.token_balance(u.address).await;
        let mut args = vec!["exit"];
        args.extend(how);
        let v = env.ok(u, &args);
        assert_eq!(amount(&v["paid"]), owed, "{v}");
        assert_eq!(env.token_balance(u.address).await - before, owed);
        if how.is_some() {
            let journal = env.ok(u, &["history", "--limit", "20"]).to_string();
            assert!(journal.contains("start_exit_from_checkpoint"), "carol's exit used her leaf: {journal}");
        }
    }
}

/// Reads `debitChallenges(account)`: (checkpoint id, answer-by block, open).
async fn debit_challenge(env: &Env, account: alloy::primitives::Address) -> (u64, u64, bool) {
    let req = alloy::rpc::types::TransactionRequest::default()
        .to(env.d.hub)
        .input(IInfHub::debitChallengesCall { account }.abi_encode().into());
    let raw = env.provider.call(req).await.expect("debitChallenges");
    let c = IInfHub::debitChallengesCall::abi_decode_returns(&raw).expect("decode");
    (c.checkpointId, c.answerByBlock, c.open)
}

async fn halted_at(env: &Env) -> u64 {
    let req = alloy::rpc::types::TransactionRequest::default()
        .to(env.d.hub)
        .input(IInfHub::haltedAtCheckpointCall {}.abi_encode().into());
    let raw = env.provider.call(req).await.expect("haltedAtCheckpoint");
    IInfHub::haltedAtCheckpointCall::abi_decode_returns(&raw).expect("decode")
}

/// The debit challenge end to end (spec §5.16): a hub whose checkpoints state more debit than
/// alice signed (the test-only `dishonest_invent_debit_of`) is caught by her wallet's check; her
/// `watch --complain` challenges the debit on chain, the hub has no signature of hers to answer
/// with, and once the period is over her watch halts the hub. Bob challenges his honest leaf
/// anyway (`--challenge-debit`, as a wallet restored without its journal would): the hub
/// answers with his signed debit and nothing halts until alice's proof. Bob and carol then
/// exit in full.
#[tokio::test(flavor = "multi_thread")]
async fn an_invented_debit_goes_unanswered_and_halts_the_hub_while_an_honest_one_is_answered() {
    let alice = infhub_core::PrivateKey::from_bytes(infhub_chain::anvil::dev_key(1).0).expect("key").address();
    let env = Env::start_with(|c| {
        c.checkpoints.interval_blocks = 5;
        c.checkpoints.dishonest_invent_debit_of = Some(alice);
    })
    .await;
    let (alice, bob, carol) = (env.user(1, "alice"), env.user(2, "bob"), env.user(3, "carol"));
    for u in [&alice, &bob, &carol] {
        env.register(u).await;
    }
    env.ok(&alice, &["deposit", "100"]);
    env.ok(&bob, &["deposit", "50"]);
    env.ok(&alice, &["pay", &bob.address.to_string(), "30"]);
    env.ok(&bob, &["pay", &carol.address.to_string(), "10"]);
    env.ok(&carol, &["balance"]);
    let paid_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let cp = env
        .until_value(60, "a checkpoint of a block after the payments", || async {
            let p = posted(&env).await?;
            let block = p["chainBlock"].as_u64()?;
            (block_time(&env, block).await > paid_at).then_some(p)
        })
        .await;
    let id = cp["id"].as_u64().expect("id");

    // Alice's leaf states a debit she never signed; bob's leaf checks out.
    let (ok, v) = env.wallet(&alice, &["verify", "--id", &id.to_string()]);
    assert!(!ok && v["error"]["code"] == "leaf_debit_unsigned", "{v}");
    let v = env.ok(&bob, &["verify", "--id", &id.to_string()]);
    assert_eq!(v["verdict"], "ok", "{v}");
    // Bob's wallet finds nothing to prove; he challenges his debit anyway and the hub answers.
    let (ok, v) = env.wallet(&bob, &["complain", "--id", &id.to_string()]);
    assert!(!ok && v["error"]["code"] == "invalid_input", "{v}");
    let v = env.ok(&bob, &["complain", "--id", &id.to_string(), "--challenge-debit"]);
    assert_eq!(v["proof"], "debit_challenged", "{v}");
    env.until(60, "the hub to answer bob's challenge", || async {
        let (cid, _, open) = debit_challenge(&env, bob.address).await;
        cid == id && !open
    })
    .await;
    assert_eq!(halted_at(&env).await, 0, "an answered challenge halts nothing");
    let (ok, v) = env.wallet(&bob, &["complain", "--id", &id.to_string(), "--challenge-debit"]);
    assert!(!ok && v["error"]["code"] == "transaction_failed", "the same checkpoint twice is refused: {v}");
    assert!(v.to_string().contains("DebitChallengeOutOfOrder"), "{v}");

    // Alice's watch challenges the invented debit, waits out the period and halts the hub.
    let seen = watch_until_complained(&env, &alice, 120).await;
    assert!(seen.contains("\"event\":\"challenged\""), "{seen}");
    let at = halted_at(&env).await;
    assert!(at >= id, "the contract halted the hub at the checkpoint with the invented debit: {at}");
    let c = debit_challenge(&env, alice.address).await;
    assert!(!c.2, "the challenge ended in the halt: {c:?} halted at {at}: {seen}");

    // The honest users exit in full: bob 50 + 30 − 10 = 70, carol 10.
    for (u, owed) in [(&bob, 70 * INF), (&carol, 10 * INF)] {
        let before = env.token_balance(u.address).await;
        let v = env.ok(u, &["exit"]);
        assert_eq!(amount(&v["paid"]), owed, "{v}");
        assert_eq!(env.token_balance(u.address).await - before, owed);
    }
}
