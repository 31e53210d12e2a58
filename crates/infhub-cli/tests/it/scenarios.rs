//! The scenarios of the wallet issue, each from a fresh chain and hub.

use crate::harness::{amount, Env, LossyProxy, User, INF};
use alloy::primitives::B256;
use serde_json::json;
use std::process::Stdio;

/// Seed 000's lifecycle with two users: register, deposit on chain, buy from the platform,
/// pay each other, pay an outside address, withdraw part, withdraw the rest.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_of_two_users() {
    let env = Env::start().await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    let outside = alloy::primitives::Address::repeat_byte(0x42);
    let alice_tokens = env.token_balance(alice.address).await;
    let bob_tokens = env.token_balance(bob.address).await;
    env.register(&alice).await;
    env.register(&bob).await;

    let v = env.ok(&alice, &["deposit", "100"]);
    assert_eq!(amount(&v["balance"]), 100 * INF);
    invoice_is_signed_and_its_proof_of_payment_comes_from_the_key(&env, &bob);
    env.purchase(bob.address, 50 * INF, 1).await;
    let v = env.ok(&bob, &["balance"]);
    assert_eq!(amount(&v["balance"]), 50 * INF, "the purchase's credit reached bob's wallet: {v}");
    assert_eq!(v["hubAgrees"], true);

    // Bob's payment request: an id of his; alice's signature binds it, both look it up by it,
    // and paying it again is the first payment's answer, not a second payment.
    let request = "0x00000000000000000000000000000000000000000000000000000000000c0ffe";
    let v = env.ok(&alice, &["pay", &bob.address.to_string(), "30", "--payment-id", request]);
    assert_eq!(amount(&v["balance"]), 70 * INF);
    let (ok, again) = env.wallet(&alice, &["pay", &bob.address.to_string(), "30", "--payment-id", request]);
    assert!(!ok && again.to_string().contains("payment_id_reused"), "not paid twice: {again}");
    assert_eq!(amount(&env.ok(&alice, &["balance"])["balance"]), 70 * INF, "nothing signed, nothing held");
    let seen = env.ok(&bob, &["payment", request]);
    assert_eq!(seen["status"], "received", "{seen}");
    let sent = env.ok(&alice, &["payment", request]);
    assert_eq!(sent["status"], "paid", "{sent}");
    assert!(sent["entries"][0]["receipt"].is_object(), "the hub's receipt with it: {sent}");
    let v = env.ok(&bob, &["pay", &alice.address.to_string(), "10"]);
    assert_eq!(amount(&v["balance"]), 70 * INF, "bob took alice's credit before paying: {v}");
    let v = env.ok(&alice, &["pay-external", &outside.to_string(), "5"]);
    assert_eq!(amount(&v["balance"]), 75 * INF, "70 + 10 received − 5: {v}");
    env.until(60, "the external payout on chain", || async { env.token_balance(outside).await == 5 * INF }).await;
    // The wallet shows where the payout stands and the transaction that paid it.
    let id = v["hub"]["result"]["receipt"]["message"]["paymentId"].as_str().expect("payment id").to_string();
    // The tokens can arrive before the node has read the receipt ("sent" until then): wait for
    // the node to see it mined, then it must name the transaction.
    let p = env
        .until_value(60, "the payout's status to say it was mined", || async {
            let p = env.ok(&alice, &["payout", &id]);
            ["mined", "executed"].contains(&p["status"]["status"].as_str().unwrap_or("")).then_some(p)
        })
        .await;
    assert!(p["status"]["txHash"].is_string(), "a mined payout names its transaction: {p}");

    let v = env.ok(&alice, &["withdraw", "20"]);
    assert_eq!(amount(&v["withdrawn"]), 20 * INF);
    assert_eq!(amount(&v["balance"]), 55 * INF);
    assert_eq!(env.token_balance(alice.address).await, alice_tokens - 100 * INF + 20 * INF);
    let v = env.ok(&alice, &["withdraw", "all"]);
    assert_eq!(amount(&v["withdrawn"]), 55 * INF);
    assert_eq!(amount(&v["balance"]), 0);
    assert_eq!(env.token_balance(alice.address).await, alice_tokens - 25 * INF, "alice: −100 + 30… net −25");
    let v = env.ok(&bob, &["withdraw", "all"]);
    assert_eq!(amount(&v["withdrawn"]), 70 * INF, "bob: 50 bought + 30 − 10");
    assert_eq!(env.token_balance(bob.address).await, bob_tokens + 70 * INF);

    let v = env.ok(&alice, &["balance"]);
    assert_eq!(v["hubAgrees"], true, "{v}");
    let s = env.solvency().await;
    assert_eq!(s["contractBalanced"], true, "{s}");
    env.until(30, "the hub's ledger to match the chain", || async {
        env.solvency().await["ledgerMatchesChain"] == true
    })
    .await;
    let history = env.ok(&alice, &["history", "--limit", "100"]);
    let kinds: Vec<&str> =
        history["entries"].as_array().expect("entries").iter().filter_map(|e| e["kind"].as_str()).collect();
    for k in ["registered", "deposited", "payment_applied", "credit", "withdrawal_co_signed", "withdrawn"] {
        assert!(kinds.contains(&k), "alice's journal lacks {k}: {kinds:?}");
    }
    statements_by_date(&env, &alice);
    merchant_commands(&env, &bob);
}

