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

use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IErc20;
use infhub_core::messages::PaymentKind;
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
    /// The wallet's refusal (the peer's named refusal passes through).
    #[error(transparent)]
    Wallet(#[from] WalletError),
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
    job: Option<String>,
    /// The last finished job and its outcome (kept apart from the watch rounds' errors).
    last_job: Option<Value>,
    last_error: Option<(String, String)>,
    channel: Option<Value>,
}

/// One link.
struct Link {
    peer_contract: Address,
    hub_url: String,
    dir: WalletDir,
    wallet: Arc<tokio::sync::Mutex<Option<Wallet>>>,
    view: Mutex<LinkView>,
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
}

impl Links {
    /// The links kept in `<data_dir>/links`, not started.
    pub fn open(config: &crate::config::Config, token: Address, provider: DynProvider) -> Result<Links, String> {
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
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Address, Arc<Link>>> {
        self.links.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The link key's address: the account this hub holds at its peers.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Starts every link's task (until `shutdown`).
    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        *self.shutdown.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(shutdown);
        let links: Vec<Arc<Link>> = self.map().values().cloned().collect();
        for link in links {
            self.spawn(link);
        }
    }

    fn spawn(self: &Arc<Self>, link: Arc<Link>) {
        let shutdown = self.shutdown.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(shutdown) = shutdown else { return };
        tokio::spawn(self.clone().run_link(link, shutdown));
    }

    /// Opens a link to the hub at `hub_url` (idempotent); the link as [`Links::list`] shows it,
    /// and whether it was opened now.
    pub async fn open_link(self: &Arc<Self>, hub_url: &str) -> Result<(Value, bool), LinkError> {
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
    pub async fn deposit(self: &Arc<Self>, peer: Address, amount: Amount) -> Result<Value, LinkError> {
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
    pub async fn list(&self) -> Value {
        let links: Vec<Arc<Link>> = self.map().values().cloned().collect();
        let tokens = self.token_balance().await;
        json!({
            "linkAddress": self.address(),
            "linkTokens": tokens.map(|t| t.to_string()),
            "maxLinks": MAX_LINKS,
            "links": links.iter().map(|l| self.describe(l)).collect::<Vec<_>>(),
        })
    }

    async fn token_balance(&self) -> Option<U256> {
        let call = IErc20::balanceOfCall { owner: self.address() }.abi_encode();
        let req = alloy::rpc::types::TransactionRequest::default().to(self.token).input(call.into());
        let raw = self.provider.call(req).await.ok()?;
        IErc20::balanceOfCall::abi_decode_returns(&raw).ok()
    }

    fn describe(&self, link: &Link) -> Value {
        let state = link.state();
        let v = link.view();
        json!({
            "peerContract": link.peer_contract,
            "hubUrl": link.hub_url,
            "state": state,
            "job": v.job,
            "lastJob": v.last_job,
            "lastError": v.last_error.as_ref().map(|(code, message)| json!({"code": code, "message": message})),
            "channel": v.channel,
        })
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
            Ok(w) => {
                tracing::info!(peer = %link.peer_contract, "link open");
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
    }
}
