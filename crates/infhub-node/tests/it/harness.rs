//! Test harness: anvil with the contracts deployed, the node started in process (or as a
//! process), HTTP helpers, and wallets that sign with anvil's development keys.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolCall;
use infhub_chain::anvil::{self, Anvil, Deployment};
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::sender::TxSender;
use infhub_core::messages::{Login, PaymentKind, Signed};
use infhub_core::{Amount, Debit, Domain, PrivateKey, Registration, Withdrawal};
use infhub_node::config::Config;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub(crate) const OPERATOR: &str = "dev-operator-token-not-secret";

pub(crate) struct Chain {
    pub anvil: Anvil,
    pub d: Deployment,
    pub provider: DynProvider,
}

impl Chain {
    pub(crate) async fn start() -> Chain {
        let anvil = Anvil::spawn(&[]).expect("anvil");
        let d = infhub_node::dev::deploy(&anvil).await.expect("deploy");
        let provider = anvil.provider().expect("provider");
        Chain { anvil, d, provider }
    }

    pub(crate) fn domain(&self) -> Domain {
        Domain { chain_id: self.d.chain_id, verifying_contract: self.d.hub }
    }

    /// The hub's address (anvil key 0).
    pub(crate) fn anvil_hub(&self) -> Address {
        PrivateKey::from_bytes(anvil::dev_key(0).0).expect("key").address()
    }

    pub(crate) async fn mine(&self, n: u64) {
        anvil::mine(&self.provider, n).await.expect("mine");
    }

    pub(crate) async fn head(&self) -> u64 {
        self.provider.get_block_number().await.expect("head")
    }

    pub(crate) async fn token_balance(&self, who: Address) -> U256 {
        let req = alloy::rpc::types::TransactionRequest::default()
            .to(self.d.token)
            .input(IErc20::balanceOfCall { owner: who }.abi_encode().into());
        let raw = self.provider.call(req).await.expect("balanceOf");
        IErc20::balanceOfCall::abi_decode_returns(&raw).expect("decode")
    }

    /// A view call `call` to `to` at the head.
    pub(crate) async fn view<C: SolCall>(&self, to: Address, call: C) -> C::Return {
        let req = alloy::rpc::types::TransactionRequest::default().to(to).input(call.abi_encode().into());
        let raw = self.provider.call(req).await.expect("view call");
        C::abi_decode_returns(&raw).expect("decode the view's answer")
    }

    pub(crate) fn config(&self, data_dir: PathBuf) -> Config {
        let mut c = infhub_node::dev::config(&self.anvil, &self.d, "127.0.0.1:0".into(), data_dir);
        c.chain.poll_interval_ms = 50;
        c.node.payout_interval_ms = 100;
        c.chain.bump_after_blocks = 1_000;
        c
    }
}

/// A node running in this process.
pub(crate) struct InProcessNode {
    pub url: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), infhub_node::NodeError>>,
}

impl InProcessNode {
    pub(crate) async fn start(config: Config) -> InProcessNode {
        let (stop, rx) = watch::channel(false);
        let (tx, bound) = tokio::sync::oneshot::channel::<SocketAddr>();
        let task = tokio::spawn(infhub_node::run(config, rx, Some(tx)));
        let addr = match bound.await {
            Ok(a) => a,
            Err(_) => panic!("node failed to start: {:?}", task.await),
        };
        InProcessNode { url: format!("http://{addr}"), stop, task }
    }

    /// Graceful shutdown.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("join").expect("node ran cleanly");
    }
}

pub(crate) struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

impl Http {
    pub(crate) fn new(base: &str) -> Http {
        Http { base: base.to_string(), client: reqwest::Client::new() }
    }

