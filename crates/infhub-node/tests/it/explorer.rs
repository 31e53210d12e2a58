//! The explorer (issue 24): public HTML pages with real data from a running hub. Each block's
//! root and signature are the hub's (the signature recovers to the hub over `ProofBatch(root)`);
//! chain events name their accounts; an account's page shows only what the chain knows, never
//! its off-chain balance; blocks page backwards; unknown blocks and accounts are 404 pages.

use crate::harness::*;
use infhub_core::messages::PaymentKind;
use infhub_core::{Address, Signature, B256};

async fn page(http: &Http, path: &str) -> (u16, String) {
    let resp = http.client.get(format!("{}{path}", http.base)).send().await.expect("request");
    let status = resp.status().as_u16();
    let html = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(html.starts_with("text/html"), "{path} is HTML: {html}");
    (status, resp.text().await.expect("body"))
}

/// The text between `start` and the next `end` after it, every time.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    text.split(start).skip(1).filter_map(|rest| rest.split(end).next()).collect()
}

#[test]
fn the_explorer_shows_blocks_events_and_accounts_with_real_data_and_keeps_payments_private() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let config = chain.config(dir.path().to_path_buf());
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        let (mut payer, payee) = crate::locks::payer_and_payee(&chain, &http).await;
        for id in 1..=3u64 {
            let (s, v) = payer.pay(&http, &domain, PaymentKind::Internal, payee.address(), 30, id).await;
            assert_eq!(s, 200, "{v}");
        }

        let (_, info) = http.get("/v1/info", None).await;
        let hub: Address = serde_json::from_value(info["hub"].clone()).expect("hub");
        let (s, overview) = page(&http, "/explorer").await;
        assert_eq!(s, 200);
        assert!(overview.contains("Hub overview") && overview.contains("<svg"), "{overview}");
        assert!(
            overview.contains("deposit") && overview.contains("reserve deposit"),
            "chain events listed: {overview}"
        );
        assert!(overview.contains(&format!("<b>{}</b>", 2)), "two accounts: {overview}");

        // Every block's signature is the hub's over its root.
        let (s, blocks) = page(&http, "/explorer/blocks").await;
        assert_eq!(s, 200);
        let seqs: Vec<u64> =
            between(&blocks, "<a href=\"/explorer/blocks/", "\"").iter().filter_map(|s| s.parse().ok()).collect();
        assert!(seqs.len() >= 3, "a block per payment at least: {blocks}");
        assert!(blocks.contains("<td>1</td>"), "blocks count their payments: {blocks}");
        for seq in &seqs {
            let (s, block) = page(&http, &format!("/explorer/blocks/{seq}")).await;
            assert_eq!(s, 200, "{block}");
            let codes = between(&block, "<code>", "</code>");
            let root: B256 = codes[0].parse().expect("root");
            let bytes = infhub_core::signature::hex_decode(codes[1].trim_start_matches("0x")).expect("hex");
            let signature = Signature(bytes.try_into().expect("65 bytes"));
            let signer = signature.recover(infhub_core::merkle::batch_digest(root, &domain)).expect("recover");
            assert_eq!(signer, hub, "block {seq} signed by the hub");
            for who in [payer.address(), payee.address()] {
                assert!(!block.to_lowercase().contains(&format!("{who:x}")), "a block names no payer or payee");
            }
        }
        let newest = seqs[0];
        let (_, older) = page(&http, &format!("/explorer/blocks?before={newest}")).await;
        assert!(!older.contains(&format!("/explorer/blocks/{newest}\"")), "paged before the newest");

        // The payer's page: her deposit, not her off-chain balance (500 − 90 = 410).
        let (s, account) = page(&http, &format!("/explorer/accounts/{}", payer.address())).await;
        assert_eq!(s, 200);
        assert!(account.contains("deposited in all"), "{account}");
        assert!(!account.contains("410"), "no off-chain balance: {account}");
        let (s, _) = page(&http, &format!("/explorer/accounts/{}", Address::repeat_byte(9))).await;
        assert_eq!(s, 404);
        let (s, _) = page(&http, "/explorer/blocks/999999").await;
        assert_eq!(s, 404);
        let (s, events) = page(&http, "/explorer/events").await;
        assert_eq!(s, 200);
        assert!(events.contains("channel opened"), "{events}");
        // A restart rebuilds the blocks from the log's tail: the same blocks, the same roots.
        node.stop().await;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let (_, again) = page(&http, "/explorer/blocks").await;
        assert_eq!(between(&again, "<code>", "</code>"), between(&blocks, "<code>", "</code>"), "{again}");
        node.stop().await;
    });
}
