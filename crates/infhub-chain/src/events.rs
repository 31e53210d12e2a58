//! Translation between the contract's ABI and the core's types: contract logs become the
//! core's [`ChainEvent`]s (the only form the ledger consumes), and the core's signed messages
//! become call arguments. Kept apart from the watcher so the mapping is tested on its own.

use crate::bindings::{IInfHub, IPointRegistry};
use crate::error::ChainError;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::sol_types::SolEvent;
use infhub_core::contract::PostedCheckpoint;
use infhub_core::duties::HubTx;
use infhub_core::ledger::{ChainEvent, CheckpointHeader};
use infhub_core::messages::{Signed, SignedCredit, SignedDebit};
use infhub_core::point_lock::Scalar;
use infhub_core::{Amount, Credit, Debit, Withdrawal};

/// A contract log as the watcher fetched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawLog {
    /// Block number.
    pub block_number: u64,
    /// Hash of the block that holds the log.
    pub block_hash: B256,
    /// Index of the log within its block.
    pub log_index: u64,
    /// Emitting contract.
    pub address: Address,
    /// Topics (the first is the event signature).
    pub topics: Vec<B256>,
    /// ABI-encoded non-indexed fields.
    pub data: Bytes,
    /// The transaction that emitted it, where the source knows it (for operators' reports).
    pub transaction_hash: Option<B256>,
}

fn amount(v: U256, field: &'static str) -> Result<Amount, ChainError> {
    u128::try_from(v).map(Amount).map_err(|_| ChainError::EventAmountOutOfRange { field })
}

