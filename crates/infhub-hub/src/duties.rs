//! The hub's chain duties: follow the contract, feed what is confirmed to the ledger, and get
//! onto the chain whatever the ledger's confirmed state calls for.
//!
//! One [`ChainDuties::tick`] does, in order: collect the outcomes of the hub's transactions;
//! poll the watcher and commit the confirmed events and height to the ledger (noting deposits
//! seen before they are confirmed); take a payout batch from the queue when asked to; and
//! send every duty due by [`infhub_core::duties::due`] that this process has not sent, sent
//! `resend_after_blocks` ago, or sent in a transaction that was mined and confirmed without
//! satisfying it. What was sent is kept in memory only: after a restart every duty still due is
//! sent again, which is the whole of crash recovery (the contract refuses what is already done:
//! a payout batch id executes once, a proof never goes back).
//!
//! The ledger is reached through [`LedgerAccess`], so the node (whose ledger sits behind its
//! writer thread) and the in-process [`crate::Hub`] run the same code.

use crate::broadcast::Broadcaster;
use crate::checkpoints::{Checkpointer, ShelfHandle};
use crate::ledger::CommitError;
use crate::notice::{Notice, NoticeBody};
use crate::status::{PendingDeposit, Statuses};
use infhub_chain::events::hub_tx_call;
use infhub_chain::sender::{SentTx, TxOutcome};
use infhub_chain::source::ChainSource;
use infhub_chain::watcher::{WatchEvent, Watcher};
use infhub_chain::ChainError;
use infhub_core::channel::Effect;
use infhub_core::duties::{due, DutyKey, HubTx, RealizePolicy};
use infhub_core::ledger::{ChainEvent, Command, Ledger, Outcome, PayoutBatch};
use infhub_core::{Address, Amount, Error, B256};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

/// Transactions this process follows at most this many blocks after sending them; one still
/// unreported by then (dropped, never mined) is forgotten (its duty, if still due, is resent
/// long before).
pub const FOLLOW_TRANSACTIONS_BLOCKS: u64 = 1_024;

/// Most confirmed chain commands kept while storage cannot record them (spec §7): past it the
/// watcher is not polled until storage is back, so nothing is skipped, only delayed.
pub const MAX_UNRECORDED_CHAIN_COMMANDS: usize = 100_000;

/// How the hub's state is reached from the chain duties.
pub trait LedgerAccess {
    /// Commits `commands` in order (waiting for room if the ledger is busy) and returns each
    /// one's result.
    fn commit(
        &mut self,
        commands: Vec<Command>,
    ) -> impl Future<Output = Result<Vec<Result<Outcome, Error>>, CommitError>> + Send;
    /// Reads the ledger.
    fn read<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R;
}

/// Tuning of the duties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DutiesConfig {
    /// A duty still due this many blocks after its transaction was sent is sent again.
    pub resend_after_blocks: u64,
    /// Most payouts per batch.
    pub max_payout_batch: usize,
    /// When to realize debits.
    pub realize: RealizePolicy,
    /// Free reserve below this is reported as low (a metric and a log line).
    pub low_free_reserve_below: Amount,
    /// The chain's point registry, where the hub reveals the scalars of locks it is owed
    /// (read from the hub contract's `pointRegistry()`; spec §5.11a).
    pub point_registry: Address,
}

/// Most expired hub locks dropped per tick (the rest in the next ones).
pub const MAX_LOCK_DROPS_PER_TICK: usize = 256;

