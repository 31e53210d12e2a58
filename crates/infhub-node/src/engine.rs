//! The node's shared state and its single ledger writer.
//!
//! Every change to the ledger goes through one writer thread, fed by a bounded queue. The
//! writer takes whatever is queued (up to `max_batch_commands`), applies it, makes it durable
//! with one fsync (group commit), and only then answers each request, extends the history and
//! pushes notices to WebSocket subscribers. A full queue is refused at once (`overloaded`)
//! for API requests; the chain task waits instead, because chain events must not be dropped.
//! A storage failure stops the writer: nothing more is acknowledged until a restart recovers
//! from the log.

use crate::config::Config;
use crate::metrics::Metrics;
use alloy::providers::DynProvider;
use infhub_core::channel::CheckedDebit;
use infhub_core::ledger::{Command, Outcome};
use infhub_core::{Address, Domain, Error, B256};
use infhub_hub::checkpoints::{CheckpointShelf, ShelfHandle};
use infhub_hub::duties::{ChainView, LedgerAccess};
use infhub_hub::ledger::{CommitError, HubLedger};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use tokio::sync::{broadcast, mpsc, oneshot};

/// The durable ledger and its history, read by API handlers, written only by the writer.
pub type State = HubLedger;

pub use infhub_hub::ledger::Sequenced;

/// Why a write was not executed (the command itself was never judged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The write queue is full.
    #[error("the write queue is full ({0} waiting); retry later")]
    Overloaded(usize),
    /// Storage failed; the node stopped acknowledging writes.
    #[error("storage failed: {0}")]
    StorageFailed(String),
    /// The database failed or is unreachable; the node is reopening the ledger from it and
    /// acknowledges no write until it has.
    #[error("storage unavailable, reopening: {0}")]
    StorageUnavailable(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Stopped,
}

/// A pushed message for one account's WebSocket subscribers.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    /// The account it is for.
    pub user: Address,
    /// The message.
    pub body: Arc<serde_json::Value>,
}

/// Most requests waiting for the chain task (registrations, hub closes); one more is refused
/// as `limit_reached` ("chain request queue"). Registrations waiting together are opened in
/// one transaction, so a deep queue makes for bigger batches.
pub const CHAIN_REQUEST_QUEUE: usize = 1_024;

/// Why the chain task could not send a requested transaction.
#[derive(Debug, thiserror::Error)]
pub enum ChainRequestError {
    /// The account does not exist in the ledger.
    #[error("unknown account")]
    UnknownAccount,
    /// The chain layer refused or failed.
    #[error(transparent)]
    Chain(#[from] infhub_chain::ChainError),
}

/// A request the API makes of the chain task (which owns the hub's transaction sender).
#[derive(Debug)]
pub enum ChainRequest {
    /// Open (or register) a user's channel; registrations waiting together share a transaction.
    OpenChannel {
        /// The user.
        user: Address,
        /// The transaction hash, or why it was refused.
        reply: oneshot::Sender<Result<B256, ChainRequestError>>,
    },
    /// Send one transaction the operator asked for (a hub close, a reserve top-up, a reserve
    /// withdrawal's announcement, execution or cancellation).
    Send {
        /// The transaction.
        tx: Box<infhub_core::duties::HubTx>,
        /// The transaction hash, or why it was refused.
        reply: oneshot::Sender<Result<B256, ChainRequestError>>,
    },
}

/// Where a queued command's result arrives.
pub type WriteReply = oneshot::Receiver<Result<Result<Outcome, Error>, WriteError>>;

enum ReplyTo {
    Plain(oneshot::Sender<Result<Result<Outcome, Error>, WriteError>>),
    WithSeq(oneshot::Sender<Result<Sequenced, WriteError>>),
}

struct Job {
    command: Command,
    /// The debit's signature, checked by the API handler before queueing (on any core).
    checked: Option<CheckedDebit>,
    reply: ReplyTo,
    /// When it was queued (for the queue-wait metric).
    queued_at: std::time::Instant,
}

impl Job {
    /// A job queued now.
    fn new(command: Command, checked: Option<CheckedDebit>, reply: ReplyTo) -> Job {
        Job { command, checked, reply, queued_at: std::time::Instant::now() }
    }

