//! Every wallet and operator flow through the HTTP API on anvil, with real signatures:
//! registration, deposit (pending, then confirmed), purchase, internal and external transfers
//! (receipt, credit, payout batch on chain), idempotent retries, rejections by name,
//! cooperative withdrawal executed on chain, history pages, the WebSocket stream, an exit
//! answered with the newest debit and settled, a hub close, solvency, metrics and OpenAPI;
//! then a restart from log + snapshot with nothing lost.

use crate::harness::*;
use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolCall;
use futures_util::StreamExt;
use infhub_chain::anvil;
use infhub_chain::bindings::IInfHub;
use infhub_chain::events::{credit_arg, withdrawal_arg};
use infhub_core::messages::{PaymentKind, SignedCredit};
use infhub_core::{Signature, Withdrawal};
use serde_json::{json, Value};

#[test]
#[expect(clippy::too_many_lines, reason = "one scripted story, read top to bottom; each step depends on the last")]
fn every_flow_through_the_api_then_a_restart_loses_nothing() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.node.snapshot_every_records = 7;
        config.limits.max_request_bytes = 4_096;
        config.limits.max_payment_amount = infhub_core::Amount(10u128.pow(27));
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);

        // --- OpenAPI lists every endpoint, and each listed endpoint is routed.
        let (s, doc) = http.get("/openapi.json", None).await;
        assert_eq!(s, 200);
        for (method, path, _, _) in infhub_node::openapi::ENDPOINTS {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the document");
            let probe = path
                .replace("{user}", &format!("{}", Address::ZERO))
                .replace("{payment_id}", &format!("{}", payment_id(1)))
                .replace("{account}", &format!("{}", Address::ZERO))
                .replace("{peer}", &format!("{}", Address::ZERO));
            let url = format!("{}{probe}", http.base);
            let resp = if *method == "get" {
                http.client.get(&url).send().await
            } else {
                http.client.post(&url).json(&json!({})).send().await
            }
            .expect("probe");
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_ne!(body["error"]["code"], "no_such_endpoint", "{method} {path} is documented but not routed");
        }
        let (s, v) = http.get("/v1/nothing", None).await;
        assert_eq!((s, code(&v)), (404, "no_such_endpoint"));
        // The router's and the extractors' own refusals answer in the same JSON shape.
        let (s, v) = http.get("/v1/transfers", None).await;
        assert_eq!((s, code(&v)), (405, "method_not_allowed"), "{v}");
        let (s, v) = http.get("/v1/accounts/not-an-address", Some(OPERATOR)).await;
        assert_eq!((s, code(&v)), (400, "malformed_request"), "{v}");
        let (s, v) = http.get(&format!("/v1/accounts/{}/history?limit=many", Address::ZERO), Some(OPERATOR)).await;
        assert_eq!((s, code(&v)), (400, "malformed_request"), "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");

        // --- Registration and sessions.
        let mut a = Wallet::new(&chain, 1).await;
        let mut b = Wallet::new(&chain, 2).await;
        let (s, v) = http.post("/v1/registrations", None, &a.registration(&domain, 1)).await;
        assert_eq!((s, code(&v)), (422, "registration_expired"), "{v}");
        let mut forged = a.registration(&domain, 10_000);
        forged["message"]["user"] = json!(b.address());
        let (s, v) = http.post("/v1/registrations", None, &forged).await;
        assert_eq!((s, code(&v)), (401, "wrong_signer"), "{v}");
        register(&chain, &http, &mut a).await;
        register(&chain, &http, &mut b).await;
        let (s, v) = http.get(&format!("/v1/accounts/{}", b.address()), a.token.as_deref()).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "a session read another account");
        let (s, v) = http.get(&format!("/v1/accounts/{}", a.address()), None).await;
        assert_eq!((s, code(&v)), (401, "unauthorized"));
        let (s, v) = http.get(&format!("/v1/accounts/{}", a.address()), Some("not-a-session")).await;
        assert_eq!((s, code(&v)), (401, "unauthorized"), "{v}");

        // --- WebSocket stream of B's account.
        let ws_url =
            format!("{}/v1/stream?token={}", node.url.replace("http://", "ws://"), b.token.as_deref().expect("t"));
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("ws connect");
        let hello = ws.next().await.expect("frame").expect("ws ok");
        assert!(hello.to_text().expect("text").contains("subscribed"));

        // --- Deposit: seen as pending, credited once confirmed.
        let deposit_block = a.approve_and_deposit(&chain, 1_000).await;
        let pending = eventually(15, "pending deposit", || async {
            let (_, v) = a.account(&http).await;
            v["pendingDeposits"].as_array().filter(|p| !p.is_empty()).cloned()
        })
        .await;
        assert_eq!(pending[0]["block"], deposit_block);
        assert_eq!(amount(&a.account(&http).await.1["balance"]), 0, "credited before confirmation");
        chain.mine(1).await;
        eventually(15, "deposit confirmed", || async {
            let (_, v) = a.account(&http).await;
            (amount(&v["balance"]) == 1_000 && v["pendingDeposits"].as_array().is_some_and(|p| p.is_empty()))
                .then_some(())
        })
        .await;

        // --- Purchase (operator): authenticated, idempotent, backed by the reserve.
        let purchase = json!({"user": b.address(), "amount": "500", "purchaseId": payment_id(900)});
        let (s, v) = http.post("/v1/operator/purchases", None, &purchase).await;
        assert_eq!((s, code(&v)), (401, "unauthorized"));
        let (s, v) = http.post("/v1/operator/purchases", b.token.as_deref(), &purchase).await;
        assert_eq!((s, code(&v)), (403, "forbidden"));
        let (s, first) = http.post("/v1/operator/purchases", Some(OPERATOR), &purchase).await;
        assert_eq!(s, 200, "{first}");
        let credit: SignedCredit = serde_json::from_value(first["credit"].clone()).expect("credit");
        assert_eq!(credit.verify(&domain, chain.anvil_hub()), Ok(()));
        let (s, again) = http.post("/v1/operator/purchases", Some(OPERATOR), &purchase).await;
        assert_eq!((s, &again["credit"], &again["replayed"]), (200, &first["credit"], &json!(true)));
        let huge = json!({"user": b.address(), "amount": "100000000000000000000000000", "purchaseId": payment_id(901)});
        let (s, v) = http.post("/v1/operator/purchases", Some(OPERATOR), &huge).await;
        assert_eq!((s, code(&v)), (422, "reserve_insufficient"), "{v}");

        // --- Internal transfer A -> B with receipt and credit; retries; rejections.
        let (s, paid) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 300, 1).await;
        assert_eq!(s, 200, "{paid}");
        assert_eq!(paid["replayed"], false);
        let receipt = &paid["result"]["receipt"];
        assert_eq!(receipt["message"]["paymentId"], json!(payment_id(1)));
        // The payer learns nothing of the payee's channel: the credit goes to B alone.
        assert!(paid["result"].get("credit").is_none(), "the payer's answer carries B's credit: {paid}");
        assert!(receipt["path"].is_array(), "{receipt}");
        let sent = a.sign_debit(
            &domain,
            infhub_core::Debit {
                nonce: 1,
                cumulative_debit: infhub_core::Amount(300),
                ..a.debit(PaymentKind::Internal, b.address(), 300, payment_id(1))
            },
        );
        let (s, retry) = http.post("/v1/transfers", None, &sent).await;
        assert_eq!(
            (s, &retry["result"], &retry["replayed"]),
            (200, &paid["result"], &json!(true)),
            "retry must return the first result"
        );
        let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 5, 1).await;
        assert_eq!((s, code(&v)), (409, "payment_id_reused"), "{v}");
        let stale = a.sign_debit(
            &domain,
            infhub_core::Debit { nonce: 1, ..a.debit(PaymentKind::Internal, b.address(), 5, payment_id(2)) },
        );
        let (s, v) = http.post("/v1/transfers", None, &stale).await;
        assert_eq!((s, code(&v)), (422, "nonce_must_increase"), "{v}");
        let mut wrong_key = a.sign_debit(&domain, a.debit(PaymentKind::Internal, b.address(), 5, payment_id(3)));
        wrong_key["signature"] =
            b.sign_debit(&domain, a.debit(PaymentKind::Internal, b.address(), 5, payment_id(3)))["signature"].clone();
        let (s, v) = http.post("/v1/transfers", None, &wrong_key).await;
        assert_eq!((s, code(&v)), (401, "wrong_signer"), "{v}");
        // Refused for a reason of state: final, refunded with a hub-signed credit of the amount,
        // and the debit's nonce is spent (the next payment takes the next one).
        let credit_before = {
            let (_, acct) = http.get(&format!("/v1/accounts/{}", a.address()), a.token.as_deref()).await;
            acct["cumulativeCredit"].as_str().and_then(|c| c.parse::<u128>().ok()).expect("credit total")
        };
        let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 1_000_000, 4).await;
        assert_eq!((s, code(&v)), (422, "insufficient_balance"), "{v}");
        let refund: SignedCredit = serde_json::from_value(v["error"]["refund"].clone()).expect("a refund: {v}");
        assert_eq!(refund.verify(&domain, chain.anvil_hub()), Ok(()), "the refund is the hub's");
        assert_eq!(refund.message.cumulative_credit.0, credit_before + 1_000_000, "the refund gives the amount back");
        let replayed = a.sign_debit(
            &domain,
            infhub_core::Debit {
                nonce: 2,
                cumulative_debit: infhub_core::Amount(1_000_300),
                ..a.debit(PaymentKind::Internal, b.address(), 1_000_000, payment_id(4))
            },
        );
        let (s, again) = http.post("/v1/transfers", None, &replayed).await;
        assert_eq!((s, &again["error"]["refund"]), (422, &v["error"]["refund"]), "a retry gets the same refund");
        let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, Address::repeat_byte(0x77), 5, 5).await;
        assert_eq!((s, code(&v)), (404, "unknown_account"), "{v}");
        assert!(v["error"]["refund"].is_object(), "an unknown payee is refunded too: {v}");
        let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 0, 6).await;
        assert_eq!((s, code(&v)), (422, "amount_must_not_be_zero"), "{v}");
        let (s, v) = http.post("/v1/transfers", None, &json!({"message": {"user": "0x12"}})).await;
        assert_eq!((s, code(&v)), (422, "malformed_request"), "{v}");
        let big = json!({"pad": "x".repeat(8_000)});
        let (s, v) = http.post("/v1/transfers", None, &big).await;
        assert_eq!((s, code(&v)), (413, "request_too_large"), "{v}");

        // B's stream got the credit.
        let credit_notice = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let f = ws.next().await.expect("frame").expect("ws ok");
                let v: Value = serde_json::from_str(f.to_text().expect("text")).expect("json");
                if v["notice"]["type"] == "credit" && v["notice"]["paymentId"] == json!(payment_id(1)) {
                    return v;
                }
            }
        })
        .await
        .expect("credit pushed to the payee's stream");
        let b_credit: SignedCredit = serde_json::from_value(credit_notice["notice"]["credit"].clone()).expect("credit");
        assert_eq!(b_credit.message.cumulative_credit.0, 800, "500 bought + 300 received");
        assert_eq!(b_credit.verify(&domain, chain.anvil_hub()), Ok(()));
        // B's history holds the same credit.
        let (s, hist) = http.get(&format!("/v1/accounts/{}/history", b.address()), b.token.as_deref()).await;
        assert_eq!(s, 200, "{hist}");
        let entries = hist["entries"].as_array().expect("entries");
        let inn = entries.iter().find(|e| e["paymentId"] == json!(payment_id(1))).expect("B's entry of payment 1");
        assert_eq!(inn["credit"], credit_notice["notice"]["credit"]);

        // --- External transfer to a plain address: payout batch executed on chain.
        let outside = Address::repeat_byte(0x5A);
        let (s, ext) = a.pay(&http, &domain, PaymentKind::External, outside, 120, 10).await;
        assert_eq!(s, 200, "{ext}");
        assert_eq!(ext["result"]["payout"]["recipient"], json!(outside));
        let path = format!("/v1/accounts/{}/payouts/{}", a.address(), payment_id(10));
        let status = eventually(20, "payout executed", || async {
            chain.mine(1).await;
            let (_, v) = http.get(&path, a.token.as_deref()).await;
            (v["status"]["status"] == "executed").then_some(v)
        })
        .await;
        assert!(status["status"]["txHash"].is_string(), "{status}");
        assert_eq!(chain.token_balance(outside).await, U256::from(120));

        // --- Cooperative withdrawal: co-signed, executed on chain, then mirrored.
        let head = chain.head().await;
        let (s, v) = http.post("/v1/withdrawals", None, &a.withdrawal(&domain, 100, head + 100_000).1).await;
        assert_eq!((s, code(&v)), (422, "expiry_too_far"), "{v}");
        let (w, body) = a.withdrawal(&domain, 100, head + 50);
        let (s, co) = http.post("/v1/withdrawals", None, &body).await;
        assert_eq!(s, 200, "{co}");
        let held = a.account(&http).await.1;
        assert_eq!(amount(&held["balance"]), 1_000 - 300 - 120 - 100, "withdrawal held");
        let user_sig: Signature = serde_json::from_value(co["userSignature"].clone()).expect("sig");
        let hub_sig: Signature = serde_json::from_value(co["hubSignature"].clone()).expect("sig");
        let cosigned: Withdrawal = serde_json::from_value(co["withdrawal"].clone()).expect("w");
        assert_eq!(cosigned, w);
        let before = chain.token_balance(a.address()).await;
        let call = IInfHub::withdrawCall {
            w: withdrawal_arg(&w),
            userSignature: Bytes::copy_from_slice(&user_sig.0),
            hubSignature: Bytes::copy_from_slice(&hub_sig.0),
        };
        anvil::call_ok(&mut a.chain, chain.d.hub, call.abi_encode()).await.expect("withdraw on chain");
        assert_eq!(chain.token_balance(a.address()).await, before + U256::from(100));
        settle_chain(&chain, &http).await;
        let after = a.account(&http).await.1;
        assert_eq!(amount(&after["withdrawn"]), 100);
        assert_eq!(amount(&after["balance"]), 480);

        // --- History, paginated, with proofs.
        let (s, page1) = http.get(&format!("/v1/accounts/{}/history?limit=2", a.address()), a.token.as_deref()).await;
        assert_eq!(s, 200, "{page1}");
        let entries = page1["entries"].as_array().expect("entries");
        assert_eq!(entries.len(), 2);
        let before_seq = page1["nextBefore"].as_u64().expect("next page");
        let (_, page2) = http
            .get(&format!("/v1/accounts/{}/history?limit=50&before={before_seq}", a.address()), a.token.as_deref())
            .await;
        let kinds: Vec<&str> = entries
            .iter()
            .chain(page2["entries"].as_array().expect("e"))
            .map(|e| e["kind"].as_str().expect("kind"))
            .collect();
        for k in ["withdrawn", "withdrawal_co_signed", "external_out", "transfer_out", "deposited", "channel_opened"] {
            assert!(kinds.contains(&k), "history lacks {k}: {kinds:?}");
        }
        let out =
            page2["entries"].as_array().expect("e").iter().find(|e| e["kind"] == "transfer_out").expect("transfer");
        assert_eq!(out["debit"], sent, "history must keep the user's signed debit");
        let (s, v) = http.get(&format!("/v1/accounts/{}/history?limit=100000", a.address()), a.token.as_deref()).await;
        assert_eq!((s, code(&v)), (400, "limit_exceeded"));

        // --- Restart in the middle: graceful stop, reopen from snapshot + log tail + archive.
        let snapshot_a = a.account(&http).await.1;
        let snapshot_b = b.account(&http).await.1;
        let history_a =
            http.get(&format!("/v1/accounts/{}/history?limit=200", a.address()), a.token.as_deref()).await.1;
        drop(ws);
        node.stop().await;
        assert!(std::fs::read_dir(dir.path()).expect("dir").any(|e| e
            .expect("e")
            .file_name()
            .to_string_lossy()
            .ends_with(".snap")));
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        a.login(&http, &domain).await;
        b.login(&http, &domain).await;
        let a_now = a.account(&http).await.1;
        let b_now = b.account(&http).await.1;
        let strip = |mut v: Value| {
            v["pendingDeposits"] = json!([]);
            v
        };
        assert_eq!(strip(a_now), strip(snapshot_a), "account A changed across the restart");
        assert_eq!(strip(b_now), strip(snapshot_b), "account B changed across the restart");
        let history_now =
            http.get(&format!("/v1/accounts/{}/history?limit=200", a.address()), a.token.as_deref()).await.1;
        assert_eq!(history_now, history_a, "history changed across the restart");
        let (s, retry) = http.post("/v1/transfers", None, &sent).await;
        assert_eq!(
            (s, &retry["result"], &retry["replayed"]),
            (200, &paid["result"], &json!(true)),
            "first result lost in restart"
        );
        let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 30, 11).await;
        assert_eq!(s, 200, "{v}");

        // --- Exit by A with her newest credit (her refunds) and without her debits: the node
        // answers with A's newest debit.
        let (_, acct) = http.get(&format!("/v1/accounts/{}", a.address()), a.token.as_deref()).await;
        let newest_credit: SignedCredit = serde_json::from_value(acct["latestCredit"].clone()).expect("a credit");
        let exit = IInfHub::startExitCall {
            credit: credit_arg(&newest_credit.message),
            hubSignature: Bytes::from(newest_credit.proof_bytes()),
        };
        anvil::call_ok(&mut a.chain, chain.d.hub, exit.abi_encode()).await.expect("start exit");
        let newest_nonce = a.debit_nonce;
        eventually(20, "node submitted the newest debit", || async {
            chain.mine(1).await;
            let ch = chain_channel(&chain, a.address()).await;
            (ch.debit.nonce == newest_nonce).then_some(())
        })
        .await;
        let a_tokens = chain.token_balance(a.address()).await;
        chain.mine(infhub_node::dev::DEV_CHALLENGE_PERIOD_BLOCKS + 1).await;
        eventually(20, "node settled the channel", || async {
            chain.mine(1).await;
            let ch = chain_channel(&chain, a.address()).await;
            (ch.status == 3).then_some(())
        })
        .await;
        // A's claim: 1000 deposited - 100 withdrawn - (300 + 120 + 30) debits = 450; the two
        // refused payments (1,000,000 and 5) are in her debits and, refunded, in her credits.
        assert_eq!(chain.token_balance(a.address()).await, a_tokens + U256::from(450));
        let v = eventually(20, "the ledger to see the settlement", || async {
            chain.mine(1).await;
            let (_, v) = a.account(&http).await;
            (v["status"]["state"] == "settled").then_some(v)
        })
        .await;
        assert_eq!(amount(&v["balance"]), 0, "a settled channel holds nothing: {v}");
        // A second hub close of a channel that is not open is refused by name.
        let (s, v) = http.post("/v1/operator/closes", Some(OPERATOR), &json!({"user": a.address()})).await;
        assert_eq!((s, code(&v)), (422, "channel_not_open"), "{v}");

        // --- Hub close of B's channel.
        let (s, v) = http.post("/v1/operator/closes", Some(OPERATOR), &json!({"user": b.address()})).await;
        assert_eq!(s, 200, "{v}");
        eventually(20, "B closing in the ledger", || async {
            chain.mine(1).await;
            let (_, v) = b.account(&http).await;
            (v["status"]["state"] == "closing").then_some(())
        })
        .await;
        let (s, v) = http.post("/v1/operator/closes", Some(OPERATOR), &json!({"user": Address::repeat_byte(3)})).await;
        assert_eq!((s, code(&v)), (404, "unknown_account"), "{v}");

        // --- Solvency and metrics.
        settle_chain(&chain, &http).await;
        let (s, rep) = http.get("/v1/operator/solvency", Some(OPERATOR)).await;
        assert_eq!(s, 200, "{rep}");
        assert_eq!(rep["contractBalanced"], true, "{rep}");
        assert_eq!(rep["ledgerMatchesChain"], true, "{rep}");
        assert_eq!(rep["liquid"], true, "{rep}");
        let (s, metrics) = http.get("/metrics", None).await;
        assert_eq!(s, 200);
        let text = metrics.as_str().expect("text");
        assert!(text.contains("infhub_transfers_total 1"), "one transfer since the restart:\n{text}");
        assert!(text.contains("infhub_ledger_batch_commands_bucket"), "{text}");
        assert!(text.contains("infhub_http_requests_total{route=\"/v1/transfers\",status=\"200\"}"), "{text}");
        // Every write since the restart went through the writer's measured steps.
        for step in [
            "infhub_ledger_queue_wait_seconds",
            "infhub_ledger_commit_apply_seconds",
            "infhub_ledger_commit_sync_seconds",
            "infhub_ledger_commit_history_seconds",
        ] {
            let count: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{step}_count ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{step} missing:\n{text}"));
            assert!(count >= 1, "{step} observed nothing:\n{text}");
        }
        node.stop().await;
    });
}

async fn chain_channel(chain: &Chain, user: Address) -> IInfHub::Channel {
    chain.view(chain.d.hub, IInfHub::channelCall { user }).await
}
