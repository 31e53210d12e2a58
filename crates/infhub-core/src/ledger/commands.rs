//! The commands the ledger takes and the outcomes it returns, and the one entry point that
//! applies a command: each is judged whole, and on `Err` the ledger is unchanged.

use super::{
    payout_batch_id, ChainEvent, CheckpointHeader, CustodialAccount, CustodialResult, CustodialTransfer, Ledger,
    LogPosition,
};
use super::{ChainFunds, Payout, PayoutBatch, MAX_CUSTODIAL_BATCH};
use crate::channel::{step, CheckedDebit, Effect, Input, LockChange};
use crate::messages::{SignedCredit, SignedDebit, SignedReceipt, Withdrawal};
use crate::point_lock::Lock;
use crate::signature::{PrivateKey, Signature};
use crate::{Amount, Error};
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

/// A request to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A user-signed payment (internal or external).
    Transfer(SignedDebit),
    /// The operator credits a user against the reserve ("buying from the platform").
    Purchase {
        /// Who is credited.
        user: Address,
        /// How much.
        amount: Amount,
        /// The operator's idempotency key.
        purchase_id: B256,
    },
    /// A user asks the hub to co-sign a cooperative withdrawal.
    Withdraw {
        /// The withdrawal.
        withdrawal: Withdrawal,
        /// The user's signature over it.
        user_signature: Signature,
    },
    /// The hub earmarks reserve for a withdrawal it is about to announce on chain.
    EarmarkReserveWithdrawal {
        /// How much.
        amount: Amount,
    },
    /// The hub releases an earmark whose announcement never reached the chain.
    ReleaseReserveEarmark,
    /// Queued payouts are handed to the chain layer as one batch.
    TakePayoutBatch {
        /// Most payouts in the batch.
        max: usize,
    },
    /// A confirmed chain event at its position; ignored if at or below the high-water mark.
    Chain {
        /// Where the event is.
        at: LogPosition,
        /// The event.
        event: ChainEvent,
    },
    /// Every contract event in blocks `<= n` has been delivered.
    Block(u64),
    /// Sign every credit and receipt issued since the last seal with one signature over the
    /// Merkle root of their digests (see [`crate::merkle`]); the durable layer issues it at
    /// the end of each group commit.
    SealProofs,
    /// The operator opens a custodial account.
    OpenCustodial {
        /// Its address ([`custodial_address`] of the user id).
        account: Address,
        /// keccak256 of its API key.
        api_key_hash: B256,
    },
    /// Custodial transfers, each applied or refused on its own.
    CustodialTransfers(Vec<CustodialTransfer>),
    /// A custodial account pays a chain address; the hub pays out from the reserve.
    CustodialWithdraw {
        /// The custodial account.
        from: Address,
        /// The chain address.
        recipient: Address,
        /// How much.
        amount: Amount,
        /// The platform's idempotency key.
        transfer_id: B256,
    },
    /// A custodial account's whole balance moves into the channel of `user` (who registered a
    /// key) as a hub-signed credit, and the account is linked to that channel.
    ConvertToChannel {
        /// The custodial account.
        account: Address,
        /// The user's channel.
        user: Address,
        /// The platform's idempotency key.
        transfer_id: B256,
    },
    /// The shell built this checkpoint from the ledger and stored its leaves; posting it is a
    /// duty from now on (spec §5.16).
    CheckpointBuilt(CheckpointHeader),
    /// A custodial account's API key is replaced (the operator's or the holder's request): the
    /// old key stops working with this command.
    RotateCustodialKey {
        /// The custodial account.
        account: Address,
        /// keccak256 of its new API key.
        api_key_hash: B256,
    },
    /// The operator freezes or unfreezes an account, channel or custodial (spec §5.20).
    SetFrozen {
        /// The account.
        account: Address,
        /// Frozen from now on, or not.
        frozen: bool,
    },
    /// A user's signed change to her outgoing point locks (spec §5.17b).
    DebitLock {
        /// The lock debit.
        debit: SignedDebit,
        /// The change it carries.
        change: LockChange,
    },
    /// A payment to another account of this hub by point lock (spec §5.17b): the payer's lock
    /// to the hub and the hub's lock to the payee on the same point, all or nothing.
    LockedTransfer {
        /// The payer's lock debit (kind `lock_add`).
        debit: SignedDebit,
        /// Her lock.
        lock: Lock,
        /// Who the hub locks to.
        payee: Address,
    },
    /// The hub changes its point locks to a user (spec §5.17b).
    CreditLock {
        /// The user.
        user: Address,
        /// The change.
        change: LockChange,
    },
    /// The hub learned the scalar of a payer's pending lock from the next hop of a payment it
    /// forwarded to another hub (spec §5.23a): from now on the lock can only be settled, and
    /// the payer reads the scalar with her account.
    LockScalarLearned {
        /// The payer.
        payer: Address,
        /// Her pending lock.
        lock_id: B256,
        /// Its scalar.
        scalar: crate::point_lock::Scalar,
    },
    /// The payer's signed cancel of her pending lock before its expiry, which the hub agreed to
    /// because the next hub refused the payment it funded (spec §5.23a). The caller (the
    /// node's forwarding) decides that; the ledger refuses a lock whose scalar it learned.
    CancelForwardedLock {
        /// Her lock debit (kind `lock_drop`) carrying `LockChange::Cancel`.
        debit: SignedDebit,
    },
    /// The payee's hub collected the parts of a payment split over several routes (spec
    /// §5.23c) and locks the whole to the payee: one hub lock funded by several payers' pending
    /// locks with the same id, each on its own point (the payee's point less the part's tweak).
    /// When the payee reveals her scalar, each part's scalar is hers less its tweak.
    CollectedTransfer {
        /// Who the hub locks to.
        payee: Address,
        /// The hub's lock to her (on the invoice's point).
        lock: Lock,
        /// The parts that fund it.
        parts: Vec<super::locks::LockPart>,
    },
}

