//! Where payouts and deposits stand: one owner for what the API reports.
//!
//! A payout's status is derived from the ledger first (queued, or in a batch in flight until
//! the batch's execution is confirmed) and completed by what this process saw of the batch's
//! transactions (sent, mined, reverted). A payout neither queued nor in flight was confirmed
//! executed: the ledger lets a batch go only on its confirmed `PayoutBatchExecuted`. What this
//! process saw is lost at a restart, so those details are optional; the status never is.
//!
//! Deposits are reported from the moment they are mined: the chain duties keep those seen but
//! not yet confirmed (the ledger counts a deposit only once it is confirmed).

use infhub_core::ledger::Ledger;
use infhub_core::{Address, Amount, B256};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};

/// Payouts whose execution this process saw confirmed and remembers the details of (the
/// oldest are forgotten first; their status stays `executed`, without the transaction).
pub const EXECUTED_PAYOUTS_REMEMBERED: usize = 100_000;

/// Where an external payout stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case", rename_all_fields = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum PayoutStatus {
    /// Waiting in the queue for the next batch.
    Queued,
    /// In a batch handed to the chain; not mined yet (or mined in a block a reorg took back).
    Sent {
        /// The batch id.
        #[cfg_attr(feature = "schema", schemars(with = "infhub_core::schema::WordSchema"))]
        batch_id: B256,
        /// The newest transaction sent for it by this process, if any yet.
        #[cfg_attr(feature = "schema", schemars(with = "Option<infhub_core::schema::WordSchema>"))]
        tx_hash: Option<B256>,
    },
    /// Mined, waiting for its confirmations.
    Mined {
        /// The batch id.
        #[cfg_attr(feature = "schema", schemars(with = "infhub_core::schema::WordSchema"))]
        batch_id: B256,
        /// The transaction.
        #[cfg_attr(feature = "schema", schemars(with = "infhub_core::schema::WordSchema"))]
        tx_hash: B256,
        /// Its block.
        block: u64,
    },
    /// The batch transaction reverted. The hub sends the batch again until its execution is
    /// confirmed (a batch that executed meanwhile is not paid twice); an operator should look.
    Reverted {
        /// The batch id.
        #[cfg_attr(feature = "schema", schemars(with = "infhub_core::schema::WordSchema"))]
        batch_id: B256,
        /// The transaction that reverted.
        #[cfg_attr(feature = "schema", schemars(with = "infhub_core::schema::WordSchema"))]
        tx_hash: B256,
    },
    /// Executed, confirmed: final.
    Executed {
        /// The batch id (unknown if it executed before this process started).
        #[cfg_attr(feature = "schema", schemars(with = "Option<infhub_core::schema::WordSchema>"))]
        batch_id: Option<B256>,
        /// The transaction (unknown if it executed before this process started).
        #[cfg_attr(feature = "schema", schemars(with = "Option<infhub_core::schema::WordSchema>"))]
        tx_hash: Option<B256>,
        /// Its block (unknown if it executed before this process started).
        block: Option<u64>,
    },
}

/// A deposit mined but not yet confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PendingDeposit {
    /// Block it is in.
    pub block: u64,
    /// Running total it would bring.
    pub total_deposited: Amount,
}

/// What this process saw of one payout batch's transactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BatchTx {
    /// The newest transaction sent for it.
    pub sent: Option<B256>,
    /// The newest mined one: hash, block, success.
    pub mined: Option<(B256, u64, bool)>,
}

/// Payout and deposit status, kept by the chain duties.
#[derive(Debug, Default)]
pub struct Statuses {
    /// Unconfirmed deposits by account.
    pending_deposits: HashMap<Address, Vec<PendingDeposit>>,
    /// Transactions of batches in flight, by batch id.
    pub(crate) batches: HashMap<B256, BatchTx>,
    /// Confirmed executions seen by this process: (payer, payment id) → (batch, tx, block).
    executed: HashMap<(Address, B256), (B256, Option<B256>, u64)>,
    executed_order: VecDeque<(Address, B256)>,
}

impl Statuses {
    /// The status of the payout of `payer`'s payment `payment_id`, which the caller knows is an
    /// external payment the ledger applied.
    pub fn payout(&self, ledger: &Ledger, payer: Address, payment_id: B256) -> PayoutStatus {
        if ledger.queued_payouts().any(|p| p.payer == payer && p.payment_id == payment_id) {
            return PayoutStatus::Queued;
        }
        let in_batch = ledger
            .payout_batches_in_flight()
            .find(|b| b.payouts.iter().any(|p| p.payer == payer && p.payment_id == payment_id));
        if let Some(b) = in_batch {
            let tx = self.batches.get(&b.id).copied().unwrap_or_default();
            return match tx.mined {
                Some((tx_hash, _, false)) => PayoutStatus::Reverted { batch_id: b.id, tx_hash },
                Some((tx_hash, block, true)) => PayoutStatus::Mined { batch_id: b.id, tx_hash, block },
                None => PayoutStatus::Sent { batch_id: b.id, tx_hash: tx.sent },
            };
        }
        match self.executed.get(&(payer, payment_id)) {
            Some((batch_id, tx_hash, block)) => {
                PayoutStatus::Executed { batch_id: Some(*batch_id), tx_hash: *tx_hash, block: Some(*block) }
            }
            None => PayoutStatus::Executed { batch_id: None, tx_hash: None, block: None },
        }
    }

    /// Remembers that a batch's execution was confirmed, for its payers' statuses.
    pub(crate) fn executed(&mut self, batch_id: B256, payers: &[(Address, B256)]) -> PayoutStatus {
        let tx = self.batches.remove(&batch_id).unwrap_or_default();
        let (tx_hash, block) = match tx.mined {
            Some((hash, block, true)) => (Some(hash), block),
            _ => (None, 0),
        };
        for key in payers {
            if self.executed.insert(*key, (batch_id, tx_hash, block)).is_none() {
                self.executed_order.push_back(*key);
            }
        }
        while self.executed_order.len() > EXECUTED_PAYOUTS_REMEMBERED {
            if let Some(old) = self.executed_order.pop_front() {
                self.executed.remove(&old);
            }
        }
        PayoutStatus::Executed { batch_id: Some(batch_id), tx_hash, block: (block != 0).then_some(block) }
    }

    /// Deposits of `user` mined but not yet confirmed.
    pub fn pending_deposits(&self, user: &Address) -> &[PendingDeposit] {
        self.pending_deposits.get(user).map_or(&[], |v| v.as_slice())
    }

    pub(crate) fn deposit_seen(&mut self, user: Address, deposit: PendingDeposit) {
        self.pending_deposits.entry(user).or_default().push(deposit);
    }

    /// Forgets deposits in `block` (confirmed, or reorganised away); returns the accounts whose
    /// deposits it forgot.
    pub(crate) fn forget_deposits_in(&mut self, block: u64, only: Option<Address>) -> Vec<Address> {
        let mut gone = Vec::new();
        self.pending_deposits.retain(|user, list| {
            if only.is_some_and(|u| u != *user) {
                return true;
            }
            let before = list.len();
            list.retain(|d| d.block != block);
            if list.len() != before {
                gone.push(*user);
            }
            !list.is_empty()
        });
        gone.sort_unstable();
        gone
    }
}