    fn answer(self, r: Result<Sequenced, WriteError>) {
        match self.reply {
            ReplyTo::Plain(tx) => {
                let _ = tx.send(r.map(|(result, _)| result));
            }
            ReplyTo::WithSeq(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// What the chain task shares with the API: its view of the chain and the checkpoints at hand.
pub struct ChainHandles {
    /// The duties' view.
    pub view: Arc<Mutex<ChainView>>,
    /// The checkpoints in memory.
    pub checkpoints: ShelfHandle,
}

/// Everything the tasks share.
pub struct Node {
    /// The configuration.
    pub config: Config,
    /// The EIP-712 domain.
    pub domain: Domain,
    /// The hub's address.
    pub hub: Address,
    /// The token.
    pub token: Address,
    /// RPC access for reads (solvency).
    pub provider: DynProvider,
    state: RwLock<State>,
    /// Metrics.
    pub metrics: Metrics,
    /// Notices for WebSocket subscribers.
    pub notices: broadcast::Sender<Notice>,
    chain_view: Arc<Mutex<ChainView>>,
    checkpoints: ShelfHandle,
    writes: Mutex<Option<mpsc::Sender<Job>>>,
    /// Requests for the chain task.
    pub chain_requests: mpsc::Sender<ChainRequest>,
    /// The towers users named, fed by [`crate::towers::run_pusher`].
    pub towers: Arc<crate::towers::TowerRegistry>,
    /// Merchants' webhooks, fed by [`crate::webhooks::run_deliveries`].
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The operator's audit log (`<data_dir>/audit.log`).
    pub audit: Arc<crate::audit::AuditLog>,
    /// This hub's links to other hubs (spec §5.23).
    pub links: Arc<crate::links::Links>,
    /// The operator tokens accepted (`<data_dir>/operator-tokens.json`).
    pub operator_tokens: Arc<crate::operator_tokens::OperatorTokens>,
    /// Set (once) when the node must stop at once: another writer took the store's lease.
    fatal: tokio::sync::watch::Sender<Option<String>>,
    /// Opens the ledger again from its store (PostgreSQL): after a storage failure the writer
    /// reopens with it instead of refusing writes until a restart.
    reopen: Mutex<Option<Arc<Reopen>>>,
    /// Why writes are refused (a storage failure not yet reopened from), shared by the writer
    /// and the reopening thread.
    storage_down: Mutex<Option<String>>,
}

/// Opens the ledger again from its store, or says why not (and whether that is for good).
pub type Reopen = dyn Fn() -> Result<State, ReopenError> + Send + Sync;

/// Why a reopen failed.
#[derive(Debug)]
pub enum ReopenError {
    /// Try again shortly (the database is still unreachable).
    Retry(String),
    /// Another writer holds the lease: this node must stop.
    Fatal(String),
}

/// How often a reopen is tried while storage is down.
pub const REOPEN_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// What the node keeps in its data directory besides the ledger, opened before it starts.
pub struct DataFiles {
    /// This hub's links to other hubs (`links/`, spec §5.23).
    pub links: Arc<crate::links::Links>,
    /// The towers users named (`towers.json`).
    pub towers: Arc<crate::towers::TowerRegistry>,
    /// The operator's audit log (`audit.log`).
    pub audit: Arc<crate::audit::AuditLog>,
    /// The operator tokens accepted (`operator-tokens.json`).
    pub operator_tokens: Arc<crate::operator_tokens::OperatorTokens>,
    /// Merchants' webhooks (`webhooks.json`, spec §5.24).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

impl Node {
    /// Builds the shared node and starts the writer thread. Returns the receiver the chain
    /// task must drain.
    pub fn start(
        config: Config,
        domain: Domain,
        token: Address,
        provider: DynProvider,
        state: State,
        chain: ChainHandles,
        files: DataFiles,
    ) -> (Arc<Node>, mpsc::Receiver<ChainRequest>, std::thread::JoinHandle<()>) {
        let (writes, rx) = mpsc::channel(config.limits.max_write_queue);
        let (chain_requests, chain_rx) = mpsc::channel(CHAIN_REQUEST_QUEUE);
        let (notices, _) = broadcast::channel(NOTICE_QUEUE);
        let hub = state.ledger().params.hub;
        let node = Arc::new(Node {
            config,
            domain,
            hub,
            token,
            provider,
            state: RwLock::new(state),
            metrics: Metrics::default(),
            notices,
            chain_view: chain.view,
            checkpoints: chain.checkpoints,
            writes: Mutex::new(Some(writes)),
            chain_requests,
            towers: files.towers,
            audit: files.audit,
            links: files.links,
            operator_tokens: files.operator_tokens,
            webhooks: files.webhooks,
            fatal: tokio::sync::watch::channel(None).0,
            reopen: Mutex::new(None),
            storage_down: Mutex::new(None),
        });
        node.update_books();
        let writer_node = node.clone();
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer(writer_node, rx))
            .expect("spawn writer thread");
        (node, chain_rx, handle)
    }

    /// Read access to the ledger and history.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The chain task's view.
    pub fn chain_view(&self) -> MutexGuard<'_, ChainView> {
        self.chain_view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checkpoints at hand for proofs (held briefly).
    pub fn checkpoints(&self) -> MutexGuard<'_, CheckpointShelf> {
        self.checkpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_queue(&self) -> Result<mpsc::Sender<Job>, WriteError> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(WriteError::Stopped)
    }

    /// Stops accepting writes; the writer finishes what is queued and exits.
    pub fn stop_writes(&self) {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Queues a command from the API; refused at once if the queue is full.
    pub async fn execute(&self, command: Command) -> Result<Result<Outcome, Error>, WriteError> {
        Ok(self.execute_sequenced(command).await?.0)
    }

    /// Like [`Node::execute`], also returning the sequence number the command was logged at,
    /// so the caller can answer without reading the state (which the writer may be holding
    /// for the next batch's fsync).
    pub async fn execute_sequenced(&self, command: Command) -> Result<Sequenced, WriteError> {
        self.submit(command)?.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Queues a command now (refused at once if the queue is full); its result arrives on the
    /// returned receiver. Commands submitted one after another are applied in that order.
    /// A transfer's debit signature is checked here, on the caller's thread, so the single
    /// writer does not spend its time on it.
    pub fn submit(&self, command: Command) -> Result<oneshot::Receiver<Result<Sequenced, WriteError>>, WriteError> {
        let checked = match &command {
            // A debit that fails the check goes on unchecked: the ledger then names the rule
            // it breaks, in the same order of checks as always.
            Command::Transfer(debit) => CheckedDebit::check(*debit, &self.domain).ok(),
            _ => None,
        };
        self.submit_checked(command, checked)
    }

    /// Like [`Node::submit`], with the debit's check already made (by a front-end: spec §7).
    pub fn submit_checked(
        &self,
        command: Command,
        checked: Option<CheckedDebit>,
    ) -> Result<oneshot::Receiver<Result<Sequenced, WriteError>>, WriteError> {
        let (reply, rx) = oneshot::channel();
        match self.write_queue()?.try_send(Job::new(command, checked, ReplyTo::WithSeq(reply))) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.shed.fetch_add(1, Ordering::Relaxed);
                Err(WriteError::Overloaded(self.config.limits.max_write_queue))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriteError::Stopped),
        }
    }

    /// Queues a command from the chain task, waiting for room, and waits for its result.
    pub async fn execute_waiting(&self, command: Command) -> Result<Result<Outcome, Error>, WriteError> {
        self.enqueue_waiting(command).await?.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Queues a command, waiting for room; the result arrives on the returned receiver.
    pub async fn enqueue_waiting(&self, command: Command) -> Result<WriteReply, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.write_queue()?
            .send(Job::new(command, None, ReplyTo::Plain(reply)))
            .await
            .map_err(|_| WriteError::Stopped)?;
        Ok(rx)
    }

    /// Pushes a notice (no subscribers is fine).
    pub fn notify(&self, user: Address, body: serde_json::Value) {
        let _ = self.notices.send(Notice { user, body: Arc::new(body) });
    }

    /// Pushes the shell's notices, if anyone is subscribed.
    pub fn notify_all(&self, notices: Vec<infhub_hub::notice::Notice>) {
        if self.notices.receiver_count() == 0 {
            return;
        }
        for n in notices {
            self.notify(n.user, n.json());
        }
    }

    /// After a storage failure, reopen the ledger with `reopen` (in the background) instead of
    /// refusing writes until a restart.
    pub fn set_reopen(&self, reopen: Box<Reopen>) {
        *self.reopen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(reopen));
    }

    /// Why writes are refused now, if they are (the `/v1/info` `storage` field, metrics).
    pub fn storage_down(&self) -> Option<String> {
        self.storage_down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Marks storage down for `reason` and, if the node can reopen its ledger, starts a thread
    /// that retries until it has (then swaps the state and lets writes through again), or
    /// stops the node when another writer took over. Returns whether a reopen is under way.
    fn storage_failed(self: &Arc<Self>, reason: &str) -> bool {
        self.metrics.storage_down.store(1, Ordering::Relaxed);
        let Some(reopen) = self.reopen.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            *self.storage_down.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
            return false;
        };
        {
            let mut down = self.storage_down.lock().unwrap_or_else(|p| p.into_inner());
            if down.is_some() {
                return true;
            }
            *down = Some(reason.to_string());
        }
        tracing::warn!(%reason, "storage failed; reopening the ledger from the database");
        let node = self.clone();
        let spawned = std::thread::Builder::new().name("infhub-reopen".into()).spawn(move || loop {
            match reopen() {
                Ok(state) => {
                    let replayed = state.recovery().replayed;
                    // The old state is dropped after the lock is released (closing its
                    // connections must not hold up readers).
                    let old = std::mem::replace(&mut *node.state.write().unwrap_or_else(|p| p.into_inner()), state);
                    drop(old);
                    *node.storage_down.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    node.metrics.storage_reopens.fetch_add(1, Ordering::Relaxed);
                    node.metrics.storage_down.store(0, Ordering::Relaxed);
                    tracing::info!(replayed, "ledger reopened from the database; writes accepted again");
                    return;
                }
                Err(ReopenError::Fatal(why)) => {
                    tracing::error!(%why, "cannot reopen the ledger: stopping");
                    node.fail(why);
                    return;
                }
                Err(ReopenError::Retry(why)) => {
                    tracing::warn!(%why, "reopen failed; retrying");
                    std::thread::sleep(REOPEN_RETRY);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the reopening thread");
            return false;
        }
        true
    }

    /// Stops the node at once for `reason` (the writer was fenced): [`crate::run`] returns
    /// with it as an error.
    pub fn fail(&self, reason: String) {
        self.fatal.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(reason);
            }
            first
        });
    }

    /// Resolves with the reason once [`Node::fail`] was called.
    pub async fn failed(&self) -> String {
        let mut rx = self.fatal.subscribe();
        let reason = rx.wait_for(Option::is_some).await.map(|r| r.clone().unwrap_or_default());
        match reason {
            Ok(reason) => reason,
            Err(_) => std::future::pending().await,
        }
    }

    /// Refreshes the books' gauges. The sum of claims walks every account, so it runs when
    /// `/metrics` is scraped, not after every commit.
    pub fn update_books(&self) {
        let st = self.read();
        let l = st.ledger();
        let liabilities: u128 = l.accounts().map(|(_, a)| a.channel.claim().0).fold(0u128, u128::saturating_add);
        self.metrics.set_books(l.reserve.0, liabilities);
        self.metrics.set_free_reserve(l.free_reserve());
        self.metrics.accounts.store(l.account_count() as u64, Ordering::Relaxed);
        self.metrics.chain_confirmed.store(l.block, Ordering::Relaxed);
        self.metrics.ledger_seq.store(l.next_seq.saturating_sub(1), Ordering::Relaxed);
    }
}

fn writer(node: Arc<Node>, mut rx: mpsc::Receiver<Job>) {
    let max = node.config.limits.max_batch_commands;
    let wait = std::time::Duration::from_micros(node.config.node.group_commit_wait_micros);
    let drain = |rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>| {
        while jobs.len() < max {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
    };
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        drain(&mut rx, &mut jobs);
        // Under load, gather more before paying for one fsync and one batch signature.
        if jobs.len() > 1 && jobs.len() < max && !wait.is_zero() {
            std::thread::sleep(wait);
            drain(&mut rx, &mut jobs);
        }
        let taken_at = std::time::Instant::now();
        for j in &jobs {
            node.metrics.write_queue_seconds.observe(taken_at.saturating_duration_since(j.queued_at).as_secs_f64());
        }
        if let Some(reason) = node.storage_down() {
            let reopening = node.reopen.lock().unwrap_or_else(|p| p.into_inner()).is_some();
            for j in jobs {
                j.answer(Err(if reopening {
                    WriteError::StorageUnavailable(reason.clone())
                } else {
                    WriteError::StorageFailed(reason.clone())
                }));
            }
            continue;
        }
        let commands: Vec<(Command, Option<CheckedDebit>)> =
            jobs.iter().map(|j| (j.command.clone(), j.checked)).collect();
        // Notices are built only while someone is subscribed.
        let subscribed = node.notices.receiver_count() > 0;
        let committed = {
            // Apply time counts from here: taking the state lock is part of the wait.
            let mut st = node.state.write().unwrap_or_else(|p| p.into_inner());
            st.commit(commands, subscribed)
        };
        match committed {
            Ok(commit) => {
                let t = commit.timings;
                node.metrics.commit_sync_seconds.observe(t.sync.as_secs_f64());
                node.metrics.commit_apply_seconds.observe(t.apply.as_secs_f64());
                if let Some(snapshot) = t.snapshot {
                    node.metrics.snapshot_seconds.observe(snapshot.as_secs_f64());
                }
                if let Some(worked) = t.background_snapshot {
                    node.metrics.snapshot_background_seconds.observe(worked.as_secs_f64());
                }
                node.metrics.commit_history_seconds.observe(t.history.as_secs_f64());
                node.metrics.transfers.fetch_add(commit.payments, Ordering::Relaxed);
                node.metrics.commits.fetch_add(1, Ordering::Relaxed);
                node.metrics.batch_commands.observe(jobs.len() as f64);
                for (job, result) in jobs.into_iter().zip(commit.results) {
                    job.answer(Ok(result));
                }
                node.notify_all(commit.notices);
                let stopped = node.read().stopped().map(str::to_string);
                if let Some(reason) = stopped {
                    node.storage_failed(&reason);
                }
            }
            Err(CommitError::StorageFailed(reason)) => {
                let fenced = node.read().fenced();
                let reopening = !fenced && node.storage_failed(&reason);
                for j in jobs {
                    j.answer(Err(if reopening {
                        WriteError::StorageUnavailable(reason.clone())
                    } else {
                        WriteError::StorageFailed(reason.clone())
                    }));
                }
                if fenced {
                    tracing::error!(%reason, "fenced: another hub process took the writer lease; stopping");
                    node.fail(reason.clone());
                }
            }
        }
    }
}

/// Notices waiting for slow WebSocket subscribers; a subscriber further behind misses some
/// and is told to resynchronize.
pub const NOTICE_QUEUE: usize = 4_096;

/// The ledger as the chain duties reach it: commits through the writer's queue (waiting for
/// room: confirmed chain events are never dropped), reads under the state lock.
pub struct NodeLedger(pub Arc<Node>);

impl LedgerAccess for NodeLedger {
    async fn commit(&mut self, commands: Vec<Command>) -> Result<Vec<Result<Outcome, Error>>, CommitError> {
        let stopped = |e: WriteError| CommitError::StorageFailed(e.to_string());
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            replies.push(self.0.enqueue_waiting(command).await.map_err(stopped)?);
        }
        let mut results = Vec::with_capacity(replies.len());
        for rx in replies {
            results.push(rx.await.unwrap_or(Err(WriteError::Stopped)).map_err(stopped)?);
        }
        Ok(results)
    }

    fn read<R>(&self, f: impl FnOnce(&infhub_core::ledger::Ledger) -> R) -> R {
        f(self.0.read().ledger())
    }
}