/// `infhub wallet events` and `webhook set|show|remove` (spec §5.24): the feed ascends and
/// resumes from its cursor; a webhook shows its URL but never again its secret.
fn merchant_commands(env: &Env, bob: &User) {
    let feed = env.ok(bob, &["events", "--after", "0", "--limit", "3"]);
    let seqs: Vec<u64> = feed["events"].as_array().expect("events").iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.len() >= 3 && seqs.windows(2).all(|w| w[0] < w[1]), "oldest first: {feed}");
    let next = feed["nextAfter"].as_u64().expect("cursor");
    let rest = env.ok(bob, &["events", "--after", &next.to_string(), "--limit", "200"]);
    assert!(rest["events"].as_array().expect("events").iter().all(|e| e["seq"].as_u64() > Some(next)), "{rest}");
    let set = env.ok(bob, &["webhook", "set", "http://127.0.0.1:9/hooks"]);
    assert!(set["secret"].as_str().is_some_and(|s| s.len() == 66), "{set}");
    let shown = env.ok(bob, &["webhook", "show"]);
    assert_eq!((&shown["url"], shown.get("secret")), (&json!("http://127.0.0.1:9/hooks"), None), "{shown}");
    env.ok(bob, &["webhook", "remove"]);
    let (ok, gone) = env.wallet(bob, &["webhook", "show"]);
    assert!(!ok && gone.to_string().contains("unknown_webhook"), "{gone}");
}

/// `infhub wallet statement` and `history` with date ranges (spec §5.21a): the hub's lines
/// with their times and running balance, none before the account existed, a typo named.
fn statements_by_date(env: &Env, alice: &User) {
    let st = env.ok(alice, &["statement"]);
    let lines = st["lines"].as_array().expect("lines");
    assert!(lines.len() >= 6, "opened, deposit, pays, withdrawals: {st}");
    assert!(lines.iter().all(|l| l["atMs"].as_u64().is_some_and(|t| t > 1_700_000_000_000)), "{st}");
    assert_eq!((&st["openingBalance"], &st["closingBalance"]), (&json!("0"), &json!("0")), "withdrew all: {st}");
    let before = env.ok(alice, &["statement", "--to", "1999-12-31"]);
    assert_eq!(before["lines"], json!([]), "{before}");
    let later = env.ok(alice, &["history", "--from", "2999-01-01"]);
    assert_eq!(later["entries"], json!([]), "{later}");
    let (ok, refused) = env.wallet(alice, &["statement", "--from", "2026-02-30"]);
    assert!(!ok && refused.to_string().contains("2026-02-30"), "a date that does not exist is named: {refused}");
}

