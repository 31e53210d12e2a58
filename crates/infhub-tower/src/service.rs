//! The tower service: the book behind a mutex, the durable log, the chain, and the defence loop.
//!
//! Every accepted credit or offer is in the log before the answer leaves (`Tower::accept_*`).
//! The defence loop reads the chain head each poll, scans `ExitStarted` logs for watched
//! users (from half a challenge period before the head at start, so a close that began while
//! the tower was down is still seen), reads the contract's record of each closing watched
//! channel, and does what the book's [`TowerBook::action`] says. It decides from the record
//! every time, never from what it sent: a defence dropped by a reorg is simply due again, one
//! that another party already made is not (no gas spent), and a transaction in flight is not
//! duplicated (the sender bumps its fee until it is mined).

use crate::log::{live_records, AppointmentLog, LogError, TowerRecord};
use alloy::primitives::{Bytes, TxKind};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use infhub_chain::bindings::IInfHub;
use infhub_chain::events::{complain_contradicted_credit_call, credit_arg, submit_credit_call, submit_debit_call};
use infhub_chain::sender::{SenderConfig, TxOutcome, TxSender};
use infhub_chain::ChainError;
use infhub_core::checkpoint::{CheckpointDomain, LeafProof, SumNode};
use infhub_core::messages::{SignedCredit, SignedDebit};
use infhub_core::tower::{ChannelRecord, SignedTowerFee, SignedTowerReceipt, TowerAction, TowerBook, TowerTerms};
use infhub_core::{Address, Domain, Error, PrivateKey};
use infhub_ledger::fs::OsFs;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Contract status `Settled`.
const STATUS_SETTLED: u8 = 3;
/// Blocks re-scanned each poll, so logs of blocks replaced by a shallow reorg are seen again.
const RESCAN_BLOCKS: u64 = 12;
/// Widest `eth_getLogs` range.
const MAX_LOG_RANGE_BLOCKS: u64 = 2_000;

/// What the tower needs to run.
#[derive(Clone, Debug)]
pub struct TowerConfig {
    /// JSON-RPC URL of the chain.
    pub rpc_url: String,
    /// The hub contract watched.
    pub contract: Address,
    /// The tower's key (pays gas, signs receipts, earns fees).
    pub key: PrivateKey,
    /// HTTP listen address.
    pub listen: String,
    /// Directory of the appointment log.
    pub data_dir: PathBuf,
    /// Limits and policy.
    pub terms: TowerTerms,
    /// Milliseconds between chain polls.
    pub poll_interval_ms: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Transaction fee policy (bumps while a defence waits to be mined).
    pub sender: SenderConfig,
}

/// Why the tower could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TowerError {
    /// The appointment log.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The chain.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// The listen address.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct TowerMetrics {
    /// Credits and offers accepted.
    pub appointments_accepted: AtomicU64,
    /// Credits and offers refused (any rule).
    pub appointments_refused: AtomicU64,
    /// Defences (credit submissions) sent.
    pub defences_sent: AtomicU64,
    /// Defences mined successfully.
    pub defences_mined: AtomicU64,
    /// Settlements sent.
    pub settlements_sent: AtomicU64,
    /// Fees paid to this tower (token base units, saturating).
    pub fees_earned: AtomicU64,
    /// Checkpoint leaves of watched users checked (spec §5.16).
    pub checkpoint_leaves_checked: AtomicU64,
    /// Complaints sent against checkpoints that misstate a watched user's credit.
    pub checkpoint_complaints_sent: AtomicU64,
    /// The chain head at the last poll.
    pub chain_head: AtomicU64,
    /// The newest block whose logs were scanned.
    pub scanned_through: AtomicU64,
}

struct Book {
    book: TowerBook,
    log: AppointmentLog<OsFs>,
}

