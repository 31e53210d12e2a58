//! The hub on PostgreSQL (issue 23): a restart replays from the database, a standby process
//! waits for the writer lease and takes over when the active one is paused past it, and the
//! paused one, resumed, is fenced at its next commit and exits; a database outage is a
//! retryable refusal, not a stop; PostgreSQL itself fails over (pg_auto_failover) under load,
//! and then the hub process does, with nothing acknowledged lost and no credit signed twice.

use crate::harness::{amount, wait_serving, Env, Process, User, INF};
use infhub_node::config::{Secret, StoreKind};
use infhub_pg::formation::LocalFormation;
use infhub_pg::server::LocalPostgres;
use std::process::Command;
use std::time::{Duration, Instant};

/// The lease in these tests: short, so the takeover is quick.
const LEASE_MS: u64 = 1_500;

/// A chain and a hub node on PostgreSQL at `pg` in `schema` (asynchronous mode: one server),
/// writing as `writer`.
async fn start_on_postgres(pg: &LocalPostgres, schema: &str, writer: &str) -> Env {
    Env::start_with(|c| {
        c.store.kind = StoreKind::Postgres;
        c.store.postgres_url = Secret(pg.url());
        c.store.postgres_schema = schema.into();
        // One server, no standby: asynchronous mode, said explicitly.
        c.store.require_synchronous_standby = false;
        c.store.lease_ms = LEASE_MS;
        c.store.writer_name = writer.into();
        c.node.log = "info".into();
    })
    .await
}

/// Starts a standby hub process (writer `hub-b`, its own data directory and port, as on another
/// machine) that waits for the lease of `env`'s hub; its process and URL.
fn start_standby(env: &Env) -> (Process, String) {
    let mut config = env.config.clone();
    let port = infhub_chain::anvil::free_port().expect("port");
    config.node.listen = format!("127.0.0.1:{port}");
    config.node.data_dir = env.tmp.path().join("standby-data");
    config.store.writer_name = "hub-b".into();
    config.store.wait_for_lease = true;
    (Process(env.spawn_other_node(&config, "standby")), format!("http://127.0.0.1:{port}"))
}

fn signal(pid: u32, which: &str) {
    let ok = Command::new("kill").args([which, &pid.to_string()]).status().expect("kill").success();
    assert!(ok, "kill {which} {pid}");
}