/// `infhub wallet invoice` (spec §5.19): a signed invoice addressed `bob@hub-host` in his hub
/// contract's domain, whose payment point the key alone derives; a zero amount is refused.
fn invoice_is_signed_and_its_proof_of_payment_comes_from_the_key(env: &Env, bob: &User) {
    use infhub_core::invoice::{invoice_scalar, SignedInvoice};
    let v = env.ok(bob, &["invoice", "2.5", "--description", "two coffees", "--expires-in-seconds", "600"]);
    let invoice: SignedInvoice = serde_json::from_value(v["invoice"].clone()).expect("an invoice");
    let domain = infhub_core::Domain { chain_id: env.d.chain_id, verifying_contract: env.d.hub };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let point = invoice.check(&domain, now).expect("a valid invoice");
    assert_eq!(invoice.message.amount.0, 5 * INF / 2);
    assert_eq!(invoice.message.payee.user, bob.address);
    assert!(invoice.message.payee.host.starts_with("127.0.0.1:"), "{}", invoice.message.payee);
    assert_eq!(invoice.message.description_hash, alloy::primitives::keccak256("two coffees"));
    assert_eq!(invoice.check(&domain, now + 601), Err(infhub_core::Error::InvoiceExpired));
    let key_bytes = infhub_core::signature::hex_decode(bob.key.trim_start_matches("0x")).expect("hex key");
    let key = infhub_core::PrivateKey::from_bytes(key_bytes.try_into().expect("32 bytes")).expect("key");
    assert_eq!(invoice_scalar(&key, invoice.message.invoice_id).point(), point, "derived from the key alone");
    let (ok, refused) = env.wallet(bob, &["invoice", "0"]);
    assert!(!ok, "a zero invoice is refused: {refused}");
}

/// With the hub killed, a user exits alone and gets exactly the off-chain balance: the
/// wallet submits its newest credit and its own newest debit.
#[tokio::test(flavor = "multi_thread")]
async fn exit_while_the_hub_is_down_pays_exactly_the_balance() {
    let mut env = Env::start().await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.register(&alice).await;
    env.register(&bob).await;
    env.ok(&alice, &["deposit", "50"]);
    env.purchase(bob.address, 30 * INF, 1).await;
    env.ok(&bob, &["pay", &alice.address.to_string(), "10"]);
    let v = env.ok(&alice, &["pay", &bob.address.to_string(), "5"]);
    assert_eq!(amount(&v["balance"]), 55 * INF);
    let credit_nonce = env.ok(&alice, &["sync"])["creditNonce"].as_u64().expect("a credit nonce");

    env.kill_hub();
    let before = env.token_balance(alice.address).await;
    // Without the hub, the wallet says what it may be missing and waits for a confirmation.
    let (ok, v) = env.wallet(&alice, &["exit"]);
    assert!(!ok && v["error"]["code"] == "exit_not_confirmed", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    // Credit nonces are ledger positions (spec §3): the wallet names the one it holds.
    let newest = format!("newest credit is #{credit_nonce}");
    assert!(message.contains(&newest) && message.contains("10 INF received"), "{message}");
    assert_eq!(env.ok(&alice, &["balance"])["status"]["state"], "open", "nothing started");
    let v = env.ok(&alice, &["exit", "--yes"]);
    assert_eq!(amount(&v["paid"]), 55 * INF, "{v}");
    assert_eq!(amount(&v["expected"]), 55 * INF, "{v}");
    assert_eq!(env.token_balance(alice.address).await - before, 55 * INF);
    let v = env.ok(&alice, &["balance"]);
    assert_eq!(v["status"]["state"], "settled");
    assert_eq!(amount(&v["balance"]), 0);
}

/// A user restores an old backup of its wallet (from before a payment) and exits with the
/// stale proofs; the hub answers with the newest debit and the settlement is the true balance.
#[tokio::test(flavor = "multi_thread")]
async fn exit_with_an_old_proof_is_corrected_by_the_hubs_dispute() {
    let env = Env::start().await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    let (backup, v) = env.stale_backup_scenario(&alice, &bob).await;
    assert_eq!(amount(&v["balance"]), 45 * INF);

    let restored = User { dir: backup, ..alice.clone() };
    let before = env.token_balance(alice.address).await;
    let v = env.ok(&restored, &["exit", "--offline", "--yes"]);
    assert_eq!(amount(&v["expected"]), 60 * INF, "the stale wallet believes 50 + 10: {v}");
    assert_eq!(amount(&v["paid"]), 45 * INF, "the hub's dispute held it to 50 + 10 − 15: {v}");
    assert_eq!(env.token_balance(alice.address).await - before, 45 * INF);
    assert_eq!(env.solvency().await["contractBalanced"], true);
}

/// The hub starts a close with none of the user's credits on record and goes silent (an honest
/// hub would put its newest credit on record itself, §5.10; this one withholds it): the user's
/// `watch`, which reads the chain without the hub, submits the newest credit before the
/// challenge period ends and settles.
#[tokio::test(flavor = "multi_thread")]
async fn watch_defends_a_hub_close_with_a_stale_proof() {
    let mut env = Env::start().await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.register(&alice).await;
    env.register(&bob).await;
    env.ok(&alice, &["deposit", "40"]);
    env.purchase(bob.address, 20 * INF, 1).await;
    let before = env.token_balance(alice.address).await;
    let mut watch = env.wallet_command(&alice, &["watch"]).stdout(Stdio::piped()).spawn().expect("watch");
    // Wait until the watch follows the stream (its readiness line), not a fixed time: the
    // credit then arrives while the watch runs, and it stores it from the stream.
    let mut lines = std::io::BufReader::new(watch.stdout.take().expect("watch stdout"));
    let mut seen = String::new();
    let subscribed = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            seen.push_str(&line);
            if line.contains("\"event\":\"subscribed\"") {
                return Ok((lines, seen));
            }
            line.clear();
        }
        Err(seen)
    });
    let (mut lines, mut seen) = tokio::time::timeout(std::time::Duration::from_secs(60), subscribed)
        .await
        .expect("the watch subscribed within 60 s")
        .expect("join")
        .unwrap_or_else(|seen| panic!("the watch ended before subscribing:\n{seen}"));
    env.ok(&bob, &["pay", &alice.address.to_string(), "10"]);
    env.until(30, "alice's watch to store the credit", || async {
        let journal = std::fs::read_to_string(alice.dir.join("journal.jsonl")).unwrap_or_default();
        journal.lines().any(|l| l.contains("\"kind\":\"credit\""))
    })
    .await;

    // The hub's process stops, and its key closes alice's channel with no proof at all.
    env.kill_hub();
    env.stale_hub_close(alice.address).await;
    env.until(90, "the close to settle with alice's credit", || async {
        env.token_balance(alice.address).await > before
    })
    .await;
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = std::io::Read::read_to_string(&mut lines, &mut seen);
    let lines = seen;
    assert!(lines.contains("\"event\":\"defence\""), "the watch raised no dispute:\n{lines}");
    assert_eq!(env.token_balance(alice.address).await - before, 50 * INF, "40 deposited + 10 received:\n{lines}");
    env.start_hub().await;
    env.until(30, "alice's wallet to see the settlement confirmed", || async {
        env.ok(&alice, &["balance"])["status"]["state"] == "settled"
    })
    .await;
}

