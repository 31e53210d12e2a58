//! The node's chain task: runs the hub's chain duties ([`infhub_hub::duties::ChainDuties`]) on a
//! timer, and the API's requests for transactions (registrations, hub closes) as they come.
//!
//! The duties decide everything from the ledger's confirmed state (disputes, settlements,
//! payout batches in flight, realizations), so a restart needs no recovery step: the first tick
//! sends whatever is still due. Registrations waiting together open their channels in one
//! transaction.

use crate::engine::{ChainRequest, ChainRequestError, Node, NodeLedger};
use infhub_chain::source::RpcSource;
use infhub_hub::broadcast::ContractSender;
use infhub_hub::duties::ChainDuties;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Most channels one `openChannels` transaction opens (the contract's `MAX_OPEN_BATCH`).
const MAX_OPEN_BATCH: usize = infhub_core::contract::MAX_OPEN_BATCH;

/// Where a request's answer goes: the transaction hash, or why it was not sent.
type Reply = oneshot::Sender<Result<infhub_core::B256, ChainRequestError>>;

/// The chain task's state.
pub struct ChainTask {
    node: Arc<Node>,
    duties: ChainDuties<RpcSource, ContractSender>,
    last_payout: Instant,
}

impl ChainTask {
    /// A task running `duties` for `node`.
    pub fn new(node: Arc<Node>, duties: ChainDuties<RpcSource, ContractSender>) -> ChainTask {
        ChainTask { node, duties, last_payout: Instant::now() }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut requests: mpsc::Receiver<ChainRequest>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.node.config.chain.poll_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(req) = requests.recv() => {
                    // Registrations waiting together open their channels in one transaction.
                    let mut opens = Vec::new();
                    let mut next = Some(req);
                    while let Some(req) = next.take() {
                        match req {
                            ChainRequest::OpenChannel { user, reply } if opens.len() < MAX_OPEN_BATCH => {
                                opens.push((user, reply));
                                next = requests.try_recv().ok();
                            }
                            other => {
                                self.open_channels(std::mem::take(&mut opens)).await;
                                self.request(other).await;
                            }
                        }
                    }
                    self.open_channels(opens).await;
                }
                _ = tick.tick() => self.tick().await,
            }
        }
        tracing::info!("chain task stopped");
    }

    async fn tick(&mut self) {
        let interval = Duration::from_millis(self.node.config.node.payout_interval_ms);
        let take_payouts = self.last_payout.elapsed() >= interval;
        if take_payouts {
            self.last_payout = Instant::now();
        }
        let mut ledger = NodeLedger(self.node.clone());
        let notices = self.duties.tick(&mut ledger, take_payouts).await;
        self.node.notify_all(notices);
        let view = self.duties.view();
        let m = &self.node.metrics;
        m.chain_head.store(view.head, Ordering::Relaxed);
        m.chain_events_refused.store(view.refused_events.count, Ordering::Relaxed);
        m.free_reserve_low.store(u64::from(view.low_free_reserve), Ordering::Relaxed);
        *m.duties.lock().unwrap_or_else(|p| p.into_inner()) = view.counters;
    }

    async fn open_channels(&mut self, opens: Vec<(infhub_core::Address, Reply)>) {
        if opens.is_empty() {
            return;
        }
        let users: Vec<_> = opens.iter().map(|(u, _)| *u).collect();
        let answers = self.duties.open_channels(&users).await;
        for ((_, reply), answer) in opens.into_iter().zip(answers) {
            let _ = reply.send(answer.map_err(ChainRequestError::from));
        }
    }

    async fn request(&mut self, req: ChainRequest) {
        match req {
            ChainRequest::OpenChannel { user, reply } => self.open_channels(vec![(user, reply)]).await,
            ChainRequest::Send { tx, reply } => {
                let _ = reply.send(self.duties.request(*tx).await.map_err(ChainRequestError::from));
            }
        }
    }
}
