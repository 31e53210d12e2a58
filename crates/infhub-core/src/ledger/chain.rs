//! Confirmed contract events: how each moves the channels, the reserve and the payouts.

use super::{Account, AnnouncedWithdrawal, ChainFunds, CheckpointHeader, Ledger, OpenDebitChallenge, Outcome};
use crate::channel::{step, ChannelState, Input};
use crate::point_lock::Scalar;
use crate::{Amount, Error};
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

/// Where a contract event sits in the chain. Events are applied in this order, each at most
/// once: the ledger keeps the position of the last one applied (its high-water mark), durably,
/// with the rest of its state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogPosition {
    /// Block number.
    pub block: u64,
    /// Index of the log within the block.
    pub log_index: u64,
}

/// A confirmed contract event, as the ledger consumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainEvent {
    /// `ChannelOpened`.
    ChannelOpened {
        /// The channel owner.
        user: Address,
        /// The new epoch.
        epoch: u64,
        /// Who called `openChannel(s)`: the hub (a registration) or the user.
        opened_by: Address,
    },
    /// `ChannelRegistered`: the hub registered a channel its user had opened.
    ChannelRegistered {
        /// The channel owner.
        user: Address,
        /// Its epoch.
        epoch: u64,
    },
    /// `Deposited`.
    Deposited {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// Running total of deposits this epoch.
        total_deposited: Amount,
    },
    /// `Withdrawn`.
    Withdrawn {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// Running total withdrawn this epoch.
        total_withdrawn: Amount,
        /// Part advanced by the reserve.
        from_reserve: Amount,
    },
    /// `DebitRealized`.
    DebitRealized {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// Tokens moved to the reserve.
        moved: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `DebitSubmitted` (also emitted by `realizeDebit`).
    DebitSubmitted {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// The running total now held by the contract.
        cumulative: Amount,
    },
    /// `CreditSubmitted`.
    CreditSubmitted {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// The running total now held by the contract.
        cumulative: Amount,
    },
    /// `ExitStarted`.
    ExitStarted {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// First block at which settlement is possible.
        settle_block: u64,
    },
    /// `Settled`.
    Settled {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// What the user was paid.
        paid: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `ReserveDeposited`.
    ReserveDeposited {
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `CustodialDeposited`: tokens for a custodial account, now in the reserve.
    CustodialDeposited {
        /// The custodial account's address (its reference).
        account: Address,
        /// Tokens deposited.
        amount: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `ReserveWithdrawn`.
    ReserveWithdrawn {
        /// Amount taken out.
        amount: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `PayoutBatchExecuted`.
    PayoutBatchExecuted {
        /// The batch's id.
        batch_id: B256,
        /// The batch's total.
        total: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `ExcessToReserve`: tokens sent to the contract outside its functions joined the reserve.
    ExcessToReserve {
        /// Tokens moved.
        amount: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `EscrowToReserve`: a resolved lock of a settled close paid the hub from its escrow
    /// (spec §5.11a).
    EscrowToReserve {
        /// Tokens moved into the reserve.
        amount: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `ReserveWithdrawalAnnounced`: the hub announced a reserve withdrawal. What it announces
    /// can leave after the notice, so the ledger earmarks it (spec §5.13).
    ReserveWithdrawalAnnounced {
        /// Amount announced.
        amount: Amount,
        /// First block it can execute.
        unlock_block: u64,
    },
    /// `ReserveWithdrawalCancelled`.
    ReserveWithdrawalCancelled {
        /// Amount that was announced.
        amount: Amount,
    },
    /// `CheckpointPosted`: the contract took a checkpoint (spec §5.16).
    CheckpointPosted(CheckpointHeader),
    /// `HubHaltedByComplaint`: a complaint proved checkpoint `id` wrong; the contract refuses
    /// checkpoints, payouts and reserve outflows from now on (spec §5.16).
    HubHalted {
        /// The checkpoint proved wrong.
        id: u64,
    },
    /// `DebitChallenged`: the user disputes the debit total of her leaf in checkpoint `id`;
    /// the hub must answer with a debit she signed by `answer_by_block` (spec §5.16).
    DebitChallenged {
        /// The disputed checkpoint.
        id: u64,
        /// The user.
        account: Address,
        /// The leaf's epoch.
        epoch: u64,
        /// The leaf's debit total.
        debit_total: Amount,
        /// Last block in which an answer counts.
        answer_by_block: u64,
    },
    /// `DebitChallengeAnswered`: the challenge of `account` is answered.
    DebitChallengeAnswered {
        /// The user.
        account: Address,
    },
    /// `PointRevealed` of the chain's point registry: `scalar` opens `point` from this block
    /// on (spec §5.17). The ledger keeps it for the points of locks it follows only.
    PointRevealed {
        /// The point's address.
        point: Address,
        /// Its scalar.
        scalar: Scalar,
    },
    /// `LockRegistered`: a lock registered through a proof of a closing channel (spec §5.11a).
    LockRegistered {
        /// The channel owner.
        user: Address,
        /// The close's epoch.
        epoch: u64,
        /// The hub's locks to the user (`HUB_LOCKS`) rather than hers to the hub.
        hub_locks: bool,
        /// The EIP-712 digest of the proof it was registered through.
        proof_digest: B256,
        /// The lock's id.
        lock_id: B256,
        /// The lock's amount.
        amount: Amount,
    },
    /// `LockResolved`: `unlock` resolved a registration after its close settled.
    LockResolved {
        /// The channel owner.
        user: Address,
        /// The close's epoch.
        epoch: u64,
        /// The proof's digest.
        proof_digest: B256,
        /// The lock's id.
        lock_id: B256,
    },
}

impl ChainEvent {
    /// The account (channel or custodial) the event is about, if it is about one.
    pub fn account(&self) -> Option<Address> {
        match *self {
            ChainEvent::ChannelOpened { user, .. }
            | ChainEvent::ChannelRegistered { user, .. }
            | ChainEvent::Deposited { user, .. }
            | ChainEvent::Withdrawn { user, .. }
            | ChainEvent::DebitRealized { user, .. }
            | ChainEvent::DebitSubmitted { user, .. }
            | ChainEvent::CreditSubmitted { user, .. }
            | ChainEvent::ExitStarted { user, .. }
            | ChainEvent::Settled { user, .. }
            | ChainEvent::LockRegistered { user, .. }
            | ChainEvent::LockResolved { user, .. } => Some(user),
            ChainEvent::CustodialDeposited { account, .. }
            | ChainEvent::DebitChallenged { account, .. }
            | ChainEvent::DebitChallengeAnswered { account } => Some(account),
            ChainEvent::ReserveDeposited { .. }
            | ChainEvent::ReserveWithdrawn { .. }
            | ChainEvent::PayoutBatchExecuted { .. }
            | ChainEvent::ExcessToReserve { .. }
            | ChainEvent::EscrowToReserve { .. }
            | ChainEvent::ReserveWithdrawalAnnounced { .. }
            | ChainEvent::ReserveWithdrawalCancelled { .. }
            | ChainEvent::CheckpointPosted(_)
            | ChainEvent::HubHalted { .. }
            | ChainEvent::PointRevealed { .. } => None,
        }
    }
}

impl Ledger {
    pub(super) fn chain_event(&mut self, at_block: u64, ev: ChainEvent) -> Result<Outcome, Error> {
        let params = self.channel_params();
        let mut effects = Vec::new();
        let mut on_channel = |ledger: &mut Ledger, user: Address, input: Input, chain: Option<ChainFunds>| {
            let acct = ledger.accounts.get(&user).ok_or(Error::ChainEventInconsistent)?;
            let (ch, eff) = step(&acct.channel, &params, input)?;
            let set = chain.is_some();
            ledger.replace_channel(user, ch, chain.unwrap_or_default(), set);
            effects.extend(eff.into_iter().map(|e| (user, e)));
            Ok::<(), Error>(())
        };
        // Events of a channel the ledger does not track (opened by its user alone, never funded)
        // concern no one the hub owes anything: they are skipped (a deposit starts tracking).
        let untracked = |l: &Ledger, user: &Address| !l.accounts.contains_key(user);
        match ev {
            ChainEvent::ChannelOpened { user, epoch, opened_by } => match self.accounts.get(&user) {
                None if opened_by != self.params.hub => {} // a stranger's empty channel: not tracked
                None => self.track(user, epoch, true)?,
                Some(acct) if acct.channel.epoch == epoch => {} // replayed event: no-op
                Some(_) => on_channel(self, user, Input::ChainOpened { epoch }, Some(ChainFunds::default()))?,
            },
            ChainEvent::ChannelRegistered { user, epoch } => match self.accounts.get(&user) {
                None => self.track(user, epoch, true)?,
                Some(acct) if acct.channel.epoch == epoch => {} // already tracked
                Some(_) => return Err(Error::ChainEventInconsistent),
            },
            ChainEvent::Deposited { user, epoch, total_deposited } => {
                if untracked(self, &user) {
                    // Money is in the channel: follow it from now on, whatever the account count
                    // (a confirmed deposit is never refused; it costs the depositor the tokens).
                    self.track(user, epoch, false)?;
                }
                on_channel(self, user, Input::ChainDeposited { epoch, total_deposited }, None)?
            }
            ChainEvent::ExitStarted { user, .. }
            | ChainEvent::DebitSubmitted { user, .. }
            | ChainEvent::CreditSubmitted { user, .. }
            | ChainEvent::Settled { user, .. }
                if untracked(self, &user) => {}
            ChainEvent::Withdrawn { user, epoch, total_withdrawn, from_reserve } => {
                let acct = self.accounts.get(&user).ok_or(Error::ChainEventInconsistent)?;
                if total_withdrawn <= acct.channel.withdrawn {
                    return Ok(Outcome::Applied(Vec::new())); // replay
                }
                let mut chain = acct.chain;
                chain.advanced_from_reserve = chain.advanced_from_reserve.checked_add(from_reserve)?;
                let reserve = self.reserve.checked_sub_or(from_reserve, Error::ChainEventInconsistent)?;
                on_channel(self, user, Input::ChainWithdrawn { epoch, total_withdrawn }, Some(chain))?;
                self.reserve = reserve;
            }
            ChainEvent::DebitRealized { user, epoch, moved, reserve_after } => {
                let acct = self.accounts.get(&user).ok_or(Error::ChainEventInconsistent)?;
                if acct.channel.epoch != epoch {
                    return Err(Error::ChainEventInconsistent);
                }
                let mut chain = acct.chain;
                chain.realized_debit = chain.realized_debit.checked_add(moved)?;
                if self.reserve.checked_add(moved)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                let ch = acct.channel.clone();
                self.note_liability_inflow(moved)?;
                self.replace_channel(user, ch, chain, true);
                self.reserve = reserve_after;
            }
            ChainEvent::DebitSubmitted { user, epoch, cumulative } => {
                on_channel(self, user, Input::ChainDebitSubmitted { epoch, cumulative }, None)?
            }
            ChainEvent::CreditSubmitted { user, epoch, cumulative } => {
                on_channel(self, user, Input::ChainCreditSubmitted { epoch, cumulative }, None)?
            }
            ChainEvent::ExitStarted { user, epoch, settle_block } => {
                on_channel(self, user, Input::ChainExitStarted { epoch, settle_block }, None)?
            }
            ChainEvent::Settled { user, epoch, paid, reserve_after } => {
                on_channel(self, user, Input::ChainSettled { epoch, paid }, Some(ChainFunds::default()))?;
                self.reserve = reserve_after;
            }
            ChainEvent::ReserveDeposited { .. }
            | ChainEvent::ExcessToReserve { .. }
            | ChainEvent::EscrowToReserve { .. }
            | ChainEvent::CustodialDeposited { .. }
            | ChainEvent::ReserveWithdrawn { .. }
            | ChainEvent::ReserveWithdrawalAnnounced { .. }
            | ChainEvent::ReserveWithdrawalCancelled { .. }
            | ChainEvent::PayoutBatchExecuted { .. } => self.reserve_event(at_block, ev)?,
            ChainEvent::CheckpointPosted(header) => self.checkpoint_posted(header),
            ChainEvent::HubHalted { id } => {
                self.checkpoints.halted_at.get_or_insert(id);
            }
            ChainEvent::DebitChallenged { id, account, epoch, debit_total, answer_by_block } => {
                // Only accounts the ledger follows can be answered (and bound the map).
                if self.accounts.contains_key(&account) {
                    let c = OpenDebitChallenge { id, epoch, debit_total, answer_by_block };
                    self.checkpoints.debit_challenges.insert(account, c);
                }
            }
            ChainEvent::DebitChallengeAnswered { account } => {
                self.checkpoints.debit_challenges.remove(&account);
            }
            ChainEvent::PointRevealed { .. } | ChainEvent::LockRegistered { .. } | ChainEvent::LockResolved { .. } => {
                self.lock_event(at_block, ev)?
            }
        }
        self.take_seq();
        Ok(Outcome::Applied(effects))
    }

    /// The events that move the reserve (and the custodial pool) rather than a channel.
    fn reserve_event(&mut self, at_block: u64, ev: ChainEvent) -> Result<(), Error> {
        match ev {
            ChainEvent::ReserveDeposited { reserve_after } => {
                if reserve_after < self.reserve {
                    return Err(Error::ChainEventInconsistent);
                }
                self.reserve = reserve_after;
            }
            ChainEvent::ExcessToReserve { amount, reserve_after }
            | ChainEvent::EscrowToReserve { amount, reserve_after } => {
                if self.reserve.checked_add(amount)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                self.reserve = reserve_after;
            }
            ChainEvent::CustodialDeposited { account, amount, reserve_after } => {
                if self.reserve.checked_add(amount)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                // Checked first: on Err the ledger must be unchanged.
                let inflows = self.checkpoints.liability_inflows.checked_add(amount)?;
                match self.custodial.get_mut(&account) {
                    Some(c) => {
                        c.balance = c.balance.checked_add(amount)?;
                        c.deposited_on_chain = c.deposited_on_chain.checked_add(amount)?;
                        self.custodial_total =
                            self.custodial_total.checked_add(amount.0).ok_or(Error::ChainEventInconsistent)?;
                    }
                    // Owed to someone the ledger cannot name yet: kept apart, never spendable,
                    // reported by reconciliation.
                    None => self.unattributed = self.unattributed.checked_add(amount)?,
                }
                self.checkpoints.liability_inflows = inflows;
                self.reserve = reserve_after;
            }
            ChainEvent::ReserveWithdrawn { amount, reserve_after } => {
                if self.reserve.checked_sub_or(amount, Error::ChainEventInconsistent)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                self.reserve = reserve_after;
                self.earmarked = Amount::ZERO;
                self.reserve_withdrawal = None;
            }
            ChainEvent::ReserveWithdrawalAnnounced { amount, unlock_block } => {
                // The chain's announcement is what can leave: it replaces whatever the hub
                // earmarked for it (or earmarks one made outside the ledger).
                let notice = unlock_block.checked_sub(at_block).ok_or(Error::ChainEventInconsistent)?;
                let expires_block = unlock_block.checked_add(notice).ok_or(Error::ChainEventInconsistent)?;
                self.earmarked = amount;
                self.reserve_withdrawal = Some(AnnouncedWithdrawal { amount, unlock_block, expires_block });
            }
            ChainEvent::ReserveWithdrawalCancelled { .. } => {
                self.earmarked = Amount::ZERO;
                self.reserve_withdrawal = None;
            }
            ChainEvent::PayoutBatchExecuted { batch_id, total, reserve_after } => {
                if self.reserve.checked_sub_or(total, Error::ChainEventInconsistent)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                // Only a batch this ledger handed out can execute (the hub key sends no other).
                let at = self.in_flight.iter().position(|b| b.id == batch_id).ok_or(Error::ChainEventInconsistent)?;
                if self.in_flight[at].total() != total.0 {
                    return Err(Error::ChainEventInconsistent);
                }
                self.payouts_pending = self.payouts_pending.checked_sub_or(total, Error::ChainEventInconsistent)?;
                self.in_flight.remove(at);
                self.reserve = reserve_after;
            }
            _ => unreachable!("reserve_event is called with reserve events only"),
        }
        Ok(())
    }

    /// Starts tracking the channel of `user` at `epoch` (open, empty). A registration counts
    /// against `max_accounts`; a deposit into a channel its user opened alone does not.
    pub(super) fn track(&mut self, user: Address, epoch: u64, registration: bool) -> Result<(), Error> {
        if registration && self.accounts.len() >= self.params.max_accounts {
            return Err(Error::TooManyAccounts);
        }
        if self.custodial.contains_key(&user) {
            return Err(Error::ChainEventInconsistent);
        }
        let mut channel = ChannelState::opened(user, epoch);
        channel.block = self.block;
        let acct = Account { channel, chain: ChainFunds::default() };
        self.index.insert(user, &acct);
        self.accounts.insert(user, acct);
        Ok(())
    }
}