/// Decodes one hub-contract log. `Ok(None)` for events the ledger does not consume
/// (per-recipient payout logs and returned excess, which the node reads elsewhere).
pub fn decode_event(log: &RawLog) -> Result<Option<ChainEvent>, ChainError> {
    let Some(sig) = log.topics.first().copied() else { return Ok(None) };
    let topics = log.topics.iter().copied();
    let data = &log.data[..];
    let bad = |e: alloy::sol_types::Error| ChainError::EventUndecodable(e.to_string());
    let ev = if sig == IInfHub::ChannelOpened::SIGNATURE_HASH {
        let e = IInfHub::ChannelOpened::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::ChannelOpened { user: e.user, epoch: e.epoch, opened_by: e.openedBy }
    } else if sig == IInfHub::ChannelRegistered::SIGNATURE_HASH {
        let e = IInfHub::ChannelRegistered::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::ChannelRegistered { user: e.user, epoch: e.epoch }
    } else if sig == IInfHub::Deposited::SIGNATURE_HASH {
        let e = IInfHub::Deposited::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::Deposited {
            user: e.user,
            epoch: e.epoch,
            total_deposited: amount(e.totalDeposited, "totalDeposited")?,
        }
    } else if sig == IInfHub::Withdrawn::SIGNATURE_HASH {
        let e = IInfHub::Withdrawn::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::Withdrawn {
            user: e.user,
            epoch: e.epoch,
            total_withdrawn: amount(e.totalWithdrawn, "totalWithdrawn")?,
            from_reserve: amount(e.fromReserve, "fromReserve")?,
        }
    } else if sig == IInfHub::ExitStarted::SIGNATURE_HASH {
        let e = IInfHub::ExitStarted::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::ExitStarted { user: e.user, epoch: e.epoch, settle_block: e.settleBlock }
    } else if sig == IInfHub::DebitSubmitted::SIGNATURE_HASH {
        let e = IInfHub::DebitSubmitted::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::DebitSubmitted {
            user: e.user,
            epoch: e.epoch,
            cumulative: amount(e.cumulativeDebit, "cumulativeDebit")?,
        }
    } else if sig == IInfHub::CreditSubmitted::SIGNATURE_HASH {
        let e = IInfHub::CreditSubmitted::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::CreditSubmitted {
            user: e.user,
            epoch: e.epoch,
            cumulative: amount(e.cumulativeCredit, "cumulativeCredit")?,
        }
    } else if sig == IInfHub::DebitRealized::SIGNATURE_HASH {
        let e = IInfHub::DebitRealized::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::DebitRealized {
            user: e.user,
            epoch: e.epoch,
            moved: amount(e.moved, "moved")?,
            reserve_after: amount(e.reserveAfter, "reserveAfter")?,
        }
    } else if sig == IInfHub::Settled::SIGNATURE_HASH {
        let e = IInfHub::Settled::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::Settled {
            user: e.user,
            epoch: e.epoch,
            paid: amount(e.paid, "paid")?,
            reserve_after: amount(e.reserveAfter, "reserveAfter")?,
        }
    } else if sig == IInfHub::ReserveDeposited::SIGNATURE_HASH {
        let e = IInfHub::ReserveDeposited::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::ReserveDeposited { reserve_after: amount(e.reserveAfter, "reserveAfter")? }
    } else if sig == IInfHub::CustodialDeposited::SIGNATURE_HASH {
        let e = IInfHub::CustodialDeposited::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::CustodialDeposited {
            account: e.account,
            amount: amount(e.amount, "amount")?,
            reserve_after: amount(e.reserveAfter, "reserveAfter")?,
        }
    } else if sig == IInfHub::ReserveWithdrawn::SIGNATURE_HASH {
        let e = IInfHub::ReserveWithdrawn::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::ReserveWithdrawn {
            amount: amount(e.amount, "amount")?,
            reserve_after: amount(e.reserveAfter, "reserveAfter")?,
        }
    } else if sig == IInfHub::PayoutBatchExecuted::SIGNATURE_HASH {
        let e = IInfHub::PayoutBatchExecuted::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::PayoutBatchExecuted {
            batch_id: e.batchId,
            total: amount(e.total, "total")?,
            reserve_after: amount(e.reserveAfter, "reserveAfter")?,
        }
    } else if sig == IInfHub::ExcessToReserve::SIGNATURE_HASH || sig == IInfHub::EscrowToReserve::SIGNATURE_HASH {
        to_reserve_event(log)?
    } else if sig == IInfHub::ReserveWithdrawalAnnounced::SIGNATURE_HASH {
        let e = IInfHub::ReserveWithdrawalAnnounced::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::ReserveWithdrawalAnnounced { amount: amount(e.amount, "amount")?, unlock_block: e.unlockBlock }
    } else if sig == IInfHub::ReserveWithdrawalCancelled::SIGNATURE_HASH {
        let e = IInfHub::ReserveWithdrawalCancelled::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::ReserveWithdrawalCancelled { amount: amount(e.amount, "amount")? }
    } else if CHECKPOINT_EVENTS.contains(&sig) {
        checkpoint_event(log)?
    } else if LOCK_EVENTS.contains(&sig) {
        lock_event(log)?
    } else {
        return Ok(None);
    };
    Ok(Some(ev))
}

/// The point registry's and the hub contract's lock events (spec §5.11a, §5.17).
const LOCK_EVENTS: [B256; 3] = [
    IPointRegistry::PointRevealed::SIGNATURE_HASH,
    IInfHub::LockRegistered::SIGNATURE_HASH,
    IInfHub::LockResolved::SIGNATURE_HASH,
];

fn lock_event(log: &RawLog) -> Result<ChainEvent, ChainError> {
    let bad = |e: alloy::sol_types::Error| ChainError::EventUndecodable(e.to_string());
    let (topics, data) = (log.topics.iter().copied(), &log.data[..]);
    let sig = log.topics[0];
    Ok(if sig == IPointRegistry::PointRevealed::SIGNATURE_HASH {
        let e = IPointRegistry::PointRevealed::decode_raw_log(topics, data).map_err(bad)?;
        let scalar =
            Scalar::new(e.scalar).map_err(|_| ChainError::EventUndecodable("a revealed scalar out of range".into()))?;
        ChainEvent::PointRevealed { point: e.point, scalar }
    } else if sig == IInfHub::LockRegistered::SIGNATURE_HASH {
        let e = IInfHub::LockRegistered::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::LockRegistered {
            user: e.user,
            epoch: e.epoch,
            hub_locks: e.direction == HUB_LOCKS,
            proof_digest: e.proofDigest,
            lock_id: e.lockId,
            amount: Amount(e.amount),
        }
    } else {
        let e = IInfHub::LockResolved::decode_raw_log(topics, data).map_err(bad)?;
        ChainEvent::LockResolved { user: e.user, epoch: e.epoch, proof_digest: e.proofDigest, lock_id: e.lockId }
    })
}

