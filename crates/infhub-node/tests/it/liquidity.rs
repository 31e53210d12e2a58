//! The hub's liquidity through the node: realizations sent on its own by policy (and their gas
//! counted), a top-up from the hub key's tokens, and a reserve withdrawal through the ledger's
//! rule — earmarked, announced, refused before its notice is over, executed after it.

use crate::harness::*;
use alloy::primitives::{Address, U256};
use infhub_core::messages::PaymentKind;
use infhub_core::Amount;
use serde_json::json;

#[test]
fn the_hub_realizes_by_policy_tops_up_and_withdraws_its_reserve_through_the_ledger_rule() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        // Realize any payer past 250 (base units), in batches.
        config.liquidity.realize_when_payer_reaches = Amount(250);
        config.liquidity.realize_when_free_reserve_below = Amount(0);
        config.node.resend_after_blocks = 4;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let domain = chain.domain();
        let op = Some(OPERATOR);
        let (mut a, mut b) = (Wallet::new(&chain, 1).await, Wallet::new(&chain, 2).await);
        register(&chain, &http, &mut a).await;
        register(&chain, &http, &mut b).await;
        a.approve_and_deposit(&chain, 1_000).await;
        settle_chain(&chain, &http).await;

        // --- Realizations: A pays B past the threshold; the hub realizes A's debit itself.
        for id in 1..=3 {
            let (s, v) = a.pay(&http, &domain, PaymentKind::Internal, b.address(), 100, id).await;
            assert_eq!(s, 200, "{v}");
        }
        let realized = eventually(30, "a realization mined and confirmed", || async {
            chain.mine(1).await;
            let (s, v) = http.get("/v1/operator/liquidity", op).await;
            assert_eq!(s, 200, "{v}");
            (v["duties"]["realizationsMined"].as_u64() >= Some(1) && v["liquidity"]["realizable"] == json!("0"))
                .then_some(v)
        })
        .await;
        assert!(realized["duties"]["realizationGas"].as_u64().unwrap_or(0) > 30_000, "{realized}");
        assert_eq!(realized["duties"]["debitsRealized"], json!(1), "{realized}");
        let (_, metrics) = http.get("/metrics", None).await;
        let metrics = metrics.as_str().expect("text").to_string();
        assert!(metrics.contains("infhub_realizations_mined_total 1"), "{metrics}");

        // --- A top-up from the hub key's own tokens.
        let reserve_before = amount(&realized["liquidity"]["reserve"]);
        let (s, v) = http.post("/v1/operator/reserve/top-ups", op, &json!({"amount": "5000"})).await;
        assert_eq!(s, 200, "{v}");
        eventually(20, "the top-up confirmed", || async {
            chain.mine(1).await;
            let (_, v) = http.get("/v1/operator/liquidity", op).await;
            (amount(&v["liquidity"]["reserve"]) == reserve_before + 5_000).then_some(())
        })
        .await;

        // --- A reserve withdrawal: more than the free reserve is refused by the ledger's rule.
        let (_, v) = http.get("/v1/operator/liquidity", op).await;
        let free = amount(&v["liquidity"]["free"]);
        let (s, v) =
            http.post("/v1/operator/reserve/withdrawals", op, &json!({"amount": (free + 1).to_string()})).await;
        assert_eq!((s, code(&v)), (422, "reserve_insufficient"), "{v}");
        let (s, v) = http.post("/v1/operator/reserve/withdrawals", op, &json!({"amount": "700"})).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = http.post("/v1/operator/reserve/withdrawals", op, &json!({"amount": "1"})).await;
        assert_eq!((s, code(&v)), (422, "reserve_withdrawal_pending"), "one at a time: {v}");
        let announced = eventually(20, "the announcement confirmed", || async {
            chain.mine(1).await;
            let (_, v) = http.get("/v1/operator/liquidity", op).await;
            v["liquidity"]["reserveWithdrawal"].is_object().then_some(v)
        })
        .await;
        assert_eq!(announced["liquidity"]["earmarked"], json!("700"));
        assert_eq!(amount(&announced["liquidity"]["free"]), free - 700, "earmarked out of the free reserve");
        let to = Address::repeat_byte(0x7E);
        let (s, v) = http.post("/v1/operator/reserve/withdrawals/execute", op, &json!({"to": to})).await;
        assert_eq!((s, code(&v)), (502, "chain_rejected"), "before the notice is over: {v}");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains("ReserveNoticeNotOver"), "{v}");
        let unlock = announced["liquidity"]["reserveWithdrawal"]["unlockBlock"].as_u64().expect("unlock");
        let head = chain.head().await;
        chain.mine(unlock.saturating_sub(head) + 1).await;
        let (s, v) = http.post("/v1/operator/reserve/withdrawals/execute", op, &json!({"to": to})).await;
        assert_eq!(s, 200, "{v}");
        eventually(20, "the withdrawal confirmed", || async {
            chain.mine(1).await;
            let (_, v) = http.get("/v1/operator/liquidity", op).await;
            (v["liquidity"]["earmarked"] == json!("0") && v["liquidity"]["reserveWithdrawal"].is_null()).then_some(())
        })
        .await;
        assert_eq!(chain.token_balance(to).await, U256::from(700));
        // Nothing announced now: execute is refused by name, without a transaction.
        let (s, v) = http.post("/v1/operator/reserve/withdrawals/execute", op, &json!({"to": to})).await;
        assert_eq!((s, code(&v)), (422, "no_reserve_withdrawal_pending"), "{v}");
        // The operator endpoints need the operator's token.
        let (s, _) = http.get("/v1/operator/liquidity", None).await;
        assert_eq!(s, 401);
        node.stop().await;
    });
}
