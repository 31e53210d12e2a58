//! The operator's audit log through the node (issue 24): every operator request other than a
//! read is recorded before it runs and answered after, refused attempts included (with the
//! fingerprint of the token tried, never the token); reads are not recorded; only the operator
//! reads the log, a page at a time, newest first; the log survives a restart of the node.

use crate::harness::*;
use serde_json::{json, Value};

fn seqs(page: &Value) -> Vec<u64> {
    page["entries"].as_array().expect("entries").iter().map(|e| e["seq"].as_u64().expect("seq")).collect()
}

#[test]
fn operator_actions_and_refused_attempts_are_audited_durably_and_only_the_operator_reads_them() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let config = chain.config(dir.path().to_path_buf());
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        let op = Some(OPERATOR);
        // An action that succeeds, one the node refuses, one without a token, one with a wrong
        // token, and a read.
        let (s, v) = http.post("/v1/operator/reserve/top-ups", op, &json!({"amount": "5000"})).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = http.post("/v1/operator/reserve/withdrawals/cancel", op, &json!({})).await;
        assert!(s >= 400, "nothing to cancel: {v}");
        let (s, _) = http
            .post("/v1/operator/closes", None, &json!({"user": "0x0000000000000000000000000000000000000001"}))
            .await;
        assert_eq!(s, 401);
        let (s, _) = http
            .post(
                "/v1/operator/closes",
                Some("a-guess"),
                &json!({"user": "0x0000000000000000000000000000000000000001"}),
            )
            .await;
        assert_eq!(s, 401);
        let (s, _) = http.get("/v1/operator/liquidity", op).await;
        assert_eq!(s, 200);

        let (s, page) = http.get("/v1/operator/audit?limit=100", op).await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(seqs(&page), (1..=8).rev().collect::<Vec<_>>(), "four requests, four answers, no read: {page}");
        let e = page["entries"].as_array().expect("entries");
        // Newest first: the wrong token's answer, then its request.
        assert_eq!(e[0]["phase"], "answered");
        assert_eq!(e[0]["requestSeq"], 7);
        assert_eq!(e[0]["status"], 401);
        assert_eq!(e[1]["phase"], "requested");
        let guess = e[1]["actor"].as_str().expect("actor");
        assert!(guess.starts_with("token:") && !guess.contains("a-guess"), "a fingerprint, never the token: {guess}");
        assert_eq!(e[3]["actor"], "anonymous");
        assert_eq!(e[3]["path"], "/v1/operator/closes");
        assert_eq!(e[7]["phase"], "requested");
        assert_eq!(e[7]["method"], "POST");
        assert_eq!(e[7]["path"], "/v1/operator/reserve/top-ups");
        assert_eq!(e[7]["body"], json!({"amount": "5000"}));
        let operator = e[7]["actor"].as_str().expect("actor");
        assert!(operator.starts_with("operator:") && !operator.contains(OPERATOR), "{operator}");
        assert_eq!(e[6]["status"], 200, "the top-up's answer");
        assert!(e[4]["status"].as_u64() >= Some(400), "the refused cancel's answer: {}", e[4]);
        assert!(e[7]["timeMs"].as_u64() > Some(1_700_000_000_000), "wall-clock milliseconds");

        // Paging, limits, and who may read.
        let (_, older) = http.get("/v1/operator/audit?limit=3&before=5", op).await;
        assert_eq!(seqs(&older), vec![4, 3, 2]);
        assert_eq!(older["nextBefore"], 2);
        let (s, v) = http.get("/v1/operator/audit?limit=0", op).await;
        assert_eq!((s, v["error"]["code"].clone()), (400, json!("limit_exceeded")), "{v}");
        let (s, _) = http.get("/v1/operator/audit", None).await;
        assert_eq!(s, 401);

        // The log survives a restart; numbering continues.
        node.stop().await;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let (s, _) = http.post("/v1/operator/reserve/withdrawals/cancel", op, &json!({})).await;
        assert!(s >= 400);
        let (_, page) = http.get("/v1/operator/audit?limit=2", op).await;
        assert_eq!(seqs(&page), vec![10, 9], "{page}");
    });
}