/// The hub restarts while the user's `watch` runs (it forgets every session): the watch logs in
/// again, resubscribes, and stores a credit paid to her after the restart.
#[tokio::test(flavor = "multi_thread")]
async fn watch_keeps_storing_credits_across_a_hub_restart() {
    let mut env = Env::start().await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.register(&alice).await;
    env.register(&bob).await;
    env.purchase(bob.address, 20 * INF, 1).await;
    let mut watch = env.wallet_command(&alice, &["watch"]).stdout(Stdio::piped()).spawn().expect("watch");
    let lines = std::io::BufReader::new(watch.stdout.take().expect("watch stdout"));
    // Every line the watch prints, as it prints it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in lines.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = async |what: &str, seen: &mut String| {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(what) {
                        return;
                    }
                }
                _ => panic!("the watch never said {what}:\n{seen}"),
            }
        }
    };
    wait_for("\"event\":\"subscribed\"", &mut seen).await;
    env.kill_hub();
    env.start_hub().await;
    // The watch notices the stream is gone, and follows the restarted hub again.
    wait_for("\"event\":\"subscribed\"", &mut seen).await;
    env.ok(&bob, &["pay", &alice.address.to_string(), "7"]);
    env.until(60, "alice's watch to store the credit paid after the restart", || async {
        let journal = std::fs::read_to_string(alice.dir.join("journal.jsonl")).unwrap_or_default();
        journal.lines().any(|l| l.contains("\"kind\":\"credit\""))
    })
    .await;
    let _ = watch.kill();
    let _ = watch.wait();
}