/// The contract's `HUB_LOCKS` direction (the hub's locks to a user; `USER_LOCKS` is 0).
const HUB_LOCKS: u8 = 1;

/// `ExcessToReserve` and `EscrowToReserve`: tokens already in the contract join the reserve.
fn to_reserve_event(log: &RawLog) -> Result<ChainEvent, ChainError> {
    let bad = |e: alloy::sol_types::Error| ChainError::EventUndecodable(e.to_string());
    let (topics, data) = (log.topics.iter().copied(), &log.data[..]);
    if log.topics.first() == Some(&IInfHub::ExcessToReserve::SIGNATURE_HASH) {
        let e = IInfHub::ExcessToReserve::decode_raw_log(topics, data).map_err(bad)?;
        return Ok(ChainEvent::ExcessToReserve {
            amount: amount(e.amount, "amount")?,
            reserve_after: amount(e.reserveAfter, "reserveAfter")?,
        });
    }
    let e = IInfHub::EscrowToReserve::decode_raw_log(topics, data).map_err(bad)?;
    Ok(ChainEvent::EscrowToReserve {
        amount: amount(e.amount, "amount")?,
        reserve_after: amount(e.reserveAfter, "reserveAfter")?,
    })
}

/// The events of the contract's checkpoint module, decoded by [`checkpoint_event`].
const CHECKPOINT_EVENTS: [B256; 4] = [
    IInfHub::CheckpointPosted::SIGNATURE_HASH,
    IInfHub::HubHaltedByComplaint::SIGNATURE_HASH,
    IInfHub::DebitChallenged::SIGNATURE_HASH,
    IInfHub::DebitChallengeAnswered::SIGNATURE_HASH,
];

/// `CheckpointPosted`, `HubHaltedByComplaint` and the debit challenge's events (spec §5.16).
fn checkpoint_event(log: &RawLog) -> Result<ChainEvent, ChainError> {
    let bad = |e: alloy::sol_types::Error| ChainError::EventUndecodable(e.to_string());
    let topics = log.topics.iter().copied();
    let sig = log.topics.first();
    if sig == Some(&IInfHub::HubHaltedByComplaint::SIGNATURE_HASH) {
        let e = IInfHub::HubHaltedByComplaint::decode_raw_log(topics, &log.data[..]).map_err(bad)?;
        return Ok(ChainEvent::HubHalted { id: e.id });
    }
    if sig == Some(&IInfHub::DebitChallenged::SIGNATURE_HASH) {
        let e = IInfHub::DebitChallenged::decode_raw_log(topics, &log.data[..]).map_err(bad)?;
        return Ok(ChainEvent::DebitChallenged {
            id: e.id,
            account: e.account,
            epoch: e.epoch,
            debit_total: Amount(e.debitTotal),
            answer_by_block: e.answerByBlock,
        });
    }
    if sig == Some(&IInfHub::DebitChallengeAnswered::SIGNATURE_HASH) {
        let e = IInfHub::DebitChallengeAnswered::decode_raw_log(topics, &log.data[..]).map_err(bad)?;
        return Ok(ChainEvent::DebitChallengeAnswered { account: e.account });
    }
    let e = IInfHub::CheckpointPosted::decode_raw_log(topics, &log.data[..]).map_err(bad)?;
    let checkpoint = PostedCheckpoint {
        root: e.root,
        total_liability: e.totalLiability,
        ledger_seq: e.ledgerSeq,
        chain_block: e.chainBlock,
        inflows_through: e.inflowsThrough,
    };
    Ok(ChainEvent::CheckpointPosted(CheckpointHeader { id: e.id, checkpoint }))
}