/// Drops the hub's forwarded locks that expired unclaimed (spec §5.17b): each drop is the hub's
/// next credit to the payee without the lock, and frees the reserve the lock held.
async fn drop_expired_locks(ledger: &mut impl LedgerAccess) {
    let expired = ledger.read(|l| l.expired_forwarded_locks(MAX_LOCK_DROPS_PER_TICK));
    if expired.is_empty() {
        return;
    }
    let drops: Vec<Command> = expired
        .into_iter()
        .map(|(user, lock_id)| Command::CreditLock { user, change: infhub_core::channel::LockChange::Drop { lock_id } })
        .collect();
    match ledger.commit(drops).await {
        Ok(results) => {
            for e in results.into_iter().filter_map(Result::err) {
                tracing::warn!(error = %e, "an expired lock could not be dropped");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not drop expired locks"),
    }
}

/// Confirmed chain events the ledger refused. A refusal is a bug or an inconsistent chain: the
/// event is skipped (the ledger moves past it), so it is surfaced, not only logged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedEvents {
    /// How many since the process started.
    pub count: u64,
    /// The last one: the event and the rule it broke.
    pub last: Option<serde_json::Value>,
}

/// Counters of what the duties did since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DutyCounters {
    /// Transactions sent for duties (first sends and resends).
    pub sent: u64,
    /// Of those, resends of a duty still due.
    pub resent: u64,
    /// Realization transactions mined.
    pub realizations_mined: u64,
    /// Debits in the realization transactions mined.
    pub debits_realized: u64,
    /// Gas used by the realization transactions mined.
    pub realization_gas: u64,
    /// Hub transactions mined that reverted.
    pub reverted: u64,
}

/// A duty's transaction as this process sent it.
#[derive(Clone, Debug)]
struct SentDuty {
    nonce: u64,
    at_head: u64,
    /// The block it was mined in, once reported.
    mined_in: Option<u64>,
}

/// What a transaction in flight was sent for.
#[derive(Clone, Debug)]
struct InFlight {
    name: &'static str,
    user: Option<Address>,
    duty: Option<DutyKey>,
    /// A payout batch: its id and payers.
    payout: Option<(B256, Vec<(Address, B256)>)>,
    debits: usize,
    sent_at_head: u64,
}

/// What the chain duties know beyond the ledger, shared with readers (the node's API reads it
/// while the duties run on their own task; neither holds the lock across a wait).
#[derive(Debug, Default)]
pub struct ChainView {
    /// The chain head last seen.
    pub head: u64,
    /// Set when the watcher met a reorganisation below the confirmation depth: the hub stops
    /// following the chain (an operator must look).
    pub halted: Option<String>,
    /// Confirmed events the ledger refused.
    pub refused_events: RefusedEvents,
    /// What the duties did.
    pub counters: DutyCounters,
    /// Free reserve was below `low_free_reserve_below` at the last tick.
    pub low_free_reserve: bool,
    /// Payout and deposit status.
    pub statuses: Statuses,
}

/// The chain duties of one hub: its watcher, its broadcaster and what it sent.
pub struct ChainDuties<C: ChainSource, B: Broadcaster> {
    watcher: Watcher<C>,
    broadcaster: B,
    /// The hub contract.
    contract: Address,
    config: DutiesConfig,
    sent: HashMap<DutyKey, SentDuty>,
    in_flight: HashMap<u64, InFlight>,
    /// Channel openings sent, by user: (transaction, head block when sent). A repeated
    /// registration inside `resend_after_blocks` gets the same transaction instead of another.
    openings: HashMap<Address, (B256, u64)>,
    /// Hub closes sent, by user, the same way.
    closes: HashMap<Address, (B256, u64)>,
    view: Arc<Mutex<ChainView>>,
    /// Builds the checkpoints the duties post (none: checkpoints off).
    checkpointer: Option<Checkpointer>,
    /// Confirmed chain commands the ledger could not record yet (storage down), in order; a
    /// run of blocks is kept as its last.
    unrecorded: Vec<Command>,
    /// While `unrecorded` is not empty: the ledger as in memory with those commands applied,
    /// from which the duties are computed (the chain defences go on during an outage).
    shadow: Option<Ledger>,
}

/// Adds a confirmed chain command to those kept unrecorded; a block that follows a block
/// replaces it (confirming through block n says all a run of blocks before it said).
fn keep_unrecorded(kept: &mut Vec<Command>, command: Command) {
    if let (Command::Block(_), Some(Command::Block(_))) = (&command, kept.last()) {
        kept.pop();
    }
    kept.push(command);
}

impl<C: ChainSource, B: Broadcaster> ChainDuties<C, B> {
    /// Duties of the hub behind `contract`, following the chain with `watcher` and sending
    /// with `broadcaster`.
    pub fn new(watcher: Watcher<C>, broadcaster: B, contract: Address, config: DutiesConfig) -> ChainDuties<C, B> {
        ChainDuties {
            watcher,
            broadcaster,
            contract,
            config,
            sent: HashMap::new(),
            in_flight: HashMap::new(),
            openings: HashMap::new(),
            closes: HashMap::new(),
            view: Arc::new(Mutex::new(ChainView::default())),
            checkpointer: None,
            unrecorded: Vec::new(),
            shadow: None,
        }
    }

