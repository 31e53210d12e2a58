//! The failover run (`--failover`, issue 23): the node on a pg_auto_failover formation (a
//! monitor, a primary and two standbys, one synchronous standby required) with a standby hub
//! process waiting for the writer lease. A third of the pre-signed transfers measure the peak;
//! the rest are offered at half of it (slower if they would not last `MIN_FAILOVER_PHASE`:
//! pre-sign enough for the rate) while the primary database's machine (a fifth of the way in)
//! and then the active hub process (three fifths in) are SIGKILLed. Every client retries an unanswered transfer, against
//! either process, until one answers it. At the end every transfer must be applied exactly
//! once (each payer's debit nonce and every balance as the pre-signed transfers say) and the
//! books must balance; the times to recover are printed.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The writer lease in this run: short, so the standby takes over quickly.
pub(crate) const LEASE_MS: u64 = 1_500;
/// The failover phase lasts at least this long (the database's failover alone takes about
/// ten seconds here).
const MIN_FAILOVER_PHASE: Duration = Duration::from_secs(40);
/// Longest a transfer may go unanswered across both failovers.
const RETRY_DEADLINE: Duration = Duration::from_secs(300);

/// Acknowledged transfers so far, and when the last one was.
#[derive(Default)]
struct Progress {
    acknowledged: AtomicU64,
    /// Milliseconds since the phase started, of the newest acknowledgement.
    last_ms: AtomicU64,
}

