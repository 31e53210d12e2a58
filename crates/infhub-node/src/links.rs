//! Hub-to-hub links (spec §5.23): this hub as an ordinary user of other hubs' contracts.
//!
//! A link is a channel like any user's, so its end here is the wallet's own code
//! ([`infhub_wallet::Wallet`]) run with the link key, a key derived from the hub key (recovered
//! with it, but its own account on chain, so its transactions never race the hub key's nonces).
//! Each link has one task that opens it (registration at the peer, resumed after a restart),
//! then every `node.link_watch_interval_ms` syncs it with the peer and runs the wallet's
//! defence round. Operator requests (deposit, payment) take the same wallet under its mutex,
//! so a link is never driven by two parties at once. What the operator sees of a link is a
//! summary cached after each step, so listing links never waits for a slow peer.

use alloy::primitives::{keccak256, Address, FixedBytes, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IErc20;
use infhub_core::messages::PaymentKind;
use infhub_core::point_lock::{Point, Scalar};
use infhub_core::{Amount, PrivateKey};
use infhub_wallet::hub::HubClient;
use infhub_wallet::store::WalletDir;
use infhub_wallet::{Wallet, WalletError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Most links one hub keeps.
pub const MAX_LINKS: usize = 64;
/// The longest wait between two attempts to open a link whose opening failed.
pub const MAX_OPEN_RETRY: Duration = Duration::from_secs(60);
/// What the link key's derivation hashes before the hub key.
const LINK_KEY_DOMAIN: &[u8] = b"infhub link key v1";
/// The file naming a link's peer, written before its registration starts.
const LINK_FILE: &str = "link.json";

/// Why a link request was refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No link to this contract.
    #[error("no link to the hub contract {0}")]
    UnknownLink(Address),
    /// The peer is this hub.
    #[error("{0} is this hub's own contract")]
    LinkToOwnHub(Address),
    /// The link is opening, closing or settled.
    #[error("the link to {0} is {1}, not open")]
    LinkNotOpen(Address, String),
    /// A job (a deposit) is running on the link.
    #[error("the link to {0} is busy: {1}")]
    LinkBusy(Address, String),
    /// [`MAX_LINKS`] links exist.
    #[error("this hub has {MAX_LINKS} links, the most it keeps")]
    TooManyLinks,
    /// The peer's API did not answer, or not as a hub.
    #[error("the peer hub at {url}: {reason}")]
    PeerHubUnreachable {
        /// Its URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request is not well formed.
    #[error("{0}")]
    Malformed(String),
    /// No link leads to the invoice's payee hub.
    #[error("no link to the payee's hub at {0}")]
    UnknownNextHub(String),
    /// The link to the payee's hub holds less than the payment.
    #[error("the link to {peer} holds {have}, less than {want}")]
    InsufficientCapacity {
        /// The peer.
        peer: Address,
        /// Its balance.
        have: Amount,
        /// The payment.
        want: Amount,
    },
    /// The lock pays less than the invoice.
    #[error("the lock of {lock} is less than the invoice's {invoice}")]
    FeeInsufficient {
        /// The lock's amount.
        lock: Amount,
        /// The invoice's.
        invoice: Amount,
    },
    /// The payee's hub abandoned this split payment: its parts did not cover it in time.
    #[error("the payee's hub stopped collecting the split payment {0}: its parts did not cover it in time")]
    SplitAbandoned(B256),
    /// The payer's step for this hub is not the quoted one, or the quote is gone.
    #[error("{0}")]
    QuoteMismatch(String),
    /// The rule the payer's lock or the invoice breaks (the core's name).
    #[error(transparent)]
    Rule(#[from] infhub_core::Error),
    /// The wallet's refusal (the peer's named refusal passes through).
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A refusal of a forward naming the link direction whose step failed (spec §5.18).
    #[error("{1}")]
    AtLink(infhub_core::routing::FailingLink, Box<LinkError>),
}

impl LinkError {
    /// Whether the refusal is about a link (its capacity, openness, fee or time), which the
    /// route search should learn from, rather than about the payment itself.
    fn is_about_the_link(&self) -> bool {
        match self {
            LinkError::UnknownNextHub(_)
            | LinkError::InsufficientCapacity { .. }
            | LinkError::FeeInsufficient { .. }
            | LinkError::LinkNotOpen(..)
            | LinkError::LinkBusy(..)
            | LinkError::PeerHubUnreachable { .. }
            | LinkError::Rule(infhub_core::Error::ExpiryTooSoon) => true,
            LinkError::Wallet(w) => infhub_wallet::wallet::LINK_REFUSALS.contains(&w.code().as_str()),
            _ => false,
        }
    }
}

/// The link key for the hub key `hub_key`, and its bytes.
pub fn link_key(hub_key: &B256) -> Result<(PrivateKey, B256), infhub_core::Error> {
    let mut preimage = LINK_KEY_DOMAIN.to_vec();
    preimage.extend_from_slice(hub_key.as_slice());
    let bytes = keccak256(&preimage);
    Ok((PrivateKey::from_bytes(bytes.0)?, bytes))
}

/// What a link's directory says of its peer.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkFile {
    hub_url: String,
    peer_contract: Address,
}

/// What the operator sees of a link between two steps.
#[derive(Default)]
struct LinkView {
    /// The peer's hub address (from the link's wallet, once open).
    peer_hub: Option<Address>,
    job: Option<String>,
    /// The last finished job and its outcome (kept apart from the watch rounds' errors).
    last_job: Option<Value>,
    last_error: Option<(String, String)>,
    channel: Option<Value>,
}

/// The operator's list of links (`GET /v1/operator/links`).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinksAnswer {
    /// The address the links' channels belong to (derived from the hub key).
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    link_address: Address,
    /// Its token balance on chain (decimal), when the chain answered.
    link_tokens: Option<String>,
    max_links: usize,
    links: Vec<LinkDescription>,
}

/// One link as the operator sees it.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkDescription {
    /// The peer hub's contract.
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    peer_contract: Address,
    hub_url: String,
    /// `opening`, `open`, `closing`, `settled`, …
    state: String,
    /// The job running on it now, if any.
    job: Option<String>,
    /// The last finished job and its outcome (free-form: each job reports its own figures).
    last_job: Option<Value>,
    /// Forwards over it not yet finished.
    unfinished_forwards: usize,
    /// The last watch round's error.
    last_error: Option<LinkErrorView>,
    /// The link channel as its wallet sees it (free-form: the wallet's own report).
    channel: Option<Value>,
}

/// A link's last error: a rule's code and its message.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct LinkErrorView {
    code: String,
    message: String,
}

/// A payment quote (`POST /v1/payment-quotes`, spec §5.23b): what the payer signs her lock
/// over.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteAnswer {
    /// The quote's id, for the forward.
    #[schemars(with = "infhub_core::schema::WordSchema")]
    quote_id: B256,
    /// What the payer locks: the amount plus every fee.
    amount: Amount,
    fees: Amount,
    /// The payer's lock's expiry block.
    expiry_block: u64,
    /// Every link of every part, in order.
    hops: Vec<infhub_core::routing::Hop>,
    /// The parts (one unless the payment is split, spec §5.23c).
    parts: Vec<QuotePart>,
    /// The payee's hub contract.
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    payee_hub_contract: Address,
    /// The payee's hub (its hub address).
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    payee_hub: Address,
}

