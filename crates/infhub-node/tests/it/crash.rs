//! The crash test: the node binary is killed with SIGKILL in the middle of a stream of
//! transfers, restarted on the same data directory, and every acknowledged transfer must be
//! there (its retry returns the very receipt first acknowledged) while the books balance.

use crate::harness::*;
use infhub_core::messages::PaymentKind;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub(crate) fn spawn_node(config_path: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_infhub-node"))
        .args(["run", "--config"])
        .arg(config_path)
        .env_remove("INFHUB_OPERATOR_TOKEN")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn node")
}

pub(crate) async fn wait_ready(http: &Http) {
    eventually(30, "node process listening", || async {
        let r = http.client.get(format!("{}/v1/info", http.base)).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

#[test]
fn sigkill_during_a_transfer_stream_loses_no_acknowledged_transfer() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let dir = tempfile::tempdir().expect("tmp");
        let port = infhub_chain::anvil::free_port().expect("free port");
        let mut config = chain.config(dir.path().join("data"));
        config.node.listen = format!("127.0.0.1:{port}");
        config.node.snapshot_every_records = 50;
        let config_path = dir.path().join("infhub.toml");
        std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("write config");
        let log = dir.path().join("node.log");
        let mut child = spawn_node(&config_path, &log);
        let http = Http::new(&format!("http://127.0.0.1:{port}"));
        wait_ready(&http).await;

        let mut a = Wallet::new(&chain, 4).await;
        let mut b = Wallet::new(&chain, 5).await;
        register(&chain, &http, &mut a).await;
        register(&chain, &http, &mut b).await;
        a.approve_and_deposit(&chain, 1_000_000).await;
        b.approve_and_deposit(&chain, 1_000_000).await;
        settle_chain(&chain, &http).await;

        // Two payers stream transfers at each other; every 200 answer is recorded.
        let acked: Arc<Mutex<Vec<(Value, Value)>>> = Arc::default();
        let (a_addr, b_addr) = (a.address(), b.address());
        let mut tasks = Vec::new();
        for (mut w, to, base) in [(a, b_addr, 1_000_000u64), (b, a_addr, 2_000_000u64)] {
            let acked = acked.clone();
            let http = Http::new(&http.base);
            tasks.push(tokio::spawn(async move {
                for i in 0..10_000u64 {
                    let d = w.debit(PaymentKind::Internal, to, 1 + (i % 7) as u128, payment_id(base + i));
                    let body = w.sign_debit(&domain, d);
                    let sent = http.client.post(format!("{}/v1/transfers", http.base)).json(&body).send().await;
                    let Ok(resp) = sent else { return };
                    if resp.status().as_u16() != 200 {
                        return;
                    }
                    let Ok(v) = resp.json::<Value>().await else { return };
                    w.accepted(&d);
                    acked.lock().expect("lock").push((body, v));
                }
            }));
        }
        eventually(30, "a stream of acknowledged transfers", || async {
            (acked.lock().expect("lock").len() >= 150).then_some(())
        })
        .await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        for t in tasks {
            t.await.expect("stream task");
        }
        let acked = acked.lock().expect("lock").clone();
        println!("acknowledged before the kill: {}", acked.len());

        let mut child = spawn_node(&config_path, &log);
        wait_ready(&http).await;
        for (body, first) in &acked {
            let (s, retry) = http.post("/v1/transfers", None, body).await;
            assert_eq!(s, 200, "acknowledged transfer lost: {body} -> {retry}");
            assert_eq!(retry["replayed"], json!(true), "acknowledged transfer re-applied: {retry}");
            assert_eq!(retry["result"], first["result"], "a different receipt after the crash");
        }
        let mut a = Wallet::new(&chain, 4).await;
        let mut b = Wallet::new(&chain, 5).await;
        a.login(&http, &domain).await;
        b.login(&http, &domain).await;
        let (va, vb) = (a.account(&http).await.1, b.account(&http).await.1);
        assert_eq!(amount(&va["balance"]) + amount(&vb["balance"]), 2_000_000, "books do not balance: {va} {vb}");
        let (s, rep) = http.get("/v1/operator/solvency", Some(OPERATOR)).await;
        assert_eq!(s, 200, "{rep}");
        assert_eq!(
            (&rep["contractBalanced"], &rep["ledgerMatchesChain"], &rep["liquid"]),
            (&json!(true), &json!(true), &json!(true)),
            "{rep}"
        );
        child.kill().expect("stop");
        child.wait().expect("reaped");
    });
}