/// The contract's form of a debit.
pub fn debit_arg(d: &Debit) -> IInfHub::Debit {
    IInfHub::Debit {
        user: d.user,
        epoch: d.epoch,
        nonce: d.nonce,
        cumulativeDebit: d.cumulative_debit.0,
        lockedAmount: d.locked_amount.0,
        locksRoot: d.locks_root,
        kind: d.kind,
        recipient: d.recipient,
        amount: d.amount.0,
        paymentId: d.payment_id,
    }
}

/// The contract's record of a channel as a tower reads it.
pub fn channel_record(c: &IInfHub::Channel) -> infhub_core::tower::ChannelRecord {
    infhub_core::tower::ChannelRecord {
        status: c.status,
        epoch: c.epoch,
        settle_block: c.settleBlock,
        credit_total: infhub_core::Amount(c.credit.cumulative),
        debit_total: infhub_core::Amount(c.debit.cumulative),
    }
}

/// The contract's form of a credit.
pub fn credit_arg(c: &Credit) -> IInfHub::Credit {
    IInfHub::Credit {
        user: c.user,
        epoch: c.epoch,
        nonce: c.nonce,
        cumulativeCredit: c.cumulative_credit.0,
        lockedAmount: c.locked_amount.0,
        locksRoot: c.locks_root,
    }
}

/// The contract's form of a checkpoint leaf.
pub fn checkpoint_leaf_arg(l: &infhub_core::checkpoint::Leaf) -> IInfHub::CheckpointLeaf {
    IInfHub::CheckpointLeaf {
        account: l.account,
        kind: l.kind as u8,
        epoch: l.epoch,
        deposited: l.deposited.0,
        withdrawn: l.withdrawn.0,
        creditNonce: l.credit_nonce,
        creditTotal: l.credit_total.0,
        debitNonce: l.debit_nonce,
        debitTotal: l.debit_total.0,
        liability: l.liability.0,
        salt: l.salt,
    }
}

/// The contract's form of a checkpoint path's siblings.
pub fn siblings_arg(path: &infhub_core::checkpoint::SumPath) -> Vec<IInfHub::SumNode> {
    path.siblings.iter().map(|n| IInfHub::SumNode { hash: n.hash, sum: n.sum }).collect()
}

/// `complainContradictedCredit(id, leaf, index, siblings, credit, hubSignature)` (spec §5.16).
pub fn complain_contradicted_credit_call(
    id: u64,
    proof: &infhub_core::checkpoint::LeafProof,
    credit: &SignedCredit,
) -> IInfHub::complainContradictedCreditCall {
    IInfHub::complainContradictedCreditCall {
        id,
        leaf: checkpoint_leaf_arg(&proof.leaf),
        index: U256::from(proof.path.index),
        siblings: siblings_arg(&proof.path),
        credit: credit_arg(&credit.message),
        hubSignature: credit.proof_bytes().into(),
    }
}

/// `complainMisstatedChainTotals(id, leaf, index, siblings)` (spec §5.16).
pub fn complain_chain_totals_call(
    id: u64,
    proof: &infhub_core::checkpoint::LeafProof,
) -> IInfHub::complainMisstatedChainTotalsCall {
    IInfHub::complainMisstatedChainTotalsCall {
        id,
        leaf: checkpoint_leaf_arg(&proof.leaf),
        index: U256::from(proof.path.index),
        siblings: siblings_arg(&proof.path),
    }
}

/// `challengeDebit(id, leaf, index, siblings)` (spec §5.16).
pub fn challenge_debit_call(id: u64, proof: &infhub_core::checkpoint::LeafProof) -> IInfHub::challengeDebitCall {
    IInfHub::challengeDebitCall {
        id,
        leaf: checkpoint_leaf_arg(&proof.leaf),
        index: U256::from(proof.path.index),
        siblings: siblings_arg(&proof.path),
    }
}