/// Operator token rotation (issue 24): the new token works at once; with no grace the old one
/// is refused at once (with the default grace it would keep working for an hour); a session
/// or a wrong token may not rotate; the rotation survives a restart, where the configured token
/// stays retired; and the rotation is in the audit log under the old token's fingerprint.
#[test]
fn a_rotated_operator_token_replaces_the_configured_one_across_a_restart() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        config.node.operator_token_grace_secs = 0;
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        let (s, v) = http.post("/v1/operator/token-rotations", Some("not-the-operator-token"), &json!({})).await;
        assert_eq!(s, 401, "{v}");
        let (s, v) = http.post("/v1/operator/token-rotations", Some(OPERATOR), &json!({})).await;
        assert_eq!(s, 200, "{v}");
        let new = v["operatorToken"].as_str().expect("token").to_string();
        assert!(new.starts_with("ot_") && new.len() == 3 + 64, "{new}");
        let (s, _) = http.get("/v1/operator/liquidity", Some(&new)).await;
        assert_eq!(s, 200, "the new token works");
        let (s, _) = http.get("/v1/operator/liquidity", Some(OPERATOR)).await;
        assert_eq!(s, 401, "no grace: the configured token is retired at once");
        let (_, page) = http.get("/v1/operator/audit?limit=2", Some(&new)).await;
        let requested = &page["entries"][1];
        assert_eq!(requested["path"], "/v1/operator/token-rotations", "{page}");
        assert_eq!(requested["actor"], format!("operator:{}", infhub_node::audit::fingerprint(OPERATOR)));
        node.stop().await;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let (s, _) = http.get("/v1/operator/liquidity", Some(&new)).await;
        assert_eq!(s, 200, "the rotated token after a restart");
        let (s, _) = http.get("/v1/operator/liquidity", Some(OPERATOR)).await;
        assert_eq!(s, 401, "the configured token stays retired after a restart");
        node.stop().await;
    });
}

