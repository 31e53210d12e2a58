//! `--multi-hop N`: payments by invoice across three hubs on loopback (spec §5.23b) against
//! payments by invoice inside one hub, in the same run.
//!
//! One anvil, three hub nodes in this process (A, B, C), A's link at B and B's link at C. Four
//! payers at A pay `N` invoices of payees at A (the same-hub locked transfer of §5.17b), then `N`
//! invoices of payees at C, each through A→B→C with the route quoted by A, a point per link and
//! B's fee. Each payment is timed from the payer's first request to her checked receipt with
//! the next hubs' answers, the moment every hop holds its lock; the payees' claims and the
//! scalars' return are not in the timed part. Prints payments per second, p50 and p99, and the
//! ratio of the two rates.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use infhub_chain::anvil::{self, Anvil, Deployment};
use infhub_core::{Amount, PrivateKey};
use infhub_wallet::store::WalletDir;
use infhub_wallet::Wallet;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most payments per phase.
pub(crate) const MAX_MULTI_HOP_PAYMENTS: usize = 5_000;
/// Payers paying at once (each one payment after another).
const PAYERS: usize = 4;
/// The dev keys of hubs B and C (A is key 0).
const HUB_KEYS: [usize; 2] = [4, 3];
/// What each link and payer is funded with, in base units.
const FUNDS: u64 = 1_000_000_000;

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct Hub {
    url: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), infhub_node::NodeError>>,
}

async fn start_hub(anvil: &Anvil, d: &Deployment, key: usize, dir: &Path, fee: u128) -> Result<Hub, String> {
    let mut c = infhub_node::dev::config(anvil, d, "127.0.0.1:0".into(), dir.to_path_buf());
    c.chain.hub_key.0 = anvil::dev_key(key);
    c.chain.poll_interval_ms = 50;
    c.node.link_watch_interval_ms = 200;
    c.node.link_base_fee = Amount(fee);
    c.node.log = "warn".into();
    let (stop, rx) = watch::channel(false);
    let (tx, bound) = tokio::sync::oneshot::channel::<SocketAddr>();
    let task = tokio::spawn(infhub_node::run(c, rx, Some(tx)));
    let addr = bound.await.map_err(|_| "a hub failed to start".to_string())?;
    Ok(Hub { url: format!("http://{addr}"), stop, task })
}

async fn deploy_hub_of(anvil: &Anvil, d: &Deployment, key: usize) -> Result<Deployment, String> {
    let p = anvil.provider().map_err(fail)?;
    let (challenge, notice) =
        (infhub_node::dev::DEV_CHALLENGE_PERIOD_BLOCKS, infhub_node::dev::DEV_RESERVE_NOTICE_BLOCKS);
    infhub_node::dev::deploy_other_hub(&p, d, key, U256::from(FUNDS), challenge, notice).await.map_err(fail)
}

/// Gives `to` gas and `FUNDS` tokens.
async fn fund(anvil: &Anvil, d: &Deployment, to: Address) -> Result<(), String> {
    let p = anvil.provider().map_err(fail)?;
    let mut minter = anvil::sender(&p, anvil::dev_key(0)).await.map_err(fail)?;
    anvil::mint(&mut minter, d.token, to, U256::from(FUNDS)).await.map_err(fail)?;
    let eth = U256::from(10u64).pow(U256::from(18u64));
    p.raw_request::<_, ()>("anvil_setBalance".into(), (to, eth)).await.map_err(fail)
}

async fn operator(http: &reqwest::Client, method: &str, url: String, body: Option<Value>) -> Result<Value, String> {
    let token = "dev-operator-token-not-secret";
    let r = match body {
        Some(b) => http.post(&url).json(&b),
        None if method == "GET" => http.get(&url),
        None => http.post(&url),
    };
    let v: Value = r.bearer_auth(token).send().await.map_err(fail)?.json().await.map_err(fail)?;
    Ok(v)
}