/// `startExitFromCheckpoint(id, leaf, index, siblings)` (spec §5.16).
pub fn exit_from_checkpoint_call(
    id: u64,
    proof: &infhub_core::checkpoint::LeafProof,
) -> IInfHub::startExitFromCheckpointCall {
    IInfHub::startExitFromCheckpointCall {
        id,
        leaf: checkpoint_leaf_arg(&proof.leaf),
        index: U256::from(proof.path.index),
        siblings: siblings_arg(&proof.path),
    }
}

/// The contract's form of a withdrawal.
pub fn withdrawal_arg(w: &Withdrawal) -> IInfHub::Withdrawal {
    IInfHub::Withdrawal {
        user: w.user,
        epoch: w.epoch,
        cumulativeWithdrawn: w.cumulative_withdrawn.0,
        expiryBlock: w.expiry_block,
    }
}

/// A 65-byte signature as call data.
pub fn signature_arg<M>(s: &Signed<M>) -> Bytes {
    Bytes::copy_from_slice(&s.signature.0)
}

/// `submitDebit` call data for a signed debit (the hub's answer to an exit).
pub fn submit_debit_call(d: &SignedDebit) -> IInfHub::submitDebitCall {
    IInfHub::submitDebitCall { debit: debit_arg(&d.message), userSignature: signature_arg(d) }
}

/// `submitCredit` call data for a signed credit (the user's answer to a hub close).
pub fn submit_credit_call(c: &SignedCredit) -> IInfHub::submitCreditCall {
    IInfHub::submitCreditCall { credit: credit_arg(&c.message), hubSignature: Bytes::from(c.proof_bytes()) }
}

/// The empty debit (nonce 0) a hub close carries when the user never paid.
pub fn empty_debit_arg(user: Address) -> IInfHub::Debit {
    debit_arg(&Debit::none(user, 0))
}

/// The call data of a hub transaction (to the contract [`HubTx::target`] names).
pub fn hub_tx_call(tx: &HubTx) -> Vec<u8> {
    use alloy::sol_types::SolCall;
    match tx {
        HubTx::SubmitDebit(d) => submit_debit_call(d).abi_encode(),
        HubTx::SubmitCredit(c) => submit_credit_call(c).abi_encode(),
        HubTx::Settle(user) => IInfHub::settleCall { user: *user }.abi_encode(),
        HubTx::Payout(batch) => IInfHub::payoutCall {
            batchId: batch.id,
            recipients: batch.payouts.iter().map(|p| p.recipient).collect(),
            amounts: batch.payouts.iter().map(|p| U256::from(p.amount.0)).collect(),
        }
        .abi_encode(),
        HubTx::RealizeDebits(debits) => IInfHub::realizeDebitsCall {
            debits: debits.iter().map(|d| debit_arg(&d.message)).collect(),
            userSignatures: debits.iter().map(signature_arg).collect(),
        }
        .abi_encode(),
        HubTx::OpenChannels(users) => IInfHub::openChannelsCall { users: users.clone() }.abi_encode(),
        HubTx::HubClose { user, debit } => {
            let (arg, sig) = match debit {
                Some(d) => (debit_arg(&d.message), signature_arg(d)),
                None => (empty_debit_arg(*user), Bytes::new()),
            };
            IInfHub::startHubCloseCall { user: *user, debit: arg, userSignature: sig }.abi_encode()
        }
        HubTx::AnnounceReserveWithdrawal(amount) => {
            IInfHub::announceReserveWithdrawalCall { amount: U256::from(amount.0) }.abi_encode()
        }
        HubTx::ExecuteReserveWithdrawal(to) => IInfHub::executeReserveWithdrawalCall { to: *to }.abi_encode(),
        HubTx::CancelReserveWithdrawal => IInfHub::cancelReserveWithdrawalCall {}.abi_encode(),
        HubTx::DepositReserve(amount) => IInfHub::depositReserveCall { amount: U256::from(amount.0) }.abi_encode(),
        HubTx::PostCheckpoint(h) => IInfHub::postCheckpointCall {
            id: h.id,
            root: h.checkpoint.root,
            totalLiability: h.checkpoint.total_liability,
            ledgerSeq: h.checkpoint.ledger_seq,
            chainBlock: h.checkpoint.chain_block,
            inflowsThrough: h.checkpoint.inflows_through,
        }
        .abi_encode(),
        HubTx::AnswerDebitChallenge(d) => {
            IInfHub::answerDebitChallengeCall { debit: debit_arg(&d.message), userSignature: signature_arg(d) }
                .abi_encode()
        }
        HubTx::RevealPoint(scalar) => IPointRegistry::revealCall { scalar: scalar.value() }.abi_encode(),
        HubTx::RegisterDebitLock { debit, lock, path } => IInfHub::registerDebitLockCall {
            debit: debit_arg(&debit.message),
            userSignature: signature_arg(debit),
            lock: lock_arg(lock),
            path: path.clone(),
        }
        .abi_encode(),
        HubTx::Unlock { proof_digests, lock_ids } => {
            IInfHub::unlockManyCall { proofDigests: proof_digests.clone(), lockIds: lock_ids.clone() }.abi_encode()
        }
        HubTx::ApproveToken { spender, amount, .. } => {
            crate::bindings::IErc20::approveCall { spender: *spender, amount: U256::from(amount.0) }.abi_encode()
        }
    }
}

