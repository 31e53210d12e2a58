//! The tower against a real chain (anvil) and the real contract: fed credits and an offer over
//! its HTTP API, it defends a stale hub close for the fee, settles, and the user is paid her
//! balance less exactly that fee; bad appointments are refused by name (both with the tower
//! run in this process). As separate `infhub-tower` processes: two towers race and one defence
//! lands; a reorg that drops the defence is answered by a second one; a tower killed with
//! SIGKILL mid-challenge and restarted from its log still defends in time.
//! Every wait is a readiness check on the chain or the API, with a deadline.

use alloy::primitives::U256;
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolCall;
use infhub_chain::anvil::{self, Anvil, Deployment};
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::events::empty_debit_arg;
use infhub_chain::sender::TxSender;
use infhub_core::messages::{Credit, Debit, Eip712Message, Signed, SignedCredit, SignedDebit, TowerFee};
use infhub_core::tower::TowerTerms;
use infhub_core::{Address, Amount, Domain, PrivateKey, B256};
use infhub_tower::TowerConfig;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const PERIOD: u64 = 20;
const UNIT: u128 = 1_000_000_000_000_000_000;

fn key(i: usize) -> PrivateKey {
    PrivateKey::from_bytes(anvil::dev_key(i).0).expect("dev key")
}

struct World {
    anvil: Anvil,
    provider: DynProvider,
    d: Deployment,
    domain: Domain,
    hub_key: PrivateKey,
    hub: TxSender,
    user_key: PrivateKey,
}

impl World {
    async fn new() -> World {
        let anvil = Anvil::spawn(&[]).expect("anvil");
        let provider = anvil.provider().expect("provider");
        let hub_key = key(0);
        let mut hub = anvil::sender(&provider, anvil::dev_key(0)).await.expect("hub sender");
        let d = anvil::deploy(&mut hub, hub_key.address(), U256::from(10_000 * UNIT), PERIOD, 2 * PERIOD)
            .await
            .expect("deploy");
        let user_key = key(1);
        let mut user = anvil::sender(&provider, anvil::dev_key(1)).await.expect("user sender");
        anvil::mint(&mut hub, d.token, user_key.address(), U256::from(1_000 * UNIT)).await.expect("mint");
        let approve = IErc20::approveCall { spender: d.hub, amount: U256::MAX }.abi_encode();
        anvil::call_ok(&mut hub, d.token, approve.clone()).await.expect("hub approve");
        anvil::call_ok(&mut user, d.token, approve).await.expect("user approve");
        anvil::call_ok(&mut hub, d.hub, IInfHub::depositReserveCall { amount: U256::from(1_000 * UNIT) }.abi_encode())
            .await
            .expect("reserve");
        let u = user_key.address();
        anvil::call_ok(&mut user, d.hub, IInfHub::openChannelCall { user: u }.abi_encode()).await.expect("open");
        anvil::call_ok(&mut user, d.hub, IInfHub::depositCall { user: u, amount: U256::from(100 * UNIT) }.abi_encode())
            .await
            .expect("deposit");
        let domain = Domain { chain_id: d.chain_id, verifying_contract: d.hub };
        World { anvil, provider, d, domain, hub_key, hub, user_key }
    }

    fn credit(&self, nonce: u64, total_inf: u128) -> SignedCredit {
        let c = Credit {
            user: self.user_key.address(),
            epoch: 1,
            nonce,
            cumulative_credit: Amount(total_inf * UNIT),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
        };
        SignedCredit::new(c, &self.domain, &self.hub_key)
    }

    fn offer(&self, tower: Address, max_fee_inf: u128, share_bps: u16) -> Signed<TowerFee> {
        let o = TowerFee {
            user: self.user_key.address(),
            epoch: 1,
            tower,
            max_fee: Amount(max_fee_inf * UNIT),
            gain_share_bps: share_bps,
            valid_until_block: 1_000_000,
        };
        Signed::new(o, &self.domain, &self.user_key)
    }

    /// The hub closes the user's channel holding no credit of hers (stale) and goes silent.
    async fn stale_hub_close(&mut self) -> u64 {
        let u = self.user_key.address();
        let call = IInfHub::startHubCloseCall { user: u, debit: empty_debit_arg(u), userSignature: Default::default() };
        anvil::call_ok(&mut self.hub, self.d.hub, call.abi_encode()).await.expect("hub close")
    }

    async fn channel(&self) -> IInfHub::Channel {
        let input = IInfHub::channelCall { user: self.user_key.address() }.abi_encode();
        let tx = alloy::rpc::types::TransactionRequest::default().to(self.d.hub).input(input.into());
        let raw = self.provider.call(tx).await.expect("channel()");
        IInfHub::channelCall::abi_decode_returns(&raw).expect("decode")
    }