    /// A GET; its answer is checked against the endpoint's schema in `/openapi.json`.
    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let (status, body) = self.send(self.client.get(format!("{}{path}", self.base)), token).await;
        crate::schema_check::check_answer("get", path, status, &body);
        (status, body)
    }

    /// A POST; its answer is checked against the endpoint's schema in `/openapi.json`.
    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let (status, answer) = self.send(self.client.post(format!("{}{path}", self.base)).json(body), token).await;
        crate::schema_check::check_answer("post", path, status, &answer);
        (status, answer)
    }

    async fn send(&self, mut r: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// Mines a block every `every_ms`, as a live chain would, until the handle is aborted.
pub(crate) fn mine_continuously(chain: &Chain, every_ms: u64) -> tokio::task::JoinHandle<()> {
    let provider = chain.provider.clone();
    tokio::spawn(async move {
        loop {
            let _ = anvil::mine(&provider, 1).await;
            tokio::time::sleep(Duration::from_millis(every_ms)).await;
        }
    })
}

/// A two-worker runtime for one test.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

pub(crate) fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// Waits until `f` returns Some, or panics after `secs`.
pub(crate) async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A user: key, on-chain sender, and the running totals of its own debits.
pub(crate) struct Wallet {
    pub key: PrivateKey,
    pub chain: TxSender,
    pub epoch: u64,
    pub debit_nonce: u64,
    pub cumulative_debit: u128,
    pub token: Option<String>,
}

impl Wallet {
    pub(crate) async fn new(chain: &Chain, index: usize) -> Wallet {
        let key = PrivateKey::from_bytes(anvil::dev_key(index).0).expect("key");
        let sender = anvil::sender(&chain.provider, anvil::dev_key(index)).await.expect("sender");
        Wallet { key, chain: sender, epoch: 1, debit_nonce: 0, cumulative_debit: 0, token: None }
    }

    pub(crate) fn address(&self) -> Address {
        self.key.address()
    }

    pub(crate) fn registration(&self, domain: &Domain, valid_until_block: u64) -> Value {
        let r = Registration { user: self.address(), valid_until_block };
        serde_json::to_value(Signed::new(r, domain, &self.key)).expect("json")
    }

    pub(crate) async fn login(&mut self, http: &Http, domain: &Domain) {
        let (s, c) = http.post("/v1/auth/challenge", None, &json!({"user": self.address()})).await;
        assert_eq!(s, 200, "{c}");
        let challenge: B256 = serde_json::from_value(c["challenge"].clone()).expect("challenge");
        let signed = Signed::new(Login { user: self.address(), challenge }, domain, &self.key);
        let body = json!({"user": self.address(), "challenge": challenge, "signature": signed.signature});
        let (s, v) = http.post("/v1/auth/session", None, &body).await;
        assert_eq!(s, 200, "{v}");
        self.token = Some(v["token"].as_str().expect("token").to_string());
    }

    /// The next debit, without committing to it locally.
    pub(crate) fn debit(&self, kind: PaymentKind, to: Address, amount: u128, id: B256) -> Debit {
        Debit {
            user: self.address(),
            epoch: self.epoch,
            nonce: self.debit_nonce + 1,
            cumulative_debit: Amount(self.cumulative_debit + amount),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
            kind: kind as u8,
            recipient: to,
            amount: Amount(amount),
            payment_id: id,
        }
    }

    pub(crate) fn sign_debit(&self, domain: &Domain, d: Debit) -> Value {
        serde_json::to_value(Signed::new(d, domain, &self.key)).expect("json")
    }

    /// Records that the hub accepted `d`.
    pub(crate) fn accepted(&mut self, d: &Debit) {
        self.debit_nonce = d.nonce;
        self.cumulative_debit = d.cumulative_debit.0;
    }

    /// Pays and returns the HTTP answer; updates local totals when the debit is spent: applied,
    /// or refused and refunded (spec §5.4).
    pub(crate) async fn pay(
        &mut self,
        http: &Http,
        domain: &Domain,
        kind: PaymentKind,
        to: Address,
        amount: u128,
        id: u64,
    ) -> (u16, Value) {
        let d = self.debit(kind, to, amount, payment_id(id));
        let r = http.post("/v1/transfers", None, &self.sign_debit(domain, d)).await;
        if r.0 == 200 || r.1["error"]["refund"].is_object() {
            self.accepted(&d);
        }
        r
    }

    pub(crate) fn withdrawal(&self, domain: &Domain, cumulative: u128, expiry_block: u64) -> (Withdrawal, Value) {
        let w = Withdrawal {
            user: self.address(),
            epoch: self.epoch,
            cumulative_withdrawn: Amount(cumulative),
            expiry_block,
        };
        let s = Signed::new(w, domain, &self.key);
        (w, json!({"withdrawal": w, "signature": s.signature}))
    }

    pub(crate) async fn approve_and_deposit(&mut self, chain: &Chain, amount: u64) -> u64 {
        let (token, hub, me) = (chain.d.token, chain.d.hub, self.address());
        anvil::call_ok(&mut self.chain, token, IErc20::approveCall { spender: hub, amount: U256::MAX }.abi_encode())
            .await
            .expect("approve");
        anvil::call_ok(&mut self.chain, hub, IInfHub::depositCall { user: me, amount: U256::from(amount) }.abi_encode())
            .await
            .expect("deposit")
    }

    pub(crate) async fn account(&self, http: &Http) -> (u16, Value) {
        http.get(&format!("/v1/accounts/{}", self.address()), self.token.as_deref()).await
    }
}

pub(crate) fn payment_id(n: u64) -> B256 {
    B256::from(U256::from(n))
}

pub(crate) fn amount(v: &Value) -> u128 {
    v.as_str().unwrap_or_else(|| panic!("amount string expected, got {v}")).parse().expect("decimal amount")
}

/// Registers `w` and waits until its channel is open in the ledger.
pub(crate) async fn register(chain: &Chain, http: &Http, w: &mut Wallet) {
    let domain = chain.domain();
    let head = chain.head().await;
    let (s, v) = http.post("/v1/registrations", None, &w.registration(&domain, head + 100)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "opening", "{v}");
    chain.mine(2).await;
    w.login(http, &domain).await;
    eventually(15, "channel open in the ledger", || async {
        let (s, v) = w.account(http).await;
        (s == 200 && v["status"]["state"] == "open").then_some(())
    })
    .await;
}

/// Mines until the node's confirmed block reaches the head, so every event is applied.
pub(crate) async fn settle_chain(chain: &Chain, http: &Http) {
    chain.mine(2).await;
    let head = chain.head().await;
    eventually(15, "node caught up", || async {
        let (_, info) = http.get("/v1/info", None).await;
        (info["confirmedBlock"].as_u64().unwrap_or(0) + 1 >= head).then_some(())
    })
    .await;
}

/// `step` (a route step's JSON: `nextHub`, `tweak`, `amount`, `expiryBlock`) sealed to the hub
/// whose key is `hub_key` for the lock `lock_id` (spec §5.23d), as a payer's wallet seals it.
pub(crate) fn sealed_step(step: &Value, hub_key: B256, lock_id: B256) -> Value {
    use infhub_core::point_lock::Scalar;
    let step: infhub_core::sealed_step::RouteStep = serde_json::from_value(step.clone()).expect("a route step");
    let hub = Scalar::from_bytes(hub_key).expect("a key is a scalar");
    let ephemeral = Scalar::from_bytes(alloy::primitives::keccak256(lock_id)).expect("below n");
    json!(infhub_core::sealed_step::seal_step(&step, &hub.point(), &ephemeral, lock_id).expect("seal"))
}
