//! `--explorer-transfers N`: the explorer's pages (issue 24) rendered from a hub ledger holding
//! 10,000 accounts and N transfers, reopened as a node restarts (so the explorer's blocks are
//! rebuilt from the log's tail). Times each page over many renders and prints p50 and the
//! slowest, next to one history page of the same ledger read in the same run (the ratio).
//! Rendering is what a request costs beyond HTTP: a page reads the in-memory chronicle and the
//! ledger's counters, so its cost must not grow with the transfers. The fill is not timed.

use crate::restart::{fill, key, open, open_with_genesis, params_for, SNAPSHOT_EVERY_RECORDS};
use infhub_core::{Address, Domain, PrivateKey};
use serde_json::{json, Value};
use std::time::Instant;

/// Accounts in the ledger.
pub(crate) const ACCOUNTS: usize = 10_000;
/// Renders per page.
const RENDERS: usize = 200;

/// One page's renderer: the page's length.
type Render<'a> = Box<dyn Fn() -> usize + 'a>;

fn timed(mut f: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut ms: Vec<f64> = Vec::with_capacity(RENDERS);
    let mut bytes = 0;
    for _ in 0..RENDERS {
        let t = Instant::now();
        bytes = f();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    (crate::percentile(&ms, 0.5), ms[ms.len() - 1], bytes)
}

/// Runs the measurement; the figures.
pub(crate) fn run(transfers: usize) -> Result<Value, String> {
    let dir = tempfile::Builder::new().prefix("infhub-explorer-").tempdir().map_err(crate::fail)?;
    let hub = key(u64::MAX - 1);
    let domain = Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) };
    let params = params_for(&hub, domain, ACCOUNTS);
    let users: Vec<PrivateKey> = (0..ACCOUNTS as u64).map(key).collect();
    let started = Instant::now();
    let mut hl = open_with_genesis(dir.path(), &hub, params, &users)?;
    let (mut nonce, mut next_id) = (vec![0u64; ACCOUNTS], 0u64);
    while (next_id as usize) < transfers {
        let n = (transfers - next_id as usize).min(100_000);
        fill(&mut hl, &users, &mut nonce, &mut next_id, n, &domain)?;
        println!("  filled {next_id} of {transfers} transfers ({:.0} s)", started.elapsed().as_secs_f64());
    }
    let fill_secs = started.elapsed().as_secs_f64();
    drop(hl);
    let t = Instant::now();
    let st = open(dir.path(), &hub, params, SNAPSHOT_EVERY_RECORDS)?;
    let reopen_secs = t.elapsed().as_secs_f64();
    let blocks_kept = st.chronicle().all_blocks().count();
    let newest = st.chronicle().blocks(u64::MAX, 1).first().map(|b| b.seq).ok_or("no block after the fill")?;
    let who = users[ACCOUNTS / 2].address();
    let pages: Vec<(&str, Render<'_>)> = vec![
        ("overview", Box::new(|| infhub_node::explorer::overview(&st).len())),
        ("blocks", Box::new(|| infhub_node::explorer::blocks(&st, None).len())),
        ("block", Box::new(|| infhub_node::explorer::block(&st, newest).map_or(0, |p| p.len()))),
        ("events", Box::new(|| infhub_node::explorer::events(&st, None).len())),
        ("account", Box::new(|| infhub_node::explorer::account(&st, who).map_or(0, |p| p.len()))),
    ];
    let mut figures = serde_json::Map::new();
    let mut slowest: f64 = 0.0;
    for (name, render) in &pages {
        let (p50, max, bytes) = timed(render);
        if bytes == 0 {
            return Err(format!("the {name} page rendered nothing"));
        }
        slowest = slowest.max(max);
        figures.insert(name.to_string(), json!({"p50Millis": p50, "maxMillis": max, "bytes": bytes}));
    }
    let heads = st.history().heads(&who).ok_or("the account has no history")?;
    let reader = st.history().reader();
    let (history_p50, _, _) = timed(|| reader.page(&who, heads, u64::MAX, 50).map_or(0, |p| p.len()));
    Ok(json!({
        "accounts": ACCOUNTS,
        "transfers": transfers,
        "blocksKept": blocks_kept,
        "pages": figures,
        "slowestPageMillis": slowest,
        "historyPageP50Millis": history_p50,
        "reopenSeconds": reopen_secs,
        "fillSeconds": fill_secs,
    }))
}
