//! The off-chain state machine of one user's channel.
//!
//! Both ends run it: the hub (which verifies the user's debits and issues credits) and the
//! wallet (which verifies the hub's credits and keeps the proofs it needs to exit alone).
//! A transition is `step(&state, &params, input) -> Result<(state, effects), Error>`: no IO,
//! no clock. Chain facts arrive as inputs once confirmed; `Input::Block(n)` promises that every
//! contract event in blocks `<= n` has been delivered. Running totals make replays harmless:
//! a chain event whose total is not above the known one is a no-op, and an old proof is
//! rejected with `NonceMustIncrease`.
//!
//! Balance (spendable) = deposited − max(withdrawn, held withdrawal) + credits − debits −
//! the user's pending outgoing locks.
//!
//! Each direction keeps a book of pending point locks (spec §5.17a): every proof carries its
//! direction's book, and a lock proof changes it by one lock ([`LockChange`]), which both ends
//! check against their own copy before they accept the proof.

use crate::lock_book::LockBook;
use crate::messages::{Credit, Debit, Eip712Message, PaymentKind, Signed, SignedCredit, SignedDebit, Withdrawal};
use crate::point_lock::{Lock, Scalar};
use crate::signature::Signature;
use crate::{Amount, Domain, Error};
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

/// Which end of the channel runs this state machine; it decides which disputes to raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The hub: answers exits with the user's newest debit.
    Hub,
    /// The user's wallet (or its watchtower): answers closes with the hub's newest credit.
    User,
}

/// Fixed parameters of a channel's state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelParams {
    /// The signing domain.
    pub domain: Domain,
    /// The hub's signing address.
    pub hub: Address,
    /// Which end runs this machine.
    pub role: Role,
    /// The furthest ahead a cooperative withdrawal may expire, in blocks from now.
    pub max_withdrawal_expiry_blocks: u64,
}

/// Furthest ahead a lock may expire, in blocks after the end's confirmed block (about a week
/// of 12-second blocks; spec §5.17a).
pub const MAX_LOCK_EXPIRY_BLOCKS: u64 = 50_400;

/// How many blocks before the payer's lock the hub's lock to the next hop must expire: time for
/// the hub, once it learns the scalar downstream, to get one registry reveal mined (spec §5.17).
pub const LOCK_REVEAL_MARGIN_BLOCKS: u64 = 20;

/// How a lock proof changes its direction's pending locks (spec §5.17a). In JSON:
/// `{"add": lock}`, `{"settle": {"lockId", "scalar"}}`, `{"drop": {"lockId"}}`,
/// `{"cancel": {"lockId"}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum LockChange {
    /// Adds this lock: the running total stays.
    Add(Lock),
    /// Settles a pending lock with the scalar that opens it: its amount joins the running total.
    Settle {
        /// The lock.
        #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
        lock_id: B256,
        /// Its scalar.
        scalar: Scalar,
    },
    /// Drops a pending lock whose expiry block is past at this end's confirmed block.
    Drop {
        /// The lock.
        #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
        lock_id: B256,
    },
    /// Drops a pending lock before its expiry: only when the receiver agreed (its downstream
    /// failed). The caller decides that; the machine checks only that the lock is pending.
    Cancel {
        /// The lock.
        #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
        lock_id: B256,
    },
}

/// What a change did to a book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedLockChange {
    /// The lock added, settled or dropped.
    pub lock: Lock,
    /// What joins the running total (the lock's amount for a settlement, else zero).
    pub settled: Amount,
}

impl LockChange {
    /// The lock it names.
    pub fn lock_id(&self) -> B256 {
        match self {
            LockChange::Add(lock) => lock.lock_id,
            LockChange::Settle { lock_id, .. } | LockChange::Drop { lock_id } | LockChange::Cancel { lock_id } => {
                *lock_id
            }
        }
    }

    /// The debit kind that carries it.
    pub fn kind(&self) -> PaymentKind {
        match self {
            LockChange::Add(_) => PaymentKind::LockAdd,
            LockChange::Settle { .. } => PaymentKind::LockSettle,
            LockChange::Drop { .. } | LockChange::Cancel { .. } => PaymentKind::LockDrop,
        }
    }

    /// The block at which the user's change to her own locks is judged at confirmed block
    /// `block`: her settlement pays the hub by her own signature, so it counts whenever she
    /// signs it (judged at the lock's expiry once that is past: the hub may have learned the
    /// scalar in time and she may learn it late); any other change at `block`.
    pub fn user_judged_at(&self, book: &LockBook, block: u64) -> u64 {
        match self {
            LockChange::Settle { lock_id, .. } => book.get(lock_id).map_or(block, |l| block.min(l.expiry_block)),
            _ => block,
        }
    }

    /// Applies it to `book` at confirmed block `block`, by the rules of [`LockBook`].
    pub fn apply(&self, book: &mut LockBook, block: u64) -> Result<AppliedLockChange, Error> {
        match *self {
            LockChange::Add(lock) => {
                book.add(lock, block, MAX_LOCK_EXPIRY_BLOCKS)?;
                Ok(AppliedLockChange { lock, settled: Amount::ZERO })
            }
            LockChange::Settle { lock_id, scalar } => {
                let lock = book.settle(&lock_id, &scalar, block)?;
                Ok(AppliedLockChange { lock, settled: lock.amount })
            }
            LockChange::Drop { lock_id } => {
                let lock = *book.get(&lock_id).ok_or(Error::UnknownLock)?;
                if lock.expiry_block >= block {
                    return Err(Error::LockNotExpired);
                }
                book.drop_lock(&lock_id)?;
                Ok(AppliedLockChange { lock, settled: Amount::ZERO })
            }
            LockChange::Cancel { lock_id } => {
                Ok(AppliedLockChange { lock: book.drop_lock(&lock_id)?, settled: Amount::ZERO })
            }
        }
    }
}

