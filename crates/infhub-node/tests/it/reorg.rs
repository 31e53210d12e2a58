//! Reorgs through the node: a deposit reorganised out before its confirmations is shown as
//! pending, then withdrawn and never credited; a reorg below the confirmed height halts chain
//! following (reported in `/v1/info`) while the ledger keeps what it applied.

use crate::harness::*;

#[test]
fn reorged_deposits_are_never_credited_and_a_deep_reorg_halts_chain_following() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let node = InProcessNode::start(chain.config(dir.path().to_path_buf())).await;
        let http = Http::new(&node.url);
        let mut a = Wallet::new(&chain, 3).await;
        register(&chain, &http, &mut a).await;
        a.approve_and_deposit(&chain, 100).await;
        settle_chain(&chain, &http).await;
        assert_eq!(amount(&a.account(&http).await.1["balance"]), 100);

        // Before confirmation: pending, then reorganised out.
        let block = a.approve_and_deposit(&chain, 50).await;
        eventually(15, "pending deposit seen", || async {
            let (_, v) = a.account(&http).await;
            v["pendingDeposits"].as_array().filter(|p| !p.is_empty()).map(|_| ())
        })
        .await;
        let head = chain.head().await;
        infhub_chain::anvil::reorg(&chain.provider, head - block + 1).await.expect("reorg");
        eventually(15, "pending deposit withdrawn", || async {
            let (_, v) = a.account(&http).await;
            v["pendingDeposits"].as_array().filter(|p| p.is_empty()).map(|_| ())
        })
        .await;
        settle_chain(&chain, &http).await;
        let v = a.account(&http).await.1;
        assert_eq!(amount(&v["deposited"]), 100, "a reorged-out deposit was credited: {v}");
        let (_, info) = http.get("/v1/info", None).await;
        assert!(info["halted"].is_null(), "{info}");

        // After confirmation: the node stops following and says so; the ledger is untouched.
        a.approve_and_deposit(&chain, 25).await;
        settle_chain(&chain, &http).await;
        assert_eq!(amount(&a.account(&http).await.1["deposited"]), 125);
        infhub_chain::anvil::reorg(&chain.provider, 6).await.expect("deep reorg");
        chain.mine(1).await;
        let info = eventually(15, "chain following halted", || async {
            let (_, info) = http.get("/v1/info", None).await;
            info["halted"].as_str().map(|s| s.to_string())
        })
        .await;
        assert!(info.contains("reorg beyond the confirmation depth"), "{info}");
        assert_eq!(amount(&a.account(&http).await.1["deposited"]), 125);
        node.stop().await;
    });
}