/// What a command produced; the outer layer stores and delivers it.
// `Paid` is the common case on the hot path; boxing it would allocate per payment.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A payment was applied.
    Paid {
        /// The hub's receipt to the payer.
        receipt: SignedReceipt,
        /// The payee's new credit (internal payments).
        credit: Option<SignedCredit>,
        /// The queued payout (external payments).
        payout: Option<Payout>,
    },
    /// A well-formed debit was refused for a reason of state and refunded: the debit is spent
    /// and the payer got this credit of its amount back. Nothing moved.
    Refunded {
        /// The rule the payment broke.
        refused: Error,
        /// The payer's refund.
        refund: SignedCredit,
    },
    /// The same payment was applied before, at this ledger sequence number.
    Duplicate {
        /// Sequence number of the first application.
        first_seq: u64,
    },
    /// A purchase was credited.
    Credited(SignedCredit),
    /// A withdrawal was co-signed.
    WithdrawalCoSigned {
        /// The withdrawal.
        withdrawal: Withdrawal,
        /// The hub's signature.
        hub_signature: Signature,
    },
    /// Reserve earmarked for an announced withdrawal.
    Earmarked,
    /// The proofs issued since the last seal were signed as one batch.
    Sealed {
        /// The Merkle root of their digests.
        root: B256,
        /// The hub's signature over `ProofBatch(root)`.
        signature: Signature,
        /// How many distinct proofs the batch holds.
        proofs: u32,
    },
    /// Payouts to send on chain, removed from the queue.
    PayoutBatch(Vec<Payout>),
    /// A chain event or block was applied; channel effects to carry out (disputes, settlements).
    Applied(Vec<(Address, Effect)>),
    /// A custodial account was opened.
    CustodialOpened,
    /// A custodial account was credited by a purchase.
    CustodialCredited,
    /// The results of a custodial batch, in order.
    CustodialTransfers(Vec<CustodialResult>),
    /// A custodial withdrawal was queued for the chain.
    CustodialPayoutQueued(Payout),
    /// A custodial balance moved into a channel.
    Converted {
        /// The channel's new credit.
        credit: SignedCredit,
        /// The amount moved.
        amount: Amount,
    },
    /// A checkpoint was recorded as built.
    CheckpointRecorded,
    /// A custodial account's API key was replaced.
    CustodialKeyRotated,
    /// A user's lock debit was applied.
    DebitLockApplied {
        /// The hub's receipt of the debit.
        receipt: SignedReceipt,
        /// The change it carried.
        change: LockChange,
        /// The lock added, settled or dropped.
        lock: Lock,
    },
    /// An account's frozen flag was set.
    FrozenSet {
        /// Whether this changed it (false: it already was so).
        changed: bool,
    },
    /// A locked transfer was applied.
    LockedTransferApplied {
        /// The hub's receipt of the payer's lock debit.
        receipt: SignedReceipt,
        /// The hub's lock credit to the payee.
        payee_credit: SignedCredit,
    },
    /// The hub issued a lock credit.
    CreditLockIssued {
        /// The credit.
        credit: SignedCredit,
        /// The change it carries.
        change: LockChange,
        /// The lock added, settled or dropped.
        lock: Lock,
    },
    /// A payer's lock's scalar was recorded (false: it already was).
    LockScalarNoted {
        /// Whether this recorded it.
        changed: bool,
    },
}

