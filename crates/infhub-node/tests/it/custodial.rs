//! Custodial accounts (seed 000 §3) on anvil: deposit for an account on chain, transfers in
//! every direction (custodial ↔ custodial, custodial → channel with a hub-signed credit,
//! channel → custodial with a user-signed debit), withdrawal to a chain address, conversion to
//! a channel and back, statements, and reconciliation — clean after all of it, and precise
//! about a deposit the ledger missed.

use crate::harness::*;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::sol_types::SolCall;
use infhub_chain::anvil;
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::sender::{TxOutcome, TxSender};
use infhub_core::ledger::custodial_address;
use infhub_core::messages::{PaymentKind, SignedCredit};
use serde_json::{json, Value};
use std::time::Duration;

/// `depositFor(account, amount)` from `sender`; returns (block, tx hash).
async fn deposit_for(chain: &Chain, sender: &mut TxSender, account: Address, amount: u128) -> (u64, B256) {
    let approve = IErc20::approveCall { spender: chain.d.hub, amount: U256::MAX }.abi_encode();
    anvil::call_ok(sender, chain.d.token, approve).await.expect("approve");
    let call = IInfHub::depositForCall { account, amount: U256::from(amount) }.abi_encode();
    match sender.send_and_wait(TxKind::Call(chain.d.hub), Bytes::from(call), Duration::from_millis(20)).await {
        Ok(TxOutcome::Mined { success: true, block, hash, .. }) => (block, hash),
        other => panic!("depositFor: {other:?}"),
    }
}

fn tid(n: u64) -> B256 {
    B256::from(U256::from(1_000_000 + n))
}

async fn custodial(http: &Http, account: Address, key: &str) -> Value {
    let (s, v) = http.get(&format!("/v1/custodial/accounts/{account}"), Some(key)).await;
    assert_eq!(s, 200, "{v}");
    v
}

