//! The custodial phase of the benchmark (seed 000 §3): accounts whose keys the platform holds
//! move without signatures, so the limit is the ledger itself. It opens custodial accounts,
//! funds them by operator purchases, builds batches of transfers between random pairs, and
//! drives them through the batch endpoint, durable as always (each batch is one log record,
//! answered after its fsync). It checks that every transfer was applied and that the custodial
//! total is unchanged.

use crate::{fail, for_each_concurrent, metric, percentile, post, proc_cpu_seconds, Node, Rng, OPERATOR};
use alloy::primitives::{B256, U256};
use infhub_core::ledger::custodial_address;
use serde_json::{json, Value};
use std::time::Instant;

/// Funding of each custodial account, in base units.
const CUSTODIAL_FUNDING: u128 = 1_000_000_000;
/// Connections driving batches.
const BATCH_CONNECTIONS: usize = 4;

/// Runs the phase; returns its figures.
pub(crate) async fn run(
    client: &reqwest::Client,
    node: &Node,
    transfers: usize,
    batch: usize,
    accounts: usize,
    seed: u64,
) -> Result<Value, String> {
    let batch = batch.clamp(1, infhub_core::ledger::MAX_CUSTODIAL_BATCH);
    let ids: Vec<String> = (0..accounts).map(|i| format!("bench-{seed}-{i}")).collect();
    let (url, c) = (node.url.clone(), client.clone());
    for_each_concurrent(ids.clone(), 16, move |id| {
        let (url, c) = (url.clone(), c.clone());
        async move {
            post(&c, format!("{url}/v1/operator/custodial-accounts"), Some(OPERATOR), &json!({"userId": id})).await?;
            let body = json!({"user": custodial_address(&id), "amount": CUSTODIAL_FUNDING.to_string(),
                              "purchaseId": alloy::primitives::keccak256(id.as_bytes())});
            post(&c, format!("{url}/v1/operator/purchases"), Some(OPERATOR), &body).await?;
            Ok(())
        }
    })
    .await?;
    let addrs: Vec<_> = ids.iter().map(|id| custodial_address(id)).collect();
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let mut bodies = Vec::new();
    let mut n = 0usize;
    while n < transfers {
        let k = batch.min(transfers - n);
        let list: Vec<Value> = (0..k)
            .map(|j| {
                let from = rng.below(accounts);
                let mut to = rng.below(accounts);
                if to == from {
                    to = (from + 1) % accounts;
                }
                json!({"from": addrs[from], "to": addrs[to], "amount": "1",
                       "transferId": B256::from(U256::from((seed << 40) + (n + j) as u64))})
            })
            .collect();
        bodies.push(serde_json::to_vec(&json!({"transfers": list})).map_err(fail)?);
        n += k;
    }
    let metrics_before =
        client.get(format!("{}/metrics", node.url)).send().await.map_err(fail)?.text().await.map_err(fail)?;
    let cpu_before = proc_cpu_seconds(node.child.id());
    let start = Instant::now();
    let lanes: Vec<Vec<Vec<u8>>> = {
        let mut lanes = vec![Vec::new(); BATCH_CONNECTIONS];
        for (i, b) in bodies.into_iter().enumerate() {
            lanes[i % BATCH_CONNECTIONS].push(b);
        }
        lanes
    };
    let mut tasks = Vec::new();
    for lane in lanes {
        let (c, url) = (client.clone(), format!("{}/v1/custodial/transfers", node.url));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut moved = 0usize;
            for body in lane {
                let t0 = Instant::now();
                let resp = c
                    .post(&url)
                    .bearer_auth(OPERATOR)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(fail)?;
                let status = resp.status();
                let v: Value = resp.json().await.map_err(fail)?;
                if !status.is_success() {
                    return Err(format!("custodial batch refused: {status} {v}"));
                }
                moved += v["results"].as_array().map_or(0, |r| r.iter().filter(|x| x["result"] == "moved").count());
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<(Vec<f64>, usize), String>((lat, moved))
        }));
    }
    let (mut latencies, mut moved) = (Vec::new(), 0usize);
    for t in tasks {
        let (l, m) = t.await.map_err(fail)??;
        latencies.extend(l);
        moved += m;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = proc_cpu_seconds(node.child.id()) - cpu_before;
    let metrics_after =
        client.get(format!("{}/metrics", node.url)).send().await.map_err(fail)?.text().await.map_err(fail)?;
    let commits =
        metric(&metrics_after, "infhub_ledger_commits_total") - metric(&metrics_before, "infhub_ledger_commits_total");
    latencies.sort_by(|a, b| a.total_cmp(b));
    let rep = crate::solvency(client, node).await?;
    let total: u128 = rep["custodialTotal"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let books = moved == transfers && total == CUSTODIAL_FUNDING * accounts as u128 && rep["liquid"] == true;
    Ok(json!({
        "transfers": transfers, "batch": batch, "accounts": accounts, "applied": moved,
        "transfersPerSecond": transfers as f64 / secs,
        "batchLatencyMs": {"p50": percentile(&latencies, 0.5), "p99": percentile(&latencies, 0.99)},
        "fsyncs": commits,
        "nodeCpuSecondsPer1000": cpu * 1000.0 / transfers as f64,
        "booksBalance": books,
    }))
}