impl Ledger {
    /// Applies one command. On `Err` the ledger is unchanged.
    pub fn apply(&mut self, hub_key: &PrivateKey, command: Command) -> Result<Outcome, Error> {
        self.apply_checked(hub_key, command, None)
    }

    /// Like [`Ledger::apply`], with the signature check of a transfer's debit already done
    /// (on another thread). A `checked` that is not for this command's debit in this ledger's
    /// domain is ignored and the signature is checked here.
    pub fn apply_checked(
        &mut self,
        hub_key: &PrivateKey,
        command: Command,
        checked: Option<CheckedDebit>,
    ) -> Result<Outcome, Error> {
        assert_eq!(hub_key.address(), self.params.hub, "ledger driven with another key than the hub's");
        match command {
            Command::Transfer(debit) => {
                let checked = checked.filter(|c| *c.debit() == debit && *c.domain() == self.params.domain);
                self.transfer(debit, checked)
            }
            Command::Purchase { user, amount, purchase_id } => self.purchase(user, amount, purchase_id),
            Command::Withdraw { withdrawal, user_signature } => self.withdraw(hub_key, withdrawal, user_signature),
            Command::OpenCustodial { account, api_key_hash } => self.open_custodial(account, api_key_hash),
            Command::CustodialTransfers(batch) => {
                if batch.is_empty() || batch.len() > MAX_CUSTODIAL_BATCH {
                    return Err(Error::BatchSizeOutOfRange);
                }
                let seq = self.take_seq();
                let results = batch.into_iter().map(|t| self.custodial_transfer(seq, t)).collect();
                Ok(Outcome::CustodialTransfers(results))
            }
            Command::CustodialWithdraw { from, recipient, amount, transfer_id } => {
                self.custodial_withdraw(from, recipient, amount, transfer_id)
            }
            Command::ConvertToChannel { account, user, transfer_id } => {
                self.convert_to_channel(account, user, transfer_id)
            }
            Command::ReleaseReserveEarmark => self.release_reserve_earmark(),
            Command::EarmarkReserveWithdrawal { amount } => self.earmark_reserve_withdrawal(amount),
            Command::SealProofs => self.seal(hub_key),
            Command::TakePayoutBatch { max } => self.take_payout_batch(max),
            Command::Chain { .. } | Command::Block(_) => self.apply_chain(command),
            Command::CheckpointBuilt(header) => self.checkpoint_built(header),
            Command::RotateCustodialKey { account, api_key_hash } => self.rotate_custodial_key(account, api_key_hash),
            Command::DebitLock { debit, change } => self.debit_lock(debit, change),
            Command::SetFrozen { account, frozen } => self.set_frozen(account, frozen),
            Command::CreditLock { user, change } => self.credit_lock(user, change),
            Command::LockedTransfer { debit, lock, payee } => self.locked_transfer(debit, lock, payee),
            Command::LockScalarLearned { payer, lock_id, scalar } => self.lock_scalar_learned(payer, lock_id, scalar),
            Command::CancelForwardedLock { debit } => self.cancel_forwarded_lock(debit),
            Command::CollectedTransfer { payee, lock, parts } => self.collected_transfer(payee, lock, &parts),
        }
    }

    /// Applies a confirmed chain event or a confirmed block: no key is needed, so the chain
    /// duties can also apply them to a copy of the ledger while storage cannot record them
    /// (spec §7, an outage is not a channel close). On `Err` the ledger is unchanged.
    pub fn apply_chain(&mut self, command: Command) -> Result<Outcome, Error> {
        match command {
            Command::Chain { at, event } => {
                if at <= self.chain_cursor {
                    // Already applied (a re-delivery after a restart or a reorg-free rescan).
                    return Ok(Outcome::Applied(Vec::new()));
                }
                let out = self.chain_event(at.block, event)?;
                self.chain_cursor = at;
                Ok(out)
            }
            Command::Block(n) => self.block_passed(n),
            other => panic!("apply_chain takes chain events and blocks only, not {other:?}"),
        }
    }

    /// Freezes or unfreezes a known account (`UnknownAccount` otherwise). Always takes a
    /// sequence number, so the operator's action is in the log even when it changed nothing.
    fn set_frozen(&mut self, account: Address, frozen: bool) -> Result<Outcome, Error> {
        if !self.accounts.contains_key(&account) && !self.custodial.contains_key(&account) {
            return Err(Error::UnknownAccount);
        }
        let changed = if frozen { self.frozen.insert(account) } else { self.frozen.remove(&account) };
        self.take_seq();
        Ok(Outcome::FrozenSet { changed })
    }

    /// `AccountFrozen` if the operator froze `account`.
    pub(super) fn require_not_frozen(&self, account: &Address) -> Result<(), Error> {
        if self.frozen.contains(account) {
            Err(Error::AccountFrozen)
        } else {
            Ok(())
        }
    }