fn amount(v: &Value) -> u128 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an amount: {v}"))
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scripted story, read top to bottom; each step depends on the last")]
fn custodial_accounts_in_every_direction_then_reconciliation_is_clean() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let started_ms = infhub_ledger::durable::system_clock_ms();
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.node.reconcile_interval_secs = 0;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);

        // --- Opening: by the operator only, valid ids, once.
        let open = |id: &str| {
            let http = &http;
            let id = id.to_string();
            async move { http.post("/v1/operator/custodial-accounts", Some(OPERATOR), &json!({"userId": id})).await }
        };
        let (s, a) = open("alice@platform").await;
        assert_eq!(s, 200, "{a}");
        let (a_addr, a_key) = (custodial_address("alice@platform"), a["apiKey"].as_str().expect("key").to_string());
        assert_eq!(a["account"], json!(a_addr));
        let (_, b) = open("bob").await;
        let (b_addr, b_key) = (custodial_address("bob"), b["apiKey"].as_str().expect("key").to_string());
        let (s, v) = open("alice@platform").await;
        assert_eq!((s, code(&v)), (422, "account_already_exists"), "{v}");
        let (s, v) = open("no spaces allowed").await;
        assert_eq!((s, code(&v)), (422, "invalid_user_id"), "{v}");
        let (s, v) = http.post("/v1/operator/custodial-accounts", Some(&a_key), &json!({"userId": "x"})).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "a custodial key is not the operator: {v}");

        // --- Deposit on chain for Alice's custodial account, credited after confirmations.
        let mut payer = anvil::sender(&chain.provider, anvil::dev_key(3)).await.expect("sender");
        deposit_for(&chain, &mut payer, a_addr, 100).await;
        chain.mine(2).await;
        eventually(15, "custodial deposit credited", || async {
            let v = custodial(&http, a_addr, &a_key).await;
            (amount(&v["balance"]) == 100).then_some(())
        })
        .await;
        assert_eq!(amount(&custodial(&http, a_addr, &a_key).await["depositedOnChain"]), 100);
        let (s, v) = http.get(&format!("/v1/custodial/accounts/{a_addr}"), Some(&b_key)).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "bob's key read alice's account: {v}");

        // --- Custodial → custodial, by Alice's key; idempotent; refusals per transfer.
        let batch = |from: Address, to: Address, amt: u128, id: u64| {
            json!({"transfers": [{"from": from, "to": to, "amount": amt.to_string(), "transferId": tid(id)}]})
        };
        let (s, v) = http.post("/v1/custodial/transfers", Some(&a_key), &batch(a_addr, b_addr, 30, 1)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["results"][0]["result"], "moved", "{v}");
        let (_, v) = http.post("/v1/custodial/transfers", Some(&a_key), &batch(a_addr, b_addr, 30, 1)).await;
        assert_eq!(v["results"][0]["result"], "duplicate", "a retry is applied once: {v}");
        let (_, v) = http.post("/v1/custodial/transfers", Some(&a_key), &batch(a_addr, b_addr, 31, 1)).await;
        assert_eq!(v["results"][0]["error"]["code"], "payment_id_reused", "{v}");
        let (_, v) = http.post("/v1/custodial/transfers", Some(&a_key), &batch(a_addr, b_addr, 1_000, 2)).await;
        assert_eq!(v["results"][0]["error"]["code"], "insufficient_balance", "{v}");
        let (s, v) = http.post("/v1/custodial/transfers", Some(&b_key), &batch(a_addr, b_addr, 1, 3)).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "bob's key moved alice's funds: {v}");
        assert_eq!(amount(&custodial(&http, b_addr, &b_key).await["balance"]), 30);

        // --- Custodial → channel: the channel user gets a hub-signed credit.
        let mut w = Wallet::new(&chain, 1).await;
        register(&chain, &http, &mut w).await;
        w.approve_and_deposit(&chain, 50).await;
        settle_chain(&chain, &http).await;
        let (s, v) = http.post("/v1/custodial/transfers", Some(&a_key), &batch(a_addr, w.address(), 20, 4)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["results"][0]["result"], "moved", "{v}");
        let credit: SignedCredit = serde_json::from_value(v["results"][0]["credit"].clone()).expect("credit");
        credit.verify(&domain, chain.anvil_hub()).expect("the credit is the hub's");
        assert_eq!((credit.message.user, credit.message.cumulative_credit.0), (w.address(), 20));
        let (_, acct) = w.account(&http).await;
        assert_eq!(amount(&acct["balance"]), 70, "{acct}");

        // --- Channel → custodial: a user-signed debit to the custodial account's address.
        let (s, v) = w.pay(&http, &domain, PaymentKind::Internal, b_addr, 10, 77).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(amount(&custodial(&http, b_addr, &b_key).await["balance"]), 40);

        // --- Custodial withdrawal to a chain address, paid from the reserve in a batch.
        let outside = Address::repeat_byte(0x77);
        let body = json!({"from": b_addr, "recipient": outside, "amount": "15", "transferId": tid(5)});
        let (s, v) = http.post("/v1/custodial/withdrawals", Some(&b_key), &body).await;
        assert_eq!(s, 200, "{v}");
        eventually(30, "custodial payout on chain", || async {
            chain.mine(1).await;
            (chain.token_balance(outside).await == U256::from(15)).then_some(())
        })
        .await;
        assert_eq!(amount(&custodial(&http, b_addr, &b_key).await["balance"]), 25);

        // --- Conversion to a channel (the user registered a key), and back by a signed debit.
        let mut v_user = Wallet::new(&chain, 2).await;
        register(&chain, &http, &mut v_user).await;
        let body = json!({"account": a_addr, "user": v_user.address(), "transferId": tid(6)});
        let (s, conv) = http.post("/v1/custodial/conversions", Some(&a_key), &body).await;
        assert_eq!(s, 200, "{conv}");
        assert_eq!(amount(&conv["amount"]), 50, "100 − 30 − 20: {conv}");
        let a_view = custodial(&http, a_addr, &a_key).await;
        assert_eq!(amount(&a_view["balance"]), 0);
        assert_eq!(a_view["linkedChannel"], json!(v_user.address()));
        let (_, acct) = v_user.account(&http).await;
        assert_eq!(amount(&acct["balance"]), 50, "{acct}");
        let (s, v) = v_user.pay(&http, &domain, PaymentKind::Internal, a_addr, 50, 1).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(amount(&custodial(&http, a_addr, &a_key).await["balance"]), 50, "converted back");

        // --- Statements with running balances, JSON and CSV.
        let (s, st) = http.get(&format!("/v1/accounts/{a_addr}/statement"), Some(&a_key)).await;
        assert_eq!(s, 200, "{st}");
        let lines = st["lines"].as_array().expect("lines");
        let balances: Vec<u128> = lines.iter().map(|l| amount(&l["balanceAfter"])).collect();
        assert_eq!(balances, vec![0, 100, 70, 50, 0, 50], "opened, deposit, to bob, to w, converted, back: {st}");
        let csv = http
            .client
            .get(format!("{}/v1/accounts/{a_addr}/statement?format=csv", http.base))
            .bearer_auth(&a_key)
            .send()
            .await
            .expect("csv")
            .text()
            .await
            .expect("text");
        assert!(csv.starts_with("seq,time,kind,counterparty,payment_id,block,change,balance_after\n"), "{csv}");
        assert_eq!(csv.lines().count(), 7, "{csv}");
        assert!(csv.lines().nth(2).is_some_and(|l| l.contains(",custodial_deposited,") && l.ends_with(",100,100")), "{csv}");
        date_ranges(&http, a_addr, &a_key, lines, &csv, started_ms).await;

        // --- Reconciliation: the ledger agrees with the chain, with the totals rebuilt.
        settle_chain(&chain, &http).await;
        let (s, r) = http.get("/v1/operator/reconciliation", Some(OPERATOR)).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["chain"]["custodialDeposits"], "100", "{r}");
        assert_eq!(r["chain"]["channelDeposits"], "50", "{r}");
        assert_eq!(r["chain"]["payouts"], "15", "{r}");
        assert_eq!(r["fromBlock"].as_u64(), Some(chain.d.block), "the contract's deployment block: {r}");
        let (s, sol) = http.get("/v1/operator/solvency", Some(OPERATOR)).await;
        assert_eq!(s, 200);
        assert_eq!(sol["contractBalanced"], true, "{sol}");
        assert_eq!(sol["ledgerMatchesChain"], true, "{sol}");
        assert_eq!(sol["liquid"], true, "{sol}");
        node.stop().await;
    });
}