    /// Builds checkpoints with `checkpointer` from now on (spec §5.16).
    pub fn set_checkpointer(&mut self, checkpointer: Checkpointer) {
        self.checkpointer = Some(checkpointer);
    }

    /// The checkpoints in memory, if this hub checkpoints.
    pub fn checkpoint_shelf(&self) -> Option<ShelfHandle> {
        self.checkpointer.as_ref().map(Checkpointer::shelf)
    }

    /// What the duties know beyond the ledger (held briefly: the duties update it each tick).
    pub fn view(&self) -> MutexGuard<'_, ChainView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle to the same view, for readers on other threads.
    pub fn view_handle(&self) -> Arc<Mutex<ChainView>> {
        self.view.clone()
    }

    /// The broadcaster.
    pub fn broadcaster(&self) -> &B {
        &self.broadcaster
    }

    /// The broadcaster, mutably (the simulator delivers its outbox).
    pub fn broadcaster_mut(&mut self) -> &mut B {
        &mut self.broadcaster
    }

    /// Duties sent by this process and not yet satisfied.
    pub fn duties_in_flight(&self) -> usize {
        self.sent.len()
    }

    /// Transactions sent and not yet reported by the broadcaster.
    pub fn transactions_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// One round: follow the chain, collect transaction outcomes, take a payout batch if
    /// `take_payouts`, send what is due. Returns the notices it made.
    pub async fn tick(&mut self, ledger: &mut impl LedgerAccess, take_payouts: bool) -> Vec<Notice> {
        let mut notices = Vec::new();
        // Outcomes first: a payout confirmed in this round then reports its transaction.
        self.follow_transactions(&mut notices).await;
        if self.view().halted.is_none() {
            self.follow_chain(ledger, &mut notices).await;
        }
        let halted = self.view().halted.is_some();
        if let (false, Some(c)) = (halted, self.checkpointer.as_mut()) {
            c.tick(ledger).await;
        }
        if self.shadow.is_none() {
            drop_expired_locks(ledger).await;
        }
        if take_payouts && ledger.read(|l| l.queued_payouts().next().is_some()) {
            let max = self.config.max_payout_batch;
            if let Err(e) = ledger.commit(vec![Command::TakePayoutBatch { max }]).await {
                tracing::error!(error = %e, "could not take a payout batch");
            }
        }
        let figures = |l: &Ledger| (due(l, &self.config.realize), l.block, l.liquidity().free);
        let (duties, confirmed, free) = match &self.shadow {
            Some(shadow) => figures(shadow),
            None => ledger.read(figures),
        };
        self.watch_liquidity(free);
        self.carry_out(duties, confirmed).await;
        notices
    }

    fn watch_liquidity(&mut self, free: Amount) {
        let low = free < self.config.low_free_reserve_below;
        let mut view = self.view();
        if low && !view.low_free_reserve {
            tracing::warn!(free = %free, below = %self.config.low_free_reserve_below, "free reserve is low");
        } else if !low && view.low_free_reserve {
            tracing::info!(free = %free, "free reserve recovered");
        }
        view.low_free_reserve = low;
    }