/// The operator freezes an account with `infhub operator freeze` (spec §5.20): the account
/// cannot pay (refused unused) and a payment to it is refunded, both by name; the account view
/// says so; the action is in the audit log and survives a restart; `unfreeze` restores it.
#[test]
fn the_operator_freezes_and_unfreezes_an_account_with_the_cli() {
    use infhub_core::messages::PaymentKind;
    use infhub_node::operator::{execute, OperatorArgs, OperatorCommand};
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let config = chain.config(dir.path().to_path_buf());
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        let (mut a, mut b) = (Wallet::new(&chain, 1).await, Wallet::new(&chain, 2).await);
        register(&chain, &http, &mut a).await;
        register(&chain, &http, &mut b).await;
        a.approve_and_deposit(&chain, 100).await;
        b.approve_and_deposit(&chain, 100).await;
        settle_chain(&chain, &http).await;
        let cli = |command: OperatorCommand| {
            execute(OperatorArgs { hub_url: node.url.clone(), token: OPERATOR.into(), command })
        };
        let account = format!("{}", a.address());
        let answer = cli(OperatorCommand::Freeze { account: account.clone() }).await.expect("frozen");
        assert_eq!((answer["frozen"].clone(), answer["changed"].clone()), (json!(true), json!(true)), "{answer}");
        let refused = cli(OperatorCommand::Freeze { account: format!("{}", chain.anvil_hub()) }).await;
        assert!(refused.is_err_and(|e| e.contains("unknown_account")), "an unknown account is named");
        let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 5, 1).await;
        assert_eq!((s, code(&v)), (422, "account_frozen"), "{v}");
        let (s, v) = b.pay(&http, &domain, PaymentKind::Internal, a.address(), 5, 2).await;
        assert_eq!((s, code(&v)), (422, "account_frozen"), "{v}");
        assert!(v["error"]["refund"].is_object(), "a payment to a frozen account is refunded: {v}");
        let (_, view) = a.account(&http).await;
        assert_eq!(view["frozen"], json!(true), "{view}");
        let (_, log) = http.get("/v1/operator/audit", Some(OPERATOR)).await;
        assert!(log.to_string().contains("/v1/operator/freezes"), "{log}");
        // The operator's list (spec §5.22): the frozen ones, then everything a page at a time.
        let list = |after: Option<String>, limit: usize, frozen: Option<bool>, prefix: Option<String>| {
            cli(OperatorCommand::Accounts { after, limit, prefix, kind: None, state: None, frozen })
        };
        let frozen = list(None, 50, Some(true), None).await.expect("listed");
        let addresses: Vec<&str> =
            frozen["accounts"].as_array().expect("a").iter().filter_map(|x| x["address"].as_str()).collect();
        assert_eq!(addresses, vec![account.to_lowercase().as_str()], "{frozen}");
        let first = list(None, 1, None, None).await.expect("listed");
        let second = list(first["nextAfter"].as_str().map(str::to_string), 1, None, None).await.expect("listed");
        let (x, y) = (
            first["accounts"][0]["address"].as_str().expect("x"),
            second["accounts"][0]["address"].as_str().expect("y"),
        );
        assert!(x.to_lowercase() < y.to_lowercase(), "address order: {x} then {y}");
        let by_prefix = list(None, 50, None, Some(account[..5].to_string())).await.expect("listed");
        assert!(by_prefix.to_string().contains(&account.to_lowercase()), "{by_prefix}");
        let (s, v) = http.get("/v1/operator/accounts?kind=wallet", Some(OPERATOR)).await;
        assert_eq!((s, code(&v)), (400, "malformed_request"), "{v}");
        let (s, v) = http.get("/v1/operator/accounts?limit=0", Some(OPERATOR)).await;
        assert_eq!((s, code(&v)), (400, "limit_exceeded"), "{v}");
        let (s, v) = http.get("/v1/operator/accounts", a.token.as_deref()).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "a user's session is not the operator: {v}");
        // Still frozen after a restart (the command is in the log).
        node.stop().await;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        a.login(&http, &domain).await;
        let (_, view) = a.account(&http).await;
        assert_eq!(view["frozen"], json!(true), "{view}");
        let args = OperatorArgs {
            hub_url: node.url.clone(),
            token: OPERATOR.into(),
            command: OperatorCommand::Unfreeze { account },
        };
        execute(args).await.expect("unfrozen");
        let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 5, 3).await;
        assert_eq!(s, 200, "{v}");
        // Payments looked up by id, from either side (spec §5.21).
        b.login(&http, &domain).await;
        let lookup = |w: &Wallet, id: u64| {
            let path = format!("/v1/accounts/{}/payments/{}", w.address(), payment_id(id));
            let (http, token) = (&http, w.token.clone());
            async move { http.get(&path, token.as_deref()).await }
        };
        let (s, v) = lookup(&a, 3).await;
        assert_eq!((s, v["status"].clone()), (200, json!("paid")), "{v}");
        assert!(v["entries"][0]["receipt"].is_object(), "with the receipt: {v}");
        let (s, v) = lookup(&b, 3).await;
        assert_eq!((s, v["status"].clone()), (200, json!("received")), "{v}");
        let (s, v) = lookup(&b, 2).await;
        assert_eq!((s, v["status"].clone()), (200, json!("refunded")), "{v}");
        let (s, v) = lookup(&a, 1).await;
        assert_eq!((s, code(&v)), (404, "unknown_payment"), "refused unused, never recorded: {v}");
        let (s, v) =
            http.get(&format!("/v1/accounts/{}/payments/{}", a.address(), payment_id(3)), b.token.as_deref()).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "another account's payment: {v}");
        node.stop().await;
    });
}