/// Every history entry and statement line carries its commit time (issue 24): times never fall,
/// lie within the test, and print in the CSV as UTC; a date range gives exactly the lines and
/// entries within it and the statement's opening balance before it; bad ranges are refused by
/// name.
async fn date_ranges(http: &Http, account: Address, key: &str, lines: &[Value], csv: &str, started_ms: u64) {
    let times: Vec<u64> = lines.iter().map(|l| l["atMs"].as_u64().expect("atMs")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "commit times never fall: {times:?}");
    let now = infhub_ledger::durable::system_clock_ms();
    assert!(times.iter().all(|t| (started_ms..=now).contains(t)), "{times:?} within {started_ms}..={now}");
    let first_time = csv.lines().nth(1).and_then(|l| l.split(',').nth(1)).expect("time column");
    assert_eq!(first_time, infhub_ledger::history::utc_time(times[0]), "{csv}");
    let (from, to) = (times[2], times[3]);
    let (s, part) = http.get(&format!("/v1/accounts/{account}/statement?from={from}&to={to}"), Some(key)).await;
    assert_eq!(s, 200, "{part}");
    let expected: Vec<&Value> =
        lines.iter().zip(&times).filter(|(_, t)| (from..=to).contains(*t)).map(|(l, _)| l).collect();
    assert_eq!(part["lines"].as_array().map(|v| v.iter().collect::<Vec<_>>()), Some(expected.clone()), "{part}");
    let opening =
        lines.iter().zip(&times).take_while(|(_, t)| **t < from).last().map(|(l, _)| l["balanceAfter"].clone());
    assert_eq!(part["openingBalance"], opening.unwrap_or(json!("0")), "{part}");
    assert_eq!(Some(&part["closingBalance"]), expected.last().map(|l| &l["balanceAfter"]), "{part}");
    // The history, newest first, in the same range and in pages of one.
    let (_, all) = http.get(&format!("/v1/accounts/{account}/history?limit=100"), Some(key)).await;
    let within: Vec<Value> = all["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["atMs"].as_u64().is_some_and(|t| (from..=to).contains(&t)))
        .cloned()
        .collect();
    assert!(!within.is_empty(), "{all}");
    let (mut paged, mut before) = (Vec::new(), None::<u64>);
    loop {
        let b = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let path = format!("/v1/accounts/{account}/history?from={from}&to={to}&limit=1{b}");
        let (s, page) = http.get(&path, Some(key)).await;
        assert_eq!(s, 200, "{page}");
        paged.extend(page["entries"].as_array().expect("entries").iter().cloned());
        match page["nextBefore"].as_u64() {
            Some(n) if paged.len() <= within.len() => before = Some(n),
            _ => break,
        }
    }
    let paged: Vec<Value> = paged.into_iter().filter(|e| e["atMs"].as_u64().is_some_and(|t| t >= from)).collect();
    assert_eq!(paged, within, "the range's entries, page by page");
    // Named dates: a day long before any entry holds none; bad dates and ranges are refused.
    let (s, none) = http.get(&format!("/v1/accounts/{account}/statement?to=1999-12-31"), Some(key)).await;
    assert_eq!((s, none["lines"].clone(), none["closingBalance"].clone()), (200, json!([]), json!("0")), "{none}");
    for bad in ["from=yesterday", "to=2026-02-30", "from=2026-12-03T02:05:09", &format!("from={}&to={}", to + 1, from)]
    {
        let (s, v) = http.get(&format!("/v1/accounts/{account}/history?{bad}"), Some(key)).await;
        assert_eq!((s, code(&v)), (400, "malformed_request"), "{bad}: {v}");
    }
}

#[test]
fn reconciliation_reports_a_custodial_deposit_the_ledger_missed() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let missed = custodial_address("missed");
        let mut payer = anvil::sender(&chain.provider, anvil::dev_key(3)).await.expect("sender");
        let (deposit_block, deposit_tx) = deposit_for(&chain, &mut payer, missed, 70).await;
        // The planted fault: the node is configured to follow the chain from after the deposit,
        // so its ledger never applies it.
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.chain.start_block = deposit_block + 1;
        config.node.reconcile_interval_secs = 0;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let (s, v) = http.post("/v1/operator/custodial-accounts", Some(OPERATOR), &json!({"userId": "missed"})).await;
        assert_eq!(s, 200, "{v}");
        // A reserve top-up after the start brings the ledger's mirrored reserve up to date, so
        // the only fault left is the missed deposit.
        let mut hub = anvil::sender(&chain.provider, anvil::dev_key(0)).await.expect("hub sender");
        anvil::call_ok(&mut hub, chain.d.hub, IInfHub::depositReserveCall { amount: U256::from(1) }.abi_encode())
            .await
            .expect("top up");
        settle_chain(&chain, &http).await;

        let (s, r) = http.get("/v1/operator/reconciliation", Some(OPERATOR)).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["fromBlock"].as_u64(), Some(chain.d.block), "found the deployment on its own: {r}");
        let d = r["discrepancies"].as_array().expect("discrepancies");
        assert_eq!(d.len(), 1, "exactly the planted fault: {r}");
        assert_eq!(d[0]["kind"], "custodial_deposits_mismatch", "{r}");
        assert_eq!(d[0]["account"], json!(missed));
        assert_eq!(d[0]["chain"], "deposited 70");
        assert_eq!(d[0]["ledger"], "deposited 0");
        assert_eq!(d[0]["events"][0]["block"].as_u64(), Some(deposit_block), "{r}");
        assert_eq!(d[0]["events"][0]["tx"], json!(deposit_tx), "{r}");
        let (_, metrics) = http.get("/metrics", None).await;
        let text = metrics.as_str().unwrap_or_default().to_string();
        assert!(text.contains("infhub_reconciliation_discrepancies 1"), "{text}");
        node.stop().await;
    });
}