/// The honest hub closes a dormant user's channel while her wallet is not running: the hub puts
/// its own newest credit on record (the HonourCredit duty, §5.10) and settles, so she is paid
/// her deposit and what she received without doing anything.
#[tokio::test(flavor = "multi_thread")]
async fn an_honest_hub_close_pays_the_credits_the_hub_issued() {
    let env = Env::start().await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.register(&alice).await;
    env.register(&bob).await;
    env.ok(&alice, &["deposit", "40"]);
    env.purchase(bob.address, 20 * INF, 1).await;
    env.ok(&bob, &["pay", &alice.address.to_string(), "10"]);
    let before = env.token_balance(alice.address).await;
    env.hub_close(alice.address).await;
    env.until(90, "the hub's close to settle and pay alice", || async {
        env.token_balance(alice.address).await > before
    })
    .await;
    assert_eq!(env.token_balance(alice.address).await - before, 50 * INF, "40 deposited + 10 received");
    assert_eq!(env.solvency().await["contractBalanced"], true);
}

/// A wallet restarted from its store continues where it was: a payment whose answer was lost
/// on the network (the hub applied it) is resent with the same payment id by the next
/// command and counted exactly once, and the next payment follows with the next nonce. With
/// the hub down, a payment is refused before anything is signed, and the balance still shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_wallet_continues_from_its_store() {
    let mut env = Env::start().await;
    let proxy = LossyProxy::start(&env.hub_url).await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.ok(&alice, &["register", "--hub-url", &proxy.url, "--rpc-url", &env.anvil.url]);
    env.register(&bob).await;
    env.ok(&alice, &["deposit", "30"]);

    proxy.lose_answers_to(Some("POST /v1/transfers"));
    let (ok, v) = env.wallet(&alice, &["pay", &bob.address.to_string(), "5"]);
    assert!(!ok);
    assert_eq!(v["error"]["code"], "payment_uncertain", "{v}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(alice.dir.join("state.json")).expect("state")).expect("json");
    assert!(!state["pendingDebit"].is_null(), "the signed debit was stored before sending");
    proxy.lose_answers_to(None);

    // A new process: resends the pending debit (the hub answers with the first result), then pays.
    let v = env.ok(&alice, &["pay", &bob.address.to_string(), "3"]);
    assert_eq!(amount(&v["balance"]), 22 * INF, "30 − 5 − 3: {v}");
    let v = env.ok(&alice, &["balance"]);
    assert_eq!(v["debitNonce"], 2);
    assert_eq!(v["hubAgrees"], true, "{v}");
    let v = env.ok(&bob, &["balance"]);
    assert_eq!(amount(&v["balance"]), 8 * INF, "bob got both payments exactly once: {v}");
    let journal = std::fs::read_to_string(alice.dir.join("journal.jsonl")).expect("journal");
    assert_eq!(journal.lines().filter(|l| l.contains("\"kind\":\"payment_applied\"")).count(), 2);

    env.kill_hub();
    let (ok, v) = env.wallet(&alice, &["pay", &bob.address.to_string(), "1"]);
    assert!(!ok);
    assert_eq!(v["error"]["code"], "hub_unreachable", "{v}");
    let (ok, v) = env.wallet(&alice, &["balance"]);
    assert!(ok, "balance works without the hub: {v}");
    assert_eq!(amount(&v["balance"]), 22 * INF, "nothing was signed while the hub was down: {v}");
    assert_eq!(v["hubAgrees"], serde_json::Value::Null, "no hub to agree: {v}");
    env.start_hub().await;
    let v = env.ok(&alice, &["balance"]);
    assert_eq!(v["hubAgrees"], true, "{v}");
}

/// A keystore made by `init` opens with its password and refuses a wrong one; errors are
/// one sentence with a code.
#[tokio::test(flavor = "multi_thread")]
async fn keystore_init_and_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = |args: &[&str], password: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_infhub"))
            .arg("wallet")
            .arg("--json")
            .args(args)
            .env("INFHUB_WALLET_DIR", dir.path())
            .env("INFHUB_WALLET_PASSWORD", password)
            .env_remove("INFHUB_WALLET_KEY")
            .stdin(Stdio::null())
            .output()
            .expect("run");
        (out.status.success(), serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default())
    };
    let (ok, v) = run(&["address"], "pw");
    assert!(!ok);
    assert_eq!(v["error"]["code"], "no_key");
    let (ok, made) = run(&["init", "--scrypt-log-n", "10"], "pw");
    assert!(ok, "{made}");
    let (ok, v) = run(&["address"], "pw");
    assert!(ok);
    assert_eq!(v["address"], made["address"]);
    let (ok, v) = run(&["address"], "not the password");
    assert!(!ok);
    assert_eq!(v["error"]["code"], "wrong_password");
    let (ok, v) = run(&["init"], "pw");
    assert!(!ok);
    assert_eq!(v["error"]["code"], "key_exists");
    let (ok, v) = run(&["balance"], "pw");
    assert!(!ok);
    assert_eq!(v["error"]["code"], "not_registered");
}