/// The running tower, shared by the API and the defence loop.
pub struct Tower {
    /// The contract's EIP-712 domain.
    pub domain: Domain,
    /// The hub's address (signer of credits).
    pub hub: Address,
    /// The contract.
    pub contract: Address,
    /// The contract's challenge period.
    pub challenge_period_blocks: u64,
    /// Counters.
    pub metrics: TowerMetrics,
    key: PrivateKey,
    provider: DynProvider,
    book: Mutex<Book>,
    /// Complaints the defence loop sends next (it owns the transaction sender).
    complaints: Mutex<Vec<Complaint>>,
}

/// A complaint the tower found: checkpoint `id`'s leaf and path, and the credit it holds that
/// contradicts it.
#[derive(Clone, Debug)]
struct Complaint {
    id: u64,
    proof: LeafProof,
    credit: SignedCredit,
}

/// Most leaves one checkpoint push may carry (a user has a handful of leaves).
pub const MAX_LEAVES_PER_CHECKPOINT_PUSH: usize = 8;
/// Most complaints waiting for the defence loop.
const MAX_PENDING_COMPLAINTS: usize = 64;

/// The record as the contract returns it.
fn record_of(c: &IInfHub::Channel) -> ChannelRecord {
    infhub_chain::events::channel_record(c)
}

impl Tower {
    /// Connects to the chain, reads the contract's hub and challenge period, and replays the log.
    pub async fn open(config: &TowerConfig) -> Result<Tower, TowerError> {
        let provider = infhub_chain::anvil::connect(&config.rpc_url).await?;
        let chain_id = provider.get_chain_id().await.map_err(ChainError::rpc)?;
        let domain = Domain { chain_id, verifying_contract: config.contract };
        let hub = IInfHub::hubCall::abi_decode_returns(
            &call(&provider, config.contract, IInfHub::hubCall {}.abi_encode()).await?,
        )
        .map_err(|e| ChainError::RpcAnswerMalformed(format!("hub(): {e}")))?;
        let period = IInfHub::challengePeriodBlocksCall::abi_decode_returns(
            &call(&provider, config.contract, IInfHub::challengePeriodBlocksCall {}.abi_encode()).await?,
        )
        .map_err(|e| ChainError::RpcAnswerMalformed(format!("challengePeriodBlocks(): {e}")))?;
        let (mut log, records) = AppointmentLog::open(OsFs, &config.data_dir)?;
        let mut book = TowerBook::new(domain, hub, config.key.address(), config.terms);
        let replayed = records.len();
        for r in records {
            replay(&mut book, r);
        }
        if log.needs_compaction(book.len()) {
            log.compact(&live_records(&book))?;
        }
        tracing::info!(replayed, users = book.len(), tower = %config.key.address(), %hub, "tower book recovered");
        Ok(Tower {
            domain,
            hub,
            contract: config.contract,
            challenge_period_blocks: period,
            metrics: TowerMetrics::default(),
            key: config.key.clone(),
            provider,
            book: Mutex::new(Book { book, log }),
            complaints: Mutex::new(Vec::new()),
        })
    }

    /// The tower's address.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Users watched.
    pub fn watched_users(&self) -> usize {
        self.lock().book.len()
    }

    /// The terms.
    pub fn terms(&self) -> TowerTerms {
        self.lock().book.terms()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The contract's record of `user`'s channel at the head.
    pub async fn channel(&self, user: Address) -> Result<ChannelRecord, ChainError> {
        let raw = call(&self.provider, self.contract, IInfHub::channelCall { user }.abi_encode()).await?;
        let c = IInfHub::channelCall::abi_decode_returns(&raw)
            .map_err(|e| ChainError::RpcAnswerMalformed(format!("channel(): {e}")))?;
        Ok(record_of(&c))
    }

    /// The chain head.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(ChainError::rpc)
    }