/// Key rotation (issue 24): the holder rotates her own key and the old one stops working at
/// once; another account's key may not rotate hers; the operator may; a channel account has
/// no key to rotate; the rotation is in her history and survives a restart (it is a ledger
/// command, replayed).
#[test]
fn a_custodial_key_rotation_retires_the_old_key_at_once_and_survives_a_restart() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let config = chain.config(dir.path().to_path_buf());
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        let open = |id: &'static str| {
            let http = &http;
            async move {
                let (s, v) = http.post("/v1/operator/custodial-accounts", Some(OPERATOR), &json!({"userId": id})).await;
                assert_eq!(s, 200, "{v}");
                (custodial_address(id), v["apiKey"].as_str().expect("key").to_string())
            }
        };
        let (carol, carol_key) = open("carol").await;
        let (_, dave_key) = open("dave").await;
        let rotate = |who: Address, key: String| {
            let http = &http;
            async move { http.post(&format!("/v1/custodial/accounts/{who:#x}/key-rotations"), Some(&key), &json!({})).await }
        };
        let (s, v) = rotate(carol, dave_key.clone()).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "another account's key: {v}");
        let (s, v) = rotate(carol, carol_key.clone()).await;
        assert_eq!(s, 200, "{v}");
        let new_key = v["apiKey"].as_str().expect("new key").to_string();
        assert_ne!(new_key, carol_key);
        let (s, v) = http.get(&format!("/v1/custodial/accounts/{carol:#x}"), Some(&carol_key)).await;
        assert_eq!((s, code(&v)), (401, "unauthorized"), "the old key is retired: {v}");
        let (s, v) = http.get(&format!("/v1/custodial/accounts/{carol:#x}"), Some(&new_key)).await;
        assert_eq!(s, 200, "the new key works: {v}");
        let (s, v) = rotate(carol, OPERATOR.to_string()).await;
        assert_eq!(s, 200, "the operator may rotate: {v}");
        let operator_key = v["apiKey"].as_str().expect("key").to_string();
        let (s, _) = http.get(&format!("/v1/custodial/accounts/{carol:#x}"), Some(&new_key)).await;
        assert_eq!(s, 401, "the holder's key retired by the operator's rotation");
        let channel_user = Address::repeat_byte(0x42);
        let (s, v) = rotate(channel_user, OPERATOR.to_string()).await;
        assert_eq!((s, code(&v)), (422, "not_custodial"), "{v}");
        let (_, history) = http.get(&format!("/v1/accounts/{carol:#x}/history"), Some(&operator_key)).await;
        let kinds: Vec<&str> = history["entries"].as_array().expect("entries").iter().filter_map(|e| e["kind"].as_str()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "custodial_key_rotated").count(), 2, "{history}");
        // Replayed after a restart: only the newest key works.
        node.stop().await;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let (s, _) = http.get(&format!("/v1/custodial/accounts/{carol:#x}"), Some(&operator_key)).await;
        assert_eq!(s, 200, "the newest key after a restart");
        let (s, _) = http.get(&format!("/v1/custodial/accounts/{carol:#x}"), Some(&carol_key)).await;
        assert_eq!(s, 401, "the first key stays retired after a restart");
        node.stop().await;
    });
}