/// `from` opens a link at `to` and deposits `FUNDS` into it; waits until it holds them.
async fn link(anvil: &Anvil, d: &Deployment, http: &reqwest::Client, from: &Hub, to: &Hub) -> Result<(), String> {
    let opened =
        operator(http, "POST", format!("{}/v1/operator/links", from.url), Some(json!({"hubUrl": to.url}))).await?;
    let peer = opened["link"]["peerContract"].clone();
    let list = operator(http, "GET", format!("{}/v1/operator/links", from.url), None).await?;
    let address: Address = serde_json::from_value(list["linkAddress"].clone()).map_err(fail)?;
    fund(anvil, d, address).await?;
    let state = |v: &Value| v["links"].as_array().and_then(|l| l.iter().find(|l| l["peerContract"] == peer).cloned());
    wait(60, "a link open", || async {
        let v = operator(http, "GET", format!("{}/v1/operator/links", from.url), None).await.ok()?;
        (state(&v)?["state"] == "open").then_some(())
    })
    .await?;
    let path = format!("{}/v1/operator/links/{}/deposits", from.url, peer.as_str().unwrap_or_default());
    operator(http, "POST", path, Some(json!({"amount": FUNDS.to_string()}))).await?;
    wait(60, "a link funded", || async {
        let v = operator(http, "GET", format!("{}/v1/operator/links", from.url), None).await.ok()?;
        let balance = state(&v)?["channel"]["balance"].as_str()?.parse::<u64>().ok()?;
        (balance == FUNDS).then_some(())
    })
    .await
}