/// The contract's form of a lock leaf (spec §5.17).
pub fn lock_arg(l: &infhub_core::point_lock::Lock) -> IInfHub::Lock {
    IInfHub::Lock { lockId: l.lock_id, amount: l.amount.0, expiryBlock: l.expiry_block, point: l.point }
}

/// `registerDebitLock` call data: a lock the user owes through her signed debit (spec §5.11a).
pub fn register_debit_lock_call(
    d: &SignedDebit,
    lock: &infhub_core::point_lock::Lock,
    path: &infhub_core::merkle::MerklePath,
) -> IInfHub::registerDebitLockCall {
    IInfHub::registerDebitLockCall {
        debit: debit_arg(&d.message),
        userSignature: signature_arg(d),
        lock: lock_arg(lock),
        path: path.nodes().to_vec(),
    }
}

/// `registerCreditLock` call data: a lock the hub owes through its signed credit (spec §5.11a).
pub fn register_credit_lock_call(
    c: &SignedCredit,
    lock: &infhub_core::point_lock::Lock,
    path: &infhub_core::merkle::MerklePath,
) -> IInfHub::registerCreditLockCall {
    IInfHub::registerCreditLockCall {
        credit: credit_arg(&c.message),
        hubSignature: Bytes::from(c.proof_bytes()),
        lock: lock_arg(lock),
        path: path.nodes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::{SolCall, SolEvent};

    fn raw(topics: Vec<B256>, data: Vec<u8>) -> RawLog {
        RawLog {
            block_number: 1,
            block_hash: B256::ZERO,
            log_index: 0,
            address: Address::ZERO,
            topics,
            data: data.into(),
            transaction_hash: None,
        }
    }

    #[test]
    fn deposit_log_round_trips_into_a_chain_event() {
        let user = Address::repeat_byte(7);
        let e = IInfHub::Deposited {
            user,
            epoch: 3,
            from: Address::repeat_byte(9),
            amount: U256::from(5),
            totalDeposited: U256::from(12),
        };
        let data = e.encode_log_data();
        let log = raw(data.topics().to_vec(), data.data.to_vec());
        assert_eq!(
            decode_event(&log).expect("decodes"),
            Some(ChainEvent::Deposited { user, epoch: 3, total_deposited: Amount(12) })
        );
    }

    /// The registry's reveal and the contract's lock registration and resolution become the
    /// ledger's events (the direction by the contract's constant, a zero scalar refused), and
    /// the hub's lock transactions go to the contract that defines them.
    #[test]
    fn lock_logs_round_trip_and_lock_transactions_target_their_contracts() {
        let scalar = Scalar::new(U256::from(7)).expect("in range");
        let point = scalar.point().address();
        let d = IPointRegistry::PointRevealed { point, scalar: U256::from(7) }.encode_log_data();
        let log = raw(d.topics().to_vec(), d.data.to_vec());
        assert_eq!(decode_event(&log).expect("decodes"), Some(ChainEvent::PointRevealed { point, scalar }));
        let zero = IPointRegistry::PointRevealed { point, scalar: U256::ZERO }.encode_log_data();
        let log = raw(zero.topics().to_vec(), zero.data.to_vec());
        assert!(matches!(decode_event(&log), Err(ChainError::EventUndecodable(_))));
        let (user, digest, id) = (Address::repeat_byte(1), B256::repeat_byte(2), B256::repeat_byte(3));
        let reg = IInfHub::LockRegistered {
            user,
            epoch: 4,
            direction: HUB_LOCKS,
            proofDigest: digest,
            lockId: id,
            amount: 9,
            by: Address::repeat_byte(5),
        }
        .encode_log_data();
        let want = ChainEvent::LockRegistered {
            user,
            epoch: 4,
            hub_locks: true,
            proof_digest: digest,
            lock_id: id,
            amount: Amount(9),
        };
        assert_eq!(decode_event(&raw(reg.topics().to_vec(), reg.data.to_vec())).expect("decodes"), Some(want));
        let res = IInfHub::LockResolved {
            user,
            epoch: 4,
            direction: 0,
            proofDigest: digest,
            lockId: id,
            revealed: true,
            toReceiver: U256::from(9),
            toSender: U256::ZERO,
        }
        .encode_log_data();
        let want = ChainEvent::LockResolved { user, epoch: 4, proof_digest: digest, lock_id: id };
        assert_eq!(decode_event(&raw(res.topics().to_vec(), res.data.to_vec())).expect("decodes"), Some(want));
        let (hub, registry) = (Address::repeat_byte(0xA), Address::repeat_byte(0xB));
        assert_eq!(HubTx::RevealPoint(scalar).target(hub, registry), registry);
        let unlock = HubTx::Unlock { proof_digests: vec![digest], lock_ids: vec![id] };
        assert_eq!(unlock.target(hub, registry), hub);
        let call = IInfHub::unlockManyCall::abi_decode(&hub_tx_call(&unlock)).expect("an unlockMany call");
        assert_eq!((call.proofDigests, call.lockIds), (vec![digest], vec![id]));
        let call = IPointRegistry::revealCall::abi_decode(&hub_tx_call(&HubTx::RevealPoint(scalar))).expect("reveal");
        assert_eq!(call.scalar, U256::from(7));
    }

    #[test]
    fn an_amount_beyond_u128_is_a_specific_error() {
        let e = IInfHub::ReserveDeposited {
            from: Address::ZERO,
            amount: U256::from(1),
            reserveAfter: U256::from(u128::MAX) + U256::from(1),
        };
        let data = e.encode_log_data();
        let log = raw(data.topics().to_vec(), data.data.to_vec());
        assert!(matches!(decode_event(&log), Err(ChainError::EventAmountOutOfRange { field: "reserveAfter" })));
    }

    #[test]
    fn truncated_data_is_an_error_and_unknown_events_are_skipped() {
        let e = IInfHub::Settled {
            user: Address::ZERO,
            epoch: 1,
            paid: U256::from(1),
            shortfall: U256::ZERO,
            reserveAfter: U256::from(2),
        };
        let data = e.encode_log_data();
        let log = raw(data.topics().to_vec(), data.data[..40].to_vec());
        assert!(matches!(decode_event(&log), Err(ChainError::EventUndecodable(_))));
        let ann = IInfHub::ReserveWithdrawalAnnounced { amount: U256::from(1), unlockBlock: 9 }.encode_log_data();
        assert!(decode_event(&raw(ann.topics().to_vec(), ann.data.to_vec())).expect("decodes").is_some());
        let unknown = vec![B256::repeat_byte(7)];
        assert_eq!(decode_event(&raw(unknown, ann.data.to_vec())).expect("skips"), None);
        assert_eq!(decode_event(&raw(vec![], vec![])).expect("skips"), None);
    }
}
