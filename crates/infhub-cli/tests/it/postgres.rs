//! The hub on PostgreSQL (issue 23): a restart replays from the database, a standby process
//! waits for the writer lease and takes over when the active one is paused past it, and the
//! paused one, resumed, is fenced at its next commit and exits.

use crate::harness::{amount, wait_serving, Env, INF};
use infhub_node::config::{Secret, StoreKind};
use infhub_pg::server::LocalPostgres;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The lease in these tests: short, so the takeover is quick.
const LEASE_MS: u64 = 1_500;

/// Kills a node process when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let mut env = Env::start_with(|c| {
        c.store.kind = StoreKind::Postgres;
        c.store.postgres_url = Secret(pg.url());
        c.store.postgres_schema = "hub_e2e".into();
        // One server, no standby: asynchronous mode, said explicitly.
        c.store.require_synchronous_standby = false;
        c.store.lease_ms = LEASE_MS;
        c.store.writer_name = "hub-a".into();
        c.node.log = "info".into();
    })
    .await;
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
    let mut standby_config = env.config.clone();
    let port = infhub_chain::anvil::free_port().expect("port");
    standby_config.node.listen = format!("127.0.0.1:{port}");
    standby_config.node.data_dir = env.tmp.path().join("standby-data");
    standby_config.store.writer_name = "hub-b".into();
    standby_config.store.wait_for_lease = true;
    let standby_url = format!("http://127.0.0.1:{port}");
    let _standby = Process(env.spawn_other_node(&standby_config, "standby"));
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
