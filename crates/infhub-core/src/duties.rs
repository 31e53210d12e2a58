//! What the hub must get onto the chain, decided from its ledger alone.
//!
//! A duty is a function of the ledger's confirmed state, not of the events that led to it: a
//! closing channel whose contract record holds a lower debit total than the hub's newest debit
//! needs that debit submitted, and one holding a lower credit total than the hub's newest
//! credit needs that credit submitted (the hub pays what it acknowledged); a close whose challenge period is over needs a settlement; a
//! payout batch in flight needs its transaction; payers' unrealized debits, when liquidity calls
//! for it, need realizing; a checkpoint built and not yet on chain needs posting; a user's
//! challenge of the debit her leaf states needs her signed debit as the answer; a payer's lock
//! whose scalar the hub learned and she did not settle needs its point revealed in the
//! registry, registering while her channel closes, and `unlock` after the settlement. The shell (`infhub-hub`) sends each due duty's transaction, sends it
//! again if the duty is still due `resend_after_blocks` later, and stops once the confirmed
//! chain satisfies it. So a crash (the shell forgets what it sent), a reorg (a mined transaction
//! vanishes), a dropped or a reverted transaction all end the same way, and recovery after a
//! restart is no special code: the first evaluation finds every duty still due (spec §5.5,
//! §5.6, §5.10).
//!
//! Requests that no ledger state implies (opening channels for registrations, a hub close the
//! operator asks for, reserve withdrawals) are [`HubTx`]s too, sent once on request.

use crate::channel::{Status, LOCK_REVEAL_MARGIN_BLOCKS};
use crate::ledger::{CheckpointHeader, Ledger, PayoutBatch};
use crate::merkle::MerkleTree;
use crate::messages::{Eip712Message, SignedCredit, SignedDebit};
use crate::point_lock::{Lock, Scalar};
use crate::Amount;
use alloy_primitives::{Address, B256};
use std::collections::BTreeMap;

/// A transaction the hub sends to its contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubTx {
    /// `submitDebit`: answers a close with the user's newest debit.
    SubmitDebit(SignedDebit),
    /// `submitCredit`: the hub's own newest credit to a closing channel whose contract record
    /// holds a lower total (the hub pays what it acknowledged, whoever closed, §5.10).
    SubmitCredit(SignedCredit),
    /// `settle(user)` once the challenge period is over.
    Settle(Address),
    /// `payout(batchId, recipients, amounts)`.
    Payout(PayoutBatch),
    /// `realizeDebits(debits, signatures)`.
    RealizeDebits(Vec<SignedDebit>),
    /// `openChannels(users)`: registrations.
    OpenChannels(Vec<Address>),
    /// `startHubClose(user, debit, signature)` with the hub's newest debit of the user (none if
    /// the user never paid).
    HubClose {
        /// The channel's user.
        user: Address,
        /// The newest debit.
        debit: Option<SignedDebit>,
    },
    /// `announceReserveWithdrawal(amount)`.
    AnnounceReserveWithdrawal(Amount),
    /// `executeReserveWithdrawal(to)`.
    ExecuteReserveWithdrawal(Address),
    /// `cancelReserveWithdrawal()`.
    CancelReserveWithdrawal,
    /// `depositReserve(amount)`: a top-up from the hub key's tokens (approved first).
    DepositReserve(Amount),
    /// `postCheckpoint(id, root, totalLiability, ledgerSeq, chainBlock, inflowsThrough)`: the
    /// checkpoint the hub built and recorded (spec §5.16).
    PostCheckpoint(CheckpointHeader),
    /// `answerDebitChallenge(debit, userSignature)`: the user's own debit, covering the total
    /// her leaf states, against her challenge (spec §5.16).
    AnswerDebitChallenge(SignedDebit),
    /// `reveal(scalar)` on the chain's point registry: the hub opens a payer's lock it learned
    /// the scalar of and the payer did not settle (spec §5.11a, "no close because of a lock").
    RevealPoint(Scalar),
    /// `registerDebitLock(debit, userSignature, lock, path)`: a lock the user owes the hub,
    /// pending in her newest debit, registered while her channel closes (spec §5.11a).
    RegisterDebitLock {
        /// Her newest debit, which carries the lock.
        debit: SignedDebit,
        /// The lock leaf.
        lock: Lock,
        /// Its path to `debit.locksRoot`.
        path: Vec<B256>,
    },
    /// `unlockMany(proofDigests, lockIds)`: resolves registrations of a settled close.
    Unlock {
        /// The proofs' digests.
        proof_digests: Vec<B256>,
        /// The locks' ids, one per digest.
        lock_ids: Vec<B256>,
    },
    /// `approve(spender, amount)` on `token`: lets the hub contract pull a top-up.
    ApproveToken {
        /// The token contract (the call goes there, not to the hub contract).
        token: Address,
        /// The hub contract.
        spender: Address,
        /// The allowance.
        amount: Amount,
    },
}