/// Where the channel is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Payments, deposits and withdrawals allowed.
    Open,
    /// A close started on chain; proofs accepted until `settle_block`.
    Closing {
        /// First block at which settlement is possible.
        settle_block: u64,
    },
    /// Paid out on chain; may be reopened with the next epoch.
    Settled,
}

/// The state of one channel in one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// The channel owner.
    pub user: Address,
    /// The current epoch.
    pub epoch: u64,
    /// Lifecycle.
    pub status: Status,
    /// Confirmed on-chain deposits this epoch.
    pub deposited: Amount,
    /// Confirmed on-chain cooperative withdrawals this epoch.
    pub withdrawn: Amount,
    /// Newest user-signed debit.
    pub debit: Option<SignedDebit>,
    /// Newest hub-signed credit.
    pub credit: Option<SignedCredit>,
    /// A co-signed withdrawal not yet seen on chain and not yet expired: its amount is held.
    pub withdrawal_hold: Option<Withdrawal>,
    /// Highest confirmed block delivered.
    pub block: u64,
    /// Running total of the debit the contract holds (from `DebitSubmitted`, also while open
    /// after a realization).
    pub chain_debit_total: Amount,
    /// Running total of the credit the contract holds while closing.
    pub chain_credit_total: Amount,
    /// Highest total for which this end already asked for an on-chain submission.
    pub dispute_requested_total: Amount,
    /// The user's pending outgoing locks (carried by her debits).
    #[serde(default)]
    pub debit_locks: LockBook,
    /// The hub's pending locks to the user (carried by its credits).
    #[serde(default)]
    pub credit_locks: LockBook,
}

/// A request to the outer layer. Effects are requests, not facts: the outer layer carries
/// them out (store, send, submit a transaction) and reports results back as inputs.
// A refund carries a debit and a credit; effects are few and short-lived, boxing would only
// add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Store this debit and move its value (credit the recipient, or queue an external payout).
    DebitAccepted(SignedDebit),
    /// This debit was refused for a reason of state and refunded: store both; nothing moves.
    DebitRefunded {
        /// The refused debit, now spent.
        debit: SignedDebit,
        /// The hub's credit of its amount back to the payer.
        refund: SignedCredit,
    },
    /// Store this credit (hub: deliver it to the user).
    CreditAccepted(SignedCredit),
    /// Store this lock debit; the user's outgoing locks changed (a settlement moves value to the
    /// hub).
    DebitLockApplied {
        /// The debit.
        debit: SignedDebit,
        /// The change it carries.
        change: LockChange,
    },
    /// Store this lock credit (hub: deliver it to the user); the hub's locks to the user changed.
    CreditLockApplied {
        /// The credit.
        credit: SignedCredit,
        /// The change it carries.
        change: LockChange,
    },
    /// Co-sign and return this withdrawal; its amount is now held.
    CoSignWithdrawal(Withdrawal),
    /// This withdrawal can no longer execute; its hold is released.
    WithdrawalHoldReleased(Withdrawal),
    /// Submit this debit on chain (the hub's answer to an exit with an older debit).
    SubmitDebit(SignedDebit),
    /// Submit this credit on chain (the user's answer to a close with an older credit).
    SubmitCredit(SignedCredit),
    /// The challenge period is over: call `settle`.
    SettleDue,
    /// The contract settled the channel. `paid != expected` means a dispute was lost or missed.
    Settled {
        /// What the contract paid.
        paid: Amount,
        /// What this end's newest proofs entitle the user to.
        expected: Amount,
    },
    /// The channel was reopened with this epoch.
    Reopened {
        /// The new epoch.
        epoch: u64,
    },
}

/// A user-signed debit whose signature has been checked against its `user` field in one
/// domain. Checking is the costliest part of a payment and needs no channel state, so the
/// node does it on all cores before its single ledger writer; the channel machine then skips
/// it for the same debit in the same domain (and checks anything else itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedDebit {
    debit: SignedDebit,
    domain: Domain,
    digest: B256,
}

impl CheckedDebit {
    /// Checks that `debit.message.user` signed `debit` in `domain`.
    pub fn check(debit: SignedDebit, domain: &Domain) -> Result<CheckedDebit, Error> {
        let digest = debit.message.digest(domain);
        debit.signature.verify(digest, debit.message.user)?;
        Ok(CheckedDebit { debit, domain: *domain, digest })
    }

    /// A debit whose signature a front-end of this hub checked (spec §7, front-ends): its
    /// digest is computed, the signature is not recovered again. Only for debits from inside
    /// the hub's trust domain; the ledger's replay at a restart checks every signature anyway.
    pub fn vouched(debit: SignedDebit, domain: &Domain) -> CheckedDebit {
        CheckedDebit { debit, domain: *domain, digest: debit.message.digest(domain) }
    }

    /// The debit.
    pub fn debit(&self) -> &SignedDebit {
        &self.debit
    }

    /// Its EIP-712 digest in the domain it was checked in.
    pub fn digest(&self) -> B256 {
        self.digest
    }

