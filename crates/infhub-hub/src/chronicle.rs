//! The public record of the hub's books, for the explorer (issue 24): what anyone may see
//! without learning who paid whom off chain. A **block** is the records up to and including a
//! seal (§4.4a): its sequence range, how many records and payments it holds, the Merkle root of
//! its proofs, the hub's signature over the root, and its commit time. The chain's events
//! (deposits, withdrawals, exits, disputes, settlements, reserve moves) are public on chain
//! anyway and are listed as they were applied. Both are kept for the newest
//! [`MAX_BLOCKS_KEPT`] blocks and [`MAX_EVENTS_KEPT`] events, in memory, fed by each commit and
//! rebuilt at open from the log's tail, so a page never reads the log.

use infhub_core::ledger::{ChainEvent, Command, Outcome};
use infhub_core::{Amount, Signature, B256};
use infhub_ledger::store::LogRecord;
use serde::Serialize;
use std::collections::VecDeque;

/// Blocks kept.
pub const MAX_BLOCKS_KEPT: usize = 10_000;
/// Chain events kept.
pub const MAX_EVENTS_KEPT: usize = 10_000;
/// Records read back from the log's tail at open to refill the chronicle.
pub const REBUILD_RECORDS: u64 = 10_000;

/// One block: the records up to a seal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    /// The first record's sequence number.
    pub first_seq: u64,
    /// The seal's sequence number (the block's last record).
    pub seq: u64,
    /// Records in the block, the seal included.
    pub records: u64,
    /// Payments among them (transfers applied, internal or external).
    pub payments: u64,
    /// Proofs the seal signs.
    pub proofs: u32,
    /// The Merkle root of those proofs.
    pub root: B256,
    /// The hub's signature over `ProofBatch(root)`.
    pub signature: Signature,
    /// When the seal was committed (ms since the Unix epoch).
    pub at_ms: u64,
}

/// One chain event as the ledger applied it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicEvent {
    /// The record's sequence number.
    pub seq: u64,
    /// When it was committed (ms since the Unix epoch).
    pub at_ms: u64,
    /// The chain block it happened in.
    pub block: u64,
    /// The event.
    pub event: ChainEvent,
}

impl PublicEvent {
    /// The reserve after the event, for the events that report it.
    pub fn reserve_after(&self) -> Option<Amount> {
        match self.event {
            ChainEvent::DebitRealized { reserve_after, .. }
            | ChainEvent::Settled { reserve_after, .. }
            | ChainEvent::ReserveDeposited { reserve_after }
            | ChainEvent::CustodialDeposited { reserve_after, .. }
            | ChainEvent::ReserveWithdrawn { reserve_after, .. }
            | ChainEvent::PayoutBatchExecuted { reserve_after, .. } => Some(reserve_after),
            _ => None,
        }
    }
}

/// The newest blocks and chain events.
#[derive(Debug, Default)]
pub struct Chronicle {
    blocks: VecDeque<Block>,
    events: VecDeque<PublicEvent>,
    /// The block being filled: its first seq, records and payments so far.
    open: Option<(u64, u64, u64)>,
}

impl Chronicle {
    /// Takes in committed records, in sequence order.
    pub fn observe(&mut self, records: &[LogRecord]) {
        for r in records {
            let (first, count, payments) = self.open.get_or_insert((r.seq, 0, 0));
            *count += 1;
            *payments += u64::from(matches!(r.outcome, Outcome::Paid { .. }));
            if let Command::Chain { at, event } = &r.command {
                if self.events.len() == MAX_EVENTS_KEPT {
                    self.events.pop_front();
                }
                self.events.push_back(PublicEvent { seq: r.seq, at_ms: r.at_ms, block: at.block, event: *event });
            }
            if let Outcome::Sealed { root, signature, proofs } = &r.outcome {
                let block = Block {
                    first_seq: *first,
                    seq: r.seq,
                    records: *count,
                    payments: *payments,
                    proofs: *proofs,
                    root: *root,
                    signature: *signature,
                    at_ms: r.at_ms,
                };
                self.open = None;
                if self.blocks.len() == MAX_BLOCKS_KEPT {
                    self.blocks.pop_front();
                }
                self.blocks.push_back(block);
            }
        }
    }

    /// Up to `limit` blocks sealed before `before_seq`, newest first.
    pub fn blocks(&self, before_seq: u64, limit: usize) -> Vec<Block> {
        let end = self.blocks.partition_point(|b| b.seq < before_seq);
        self.blocks.range(..end).rev().take(limit).cloned().collect()
    }

    /// The block whose range holds `seq`, if it is kept.
    pub fn block_holding(&self, seq: u64) -> Option<Block> {
        let i = self.blocks.partition_point(|b| b.seq < seq);
        self.blocks.get(i).filter(|b| b.first_seq <= seq).cloned()
    }