    /// Takes a credit: checked against the chain's record of the user's channel, made durable,
    /// then answered with the tower's receipt.
    pub async fn accept_credit(&self, credit: SignedCredit, now_ms: u64) -> Result<SignedTowerReceipt, Refusal> {
        let user = credit.message.user;
        let chain = self.channel(user).await.map_err(Refusal::Chain)?;
        let mut b = self.lock();
        let result = b.book.accept_credit(credit.clone(), &chain, now_ms);
        self.finish(&mut b, result, TowerRecord::Credit(credit), user)
    }

    /// Takes a user-signed debit likewise (for the hub operator: a second line of defence
    /// against an exit with an older debit while the hub's node is down).
    pub async fn accept_debit(&self, debit: SignedDebit, now_ms: u64) -> Result<SignedTowerReceipt, Refusal> {
        let user = debit.message.user;
        let chain = self.channel(user).await.map_err(Refusal::Chain)?;
        let mut b = self.lock();
        let result = b.book.accept_debit(debit, &chain, now_ms);
        self.finish(&mut b, result, TowerRecord::Debit(debit), user)
    }

    /// Takes a fee offer likewise.
    pub async fn accept_offer(&self, offer: SignedTowerFee, now_ms: u64) -> Result<SignedTowerReceipt, Refusal> {
        let user = offer.message.user;
        let chain = self.channel(user).await.map_err(Refusal::Chain)?;
        let head = self.head().await.map_err(Refusal::Chain)?;
        let mut b = self.lock();
        let result = b.book.accept_offer(offer, &chain, head, now_ms);
        self.finish(&mut b, result, TowerRecord::Offer(offer), user)
    }