    /// The domain it was checked in.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

/// An event or request for the channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A user-signed debit (a payment out of the channel).
    Debit(SignedDebit),
    /// A user-signed debit whose signature was already checked (see [`CheckedDebit`]). Never
    /// decoded from outside: a checked debit is made only by [`CheckedDebit::check`].
    #[serde(skip)]
    CheckedDebit(CheckedDebit),
    /// A hub-signed credit (a payment into the channel).
    Credit(SignedCredit),
    /// A user-signed debit that changes her outgoing locks (spec §5.17a).
    DebitLock {
        /// The debit (kind `lock_add`, `lock_settle` or `lock_drop`).
        debit: SignedDebit,
        /// The change, which the debit's root must reflect.
        change: LockChange,
    },
    /// The wallet catching up (User role only): a newer hub-signed credit whose book is
    /// `locks`, the hub's pending locks to the user as the hub lists them, after lock credits
    /// the wallet missed. Accepted when `locks` opens the credit's root, no lock changed its
    /// leaf, and every lock of the wallet's book missing from `locks` either expired or is
    /// covered by the rise of the running total (settled); `LockNotExpired` otherwise.
    CreditResync {
        /// The credit.
        credit: SignedCredit,
        /// Its book.
        locks: Vec<Lock>,
    },
    /// A hub-signed credit that changes the hub's locks to the user.
    CreditLock {
        /// The credit.
        credit: SignedCredit,
        /// The change, which the credit's root must reflect.
        change: LockChange,
    },
    /// A user-signed debit the hub refused for a reason of state (balance, liquidity, the
    /// recipient, a limit), together with the hub's credit of the same amount back to the payer.
    /// Every rule of a debit applies except the balance; the refund must be the next credit
    /// (hub) or any newer credit at least the old total plus the amount (wallet, which may have
    /// missed credits). The balance never falls.
    DebitRefunded {
        /// The refused debit.
        debit: SignedDebit,
        /// The refund.
        refund: SignedCredit,
    },
    /// [`Input::DebitRefunded`] with the debit's signature already checked.
    #[serde(skip)]
    CheckedDebitRefunded {
        /// The refused debit, checked.
        debit: CheckedDebit,
        /// The refund.
        refund: SignedCredit,
    },
    /// The user asks the hub to co-sign a withdrawal, at confirmed block `block`.
    WithdrawalRequest {
        /// The withdrawal.
        withdrawal: Withdrawal,
        /// The user's signature over it.
        user_signature: Signature,
        /// The current confirmed block.
        block: u64,
    },
    /// Every contract event in blocks `<= n` has been delivered.
    Block(u64),
    /// `Deposited`: the running total of deposits this epoch.
    ChainDeposited {
        /// Epoch of the event.
        epoch: u64,
        /// `totalDeposited` from the event.
        total_deposited: Amount,
    },
    /// `Withdrawn`: the running total of withdrawals this epoch.
    ChainWithdrawn {
        /// Epoch of the event.
        epoch: u64,
        /// `totalWithdrawn` from the event.
        total_withdrawn: Amount,
    },
    /// `ExitStarted`.
    ChainExitStarted {
        /// Epoch of the event.
        epoch: u64,
        /// `settleBlock` from the event.
        settle_block: u64,
    },
    /// `DebitSubmitted` (also emitted by `realizeDebit`): the contract now holds this debit.
    ChainDebitSubmitted {
        /// Epoch of the event.
        epoch: u64,
        /// The submitted running total.
        cumulative: Amount,
    },
    /// `CreditSubmitted`: the contract now holds this credit.
    ChainCreditSubmitted {
        /// Epoch of the event.
        epoch: u64,
        /// The submitted running total.
        cumulative: Amount,
    },
    /// `Settled`.
    ChainSettled {
        /// Epoch of the event.
        epoch: u64,
        /// What the contract paid the user.
        paid: Amount,
    },
    /// `ChannelOpened` for the next epoch (reopening after settlement).
    ChainOpened {
        /// The new epoch.
        epoch: u64,
    },
}

impl ChannelState {
    /// A channel just opened on chain with `epoch`.
    pub fn opened(user: Address, epoch: u64) -> ChannelState {
        ChannelState {
            user,
            epoch,
            status: Status::Open,
            deposited: Amount::ZERO,
            withdrawn: Amount::ZERO,
            debit: None,
            credit: None,
            withdrawal_hold: None,
            block: 0,
            chain_debit_total: Amount::ZERO,
            chain_credit_total: Amount::ZERO,
            dispute_requested_total: Amount::ZERO,
            debit_locks: LockBook::default(),
            credit_locks: LockBook::default(),
        }
    }

    /// The newest debit's `(lockedAmount, locksRoot)`: the user's book as last signed.
    pub fn signed_debit_locks(&self) -> (Amount, B256) {
        self.debit.map_or((Amount::ZERO, B256::ZERO), |d| (d.message.locked_amount, d.message.locks_root))
    }

    /// The newest credit's `(lockedAmount, locksRoot)`: the hub's book as last signed.
    pub fn signed_credit_locks(&self) -> (Amount, B256) {
        self.credit.as_ref().map_or((Amount::ZERO, B256::ZERO), |c| (c.message.locked_amount, c.message.locks_root))
    }

    /// Nonce of the newest debit (0 = none).
    pub fn debit_nonce(&self) -> u64 {
        self.debit.map_or(0, |d| d.message.nonce)
    }