    /// Up to `limit` chain events applied before `before_seq`, newest first.
    pub fn events(&self, before_seq: u64, limit: usize) -> Vec<PublicEvent> {
        let end = self.events.partition_point(|e| e.seq < before_seq);
        self.events.range(..end).rev().take(limit).cloned().collect()
    }

    /// Up to `limit` of the kept `CheckpointPosted` events applied before `before_seq`, newest
    /// first: the checkpoints the contract took, with their figures (a scan of at most
    /// `MAX_EVENTS_KEPT` events).
    pub fn checkpoints(&self, before_seq: u64, limit: usize) -> Vec<PublicEvent> {
        let end = self.events.partition_point(|e| e.seq < before_seq);
        self.events
            .range(..end)
            .rev()
            .filter(|e| matches!(e.event, ChainEvent::CheckpointPosted(_)))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Every kept block, oldest first (the charts).
    pub fn all_blocks(&self) -> impl DoubleEndedIterator<Item = &Block> {
        self.blocks.iter()
    }

    /// Every kept chain event, oldest first (the charts).
    pub fn all_events(&self) -> impl DoubleEndedIterator<Item = &PublicEvent> {
        self.events.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infhub_core::ledger::LogPosition;

    fn record(seq: u64, command: Command, outcome: Outcome) -> LogRecord {
        LogRecord { seq, at_ms: 1_000 + seq, command, outcome }
    }

    fn seal(seq: u64, proofs: u32) -> LogRecord {
        let outcome = Outcome::Sealed { root: B256::repeat_byte(seq as u8), signature: Signature([7; 65]), proofs };
        record(seq, Command::SealProofs, outcome)
    }

    fn deposit(seq: u64) -> LogRecord {
        let event = ChainEvent::ReserveDeposited { reserve_after: Amount(seq as u128) };
        record(seq, Command::Chain { at: LogPosition { block: seq, log_index: 0 }, event }, Outcome::Applied(vec![]))
    }

    #[test]
    fn blocks_end_at_seals_and_pages_and_limits_hold() {
        let mut c = Chronicle::default();
        c.observe(&[deposit(1), deposit(2), seal(3, 2)]);
        c.observe(&[deposit(4)]);
        assert_eq!(c.blocks(u64::MAX, 10).len(), 1, "the records after the last seal are no block yet");
        c.observe(&[seal(5, 1)]);
        let blocks = c.blocks(u64::MAX, 10);
        assert_eq!(
            blocks.iter().map(|b| (b.first_seq, b.seq, b.records)).collect::<Vec<_>>(),
            vec![(4, 5, 2), (1, 3, 3)]
        );
        assert_eq!(c.blocks(5, 10).len(), 1, "before seq 5");
        assert_eq!(c.block_holding(2).map(|b| b.seq), Some(3));
        assert_eq!(c.block_holding(4).map(|b| b.seq), Some(5));
        assert_eq!(c.block_holding(6), None);
        assert_eq!(c.events(u64::MAX, 2).iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 2]);
        assert_eq!(c.events(u64::MAX, 9)[0].reserve_after(), Some(Amount(4)));
        let mut big = Chronicle::default();
        for i in 0..(MAX_BLOCKS_KEPT as u64 + 5) {
            big.observe(&[seal(i + 1, 0)]);
        }
        assert_eq!(big.all_blocks().count(), MAX_BLOCKS_KEPT, "bounded");
        assert_eq!(big.all_blocks().next().map(|b| b.seq), Some(6), "the oldest dropped first");
    }

    fn checkpoint(seq: u64, id: u64) -> LogRecord {
        let header = infhub_core::ledger::CheckpointHeader {
            id,
            checkpoint: infhub_core::contract::PostedCheckpoint {
                root: B256::repeat_byte(id as u8),
                total_liability: infhub_core::U256::from(id * 100),
                ledger_seq: seq - 1,
                chain_block: seq,
                inflows_through: infhub_core::U256::ZERO,
            },
        };
        let event = ChainEvent::CheckpointPosted(header);
        record(seq, Command::Chain { at: LogPosition { block: seq, log_index: 0 }, event }, Outcome::Applied(vec![]))
    }

    #[test]
    fn checkpoints_are_the_kept_checkpoint_events_newest_first_and_page() {
        let mut c = Chronicle::default();
        c.observe(&[deposit(1), checkpoint(2, 1), deposit(3), checkpoint(4, 2), seal(5, 0), checkpoint(6, 3)]);
        let ids = |list: Vec<PublicEvent>| {
            list.iter()
                .map(|e| match e.event {
                    ChainEvent::CheckpointPosted(h) => h.id,
                    other => panic!("not a checkpoint: {other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(c.checkpoints(u64::MAX, 10)), vec![3, 2, 1]);
        assert_eq!(ids(c.checkpoints(u64::MAX, 2)), vec![3, 2], "limited");
        assert_eq!(ids(c.checkpoints(4, 10)), vec![1], "before seq 4");
        assert_eq!(c.events(u64::MAX, 10).len(), 5, "the checkpoints stay among the events");
    }
}