    fn finish(
        &self,
        b: &mut Book,
        result: Result<(), Error>,
        record: TowerRecord,
        user: Address,
    ) -> Result<SignedTowerReceipt, Refusal> {
        if let Err(e) = result {
            self.metrics.appointments_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Rule(e));
        }
        let appended = b.log.append(&record).and_then(|()| {
            if b.log.needs_compaction(b.book.len()) {
                let live = live_records(&b.book);
                b.log.compact(&live)?;
            }
            Ok(())
        });
        if let Err(e) = appended {
            // The book took it but the disk did not: this process can promise nothing more. Stop
            // (fail-stop, before answering); a restart replays the log, which holds every record
            // ever acknowledged.
            tracing::error!(error = %e, "tower log append failed; stopping the process");
            std::process::exit(70);
        }
        self.metrics.appointments_accepted.fetch_add(1, Ordering::Relaxed);
        Ok(b.book.receipt(user, &self.key).expect("an accepted record leaves an appointment"))
    }

    /// Checks the leaves of checkpoint `id` that someone (the hub's pusher, in practice) hands
    /// the tower for an offline user (spec §5.16): each must prove into the root the contract
    /// holds; a channel leaf that a credit the tower holds contradicts is queued for the defence
    /// loop to prove on chain (`complainContradictedCredit`, which halts the hub). The leaves
    /// are self-authenticating, so anyone may hand them over. Returns one verdict per leaf.
    pub async fn check_checkpoint(&self, id: u64, proofs: Vec<LeafProof>) -> Result<Vec<Value>, Refusal> {
        if proofs.is_empty() || proofs.len() > MAX_LEAVES_PER_CHECKPOINT_PUSH {
            return Err(Refusal::Rule(Error::BatchSizeOutOfRange));
        }
        let last = self.read(IInfHub::lastCheckpointIdCall {}).await.map_err(Refusal::Chain)?;
        if id == 0 || id > last {
            return Err(Refusal::Rule(Error::CheckpointOutOfOrder));
        }
        let c = self.read(IInfHub::checkpointsCall { id }).await.map_err(Refusal::Chain)?;
        let d = CheckpointDomain { chain_id: self.domain.chain_id, contract: self.contract, checkpoint_id: id };
        let root = SumNode { hash: c.root, sum: c.totalLiability };
        for p in &proofs {
            p.path.verify(p.leaf.node(&d), root).map_err(|e| Refusal::Rule(Error::from(e)))?;
        }
        let mut verdicts = Vec::with_capacity(proofs.len());
        for proof in proofs {
            self.metrics.checkpoint_leaves_checked.fetch_add(1, Ordering::Relaxed);
            let account = proof.leaf.account;
            let (watched, credit) = {
                let b = self.lock();
                (b.book.appointment(account).is_some(), b.book.contradicting_credit(&proof.leaf, c.ledgerSeq))
            };
            let verdict = match credit {
                None if watched => "ok",
                None => "not_watched",
                Some(credit) => {
                    let mut q = self.complaints.lock().unwrap_or_else(|p| p.into_inner());
                    if q.len() >= MAX_PENDING_COMPLAINTS {
                        return Err(Refusal::Rule(Error::TowerQuotaExceeded));
                    }
                    tracing::error!(%account, id, "tower: the hub's checkpoint misstates a watched user's credit");
                    q.push(Complaint { id, proof, credit });
                    "misstated"
                }
            };
            verdicts.push(json!({"account": account, "verdict": verdict}));
        }
        Ok(verdicts)
    }

    async fn read<C: SolCall>(&self, c: C) -> Result<C::Return, ChainError> {
        let raw = call(&self.provider, self.contract, c.abi_encode()).await?;
        C::abi_decode_returns(&raw).map_err(|e| ChainError::RpcAnswerMalformed(format!("{}: {e}", C::SIGNATURE)))
    }

    /// Sends the queued checkpoint complaints, unless the hub is halted already.
    async fn send_complaints(&self, sender: &mut TxSender) -> Result<(), ChainError> {
        let queued = std::mem::take(&mut *self.complaints.lock().unwrap_or_else(|p| p.into_inner()));
        if queued.is_empty() || self.read(IInfHub::haltedAtCheckpointCall {}).await? != 0 {
            return Ok(());
        }
        for c in queued {
            let input = complain_contradicted_credit_call(c.id, &c.proof, &c.credit).abi_encode();
            match sender.send(TxKind::Call(self.contract), Bytes::from(input)).await {
                Ok(sent) => {
                    self.metrics.checkpoint_complaints_sent.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(user = %c.proof.leaf.account, id = c.id, tx = %sent.hash, "tower: complaint sent; the hub will be halted");
                    return Ok(()); // one proof halts the hub
                }
                Err(e) => tracing::warn!(error = %e, "tower: complaint not sent"),
            }
        }
        Ok(())
    }

    /// What the tower holds for `user`, as its signed receipt.
    pub fn receipt(&self, user: Address) -> Option<SignedTowerReceipt> {
        self.lock().book.receipt(user, &self.key)
    }

    /// Runs the defence loop until `shutdown` turns true.
    pub async fn defend(
        &self,
        sender_config: SenderConfig,
        poll_interval_ms: u64,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut sender = loop {
            match TxSender::new(self.provider.clone(), self.key.secret_bytes().into(), sender_config).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "tower: cannot start the sender, retrying");
                    if wait(&mut shutdown, poll_interval_ms).await {
                        return;
                    }
                }
            }
        };
        let mut state = DefenceState::default();
        loop {
            if let Err(e) = self.defence_round(&mut sender, &mut state).await {
                tracing::warn!(error = %e, "tower: defence round failed, retrying");
            }
            if wait(&mut shutdown, poll_interval_ms).await {
                return;
            }
        }
    }

    async fn defence_round(&self, sender: &mut TxSender, st: &mut DefenceState) -> Result<(), ChainError> {
        let head = self.head().await?;
        self.metrics.chain_head.store(head, Ordering::Relaxed);
        self.scan_closes(head, st).await?;
        for outcome in sender.poll().await? {
            let nonce = match outcome {
                TxOutcome::Mined { nonce, success, .. } => {
                    if success {
                        if st.defences.contains(&nonce) {
                            self.metrics.defences_mined.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        tracing::warn!(nonce, "tower: a transaction reverted on chain (another party was first?)");
                    }
                    nonce
                }
                TxOutcome::NonceTakenElsewhere { nonce } => nonce,
            };
            st.defences.remove(&nonce);
            st.in_flight.retain(|_, n| *n != nonce);
        }
        let closing: Vec<Address> = st.closing.iter().copied().collect();
        for user in closing {
            self.defend_one(user, head, sender, st).await?;
        }
        self.send_complaints(sender).await
    }

    async fn defend_one(
        &self,
        user: Address,
        head: u64,
        sender: &mut TxSender,
        st: &mut DefenceState,
    ) -> Result<(), ChainError> {
        let record = self.channel(user).await?;
        let action = {
            let b = self.lock();
            let epoch = b.book.appointment(user).map(|a| a.epoch);
            if record.status == STATUS_SETTLED && epoch.is_some_and(|e| e <= record.epoch) {
                drop(b);
                self.forget(user, record.epoch);
                st.closing.remove(&user);
                return Ok(());
            }
            b.book.action(user, &record, head, self.challenge_period_blocks)
        };
        if record.status != infhub_core::tower::STATUS_CLOSING {
            st.closing.remove(&user);
            return Ok(());
        }
        if st.in_flight.contains_key(&user) {
            return Ok(());
        }
        let (input, is_defence) = match action {
            TowerAction::Nothing | TowerAction::WaitUntil(_) => return Ok(()),
            TowerAction::Settle => (IInfHub::settleCall { user }.abi_encode(), false),
            TowerAction::Submit { credit, offer } => (self.defence_call(&credit, offer.as_deref(), user).await, true),
            TowerAction::SubmitDebit(debit) => (submit_debit_call(&debit).abi_encode(), true),
        };
        match sender.send(TxKind::Call(self.contract), Bytes::from(input)).await {
            Ok(sent) => {
                st.in_flight.insert(user, sent.nonce);
                if is_defence {
                    st.defences.insert(sent.nonce);
                    self.metrics.defences_sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%user, tx = %sent.hash, "tower: defending a close with the newest credit");
                } else {
                    self.metrics.settlements_sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%user, tx = %sent.hash, "tower: settling");
                }
            }
            // Refused at estimation (someone else was first, the period ended): decided
            // again from the record next round.
            Err(e) => tracing::info!(%user, error = %e, "tower: transaction not sent"),
        }
        Ok(())
    }

    /// `submitCreditForFee` with the offer when the contract has room for this tower's fee;
    /// otherwise plain `submitCredit` (a defence never waits on a fee).
    async fn defence_call(&self, credit: &SignedCredit, offer: Option<&SignedTowerFee>, user: Address) -> Vec<u8> {
        let Some(offer) = offer else { return submit_credit_call(credit).abi_encode() };
        let fees = call(&self.provider, self.contract, IInfHub::towerFeesOfCall { user }.abi_encode())
            .await
            .ok()
            .and_then(|raw| IInfHub::towerFeesOfCall::abi_decode_returns(&raw).ok());
        let room = fees.is_some_and(|f| {
            f.len() < infhub_core::contract::MAX_TOWER_FEES_PER_CLOSE || f.iter().any(|r| r.tower == self.address())
        });
        if !room {
            return submit_credit_call(credit).abi_encode();
        }
        let o = offer.message;
        IInfHub::submitCreditForFeeCall {
            credit: credit_arg(&credit.message),
            hubSignature: Bytes::from(credit.proof_bytes()),
            offer: IInfHub::TowerFee {
                user: o.user,
                epoch: o.epoch,
                tower: o.tower,
                maxFee: o.max_fee.0,
                gainShareBps: o.gain_share_bps,
                validUntilBlock: o.valid_until_block,
            },
            userSignature: Bytes::from(offer.signature.0.to_vec()),
        }
        .abi_encode()
    }

    fn forget(&self, user: Address, epoch: u64) {
        let mut b = self.lock();
        b.book.forget(user, epoch);
        if let Err(e) = b.log.append(&TowerRecord::Forget { user, epoch }) {
            // Losing a Forget only means watching a settled channel again after a restart.
            tracing::warn!(error = %e, "tower: could not log a settled channel");
        }
    }

    /// Adds watched users whose channel began closing to `st.closing`, and counts fees paid
    /// to this tower, from the logs since the last scan.
    async fn scan_closes(&self, head: u64, st: &mut DefenceState) -> Result<(), ChainError> {
        let from = match st.scanned_through {
            // At start: half a period back, so a close begun while the tower was down is seen
            // (one begun earlier than a whole period ago can only be settled, which anyone may do).
            None => head.saturating_sub(self.challenge_period_blocks),
            Some(through) => through.saturating_sub(RESCAN_BLOCKS),
        };
        let mut start = from;
        while start <= head {
            let end = head.min(start + MAX_LOG_RANGE_BLOCKS - 1);
            let filter = Filter::new()
                .address(self.contract)
                .event_signature(vec![IInfHub::ExitStarted::SIGNATURE_HASH, IInfHub::TowerFeePaid::SIGNATURE_HASH])
                .from_block(start)
                .to_block(end);
            let logs = self.provider.get_logs(&filter).await.map_err(ChainError::rpc)?;
            for log in logs {
                if let Ok(e) = IInfHub::ExitStarted::decode_log_data(log.data()) {
                    if self.lock().book.appointment(e.user).is_some() {
                        st.closing.insert(e.user);
                    }
                } else if let Ok(p) = IInfHub::TowerFeePaid::decode_log_data(log.data()) {
                    let key = (log.transaction_hash.unwrap_or_default(), log.log_index.unwrap_or_default());
                    if p.tower == self.address() && st.fees_counted.insert(key) {
                        let fee = u64::try_from(p.amount).unwrap_or(u64::MAX);
                        self.metrics.fees_earned.fetch_add(fee, Ordering::Relaxed);
                    }
                }
            }
            start = end + 1;
        }
        st.scanned_through = Some(head);
        self.metrics.scanned_through.store(head, Ordering::Relaxed);
        Ok(())
    }
}