/// One part of a quote: its links, what it sends and its fees, and the steps the payer draws
/// tweaks for and seals, one per hub (spec §5.23d).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct QuotePart {
    hops: Vec<infhub_core::routing::Hop>,
    sent: Amount,
    fees: Amount,
    steps: Vec<StepPlan>,
}

/// One link.
struct Link {
    peer_contract: Address,
    hub_url: String,
    dir: WalletDir,
    wallet: Arc<tokio::sync::Mutex<Option<Wallet>>>,
    view: Mutex<LinkView>,
    /// Payments forwarded over this link not yet finished, by lock id (`forwards.jsonl`).
    forwards: Mutex<BTreeMap<B256, Forward>>,
}

impl Link {
    fn view(&self) -> std::sync::MutexGuard<'_, LinkView> {
        self.view.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, result: Result<(), WalletError>, wallet: Option<&Wallet>) {
        let mut v = self.view();
        match result {
            Ok(()) => v.last_error = None,
            Err(e) => {
                tracing::warn!(peer = %self.peer_contract, error = %e, "link step failed; retrying");
                v.last_error = Some((e.code(), e.to_string()));
            }
        }
        if let Some(summary) = wallet.and_then(|w| w.summary().ok()) {
            v.channel = Some(summary);
        }
    }

    /// Caches the wallet's summary without touching the last error.
    fn refresh(&self, wallet: &Wallet) {
        if let Ok(summary) = wallet.summary() {
            self.view().channel = Some(summary);
        }
    }

    fn state(&self) -> String {
        let v = self.view();
        v.channel
            .as_ref()
            .and_then(|c| c["status"]["state"].as_str().map(str::to_string))
            .unwrap_or_else(|| "opening".into())
    }
}

/// This hub's links.
pub struct Links {
    root: PathBuf,
    key: PrivateKey,
    key_bytes: B256,
    rpc_url: String,
    own_contract: Address,
    token: Address,
    provider: DynProvider,
    watch_interval: Duration,
    links: Mutex<BTreeMap<Address, Arc<Link>>>,
    shutdown: Mutex<Option<watch::Receiver<bool>>>,
    /// The node, for the ledger commands forwarding needs (set once it runs).
    node: std::sync::OnceLock<std::sync::Weak<crate::engine::Node>>,
    /// The links' announcements and what this hub learned of others' (spec §5.18).
    pub routing: crate::routing::Routing,
    /// Payment quotes given to this hub's users, by id, with when (spec §5.23b).
    quotes: Mutex<BTreeMap<B256, (std::time::Instant, Quote)>>,
    /// Payee hubs by host: when read, hub address, contract, hub key.
    hosts: Mutex<BTreeMap<String, (std::time::Instant, PayeeHub)>>,
    /// The hub key as a scalar: opens the route steps sealed to this hub (spec §5.23d).
    hub_secret: Scalar,
    /// Most unfinished forwards per link (`node.max_forwards_per_link`).
    max_forwards_per_link: usize,
    /// Split payments this hub collects as the payee's hub (spec §5.23c).
    pub collections: crate::collect::Collections,
}

/// A route quoted to a payer: for each part of the payment (one unless it is split, spec
/// §5.23c), the steps this hub and the next ones take, without their tweaks (the payer draws
/// them, spec §5.23d).
#[derive(Clone, Debug)]
pub struct Quote {
    invoice_id: B256,
    parts: Vec<Vec<StepPlan>>,
}

/// A payee's hub as its `/v1/info` names it.
#[derive(Clone, Copy, Debug)]
struct PayeeHub {
    hub: Address,
    contract: Address,
    key: FixedBytes<33>,
}