impl HubTx {
    /// A short name for logs and notices.
    pub fn name(&self) -> &'static str {
        match self {
            HubTx::SubmitDebit(_) => "submit_debit",
            HubTx::SubmitCredit(_) => "submit_credit",
            HubTx::Settle(_) => "settle",
            HubTx::Payout(_) => "payout",
            HubTx::RealizeDebits(_) => "realize_debits",
            HubTx::OpenChannels(_) => "open_channels",
            HubTx::HubClose { .. } => "hub_close",
            HubTx::AnnounceReserveWithdrawal(_) => "announce_reserve_withdrawal",
            HubTx::ExecuteReserveWithdrawal(_) => "execute_reserve_withdrawal",
            HubTx::CancelReserveWithdrawal => "cancel_reserve_withdrawal",
            HubTx::DepositReserve(_) => "deposit_reserve",
            HubTx::ApproveToken { .. } => "approve_token",
            HubTx::PostCheckpoint(_) => "post_checkpoint",
            HubTx::AnswerDebitChallenge(_) => "answer_debit_challenge",
            HubTx::RevealPoint(_) => "reveal_point",
            HubTx::RegisterDebitLock { .. } => "register_debit_lock",
            HubTx::Unlock { .. } => "unlock",
        }
    }

    /// The contract the transaction calls: the hub contract `hub_contract`, the token, or the
    /// chain's point registry `point_registry`.
    pub fn target(&self, hub_contract: Address, point_registry: Address) -> Address {
        match self {
            HubTx::ApproveToken { token, .. } => *token,
            HubTx::RevealPoint(_) => point_registry,
            _ => hub_contract,
        }
    }

    /// The one account the transaction is about, if it is about one.
    pub fn user(&self) -> Option<Address> {
        match self {
            HubTx::SubmitDebit(d) | HubTx::AnswerDebitChallenge(d) | HubTx::RegisterDebitLock { debit: d, .. } => {
                Some(d.message.user)
            }
            HubTx::SubmitCredit(c) => Some(c.message.user),
            HubTx::Settle(u) | HubTx::HubClose { user: u, .. } => Some(*u),
            HubTx::OpenChannels(users) if users.len() == 1 => Some(users[0]),
            _ => None,
        }
    }
}

/// What a duty is about: at most one transaction per key is in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DutyKey {
    /// Answering the close of this channel with the newest debit.
    Dispute(Address),
    /// Putting the hub's newest credit of this closing channel on record.
    HonourCredit(Address),
    /// Settling this channel.
    Settle(Address),
    /// Executing the payout batch of this id.
    Payout(B256),
    /// Realizing debits (one batch at a time).
    Realize,
    /// Posting the checkpoint built.
    PostCheckpoint,
    /// Answering this user's debit challenge.
    AnswerDebitChallenge(Address),
    /// Revealing this point in the registry.
    RevealPoint(Address),
    /// Registering a lock: (proof digest, lock id).
    RegisterLock(B256, B256),
    /// Resolving the registrations of this (user, epoch).
    Unlock(Address, u64),
}

