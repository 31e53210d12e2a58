//! `infhub-bench`: the throughput benchmark of the hub node.
//!
//! It starts a local anvil with the contracts, starts the real `infhub-node` binary as its own
//! process (so its CPU time and memory can be measured apart from the load generator), opens
//! and funds N accounts through the real flows (registration → on-chain channel; an on-chain
//! deposit for a few, operator purchases for the rest), pre-signs M internal transfers, then drives them over C concurrent HTTP
//! connections as wallets would. Durability stays on and every signature is verified by the
//! node. It prints one table and writes the same figures as JSON, together with the machine's
//! signature-recovery ceiling measured in the same run (libsecp256k1 on all cores) and the
//! ratio of the node's rate to it. At the end it checks that the books balance.

use alloy::primitives::{keccak256, B256, U256};
use alloy::sol_types::SolCall;
use clap::Parser;
use infhub_chain::anvil::{self, Anvil};
use infhub_core::messages::{Eip712Message, PaymentKind, Registration, Signed};
use infhub_core::{Amount, Debit, Domain, PrivateKey};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(name = "infhub-bench", about = "Throughput benchmark of the infhub node")]
struct Args {
    /// Accounts to open and fund.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Transfers in the timed phase.
    #[arg(long, default_value_t = 50_000)]
    transfers: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Signed transfers per request: 1 uses `/v1/transfers`, more the batch endpoint.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Most payments go to a few hot accounts.
    #[arg(long)]
    hot: bool,
    /// Offered load in transfers per second over all connections (0: as fast as answers come
    /// back). Requests leave on a fixed schedule and latency counts from the scheduled time,
    /// so a stalled node is not hidden by senders that wait for it.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// A small run for CI (under a minute): 100 accounts, 3,000 transfers.
    #[arg(long)]
    quick: bool,
    /// Seed of the account keys and payment pairs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the JSON result goes.
    #[arg(long, default_value = "bench-result.json")]
    json_out: PathBuf,
    /// Custodial transfers (no signatures) driven after the signed run; 0 skips the phase.
    #[arg(long, default_value_t = 1_000_000)]
    custodial_transfers: usize,
    /// Custodial transfers per request (the batch endpoint).
    #[arg(long, default_value_t = 4_096)]
    custodial_batch: usize,
    /// Nice value the generator gives its own threads for the timed phases (0, the default,
    /// keeps it equal to the node). The generator stands in for wallets on other machines; on
    /// a shared 2-core machine, yielding to the node is a way to see how much of the latency
    /// is the generator's own work (latency still counts from the scheduled send time, so a
    /// late generator counts). On this VM it did not lower the p99 (docs/decisions.md D27).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=19))]
    generator_nice: u8,
    /// Instead of the HTTP run: this many payments by invoice inside one hub, then as many
    /// across three hubs on loopback (A → B → C), with the ratio (spec §5.23b).
    #[arg(long)]
    multi_hop: Option<usize>,
    /// Instead of the HTTP run: fill a ledger with this many transfers and time restarts.
    #[arg(long)]
    restart_transfers: Option<usize>,
    /// Instead of the HTTP run: fill a ledger of 10,000 accounts with this many transfers and
    /// time rendering each explorer page (issue 24).
    #[arg(long)]
    explorer_transfers: Option<usize>,
    /// Instead of the HTTP run: build a checkpoint's Merkle-sum tree over this many accounts,
    /// verify a sample of paths, print the times and the peak memory.
    #[arg(long)]
    checkpoint_accounts: Option<usize>,
    /// Instead of the HTTP run: this many signed payments through the durable ledger on the
    /// file store and on PostgreSQL (a throwaway server it starts), with the ratio.
    #[arg(long)]
    store_bench: Option<usize>,
    /// The node's ledger store for the HTTP run: `file`, `postgres` (a throwaway PostgreSQL 15
    /// the bench starts, asynchronous mode: one server), or `both` (the same run on each, in
    /// turn, with the ratios).
    #[arg(long, value_enum, default_value_t = BenchStore::File)]
    store: BenchStore,
    /// Token base units each transfer moves.
    #[arg(long, default_value_t = 1)]
    amount: u128,
    /// The hub's reserve, in token base units (default: the development reserve, 10 million
    /// INF). Small, with `--fund-on-chain` and `--hot`, it runs dry without realizations.
    #[arg(long)]
    reserve: Option<u128>,
    /// Fund every account by an on-chain deposit the hub key makes for it (instead of a few own
    /// deposits and operator purchases): every payer's payments are then backed by its channel
    /// funds, and the payees' credits by the reserve until the hub realizes the payers' debits.
    #[arg(long)]
    fund_on_chain: bool,
    /// The node's `liquidity.realize_when_free_reserve_below` (base units).
    #[arg(long)]
    realize_below: Option<u128>,
    /// The node's `liquidity.realize_when_payer_reaches` (base units).
    #[arg(long)]
    realize_payer_at: Option<u128>,
    /// Also run with this many stateless front-end processes (`infhub-node frontend`) in front
    /// of the writer, the load spread over them, and compare the writer's CPU per transfer with
    /// the single process's (0: no front-ends).
    #[arg(long, default_value_t = 0)]
    front_ends: usize,
    /// The failover run instead: the node on a pg_auto_failover formation with a standby hub
    /// process; a third of the transfers measure the peak, the rest go at half of it while the
    /// primary database and then the active hub process are SIGKILLed; every transfer must be
    /// applied once, and the times to recover are printed.
    #[arg(long)]
    failover: bool,
}

/// Most front-end processes the bench starts.
const MAX_FRONT_ENDS: usize = 8;
/// The sequencer token between the bench's writer and its front-ends.
const SEQUENCER_TOKEN: &str = "bench-sequencer-token-not-secret";

/// Which store the node under test keeps its ledger in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BenchStore {
    /// The embedded file store.
    File,
    /// PostgreSQL.
    Postgres,
    /// One run on each, then the ratios.
    Both,
    /// A pg_auto_failover formation with a standby hub process (`--failover` only).
    #[value(skip)]
    Formation,
}