    /// Running total of debits.
    pub fn cumulative_debit(&self) -> Amount {
        self.debit.map_or(Amount::ZERO, |d| d.message.cumulative_debit)
    }

    /// Nonce of the newest credit (0 = none).
    pub fn credit_nonce(&self) -> u64 {
        self.credit.as_ref().map_or(0, |c| c.message.nonce)
    }

    /// Running total of credits.
    pub fn cumulative_credit(&self) -> Amount {
        self.credit.as_ref().map_or(Amount::ZERO, |c| c.message.cumulative_credit)
    }

    /// Withdrawn on chain, or held for a co-signed withdrawal, whichever is larger.
    pub fn withdrawn_or_held(&self) -> Amount {
        match self.withdrawal_hold {
            Some(h) if h.cumulative_withdrawn > self.withdrawn => h.cumulative_withdrawn,
            _ => self.withdrawn,
        }
    }

    /// What the user may spend or withdraw now. Errors only if the state is inconsistent.
    pub fn balance(&self) -> Result<Amount, Error> {
        let plus = self.deposited.checked_add(self.cumulative_credit())?;
        let minus =
            self.withdrawn_or_held().checked_add(self.cumulative_debit())?.checked_add(self.debit_locks.locked())?;
        plus.checked_sub_or(minus, Error::ChainEventInconsistent)
    }

    /// What settlement pays if the contract holds this end's newest proofs (floored at zero).
    pub fn claim(&self) -> Amount {
        let plus = self.deposited.0.checked_add(self.cumulative_credit().0);
        let minus = self.withdrawn.0.checked_add(self.cumulative_debit().0);
        match (plus, minus) {
            (Some(p), Some(m)) => Amount(p.saturating_sub(m)),
            // Totals are bounded by uint128 on chain; the contract computes in uint256.
            _ => Amount::MAX,
        }
    }

    /// The next debit this user would sign to pay `amount` to `recipient`.
    pub fn next_debit(
        &self,
        kind: PaymentKind,
        recipient: Address,
        amount: Amount,
        payment_id: B256,
    ) -> Result<Debit, Error> {
        let (locked_amount, locks_root) = self.signed_debit_locks();
        Ok(Debit {
            user: self.user,
            epoch: self.epoch,
            nonce: self.debit_nonce() + 1,
            cumulative_debit: self.cumulative_debit().checked_add(amount)?,
            locked_amount,
            locks_root,
            kind: kind as u8,
            recipient,
            amount,
            payment_id,
        })
    }

    /// The next credit the hub would sign to pay `amount` into this channel.
    pub fn next_credit(&self, amount: Amount) -> Result<Credit, Error> {
        self.credit_at(amount, 0)
    }

    /// The credit the hub signs in the ledger command of sequence number `ledger_seq` to pay
    /// `amount` into this channel: its nonce is `max(previous + 1, ledger_seq)`, so it rises
    /// with every credit and says where the credit sits in the ledger (spec §3, §5.16).
    pub fn credit_at(&self, amount: Amount, ledger_seq: u64) -> Result<Credit, Error> {
        let (locked_amount, locks_root) = self.signed_credit_locks();
        Ok(Credit {
            user: self.user,
            epoch: self.epoch,
            nonce: (self.credit_nonce() + 1).max(ledger_seq),
            cumulative_credit: self.cumulative_credit().checked_add(amount)?,
            locked_amount,
            locks_root,
        })
    }

    /// The debit the user signs to make `change` to her outgoing locks (paid to the hub, named
    /// by the lock's id), checked against her book at this end's confirmed block.
    pub fn next_lock_debit(&self, params: &ChannelParams, change: &LockChange) -> Result<Debit, Error> {
        let mut book = self.debit_locks.clone();
        let at = change.user_judged_at(&book, self.block);
        let applied = change.apply(&mut book, at)?;
        let (locks_root, locked_amount) = book.root(&params.domain);
        Ok(Debit {
            user: self.user,
            epoch: self.epoch,
            nonce: self.debit_nonce() + 1,
            cumulative_debit: self.cumulative_debit().checked_add(applied.settled)?,
            locked_amount,
            locks_root,
            kind: change.kind() as u8,
            recipient: params.hub,
            amount: applied.lock.amount,
            payment_id: applied.lock.lock_id,
        })
    }

    /// The credit the hub signs at ledger position `ledger_seq` to make `change` to its locks
    /// to the user.
    pub fn next_lock_credit(
        &self,
        params: &ChannelParams,
        change: &LockChange,
        ledger_seq: u64,
    ) -> Result<Credit, Error> {
        let mut book = self.credit_locks.clone();
        let applied = change.apply(&mut book, self.block)?;
        let (locks_root, locked_amount) = book.root(&params.domain);
        Ok(Credit {
            user: self.user,
            epoch: self.epoch,
            nonce: (self.credit_nonce() + 1).max(ledger_seq),
            cumulative_credit: self.cumulative_credit().checked_add(applied.settled)?,
            locked_amount,
            locks_root,
        })
    }

    /// The withdrawal the user would sign to take `amount` out, valid until `expiry_block`.
    pub fn next_withdrawal(&self, amount: Amount, expiry_block: u64) -> Result<Withdrawal, Error> {
        Ok(Withdrawal {
            user: self.user,
            epoch: self.epoch,
            cumulative_withdrawn: self.withdrawn_or_held().checked_add(amount)?,
            expiry_block,
        })
    }
}