/// The defence loop's memory (rebuilt from the chain after a restart).
#[derive(Default)]
struct DefenceState {
    scanned_through: Option<u64>,
    closing: BTreeSet<Address>,
    /// user → nonce of its transaction in flight.
    in_flight: BTreeMap<Address, u64>,
    /// Nonces of defences in flight.
    defences: BTreeSet<u64>,
    fees_counted: BTreeSet<(alloy::primitives::B256, u64)>,
}

/// Why a credit or offer was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// It breaks a rule (named).
    Rule(Error),
    /// The chain could not be read to check it; retry.
    Chain(ChainError),
}

fn replay(book: &mut TowerBook, r: TowerRecord) {
    match r {
        TowerRecord::Credit(c) => book.restore_credit(c),
        TowerRecord::Offer(o) => book.restore_offer(o),
        TowerRecord::Debit(d) => book.restore_debit(d),
        TowerRecord::Forget { user, epoch } => book.forget(user, epoch),
    }
}

async fn call(provider: &DynProvider, to: Address, input: Vec<u8>) -> Result<alloy::primitives::Bytes, ChainError> {
    let tx = TransactionRequest::default().to(to).input(Bytes::from(input).into());
    provider.call(tx).await.map_err(ChainError::rpc)
}

/// Sleeps `ms` or until shutdown; true if shutting down.
async fn wait(shutdown: &mut tokio::sync::watch::Receiver<bool>, ms: u64) -> bool {
    tokio::select! {
        _ = shutdown.changed() => true,
        () = tokio::time::sleep(std::time::Duration::from_millis(ms)) => *shutdown.borrow(),
    }
}