async fn serves(url: &str) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().expect("client");
    client.get(format!("{url}/v1/info")).send().await.is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_the_lease_from_a_paused_writer_which_is_fenced_when_it_resumes() {
    let pg_dir = tempfile::tempdir().expect("tmp");
    let pg = LocalPostgres::start(pg_dir.path()).unwrap_or_else(|e| panic!("start postgres: {e}"));
    let mut env = start_on_postgres(&pg, "hub_e2e", "hub-a").await;
    let alice = env.user(1, "alice");
    let bob = env.user(2, "bob");
    env.register(&alice).await;
    env.register(&bob).await;
    env.purchase(alice.address, 100 * INF, 1).await;
    for _ in 0..3 {
        env.ok(&alice, &["pay", &bob.address.to_string(), "10"]);
    }

    // A restart under the same writer name takes the lease at once and replays from the
    // database: every acknowledged payment is there.
    env.kill_hub();
    env.start_hub().await;
    assert_eq!(amount(&env.ok(&alice, &["balance"])["balance"]), 70 * INF);
    assert_eq!(amount(&env.ok(&bob, &["balance"])["balance"]), 30 * INF);

    // A standby (its own data directory and port, as on another machine) waits for the lease
    // while the active writer renews it: it does not serve.
    let (_standby, standby_url) = start_standby(&env);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(3 * LEASE_MS) {
        assert!(!serves(&standby_url).await, "the standby served while the active writer held the lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The active writer is paused past its lease: the standby takes it, replays and serves.
    let active = env.hub_pid().expect("active hub");
    signal(active, "-STOP");
    let paused = Instant::now();
    wait_serving(&standby_url, 60).await;
    println!(
        "standby serving {} ms after the active writer was paused (lease {LEASE_MS} ms)",
        paused.elapsed().as_millis()
    );
    let on_standby = |args: &[&str]| -> Vec<String> {
        ["--hub-url", standby_url.as_str()].iter().chain(args).map(|a| a.to_string()).collect()
    };
    let ok = |env: &Env, u, args: Vec<String>| env.ok(u, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let v = ok(&env, &alice, on_standby(&["balance"]));
    assert_eq!(amount(&v["balance"]), 70 * INF, "every acknowledged payment is on the standby: {v}");
    ok(&env, &alice, on_standby(&["pay", &bob.address.to_string(), "5"]));
    let v = ok(&env, &bob, on_standby(&["balance"]));
    assert_eq!(amount(&v["balance"]), 35 * INF, "{v}");

    // The old writer resumes: its next commit (the next confirmed block) is fenced inside its
    // own transaction, and it exits without answering more.
    signal(active, "-CONT");
    let status = env.wait_hub_exit(60).await;

    assert!(!status.success(), "the fenced writer must exit with an error: {status}");
    assert!(!serves(&env.hub_url).await, "the fenced writer no longer serves");
    // The standby goes on, and has everything.
    ok(&env, &bob, on_standby(&["pay", &alice.address.to_string(), "1"]));
    let v = ok(&env, &alice, on_standby(&["balance"]));
    assert_eq!(amount(&v["balance"]), 66 * INF, "70 − 5 + 1: {v}");
    drop(pg);
}

/// The operator's view of `user`'s account (the node answers it from memory).
async fn account(env: &Env, user: alloy::primitives::Address) -> (u16, serde_json::Value) {
    crate::harness::account_at(&env.hub_url, user).await
}

/// Operator purchase `id` of `amount` for `user`: the status and the error code, if any.
async fn try_purchase(env: &Env, user: alloy::primitives::Address, amount: u128, id: u8) -> (u16, String) {
    purchase_at(&env.hub_url, user, amount, u32::from(id)).await.unwrap_or((0, "unreachable".into()))
}

/// Operator purchase `id` at the hub at `url` (None: no answer at all).
async fn purchase_at(url: &str, user: alloy::primitives::Address, amount: u128, id: u32) -> Option<(u16, String)> {
    let (status, body) = purchase_answer_at(url, user, amount, id).await?;
    Some((status, body["error"]["code"].as_str().unwrap_or_default().to_string()))
}

/// Operator purchase `id` at the hub at `url`: the status and the body (None: no answer).
async fn purchase_answer_at(
    url: &str,
    user: alloy::primitives::Address,
    amount: u128,
    id: u32,
) -> Option<(u16, serde_json::Value)> {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?
        .post(format!("{url}/v1/operator/purchases"))
        .bearer_auth(crate::harness::OPERATOR)
        .json(&serde_json::json!({"user": user, "amount": amount.to_string(), "purchaseId": format!("0x{id:064x}")}))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_refuses_writes_as_retryable_and_the_node_reopens_without_a_restart() {
    let pg_dir = tempfile::tempdir().expect("tmp");
    let mut pg = LocalPostgres::start(pg_dir.path()).unwrap_or_else(|e| panic!("start postgres: {e}"));
    let mut env = start_on_postgres(&pg, "outage", "hub-a").await;
    let alice = env.user(1, "alice");
    let bob = env.user(2, "bob");
    env.register(&alice).await;
    env.register(&bob).await;
    env.purchase(alice.address, 100 * INF, 1).await;
    env.ok(&alice, &["pay", &bob.address.to_string(), "10"]);

    // The database goes away. A write is refused as retryable (503 storage_unavailable):
    // nothing is acknowledged. Reads go on from memory, and the process keeps running.
    pg.stop().unwrap_or_else(|e| panic!("stop postgres: {e}"));
    let stopped = Instant::now();
    let (status, code) = try_purchase(&env, alice.address, 7 * INF, 2).await;
    assert_eq!((status, code.as_str()), (503, "storage_unavailable"), "a write while the database is down");
    // A read of an account the refused write touched never shows it as done: either the write
    // was refused before it was applied (the node knew storage was down: 200 and the old
    // balance) or its batch is in memory unconfirmed (503, retryable). Another account reads
    // from memory as usual.
    let (status, a) = account(&env, alice.address).await;
    match status {
        200 => assert_eq!(amount(&a["balance"]), 90 * INF, "the refused purchase is not shown: {a}"),
        503 => assert_eq!(a["error"]["code"], "storage_unavailable", "{a}"),
        other => panic!("a read while the database is down: {other} {a}"),
    }
    let (status, b) = account(&env, bob.address).await;
    assert_eq!(status, 200, "a read while the database is down: {b}");
    assert_eq!(amount(&b["balance"]), 10 * INF);
    // Down for longer than the writer lease: every write meanwhile is refused the same way.
    while stopped.elapsed() < Duration::from_millis(2 * LEASE_MS) {
        let (status, code) = try_purchase(&env, alice.address, 7 * INF, 2).await;
        assert_eq!((status, code.as_str()), (503, "storage_unavailable"), "still down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // It comes back on the same address: the node reopens the ledger from it by itself, and
    // the retried purchase is applied once.
    pg.start_again(&pg_dir.path().join("postgres.log")).unwrap_or_else(|e| panic!("restart postgres: {e}"));
    let back = Instant::now();
    env.until(60, "the node to accept writes again", || async {
        try_purchase(&env, alice.address, 7 * INF, 2).await.0 == 200
    })
    .await;
    println!(
        "database down {} ms; writes accepted again {} ms after it came back",
        back.duration_since(stopped).as_millis(),
        back.elapsed().as_millis()
    );
    assert_eq!(try_purchase(&env, alice.address, 7 * INF, 2).await.0, 200, "a retry of the same purchase");
    let (_, a) = account(&env, alice.address).await;
    assert_eq!(amount(&a["balance"]), 97 * INF, "the purchase applied exactly once: {a}");
    env.ok(&alice, &["pay", &bob.address.to_string(), "5"]);
    assert_eq!(amount(&env.ok(&bob, &["balance"])["balance"]), 15 * INF);
    let metrics = reqwest::get(format!("{}/metrics", env.hub_url)).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("infhub_storage_reopens_total 1"), "one reopen counted");
    assert!(metrics.contains("infhub_storage_down 0"), "storage is up again");
    // The queryable projection resumed after the outage and caught up (lag 0), and holds the
    // two purchases and two payments, once each.
    env.until(30, "the projection to catch up", || async {
        let m = reqwest::get(format!("{}/metrics", env.hub_url)).await.expect("metrics").text().await.expect("text");
        m.contains("infhub_projection_lag_records 0\n") && !m.contains("infhub_projection_seq 0\n")
    })
    .await;
    let url = pg.url();
    let kinds = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query("SELECT kind, count(*) FROM outage.transfers GROUP BY kind ORDER BY kind", &[])
            .expect("query the projection")
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect::<Vec<_>>()
    })
    .join()
    .expect("query thread");
    assert_eq!(kinds, vec![("internal".to_string(), 2), ("purchase".to_string(), 2)], "the projected transfers");
    // The node never restarted.
    assert!(env.hub_pid().is_some());
    env.kill_hub();
    drop(pg);
}

/// `infhub dev --postgres` (what `scripts/dev --postgres` runs) starts its own pg_auto_failover
/// formation and serves with the ledger in it; SIGTERM stops it all (no database process is
/// left behind).
#[tokio::test(flavor = "multi_thread")]
async fn the_development_hub_runs_on_a_pg_auto_failover_formation() {
    let tmp = tempfile::tempdir().expect("tmp");
    let port = infhub_chain::anvil::free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_infhub"))
        .args(["dev", "--postgres", "--no-tower", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(tmp.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("dev.log")).expect("log file"))
        .spawn()
        .expect("spawn infhub dev");
    let mut dev = Process(child);
    // Three database clusters, two base backups and the node: tens of seconds alone, minutes
    // beside the other scenarios on a loaded 2-core machine.
    let deadline = Instant::now() + Duration::from_secs(420);
    while !reqwest::get(format!("{url}/v1/info")).await.is_ok_and(|r| r.status().is_success()) {
        if Instant::now() > deadline || dev.0.try_wait().expect("try_wait").is_some() {
            let log = std::fs::read_to_string(tmp.path().join("dev.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "infhub dev did not serve (exited: {:?}); its log ends:\n{}",
                dev.0.try_wait(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let info: serde_json::Value =
        reqwest::get(format!("{url}/v1/info")).await.expect("info").json().await.expect("json");
    assert_eq!(info["storage"]["store"], "postgres", "{info}");
    assert!(info["storage"]["down"].is_null(), "{info}");
    let data = tmp.path().join("data").display().to_string();
    let keepers = live_processes_naming(&data).iter().filter(|c| c.contains("pg_autoctl")).count();
    assert!(keepers >= 4, "a monitor and three nodes keep the formation: {keepers}");
    // The node watches the replicas: two standbys stream from the primary, in the quorum.
    let metrics =
        || async { reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("text") };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = metrics().await;
        if m.contains("infhub_postgres_standbys 2\n") && m.contains("infhub_postgres_synchronous_standbys 2\n") {
            assert!(m.contains("infhub_postgres_replica_lag_bytes "), "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "the replicas never showed in the metrics");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A clean stop: SIGTERM, and the process (which stops its databases) exits by itself.
    signal(dev.0.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = dev.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "infhub dev did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let left = live_processes_naming(&data);
    assert!(left.is_empty(), "database processes left behind: {left:?}");
}

/// The command lines of live (not zombie) processes that name `text`.
fn live_processes_naming(text: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // The state follows the command name in parentheses: `pid (comm) S ...`.
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (state != 'Z' && cmdline.contains(text)).then_some(cmdline)
        })
        .collect()
}

/// A hub process failover under load: purchases stream in from four clients; the active writer
/// is killed (SIGKILL) mid-stream; a standby takes the lease, replays and serves; each client
/// retries what was not answered, against whichever process serves. Every acknowledged
/// purchase is there, and none twice (purchases are idempotent by id).
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_from_a_killed_writer_under_load_and_nothing_is_lost_or_doubled() {
    const LANES: u32 = 4;
    const PER_LANE: u32 = 60;
    let pg_dir = tempfile::tempdir().expect("tmp");
    let pg = LocalPostgres::start(pg_dir.path()).unwrap_or_else(|e| panic!("start postgres: {e}"));
    let mut env = start_on_postgres(&pg, "load", "hub-a").await;
    let alice = env.user(1, "alice");
    env.register(&alice).await;
    let (_standby, standby_url) = start_standby(&env);

    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let urls = [env.hub_url.clone(), standby_url.clone()];
        let acknowledged = acknowledged.clone();
        let user = alice.address;
        lanes.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            for i in 0..PER_LANE {
                let id = 1_000 + lane * PER_LANE + i;
                // A client retries the same purchase (same id) until one process answers it.
                'retry: loop {
                    for url in &urls {
                        if let Some((200, _)) = purchase_at(url, user, INF, id).await {
                            acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            break 'retry;
                        }
                    }
                    assert!(Instant::now() < deadline, "purchase {id} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    // Mid-stream, the active writer dies.
    env.until(60, "a quarter of the purchases", || async {
        acknowledged.load(std::sync::atomic::Ordering::Relaxed) >= LANES * PER_LANE / 4
    })
    .await;
    let before = acknowledged.load(std::sync::atomic::Ordering::Relaxed);
    env.kill_hub();
    let killed = Instant::now();
    wait_serving(&standby_url, 60).await;
    let recovered = killed.elapsed();
    for lane in lanes {
        lane.await.expect("lane");
    }
    println!(
        "{before} purchases acknowledged before the SIGKILL; the standby served {} ms after it (lease {LEASE_MS} ms)",
        recovered.as_millis()
    );
    let (_, account) = crate::harness::account_at(&standby_url, alice.address).await;
    assert_eq!(
        amount(&account["balance"]),
        u128::from(LANES * PER_LANE) * INF,
        "every purchase exactly once: {account}"
    );
    drop(pg);
}

/// What the load's clients saw acknowledged: per purchase id, the credit's nonce and running
/// total.
type Seen = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u32, (u64, u128)>>>;

/// After a database failover longer than the lease, which hub process writes: the standby
/// (it took the lease first; true) or the old writer, which reopened under its own name.
async fn standby_took_over(env: &mut Env, standby_url: &str, since: Instant) -> bool {
    loop {
        if serves(standby_url).await {
            return true;
        }
        let a_writes = match reqwest::get(format!("{}/v1/info", env.hub_url)).await {
            Ok(r) => r.json::<serde_json::Value>().await.is_ok_and(|v| v["storage"]["down"].is_null()),
            Err(_) => false,
        };
        if a_writes && !env.hub_exited() {
            return false;
        }
        assert!(since.elapsed() < Duration::from_secs(180), "no hub process writes after the database failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clients streaming `per_lane` purchases of 1 INF each for `user` on `lanes` lanes, paced; each
/// retries a purchase (same id) against either URL until one process answers it, and notes
/// the credit it got in `seen`.
fn stream_purchases(
    lanes: u32,
    per_lane: u32,
    urls: [String; 2],
    user: alloy::primitives::Address,
    seen: &Seen,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..lanes)
        .map(|lane| {
            let (urls, seen) = (urls.clone(), seen.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(240);
                for i in 0..per_lane {
                    let id = 5_000 + lane * per_lane + i;
                    'retry: loop {
                        for url in &urls {
                            if let Some((200, body)) = purchase_answer_at(url, user, INF, id).await {
                                let credit = &body["credit"]["message"];
                                let nonce = credit["nonce"].as_u64().unwrap_or_else(|| panic!("a credit: {body}"));
                                seen.lock().expect("seen").insert(id, (nonce, amount(&credit["cumulativeCredit"])));
                                break 'retry;
                            }
                        }
                        assert!(Instant::now() < deadline, "purchase {id} never acknowledged");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // Paced: the load leaves the machine room for the failover's processes.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect()
}

/// No credit nonce was signed for two different totals: every credit any client holds is one
/// of a single chain of `purchases` credits, whose totals, sorted by nonce (which rises with
/// every credit, spec §3), rise by one purchase each.
fn check_one_chain_of_credits(seen: &std::collections::BTreeMap<u32, (u64, u128)>, purchases: u32) {
    assert_eq!(seen.len() as u32, purchases);
    let mut by_nonce: std::collections::BTreeMap<u64, u128> = Default::default();
    for (id, (nonce, cumulative)) in seen {
        if let Some(other) = by_nonce.insert(*nonce, *cumulative) {
            assert_eq!(other, *cumulative, "credit nonce {nonce} signed for two totals (purchase {id})");
        }
    }
    assert_eq!(by_nonce.len() as u32, purchases, "one nonce per purchase");
    for (k, (nonce, cumulative)) in by_nonce.iter().enumerate() {
        assert_eq!(*cumulative, (k as u128 + 1) * INF, "nonce {nonce}'s total is one purchase more than the last");
    }
}

/// Failover of the database and then of the hub, under load (the failover test): the
/// hub writes to a pg_auto_failover formation (a monitor, a primary, two standbys, one
/// synchronous standby required) through a multi-host URL. Four clients stream purchases. The
/// primary database's machine is SIGKILLed: the hub answers `storage_unavailable` until the
/// monitor has promoted a standby, then reopens from it by itself. A standby hub process is
/// started; the active hub process is SIGKILLed and the standby takes the lease and serves.
/// Each client retries what was not answered, against whichever process serves. At the end:
/// every acknowledged purchase is in the balance exactly once, and no credit nonce was signed
/// for two different totals (a hub that signed before its commit returned, or a replica that
/// lost an acknowledged batch, would show one). The times to recover are printed.
#[tokio::test(flavor = "multi_thread")]
async fn postgresql_then_the_hub_fail_over_under_load_and_nothing_is_lost_or_signed_twice() {
    const LANES: u32 = 4;
    const PER_LANE: u32 = 100;
    let pg_dir = tempfile::tempdir().expect("tmp");
    let formed = Instant::now();
    let mut formation = LocalFormation::start(pg_dir.path()).unwrap_or_else(|e| panic!("formation: {e}"));
    let first_primary = formation.primary().expect("states").expect("a primary");
    println!("formation ready in {} ms", formed.elapsed().as_millis());
    let mut env = Env::start_with(|c| {
        c.store.kind = StoreKind::Postgres;
        c.store.postgres_url = Secret(formation.url());
        c.store.postgres_schema = "failover".into();
        c.store.require_synchronous_standby = true;
        c.store.lease_ms = LEASE_MS;
        c.store.writer_name = "hub-a".into();
        c.node.log = "info".into();
    })
    .await;
    let alice = env.user(1, "alice");
    env.register(&alice).await;
    let standby_port = infhub_chain::anvil::free_port().expect("port");
    let standby_url = format!("http://127.0.0.1:{standby_port}");

    // A standby hub process waits for the lease from the start, as in production: it must
    // outlive the database's failover too.
    let mut config = env.config.clone();
    config.node.listen = format!("127.0.0.1:{standby_port}");
    config.node.data_dir = env.tmp.path().join("standby-data");
    config.store.writer_name = "hub-b".into();
    config.store.wait_for_lease = true;
    let mut standby = Process(env.spawn_other_node(&config, "standby"));

    let seen: Seen = Default::default();
    let lanes = stream_purchases(LANES, PER_LANE, [env.hub_url.clone(), standby_url.clone()], alice.address, &seen);
    let acknowledged = || seen.lock().expect("seen").len() as u32;

    // The primary database's machine dies.
    env.until(60, "a quarter of the purchases", || async { acknowledged() >= LANES * PER_LANE / 4 }).await;
    formation.kill_node(first_primary);
    let killed = Instant::now();
    let at_kill = acknowledged();
    let promoted = formation.wait_ready(Some(first_primary)).unwrap_or_else(|e| panic!("failover: {e}"));
    let promoted_after = killed.elapsed();
    let before = acknowledged();
    env.until(180, "a purchase acknowledged on the new primary", || async { acknowledged() > before }).await;
    let database_recovery = killed.elapsed();
    assert_ne!(promoted, first_primary);
    assert!(standby.0.try_wait().expect("try_wait").is_none(), "the standby outlived the database's failover");

    // The database was away longer than the lease: the active hub reopened under its own
    // name, or the standby took the lease first (and the old writer stopped, as it must). Either
    // way one serves; a supervisor restarts the other as a standby.
    let b_won = standby_took_over(&mut env, &standby_url, killed).await;
    env.until(60, "half of the purchases", || async { acknowledged() >= LANES * PER_LANE / 2 }).await;
    let hub_killed;
    let at_hub_kill = acknowledged();
    let _restarted: Option<Process>;
    let survivor_url = if b_won {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !env.hub_exited() {
            assert!(Instant::now() < deadline, "the old writer kept running after the standby took the lease");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut again = env.config.clone();
        again.store.wait_for_lease = true;
        _restarted = Some(Process(env.spawn_other_node(&again, "hub-a-again")));
        // Now the active one (hub-b) dies.
        let _ = standby.0.kill();
        let _ = standby.0.wait();
        hub_killed = Instant::now();
        env.hub_url.clone()
    } else {
        _restarted = None;
        env.kill_hub();
        hub_killed = Instant::now();
        standby_url.clone()
    };
    wait_serving(&survivor_url, 120).await;
    let before = acknowledged();
    env.until(180, "a purchase acknowledged by the standby hub", || async { acknowledged() > before }).await;
    let hub_recovery = hub_killed.elapsed();
    for lane in lanes {
        lane.await.expect("lane");
    }
    println!(
        "database: {at_kill} purchases acknowledged before the primary's SIGKILL; a standby promoted after {} ms; \
         purchases acknowledged again after {} ms, by {}. hub: {at_hub_kill} acknowledged before the active \
         process's SIGKILL; the other acknowledged again after {} ms (lease {LEASE_MS} ms)",
        promoted_after.as_millis(),
        database_recovery.as_millis(),
        if b_won { "the standby, which took the lease first (the old writer stopped)" } else { "the writer, reopened" },
        hub_recovery.as_millis()
    );

    let (_, account) = crate::harness::account_at(&survivor_url, alice.address).await;
    let total = u128::from(LANES * PER_LANE) * INF;
    assert_eq!(amount(&account["balance"]), total, "every purchase exactly once: {account}");
    check_one_chain_of_credits(&seen.lock().expect("seen"), LANES * PER_LANE);
    drop(formation);
}

/// A 60-second database outage under load is not a channel close (the outage test):
/// four clients stream purchases; PostgreSQL stops for 60 s; meanwhile writes are refused as
/// retryable, and a user exits from an old backup of her wallet, which the hub must answer
/// within the 8-second challenge period from what it holds in memory (it cannot record the
/// exit). Her exit pays her true balance, the other user's channel stays open, and once the
/// database is back every purchase is applied exactly once and the books balance.
#[tokio::test(flavor = "multi_thread")]
async fn a_minute_long_database_outage_under_load_closes_no_channel_and_loses_nothing() {
    const LANES: u32 = 4;
    const PER_LANE: u32 = 40;
    const OUTAGE: Duration = Duration::from_secs(60);
    let pg_dir = tempfile::tempdir().expect("tmp");
    let mut pg = LocalPostgres::start(pg_dir.path()).unwrap_or_else(|e| panic!("start postgres: {e}"));
    let env = start_on_postgres(&pg, "long_outage", "hub-a").await;
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    let (backup, _) = env.stale_backup_scenario(&alice, &bob).await;

    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let url = env.hub_url.clone();
        let acknowledged = acknowledged.clone();
        let user = bob.address;
        lanes.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(240);
            let mut refused_while_down = 0u32;
            for i in 0..PER_LANE {
                let id = 9_000 + lane * PER_LANE + i;
                loop {
                    match purchase_at(&url, user, INF, id).await {
                        Some((200, _)) => break,
                        Some((503, code)) => {
                            assert_eq!(code, "storage_unavailable", "a refusal during the outage is retryable");
                            refused_while_down += 1;
                        }
                        other => panic!("purchase {id}: {other:?}"),
                    }
                    assert!(Instant::now() < deadline, "purchase {id} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            refused_while_down
        }));
    }
    env.until(60, "a quarter of the purchases", || async {
        acknowledged.load(std::sync::atomic::Ordering::Relaxed) >= LANES * PER_LANE / 4
    })
    .await;
    pg.stop().unwrap_or_else(|e| panic!("stop postgres: {e}"));
    let stopped = Instant::now();
    let at_stop = acknowledged.load(std::sync::atomic::Ordering::Relaxed);

    // During the outage, alice exits with her stale wallet: it believes 50 + 10.
    let restored = User { dir: backup, ..alice.clone() };
    let before = env.token_balance(alice.address).await;
    let exit = tokio::task::block_in_place(|| env.ok(&restored, &["exit", "--offline", "--yes"]));
    let exit_took = stopped.elapsed();
    assert!(exit_took < OUTAGE, "the exit settled during the outage ({} ms)", exit_took.as_millis());
    assert_eq!(amount(&exit["expected"]), 60 * INF, "the stale wallet believes 50 + 10: {exit}");
    assert_eq!(amount(&exit["paid"]), 45 * INF, "the hub's dispute from memory held it to 50 + 10 − 15: {exit}");
    assert_eq!(env.token_balance(alice.address).await - before, 45 * INF);
    let during = acknowledged.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(during, at_stop, "nothing acknowledged while the database is down");
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;

    pg.start_again(&pg_dir.path().join("postgres.log")).unwrap_or_else(|e| panic!("restart postgres: {e}"));
    let back = Instant::now();
    let mut refused = 0;
    for lane in lanes {
        refused += lane.await.expect("lane");
    }
    println!(
        "database down {} ms under load ({at_stop} purchases acknowledged before, {refused} refusals as retryable \
         during it); alice's stale exit disputed from memory and settled {} ms into the outage; all {} purchases \
         acknowledged {} ms after the database came back",
        back.duration_since(stopped).as_millis(),
        exit_took.as_millis(),
        LANES * PER_LANE,
        back.elapsed().as_millis()
    );
    assert!(refused > 0, "the load ran into the outage");
    // Once back, the ledger has recorded the exit and its settlement, the other channel is
    // open, every purchase is there once, and the books balance.
    env.until(60, "the ledger to record alice's settlement", || async {
        account(&env, alice.address).await.1["status"]["state"] == "settled"
    })
    .await;
    let (_, b) = account(&env, bob.address).await;
    assert_eq!(b["status"]["state"], "open", "{b}");
    assert_eq!(amount(&b["balance"]), (20 - 10 + 15) * INF + u128::from(LANES * PER_LANE) * INF, "{b}");
    env.until(60, "the books to balance", || async { env.solvency().await["contractBalanced"] == true }).await;
    drop(pg);
}