/// Hard limits of the generator itself.
const MAX_ACCOUNTS: usize = 1_000_000;
const MAX_TRANSFERS: usize = 10_000_000;
const MAX_CONNECTIONS: usize = 4_096;
/// Highest offered load `--rate` accepts (transfers per second).
const MAX_RATE: u64 = 10_000_000;
const OPERATOR: &str = "bench-operator-token-not-secret";
const FUNDING: u128 = 1_000_000_000;
/// Accounts funded by an on-chain deposit (anvil's funded dev keys 1..=5, which hold tokens
/// and gas); the rest are funded by operator purchases.
const ON_CHAIN_DEPOSITORS: usize = 5;

mod breakdown;
mod checkpoint;
mod custodial;
mod explorer;
mod failover;
mod multihop;
mod restart;
mod store;

fn fail(msg: impl std::fmt::Display) -> String {
    msg.to_string()
}

/// xorshift64*: deterministic pairs from the seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

fn account_key(seed: u64, i: usize) -> PrivateKey {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&seed.to_be_bytes());
    buf[8..].copy_from_slice(&(i as u64).to_be_bytes());
    PrivateKey::from_bytes(keccak256(buf).0).expect("keccak output is a valid key with overwhelming probability")
}

fn node_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(fail)?;
    let bin = exe.with_file_name("infhub-node");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} not found: build it with `cargo build --release -p infhub-node`", bin.display()))
    }
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/<pid>/stat: user and system time in clock ticks (100 Hz).
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn proc_peak_rss_mib(pid: u32) -> f64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0.0 };
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    dir_bytes_matching(dir, "")
}