    async fn follow_chain(&mut self, ledger: &mut impl LedgerAccess, notices: &mut Vec<Notice>) {
        // While storage is down and the kept commands reach their limit, the watcher waits:
        // what it would confirm stays on the chain until the ledger can take it.
        let events = if self.unrecorded.len() >= MAX_UNRECORDED_CHAIN_COMMANDS {
            Vec::new()
        } else {
            match self.watcher.poll().await {
                Ok(e) => e,
                Err(e @ ChainError::ReorgBeyondConfirmations { .. }) => {
                    tracing::error!(error = %e, "chain halted: a confirmed block was reorganised away");
                    self.view().halted = Some(e.to_string());
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "chain poll failed; retrying");
                    return;
                }
            }
        };
        self.view().head = self.watcher.head();
        let mut fresh = Vec::new();
        for ev in events {
            match ev {
                WatchEvent::Seen { at, event: ChainEvent::Deposited { user, total_deposited, .. }, .. } => {
                    self.view().statuses.deposit_seen(user, PendingDeposit { block: at.block, total_deposited });
                    notices.push(Notice { user, body: NoticeBody::DepositSeen { block: at.block, total_deposited } });
                }
                WatchEvent::Seen { .. } => {}
                WatchEvent::Disconnected { block, .. } => {
                    let gone = self.view().statuses.forget_deposits_in(block, None);
                    for user in gone {
                        notices.push(Notice { user, body: NoticeBody::DepositReorgedOut { block } });
                    }
                }
                WatchEvent::Confirmed { at, event } => {
                    if let ChainEvent::Deposited { user, .. } = event {
                        self.view().statuses.forget_deposits_in(at.block, Some(user));
                    }
                    fresh.push(Command::Chain { at, event });
                }
                WatchEvent::ConfirmedThrough { block } => fresh.push(Command::Block(block)),
            }
        }
        if fresh.is_empty() && self.unrecorded.is_empty() {
            return;
        }
        let commands = self.commands_to_record(&fresh, ledger);
        if commands.is_empty() {
            return;
        }
        let before: Vec<PayoutBatch> = ledger.read(|l| l.payout_batches_in_flight().cloned().collect());
        let results = match ledger.commit(commands.clone()).await {
            Ok(r) => {
                self.unrecorded.clear();
                self.shadow = None;
                r
            }
            Err(e) => {
                self.answer_from_memory(ledger, fresh, &commands, &e);
                return;
            }
        };
        for (command, result) in commands.iter().zip(results) {
            match result {
                Ok(Outcome::Applied(effects)) => {
                    for (user, effect) in effects {
                        if let Effect::Settled { paid, expected } = effect {
                            if paid != expected {
                                tracing::error!(%user, %paid, %expected, "channel settled for a different amount than our proofs");
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(?command, error = %e, "the ledger refused a confirmed chain event");
                    let mut view = self.view();
                    view.refused_events.count += 1;
                    view.refused_events.last =
                        Some(serde_json::json!({"command": command, "code": e.code(), "message": e.to_string()}));
                }
            }
        }
        let still: Vec<B256> = ledger.read(|l| l.payout_batches_in_flight().map(|b| b.id).collect());
        for batch in before.into_iter().filter(|b| !still.contains(&b.id)) {
            let payers: Vec<(Address, B256)> = batch.payouts.iter().map(|p| (p.payer, p.payment_id)).collect();
            let status = self.view().statuses.executed(batch.id, &payers);
            for (payer, payment_id) in payers {
                notices.push(Notice { user: payer, body: NoticeBody::Payout { payment_id, status: status.clone() } });
            }
        }
    }

    /// What to commit this round: the commands kept from an outage, then this poll's
    /// (`fresh`, also kept until recorded); a reopened ledger may hold some of them already (a
    /// commit whose outcome was unknown): those are skipped.
    fn commands_to_record(&mut self, fresh: &[Command], ledger: &impl LedgerAccess) -> Vec<Command> {
        for command in fresh {
            keep_unrecorded(&mut self.unrecorded, command.clone());
        }
        let (cursor, block) = ledger.read(|l| (l.chain_cursor, l.block));
        let commands: Vec<Command> = self
            .unrecorded
            .iter()
            .filter(|c| match c {
                Command::Chain { at, .. } => *at > cursor,
                Command::Block(n) => *n >= block,
                _ => true,
            })
            .cloned()
            .collect();
        if commands.is_empty() {
            self.unrecorded.clear();
            self.shadow = None;
        }
        commands
    }

    /// The ledger could not record `commands` (storage down): they stay kept for the next round,
    /// and are applied meanwhile to a copy of the ledger (made now from memory, or the one kept
    /// since the outage began, which takes this poll's `fresh` ones), so that the duties
    /// answer them from memory.
    fn answer_from_memory(
        &mut self,
        ledger: &impl LedgerAccess,
        mut fresh: Vec<Command>,
        commands: &[Command],
        error: &CommitError,
    ) {
        let shadow = match self.shadow.as_mut() {
            Some(shadow) => {
                fresh.retain(|c| commands.contains(c));
                shadow
            }
            None => {
                tracing::error!(%error, kept = commands.len(),
                    "the ledger cannot record confirmed chain events; answering them from memory until it can");
                fresh = commands.to_vec();
                self.shadow.insert(ledger.read(Ledger::clone))
            }
        };
        for command in fresh {
            if let Err(refused) = shadow.apply_chain(command.clone()) {
                tracing::error!(?command, error = %refused, "a copy of the ledger refused a confirmed chain event");
            }
        }
    }

    async fn follow_transactions(&mut self, notices: &mut Vec<Notice>) {
        let outcomes = match self.broadcaster.poll().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "transaction poll failed");
                return;
            }
        };
        for outcome in outcomes {
            let (nonce, mined) = match outcome {
                TxOutcome::Mined { nonce, hash, block, success, gas_used, .. } => {
                    (nonce, Some((hash, block, success, gas_used)))
                }
                TxOutcome::NonceTakenElsewhere { nonce } => (nonce, None),
            };
            let Some(f) = self.in_flight.remove(&nonce) else { continue };
            let Some((hash, block, success, gas_used)) = mined else {
                tracing::error!(purpose = f.name, nonce, "hub key used elsewhere: nonce taken by another transaction");
                continue;
            };
            if let Some(key) = f.duty {
                if let Some(s) = self.sent.get_mut(&key).filter(|s| s.nonce == nonce) {
                    s.mined_in = Some(block);
                }
            }
            let mut view = self.view();
            if !success {
                view.counters.reverted += 1;
                tracing::warn!(purpose = f.name, %hash, block, "hub transaction reverted");
            }
            if f.name == "realize_debits" && success {
                view.counters.realizations_mined += 1;
                view.counters.debits_realized += f.debits as u64;
                view.counters.realization_gas += gas_used;
            }
            if let Some((batch_id, payers)) = f.payout {
                let tx = view.statuses.batches.entry(batch_id).or_default();
                tx.mined = Some((hash, block, success));
                drop(view);
                let status = match success {
                    true => crate::status::PayoutStatus::Mined { batch_id, tx_hash: hash, block },
                    false => crate::status::PayoutStatus::Reverted { batch_id, tx_hash: hash },
                };
                for (payer, payment_id) in payers {
                    notices
                        .push(Notice { user: payer, body: NoticeBody::Payout { payment_id, status: status.clone() } });
                }
            } else if let Some(user) = f.user {
                drop(view);
                notices.push(Notice {
                    user,
                    body: NoticeBody::Transaction { purpose: f.name, tx_hash: hash, block, success },
                });
            }
        }
        let head = self.view().head;
        self.in_flight.retain(|_, f| head < f.sent_at_head + FOLLOW_TRANSACTIONS_BLOCKS);
    }

    /// Sends each duty due that is not in flight: never sent by this process, sent
    /// `resend_after_blocks` ago, or mined in a block now confirmed (so the chain has had its
    /// say, and the duty is still due). Duties no longer due are forgotten.
    async fn carry_out(&mut self, duties: Vec<infhub_core::duties::Duty>, confirmed: u64) {
        self.sent.retain(|key, _| duties.iter().any(|d| d.key == *key));
        let head = self.view().head;
        for duty in duties {
            let resend = match self.sent.get(&duty.key) {
                None => false,
                Some(s) if s.mined_in.is_some_and(|b| b <= confirmed) => true,
                Some(s) if head >= s.at_head + self.config.resend_after_blocks => true,
                Some(_) => continue,
            };
            if resend {
                self.view().counters.resent += 1;
                tracing::warn!(duty = ?duty.key, "a duty is still due after its transaction; sending it again");
            }
            let nonce = match self.send(&duty.tx, Some(duty.key)).await {
                Ok(sent) => sent.nonce,
                // Refused at once (the node's estimate: the contract would reject it now, e.g.
                // already done and not yet confirmed): tried again after the resend interval.
                Err(e) => {
                    tracing::warn!(duty = ?duty.key, error = %e, "duty transaction not sent");
                    u64::MAX
                }
            };
            self.view().counters.sent += 1;
            self.sent.insert(duty.key, SentDuty { nonce, at_head: head, mined_in: None });
        }
    }

    /// Sends `tx` (for `duty`, if it is one). When the broadcaster has too many in flight, first
    /// collects the outcomes of those already mined, then tries once more.
    async fn send(&mut self, tx: &HubTx, duty: Option<DutyKey>) -> Result<SentTx, ChainError> {
        let input = hub_tx_call(tx);
        let to = tx.target(self.contract, self.config.point_registry);
        let sent = match self.broadcaster.send(to, input.clone()).await {
            Err(ChainError::TooManyInFlight { .. }) => {
                let mut dropped = Vec::new();
                self.follow_transactions(&mut dropped).await;
                self.broadcaster.send(to, input).await?
            }
            other => other?,
        };
        tracing::info!(purpose = tx.name(), nonce = sent.nonce, hash = %sent.hash, "transaction sent");
        let payout = match tx {
            HubTx::Payout(b) => {
                self.view().statuses.batches.entry(b.id).or_default().sent = Some(sent.hash);
                Some((b.id, b.payouts.iter().map(|p| (p.payer, p.payment_id)).collect()))
            }
            _ => None,
        };
        let debits = match tx {
            HubTx::RealizeDebits(d) => d.len(),
            _ => 0,
        };
        let sent_at_head = self.view().head;
        let f = InFlight { name: tx.name(), user: tx.user(), duty, payout, debits, sent_at_head };
        self.in_flight.insert(sent.nonce, f);
        Ok(sent)
    }

    /// Sends a transaction on request (a registration's channel opening, a hub close, a
    /// reserve withdrawal). Returns its hash.
    ///
    /// A hub close of a user whose close was sent less than `resend_after_blocks` ago is
    /// answered with that transaction instead of sending another.
    pub async fn request(&mut self, tx: HubTx) -> Result<B256, ChainError> {
        let HubTx::HubClose { user, .. } = &tx else { return self.send(&tx, None).await.map(|s| s.hash) };
        let user = *user;
        let head = self.view().head;
        let window = self.config.resend_after_blocks;
        self.closes.retain(|_, (_, sent)| head < sent.saturating_add(window));
        if let Some((hash, _)) = self.closes.get(&user) {
            return Ok(*hash);
        }
        let hash = self.send(&tx, None).await?.hash;
        self.closes.insert(user, (hash, head));
        Ok(hash)
    }

    /// Opens the channels of `users`: one `openChannels` for all; if that cannot be sent, one
    /// each, so each gets its own answer. `openChannels` also registers a channel its user
    /// opened alone (`ChannelRegistered`), so the ledger starts following it (spec §5.1).
    ///
    /// Idempotent: a user whose opening was sent less than `resend_after_blocks` ago (or who
    /// appears twice in `users`) is answered with that transaction, and no other is sent, however
    /// often the registration is repeated (a crash forgets this; the contract then skips a
    /// channel already open, so a repeat costs gas but no harm).
    pub async fn open_channels(&mut self, users: &[Address]) -> Vec<Result<B256, ChainError>> {
        let head = self.view().head;
        let window = self.config.resend_after_blocks;
        self.openings.retain(|_, (_, sent)| head < sent.saturating_add(window));
        let mut fresh: Vec<Address> = Vec::with_capacity(users.len());
        for u in users {
            if !self.openings.contains_key(u) && !fresh.contains(u) {
                fresh.push(*u);
            }
        }
        let mut failed: HashMap<Address, ChainError> = HashMap::new();
        let batched = if fresh.len() > 1 {
            match self.request(HubTx::OpenChannels(fresh.clone())).await {
                Ok(hash) => {
                    for u in &fresh {
                        self.openings.insert(*u, (hash, head));
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, users = fresh.len(), "batched channel opening not sent; one by one");
                    false
                }
            }
        } else {
            false
        };
        if !batched {
            for u in &fresh {
                match self.request(HubTx::OpenChannels(vec![*u])).await {
                    Ok(hash) => {
                        self.openings.insert(*u, (hash, head));
                    }
                    Err(e) => {
                        failed.insert(*u, e);
                    }
                }
            }
        }
        users
            .iter()
            .map(|u| match self.openings.get(u) {
                Some((hash, _)) => Ok(*hash),
                // The first mention gets the sender's own error; a repeat of it in the same
                // call, a copy of its words.
                None => Err(failed.remove(u).unwrap_or_else(|| ChainError::TransactionRejected {
                    reason: "the opening of this channel could not be sent (see the first answer)".into(),
                })),
            })
            .collect()
    }
}