/// Applies `input` to `state`. On error the caller keeps the old state: nothing happened.
pub fn step(state: &ChannelState, params: &ChannelParams, input: Input) -> Result<(ChannelState, Vec<Effect>), Error> {
    let mut s = state.clone();
    let mut effects = Vec::new();
    match input {
        Input::Debit(d) => {
            accept_debit(&mut s, params, d, None, BalanceRule::Checked)?;
            effects.push(Effect::DebitAccepted(d));
        }
        Input::CheckedDebit(c) => {
            accept_debit(&mut s, params, c.debit, Some(&c), BalanceRule::Checked)?;
            effects.push(Effect::DebitAccepted(c.debit));
        }
        Input::DebitRefunded { debit, refund } => {
            accept_refunded_debit(&mut s, params, debit, None, refund.clone())?;
            effects.push(Effect::DebitRefunded { debit, refund });
        }
        Input::CheckedDebitRefunded { debit, refund } => {
            accept_refunded_debit(&mut s, params, debit.debit, Some(&debit), refund.clone())?;
            effects.push(Effect::DebitRefunded { debit: debit.debit, refund });
        }
        Input::Credit(c) => {
            accept_credit(&mut s, params, c.clone(), None)?;
            effects.push(Effect::CreditAccepted(c));
        }
        Input::DebitLock { debit, change } => {
            accept_lock_debit(&mut s, params, debit, &change)?;
            effects.push(Effect::DebitLockApplied { debit, change });
        }
        Input::CreditLock { credit, change } => {
            accept_credit(&mut s, params, credit.clone(), Some(&change))?;
            effects.push(Effect::CreditLockApplied { credit, change });
        }
        Input::CreditResync { credit, locks } => {
            resync_credit(&mut s, params, credit.clone(), &locks)?;
            effects.push(Effect::CreditAccepted(credit));
        }
        Input::WithdrawalRequest { withdrawal, user_signature, block } => {
            release_expired_hold(&mut s, block, &mut effects);
            accept_withdrawal(&mut s, params, withdrawal, user_signature, block)?;
            effects.push(Effect::CoSignWithdrawal(withdrawal));
        }
        Input::Block(n) => {
            if n < s.block {
                return Err(Error::ChainEventInconsistent);
            }
            let previous = s.block;
            s.block = n;
            release_expired_hold(&mut s, n, &mut effects);
            if let Status::Closing { settle_block } = s.status {
                if n < settle_block {
                    request_dispute(&mut s, params, &mut effects);
                } else if previous < settle_block {
                    effects.push(Effect::SettleDue);
                }
            }
        }
        chain @ (Input::ChainDeposited { .. }
        | Input::ChainWithdrawn { .. }
        | Input::ChainExitStarted { .. }
        | Input::ChainDebitSubmitted { .. }
        | Input::ChainCreditSubmitted { .. }
        | Input::ChainSettled { .. }
        | Input::ChainOpened { .. }) => chain_input(&mut s, chain, &mut effects)?,
    }
    assert_step_kept_invariants(state, &s);
    Ok((s, effects))
}

/// The chain's events about this channel (confirmed: the chain is the authority, and an event
/// that contradicts the channel's state is `ChainEventInconsistent`).
fn chain_input(s: &mut ChannelState, input: Input, effects: &mut Vec<Effect>) -> Result<(), Error> {
    match input {
        Input::ChainDeposited { epoch, total_deposited } => {
            require_chain_epoch(s, epoch)?;
            if total_deposited > s.deposited {
                if s.status != Status::Open {
                    return Err(Error::ChainEventInconsistent);
                }
                s.deposited = total_deposited;
            }
        }
        Input::ChainWithdrawn { epoch, total_withdrawn } => {
            require_chain_epoch(s, epoch)?;
            if total_withdrawn > s.withdrawn {
                // Only a co-signed withdrawal can execute, and at most one is outstanding.
                let hold = s.withdrawal_hold.ok_or(Error::ChainEventInconsistent)?;
                if total_withdrawn != hold.cumulative_withdrawn {
                    return Err(Error::ChainEventInconsistent);
                }
                s.withdrawn = total_withdrawn;
                s.withdrawal_hold = None;
            }
        }
        Input::ChainExitStarted { epoch, settle_block } => {
            require_chain_epoch(s, epoch)?;
            if s.status != Status::Open {
                return Err(Error::ChainEventInconsistent);
            }
            s.status = Status::Closing { settle_block };
            // A closing channel accepts no cooperative withdrawal: the hold can never execute.
            if let Some(h) = s.withdrawal_hold.take() {
                effects.push(Effect::WithdrawalHoldReleased(h));
            }
        }
        Input::ChainDebitSubmitted { epoch, cumulative } => {
            require_chain_epoch(s, epoch)?;
            s.chain_debit_total = s.chain_debit_total.max(cumulative);
        }
        Input::ChainCreditSubmitted { epoch, cumulative } => {
            require_chain_epoch(s, epoch)?;
            s.chain_credit_total = s.chain_credit_total.max(cumulative);
        }
        Input::ChainSettled { epoch, paid } => {
            require_chain_epoch(s, epoch)?;
            if !matches!(s.status, Status::Closing { .. }) {
                return Err(Error::ChainEventInconsistent);
            }
            let expected = s.claim();
            s.status = Status::Settled;
            effects.push(Effect::Settled { paid, expected });
        }
        Input::ChainOpened { epoch } => {
            if s.status != Status::Settled || epoch != s.epoch + 1 {
                return Err(Error::ChainEventInconsistent);
            }
            let block = s.block;
            *s = ChannelState::opened(s.user, epoch);
            s.block = block;
            effects.push(Effect::Reopened { epoch });
        }
        _ => unreachable!("chain_input is called with chain inputs only"),
    }
    Ok(())
}