/// A duty: its key and the transaction that discharges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duty {
    /// What it is about.
    pub key: DutyKey,
    /// The transaction to send.
    pub tx: HubTx,
}

/// When the hub realizes debits (spec §5.6): gas is the cost, so only when liquidity calls for
/// it, and many at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealizePolicy {
    /// Realize (largest first) while free reserve is below this.
    pub when_free_reserve_below: Amount,
    /// Realize any payer whose realizable amount reaches this, whatever the free reserve.
    pub when_payer_reaches: Amount,
    /// Most debits per transaction (at most the contract's `MAX_REALIZE_BATCH`).
    pub max_per_tx: usize,
}

impl RealizePolicy {
    /// Never realizes.
    pub const OFF: RealizePolicy =
        RealizePolicy { when_free_reserve_below: Amount::ZERO, when_payer_reaches: Amount(u128::MAX), max_per_tx: 0 };
}

/// Every duty due by the ledger's confirmed state, in a stable order (disputes and settlements
/// by address, payout batches oldest first, then the realization, then the checkpoint built).
pub fn due(ledger: &Ledger, policy: &RealizePolicy) -> Vec<Duty> {
    let mut duties = Vec::new();
    for user in ledger.busy_channels() {
        let Some(acct) = ledger.account(user) else { continue };
        let ch = &acct.channel;
        let Status::Closing { settle_block } = ch.status else { continue };
        if ledger.block >= settle_block {
            duties.push(Duty { key: DutyKey::Settle(*user), tx: HubTx::Settle(*user) });
            continue;
        }
        // Totals decide on chain (§5.10): only a higher total than the contract holds counts.
        if let Some(d) = ch.debit.filter(|d| d.message.cumulative_debit > ch.chain_debit_total) {
            duties.push(Duty { key: DutyKey::Dispute(*user), tx: HubTx::SubmitDebit(d) });
        }
        // The hub's own word: a credit it issued counts at settlement even if the user is away
        // (a hub close of a dormant channel) or closed with an older one.
        if let Some(c) = ch.credit.clone().filter(|c| c.message.cumulative_credit > ch.chain_credit_total) {
            duties.push(Duty { key: DutyKey::HonourCredit(*user), tx: HubTx::SubmitCredit(c) });
        }
    }
    // A halted contract refuses every payout: sending one would only burn gas.
    if ledger.checkpoints.halted_at.is_none() {
        for batch in ledger.payout_batches_in_flight() {
            duties.push(Duty { key: DutyKey::Payout(batch.id), tx: HubTx::Payout(batch.clone()) });
        }
    }
    if let Some(debits) = realizations_due(ledger, policy) {
        duties.push(Duty { key: DutyKey::Realize, tx: HubTx::RealizeDebits(debits) });
    }
    if let Some(header) = ledger.checkpoints.pending.filter(|_| ledger.checkpoints.halted_at.is_none()) {
        duties.push(Duty { key: DutyKey::PostCheckpoint, tx: HubTx::PostCheckpoint(header) });
    }
    for (user, c) in &ledger.checkpoints.debit_challenges {
        if ledger.block > c.answer_by_block {
            continue;
        }
        // Her newest debit of the challenged epoch covers the total an honest leaf states (the
        // contract admits challenges of the open channel's epoch only).
        let answer = ledger
            .account(user)
            .and_then(|a| a.channel.debit)
            .filter(|d| d.message.epoch == c.epoch && d.message.cumulative_debit >= c.debit_total);
        if let Some(d) = answer {
            duties.push(Duty { key: DutyKey::AnswerDebitChallenge(*user), tx: HubTx::AnswerDebitChallenge(d) });
        }
    }
    lock_duties(ledger, &mut duties);
    duties
}

