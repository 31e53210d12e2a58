//! The node's chain task: the only user of the hub key's transaction sender.
//!
//! Each tick it polls the watcher and feeds confirmed events (then the confirmed height) to
//! the ledger writer; carries out the channel effects the ledger returns (answering an exit
//! with the newest debit, settling when the challenge period is over); sends queued external
//! payouts as one batch transaction; and follows its transactions to their receipts. API
//! requests that need a transaction (registration, hub close) arrive on a channel.
//!
//! Payout batches are owned by the ledger: a batch taken from the queue stays in flight until
//! the confirmed `PayoutBatchExecuted` of its id, and this task sends every batch in flight
//! that it has not sent since it started, or sent `node.payout_resend_after_blocks` ago, again
//! (the contract executes an id once). So a crash, a reorg, a dropped or a reverted
//! transaction all end in a resend, with no history to read at start. On start it also settles
//! or disputes closing channels from the ledger's state.

use crate::engine::{ChainRequest, ChainRequestError, Node, PayoutStatus, PendingDeposit};
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IInfHub;
use infhub_chain::events::{debit_arg, empty_debit_arg, submit_debit_call};
use infhub_chain::sender::{TxOutcome, TxSender};
use infhub_chain::source::RpcSource;
use infhub_chain::watcher::{WatchEvent, Watcher};
use infhub_chain::ChainError;
use infhub_core::channel::{Effect, Status};
use infhub_core::ledger::{ChainEvent, Command, Outcome, Payout};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Most channels one `openChannels` transaction opens (the contract's `MAX_OPEN_BATCH`).
const MAX_OPEN_BATCH: usize = 100;

/// Why a transaction was sent.
#[derive(Clone, Debug)]
enum Purpose {
    Payout {
        batch_id: B256,
        keys: Vec<(Address, B256)>,
    },
    Open {
        user: Address,
    },
    // Read through `Debug` in the "transaction sent" log line.
    #[allow(dead_code)]
    OpenMany {
        users: usize,
    },
    Dispute {
        user: Address,
    },
    Settle {
        user: Address,
    },
    Close {
        user: Address,
    },
}

impl Purpose {
    fn describe(&self) -> (&'static str, Option<Address>) {
        match self {
            Purpose::Payout { .. } => ("payout", None),
            Purpose::Open { user } => ("open_channel", Some(*user)),
            Purpose::OpenMany { .. } => ("open_channels", None),
            Purpose::Dispute { user } => ("submit_debit", Some(*user)),
            Purpose::Settle { user } => ("settle", Some(*user)),
            Purpose::Close { user } => ("hub_close", Some(*user)),
        }
    }
}

/// The chain task's state.
pub struct ChainTask {
    node: Arc<Node>,
    watcher: Watcher<RpcSource>,
    sender: TxSender,
    purposes: HashMap<u64, Purpose>,
    last_payout: Instant,
    /// When each payout batch in flight was last sent by this process (chain head).
    payouts_sent_at: HashMap<B256, u64>,
}

impl ChainTask {
    /// A task over a watcher and the hub's sender.
    pub fn new(node: Arc<Node>, watcher: Watcher<RpcSource>, sender: TxSender) -> ChainTask {
        ChainTask {
            node,
            watcher,
            sender,
            purposes: HashMap::new(),
            last_payout: Instant::now(),
            payouts_sent_at: HashMap::new(),
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut requests: mpsc::Receiver<ChainRequest>, mut shutdown: watch::Receiver<bool>) {
        if let Err(e) = self.recover().await {
            tracing::error!(error = %e, "chain recovery incomplete; will retry payouts on the next start");
        }
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

    async fn recover(&mut self) -> Result<(), ChainError> {
        let (queued, closing) = {
            let st = self.node.read();
            let l = st.dl.ledger();
            let queued: Vec<Payout> = l.queued_payouts().copied().collect();
            let closing: Vec<_> = l
                .accounts()
                .filter_map(|(u, a)| match a.channel.status {
                    Status::Closing { settle_block } => Some((*u, a.channel.clone(), settle_block)),
                    _ => None,
                })
                .collect();
            (queued, closing)
        };
        {
            let mut v = self.node.chain_view();
            for p in &queued {
                v.payouts.insert((p.payer, p.payment_id), PayoutStatus::Queued);
            }
        }
        // Batches in flight are sent again by the first tick (this process has sent none).
        let block = self.node.read().dl.ledger().block;
        for (user, ch, settle_block) in closing {
            if block >= settle_block {
                self.send(Purpose::Settle { user }, IInfHub::settleCall { user }.abi_encode()).await;
            } else if ch.cumulative_debit() > ch.chain_debit_total {
                // Totals decide on chain: the contract holds less than the newest debit.
                if let Some(d) = ch.debit {
                    self.send(Purpose::Dispute { user }, submit_debit_call(&d).abi_encode()).await;
                }
            }
        }
        Ok(())
    }

    async fn query_batch_executed(&self, batch_id: B256) -> Result<bool, ChainError> {
        let call = IInfHub::payoutBatchExecutedCall { batchId: batch_id }.abi_encode();
        let raw = self.sender.call(self.node.config.chain.hub_contract, call.into()).await?;
        IInfHub::payoutBatchExecutedCall::abi_decode_returns(&raw)
            .map_err(|e| ChainError::RpcAnswerMalformed(e.to_string()))
    }

    async fn batch_executed(&self, batch_id: B256) -> Option<bool> {
        match self.query_batch_executed(batch_id).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(%batch_id, error = %e, "could not read payoutBatchExecuted");
                None
            }
        }
    }

    /// Sends a hub transaction. When too many are in flight, first collects the receipts of
    /// those already mined, then tries once more.
    async fn try_send(&mut self, purpose: Purpose, input: Vec<u8>) -> Result<B256, ChainError> {
        let to = TxKind::Call(self.node.config.chain.hub_contract);
        let input = Bytes::from(input);
        let sent = match self.sender.send(to, input.clone()).await {
            Err(ChainError::TooManyInFlight { .. }) => {
                self.follow_transactions().await;
                self.sender.send(to, input).await?
            }
            other => other?,
        };
        tracing::info!(?purpose, nonce = sent.nonce, hash = %sent.hash, "transaction sent");
        self.purposes.insert(sent.nonce, purpose);
        Ok(sent.hash)
    }

    async fn send(&mut self, purpose: Purpose, input: Vec<u8>) -> Option<B256> {
        let what = format!("{purpose:?}");
        match self.try_send(purpose, input).await {
            Ok(hash) => Some(hash),
            Err(e) => {
                tracing::error!(purpose = %what, error = %e, "transaction not sent");
                None
            }
        }
    }

    /// Opens the channels of `opens`: one `openChannel` for one user, one `openChannels` for
    /// several; if the batch cannot be sent, each is sent alone so each gets its own answer.
    async fn open_channels(
        &mut self,
        opens: Vec<(Address, tokio::sync::oneshot::Sender<Result<B256, ChainRequestError>>)>,
    ) {
        if opens.len() > 1 {
            let users: Vec<Address> = opens.iter().map(|(u, _)| *u).collect();
            let input = IInfHub::openChannelsCall { users: users.clone() }.abi_encode();
            match self.try_send(Purpose::OpenMany { users: users.len() }, input).await {
                Ok(hash) => {
                    for (_, reply) in opens {
                        let _ = reply.send(Ok(hash));
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, users = users.len(), "batched channel opening not sent; one by one")
                }
            }
        }
        for (user, reply) in opens {
            let _ = reply.send(self.open_one(user).await);
        }
    }

    /// Opens one user's channel with `openChannels([user])`: unlike `openChannel`, it registers
    /// a channel the user already opened (`ChannelRegistered`) instead of reverting, so the
    /// ledger starts following it (spec §5.1).
    async fn open_one(&mut self, user: Address) -> Result<B256, ChainRequestError> {
        let input = IInfHub::openChannelsCall { users: vec![user] }.abi_encode();
        self.try_send(Purpose::Open { user }, input).await.map_err(ChainRequestError::from)
    }

    async fn request(&mut self, req: ChainRequest) {
        match req {
            ChainRequest::OpenChannel { user, reply } => {
                let r = self.open_one(user).await;
                let _ = reply.send(r);
            }
            ChainRequest::HubClose { user, reply } => {
                let debit = self.node.read().dl.ledger().account(&user).map(|a| a.channel.debit);
                let r = match debit {
                    None => Err(ChainRequestError::UnknownAccount),
                    Some(d) => {
                        let (arg, sig) = match d {
                            Some(d) => (debit_arg(&d.message), Bytes::copy_from_slice(&d.signature.0)),
                            None => (empty_debit_arg(user), Bytes::new()),
                        };
                        let input = IInfHub::startHubCloseCall { user, debit: arg, userSignature: sig }.abi_encode();
                        self.try_send(Purpose::Close { user }, input).await.map_err(ChainRequestError::from)
                    }
                };
                let _ = reply.send(r);
            }
        }
    }

    async fn tick(&mut self) {
        if self.node.chain_view().halted.is_none() {
            self.follow_chain().await;
        }
        self.follow_transactions().await;
        let interval = Duration::from_millis(self.node.config.node.payout_interval_ms);
        if self.last_payout.elapsed() >= interval {
            self.last_payout = Instant::now();
            self.take_payouts().await;
        }
    }

    async fn follow_chain(&mut self) {
        let events = match self.watcher.poll().await {
            Ok(e) => e,
            Err(e @ ChainError::ReorgBeyondConfirmations { .. }) => {
                tracing::error!(error = %e, "chain halted: a confirmed block was reorganised away");
                self.node.chain_view().halted = Some(e.to_string());
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "chain poll failed; retrying");
                return;
            }
        };
        let head = self.watcher.head();
        self.node.metrics.chain_head.store(head, Ordering::Relaxed);
        self.node.chain_view().head = head;
        let mut confirmed = Vec::new();
        for ev in events {
            match ev {
                WatchEvent::Seen { at, event: ChainEvent::Deposited { user, total_deposited, .. }, .. } => {
                    let mut v = self.node.chain_view();
                    v.pending_deposits
                        .entry(user)
                        .or_default()
                        .push(PendingDeposit { block: at.block, total_deposited });
                    drop(v);
                    self.node.notify(
                        user,
                        serde_json::json!({"type": "deposit_seen", "block": at.block,
                        "totalDeposited": total_deposited}),
                    );
                }
                WatchEvent::Seen { .. } => {}
                WatchEvent::Disconnected { block, .. } => {
                    let mut v = self.node.chain_view();
                    let mut gone = Vec::new();
                    for (u, list) in v.pending_deposits.iter_mut() {
                        let before = list.len();
                        list.retain(|d| d.block != block);
                        if list.len() != before {
                            gone.push(*u);
                        }
                    }
                    drop(v);
                    for u in gone {
                        self.node.notify(u, serde_json::json!({"type": "deposit_reorged_out", "block": block}));
                    }
                }
                WatchEvent::Confirmed { at, event } => {
                    if let ChainEvent::Deposited { user, .. } = event {
                        if let Some(list) = self.node.chain_view().pending_deposits.get_mut(&user) {
                            list.retain(|d| d.block != at.block);
                        }
                    }
                    confirmed.push(Command::Chain { at, event });
                }
                WatchEvent::ConfirmedThrough { block } => confirmed.push(Command::Block(block)),
            }
        }
        self.apply(confirmed).await;
    }

    /// Queues the confirmed commands together (in order, so the writer commits them in few
    /// batches), then carries out the effects of each.
    async fn apply(&mut self, commands: Vec<Command>) {
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            match self.node.enqueue_waiting(command.clone()).await {
                Ok(rx) => replies.push((command, rx)),
                Err(e) => {
                    tracing::error!(error = %e, "ledger writer unavailable");
                    return;
                }
            }
        }
        for (command, rx) in replies {
            match rx.await.unwrap_or(Err(crate::engine::WriteError::Stopped)) {
                Ok(Ok(Outcome::Applied(effects))) => {
                    for (user, effect) in effects {
                        self.effect(user, effect).await;
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(?command, error = %e, "the ledger refused a confirmed chain event");
                    self.node.metrics.chain_events_refused.fetch_add(1, Ordering::Relaxed);
                    let mut v = self.node.chain_view();
                    v.refused_events.count += 1;
                    v.refused_events.last =
                        Some(serde_json::json!({"command": command, "code": e.code(), "message": e.to_string()}));
                }
                Err(e) => tracing::error!(error = %e, "ledger writer unavailable"),
            }
        }
    }

    async fn effect(&mut self, user: Address, effect: Effect) {
        match effect {
            Effect::SubmitDebit(d) => {
                self.send(Purpose::Dispute { user }, submit_debit_call(&d).abi_encode()).await;
            }
            Effect::SettleDue => {
                self.send(Purpose::Settle { user }, IInfHub::settleCall { user }.abi_encode()).await;
            }
            Effect::Settled { paid, expected } if paid != expected => {
                tracing::error!(%user, %paid, %expected, "channel settled for a different amount than our proofs");
            }
            _ => {}
        }
    }

    async fn take_payouts(&mut self) {
        let max = self.node.config.limits.max_payout_batch;
        let queued = self.node.read().dl.ledger().queued_payouts().next().is_some();
        if queued {
            if let Err(e) = self.node.execute_waiting(Command::TakePayoutBatch { max }).await {
                tracing::error!(error = %e, "ledger writer unavailable");
            }
        }
        self.send_payouts_in_flight().await;
    }

    /// Sends each payout batch the ledger has in flight that this process has not sent yet, or
    /// sent `node.payout_resend_after_blocks` ago without its execution being confirmed since.
    async fn send_payouts_in_flight(&mut self) {
        let head = self.node.chain_view().head;
        let resend_after = self.node.config.node.payout_resend_after_blocks;
        let (due, in_flight): (Vec<(B256, Vec<Payout>)>, Vec<B256>) = {
            let st = self.node.read();
            let batches: Vec<_> = st.dl.ledger().payout_batches_in_flight().cloned().collect();
            let due = batches
                .iter()
                .filter(|b| self.payouts_sent_at.get(&b.id).is_none_or(|at| head >= at + resend_after))
                .map(|b| (b.id, b.payouts.clone()))
                .collect();
            (due, batches.iter().map(|b| b.id).collect())
        };
        self.payouts_sent_at.retain(|id, _| in_flight.contains(id));
        for (id, payouts) in due {
            if self.payouts_sent_at.contains_key(&id) {
                tracing::warn!(batch_id = %id, "payout batch not confirmed executed yet; sending it again");
            }
            self.send_payouts(id, payouts).await;
            self.payouts_sent_at.insert(id, head);
        }
    }

    async fn send_payouts(&mut self, batch_id: B256, payouts: Vec<Payout>) {
        let call = IInfHub::payoutCall {
            batchId: batch_id,
            recipients: payouts.iter().map(|p| p.recipient).collect(),
            amounts: payouts.iter().map(|p| U256::from(p.amount.0)).collect(),
        };
        let keys: Vec<(Address, B256)> = payouts.iter().map(|p| (p.payer, p.payment_id)).collect();
        if let Some(tx_hash) = self.send(Purpose::Payout { batch_id, keys: keys.clone() }, call.abi_encode()).await {
            let mut v = self.node.chain_view();
            for k in keys {
                v.payouts.insert(k, PayoutStatus::Sent { batch_id, tx_hash });
            }
        }
    }

    async fn follow_transactions(&mut self) {
        let outcomes = match self.sender.poll().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "transaction poll failed");
                return;
            }
        };
        for o in outcomes {
            let (nonce, mined) = match o {
                TxOutcome::Mined { nonce, hash, block, success, .. } => (nonce, Some((hash, block, success))),
                TxOutcome::NonceTakenElsewhere { nonce } => (nonce, None),
            };
            let Some(purpose) = self.purposes.remove(&nonce) else { continue };
            match (purpose, mined) {
                (Purpose::Payout { batch_id, keys }, Some((hash, block, success))) => {
                    let status = if success {
                        PayoutStatus::Executed { batch_id, tx_hash: Some(hash), block: Some(block) }
                    } else if self.batch_executed(batch_id).await == Some(true) {
                        // A resent batch (after a restart) lost the race to the original.
                        PayoutStatus::Executed { batch_id, tx_hash: None, block: None }
                    } else {
                        tracing::error!(%batch_id, %hash, "payout batch reverted");
                        PayoutStatus::Failed { batch_id, tx_hash: hash }
                    };
                    let mut v = self.node.chain_view();
                    for (payer, id) in &keys {
                        v.payouts.insert((*payer, *id), status.clone());
                    }
                    drop(v);
                    for (payer, id) in keys {
                        self.node
                            .notify(payer, serde_json::json!({"type": "payout", "paymentId": id, "status": status}));
                    }
                }
                (p, Some((hash, block, success))) => {
                    if !success {
                        tracing::warn!(?p, %hash, "transaction reverted");
                    }
                    if let (what, Some(user)) = p.describe() {
                        self.node.notify(
                            user,
                            serde_json::json!({"type": "transaction", "purpose": what,
                            "txHash": hash, "block": block, "success": success}),
                        );
                    }
                }
                (p, None) => tracing::error!(?p, nonce, "hub key used elsewhere: nonce taken by another transaction"),
            }
        }
    }
}