async fn wait<T, F, Fut>(secs: u64, what: &str, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A wallet of a fresh key registered at the hub at `url`, with `deposit` on chain.
async fn wallet(anvil: &Anvil, d: &Deployment, dir: &Path, url: &str, deposit: u64) -> Result<Wallet, String> {
    let mut bytes = [0u8; 32];
    getrandom(&mut bytes)?;
    let key = PrivateKey::from_bytes(bytes).map_err(fail)?;
    fund(anvil, d, key.address()).await?;
    let dir = WalletDir::new(dir.join(format!("{:x}", key.address())));
    let mut w = Wallet::register(dir, key, bytes.into(), url, &anvil.url, &mut |_| {}).await.map_err(fail)?;
    if deposit > 0 {
        w.deposit(Amount(u128::from(deposit)), &mut |_| {}).await.map_err(fail)?;
    }
    Ok(w)
}

fn getrandom(b: &mut [u8; 32]) -> Result<(), String> {
    let mut f = std::fs::File::open("/dev/urandom").map_err(fail)?;
    std::io::Read::read_exact(&mut f, b).map_err(fail)
}

/// The payers pay their invoices, each one after another, all at once; the latencies (ms)
/// and the wall time.
async fn pay_all(
    payers: Vec<Wallet>,
    invoices: Vec<Vec<infhub_core::invoice::SignedInvoice>>,
) -> Result<(Vec<Wallet>, Vec<f64>, f64), String> {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (mut w, list) in payers.into_iter().zip(invoices) {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(list.len());
            for inv in &list {
                let t = Instant::now();
                w.pay_invoice(inv).await.map_err(fail)?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, String>((w, lat))
        }));
    }
    let (mut wallets, mut all) = (Vec::new(), Vec::new());
    for t in tasks {
        let (w, lat) = t.await.map_err(fail)??;
        wallets.push(w);
        all.extend(lat);
    }
    Ok((wallets, all, t0.elapsed().as_secs_f64()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn figures(mut lat: Vec<f64>, secs: f64) -> Value {
    lat.sort_by(f64::total_cmp);
    let n = lat.len();
    json!({"payments": n, "seconds": secs, "paymentsPerSecond": n as f64 / secs,
           "latencyMs": {"p50": percentile(&lat, 0.5), "p99": percentile(&lat, 0.99), "max": lat.last().copied().unwrap_or(0.0)}})
}

fn invoices(payees: &[Wallet], n: usize) -> Result<Vec<Vec<infhub_core::invoice::SignedInvoice>>, String> {
    let mut out = vec![Vec::new(); PAYERS];
    for i in 0..n {
        let payee = &payees[i % payees.len()];
        out[i % PAYERS].push(payee.issue_invoice(Amount(1), "bench", 3_600).map_err(fail)?);
    }
    Ok(out)
}

pub(crate) async fn run_multi_hop(n: usize, json_out: &Path) -> Result<(), String> {
    if n == 0 || n > MAX_MULTI_HOP_PAYMENTS {
        return Err(format!("--multi-hop must be in 1..={MAX_MULTI_HOP_PAYMENTS}"));
    }
    println!(
        "infhub-bench: {n} payments by invoice inside hub A, then {n} from A to C through B (three hubs on loopback)"
    );
    let anvil = Anvil::spawn(&[]).map_err(fail)?;
    let d_a = infhub_node::dev::deploy(&anvil).await.map_err(fail)?;
    let d_b = deploy_hub_of(&anvil, &d_a, HUB_KEYS[0]).await?;
    let d_c = deploy_hub_of(&anvil, &d_a, HUB_KEYS[1]).await?;
    let tmp = tempfile::tempdir().map_err(fail)?;
    let a = start_hub(&anvil, &d_a, 0, &tmp.path().join("a"), 0).await?;
    let b = start_hub(&anvil, &d_b, HUB_KEYS[0], &tmp.path().join("b"), 1).await?;
    let c = start_hub(&anvil, &d_c, HUB_KEYS[1], &tmp.path().join("c"), 0).await?;
    let miner = {
        let p = anvil.provider().map_err(fail)?;
        tokio::spawn(async move {
            loop {
                let _ = anvil::mine(&p, 1).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let http = reqwest::Client::new();
    link(&anvil, &d_a, &http, &a, &b).await?;
    link(&anvil, &d_a, &http, &b, &c).await?;
    let wallets = tmp.path().join("wallets");
    let mut payers = Vec::new();
    for _ in 0..PAYERS {
        payers.push(wallet(&anvil, &d_a, &wallets, &a.url, FUNDS).await?);
    }
    let (mut at_a, mut at_c) = (Vec::new(), Vec::new());
    for _ in 0..PAYERS {
        at_a.push(wallet(&anvil, &d_a, &wallets, &a.url, 0).await?);
        at_c.push(wallet(&anvil, &d_a, &wallets, &c.url, 0).await?);
    }
    // A quotes once B's announcement of B→C has reached it.
    let c_hub = PrivateKey::from_bytes(anvil::dev_key(HUB_KEYS[1]).0).map_err(fail)?.address();
    wait(60, "A's route to C", || async {
        let r = http.get(format!("{}/v1/routes?toHub={c_hub}&amount=1", a.url)).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await?;

    let (payers, same_lat, same_secs) = pay_all(payers, invoices(&at_a, n)?).await?;
    let same = figures(same_lat, same_secs);
    let (_, hop_lat, hop_secs) = pay_all(payers, invoices(&at_c, n)?).await?;
    let hops = figures(hop_lat, hop_secs);
    let ratio =
        hops["paymentsPerSecond"].as_f64().unwrap_or(0.0) / same["paymentsPerSecond"].as_f64().unwrap_or(f64::NAN);
    println!("\n| payments by invoice, {PAYERS} payers at once | inside hub A | A → B → C |");
    println!("|---|---|---|");
    let row = |name: &str, key: &str, sub: Option<&str>| {
        let get = |v: &Value| match sub {
            Some(s) => v[key][s].as_f64().unwrap_or(0.0),
            None => v[key].as_f64().unwrap_or(0.0),
        };
        println!("| {name} | {:.1} | {:.1} |", get(&same), get(&hops));
    };
    row("payments/s", "paymentsPerSecond", None);
    row("latency p50 (ms)", "latencyMs", Some("p50"));
    row("latency p99 (ms)", "latencyMs", Some("p99"));
    println!("| ratio of rates, A→B→C / inside A | | {ratio:.2} |");
    let result = json!({"payments": n, "payers": PAYERS, "sameHub": same, "multiHop": hops, "ratio": ratio});
    std::fs::write(json_out, serde_json::to_string_pretty(&result).map_err(fail)?).map_err(fail)?;
    println!("\nJSON: {}", json_out.display());
    miner.abort();
    for hub in [c, b, a] {
        let _ = hub.stop.send(true);
        let _ = hub.task.await;
    }
    Ok(())
}