/// Bytes of the files under `dir` whose names end with `suffix` ("" for all).
fn dir_bytes_matching(dir: &Path, suffix: &str) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes_matching(&e.path(), suffix),
                Ok(m) if e.file_name().to_string_lossy().ends_with(suffix) => total += m.len(),
                Ok(_) | Err(_) => {}
            }
        }
    }
    total
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Lowers the scheduling priority of every thread of this process (threads started later
/// inherit it from their creator) to `nice`; the node, started earlier, keeps its own. Returns
/// how many threads were reniced. Lowering one's own priority needs no privilege.
fn yield_to_node(nice: u8) -> Result<usize, String> {
    if nice == 0 {
        return Ok(0);
    }
    let tids: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map_err(|e| format!("cannot list this process's threads to renice them: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let status = Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .args(&tids)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run renice (util-linux): {e}; use --generator-nice 0"))?;
    if !status.success() {
        return Err(format!("renice -n {nice} of the generator's threads failed: {status}"));
    }
    Ok(tids.len())
}

/// Signature recoveries per second on all cores (libsecp256k1, as the node uses).
fn recovery_ceiling() -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let key = account_key(99, 0);
    let samples: Vec<(B256, infhub_core::Signature)> = (0..256u64)
        .map(|i| {
            let d = keccak256(i.to_be_bytes());
            (d, key.sign(d))
        })
        .collect();
    let samples = Arc::new(samples);
    let run_for = Duration::from_millis(1_500);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let s = samples.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < run_for {
                    for (d, sig) in s.iter() {
                        let _ = std::hint::black_box(sig.recover(*d));
                        n += 1;
                    }
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
}

pub(crate) struct Node {
    child: Child,
    url: String,
    data_dir: PathBuf,
    /// Front-end processes in front of this node (the writer), with their URLs.
    front_ends: Vec<(Child, String)>,
    /// The database of a node on PostgreSQL (stopped after the node).
    _postgres: Option<infhub_pg::server::LocalPostgres>,
    /// The database formation of a failover run, and the standby hub process with its URL.
    pub(crate) formation: Option<(infhub_pg::formation::LocalFormation, Child, String)>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for (child, _) in &mut self.front_ends {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((_, standby, _)) = &mut self.formation {
            let _ = standby.kill();
            let _ = standby.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_node(
    anvil: &Anvil,
    d: &anvil::Deployment,
    dir: &Path,
    args: &Args,
    store: BenchStore,
    front_ends: usize,
) -> Result<Node, String> {
    let port = anvil::free_port().map_err(fail)?;
    let sequencer = format!("127.0.0.1:{}", anvil::free_port().map_err(fail)?);
    let data_dir = dir.join("data");
    let mut c = infhub_node::dev::config(anvil, d, format!("127.0.0.1:{port}"), data_dir.clone());
    c.node.operator_token = infhub_node::config::Secret(OPERATOR.into());
    c.node.log = "warn".into();
    c.chain.confirmations = 1;
    c.chain.poll_interval_ms = 50;
    c.limits.max_write_queue = 100_000;
    c.limits.max_concurrent_requests = 8_192;
    // Every simulated client connects from 127.0.0.1: one address may use every slot here.
    c.limits.max_requests_in_flight_per_address = c.limits.max_concurrent_requests;
    c.limits.max_connections_per_address = c.limits.max_concurrent_requests;
    c.limits.max_accounts = MAX_ACCOUNTS;
    c.limits.max_batch_request_bytes = 8 << 20;
    c.limits.max_transfers_per_request = 1_000;
    if let Some(v) = args.realize_below {
        c.liquidity.realize_when_free_reserve_below = Amount(v);
    }
    if let Some(v) = args.realize_payer_at {
        c.liquidity.realize_when_payer_reaches = Amount(v);
    }
    if front_ends > 0 {
        c.node.sequencer_listen = sequencer.clone();
        c.node.sequencer_token = infhub_node::config::Secret(SEQUENCER_TOKEN.into());
    }
    let postgres = if store == BenchStore::Postgres {
        let pg_dir = dir.join("postgres");
        std::fs::create_dir_all(&pg_dir).map_err(fail)?;
        let pg = infhub_pg::server::LocalPostgres::start(&pg_dir).map_err(|e| format!("start postgres: {e}"))?;
        c.store.kind = infhub_node::config::StoreKind::Postgres;
        c.store.postgres_url = infhub_node::config::Secret(pg.url());
        // One server: asynchronous mode (a synchronous standby on the same two cores would
        // measure the machine twice over, not the store).
        c.store.require_synchronous_standby = false;
        Some(pg)
    } else {
        None
    };
    let formation = if store == BenchStore::Formation {
        let formation = start_formation(dir)?;
        c.store.kind = infhub_node::config::StoreKind::Postgres;
        c.store.postgres_url = infhub_node::config::Secret(formation.url());
        c.store.require_synchronous_standby = true;
        c.store.lease_ms = failover::LEASE_MS;
        c.store.writer_name = "bench-a".into();
        Some(formation)
    } else {
        None
    };
    let path = dir.join("infhub.toml");
    std::fs::write(&path, toml::to_string(&c).map_err(fail)?).map_err(fail)?;
    let child = spawn_node_process(&path, &dir.join("node.log"), &[])?;
    let mut node = Node {
        child,
        url: format!("http://127.0.0.1:{port}"),
        data_dir,
        front_ends: Vec::new(),
        _postgres: postgres,
        formation: None,
    };
    let client = reqwest::Client::new();
    wait_serving(&client, &node.url, &dir.join("node.log")).await?;
    if let Some(formation) = formation {
        let (standby, url) = spawn_standby(&mut c, dir)?;
        node.formation = Some((formation, standby, url));
    }
    for i in 0..front_ends {
        let port = anvil::free_port().map_err(fail)?;
        let url = format!("http://127.0.0.1:{port}");
        let log_path = dir.join(format!("front-end-{i}.log"));
        let log = std::fs::File::create(&log_path).map_err(fail)?;
        let child = Command::new(node_binary()?)
            .args(["frontend", "--listen", &format!("127.0.0.1:{port}"), "--writer", &sequencer, "--writer-http"])
            .arg(&node.url)
            .env("INFHUB_SEQUENCER_TOKEN", SEQUENCER_TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(fail)?;
        node.front_ends.push((child, url.clone()));
        wait_serving(&client, &url, &log_path).await?;
    }
    Ok(node)
}

/// A pg_auto_failover formation in `dir/formation`.
fn start_formation(dir: &Path) -> Result<infhub_pg::formation::LocalFormation, String> {
    let pg_dir = dir.join("formation");
    std::fs::create_dir_all(&pg_dir).map_err(fail)?;
    // The synchronous client must not run on this runtime's threads.
    std::thread::spawn(move || infhub_pg::formation::LocalFormation::start(&pg_dir))
        .join()
        .map_err(|_| "starting the formation panicked".to_string())?
        .map_err(|e| format!("start the pg_auto_failover formation: {e}"))
}

/// A standby hub process for the writer configured by `c`: its own port and data directory,
/// waiting for the lease. Its process and URL.
fn spawn_standby(c: &mut infhub_node::config::Config, dir: &Path) -> Result<(Child, String), String> {
    let port = anvil::free_port().map_err(fail)?;
    c.node.listen = format!("127.0.0.1:{port}");
    c.node.data_dir = dir.join("standby-data");
    c.store.writer_name = "bench-b".into();
    c.store.wait_for_lease = true;
    let path = dir.join("standby.toml");
    std::fs::write(&path, toml::to_string(&c).map_err(fail)?).map_err(fail)?;
    let standby = spawn_node_process(&path, &dir.join("standby.log"), &[])?;
    Ok((standby, format!("http://127.0.0.1:{port}")))
}

/// `infhub-node run --config <config>`, its log in `log`, with `env` set.
fn spawn_node_process(config: &Path, log: &Path, env: &[(&str, &str)]) -> Result<Child, String> {
    let log = std::fs::File::create(log).map_err(fail)?;
    Command::new(node_binary()?)
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(fail)
}

/// Waits until `url` answers `/v1/info` (30 s at most).
async fn wait_serving(client: &reqwest::Client, url: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{url}/v1/info")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{url} did not start serving; see {}", log.display()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts `body`; a 503 (a full limit: the node sheds load) is retried after a pause.
async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: &Value) -> Result<Value, String> {
    for attempt in 0..100u64 {
        let mut r = client.post(&url).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.map_err(fail)?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(fail)?;
        if status.as_u16() == 503 {
            tokio::time::sleep(Duration::from_millis(20 * (attempt + 1).min(10))).await;
            continue;
        }
        if !status.is_success() {
            return Err(format!("{status}: {v}"));
        }
        return Ok(v);
    }
    Err(format!("{url}: still overloaded after 100 attempts"))
}

/// The node's solvency report (operator).
pub(crate) async fn solvency(client: &reqwest::Client, node: &Node) -> Result<Value, String> {
    let resp = client.get(format!("{}/v1/operator/solvency", node.url)).bearer_auth(OPERATOR).send().await;
    resp.map_err(fail)?.json().await.map_err(fail)
}

/// Runs `f` over `items` with `c` at a time.
async fn for_each_concurrent<T, F, Fut>(items: Vec<T>, c: usize, f: F) -> Result<(), String>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let f = Arc::new(f);
    let queue = Arc::new(std::sync::Mutex::new(items));
    let mut tasks: Vec<tokio::task::JoinHandle<Result<(), String>>> = Vec::new();
    for _ in 0..c {
        let (f, queue) = (f.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(item) = next else { return Ok(()) };
                f(item).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(fail)??;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run_restart(transfers: usize, json_out: &Path) -> Result<(), String> {
    if transfers == 0 || transfers > MAX_TRANSFERS {
        return Err(format!("--restart-transfers must be in 1..={MAX_TRANSFERS}"));
    }
    println!(
        "infhub-bench: restart measurement with {transfers} transfers (filling with the node's snapshot interval; the fill is not timed)"
    );
    let r = restart::run(transfers)?;
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    for (label, key, decimals) in [
        (
            "node restart: ledger (snapshot + log tail) and history index (checkpoint + the same tail) (s)",
            "restartSeconds",
            2,
        ),
        ("  of which the ledger (s)", "ledgerOpenSeconds", 2),
        ("  of which the history index (s)", "historyOpenSeconds", 2),
        ("records replayed (a whole snapshot interval)", "replayedRecords", 0),
        ("replay rate (records/s)", "replayedRecordsPerSecond", 0),
        ("snapshot size (bytes)", "snapshotBytes", 0),
        ("restart right after a snapshot (s)", "restartAfterFinalSnapshotSeconds", 2),
        ("disk bytes per transfer before the final snapshot (archive, live log, snapshots)", "logBytesPerTransfer", 1),
        ("live bytes per transfer after a snapshot", "liveBytesPerTransferAfterSnapshot", 2),
        ("archive (history) bytes per transfer", "archiveBytesPerTransfer", 1),
        ("history index bytes per transfer", "historyIndexBytesPerTransfer", 1),
        ("history page of 50, newest, after the restart (ms)", "historyPageMillis", 2),
        ("history page of 50, a tenth of the way in (archive) (ms)", "historyDeepPageMillis", 2),
        ("fill time, not part of the figures (s)", "fillSeconds", 0),
    ] {
        println!("| {label} | {:.*} |", decimals, r[key].as_f64().unwrap_or(f64::NAN));
    }
    std::fs::write(json_out, serde_json::to_string_pretty(&r).map_err(fail)?).map_err(fail)?;
    println!("\nJSON: {}", json_out.display());
    Ok(())
}

fn run_explorer(transfers: usize, json_out: &Path) -> Result<(), String> {
    if transfers == 0 || transfers > MAX_TRANSFERS {
        return Err(format!("--explorer-transfers must be in 1..={MAX_TRANSFERS}"));
    }
    println!(
        "infhub-bench: explorer pages over {} accounts and {transfers} transfers (the fill is not timed)",
        explorer::ACCOUNTS
    );
    let r = explorer::run(transfers)?;
    println!();
    println!("| page | p50 (ms) | slowest of 200 (ms) | bytes |");
    println!("|---|---|---|---|");
    for name in ["overview", "blocks", "block", "events", "account"] {
        let p = &r["pages"][name];
        let f = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
        println!("| {name} | {:.3} | {:.3} | {:.0} |", f("p50Millis"), f("maxMillis"), f("bytes"));
    }
    let slowest = r["slowestPageMillis"].as_f64().unwrap_or(f64::NAN);
    let history = r["historyPageP50Millis"].as_f64().unwrap_or(f64::NAN);
    println!(
        "\nslowest page {slowest:.3} ms (target 200 ms: {}); one history page of 50 p50 {history:.3} ms; \
the history page takes {:.0}× the overview's p50",
        if slowest < 200.0 { "met" } else { "MISSED" },
        history / r["pages"]["overview"]["p50Millis"].as_f64().unwrap_or(f64::NAN)
    );
    std::fs::write(json_out, serde_json::to_string_pretty(&r).map_err(fail)?).map_err(fail)?;
    println!("JSON: {}", json_out.display());
    Ok(())
}

/// What the set-up made: the chain, the node, the accounts.
struct Setup {
    _anvil: Anvil,
    node: Node,
    domain: Domain,
    keys: Arc<Vec<PrivateKey>>,
    client: reqwest::Client,
    setup_secs: f64,
    /// Dropped last: the node's processes and databases stop before their directory goes.
    _dir: tempfile::TempDir,
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(n) = args.explorer_transfers {
        return run_explorer(n, &args.json_out);
    }
    if let Some(n) = args.restart_transfers {
        return run_restart(n, &args.json_out);
    }
    if let Some(n) = args.checkpoint_accounts {
        return checkpoint::run_checkpoint(n, &args.json_out);
    }
    if let Some(n) = args.multi_hop {
        return multihop::run_multi_hop(n, &args.json_out).await;
    }
    if let Some(n) = args.store_bench {
        // The PostgreSQL client runs its own runtime: not on this one's threads.
        let out = args.json_out.clone();
        return std::thread::spawn(move || store::run_store_bench(n, &out))
            .join()
            .map_err(|_| "the store bench panicked".to_string())?;
    }
    if args.front_ends > MAX_FRONT_ENDS {
        return Err(format!("--front-ends must be in 0..={MAX_FRONT_ENDS}"));
    }
    if args.front_ends > 0 {
        return run_front_ends(&args).await;
    }
    if args.failover {
        return failover::run_failover(&args).await;
    }
    let stores = match args.store {
        BenchStore::Both => vec![BenchStore::File, BenchStore::Postgres],
        one => vec![one],
    };
    let mut results = Vec::new();
    for store in stores {
        println!("\ninfhub-bench: the node on the {store:?} store");
        results.push((store, run_http(&args, store, 0).await?));
    }
    let result = if let [(_, file), (_, pg)] = &results[..] {
        let ratio = |key: &str| file[key].as_f64().unwrap_or(0.0) / pg[key].as_f64().unwrap_or(f64::NAN);
        let custodial = file["custodial"]["transfersPerSecond"].as_f64().unwrap_or(0.0)
            / pg["custodial"]["transfersPerSecond"].as_f64().unwrap_or(f64::NAN);
        let p99 = |r: &Value| r["latencyMs"]["p99"].as_f64().unwrap_or(0.0);
        println!("\n| file store / PostgreSQL, same run | value |");
        println!("|---|---|");
        println!("| signed transfers/s ratio | {:.2} |", ratio("transfersPerSecond"));
        println!("| custodial transfers/s ratio | {custodial:.2} |");
        println!("| signed latency p99 (ms), file / PostgreSQL | {:.2} / {:.2} |", p99(file), p99(pg));
        json!({"file": file, "postgres": pg, "signedRatio": ratio("transfersPerSecond"), "custodialRatio": custodial})
    } else {
        results.pop().map(|(_, r)| r).unwrap_or_default()
    };
    std::fs::write(&args.json_out, serde_json::to_string_pretty(&result).map_err(fail)?).map_err(fail)?;
    println!("\nJSON: {}", args.json_out.display());
    Ok(())
}

/// The same run on one process, then on a writer with `--front-ends` front-end processes in
/// front of it: throughput, and the writer's CPU per transfer against the single process's.
async fn run_front_ends(args: &Args) -> Result<(), String> {
    let n = args.front_ends;
    let store = match args.store {
        BenchStore::Both => return Err("--front-ends runs on one store: file or postgres".into()),
        one => one,
    };
    println!("\ninfhub-bench: one process (the node alone), {store:?} store");
    let single = run_http(args, store, 0).await?;
    println!("\ninfhub-bench: a writer and {n} front-end processes, {store:?} store");
    let split = run_http(args, store, n).await?;
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let (node_cpu, writer_cpu) = (f(&single, "nodeCpuSecondsPer1000"), f(&split, "nodeCpuSecondsPer1000"));
    println!("\n| one process / writer with {n} front-ends, same run | value |");
    println!("|---|---|");
    println!(
        "| signed transfers/s, one process / with front-ends | {:.0} / {:.0} |",
        f(&single, "transfersPerSecond"),
        f(&split, "transfersPerSecond")
    );
    println!("| CPU seconds per 1,000 transfers: the one process / the writer | {node_cpu:.3} / {writer_cpu:.3} |");
    println!("| the writer's share of the one process's CPU per transfer | {:.2} |", writer_cpu / node_cpu);
    println!(
        "| front-ends' CPU seconds per 1,000 transfers, together | {:.3} |",
        f(&split, "frontEndCpuSecondsPer1000")
    );
    println!(
        "| transfers/s per core of the writer's machine (1,000 / its CPU s per 1,000) | {:.0} |",
        1000.0 / writer_cpu
    );
    let result = json!({"single": single, "frontEnds": split, "writerCpuShare": writer_cpu / node_cpu});
    std::fs::write(&args.json_out, serde_json::to_string_pretty(&result).map_err(fail)?).map_err(fail)?;
    println!("\nJSON: {}", args.json_out.display());
    Ok(())
}

/// One HTTP run (signed, then custodial) against a node on `store`; its figures.
async fn run_http(args: &Args, store: BenchStore, front_ends: usize) -> Result<Value, String> {
    let (accounts, transfers) = if args.quick { (100, 3_000) } else { (args.accounts, args.transfers) };
    if !(2..=MAX_ACCOUNTS).contains(&accounts) {
        return Err(format!("--accounts must be in 2..={MAX_ACCOUNTS}"));
    }
    if transfers == 0 || transfers > MAX_TRANSFERS {
        return Err(format!("--transfers must be in 1..={MAX_TRANSFERS}"));
    }
    if args.amount == 0 || args.amount > FUNDING {
        return Err(format!("--amount must be in 1..={FUNDING}"));
    }
    let connections = args.connections.clamp(1, MAX_CONNECTIONS).min(accounts);
    println!(
        "infhub-bench: {accounts} accounts, {transfers} transfers of {}, {connections} connections, {} per request, hot {}, seed {}, offered rate {}",
        args.amount,
        args.batch.clamp(1, 1_000),
        args.hot,
        args.seed,
        if args.rate == 0 { "unlimited".to_string() } else { format!("{}/s", args.rate.min(MAX_RATE)) }
    );
    let ceiling = recovery_ceiling();
    let setup = set_up(args, accounts, store, front_ends).await?;
    let sign_start = Instant::now();
    let lanes = presign(args, &setup, accounts, transfers, connections)?;
    let sign_secs = sign_start.elapsed().as_secs_f64();
    let niced = yield_to_node(args.generator_nice)?;
    println!(
        "infhub-bench: set-up {:.1} s, pre-signing {sign_secs:.1} s; timed phase starts (generator at nice {}, {niced} threads)",
        setup.setup_secs, args.generator_nice
    );
    let timed = timed_phase(args, &setup, lanes, transfers, connections).await?;
    let mut result = report(args, &setup, &timed, accounts, transfers, connections, ceiling, sign_secs).await?;
    let custodial_n = if args.quick { 20_000 } else { args.custodial_transfers };
    if custodial_n > 0 {
        let c =
            custodial::run(&setup.client, &setup.node, custodial_n, args.custodial_batch, accounts, args.seed).await?;
        println!(
            "| custodial transfers/s (no signatures, durable, batches of {}) | {:.0} |",
            c["batch"],
            c["transfersPerSecond"].as_f64().unwrap_or(0.0)
        );
        println!(
            "| custodial batch latency p50 / p99 (ms) | {:.1} / {:.1} |",
            c["batchLatencyMs"]["p50"].as_f64().unwrap_or(0.0),
            c["batchLatencyMs"]["p99"].as_f64().unwrap_or(0.0)
        );
        println!(
            "| custodial node CPU seconds per 1,000 transfers | {:.3} |",
            c["nodeCpuSecondsPer1000"].as_f64().unwrap_or(0.0)
        );
        println!("| custodial books balance | {} |", c["booksBalance"]);
        let ok = c["booksBalance"] == true;
        result["custodial"] = c;
        if !ok {
            return Err("the custodial books do not balance".into());
        }
    }
    if result["booksBalance"] != true {
        return Err("the books do not balance".into());
    }
    result["store"] = json!(format!("{store:?}"));
    Ok(result)
}

/// Deploys, starts the node, and opens and funds the accounts through the real flows:
/// registration opens each channel on chain; the first accounts are funded by their own
/// on-chain deposits (while the chain is still small), the rest by operator purchases — or,
/// with `--fund-on-chain`, every account by a deposit the hub key makes for it.
async fn set_up(args: &Args, accounts: usize, store: BenchStore, front_ends: usize) -> Result<Setup, String> {
    let dir = tempfile::Builder::new().prefix("infhub-bench-").tempdir().map_err(fail)?;
    let anvil = Anvil::spawn(&[]).map_err(fail)?;
    let reserve = args.reserve.map_or_else(infhub_node::dev::dev_reserve, U256::from);
    let d = infhub_node::dev::deploy_with_reserve(&anvil, reserve).await.map_err(fail)?;
    let node = start_node(&anvil, &d, dir.path(), args, store, front_ends).await?;
    let domain = Domain { chain_id: d.chain_id, verifying_contract: d.hub };
    let client = reqwest::Client::builder().pool_max_idle_per_host(MAX_CONNECTIONS).build().map_err(fail)?;
    let depositors = if args.fund_on_chain { 0 } else { ON_CHAIN_DEPOSITORS.min(accounts - 1) };
    let keys: Vec<PrivateKey> = (0..accounts)
        .map(|i| match i < depositors {
            true => PrivateKey::from_bytes(anvil::dev_key(i + 1).0).map_err(fail),
            false => Ok(account_key(args.seed, i)),
        })
        .collect::<Result<_, _>>()?;
    let keys = Arc::new(keys);
    let setup = Instant::now();
    for phase in [0..depositors, depositors..accounts] {
        register_all(&client, &node, &keys, phase.clone(), &domain).await?;
        if phase.end == depositors && depositors > 0 {
            fund_own_deposits(&anvil, &d, &client, &node, &keys, depositors).await?;
        }
    }
    if args.fund_on_chain {
        fund_by_hub_deposits(&anvil, &d, &client, &node, &keys).await?;
    } else {
        let (url, k, c) = (node.url.clone(), keys.clone(), client.clone());
        for_each_concurrent((depositors..accounts).collect(), 32, move |i| {
            let (url, k, c) = (url.clone(), k.clone(), c.clone());
            async move {
                let body = json!({"user": k[i].address(), "amount": FUNDING.to_string(),
                                  "purchaseId": B256::from(U256::from(i as u64 + 1))});
                post(&c, format!("{url}/v1/operator/purchases"), Some(OPERATOR), &body).await?;
                Ok(())
            }
        })
        .await?;
    }
    let setup_secs = setup.elapsed().as_secs_f64();
    Ok(Setup { _anvil: anvil, _dir: dir, node, domain, keys, client, setup_secs })
}

/// Registers the accounts of `phase` (registrations waiting together share one
/// `openChannels` transaction) and waits until the ledger tracks them all.
async fn register_all(
    client: &reqwest::Client,
    node: &Node,
    keys: &Arc<Vec<PrivateKey>>,
    phase: std::ops::Range<usize>,
    domain: &Domain,
) -> Result<(), String> {
    let (url, k, c, domain) = (node.url.clone(), keys.clone(), client.clone(), *domain);
    for_each_concurrent(phase.clone().collect(), 256, move |i| {
        let (url, k, c) = (url.clone(), k.clone(), c.clone());
        async move {
            let reg = Signed::new(Registration { user: k[i].address(), valid_until_block: u64::MAX }, &domain, &k[i]);
            post(&c, format!("{url}/v1/registrations"), None, &serde_json::to_value(reg).map_err(fail)?).await?;
            Ok(())
        }
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let info: Value =
            client.get(format!("{}/v1/info", node.url)).send().await.map_err(fail)?.json().await.map_err(fail)?;
        if info["accounts"].as_u64() == Some(phase.end as u64) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {} of {} accounts opened", info["accounts"], phase.end));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first accounts (anvil's funded keys) lock tokens in the contract themselves (approve,
/// deposit); waits for the node to credit each confirmed deposit.
async fn fund_own_deposits(
    anvil: &Anvil,
    d: &anvil::Deployment,
    client: &reqwest::Client,
    node: &Node,
    keys: &[PrivateKey],
    depositors: usize,
) -> Result<(), String> {
    let provider = anvil.provider().map_err(fail)?;
    for (i, key) in keys.iter().enumerate().take(depositors) {
        let mut sender = anvil::sender(&provider, anvil::dev_key(i + 1)).await.map_err(fail)?;
        let approve = infhub_chain::bindings::IErc20::approveCall { spender: d.hub, amount: U256::MAX };
        anvil::call_ok(&mut sender, d.token, approve.abi_encode()).await.map_err(fail)?;
        let deposit = infhub_chain::bindings::IInfHub::depositCall { user: key.address(), amount: U256::from(FUNDING) };
        anvil::call_ok(&mut sender, d.hub, deposit.abi_encode()).await.map_err(fail)?;
    }
    wait_funded(client, node, &keys[..depositors]).await
}

/// The hub key deposits `FUNDING` into every account's channel on chain (`deposit(user, …)`
/// pulls from the caller), pipelined; waits for the node to credit each.
async fn fund_by_hub_deposits(
    anvil: &Anvil,
    d: &anvil::Deployment,
    client: &reqwest::Client,
    node: &Node,
    keys: &[PrivateKey],
) -> Result<(), String> {
    let provider = anvil.provider().map_err(fail)?;
    let mut hub = anvil::sender(&provider, anvil::dev_key(0)).await.map_err(fail)?;
    for key in keys {
        let deposit = infhub_chain::bindings::IInfHub::depositCall { user: key.address(), amount: U256::from(FUNDING) };
        loop {
            match hub.send(alloy::primitives::TxKind::Call(d.hub), deposit.abi_encode().into()).await {
                Ok(_) => break,
                Err(infhub_chain::ChainError::TooManyInFlight { .. }) => {
                    hub.poll().await.map_err(fail)?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => return Err(fail(e)),
            }
        }
    }
    while hub.in_flight() > 0 {
        for outcome in hub.poll().await.map_err(fail)? {
            if let infhub_chain::sender::TxOutcome::Mined { success: false, hash, .. } = outcome {
                return Err(format!("a funding deposit reverted: {hash}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_funded(client, node, keys).await
}

/// Waits until the node credits each account's confirmed deposit.
async fn wait_funded(client: &reqwest::Client, node: &Node, keys: &[PrivateKey]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    for key in keys {
        loop {
            let url = format!("{}/v1/accounts/{}", node.url, key.address());
            let v: Value =
                client.get(url).bearer_auth(OPERATOR).send().await.map_err(fail)?.json().await.map_err(fail)?;
            if v["balance"].as_str() == Some(FUNDING.to_string().as_str()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("the on-chain deposit of {} was not credited: {v}", key.address()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Pre-signs the transfers; connection j owns the payers i with i % connections == j, so each
/// payer's nonces arrive in order.
fn presign(
    args: &Args,
    setup: &Setup,
    accounts: usize,
    transfers: usize,
    connections: usize,
) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let keys = &setup.keys;
    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut nonce = vec![0u64; accounts];
    let mut cumulative = vec![0u128; accounts];
    let mut lanes: Vec<Vec<Vec<u8>>> = vec![Vec::new(); connections];
    for t in 0..transfers {
        let payer = rng.below(accounts);
        let mut payee = if args.hot && rng.below(10) < 9 { rng.below(accounts.min(10)) } else { rng.below(accounts) };
        if payee == payer {
            payee = (payer + 1) % accounts;
        }
        nonce[payer] += 1;
        cumulative[payer] += args.amount;
        let debit = Debit {
            user: keys[payer].address(),
            epoch: 1,
            nonce: nonce[payer],
            cumulative_debit: Amount(cumulative[payer]),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
            kind: PaymentKind::Internal as u8,
            recipient: keys[payee].address(),
            amount: Amount(args.amount),
            payment_id: B256::from(U256::from(t as u64 + 1)),
        };
        let signed = Signed { message: debit, signature: debit.sign(&setup.domain, &keys[payer]) };
        lanes[payer % connections].push(serde_json::to_vec(&signed).map_err(fail)?);
    }
    Ok(lanes)
}

/// What the timed phase measured.
struct Timed {
    secs: f64,
    latencies: Vec<f64>,
    cpu: f64,
    /// CPU seconds of the front-end processes (0 without them).
    front_end_cpu: f64,
    bytes: u64,
    metrics_before: String,
    metrics_after: String,
}

/// Drives the pre-signed transfers over the connections; every one must be applied.
async fn timed_phase(
    args: &Args,
    setup: &Setup,
    lanes: Vec<Vec<Vec<u8>>>,
    transfers: usize,
    connections: usize,
) -> Result<Timed, String> {
    let (client, node) = (&setup.client, &setup.node);
    let metrics_before =
        client.get(format!("{}/metrics", node.url)).send().await.map_err(fail)?.text().await.map_err(fail)?;
    let cpu_before = proc_cpu_seconds(node.child.id());
    let front_end_cpu = || node.front_ends.iter().map(|(c, _)| proc_cpu_seconds(c.id())).sum::<f64>();
    let front_end_cpu_before = front_end_cpu();
    let bytes_before = dir_bytes(&node.data_dir);
    let start = Instant::now();
    let batch = args.batch.clamp(1, 1_000);
    let mut tasks = Vec::new();
    for (i, lane) in lanes.into_iter().enumerate() {
        // With front-ends, the lanes are spread over them (as a load balancer would).
        let base = match node.front_ends.len() {
            0 => &node.url,
            n => &node.front_ends[i % n].1,
        };
        let url = if batch == 1 { format!("{base}/v1/transfers") } else { format!("{base}/v1/transfers/batch") };
        let requests = lane_requests(lane, batch);
        // With a rate, every lane spreads its requests evenly over the same span (all
        // transfers / rate), phase-shifted per lane, so the lanes together offer the rate even
        // though they hold different numbers of transfers (a lane keeps its payers' nonces).
        let span_secs = transfers as f64 / args.rate.clamp(1, MAX_RATE) as f64;
        let interval =
            (args.rate > 0 && !requests.is_empty()).then(|| Duration::from_secs_f64(span_secs / requests.len() as f64));
        let phase = interval.map(|i| i.mul_f64(tasks.len() as f64 / connections as f64));
        tasks.push(tokio::spawn(drive_lane(client.clone(), url, requests, start, interval, phase)));
    }
    let mut latencies = Vec::with_capacity(transfers);
    for t in tasks {
        latencies.extend(t.await.map_err(fail)??);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = proc_cpu_seconds(node.child.id()) - cpu_before;
    let front_end_cpu = front_end_cpu() - front_end_cpu_before;
    let metrics_after =
        client.get(format!("{}/metrics", node.url)).send().await.map_err(fail)?.text().await.map_err(fail)?;
    let bytes = dir_bytes(&node.data_dir).saturating_sub(bytes_before);
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(Timed { secs, latencies, cpu, front_end_cpu, bytes, metrics_before, metrics_after })
}

/// A lane's requests: one signed transfer each, or `batch` of them in lane (nonce) order.
fn lane_requests(lane: Vec<Vec<u8>>, batch: usize) -> Vec<(usize, Vec<u8>)> {
    if batch == 1 {
        return lane.into_iter().map(|b| (1, b)).collect();
    }
    lane.chunks(batch)
        .map(|chunk| {
            let mut body = b"{\"transfers\":[".to_vec();
            for (i, t) in chunk.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(t);
            }
            body.extend_from_slice(b"]}");
            (chunk.len(), body)
        })
        .collect()
}

/// Sends one lane's requests in order (on schedule with a rate); every transfer must be
/// applied. Returns each transfer's latency, counted from its scheduled time.
async fn drive_lane(
    c: reqwest::Client,
    url: String,
    requests: Vec<(usize, Vec<u8>)>,
    start: Instant,
    interval: Option<Duration>,
    phase: Option<Duration>,
) -> Result<Vec<f64>, String> {
    let mut lat = Vec::new();
    for (k, (n, body)) in requests.into_iter().enumerate() {
        let t0 = match (interval, phase) {
            (Some(i), Some(p)) => {
                let due = start + p + i * k as u32;
                tokio::time::sleep_until(due.into()).await;
                due
            }
            _ => Instant::now(),
        };
        let resp = c.post(&url).header("content-type", "application/json").body(body).send().await.map_err(fail)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(fail)?;
        if !status.is_success() || (n > 1 && body.windows(7).any(|w| w == b"\"error\"")) {
            let text = String::from_utf8_lossy(&body);
            return Err(format!("transfer refused: {status} {}", text.chars().take(300).collect::<String>()));
        }
        // Every transfer of a request waited as long as the request.
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        lat.extend(std::iter::repeat_n(ms, n));
    }
    Ok(lat)
}

/// Prints the figure table and returns the same figures as JSON.
#[allow(clippy::too_many_arguments)] // the run's figures, each printed once
async fn report(
    args: &Args,
    setup: &Setup,
    t: &Timed,
    accounts: usize,
    transfers: usize,
    connections: usize,
    ceiling: f64,
    sign_secs: f64,
) -> Result<Value, String> {
    let (client, node) = (&setup.client, &setup.node);
    let commits = metric(&t.metrics_after, "infhub_ledger_commits_total")
        - metric(&t.metrics_before, "infhub_ledger_commits_total");
    let tps = transfers as f64 / t.secs;
    // The books: deposits and purchases only funded the accounts, transfers moved value
    // between them, realizations moved paid value into the reserve.
    let rep = solvency(client, node).await?;
    let balances: u128 = rep["sumOfBalances"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let books_balance =
        balances == FUNDING * accounts as u128 && rep["liquid"] == true && rep["contractBalanced"] == true;
    let liquidity = liquidity(client, node).await?;
    let lat = &t.latencies;
    let per_fsync = if commits > 0.0 { transfers as f64 / commits } else { 0.0 };
    let result = json!({
        "accounts": accounts, "transfers": transfers, "connections": connections, "hot": args.hot, "seed": args.seed,
        "amount": args.amount,
        "transfersPerRequest": args.batch.clamp(1, 1_000),
        "generatorNice": args.generator_nice,
        "offeredRatePerSecond": args.rate,
        "transfersPerSecond": tps,
        "latencyMs": {"p50": percentile(lat, 0.50), "p99": percentile(lat, 0.99), "p999": percentile(lat, 0.999)},
        "fsyncsPerSecond": commits / t.secs,
        "transfersPerFsync": per_fsync,
        "nodeCpuSecondsPer1000": t.cpu * 1000.0 / transfers as f64,
        "frontEnds": node.front_ends.len(),
        "frontEndCpuSecondsPer1000": t.front_end_cpu * 1000.0 / transfers as f64,
        "nodePeakMemoryMiB": proc_peak_rss_mib(node.child.id()),
        "ledgerBytesPerTransfer": t.bytes as f64 / transfers as f64,
        "signatureCeilingPerSecond": ceiling,
        "ratioToCeiling": tps / ceiling,
        "setupSeconds": setup.setup_secs,
        "presignSeconds": sign_secs,
        "booksBalance": books_balance,
        "liquidity": liquidity,
        "nodeLatency": breakdown::breakdown(&t.metrics_before, &t.metrics_after),
    });
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| signed internal transfers/s (durable, over HTTP) | {tps:.0} |");
    println!(
        "| latency p50 / p99 / p999 (ms) | {:.2} / {:.2} / {:.2} |",
        percentile(lat, 0.5),
        percentile(lat, 0.99),
        percentile(lat, 0.999)
    );
    println!("| fsyncs/s, transfers per fsync | {:.0}, {per_fsync:.1} |", commits / t.secs);
    println!("| node CPU seconds per 1,000 transfers | {:.3} |", t.cpu * 1000.0 / transfers as f64);
    if !node.front_ends.is_empty() {
        println!(
            "| front-ends ({}) CPU seconds per 1,000 transfers, together | {:.3} |",
            node.front_ends.len(),
            t.front_end_cpu * 1000.0 / transfers as f64
        );
    }
    println!("| node peak memory (MiB) | {:.0} |", proc_peak_rss_mib(node.child.id()));
    println!("| ledger bytes per transfer | {:.0} |", t.bytes as f64 / transfers as f64);
    println!("| signature-recovery ceiling (all cores) | {ceiling:.0}/s |");
    println!("| ratio node / ceiling | {:.3} |", tps / ceiling);
    println!("| books balance | {books_balance} |");
    let d = &liquidity["duties"];
    let (mined, debits, gas) = (
        d["realizationsMined"].as_u64().unwrap_or(0),
        d["debitsRealized"].as_u64().unwrap_or(0),
        d["realizationGas"].as_u64().unwrap_or(0),
    );
    println!(
        "| realizations mined (debits, gas; gas per debit) | {mined} ({debits}, {gas}; {}) |",
        gas.checked_div(debits).unwrap_or(0)
    );
    println!(
        "| reserve at the end, free of it | {} / {} |",
        liquidity["liquidity"]["reserve"].as_str().unwrap_or("?"),
        liquidity["liquidity"]["free"].as_str().unwrap_or("?")
    );
    // Where the time went inside the node (histogram bucket bounds, so rounded up).
    for (key, _, what) in breakdown::STEPS {
        let step = &result["nodeLatency"][key];
        if step.is_object() {
            let ms = |v: &Value| v.as_f64().map_or_else(|| v.to_string(), |x| format!("{x}"));
            println!(
                "| node {what} p50 / p99 / p999 (ms, ≤) | {} / {} / {} |",
                ms(&step["p50Ms"]),
                ms(&step["p99Ms"]),
                ms(&step["p999Ms"])
            );
        }
    }
    if !books_balance {
        println!("the books do not balance: {rep}");
    }
    Ok(result)
}

/// The node's liquidity report (operator), once its confirmed state has caught up.
async fn liquidity(client: &reqwest::Client, node: &Node) -> Result<Value, String> {
    let get = || async {
        let resp = client.get(format!("{}/v1/operator/liquidity", node.url)).bearer_auth(OPERATOR).send().await;
        resp.map_err(fail)?.json::<Value>().await.map_err(fail)
    };
    // Realizations in flight settle first (a second is a few confirmations here).
    tokio::time::sleep(Duration::from_millis(500)).await;
    get().await
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("infhub-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infhub-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