/// The hub's duties for the locks it is owed (spec §5.11a): reveal in the registry the scalar
/// of a payer's lock the payer has not settled, once her lock nears its expiry (from the
/// payee's expiry on: the margin the hub kept for this) or her channel closes; register her
/// pending locks while her channel closes (the ones not expired, which could still open); and
/// after the settlement, resolve with `unlock` every followed registration that is revealed or
/// expired, so the hub is paid and the rest of the escrow goes back.
fn lock_duties(ledger: &Ledger, duties: &mut Vec<Duty>) {
    let links = &ledger.locks;
    for ((payer, lock_id), scalar) in links.opened() {
        let Some(ch) = ledger.account(&payer).map(|a| &a.channel) else { continue };
        let Some(lock) = ch.debit_locks.get(&lock_id) else { continue };
        let waiting =
            ch.status == Status::Open && ledger.block.saturating_add(LOCK_REVEAL_MARGIN_BLOCKS) < lock.expiry_block;
        if waiting || ledger.block > lock.expiry_block || links.revealed_at(&lock.point).is_some() {
            continue;
        }
        duties.push(Duty { key: DutyKey::RevealPoint(lock.point), tx: HubTx::RevealPoint(scalar) });
    }
    for user in ledger.busy_channels() {
        let Some(ch) = ledger.account(user).map(|a| &a.channel) else { continue };
        let (Status::Closing { settle_block }, Some(debit)) = (ch.status, ch.debit) else { continue };
        if ledger.block >= settle_block || ch.debit_locks.is_empty() {
            continue;
        }
        let domain = &ledger.params.domain;
        let tree = MerkleTree::new(ch.debit_locks.iter().map(|l| l.digest(domain)).collect());
        if tree.root() != debit.message.locks_root {
            continue; // never so: the book is the one the debit signed
        }
        let digest = debit.message.digest(domain);
        for lock in ch.debit_locks.iter() {
            let may_open = ledger.block <= lock.expiry_block || links.revealed_at(&lock.point).is_some();
            if !may_open || links.is_registered(digest, lock.lock_id) {
                continue;
            }
            let Some(path) = tree.path(lock.digest(domain)) else { continue };
            let tx = HubTx::RegisterDebitLock { debit, lock: *lock, path: path.nodes().to_vec() };
            duties.push(Duty { key: DutyKey::RegisterLock(digest, lock.lock_id), tx });
        }
    }
    let mut unlocks: BTreeMap<(Address, u64), (Vec<B256>, Vec<B256>)> = BTreeMap::new();
    for ((digest, lock_id), r) in links.registered() {
        let settled =
            ledger.account(&r.user).is_some_and(|a| a.channel.epoch > r.epoch || a.channel.status == Status::Settled);
        let revealed = links.revealed_at(&r.lock.point).is_some_and(|at| at <= r.lock.expiry_block);
        if !settled || !(revealed || ledger.block > r.lock.expiry_block) {
            continue;
        }
        let batch = unlocks.entry((r.user, r.epoch)).or_default();
        if batch.0.len() < crate::contract::MAX_UNLOCK_BATCH {
            batch.0.push(digest);
            batch.1.push(lock_id);
        }
    }
    for ((user, epoch), (proof_digests, lock_ids)) in unlocks {
        duties.push(Duty { key: DutyKey::Unlock(user, epoch), tx: HubTx::Unlock { proof_digests, lock_ids } });
    }
}

/// The debits to realize now, largest realizable amount first, if the policy calls for any:
/// while free reserve is below the threshold, the largest ones; otherwise those that reach the
/// per-payer threshold.
pub fn realizations_due(ledger: &Ledger, policy: &RealizePolicy) -> Option<Vec<SignedDebit>> {
    let max = policy.max_per_tx.min(crate::contract::MAX_REALIZE_BATCH);
    let low = ledger.free_reserve() < policy.when_free_reserve_below.0;
    let debits: Vec<SignedDebit> = ledger
        .largest_realizable()
        .take_while(|(amount, _)| low || *amount >= policy.when_payer_reaches.0)
        .take(max)
        .filter_map(|(_, user)| ledger.account(&user).and_then(|a| a.channel.debit))
        .collect();
    (!debits.is_empty()).then_some(debits)
}