/// The operator's commands: the liquidity picture, a reserve withdrawal announced through the
/// ledger's rule and cancelled, the link commands, and named refusals.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_sees_liquidity_and_announces_and_cancels_a_reserve_withdrawal() {
    let env = Env::start().await;
    let (ok, out) = env.operator(&["liquidity"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let reserve = amount(&v["liquidity"]["reserve"]);
    assert!(reserve > 0 && v["liquidity"]["free"] == v["liquidity"]["reserve"], "{v}");
    let (ok, out) = env.operator(&["withdraw-reserve", "1000"]);
    assert!(ok, "{out}");
    env.until(30, "the announcement confirmed", || async {
        let (_, out) = env.operator(&["liquidity"]);
        out.contains("unlockBlock")
    })
    .await;
    let (ok, out) = env.operator(&["withdraw-reserve", "1"]);
    assert!(!ok && out.contains("reserve_withdrawal_pending"), "one at a time: {out}");
    let (ok, out) = env.operator(&["cancel-reserve-withdrawal"]);
    assert!(ok, "{out}");
    env.until(30, "the cancellation confirmed", || async {
        let (_, out) = env.operator(&["liquidity"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v["liquidity"]["earmarked"] == "0" && v["liquidity"]["reserveWithdrawal"].is_null()
    })
    .await;
    let (ok, out) = env.operator(&["execute-reserve-withdrawal", "0x00000000000000000000000000000000000000aa"]);
    assert!(!ok && out.contains("no_reserve_withdrawal_pending"), "{out}");
    // The link commands (spec §5.23): the list with the link key, and named refusals.
    let (ok, out) = env.operator(&["links"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert!(ok && v["linkAddress"].is_string() && v["links"] == serde_json::json!([]), "{out}");
    let (ok, out) = env.operator(&["link-open", &env.hub_url]);
    assert!(!ok && out.contains("link_to_own_hub"), "{out}");
    let (ok, out) = env.operator(&["link-open", "http://127.0.0.1:1"]);
    assert!(!ok && out.contains("peer_hub_unreachable"), "{out}");
    let none = "0x00000000000000000000000000000000000000bb";
    let (ok, out) = env.operator(&["link-fund", none, "5"]);
    assert!(!ok && out.contains("unknown_link"), "{out}");
    let (ok, out) = env.operator(&["link-pay", none, none, "5"]);
    assert!(!ok && out.contains("unknown_link"), "{out}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_infhub"))
        .args(["operator", "--hub-url", &env.hub_url, "liquidity"])
        .env("INFHUB_OPERATOR_TOKEN", "wrong-token-wrong-token")
        .output()
        .expect("run");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unauthorized"));
}

/// An invoice paid by point lock inside one hub (spec §5.17b, §5.19), from the command line:
/// bob's invoice, alice's `pay-invoice` (held from her balance, not yet his), his `balance`
/// claims it with the scalar his key derives, hers then settles her lock with the proof of
/// payment the hub learned. Paying the same invoice twice, a malformed invoice and one of a
/// payee at a hub that does not answer are refused by name; both wallets agree with the hub at the end.
#[tokio::test(flavor = "multi_thread")]
async fn an_invoice_is_paid_by_point_lock_inside_one_hub() {
    let env = Env::start().await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.register(&alice).await;
    env.register(&bob).await;
    env.ok(&alice, &["deposit", "100"]);
    let v = env.ok(&bob, &["invoice", "7", "--description", "tea"]);
    let invoice = v["invoice"].to_string();
    let invoice_id = v["invoice"]["message"]["invoiceId"].as_str().expect("an id").to_string();
    let paid = env.ok(&alice, &["pay-invoice", &invoice]);
    assert_eq!(amount(&paid["balance"]), 93 * INF, "held from her balance: {paid}");
    let (ok, again) = env.wallet(&alice, &["pay-invoice", &invoice]);
    assert!(!ok && again["error"]["code"] == "lock_id_reused", "an invoice is paid once: {again}");
    let (ok, bad) = env.wallet(&alice, &["pay-invoice", "{\"not\": \"an invoice\"}"]);
    assert!(!ok && bad["error"]["code"] == "invalid_input", "{bad}");
    let mut forged: serde_json::Value = v["invoice"].clone();
    forged["message"]["amount"] = serde_json::json!("1");
    let (ok, v2) = env.wallet(&alice, &["pay-invoice", &forged.to_string()]);
    assert!(!ok && v2["error"]["code"] == "wrong_signer", "an invoice bob did not sign: {v2}");
    // Bob's own invoice for an account at a hub that does not answer: alice's hub cannot quote
    // a route to it, so nothing is locked.
    let key_bytes = infhub_core::signature::hex_decode(bob.key.trim_start_matches("0x")).expect("hex key");
    let key = infhub_core::PrivateKey::from_bytes(key_bytes.try_into().expect("32 bytes")).expect("key");
    let domain = infhub_core::Domain { chain_id: env.d.chain_id, verifying_contract: env.d.hub };
    let far =
        infhub_core::invoice::issue(&key, "127.0.0.1:1", &domain, infhub_core::Amount(INF), u64::MAX, "", B256::ZERO)
            .expect("issue");
    let (ok, v2) = env.wallet(&alice, &["pay-invoice", &serde_json::to_string(&far).expect("json")]);
    assert!(!ok && v2["error"]["code"] == "peer_hub_unreachable", "{v2}");
    let bob_before = env.ok(&bob, &["balance"]);
    assert_eq!(amount(&bob_before["balance"]), 7 * INF, "his balance claimed the payment: {bob_before}");
    let notes = bob_before["notes"].to_string();
    assert!(notes.contains(&invoice_id), "the claim is reported: {notes}");
    let v = env.ok(&alice, &["balance"]);
    assert_eq!(amount(&v["balance"]), 93 * INF, "{v}");
    assert!(v["notes"].to_string().contains("proof of payment"), "her lock settled: {v}");
    assert_eq!(v["hubAgrees"], true, "{v}");
    let v = env.ok(&alice, &["balance"]);
    assert_eq!(
        (v["hubAgrees"].clone(), v["pendingLock"].clone()),
        (serde_json::json!(true), serde_json::Value::Null),
        "{v}"
    );
    let v = env.ok(&bob, &["balance"]);
    assert_eq!((amount(&v["balance"]), v["hubAgrees"].clone()), (7 * INF, serde_json::json!(true)), "{v}");
    // The money is real: bob withdraws what the invoice paid him.
    let v = env.ok(&bob, &["withdraw", "all"]);
    assert_eq!(amount(&v["withdrawn"]), 7 * INF, "{v}");
    let s = env.solvency().await;
    assert_eq!(s["contractBalanced"], true, "{s}");
}

/// The hub learns a payee's scalar and never pays her (the answer to her claim is lost, then
/// the hub goes down): her wallet's exit claims the lock on chain (spec §5.11a) — it reveals
/// the scalar in the point registry, registers the hub's lock through the credit that carries
/// it, settles and unlocks — and she is paid the invoice from the hub's escrow, with the hub
/// down the whole time.
#[tokio::test(flavor = "multi_thread")]
async fn a_payee_whose_hub_does_not_pay_her_claim_is_paid_on_chain_at_exit() {
    let mut env = Env::start().await;
    let proxy = LossyProxy::start(&env.hub_url).await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    // Both through the proxy: an invoice names its payee's hub by the host her wallet uses.
    env.register_at(&alice, &proxy.url).await;
    env.register_at(&bob, &proxy.url).await;
    env.ok(&alice, &["deposit", "100"]);
    let v = env.ok(&bob, &["invoice", "7"]);
    env.ok(&alice, &["pay-invoice", &v["invoice"].to_string()]);
    proxy.lose_answers_to(Some("POST /v1/lock-reveals"));
    let v = env.ok(&bob, &["balance"]);
    assert_eq!(amount(&v["balance"]), 0, "the claim's answer was lost: {v}");
    assert!(v["notes"].to_string().contains("not claimed yet"), "{v}");
    env.kill_hub();
    let before = env.token_balance(bob.address).await;
    let v = env.ok(&bob, &["exit", "--yes"]);
    assert_eq!(amount(&v["fromLocks"]), 7 * INF, "{v}");
    assert_eq!(env.token_balance(bob.address).await, before + 7 * INF, "paid the invoice on chain: {v}");
}