/// What every successful step keeps, checked in release builds too (a failure is a bug in a rule
/// above, never bad input): within an epoch every running total and nonce only grows and the
/// block never goes back; a new epoch starts from zero; the balance is never negative.
fn assert_step_kept_invariants(before: &ChannelState, after: &ChannelState) {
    assert_eq!(before.user, after.user, "a step changed the channel's owner");
    if after.epoch == before.epoch {
        let grew = |what: &str, old: u128, new: u128| assert!(new >= old, "{what} went down in a step: {old} -> {new}");
        grew("deposited", before.deposited.0, after.deposited.0);
        grew("withdrawn", before.withdrawn.0, after.withdrawn.0);
        grew("cumulative debit", before.cumulative_debit().0, after.cumulative_debit().0);
        grew("cumulative credit", before.cumulative_credit().0, after.cumulative_credit().0);
        grew("chain debit total", before.chain_debit_total.0, after.chain_debit_total.0);
        grew("chain credit total", before.chain_credit_total.0, after.chain_credit_total.0);
        grew("debit nonce", u128::from(before.debit_nonce()), u128::from(after.debit_nonce()));
        grew("credit nonce", u128::from(before.credit_nonce()), u128::from(after.credit_nonce()));
    } else {
        assert_eq!(after.epoch, before.epoch + 1, "a step skipped an epoch");
        assert!(
            after.deposited.is_zero() && after.withdrawn.is_zero() && after.debit.is_none() && after.credit.is_none(),
            "a new epoch did not start empty: {after:?}"
        );
    }
    assert!(after.block >= before.block, "a step moved the channel's block back");
    assert!(after.balance().is_ok(), "balance went negative after a successful step: {after:?}");
    assert_eq!(after.signed_debit_locks().0, after.debit_locks.locked(), "the newest debit does not carry the book");
    assert_eq!(after.signed_credit_locks().0, after.credit_locks.locked(), "the newest credit does not carry the book");
}

fn require_chain_epoch(s: &ChannelState, epoch: u64) -> Result<(), Error> {
    if epoch == s.epoch {
        Ok(())
    } else {
        Err(Error::ChainEventInconsistent)
    }
}

fn require_open(s: &ChannelState) -> Result<(), Error> {
    if s.status == Status::Open {
        Ok(())
    } else {
        Err(Error::ChannelNotOpen)
    }
}

/// A proof must carry exactly `(locked, root)` (its direction's book after its change).
fn require_locks(proof: (Amount, B256), expected: (Amount, B256)) -> Result<(), Error> {
    if proof == expected {
        Ok(())
    } else {
        Err(Error::LocksRootMismatch)
    }
}

/// Whether a debit must fit the balance (a payment) or not (a refused debit being refunded).
#[derive(Clone, Copy, PartialEq, Eq)]
enum BalanceRule {
    Checked,
    Refunded,
}

fn accept_debit(
    s: &mut ChannelState,
    p: &ChannelParams,
    d: SignedDebit,
    checked: Option<&CheckedDebit>,
    balance_rule: BalanceRule,
) -> Result<(), Error> {
    let m = &d.message;
    require_next_debit(s, m)?;
    if !matches!(PaymentKind::from_u8(m.kind)?, PaymentKind::Internal | PaymentKind::External) {
        return Err(Error::LockKindMismatch);
    }
    if m.amount.is_zero() {
        return Err(Error::AmountMustNotBeZero);
    }
    if m.recipient == Address::ZERO {
        return Err(Error::RecipientMustNotBeZero);
    }
    if m.recipient == s.user {
        return Err(Error::RecipientMustNotBeSender);
    }
    require_locks((m.locked_amount, m.locks_root), s.signed_debit_locks())?;
    if m.cumulative_debit != s.cumulative_debit().checked_add(m.amount)? {
        return Err(Error::CumulativeMismatch);
    }
    if balance_rule == BalanceRule::Checked && m.amount > s.balance()? {
        return Err(Error::InsufficientBalance);
    }
    // `m.user == s.user` above, so a check of the debit's own signer in this domain suffices.
    if !checked.is_some_and(|c| c.domain == p.domain && c.debit == d) {
        d.verify(&p.domain, s.user)?;
    }
    s.debit = Some(d);
    Ok(())
}

/// What every debit must be: of an open channel, its user and epoch, and the next nonce.
fn require_next_debit(s: &ChannelState, m: &Debit) -> Result<(), Error> {
    require_open(s)?;
    if m.user != s.user {
        return Err(Error::UserMismatch);
    }
    if m.epoch != s.epoch {
        return Err(Error::EpochMismatch);
    }
    if m.nonce <= s.debit_nonce() {
        return Err(Error::NonceMustIncrease);
    }
    if m.nonce != s.debit_nonce() + 1 {
        return Err(Error::NonceMustBeNext);
    }
    Ok(())
}