    async fn balance(&self, who: Address) -> U256 {
        let input = IErc20::balanceOfCall { owner: who }.abi_encode();
        let tx = alloy::rpc::types::TransactionRequest::default().to(self.d.token).input(input.into());
        let raw = self.provider.call(tx).await.expect("balanceOf");
        IErc20::balanceOfCall::abi_decode_returns(&raw).expect("decode")
    }

    /// Mines a block every 100 ms until `done` holds, for at most 90 s.
    async fn mine_until(&self, what: &str, mut done: impl AsyncFnMut(&World) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done(self).await {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            anvil::mine(&self.provider, 1).await.expect("mine");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn credit_submissions(&self) -> usize {
        let filter = alloy::rpc::types::Filter::new()
            .address(self.d.hub)
            .event_signature(<IInfHub::CreditSubmitted as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
            .from_block(0);
        self.provider.get_logs(&filter).await.expect("logs").len()
    }
}

fn tower_config(w: &World, key_index: usize, dir: &Path) -> TowerConfig {
    TowerConfig {
        rpc_url: w.anvil.url.clone(),
        contract: w.d.hub,
        key: key(key_index),
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        terms: TowerTerms { grace_blocks: 2, ..TowerTerms::default() },
        poll_interval_ms: 100,
        max_body_bytes: 64 * 1024,
        sender: infhub_chain::sender::SenderConfig { bump_after_blocks: 2, ..Default::default() },
    }
}

struct RunningTower {
    url: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_tower(config: TowerConfig) -> RunningTower {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let (tx, bound) = tokio::sync::oneshot::channel::<SocketAddr>();
    let task = tokio::spawn(async move { infhub_tower::run(config, rx, Some(tx)).await.expect("tower runs") });
    let addr = bound.await.expect("tower bound");
    RunningTower { url: format!("http://{addr}"), stop, task }
}

/// The `infhub-tower` binary as its own process (killed with SIGKILL on drop).
struct TowerProcess {
    child: std::process::Child,
    url: String,
    args: Vec<String>,
}

impl TowerProcess {
    /// Starts the binary with test key `key_index` and its log in `dir`; waits for `/health`.
    async fn spawn(w: &World, key_index: usize, dir: &Path) -> TowerProcess {
        let key_file = dir.join("tower.key");
        std::fs::write(&key_file, anvil::dev_key(key_index).to_string()).expect("key file");
        let port = anvil::free_port().expect("port");
        let args: Vec<String> = [
            "--rpc-url",
            &w.anvil.url,
            "--contract",
            &w.d.hub.to_string(),
            "--key-file",
            key_file.to_str().expect("utf-8"),
            "--data-dir",
            dir.join("data").to_str().expect("utf-8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--grace-blocks",
            "2",
            "--poll-interval-ms",
            "100",
            "--bump-after-blocks",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child = Self::start(&args);
        let t = TowerProcess { child, url: format!("http://127.0.0.1:{port}"), args };
        t.ready().await;
        t
    }

    fn start(args: &[String]) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_infhub-tower"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("tower binary")
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{}/health", self.url)).await.is_err() {
            assert!(Instant::now() < deadline, "tower did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, then a new process on the same log and port.
    async fn kill_and_restart(&mut self, between: impl AsyncFnOnce()) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
        between().await;
        self.child = Self::start(&self.args);
        self.ready().await;
    }
}

impl Drop for TowerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{url}{path}")).json(&body).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn metric(url: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[tokio::test]
async fn a_stale_hub_close_is_defended_for_the_offered_fee_and_the_user_is_paid_the_rest() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let t = start_tower(tower_config(&w, 2, dir.path())).await;
    let tower = key(2).address();
    // The user offers a tenth of what the tower saves her, at most 3 INF.
    let (s, a) = post(&t.url, "/v1/offers", json!({"offer": w.offer(tower, 3, 1_000)})).await;
    assert_eq!(s, 200, "offer accepted: {a}");
    for (nonce, total) in [(1, 30), (2, 50)] {
        let (s, a) = post(&t.url, "/v1/appointments", json!({"credit": w.credit(nonce, total)})).await;
        assert_eq!(s, 200, "credit accepted: {a}");
        assert_eq!(a["receipt"]["message"]["nonce"], json!(nonce));
    }
    // The receipt is the tower's signature over what it holds.
    let (_, older) = post(&t.url, "/v1/appointments", json!({"credit": w.credit(1, 30)})).await;
    assert_eq!(older["error"]["code"], "proof_must_supersede", "{older}");
    let held: infhub_core::tower::SignedTowerReceipt = serde_json::from_value(older["held"].clone()).expect("receipt");
    held.verify(&w.domain, tower).expect("tower-signed receipt");
    assert_eq!(held.message.cumulative_credit, Amount(50 * UNIT));

    let user_before = w.balance(w.user_key.address()).await;
    w.stale_hub_close().await;
    w.mine_until("the tower's defence is on record", async |w| w.channel().await.credit.cumulative == 50 * UNIT).await;
    let fees = w.channel().await;
    assert_eq!(fees.status, 2, "still closing");
    w.mine_until("the tower settles the channel", async |w| w.channel().await.status == 3).await;
    let paid = w.balance(w.user_key.address()).await - user_before;
    // Claim 150 INF (100 deposited + 50 credited); a tenth of the 50 saved is 5, capped at 3.
    assert_eq!(paid, U256::from(147 * UNIT), "the user gets her balance less the fee");
    assert_eq!(w.balance(tower).await, U256::from(3 * UNIT), "the tower earns exactly the fee");
    w.mine_until("the tower counts its fee", async |_| metric(&t.url, "infhub_tower_fees_earned_total").await > 0)
        .await;
    assert_eq!(metric(&t.url, "infhub_tower_fees_earned_total").await, u64::try_from(3 * UNIT).expect("fits"));
    assert!(metric(&t.url, "infhub_tower_defences_mined_total").await >= 1);
    assert_eq!(w.credit_submissions().await, 1, "one defence, no wasted submissions");
    let _ = t.stop.send(true);
    t.task.await.expect("tower stops");
}

/// For the hub operator: the user's newest debit, handed to the tower, answers her exit that
/// holds none (the hub's node being down), and the settlement pays her balance, not more.
#[tokio::test]
async fn a_users_exit_without_her_debit_is_answered_with_it_for_the_hub() {
    let w = World::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let t = start_tower(tower_config(&w, 2, dir.path())).await;
    let u = w.user_key.address();
    let d = Debit {
        user: u,
        epoch: 1,
        nonce: 1,
        cumulative_debit: Amount(40 * UNIT),
        locked_amount: Amount::ZERO,
        locks_root: B256::ZERO,
        kind: 0,
        recipient: Address::repeat_byte(0xB0),
        amount: Amount(40 * UNIT),
        payment_id: B256::repeat_byte(1),
    };
    let forged = SignedDebit::new(d, &w.domain, &w.hub_key);
    let (s, a) = post(&t.url, "/v1/debits", json!({"debit": forged})).await;
    assert_eq!((s, a["error"]["code"].as_str()), (422, Some("wrong_signer")), "only the user signs her debits: {a}");
    let (s, a) = post(&t.url, "/v1/debits", json!({"debit": SignedDebit::new(d, &w.domain, &w.user_key)})).await;
    assert_eq!(s, 200, "{a}");
    // She exits alone with no debit on record, as from an old backup.
    let mut user = anvil::sender(&w.provider, anvil::dev_key(1)).await.expect("user sender");
    let none =
        IInfHub::Credit { user: u, epoch: 1, nonce: 0, cumulativeCredit: 0, lockedAmount: 0, locksRoot: B256::ZERO };
    let exit = IInfHub::startExitCall { credit: none, hubSignature: Default::default() };
    anvil::call_ok(&mut user, w.d.hub, exit.abi_encode()).await.expect("exit");
    let before = w.balance(u).await;
    w.mine_until("the tower answers with her debit", async |w| w.channel().await.debit.cumulative == 40 * UNIT).await;
    w.mine_until("the channel settles", async |w| w.channel().await.status == 3).await;
    assert_eq!(w.balance(u).await - before, U256::from(60 * UNIT), "100 deposited less 40 paid");
    let _ = t.stop.send(true);
}

#[tokio::test]
async fn bad_appointments_are_refused_by_name_and_never_stored() {
    let w = World::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let t = start_tower(tower_config(&w, 2, dir.path())).await;
    let tower = key(2).address();
    let mut forged = w.credit(1, 10);
    forged.signature = w.user_key.sign(forged.message.digest(&w.domain));
    let cases = [
        ("/v1/appointments", json!({"credit": forged}), 422, "wrong_signer"),
        ("/v1/appointments", json!({"credit": {"message": 1}}), 400, "malformed_request"),
        ("/v1/offers", json!({"offer": w.offer(key(3).address(), 1, 100)}), 422, "only_tower"),
        ("/v1/offers", json!({"offer": w.offer(tower, 1, 10_001)}), 422, "tower_fee_share_too_large"),
    ];
    for (path, body, status, code) in cases {
        let (s, a) = post(&t.url, path, body).await;
        assert_eq!((s, a["error"]["code"].as_str().unwrap_or_default()), (status, code), "{path}: {a}");
    }
    // A credit for a user without a channel, and one for an epoch the channel is not in.
    let mut stranger = w.credit(1, 10).message;
    stranger.user = Address::repeat_byte(0x55);
    let stranger = SignedCredit::new(stranger, &w.domain, &w.hub_key);
    let (s, a) = post(&t.url, "/v1/appointments", json!({"credit": stranger})).await;
    assert_eq!((s, a["error"]["code"].as_str()), (404, Some("unknown_account")), "{a}");
    let mut later = w.credit(1, 10).message;
    later.epoch = 2;
    let later = SignedCredit::new(later, &w.domain, &w.hub_key);
    let (s, a) = post(&t.url, "/v1/appointments", json!({"credit": later})).await;
    assert_eq!((s, a["error"]["code"].as_str()), (422, Some("epoch_mismatch")), "{a}");
    let r = reqwest::get(format!("{}/v1/appointments/{}", t.url, w.user_key.address())).await.expect("get");
    assert_eq!(r.status().as_u16(), 404, "nothing refused was stored");
    assert_eq!(metric(&t.url, "infhub_tower_watched_users").await, 0);
    assert_eq!(metric(&t.url, "infhub_tower_appointments_refused_total").await, 5);
    let _ = t.stop.send(true);
}

#[tokio::test]
async fn two_towers_race_and_exactly_one_defence_lands() {
    let mut w = World::new().await;
    let (d1, d2) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let t1 = TowerProcess::spawn(&w, 2, d1.path()).await;
    let t2 = TowerProcess::spawn(&w, 3, d2.path()).await;
    for t in [&t1, &t2] {
        let (s, a) = post(&t.url, "/v1/appointments", json!({"credit": w.credit(1, 40)})).await;
        assert_eq!(s, 200, "{a}");
    }
    w.stale_hub_close().await;
    w.mine_until("a defence is on record", async |w| w.channel().await.credit.cumulative == 40 * UNIT).await;
    // Give both towers several more rounds to (wrongly) submit again.
    let settle_block = w.channel().await.settleBlock;
    w.mine_until("the channel settles", async |w| w.channel().await.status == 3).await;
    assert!(w.provider.get_block_number().await.expect("head") >= settle_block);
    assert_eq!(w.credit_submissions().await, 1, "exactly one defence landed; the loser spent no gas on a second");
    let sent = metric(&t1.url, "infhub_tower_defences_sent_total").await
        + metric(&t2.url, "infhub_tower_defences_sent_total").await;
    // Both may have estimated before either was mined (then the loser's reverts on chain, as
    // the contract refuses a credit that does not supersede); never more than one each.
    assert!((1..=2).contains(&sent), "defences sent: {sent}");
}

#[tokio::test]
async fn a_defence_dropped_by_a_reorg_is_sent_again() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TowerProcess::spawn(&w, 2, dir.path()).await;
    let (s, _) = post(&t.url, "/v1/appointments", json!({"credit": w.credit(1, 60)})).await;
    assert_eq!(s, 200);
    w.stale_hub_close().await;
    w.mine_until("the first defence", async |w| w.channel().await.credit.cumulative == 60 * UNIT).await;
    // Once the tower has seen its defence mined, it has nothing in flight: what follows is
    // decided from the record alone.
    w.mine_until("the tower sees its defence mined", async |_| {
        metric(&t.url, "infhub_tower_defences_mined_total").await >= 1
    })
    .await;
    // Replace the newest blocks with empty ones: the defence vanishes, the close stays.
    let head = w.provider.get_block_number().await.expect("head");
    let close_block = w.channel().await.settleBlock - PERIOD;
    let depth = head - close_block;
    assert!(depth >= 1, "the defence came after the close");
    anvil::reorg(&w.provider, depth).await.expect("reorg");
    assert_eq!(w.channel().await.credit.cumulative, 0, "the reorg dropped the defence");
    assert_eq!(w.channel().await.status, 2, "and kept the close");
    w.mine_until("the defence sent again", async |w| w.channel().await.credit.cumulative == 60 * UNIT).await;
    assert!(metric(&t.url, "infhub_tower_defences_sent_total").await >= 2);
}

#[tokio::test]
async fn a_tower_killed_mid_challenge_restarts_from_its_log_and_defends_in_time() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = TowerProcess::spawn(&w, 2, dir.path()).await;
    let (s, a) = post(&t.url, "/v1/appointments", json!({"credit": w.credit(1, 25)})).await;
    assert_eq!(s, 200, "{a}");
    // Acknowledged means durable: SIGKILL right after the answer; the close begins and half
    // the period passes while the tower is down; a new process starts on the same log.
    t.kill_and_restart(async || {
        w.stale_hub_close().await;
        anvil::mine(&w.provider, PERIOD / 2).await.expect("mine half the period while the tower is down");
    })
    .await;
    w.mine_until("the restarted tower defends", async |w| w.channel().await.credit.cumulative == 25 * UNIT).await;
    let ch = w.channel().await;
    assert_eq!(ch.status, 2);
    assert!(w.provider.get_block_number().await.expect("head") < ch.settleBlock, "in time");
}
