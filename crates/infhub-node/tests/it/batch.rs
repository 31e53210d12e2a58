//! The batch endpoint for signed transfers: each transfer is applied in order and answered as
//! `/v1/transfers` would answer it, refusals are per transfer, and a retried batch replays.

use crate::harness::*;
use infhub_core::messages::PaymentKind;
use serde_json::{json, Value};

#[test]
fn a_batch_of_signed_transfers_applies_in_order_with_per_transfer_results() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        // The ledger remembers one transfer id: the retries below of older payments are
        // answered from the history (their nonces are spent in the ledger).
        config.limits.transfer_ids_kept = 1;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let mut a = Wallet::new(&chain, 1).await;
        let mut b = Wallet::new(&chain, 2).await;
        register(&chain, &http, &mut a).await;
        register(&chain, &http, &mut b).await;
        let body = json!({"user": a.address(), "amount": "1000", "purchaseId": payment_id(900)});
        let (s, v) = http.post("/v1/operator/purchases", Some(OPERATOR), &body).await;
        assert_eq!(s, 200, "{v}");

        // Three good debits in nonce order and, between them, one signed by the wrong key.
        let mut batch = Vec::new();
        for (amount, id) in [(10u128, 1u64), (20, 2)] {
            let d = a.debit(PaymentKind::Internal, b.address(), amount, payment_id(id));
            batch.push(a.sign_debit(&domain, d));
            a.accepted(&d);
        }
        let forged = a.debit(PaymentKind::Internal, b.address(), 5, payment_id(3));
        batch.push(serde_json::to_value(infhub_core::messages::Signed::new(forged, &domain, &b.key)).expect("json"));
        let d = a.debit(PaymentKind::Internal, b.address(), 30, payment_id(4));
        batch.push(a.sign_debit(&domain, d));
        a.accepted(&d);

        let (s, v) = http.post("/v1/transfers/batch", None, &json!({"transfers": batch})).await;
        assert_eq!(s, 200, "{v}");
        let r = v["results"].as_array().expect("results");
        assert_eq!(r.len(), 4);
        for i in [0, 1, 3] {
            assert_eq!(r[i]["replayed"], false, "{v}");
            assert!(r[i]["result"]["receipt"].is_object(), "{v}");
        }
        assert_eq!(code(&r[2]), "wrong_signer", "{v}");
        let (_, acct) = b.account(&http).await;
        assert_eq!(acct["balance"], "60", "10 + 20 + 30: {acct}");

        // The same batch again: the applied ones replay with their first results.
        let (s, again) = http.post("/v1/transfers/batch", None, &json!({"transfers": batch})).await;
        assert_eq!(s, 200, "{again}");
        let r2 = again["results"].as_array().expect("results");
        for i in [0, 1, 3] {
            assert_eq!(r2[i]["replayed"], true, "{again}");
            assert_eq!(r2[i]["result"], r[i]["result"], "first result returned again");
        }
        let (_, acct) = b.account(&http).await;
        assert_eq!(acct["balance"], "60", "nothing applied twice: {acct}");
        // One alone, on the single endpoint, as a wallet resolving a lost answer would send it.
        let (s, one) = http.post("/v1/transfers", None, &batch[0]).await;
        assert_eq!((s, &one["replayed"], &one["result"]), (200, &json!(true), &r[0]["result"]), "{one}");
        // A new debit at a spent nonce is still refused.
        let stale = a.sign_debit(
            &domain,
            infhub_core::Debit { nonce: 1, ..a.debit(PaymentKind::Internal, b.address(), 7, payment_id(50)) },
        );
        let (s, v) = http.post("/v1/transfers", None, &stale).await;
        assert_eq!((s, code(&v)), (422, "nonce_must_increase"), "{v}");

        let (s, v): (u16, Value) = http.post("/v1/transfers/batch", None, &json!({"transfers": []})).await;
        assert_eq!((s, code(&v)), (400, "limit_exceeded"), "{v}");
        node.stop().await;
    });
}