/// A debit that changes the user's outgoing locks: paid to the hub, named by the lock, its
/// total raised by what the change settles, its root the book's after the change; an added
/// lock must fit the balance.
fn accept_lock_debit(
    s: &mut ChannelState,
    p: &ChannelParams,
    d: SignedDebit,
    change: &LockChange,
) -> Result<(), Error> {
    let m = &d.message;
    require_next_debit(s, m)?;
    if PaymentKind::from_u8(m.kind)? != change.kind() {
        return Err(Error::LockKindMismatch);
    }
    if m.recipient != p.hub {
        return Err(Error::RecipientMustBeHub);
    }
    let mut book = s.debit_locks.clone();
    let at = match (p.role, change) {
        // Her own lock, added by a debit she signed while it was valid and the hub applied:
        // her end records it whenever the receipt comes (her view of the chain may be past
        // its expiry by then); the hub's end judges an addition at its own block.
        (Role::User, LockChange::Add(lock)) => s.block.min(lock.expiry_block.saturating_sub(1)),
        _ => change.user_judged_at(&book, s.block),
    };
    let applied = change.apply(&mut book, at)?;
    if m.amount != applied.lock.amount || m.payment_id != applied.lock.lock_id {
        return Err(Error::LockMismatch);
    }
    if m.cumulative_debit != s.cumulative_debit().checked_add(applied.settled)? {
        return Err(Error::CumulativeMismatch);
    }
    if matches!(change, LockChange::Add(_)) && applied.lock.amount > s.balance()? {
        return Err(Error::InsufficientBalance);
    }
    require_locks((m.locked_amount, m.locks_root), swap(book.root(&p.domain)))?;
    d.verify(&p.domain, s.user)?;
    s.debit = Some(d);
    s.debit_locks = book;
    Ok(())
}

/// `LockBook::root` gives `(root, sum)`; proofs are compared as `(sum, root)`.
fn swap((root, locked): (B256, Amount)) -> (Amount, B256) {
    (locked, root)
}

/// A refused debit and its refund, all or nothing: every debit rule but the balance, then the
/// refund as a credit that gives back at least the debit's amount.
fn accept_refunded_debit(
    s: &mut ChannelState,
    p: &ChannelParams,
    d: SignedDebit,
    checked: Option<&CheckedDebit>,
    refund: SignedCredit,
) -> Result<(), Error> {
    let credit_before = s.cumulative_credit();
    accept_debit(s, p, d, checked, BalanceRule::Refunded)?;
    let owed = credit_before.checked_add(d.message.amount)?;
    match p.role {
        // The hub issues the refund as its very next credit.
        Role::Hub if refund.message.cumulative_credit != owed => return Err(Error::CumulativeMismatch),
        // A wallet may have missed credits: the refund must give back at least the amount.
        Role::User if refund.message.cumulative_credit < owed => return Err(Error::RefundMustCoverDebit),
        _ => {}
    }
    accept_credit(s, p, refund, None)
}

/// A credit, plain (`change` None: the total rises, the book stays) or a lock credit (the total
/// rises by what the change settles, the book changes by it). The hub's end steps only credits
/// it just built, so their totals are exact; a wallet may have missed plain credits, so it
/// accepts a total at least that high.
fn accept_credit(
    s: &mut ChannelState,
    p: &ChannelParams,
    c: SignedCredit,
    change: Option<&LockChange>,
) -> Result<(), Error> {
    let m = &c.message;
    require_newer_credit(s, p, m)?;
    let book = match change {
        None => {
            if m.cumulative_credit <= s.cumulative_credit() {
                return Err(Error::CreditMustIncrease);
            }
            require_locks((m.locked_amount, m.locks_root), s.signed_credit_locks())?;
            None
        }
        Some(change) => {
            let mut book = s.credit_locks.clone();
            // The hub settling its own lock pays the user: her end takes it whenever it comes
            // (the hub judged the reveal at its own confirmed block, which may lag hers); the
            // hub's end settles only by the expiry.
            let at = match p.role {
                Role::User => change.user_judged_at(&book, s.block),
                Role::Hub => s.block,
            };
            let applied = change.apply(&mut book, at)?;
            let owed = s.cumulative_credit().checked_add(applied.settled)?;
            match p.role {
                Role::Hub if m.cumulative_credit != owed => return Err(Error::CumulativeMismatch),
                Role::User if m.cumulative_credit < owed => return Err(Error::CumulativeMismatch),
                _ => {}
            }
            require_locks((m.locked_amount, m.locks_root), swap(book.root(&p.domain)))?;
            Some(book)
        }
    };
    // The wallet verifies every credit. The hub's end only ever steps credits it has just
    // signed itself, so re-verifying would spend a signature recovery per payment for
    // nothing (decision D20; the signing code is pinned by the shared vectors).
    if p.role == Role::User {
        c.verify(&p.domain, p.hub)?;
    }
    s.credit = Some(c);
    if let Some(book) = book {
        s.credit_locks = book;
    }
    Ok(())
}

/// What every credit an end takes must be: for a channel it may take credits in (the wallet's
/// also while closing), its user and epoch, with a nonce above the newest.
fn require_newer_credit(s: &ChannelState, p: &ChannelParams, m: &Credit) -> Result<(), Error> {
    match (p.role, s.status) {
        (_, Status::Open) => {}
        // A credit the hub issued while the channel was open can reach the wallet after a close
        // began; it only helps the user's defence (spec §5.10), so the wallet keeps it.
        (Role::User, Status::Closing { .. }) => {}
        _ => return Err(Error::ChannelNotOpen),
    }
    if m.user != s.user {
        return Err(Error::UserMismatch);
    }
    if m.epoch != s.epoch {
        return Err(Error::EpochMismatch);
    }
    // Credit nonces are ledger positions (spec §3): they rise, with gaps; a wallet that was
    // offline may only see the newest.
    if m.nonce <= s.credit_nonce() {
        return Err(Error::NonceMustIncrease);
    }
    Ok(())
}

