//! What the ledger knows of its checkpoints (spec §5.16): the running total of reserve inflows
//! that bring a liability with them (the contract's `liabilityInflowsTotal`, as of the ledger's
//! confirmed block), the newest checkpoint confirmed on chain, the one the hub built and has
//! not seen confirmed yet, and the users' open challenges of the debits its leaves state.
//!
//! Building a checkpoint reads the ledger and hashes every leaf, which the pure ledger leaves
//! to its shell: the shell builds the tree, stores its leaves, then records the header here
//! ([`Command::CheckpointBuilt`](super::Command::CheckpointBuilt)). From then on posting it is a
//! duty like any other ([`crate::duties::due`]): due while it is built and not confirmed, so a
//! crash (the record is in the log) or a reorg that drops the transaction ends in a repost. A
//! checkpoint the chain keeps refusing (the reserve fell below it, say) is replaced by a fresh
//! one once `interval_blocks` more have passed.

use super::{Ledger, Outcome};
use crate::contract::PostedCheckpoint;
use crate::{Amount, Error};
use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A checkpoint's id and the figures `postCheckpoint` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// Its id: the previous one's plus one.
    pub id: u64,
    /// Its root, total, ledger position, block and inflows.
    pub checkpoint: PostedCheckpoint,
}

/// The ledger's checkpoint state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBook {
    /// `liabilityInflowsTotal` through the ledger's confirmed block: custodial deposits and
    /// realized debits, ever.
    pub liability_inflows: Amount,
    /// The newest checkpoint confirmed on chain.
    pub posted: Option<CheckpointHeader>,
    /// The checkpoint built and not yet confirmed on chain.
    pub pending: Option<CheckpointHeader>,
    /// The checkpoint a complaint proved wrong: the contract has halted the hub, and no
    /// checkpoint is built or posted again.
    #[serde(default)]
    pub halted_at: Option<u64>,
    /// Debit challenges open on chain against the hub's leaves, by account (at most one each):
    /// answering them is a duty while their period lasts.
    #[serde(default)]
    pub debit_challenges: BTreeMap<Address, OpenDebitChallenge>,
}

/// A user's open dispute of her leaf's debit total (`DebitChallenged`, spec §5.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDebitChallenge {
    /// The disputed checkpoint.
    pub id: u64,
    /// The leaf's epoch.
    pub epoch: u64,
    /// The leaf's debit total: the answer's signed debit must reach it.
    pub debit_total: Amount,
    /// Last block in which an answer counts.
    pub answer_by_block: u64,
}

impl CheckpointBook {
    /// The id the next checkpoint gets.
    pub fn next_id(&self) -> u64 {
        self.posted.map_or(1, |p| p.id + 1)
    }
}

impl Ledger {
    /// The id of the checkpoint to build now, if one is due: none was ever posted and the
    /// ledger follows the chain; the newest posted one is `interval_blocks` old; or the one
    /// built has waited `interval_blocks` without the chain taking it. Never with
    /// `interval_blocks` zero (checkpoints off).
    pub fn checkpoint_due(&self, interval_blocks: u64) -> Option<u64> {
        if interval_blocks == 0 || self.block == 0 || self.checkpoints.halted_at.is_some() {
            return None;
        }
        let book = &self.checkpoints;
        let since = match (book.pending, book.posted) {
            (Some(p), _) | (None, Some(p)) => p.checkpoint.chain_block,
            (None, None) => return Some(1),
        };
        (self.block >= since.saturating_add(interval_blocks)).then(|| book.next_id())
    }

    /// Records a checkpoint the shell built from this ledger at `header.checkpoint.ledger_seq`.
    /// Refused (`CheckpointOutOfOrder`) unless it is the next id and no figure goes back
    /// from the posted one or forward past the ledger.
    pub(super) fn checkpoint_built(&mut self, header: CheckpointHeader) -> Result<Outcome, Error> {
        let c = header.checkpoint;
        if header.id != self.checkpoints.next_id()
            || c.ledger_seq >= self.next_seq
            || c.chain_block > self.block
            || c.inflows_through > U256::from(self.checkpoints.liability_inflows.0)
        {
            return Err(Error::CheckpointOutOfOrder);
        }
        if let Some(p) = self.checkpoints.posted {
            let q = p.checkpoint;
            if c.ledger_seq < q.ledger_seq || c.chain_block < q.chain_block || c.inflows_through < q.inflows_through {
                return Err(Error::CheckpointOutOfOrder);
            }
        }
        self.checkpoints.pending = Some(header);
        self.take_seq();
        Ok(Outcome::CheckpointRecorded)
    }

    /// A confirmed `CheckpointPosted`: the newest posted checkpoint; the one built is done if
    /// it had this id or a lower one (a rebuilt checkpoint's older version may be the one the
    /// chain took: the chain decides).
    pub(super) fn checkpoint_posted(&mut self, header: CheckpointHeader) {
        if self.checkpoints.posted.is_some_and(|p| p.id >= header.id) {
            return; // replayed
        }
        self.checkpoints.posted = Some(header);
        if self.checkpoints.pending.is_some_and(|p| p.id <= header.id) {
            self.checkpoints.pending = None;
        }
    }

    /// Adds an inflow that brings a liability with it (a custodial deposit, a realized debit).
    pub(super) fn note_liability_inflow(&mut self, amount: Amount) -> Result<(), Error> {
        self.checkpoints.liability_inflows = self.checkpoints.liability_inflows.checked_add(amount)?;
        Ok(())
    }
}
