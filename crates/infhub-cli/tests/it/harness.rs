//! The scenarios' harness: chain, hub process, wallet runner, lossy proxy.

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolCall;
use infhub_chain::anvil::{self, Anvil, Deployment};
use infhub_chain::bindings::IErc20;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const OPERATOR: &str = "dev-operator-token-not-secret";
pub(crate) const INF: u128 = 1_000_000_000_000_000_000;

/// A test user: anvil's development key `i` (funded with test tokens at deployment).
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub key: String,
    pub address: Address,
    pub dir: PathBuf,
}

/// The scenarios' challenge period (their chain makes a block every 0.2 s).
pub(crate) const CHALLENGE_PERIOD_BLOCKS: u64 = 40;

/// A chain, a hub node process and a scratch directory.
pub(crate) struct Env {
    pub anvil: Anvil,
    pub d: Deployment,
    pub provider: DynProvider,
    pub tmp: tempfile::TempDir,
    pub hub_url: String,
    /// The hub node's configuration, as written for it.
    pub config: infhub_node::config::Config,
    config_path: PathBuf,
    node: Option<Child>,
}

fn infhub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_infhub"))
}

impl Env {
    pub(crate) async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    /// Like [`Env::start`], with the hub's configuration adjusted by `adjust` first.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut infhub_node::config::Config)) -> Env {
        let anvil = Anvil::spawn(&["--block-time", "0.2"]).expect("anvil");
        // 0.2-second blocks: 40 blocks give the hub's duties 8 s to land a dispute or a credit,
        // enough on a loaded 2-core machine running the scenarios in parallel.
        let d = infhub_node::dev::deploy_with_periods(
            &anvil,
            infhub_node::dev::dev_reserve(),
            CHALLENGE_PERIOD_BLOCKS,
            2 * CHALLENGE_PERIOD_BLOCKS,
        )
        .await
        .expect("deploy");
        let provider = anvil.provider().expect("provider");
        let tmp = tempfile::tempdir().expect("tmp");
        let port = anvil::free_port().expect("port");
        let listen = format!("127.0.0.1:{port}");
        let mut c = infhub_node::dev::config(&anvil, &d, listen.clone(), tmp.path().join("hub-data"));
        c.chain.poll_interval_ms = 100;
        c.node.payout_interval_ms = 200;
        c.node.log = "warn".into();
        adjust(&mut c);
        let config_path = tmp.path().join("hub.toml");
        std::fs::write(&config_path, toml::to_string(&c).expect("toml")).expect("write config");
        let hub_url = format!("http://{listen}");
        let mut env = Env { anvil, d, provider, tmp, hub_url, config: c, config_path, node: None };
        env.start_hub().await;
        env
    }

    /// Starts (or restarts) the hub node process on the same data directory.
    pub(crate) async fn start_hub(&mut self) {
        assert!(self.node.is_none(), "hub already running");
        self.node = Some(spawn_node(&self.config_path));
        wait_serving(&self.hub_url, 30).await;
    }

    /// Starts another hub node process with `config` (written to `<tmp>/<name>.toml`), without
    /// waiting for it to serve.
    pub(crate) fn spawn_other_node(&self, config: &infhub_node::config::Config, name: &str) -> Child {
        let path = self.tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, toml::to_string(config).expect("toml")).expect("write config");
        spawn_node(&path)
    }

    /// Waits up to `secs` for the hub node process to exit by itself; its status.
    pub(crate) async fn wait_hub_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let child = self.node.as_mut().expect("hub running");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.node = None;
                return status;
            }
            assert!(Instant::now() < deadline, "the hub process did not exit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The hub node process's id, while it runs.
    pub(crate) fn hub_pid(&self) -> Option<u32> {
        self.node.as_ref().map(|c| c.id())
    }

    /// Alice and bob registered; alice deposits 50, bob (bought 20) pays her 10, alice backs up
    /// her wallet, then pays bob 15: the backup believes 60, the truth is 45. The backup's
    /// directory and the last payment's answer.
    pub(crate) async fn stale_backup_scenario(&self, alice: &User, bob: &User) -> (PathBuf, Value) {
        self.register(alice).await;
        self.register(bob).await;
        self.ok(alice, &["deposit", "50"]);
        self.purchase(bob.address, 20 * INF, 1).await;
        self.ok(bob, &["pay", &alice.address.to_string(), "10"]);
        self.ok(alice, &["sync"]);
        let backup = self.tmp.path().join("alice-backup");
        copy_dir(&alice.dir, &backup);
        let v = self.ok(alice, &["pay", &bob.address.to_string(), "15"]);
        (backup, v)
    }

    /// Whether the hub node process has exited (by itself).
    pub(crate) fn hub_exited(&mut self) -> bool {
        self.node.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Kills the hub node process (SIGKILL: no goodbye).
    pub(crate) fn kill_hub(&mut self) {
        if let Some(mut c) = self.node.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn user(&self, i: usize, name: &str) -> User {
        let key = anvil::DEV_KEYS[i].to_string();
        let address = infhub_core::PrivateKey::from_bytes(anvil::dev_key(i).0).expect("key").address();
        User { key, address, dir: self.tmp.path().join(name) }
    }

    /// Runs `infhub wallet --json <args>` as `u`; returns (success, stdout JSON).
    pub(crate) fn wallet(&self, u: &User, args: &[&str]) -> (bool, Value) {
        let out =
            self.wallet_command(u, args).stdout(Stdio::piped()).stderr(Stdio::piped()).output().expect("run wallet");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| json!({"raw": stdout}));
        if !out.status.success() {
            eprintln!("wallet {args:?} failed: {v}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        (out.status.success(), v)
    }

    /// Like [`Env::wallet`] but the command must succeed.
    pub(crate) fn ok(&self, u: &User, args: &[&str]) -> Value {
        let (ok, v) = self.wallet(u, args);
        assert!(ok, "wallet {args:?} failed: {v}");
        v
    }

    pub(crate) fn wallet_command(&self, u: &User, args: &[&str]) -> Command {
        let mut c = infhub();
        c.arg("wallet")
            .arg("--json")
            .args(args)
            .env("INFHUB_WALLET_KEY", &u.key)
            .env("INFHUB_WALLET_DIR", &u.dir)
            .env_remove("INFHUB_HUB_URL")
            .env_remove("INFHUB_RPC_URL");
        c
    }

    /// Registers `u` with the wallet CLI, then waits until the hub's ledger follows the channel
    /// too (the wallet returns once it sees the channel open on chain; the hub's own chain
    /// follower may be a poll behind, and a payment to her before then is `unknown_account`).
    pub(crate) async fn register(&self, u: &User) {
        self.register_at(u, &self.hub_url).await;
    }

    /// Like [`Env::register`], with the wallet talking to the hub at `hub_url` (a proxy).
    pub(crate) async fn register_at(&self, u: &User, hub_url: &str) {
        self.ok(u, &["register", "--hub-url", hub_url, "--rpc-url", &self.anvil.url]);
        let client = reqwest::Client::new();
        let url = format!("{}/v1/accounts/{}", self.hub_url, u.address);
        self.until(60, "the hub to follow the new channel", || async {
            client.get(&url).bearer_auth(OPERATOR).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    pub(crate) async fn token_balance(&self, who: Address) -> u128 {
        let req = alloy::rpc::types::TransactionRequest::default()
            .to(self.d.token)
            .input(IErc20::balanceOfCall { owner: who }.abi_encode().into());
        let raw = self.provider.call(req).await.expect("balanceOf");
        let v: U256 = IErc20::balanceOfCall::abi_decode_returns(&raw).expect("decode");
        u128::try_from(v).expect("fits")
    }

    /// Operator: credits `user` with `amount` base units bought from the platform.
    pub(crate) async fn purchase(&self, user: Address, amount: u128, id: u8) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/operator/purchases", self.hub_url))
            .bearer_auth(OPERATOR)
            .json(&json!({"user": user, "amount": amount.to_string(), "purchaseId": format!("0x{:064x}", id)}))
            .send()
            .await
            .expect("purchase");
        assert!(r.status().is_success(), "purchase: {}", r.text().await.unwrap_or_default());
    }

    /// Runs `infhub operator …` against this hub with the operator's token; returns whether it
    /// succeeded and what it printed (stdout, then stderr).
    pub(crate) fn operator(&self, args: &[&str]) -> (bool, String) {
        let out = infhub()
            .args(["operator", "--hub-url", &self.hub_url])
            .args(args)
            .env("INFHUB_OPERATOR_TOKEN", OPERATOR)
            .output()
            .expect("infhub operator");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// The hub's key (not the node) closes `user`'s channel with no debit on record: what a hub
    /// that closes and goes silent does.
    pub(crate) async fn stale_hub_close(&self, user: Address) {
        use infhub_chain::bindings::IInfHub;
        let mut hub_key = anvil::sender(&self.provider, anvil::dev_key(0)).await.expect("hub key");
        let close = IInfHub::startHubCloseCall {
            user,
            debit: infhub_chain::events::empty_debit_arg(user),
            userSignature: Default::default(),
        };
        anvil::call_ok(&mut hub_key, self.d.hub, close.abi_encode()).await.expect("the hub's close");
    }

    /// Operator: starts the hub's close of `user`'s channel.
    pub(crate) async fn hub_close(&self, user: Address) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/operator/closes", self.hub_url))
            .bearer_auth(OPERATOR)
            .json(&json!({"user": user}))
            .send()
            .await
            .expect("close");
        assert!(r.status().is_success(), "close: {}", r.text().await.unwrap_or_default());
    }

    pub(crate) async fn solvency(&self) -> Value {
        reqwest::Client::new()
            .get(format!("{}/v1/operator/solvency", self.hub_url))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("solvency")
            .json()
            .await
            .expect("json")
    }

    /// Waits until `f` gives a value, up to `secs`; returns it.
    pub(crate) async fn until_value<T, F: std::future::Future<Output = Option<T>>>(
        &self,
        secs: u64,
        what: &str,
        f: impl Fn() -> F,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `f` holds, up to `secs`.
    pub(crate) async fn until<F: std::future::Future<Output = bool>>(&self, secs: u64, what: &str, f: impl Fn() -> F) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Starts `infhub run` with the configuration at `config_path`; its log goes to the same path
/// with `.log` added.
fn spawn_node(config_path: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config_path.with_extension("log"))
        .expect("node log file");
    infhub()
        .args(["run", "--config"])
        .arg(config_path)
        .stdout(log)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn infhub run")
}

/// A process killed when dropped, however the test ends (a failed test leaves none behind
/// holding its output).
pub(crate) struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `secs` until the hub at `url` answers `/v1/info`.
pub(crate) async fn wait_serving(url: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{url}/v1/info")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the hub at {url} did not start serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_hub();
        if std::thread::panicking() {
            // A failed scenario shows the end of each hub process's log.
            for e in std::fs::read_dir(self.tmp.path()).into_iter().flatten().flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    eprintln!("--- {} (last {} lines)", e.path().display(), tail.len());
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

/// A base-unit amount from a JSON string field.
pub(crate) fn amount(v: &Value) -> u128 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an amount: {v}"))
}

/// Copies a wallet directory (a backup).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// A TCP proxy in front of the hub that can lose the hub's answers to one kind of request: it
/// forwards the request (the hub applies it) and closes the client's connection instead of
/// answering.
pub(crate) struct LossyProxy {
    pub url: String,
    lose: std::sync::Arc<std::sync::Mutex<Option<&'static str>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    pub(crate) async fn start(hub_url: &str) -> LossyProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = hub_url.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let lose_answers: Arc<std::sync::Mutex<Option<&'static str>>> = Arc::default();
        let flag = lose_answers.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(hub) = tokio::net::TcpStream::connect(&target).await else { continue };
                let flag = flag.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut hr, mut hw) = hub.into_split();
                    let lose = Arc::new(AtomicBool::new(false));
                    let lose_up = lose.clone();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 << 10];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            let request_line = *flag.lock().expect("flag");
                            if let Some(line) = request_line {
                                if buf[..n].windows(line.len()).any(|w| w == line.as_bytes()) {
                                    lose_up.store(true, Ordering::SeqCst);
                                }
                            }
                            if hw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 16 << 10];
                    while let Ok(n) = hr.read(&mut buf).await {
                        if n == 0 || lose.load(Ordering::SeqCst) {
                            break;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        LossyProxy { url, lose: lose_answers, task }
    }

    /// Loses the answers to requests starting with `request_line` (e.g. `POST /v1/transfers`),
    /// or none.
    pub(crate) fn lose_answers_to(&self, request_line: Option<&'static str>) {
        *self.lose.lock().expect("flag") = request_line;
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The operator's view of `user`'s account at the hub at `url`: the status and the body.
pub(crate) async fn account_at(url: &str, user: Address) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/accounts/{user}"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("account");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}