fn resync_credit(s: &mut ChannelState, p: &ChannelParams, c: SignedCredit, locks: &[Lock]) -> Result<(), Error> {
    let m = &c.message;
    if p.role != Role::User {
        // The hub's end builds every credit itself: it never catches up.
        return Err(Error::LocksRootMismatch);
    }
    require_newer_credit(s, p, m)?;
    let rise = m.cumulative_credit.checked_sub_or(s.cumulative_credit(), Error::CreditMustIncrease)?;
    let book = LockBook::from_locks(locks)?;
    require_locks((m.locked_amount, m.locks_root), swap(book.root(&p.domain)))?;
    let mut vanished = Amount::ZERO;
    for old in s.credit_locks.iter() {
        match book.get(&old.lock_id) {
            Some(new) if new != old => return Err(Error::LocksRootMismatch),
            Some(_) => {}
            None if old.expiry_block < s.block => {}
            None => vanished = vanished.checked_add(old.amount)?,
        }
    }
    if vanished > rise {
        return Err(Error::LockNotExpired);
    }
    c.verify(&p.domain, p.hub)?;
    s.credit = Some(c);
    s.credit_locks = book;
    Ok(())
}

fn accept_withdrawal(
    s: &mut ChannelState,
    p: &ChannelParams,
    w: Withdrawal,
    user_signature: Signature,
    block: u64,
) -> Result<(), Error> {
    require_open(s)?;
    if w.user != s.user {
        return Err(Error::UserMismatch);
    }
    if w.epoch != s.epoch {
        return Err(Error::EpochMismatch);
    }
    if s.withdrawal_hold.is_some() {
        return Err(Error::WithdrawalPending);
    }
    if w.expiry_block <= block {
        return Err(Error::ExpiryMustBeInFuture);
    }
    if w.expiry_block - block > p.max_withdrawal_expiry_blocks {
        return Err(Error::ExpiryTooFar);
    }
    if w.cumulative_withdrawn <= s.withdrawn {
        return Err(Error::WithdrawalMustIncrease);
    }
    let amount = w.cumulative_withdrawn.checked_sub_or(s.withdrawn, Error::WithdrawalMustIncrease)?;
    if amount > s.balance()? {
        return Err(Error::InsufficientBalance);
    }
    Signed { message: w, signature: user_signature }.verify(&p.domain, s.user)?;
    s.withdrawal_hold = Some(w);
    Ok(())
}

/// Releases the hold once its expiry block is confirmed without a matching `Withdrawn` event.
fn release_expired_hold(s: &mut ChannelState, block: u64, effects: &mut Vec<Effect>) {
    if let Some(h) = s.withdrawal_hold {
        if block > h.expiry_block {
            s.withdrawal_hold = None;
            effects.push(Effect::WithdrawalHoldReleased(h));
        }
    }
}

/// While closing, asks once per higher total to submit this end's newest proof on chain: the
/// contract holds a lower total than this end's newest (nonces do not matter, spec §5.10).
fn request_dispute(s: &mut ChannelState, p: &ChannelParams, effects: &mut Vec<Effect>) {
    match p.role {
        Role::Hub => {
            if let Some(d) = s.debit {
                let total = d.message.cumulative_debit;
                if total > s.chain_debit_total && total > s.dispute_requested_total {
                    s.dispute_requested_total = total;
                    effects.push(Effect::SubmitDebit(d));
                }
            }
        }
        Role::User => {
            if let Some(c) = s.credit.clone() {
                let total = c.message.cumulative_credit;
                if total > s.chain_credit_total && total > s.dispute_requested_total {
                    s.dispute_requested_total = total;
                    effects.push(Effect::SubmitCredit(c));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funded() -> ChannelState {
        let mut s = ChannelState::opened(Address::repeat_byte(7), 1);
        s.deposited = Amount(100);
        s.block = 10;
        s
    }

    #[test]
    fn a_step_that_keeps_every_total_passes_the_invariant_check() {
        let before = funded();
        let mut after = before.clone();
        after.withdrawn = Amount(40);
        after.block = 11;
        assert_step_kept_invariants(&before, &after);
        let reopened = ChannelState { block: before.block, ..ChannelState::opened(before.user, 2) };
        assert_step_kept_invariants(&ChannelState { status: Status::Settled, ..before }, &reopened);
    }

    #[test]
    #[should_panic(expected = "deposited went down")]
    fn a_step_that_lowers_a_running_total_is_a_bug() {
        let before = funded();
        let after = ChannelState { deposited: Amount(99), ..before.clone() };
        assert_step_kept_invariants(&before, &after);
    }

    #[test]
    #[should_panic(expected = "balance went negative")]
    fn a_step_that_leaves_a_negative_balance_is_a_bug() {
        let before = funded();
        let after = ChannelState { withdrawn: Amount(101), ..before.clone() };
        assert_step_kept_invariants(&before, &after);
    }

    #[test]
    #[should_panic(expected = "skipped an epoch")]
    fn a_step_that_skips_an_epoch_is_a_bug() {
        let before = funded();
        assert_step_kept_invariants(&before, &ChannelState::opened(before.user, 3));
    }
}