    /// Opens a custodial account (seed 000 §3) under the shared account limit.
    fn open_custodial(&mut self, account: Address, api_key_hash: B256) -> Result<Outcome, Error> {
        if self.custodial.contains_key(&account) || self.accounts.contains_key(&account) {
            return Err(Error::AccountAlreadyExists);
        }
        if account == Address::ZERO || account == self.params.hub {
            return Err(Error::UserMustNotBeZeroOrHub);
        }
        if self.accounts.len() + self.custodial.len() >= self.params.max_accounts {
            return Err(Error::TooManyAccounts);
        }
        let c = CustodialAccount {
            account,
            balance: Amount::ZERO,
            deposited_on_chain: Amount::ZERO,
            api_key_hash,
            linked_channel: None,
        };
        self.custodial.insert(account, c);
        self.take_seq();
        Ok(Outcome::CustodialOpened)
    }

    /// Replaces a custodial account's API key hash. Refused for an account that is not
    /// custodial (`NotCustodial`) and for the hash it already has (`CustodialKeyUnchanged`:
    /// a rotation to the same key would leave a compromised key working).
    fn rotate_custodial_key(&mut self, account: Address, api_key_hash: B256) -> Result<Outcome, Error> {
        let c = self.custodial.get_mut(&account).ok_or(Error::NotCustodial)?;
        if c.api_key_hash == api_key_hash {
            return Err(Error::CustodialKeyUnchanged);
        }
        c.api_key_hash = api_key_hash;
        self.take_seq();
        Ok(Outcome::CustodialKeyRotated)
    }

    /// Releases an earmark whose announcement never reached the chain.
    fn release_reserve_earmark(&mut self) -> Result<Outcome, Error> {
        // Only an earmark whose announcement never reached the chain: one announced is
        // released by its cancellation, execution or expiry, as the chain decides.
        if self.earmarked.is_zero() || self.reserve_withdrawal.is_some() {
            return Err(Error::NoReserveWithdrawalPending);
        }
        self.earmarked = Amount::ZERO;
        self.take_seq();
        Ok(Outcome::Earmarked)
    }

    /// Earmarks free reserve for a reserve withdrawal about to be announced.
    fn earmark_reserve_withdrawal(&mut self, amount: Amount) -> Result<Outcome, Error> {
        // Bounded by the free reserve below, not by the largest payment.
        if amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if !self.earmarked.is_zero() {
            return Err(Error::ReserveWithdrawalPending);
        }
        if amount.0 > self.free_reserve() {
            return Err(Error::ReserveInsufficient);
        }
        self.earmarked = amount;
        self.take_seq();
        Ok(Outcome::Earmarked)
    }

    /// Hands out the next batch of queued external payouts (at most `max`).
    fn take_payout_batch(&mut self, max: usize) -> Result<Outcome, Error> {
        let n = max.min(self.queued.len()).min(crate::contract::MAX_PAYOUT_BATCH);
        let batch: Vec<Payout> = self.queued.drain(..n).collect();
        if !batch.is_empty() {
            let id = payout_batch_id(&batch);
            self.in_flight.push_back(PayoutBatch { id, payouts: batch.clone(), taken_at_block: self.block });
        }
        self.take_seq();
        Ok(Outcome::PayoutBatch(batch))
    }

    /// A new confirmed block: channels with a hold or a close react, expired announcements lapse.
    fn block_passed(&mut self, n: u64) -> Result<Outcome, Error> {
        if n < self.block || n < self.chain_cursor.block {
            return Err(Error::ChainEventInconsistent);
        }
        let params = self.channel_params();
        // Only channels with a hold or a close in progress react to blocks; the others'
        // `block` field may lag, which the channel machine allows.
        // They are indexed, in address order.
        let busy: Vec<Address> = self.busy_channels().copied().collect();
        let mut effects = Vec::new();
        let mut updates = Vec::new();
        for user in busy {
            let acct = &self.accounts[&user];
            let (ch, eff) = step(&acct.channel, &params, Input::Block(n))?;
            updates.push((user, ch));
            effects.extend(eff.into_iter().map(|e| (user, e)));
        }
        for (user, ch) in updates {
            self.replace_channel(user, ch, ChainFunds::default(), false);
        }
        // An announced reserve withdrawal not executed in its window can no longer be.
        if self.reserve_withdrawal.is_some_and(|w| n >= w.expires_block) {
            self.reserve_withdrawal = None;
            self.earmarked = Amount::ZERO;
        }
        self.block = n;
        self.take_seq();
        Ok(Outcome::Applied(effects))
    }
}