/// Sends one lane's transfers at `interval`, each retried against either URL until one
/// answers it with success.
async fn drive_retrying(
    client: reqwest::Client,
    urls: [String; 2],
    bodies: Vec<Vec<u8>>,
    start: Instant,
    interval: Duration,
    phase: Duration,
    progress: Arc<Progress>,
) -> Result<Vec<f64>, String> {
    let mut latencies = Vec::with_capacity(bodies.len());
    for (k, body) in bodies.into_iter().enumerate() {
        let due = start + phase + interval * k as u32;
        tokio::time::sleep_until(due.into()).await;
        let mut attempt = 0usize;
        loop {
            let url = format!("{}/v1/transfers", urls[attempt % 2]);
            let sent = client
                .post(&url)
                .header("content-type", "application/json")
                .timeout(Duration::from_secs(5))
                .body(body.clone())
                .send()
                .await;
            if let Ok(r) = sent {
                if r.status().is_success() {
                    break;
                }
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                // A refusal by rule (4xx other than a full limit) is a bug of the run itself.
                if status.is_client_error() && status.as_u16() != 429 {
                    return Err(format!("transfer refused: {status} {}", text.chars().take(300).collect::<String>()));
                }
            }
            if due.elapsed() > RETRY_DEADLINE {
                return Err(format!("a transfer went unanswered for {} s", RETRY_DEADLINE.as_secs()));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.push(due.elapsed().as_secs_f64() * 1e3);
        progress.acknowledged.fetch_add(1, Ordering::Relaxed);
        progress.last_ms.fetch_max(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    Ok(latencies)
}

/// Waits until `f` holds (checked every 20 ms, at most `secs`).
async fn until(secs: u64, what: &str, f: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Pre-signed transfers per lane.
type Lanes = Vec<Vec<Vec<u8>>>;

/// Sends the first third of every lane unlimited; the transfers per second, and the rest.
async fn measure_peak(setup: &Setup, lanes: Lanes) -> Result<(f64, Lanes), String> {
    let (peak_lanes, rest): (Lanes, Lanes) = lanes
        .into_iter()
        .map(|mut lane| {
            let rest = lane.split_off(lane.len() / 3);
            (lane, rest)
        })
        .unzip();
    let peak_n: usize = peak_lanes.iter().map(Vec::len).sum();
    let start = Instant::now();
    let url = format!("{}/v1/transfers", setup.node.url);
    let mut tasks = Vec::new();
    for lane in peak_lanes {
        let requests = lane_requests(lane, 1);
        tasks.push(tokio::spawn(drive_lane(setup.client.clone(), url.clone(), requests, start, None, None)));
    }
    for t in tasks {
        t.await.map_err(fail)??;
    }
    Ok((peak_n as f64 / start.elapsed().as_secs_f64(), rest))
}

pub(crate) async fn run_failover(args: &Args) -> Result<(), String> {
    let (accounts, transfers) = if args.quick { (100, 3_000) } else { (args.accounts, args.transfers) };
    if !(2..=MAX_ACCOUNTS).contains(&accounts) || !(3..=MAX_TRANSFERS).contains(&transfers) {
        return Err(format!("--accounts in 2..={MAX_ACCOUNTS}, --transfers in 3..={MAX_TRANSFERS}"));
    }
    let connections = args.connections.clamp(1, MAX_CONNECTIONS).min(accounts);
    println!(
        "infhub-bench failover: {accounts} accounts, {transfers} transfers, {connections} connections, seed {}",
        args.seed
    );
    let mut setup = set_up(args, accounts, BenchStore::Formation, 0).await?;
    let lanes = presign(args, &setup, accounts, transfers, connections)?;
    let expected = expected_books(&lanes, accounts, &setup)?;

    let (peak, rest) = measure_peak(&setup, lanes).await?;
    let rest_n: usize = rest.iter().map(Vec::len).sum();
    // Half the peak, unless the transfers left would not last through both failovers: then
    // slower (said so), so that the kills land mid-stream.
    let rate = (peak / 2.0).min(rest_n as f64 / MIN_FAILOVER_PHASE.as_secs_f64());
    println!("| peak (one process, formation, synchronous standby) | {peak:.0} transfers/s |");
    println!(
        "| offered during the failovers | {rate:.0} transfers/s ({:.2} of the peak), {rest_n} transfers |",
        rate / peak
    );

    // Half the peak, with the failovers.
    let (_, _, standby_url) = setup.node.formation.as_ref().ok_or("no formation")?;
    let urls = [setup.node.url.clone(), standby_url.clone()];
    let progress = Arc::new(Progress::default());
    let lanes_n = rest.len();
    let span = Duration::from_secs_f64(rest_n as f64 / rate.max(1.0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, lane) in rest.into_iter().enumerate() {
        if lane.is_empty() {
            continue;
        }
        let interval = span / lane.len() as u32;
        let phase = interval.mul_f64(i as f64 / lanes_n as f64);
        let (c, u, p) = (setup.client.clone(), urls.clone(), progress.clone());
        tasks.push(tokio::spawn(drive_retrying(c, u, lane, start, interval, phase, p)));
    }
    let acked = || progress.acknowledged.load(Ordering::Relaxed) as usize;
    // The database dies a fifth of the way in, the hub process three fifths in.
    tokio::time::sleep_until((start + span / 5).into()).await;
    let (formation, _, _) = setup.node.formation.as_mut().ok_or("no formation")?;
    let primary = formation.primary().map_err(fail)?.ok_or("no primary")?;
    formation.kill_node(primary);
    let db_killed_ms = start.elapsed().as_millis() as u64;
    let db_killed_at = acked();
    until(600, "a transfer acknowledged after the database failover", || {
        progress.last_ms.load(Ordering::Relaxed) > db_killed_ms && acked() > db_killed_at
    })
    .await?;
    let db_recovery_ms = progress.last_ms.load(Ordering::Relaxed) - db_killed_ms;
    tokio::time::sleep_until((start + span * 3 / 5).into()).await;
    // The database was away longer than the lease: the first process reopened under its own
    // name, or the standby took the lease first and the first process stopped (as it must).
    // The active one dies now; the other (restarted as a standby if it had stopped) takes over.
    let standby_won = kill_the_active_hub(&mut setup)?;
    let hub_killed_ms = start.elapsed().as_millis() as u64;
    let hub_killed_at = acked();
    until(600, "a transfer acknowledged by the standby hub", || {
        progress.last_ms.load(Ordering::Relaxed) > hub_killed_ms && acked() > hub_killed_at
    })
    .await?;
    let hub_recovery_ms = progress.last_ms.load(Ordering::Relaxed) - hub_killed_ms;
    let mut latencies = Vec::with_capacity(rest_n);
    for t in tasks {
        latencies.extend(t.await.map_err(fail)??);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let secs = start.elapsed().as_secs_f64();

    // Every transfer applied exactly once: the standby's books say what the transfers say.
    let survivor = if standby_won { setup.node.url.clone() } else { standby_url_of(&setup)? };
    let checked = check_books(&setup, survivor, &expected).await?;
    println!("| primary database's machine SIGKILLed after | {db_killed_at} transfers |");
    println!("| transfers acknowledged again after the database failover | {db_recovery_ms} ms |");
    println!(
        "| active hub process SIGKILLed after ({}) | {hub_killed_at} transfers |",
        if standby_won { "the standby, which took the lease during the database failover" } else { "the first" }
    );
    println!("| transfers acknowledged again by the standby hub | {hub_recovery_ms} ms (lease {LEASE_MS} ms) |");
    println!("| throughput over the failover phase | {:.0} transfers/s |", rest_n as f64 / secs);
    println!(
        "| latency p50 / p99 / max over the failover phase (ms) | {:.1} / {:.1} / {:.1} |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    println!("| every transfer applied once ({checked} accounts checked), books balance | true |");
    let result = json!({
        "peakPerSecond": peak, "offeredPerSecond": rate, "transfers": transfers,
        "databaseKilledAfter": db_killed_at, "databaseRecoveryMs": db_recovery_ms,
        "hubKilledAfter": hub_killed_at, "hubRecoveryMs": hub_recovery_ms,
        "latencyMs": {"p50": percentile(&latencies, 0.5), "p99": percentile(&latencies, 0.99)},
        "accountsChecked": checked,
    });
    std::fs::write(&args.json_out, serde_json::to_string_pretty(&result).map_err(fail)?).map_err(fail)?;
    println!("\nJSON: {}", args.json_out.display());
    Ok(())
}

/// Kills whichever hub process writes; true if that is the standby (the first process, which
/// had stopped, is then restarted as a standby first).
fn kill_the_active_hub(setup: &mut Setup) -> Result<bool, String> {
    let standby_won = setup.node.child.try_wait().map_err(fail)?.is_some();
    if standby_won {
        setup.node.child = restart_as_standby(setup)?;
        let (_, standby, _) = setup.node.formation.as_mut().ok_or("no formation")?;
        let _ = standby.kill();
        let _ = standby.wait();
    } else {
        let _ = setup.node.child.kill();
        let _ = setup.node.child.wait();
    }
    Ok(standby_won)
}

/// The first hub process again, as a standby (a supervisor's restart).
fn restart_as_standby(setup: &Setup) -> Result<Child, String> {
    let dir = setup._dir.path();
    spawn_node_process(&dir.join("infhub.toml"), &dir.join("node-again.log"), &[("INFHUB_WAIT_FOR_LEASE", "true")])
}

fn standby_url_of(setup: &Setup) -> Result<String, String> {
    setup.node.formation.as_ref().map(|(_, _, url)| url.clone()).ok_or_else(|| "no formation".into())
}

/// What each account's debit nonce and balance must be once every pre-signed transfer applied
/// once: (address, debit nonce, balance).
fn expected_books(lanes: &[Vec<Vec<u8>>], accounts: usize, setup: &Setup) -> Result<Vec<(String, u64, u128)>, String> {
    let index: HashMap<infhub_core::Address, usize> =
        setup.keys.iter().enumerate().map(|(i, k)| (k.address(), i)).collect();
    let mut nonce = vec![0u64; accounts];
    let mut balance = vec![FUNDING; accounts];
    for body in lanes.iter().flatten() {
        let d: infhub_core::messages::SignedDebit = serde_json::from_slice(body).map_err(fail)?;
        let (m, amount) = (&d.message, d.message.amount.0);
        let payer = *index.get(&m.user).ok_or("a payer outside the accounts")?;
        let payee = *index.get(&m.recipient).ok_or("a payee outside the accounts")?;
        nonce[payer] = nonce[payer].max(m.nonce);
        balance[payer] -= amount;
        balance[payee] += amount;
    }
    Ok(setup.keys.iter().enumerate().map(|(i, k)| (k.address().to_string(), nonce[i], balance[i])).collect())
}

/// Reads every account from the hub at `url` and compares it with `expected`; then the books.
async fn check_books(setup: &Setup, url: String, expected: &[(String, u64, u128)]) -> Result<usize, String> {
    let url = url.as_str();
    let get = |path: String| async move {
        let r = setup.client.get(format!("{url}{path}")).bearer_auth(OPERATOR).send().await.map_err(fail)?;
        r.json::<Value>().await.map_err(fail)
    };
    for (address, nonce, balance) in expected {
        let v = get(format!("/v1/accounts/{address}")).await?;
        let got_nonce = v["debitNonce"].as_u64().unwrap_or(u64::MAX);
        let got_balance: u128 = v["balance"].as_str().and_then(|b| b.parse().ok()).unwrap_or(u128::MAX);
        if got_nonce != *nonce || got_balance != *balance {
            return Err(format!(
                "account {address}: debit nonce {got_nonce}, balance {got_balance}; the transfers say {nonce}, {balance}"
            ));
        }
    }
    let s = get("/v1/operator/solvency".to_string()).await?;
    if s["contractBalanced"] != true {
        return Err(format!("the books do not balance after the failovers: {s}"));
    }
    Ok(expected.len())
}