impl Links {
    /// The links kept in `<data_dir>/links`, not started.
    pub fn open(
        config: &crate::config::Config,
        token: Address,
        provider: DynProvider,
        registry_domain: infhub_core::Domain,
    ) -> Result<Links, String> {
        let hub_key = PrivateKey::from_bytes(config.chain.hub_key.0 .0).map_err(|e| format!("hub key: {e}"))?;
        let hub_secret = Scalar::from_bytes(config.chain.hub_key.0).map_err(|e| format!("hub key: {e}"))?;
        let fees = crate::routing::Fees { base_fee: config.node.link_base_fee, fee_ppm: config.node.link_fee_ppm };
        let routing = crate::routing::Routing::new(hub_key, registry_domain, fees);
        let (key, key_bytes) = link_key(&config.chain.hub_key.0).map_err(|e| format!("link key: {e}"))?;
        let root = config.node.data_dir.join("links");
        let mut links = BTreeMap::new();
        if root.exists() {
            let entries = std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            for entry in entries {
                let path = entry.map_err(|e| format!("{}: {e}", root.display()))?.path();
                let file = path.join(LINK_FILE);
                let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let f: LinkFile = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
                let link = Link {
                    peer_contract: f.peer_contract,
                    hub_url: f.hub_url,
                    forwards: Mutex::new(load_forwards(&path)?),
                    dir: WalletDir::new(path),
                    wallet: Arc::new(tokio::sync::Mutex::new(None)),
                    view: Mutex::new(LinkView::default()),
                };
                links.insert(f.peer_contract, Arc::new(link));
            }
        }
        Ok(Links {
            root,
            key,
            key_bytes,
            rpc_url: config.chain.rpc_url.clone(),
            own_contract: config.chain.hub_contract,
            token,
            provider,
            watch_interval: Duration::from_millis(config.node.link_watch_interval_ms),
            links: Mutex::new(links),
            shutdown: Mutex::new(None),
            node: std::sync::OnceLock::new(),
            routing,
            quotes: Mutex::new(BTreeMap::new()),
            hosts: Mutex::new(BTreeMap::new()),
            hub_secret,
            max_forwards_per_link: config.node.max_forwards_per_link,
            collections: crate::collect::Collections::open(
                &config.node.data_dir,
                config.node.split_collection_timeout_ms,
            )?,
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Address, Arc<Link>>> {
        self.links.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The link key's address: the account this hub holds at its peers.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    fn node(&self) -> Option<Arc<crate::engine::Node>> {
        self.node.get().and_then(std::sync::Weak::upgrade)
    }

    /// Starts every link's task (until `shutdown`) for `node`, whose payments they forward.
    pub fn start(self: &Arc<Self>, node: std::sync::Weak<crate::engine::Node>, shutdown: watch::Receiver<bool>) {
        let _ = self.node.set(node);
        *self.shutdown.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(shutdown);
        let links: Vec<Arc<Link>> = self.map().values().cloned().collect();
        for link in links {
            self.spawn(link);
        }
        let shutdown = self.shutdown.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(shutdown) = shutdown {
            tokio::spawn(self.clone().run_collections(shutdown));
        }
    }

    /// Every watch interval until `shutdown`: completes or forgets the split payments being
    /// collected (spec §5.23c), e.g. one whose last part arrived just before a restart.
    async fn run_collections(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Some(node) = self.node().filter(|_| !self.collections.is_empty()) {
                self.collections.advance(&node).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.watch_interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    fn spawn(self: &Arc<Self>, link: Arc<Link>) {
        let shutdown = self.shutdown.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(shutdown) = shutdown else { return };
        tokio::spawn(self.clone().run_link(link, shutdown));
    }

    /// Opens a link to the hub at `hub_url` (idempotent); the link as [`Links::list`] shows it,
    /// and whether it was opened now.
    pub async fn open_link(self: &Arc<Self>, hub_url: &str) -> Result<(LinkDescription, bool), LinkError> {
        if !(hub_url.starts_with("http://") || hub_url.starts_with("https://")) {
            return Err(LinkError::Malformed(format!("hubUrl {hub_url}: an http(s) URL")));
        }
        let unreachable = |reason: String| LinkError::PeerHubUnreachable { url: hub_url.to_string(), reason };
        let client = HubClient::new(hub_url)?;
        let info = client.info().await.map_err(|e| unreachable(e.into_wallet(hub_url).to_string()))?;
        let peer_contract: Address = serde_json::from_value(info["hubContract"].clone())
            .map_err(|_| unreachable("its /v1/info names no hubContract".into()))?;
        if peer_contract == self.own_contract {
            return Err(LinkError::LinkToOwnHub(peer_contract));
        }
        let link = {
            let mut map = self.map();
            if let Some(link) = map.get(&peer_contract) {
                let link = link.clone();
                drop(map);
                return Ok((self.describe(&link), false));
            }
            if map.len() >= MAX_LINKS {
                return Err(LinkError::TooManyLinks);
            }
            let dir = WalletDir::new(self.root.join(format!("{peer_contract:#x}")));
            let file = LinkFile { hub_url: client.url().to_string(), peer_contract };
            let bytes = serde_json::to_vec_pretty(&file).map_err(|e| LinkError::Malformed(e.to_string()))?;
            dir.write_atomic(LINK_FILE, &bytes)?;
            let link = Arc::new(Link {
                peer_contract,
                hub_url: file.hub_url,
                dir,
                wallet: Arc::new(tokio::sync::Mutex::new(None)),
                view: Mutex::new(LinkView::default()),
                forwards: Mutex::new(BTreeMap::new()),
            });
            map.insert(peer_contract, link.clone());
            link
        };
        tracing::info!(peer = %peer_contract, url = %link.hub_url, "opening a link");
        self.spawn(link.clone());
        Ok((self.describe(&link), true))
    }

    fn get(&self, peer: Address) -> Result<Arc<Link>, LinkError> {
        self.map().get(&peer).cloned().ok_or(LinkError::UnknownLink(peer))
    }

    /// Takes the link's wallet for a job: refused while another job runs or before it opened.
    async fn take(&self, link: &Arc<Link>) -> Result<tokio::sync::OwnedMutexGuard<Option<Wallet>>, LinkError> {
        if let Some(job) = link.view().job.clone() {
            return Err(LinkError::LinkBusy(link.peer_contract, job));
        }
        let guard = link.wallet.clone().lock_owned().await;
        if guard.is_none() {
            return Err(LinkError::LinkNotOpen(link.peer_contract, link.state()));
        }
        Ok(guard)
    }

    /// Deposits `amount` of the link key's tokens into the link, in the background.
    pub async fn deposit(self: &Arc<Self>, peer: Address, amount: Amount) -> Result<LinkDescription, LinkError> {
        let link = self.get(peer)?;
        if amount.is_zero() {
            return Err(LinkError::Malformed("amount must be positive".into()));
        }
        let mut guard = self.take(&link).await?;
        let what = format!("deposit of {} base units", amount.0);
        link.view().job = Some(what.clone());
        let job_link = link.clone();
        tokio::spawn(async move {
            let Some(w) = guard.as_mut() else { return };
            let result = w.deposit(amount, &mut |_| {}).await;
            job_link.refresh(w);
            let outcome = match result {
                Ok(_) => json!({"job": what, "error": null}),
                Err(e) => {
                    tracing::warn!(peer = %job_link.peer_contract, error = %e, "link deposit failed");
                    json!({"job": what, "error": {"code": e.code(), "message": e.to_string()}})
                }
            };
            let mut v = job_link.view();
            v.last_job = Some(outcome);
            v.job = None;
        });
        Ok(self.describe(&link))
    }

    /// Pays `recipient`, an account of the peer hub, `amount` from the link's balance; the
    /// peer's answer.
    pub async fn pay(&self, peer: Address, recipient: Address, amount: Amount) -> Result<Value, LinkError> {
        let link = self.get(peer)?;
        let mut guard = self.take(&link).await?;
        let Some(w) = guard.as_mut() else { return Err(LinkError::LinkNotOpen(peer, link.state())) };
        let answer = w.pay(PaymentKind::Internal, recipient, amount).await;
        link.refresh(w);
        Ok(answer?)
    }

    /// Every link, and the link key's address and tokens on chain.
    pub async fn list(&self) -> LinksAnswer {
        let links: Vec<Arc<Link>> = self.map().values().cloned().collect();
        let tokens = self.token_balance().await;
        LinksAnswer {
            link_address: self.address(),
            link_tokens: tokens.map(|t| t.to_string()),
            max_links: MAX_LINKS,
            links: links.iter().map(|l| self.describe(l)).collect(),
        }
    }

    async fn token_balance(&self) -> Option<U256> {
        let call = IErc20::balanceOfCall { owner: self.address() }.abi_encode();
        let req = alloy::rpc::types::TransactionRequest::default().to(self.token).input(call.into());
        let raw = self.provider.call(req).await.ok()?;
        IErc20::balanceOfCall::abi_decode_returns(&raw).ok()
    }

    fn describe(&self, link: &Link) -> LinkDescription {
        let state = link.state();
        let v = link.view();
        LinkDescription {
            peer_contract: link.peer_contract,
            hub_url: link.hub_url.clone(),
            state,
            job: v.job.clone(),
            last_job: v.last_job.clone(),
            unfinished_forwards: link.forwards().len(),
            last_error: v
                .last_error
                .as_ref()
                .map(|(code, message)| LinkErrorView { code: code.clone(), message: message.clone() }),
            channel: v.channel.clone(),
        }
    }

    /// A link's task: opens it (retrying with a growing pause), then watches it.
    async fn run_link(self: Arc<Self>, link: Arc<Link>, mut shutdown: watch::Receiver<bool>) {
        let mut retry = self.watch_interval;
        let mut submitted = None;
        loop {
            let opened = self.open_step(&link).await;
            let pause = if opened {
                self.watch_step(&link, &mut submitted).await;
                self.watch_interval
            } else {
                retry = (retry * 2).min(MAX_OPEN_RETRY);
                retry
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Opens the link's wallet if it is not open: reopens a registered one, or registers (the
    /// peer opens the channel; idempotent). Whether the wallet is open.
    async fn open_step(&self, link: &Arc<Link>) -> bool {
        let mut guard = link.wallet.lock().await;
        if guard.is_some() {
            return true;
        }
        let key = self.key.clone();
        let registered = matches!(link.dir.load(), Ok(Some(s)) if s.channel.is_some());
        let opened = if registered {
            Wallet::open(link.dir.clone(), key, self.key_bytes, None, Some(&self.rpc_url)).await
        } else {
            link.view().job = Some("opening: registering at the peer and waiting for the channel".into());
            let r = Wallet::register(link.dir.clone(), key, self.key_bytes, &link.hub_url, &self.rpc_url, &mut |_| {})
                .await;
            link.view().job = None;
            r
        };
        match opened {
            Ok(mut w) => {
                tracing::info!(peer = %link.peer_contract, "link open");
                w.set_synced_by_owner(true);
                link.view().peer_hub = Some(w.state().hub.hub);
                link.record(Ok(()), Some(&w));
                *guard = Some(w);
                true
            }
            Err(e) => {
                link.record(Err(e), None);
                false
            }
        }
    }

    /// One round on an open link: sync with the peer while the channel is open, then the
    /// wallet's defence round (dispute, settle, resolve claimed locks).
    async fn watch_step(&self, link: &Arc<Link>, submitted: &mut Option<(u64, u64)>) {
        let mut guard = link.wallet.lock().await;
        let Some(w) = guard.as_mut() else { return };
        let open = w.channel().is_ok_and(|c| c.status == infhub_core::channel::Status::Open);
        // The link settles a lock only once the scalar it opens is in the ledger for the
        // payment it forwarded: the next hub forgets the scalar when the lock settles.
        // Also once the link closes: the next hub may have claimed on chain (its reveal in the
        // registry is then where this hub learns the scalar).
        self.advance_forwards(link, w).await;
        w.hold_locks(link.forwards().iter().filter(|f| f.state != ForwardState::Failed).map(|f| f.lock_id).collect());
        let synced = if open { w.sync().await.map(|_| ()) } else { Ok(()) };
        let defended = match w.defend(true, submitted).await {
            Ok((said, _)) => {
                for line in said {
                    tracing::info!(peer = %link.peer_contract, "{line}");
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        link.record(synced.and(defended), Some(w));
        if open {
            if let Ok(capacity) = w.spendable() {
                self.routing.announce(w.state().hub.hub, capacity);
            }
        }
        drop(guard);
        match self.routing.learn_from(&link.hub_url).await {
            Ok(l) if l.refused > 0 => {
                tracing::warn!(peer = %link.peer_contract, refused = l.refused, "announcements refused")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(peer = %link.peer_contract, error = %e, "announcements not fetched"),
        }
    }
}

pub use infhub_core::forwarding::{FORWARD_EXPIRY_DELTA_BLOCKS, FORWARD_MIN_REMAINING_BLOCKS};
/// Most forwards per link and watch round whose scalar is looked up in the point registry.
pub const MAX_REGISTRY_LOOKUPS_PER_ROUND: usize = 64;
/// Most payment quotes kept at once.
pub const MAX_QUOTES: usize = 10_000;
/// How long a payment quote can be used.
pub const QUOTE_TTL: Duration = Duration::from_secs(600);
/// Most forwards a link keeps unfinished.
pub const MAX_FORWARDS_PER_LINK: usize = 10_000;
/// The file of a link's forwards.
const FORWARDS_FILE: &str = "forwards.jsonl";

use infhub_core::forwarding::{self, Downstream, Forward, ForwardState, ForwardStep, IncomingLock};

pub use infhub_core::sealed_step::{RouteStep, SealedStep, StepPlan};

fn load_forwards(dir: &std::path::Path) -> Result<BTreeMap<B256, Forward>, String> {
    let path = dir.join(FORWARDS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = BTreeMap::new();
    for line in text.lines() {
        // A torn last line (a crash mid-append) was never acted on: its step is redone.
        let Ok(f) = serde_json::from_str::<Forward>(line) else { continue };
        if f.state == ForwardState::Finished {
            out.remove(&f.lock_id);
        } else {
            out.insert(f.lock_id, f);
        }
    }
    Ok(out)
}

impl Link {
    /// Appends `f` to the forwards file (synced) and applies it in memory.
    fn note_forward(&self, f: Forward) -> Result<(), WalletError> {
        let path = self.dir.path().join(FORWARDS_FILE);
        crate::towers::append_json_line(&path, &f)
            .map_err(|e| WalletError::Store { path: path.display().to_string(), reason: e.to_string() })?;
        let mut forwards = self.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.state == ForwardState::Finished {
            forwards.remove(&f.lock_id);
        } else {
            forwards.insert(f.lock_id, f);
        }
        Ok(())
    }

    fn forwards(&self) -> Vec<Forward> {
        self.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }
}

/// What the node's forwarding of one payment decided before the payer's lock is committed.
pub struct ForwardPlan {
    link: Arc<Link>,
    guard: tokio::sync::OwnedMutexGuard<Option<Wallet>>,
    forward: Forward,
    /// For a payment this hub quoted, the link directions of its part: a refusal naming one of
    /// them counts against it in this hub's route search (spec §5.18).
    quoted_links: Vec<infhub_core::routing::FailingLink>,
}

impl Links {
    /// Checks a payment to forward (spec §5.23a): the link to the invoice's payee hub (by its
    /// host), the invoice in that hub's domain, the payer's lock against the invoice (same id
    /// and point, at least its amount), the link's balance, and an expiry that leaves the next
    /// hop time. Holds the link's wallet until the forward is done, so nothing else drives it.
    pub async fn plan_forward(
        &self,
        payer: Address,
        lock: &infhub_core::point_lock::Lock,
        invoice: &infhub_core::invoice::SignedInvoice,
    ) -> Result<ForwardPlan, LinkError> {
        let host = invoice.message.payee.host.clone();
        let link = self
            .map()
            .values()
            .find(|l| host_of(&l.hub_url) == host)
            .cloned()
            .ok_or_else(|| LinkError::UnknownNextHub(host.clone()))?;
        let guard = take_open_link(&link).await?;
        let w = guard.as_ref().expect("an open link's wallet");
        let ch = w.channel()?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let domain = infhub_core::Domain { chain_id: w.state().hub.chain_id, verifying_contract: link.peer_contract };
        let point = invoice.check(&domain, now)?;
        let inv = &invoice.message;
        if lock.lock_id != inv.invoice_id || lock.point != point.address() {
            return Err(infhub_core::Error::LockMismatch.into());
        }
        if lock.amount < inv.amount {
            return Err(LinkError::FeeInsufficient { lock: lock.amount, invoice: inv.amount });
        }
        let have = w.spendable()?;
        if have < inv.amount {
            return Err(LinkError::InsufficientCapacity { peer: link.peer_contract, have, want: inv.amount });
        }
        let next_expiry_block = infhub_core::forwarding::next_expiry_block(lock.expiry_block, ch.block)?;
        if link.forwards().len() >= self.max_forwards_per_link {
            return Err(LinkError::LinkBusy(
                link.peer_contract,
                format!("{} forwards unfinished, the most this hub forwards over a link", self.max_forwards_per_link),
            ));
        }
        let forward = forwarding::direct_forward(payer, lock, invoice, next_expiry_block);
        Ok(ForwardPlan { link, guard, forward, quoted_links: Vec::new() })
    }

    /// Records the plan's intent durably, before the payer's lock is committed.
    pub fn record_intent(&self, plan: &ForwardPlan) -> Result<(), LinkError> {
        Ok(plan.link.note_forward(plan.forward.clone())?)
    }

    /// Forwards the payment whose payer's lock the ledger committed: pays the invoice over the
    /// link with the earlier expiry. The next hub's answer, or its refusal (the payer's lock
    /// then stays until its expiry, when she drops it).
    /// A refusal names the link direction that failed: the one the next hubs named, else this
    /// hub's link to the next; one about a link is counted by the route search (spec §5.18).
    pub async fn forward(&self, mut plan: ForwardPlan) -> Result<Value, LinkError> {
        let Some(w) = plan.guard.as_mut() else {
            return Err(LinkError::LinkNotOpen(plan.link.peer_contract, "gone".into()));
        };
        let payer = plan.forward.payer;
        let sent = send_forward(&plan.link, w, plan.forward).await;
        let named = w.take_failing_link();
        sent.map_err(|e| {
            let peer_hub = plan.link.view().peer_hub.unwrap_or(Address::ZERO);
            let own = infhub_core::routing::FailingLink { from_hub: self.routing.hub(), to_hub: peer_hub };
            let link = named.unwrap_or(own);
            // Only a link of a route this hub quoted is counted: a hop further on may name any
            // link, and what it names of another route is not believed (its own link is then
            // the one counted).
            if !plan.quoted_links.is_empty() && (named.is_some() || e.is_about_the_link()) {
                let counted = if plan.quoted_links.contains(&link) { link } else { own };
                self.routing.failed(payer, counted);
            }
            LinkError::AtLink(link, Box::new(e))
        })
    }

    /// Whether the next hub refused the payment `payer`'s lock `lock_id` funds, so this hub
    /// agrees to her cancel: every forward it funds (one per part of a split payment, spec
    /// §5.23c) failed, none of them is live.
    pub fn forward_failed(&self, payer: Address, lock_id: B256) -> bool {
        self.failed_forwards(payer, Some(lock_id)).contains(&lock_id)
    }

    /// The lock ids of `payer` (only `lock_id`, if given) whose every forward failed, read
    /// without copying the forwards.
    fn failed_forwards(&self, payer: Address, lock_id: Option<B256>) -> std::collections::BTreeSet<B256> {
        let links: Vec<Arc<Link>> = self.map().values().cloned().collect();
        let mut all_failed: BTreeMap<B256, bool> = BTreeMap::new();
        for link in &links {
            let forwards = link.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let of_payer = forwards.values().filter(|f| f.payer == payer && lock_id.is_none_or(|id| id == f.lock_id));
            for f in of_payer {
                *all_failed.entry(f.lock_id).or_insert(true) &= f.state == ForwardState::Failed;
            }
        }
        all_failed.into_iter().filter(|(_, failed)| *failed).map(|(id, _)| id).collect()
    }

    /// The locks of `payer` this hub agrees to cancel before their expiry (see
    /// [`Links::agrees_to_cancel`]), computed once for an account's whole list.
    pub fn cancellable_locks(&self, payer: Address) -> std::collections::BTreeSet<B256> {
        let mut out = self.failed_forwards(payer, None);
        out.extend(self.collections.abandoned_parts_of(payer));
        out
    }

    /// Whether this hub agrees to `payer`'s cancel of its lock `lock_id` before its expiry: the
    /// payment it funds was refused downstream (every forward failed, D54), or it is a part of a
    /// split payment this hub abandoned (spec §5.23c).
    pub fn agrees_to_cancel(&self, payer: Address, lock_id: B256) -> bool {
        self.forward_failed(payer, lock_id) || self.collections.abandoned_part(lock_id, payer)
    }

    /// Plans forwarding each part of a quoted payment (spec §5.23b, §5.23c, §5.23d) for the
    /// payer's one lock: the payer sealed every part's steps; this hub opens its own (the first
    /// of each part), which must be the quoted one with her tweak (`quote_mismatch`), checks it
    /// as [`Links::plan_routed`] does (no fee: this hub quoted it), and the parts' amounts
    /// together within her lock (`fee_insufficient`). The links are taken in the order of their
    /// peers, so two payments never wait on each other's links.
    pub async fn plan_parts(
        &self,
        payer: Address,
        lock: &infhub_core::point_lock::Lock,
        lock_point: &FixedBytes<33>,
        invoice: &infhub_core::invoice::SignedInvoice,
        quoted: &[Vec<StepPlan>],
        parts: &[Vec<SealedStep>],
    ) -> Result<Vec<ForwardPlan>, LinkError> {
        if parts.len() != quoted.len() {
            return Err(LinkError::QuoteMismatch(format!("{} parts for a quote of {}", parts.len(), quoted.len())));
        }
        let mut opened = Vec::with_capacity(parts.len());
        for (i, (plan, sealed)) in quoted.iter().zip(parts).enumerate() {
            let (Some(first), true) = (sealed.first(), sealed.len() == plan.len()) else {
                return Err(LinkError::QuoteMismatch(format!(
                    "part {i} has {} steps, quoted {}",
                    sealed.len(),
                    plan.len()
                )));
            };
            let step = self.open_sealed_step(lock.lock_id, first)?;
            if !plan[0].is_planned(&step) {
                return Err(LinkError::QuoteMismatch(format!("part {i}: this hub's step is not the quoted one")));
            }
            let links = plan.iter().map(|p| infhub_core::routing::FailingLink { from_hub: p.hub, to_hub: p.next_hub });
            opened.push((step, &sealed[1..], links.collect::<Vec<_>>()));
        }
        opened.sort_by_key(|(step, ..)| step.next_hub);
        let mut sent = Amount::ZERO;
        for (step, ..) in &opened {
            sent = sent.checked_add(step.amount)?;
        }
        if lock.amount < sent {
            return Err(LinkError::FeeInsufficient { lock: lock.amount, invoice: sent });
        }
        let mut plans = Vec::with_capacity(opened.len());
        for (step, rest, quoted_links) in opened {
            match self.plan_routed(payer, lock, lock_point, invoice, (&step, rest), false).await {
                Ok(plan) => plans.push(ForwardPlan { quoted_links, ..plan }),
                Err(e) => {
                    if let LinkError::AtLink(link, _) = &e {
                        self.routing.failed(payer, *link);
                    }
                    return Err(e);
                }
            }
        }
        Ok(plans)
    }

    /// Abandons a plan whose payer's lock the ledger refused.
    pub fn abandon(&self, plan: ForwardPlan) {
        let f = Forward { state: ForwardState::Finished, ..plan.forward };
        if let Err(e) = plan.link.note_forward(f) {
            tracing::warn!(error = %e, "a refused forward not noted; it is dropped at the next round");
        }
    }

    /// The forwards of `link` moved on: an intent whose payer's lock the ledger holds is sent,
    /// one it does not hold is forgotten; a sent one whose scalar the next hub learned is
    /// recorded in the ledger (the payer's lock can then only settle); one whose payer's lock
    /// is gone is finished.
    async fn advance_forwards(&self, link: &Arc<Link>, w: &mut Wallet) {
        let forwards = link.forwards();
        if forwards.is_empty() {
            return;
        }
        let Some(node) = self.node() else { return };
        let pending = |f: &Forward| {
            node.read().ledger().account(&f.payer).is_some_and(|a| a.channel.debit_locks.get(&f.lock_id).is_some())
        };
        // The next hub's word first; if it does not answer, the registry's.
        let scalars = match w.outgoing_scalars().await {
            Ok(s) => s,
            Err(e) => {
                link.record(Err(e), Some(w));
                Vec::new()
            }
        };
        let mut registry_lookups = 0;
        for f in forwards {
            let lock_pending = pending(&f);
            // What became of this hub's lock downstream: the next hub's word first; if it does
            // not answer, the registry's (for a sent forward only, so few lookups are made).
            let from_peer = scalars.iter().find(|(id, _)| *id == f.lock_id).map(|(_, s)| *s);
            let scalar = match from_peer {
                None if lock_pending
                    && f.state == ForwardState::Sent
                    && registry_lookups < MAX_REGISTRY_LOOKUPS_PER_ROUND =>
                {
                    registry_lookups += 1;
                    self.revealed_scalar(&f).await
                }
                other => other,
            };
            let live = w.channel().is_ok_and(|c| c.debit_locks.get(&f.lock_id).is_some())
                || w.state().pending_lock.is_some_and(|p| p.change.lock_id() == f.lock_id);
            let step = match infhub_core::forwarding::next_step(&f, lock_pending, &Downstream { scalar, live }) {
                Ok(step) => step,
                Err(e) => {
                    tracing::warn!(lock = %f.lock_id, error = %e, "the downstream scalar steps upstream to nothing");
                    continue;
                }
            };
            let result = match step {
                ForwardStep::Wait => continue,
                ForwardStep::Send => send_forward(link, w, f).await.map(|_| ()),
                ForwardStep::Fail => {
                    // Its lock downstream is gone unclaimed (cancelled with the next hub's
                    // agreement, or dropped after its expiry): the payer may cancel hers.
                    tracing::info!(lock = %f.lock_id, "a forward's lock downstream is gone unclaimed: failed");
                    link.note_forward(Forward { state: ForwardState::Failed, ..f }).map_err(LinkError::from)
                }
                ForwardStep::Learn(scalar) => {
                    let cmd =
                        infhub_core::ledger::Command::LockScalarLearned { payer: f.payer, lock_id: f.lock_id, scalar };
                    match node.execute(cmd).await {
                        Ok(Ok(_)) => {
                            tracing::info!(lock = %f.lock_id, payer = %f.payer, "forwarded payment claimed downstream");
                            link.note_forward(Forward { state: ForwardState::Finished, ..f }).map_err(LinkError::from)
                        }
                        Ok(Err(e)) => Err(e.into()),
                        Err(e) => Err(LinkError::Malformed(format!("the ledger refused to write: {e}"))),
                    }
                }
                ForwardStep::Finish => {
                    link.note_forward(Forward { state: ForwardState::Finished, ..f }).map_err(LinkError::from)
                }
            };
            if let Err(e) = result {
                tracing::warn!(peer = %link.peer_contract, error = %e, "a forward step failed; retrying next round");
            }
        }
    }
}

/// Marks `f` sent and pays its invoice over the link with its expiry; a refusal that leaves no
/// lock at the next hub marks it failed (the payer may then cancel hers).
async fn send_forward(link: &Link, w: &mut Wallet, f: Forward) -> Result<Value, LinkError> {
    link.note_forward(Forward { state: ForwardState::Sent, ..f.clone() })?;
    let sent = match &f.onward {
        None => w.pay_invoice_expiring(&f.invoice, Some(f.next_expiry_block)).await,
        Some(o) => {
            let route = json!({"lockPoint": o.lock_point, "route": o.route});
            w.pay_routed(&f.invoice, &o.lock_point.0, o.amount, f.next_expiry_block, route).await
        }
    };
    match sent {
        Ok(answer) => {
            link.refresh(w);
            Ok(answer)
        }
        Err(e) => {
            link.refresh(w);
            // Failed (the payer may cancel upstream) only if this hub's lock to the next hub is
            // not live: neither pending here nor held by the next hub. A lock the next hub
            // holds (it refused to cancel, or its answer was lost) can still be claimed, so the
            // forward stays sent and the payer's lock stays until the scalar or the expiry.
            let live = w.channel().is_ok_and(|c| c.debit_locks.get(&f.lock_id).is_some())
                || w.state().pending_lock.is_some_and(|p| p.change.lock_id() == f.lock_id);
            if !live {
                link.note_forward(Forward { state: ForwardState::Failed, ..f })?;
            }
            Err(e.into())
        }
    }
}

/// The host (and port) of an http(s) URL, lower case: what a user address names.
fn host_of(url: &str) -> String {
    url.split("://").nth(1).unwrap_or(url).split('/').next().unwrap_or_default().to_ascii_lowercase()
}

impl Links {
    /// The hub address, contract and key of the hub at `host` (its `/v1/info`, on this chain;
    /// the key's address must be the hub's), remembered for [`QUOTE_TTL`].
    async fn payee_hub(&self, host: &str) -> Result<PayeeHub, LinkError> {
        let cached = self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(host).copied();
        if let Some((_, hub)) = cached.filter(|(at, _)| at.elapsed() < QUOTE_TTL) {
            return Ok(hub);
        }
        let url = format!("http://{host}");
        let unreachable = |reason: String| LinkError::PeerHubUnreachable { url: url.clone(), reason };
        let info = HubClient::new(&url)?.info().await.map_err(|e| unreachable(e.into_wallet(&url).to_string()))?;
        let hub: Address = serde_json::from_value(info["hub"].clone()).map_err(|_| unreachable("no hub".into()))?;
        let contract: Address =
            serde_json::from_value(info["hubContract"].clone()).map_err(|_| unreachable("no hubContract".into()))?;
        let key: FixedBytes<33> =
            serde_json::from_value(info["hubKey"].clone()).map_err(|_| unreachable("no hubKey".into()))?;
        if Point::from_compressed(&key.0).map(|p| p.address()) != Ok(hub) {
            return Err(unreachable(format!("its hubKey is not the key of its hub {hub}")));
        }
        let chain_id = self.routing.chain_id();
        if info["chainId"].as_u64() != Some(chain_id) {
            return Err(unreachable(format!("on chain {}, not {chain_id}", info["chainId"])));
        }
        let payee = PayeeHub { hub, contract, key };
        let mut hosts = self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if hosts.len() >= MAX_QUOTES {
            hosts.clear();
        }
        hosts.insert(host.to_string(), (std::time::Instant::now(), payee));
        Ok(payee)
    }

    /// The scalar of `f`'s outgoing lock if someone revealed it in the point registry (the next
    /// hub claimed on chain, e.g. while this hub was down and could not settle its lock).
    async fn revealed_scalar(&self, f: &Forward) -> Option<Scalar> {
        let compressed = match &f.onward {
            Some(o) => o.lock_point.0,
            None => f.invoice.message.payment_point,
        };
        let point = Point::from_compressed(&compressed).ok()?.address();
        let registry = infhub_chain::registry::PointRegistryClient::new(self.provider.clone(), self.routing.registry());
        let block = registry.revealed_at(point).await.ok()??;
        let reveals = registry.reveals(block, block).await.ok()?;
        reveals.into_iter().find(|r| r.point == point).map(|r| r.scalar)
    }

    /// The open link whose peer's hub address is `hub`.
    fn link_to_hub(&self, hub: Address) -> Option<Arc<Link>> {
        self.map().values().find(|l| l.view().peer_hub == Some(hub)).cloned()
    }

    /// Quotes paying `invoice` (spec §5.23b, §5.23d): finds the payee's hub by the invoice's
    /// host and checks the invoice in its domain, takes the cheapest route there (or, when no
    /// single route carries the amount, parts over disjoint links, spec §5.23c), and gives each
    /// step's hub, its key, amount and expiry (`confirmed + 600` for the payer's lock, then
    /// `FORWARD_EXPIRY_DELTA_BLOCKS` less per link). The payer draws the tweaks and seals each
    /// step to its hub: this hub never learns the others' tweaks. Kept for [`QUOTE_TTL`].
    /// `payer`, if given, is whose recent failures the search weighs (spec §5.18).
    pub async fn quote(
        &self,
        invoice: &infhub_core::invoice::SignedInvoice,
        payer: Option<Address>,
        confirmed_block: u64,
    ) -> Result<QuoteAnswer, LinkError> {
        let payee = self.payee_hub(&invoice.message.payee.host).await?;
        let chain_id = self.routing.chain_id();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        invoice.check(&infhub_core::Domain { chain_id, verifying_contract: payee.contract }, now)?;
        let amount = invoice.message.amount;
        let routes = match self.routing.routes(payee.hub, amount, 1, payer).into_iter().next() {
            Some(route) => vec![route],
            None => self.routing.split_routes(payee.hub, amount, payer)?,
        };
        let expiry = confirmed_block + infhub_wallet::wallet::PAY_INVOICE_EXPIRY_BLOCKS;
        // A split payment's parts end with the payee's hub collecting them (spec §5.23c).
        let collect = (routes.len() > 1).then_some(payee);
        let plans = routes.iter().map(|r| self.step_plans(r, collect, expiry)).collect::<Result<Vec<_>, _>>()?;
        let id = B256::from(random_scalar()?.value());
        let quote = Quote { invoice_id: invoice.message.invoice_id, parts: plans.clone() };
        {
            let mut quotes = self.quotes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            quotes.retain(|_, (at, _)| at.elapsed() < QUOTE_TTL);
            if quotes.len() >= MAX_QUOTES {
                return Err(LinkError::LinkBusy(Address::ZERO, format!("{MAX_QUOTES} quotes outstanding")));
            }
            quotes.insert(id, (std::time::Instant::now(), quote));
        }
        let (mut sent, mut fees) = (Amount::ZERO, Amount::ZERO);
        for r in &routes {
            sent = sent.checked_add(r.sent)?;
            fees = fees.checked_add(r.fees)?;
        }
        let hops: Vec<&infhub_core::routing::Hop> = routes.iter().flat_map(|r| r.hops.iter()).collect();
        let parts = routes
            .iter()
            .zip(plans)
            .map(|(r, steps)| QuotePart { hops: r.hops.clone(), sent: r.sent, fees: r.fees, steps })
            .collect();
        Ok(QuoteAnswer {
            quote_id: id,
            amount: sent,
            fees,
            expiry_block: expiry,
            hops: hops.into_iter().cloned().collect(),
            parts,
            payee_hub_contract: payee.contract,
            payee_hub: payee.hub,
        })
    }

    /// The steps of `route`, one per link (then, for a part of a split payment, the payee's
    /// hub's own step collecting it), each with its hub's key: this hub's own, an announcing
    /// hub's recovered from its announcement, the payee's hub's from its `/v1/info`. Expiries
    /// one delta less per step from `expiry`.
    fn step_plans(
        &self,
        route: &infhub_core::routing::Route,
        collect: Option<PayeeHub>,
        expiry: u64,
    ) -> Result<Vec<StepPlan>, LinkError> {
        let mut steps: Vec<(Address, FixedBytes<33>, Address, Amount)> = Vec::with_capacity(route.hops.len() + 1);
        for hop in &route.hops {
            let key = self.routing.hub_key(hop.from_hub).ok_or_else(|| LinkError::PeerHubUnreachable {
                url: hop.from_hub.to_string(),
                reason: "no announcement of it gives its key".into(),
            })?;
            steps.push((hop.from_hub, FixedBytes(key.compressed()), hop.to_hub, hop.amount));
        }
        if let (Some(payee), Some(last)) = (collect, route.hops.last()) {
            steps.push((payee.hub, payee.key, payee.hub, last.amount));
        }
        let mut plans = Vec::with_capacity(steps.len());
        for (i, (hub, hub_key, next_hub, amount)) in steps.into_iter().enumerate() {
            let delta = FORWARD_EXPIRY_DELTA_BLOCKS * (i as u64 + 1);
            let expiry_block = expiry.checked_sub(delta).ok_or(infhub_core::Error::ExpiryTooSoon)?;
            plans.push(StepPlan { hub, hub_key, next_hub, amount, expiry_block });
        }
        Ok(plans)
    }

    /// The steps of quote `id` for `invoice_id`, one list per part.
    pub fn quoted_parts(&self, id: B256, invoice_id: B256) -> Result<Vec<Vec<StepPlan>>, LinkError> {
        let quotes = self.quotes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match quotes.get(&id) {
            Some((at, q)) if at.elapsed() < QUOTE_TTL && q.invoice_id == invoice_id => Ok(q.parts.clone()),
            _ => Err(LinkError::QuoteMismatch(format!(
                "no quote {id} for this invoice (quotes last {} s)",
                QUOTE_TTL.as_secs()
            ))),
        }
    }

    /// Opens the route step sealed to this hub for the lock `lock_id` (`step_unreadable`).
    pub fn open_sealed_step(&self, lock_id: B256, sealed: &SealedStep) -> Result<RouteStep, LinkError> {
        Ok(infhub_core::sealed_step::open_step(sealed, &self.hub_secret, lock_id)?)
    }

    /// Checks a forward along a route (spec §5.23b), this hub's step first: the incoming lock's
    /// point (given in full) names the lock and is the invoice's lock's; the outgoing point is it
    /// plus this step's tweak (on the last step, the invoice's point: `point_chain_broken`);
    /// the incoming amount covers the outgoing one and this hub's fee (`charge_fee`: none for
    /// its own payer, who was quoted); the incoming lock expires at least
    /// `FORWARD_EXPIRY_DELTA_BLOCKS` after the outgoing one, which leaves the next hop time;
    /// the link to the next hub is open and holds the amount. `route` is this hub's step,
    /// opened, and the later ones, sealed.
    /// A refusal about a link names this hub's step's link.
    pub async fn plan_routed(
        &self,
        payer: Address,
        lock: &infhub_core::point_lock::Lock,
        lock_point: &FixedBytes<33>,
        invoice: &infhub_core::invoice::SignedInvoice,
        route: (&RouteStep, &[SealedStep]),
        charge_fee: bool,
    ) -> Result<ForwardPlan, LinkError> {
        let planned = self.plan_step(payer, lock, lock_point, invoice, route, charge_fee).await;
        planned.map_err(|e| match e.is_about_the_link() {
            true => {
                let link = infhub_core::routing::FailingLink { from_hub: self.routing.hub(), to_hub: route.0.next_hub };
                LinkError::AtLink(link, Box::new(e))
            }
            false => e,
        })
    }

    /// [`Links::plan_routed`]'s checks.
    async fn plan_step(
        &self,
        payer: Address,
        lock: &infhub_core::point_lock::Lock,
        lock_point: &FixedBytes<33>,
        invoice: &infhub_core::invoice::SignedInvoice,
        route: (&RouteStep, &[SealedStep]),
        charge_fee: bool,
    ) -> Result<ForwardPlan, LinkError> {
        let (step, rest) = route;
        let fee = if charge_fee { self.routing.fee(step.amount)? } else { Amount::ZERO };
        let incoming = IncomingLock { lock, lock_point, invoice };
        let outgoing = forwarding::check_step(&incoming, step, rest.len(), fee).map_err(refusal)?;
        let link =
            self.link_to_hub(step.next_hub).ok_or_else(|| LinkError::UnknownNextHub(step.next_hub.to_string()))?;
        let guard = take_open_link(&link).await?;
        let w = guard.as_ref().expect("an open link's wallet");
        let ch = w.channel()?;
        if rest.is_empty() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let domain =
                infhub_core::Domain { chain_id: w.state().hub.chain_id, verifying_contract: link.peer_contract };
            forwarding::check_last_step(invoice, &domain, now, &outgoing, step).map_err(refusal)?;
        }
        let have = w.spendable()?;
        if have < step.amount {
            return Err(LinkError::InsufficientCapacity { peer: link.peer_contract, have, want: step.amount });
        }
        forwarding::step_leaves_time(step.expiry_block, ch.block)?;
        if link.forwards().len() >= self.max_forwards_per_link {
            return Err(LinkError::LinkBusy(
                link.peer_contract,
                format!("{} forwards unfinished, the most this hub forwards over a link", self.max_forwards_per_link),
            ));
        }
        let forward = forwarding::routed_forward(payer, &incoming, step, rest, &outgoing);
        Ok(ForwardPlan { link, guard, forward, quoted_links: Vec::new() })
    }
}

/// A hop's refusal of its step, by the node's names.
fn refusal(e: forwarding::StepRefusal) -> LinkError {
    match e {
        forwarding::StepRefusal::Rule(e) => e.into(),
        forwarding::StepRefusal::FeeInsufficient { lock, wanted } => {
            LinkError::FeeInsufficient { lock, invoice: wanted }
        }
        forwarding::StepRefusal::RouteTooLong(n) => LinkError::Malformed(format!("a route of {n} steps")),
    }
}

/// The wallet of `link`, held, if no job runs on the link and its channel is open.
async fn take_open_link(link: &Arc<Link>) -> Result<tokio::sync::OwnedMutexGuard<Option<Wallet>>, LinkError> {
    if link.view().job.is_some() {
        return Err(LinkError::LinkBusy(link.peer_contract, "a job runs on the link".into()));
    }
    let guard = link.wallet.clone().lock_owned().await;
    let open =
        guard.as_ref().is_some_and(|w| w.channel().is_ok_and(|c| c.status == infhub_core::channel::Status::Open));
    if !open {
        return Err(LinkError::LinkNotOpen(link.peer_contract, link.state()));
    }
    Ok(guard)
}

/// A random scalar (a quote id).
fn random_scalar() -> Result<Scalar, LinkError> {
    loop {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| LinkError::Malformed(format!("no randomness: {e}")))?;
        if let Ok(s) = Scalar::from_bytes(B256::from(b)) {
            return Ok(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(id: u8, state: ForwardState) -> Forward {
        let key = PrivateKey::from_bytes([9; 32]).expect("key");
        let domain = infhub_core::Domain { chain_id: 1, verifying_contract: Address::repeat_byte(1) };
        let invoice =
            infhub_core::invoice::issue(&key, "hub.example", &domain, Amount(5), u64::MAX, "x", B256::repeat_byte(id))
                .expect("invoice");
        Forward {
            payer: Address::repeat_byte(2),
            lock_id: B256::repeat_byte(id),
            invoice,
            next_expiry_block: 9,
            state,
            tweak: None,
            onward: None,
        }
    }

    /// The forwards file is replayed to the last state of each lock: a finished one is gone, a
    /// torn last line (a crash mid-append) is skipped, so its step is redone.
    #[test]
    fn the_forwards_file_replays_to_each_locks_last_state_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut text = String::new();
        for f in [
            forward(1, ForwardState::Intent),
            forward(1, ForwardState::Sent),
            forward(2, ForwardState::Intent),
            forward(2, ForwardState::Sent),
            forward(2, ForwardState::Finished),
            forward(3, ForwardState::Intent),
        ] {
            text.push_str(&serde_json::to_string(&f).expect("json"));
            text.push('\n');
        }
        let torn = serde_json::to_string(&forward(3, ForwardState::Sent)).expect("json");
        text.push_str(&torn[..torn.len() / 2]);
        std::fs::write(dir.path().join(FORWARDS_FILE), text).expect("write");
        let loaded = load_forwards(dir.path()).expect("loaded");
        let states: Vec<(u8, ForwardState)> = loaded.values().map(|f| (f.lock_id.0[0], f.state)).collect();
        assert_eq!(states, vec![(1, ForwardState::Sent), (3, ForwardState::Intent)]);
        assert!(load_forwards(&dir.path().join("none")).expect("no file").is_empty());
    }

    /// The link key is derived from the hub key: the same for the same key, another account
    /// than the hub's.
    #[test]
    fn the_link_key_is_derived_from_the_hub_key_and_is_not_it() {
        let hub = B256::repeat_byte(0x11);
        let (a, _) = link_key(&hub).expect("key");
        let (b, _) = link_key(&hub).expect("key");
        assert_eq!(a.address(), b.address());
        assert_ne!(a.address(), PrivateKey::from_bytes(hub.0).expect("key").address());
        assert_ne!(a.address(), link_key(&B256::repeat_byte(0x12)).expect("key").0.address());
    }
}
