//! The hub contract's event watcher.
//!
//! It follows the chain block by block near the head, remembering the hash of every block
//! it has seen but not yet confirmed. A block is *confirmed* once it has `confirmations`
//! blocks on top of it (itself included); only then are its events handed to the ledger.
//! Each poll first re-checks the newest remembered block: if its hash changed, the chain
//! reorganised, and the watcher *disconnects* remembered blocks from the tip down until it
//! is back on the canonical chain, then *connects* the new blocks, checking every new block's
//! parent hash against the block before it. Events of disconnected blocks are reported so
//! that anything shown as pending (an unconfirmed deposit) is withdrawn.
//!
//! Far behind the head (first start, or after downtime), confirmed ranges are read with
//! range log queries instead of block by block. The high-water mark lives in the ledger: the
//! watcher restarts from the ledger's last confirmed block, and the ledger ignores any event
//! at or below its (block, log index) cursor, so every event is applied exactly once.
//!
//! A replaced block at or below the confirmed height cannot be rolled back (its events are
//! in the ledger): the watcher stops with [`ChainError::ReorgBeyondConfirmations`] and the
//! operator must intervene. Choose `confirmations` to make that as unlikely as the chain allows.

use crate::error::ChainError;
use crate::events::{decode_event, RawLog};
use crate::source::{BlockRef, ChainSource};
use alloy::primitives::B256;
use infhub_core::ledger::{ChainEvent, LogPosition};
use std::collections::VecDeque;

/// Watcher limits and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatcherConfig {
    /// Blocks (including the event's own) before an event is applied. At least 1.
    pub confirmations: u64,
    /// Most blocks read one by one in one poll.
    pub max_blocks_per_poll: u64,
    /// Most blocks in one range log query during catch-up.
    pub max_log_range_blocks: u64,
    /// First block to read (the contract's deployment block).
    pub start_block: u64,
}

impl WatcherConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), ChainError> {
        if self.confirmations == 0 {
            return Err(ChainError::Config("confirmations must be at least 1".into()));
        }
        if self.max_blocks_per_poll == 0 || self.max_log_range_blocks == 0 {
            return Err(ChainError::Config("max_blocks_per_poll and max_log_range_blocks must be positive".into()));
        }
        Ok(())
    }
}

/// What a poll observed, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// An event in a block that is not yet confirmed (show as pending; do not apply).
    Seen {
        /// Where it is.
        at: LogPosition,
        /// The block it is in.
        block_hash: B256,
        /// The event.
        event: ChainEvent,
    },
    /// A block seen earlier left the canonical chain; its `Seen` events are void.
    Disconnected {
        /// Its number.
        block: u64,
        /// Its hash.
        hash: B256,
    },
    /// An event in a confirmed block: apply it.
    Confirmed {
        /// Where it is.
        at: LogPosition,
        /// The event.
        event: ChainEvent,
    },
    /// Every event in blocks `<= block` has been reported as confirmed.
    ConfirmedThrough {
        /// The block.
        block: u64,
    },
}

#[derive(Clone, Debug)]
struct SeenBlock {
    block: BlockRef,
    events: Vec<(LogPosition, ChainEvent)>,
}

/// The watcher. See the module documentation.
#[derive(Debug)]
pub struct Watcher<S> {
    source: S,
    config: WatcherConfig,
    /// The newest confirmed block (its hash anchors the parent check of the next block).
    anchor: Option<BlockRef>,
    /// The next block to confirm when `anchor` is unknown.
    confirmed_through: u64,
    /// Seen but unconfirmed blocks, oldest first, each the parent of the next.
    window: VecDeque<SeenBlock>,
    /// The head read by the last successful poll.
    head: u64,
}

fn decode_all(logs: &[RawLog]) -> Result<Vec<(LogPosition, ChainEvent)>, ChainError> {
    let mut out = Vec::new();
    for l in logs {
        if let Some(ev) = decode_event(l)? {
            out.push((LogPosition { block: l.block_number, log_index: l.log_index }, ev));
        }
    }
    Ok(out)
}

impl<S: ChainSource> Watcher<S> {
    /// A watcher that resumes after `confirmed_through` (the ledger's confirmed block; 0 on a
    /// fresh ledger).
    pub fn new(source: S, config: WatcherConfig, confirmed_through: u64) -> Result<Watcher<S>, ChainError> {
        config.validate()?;
        Ok(Watcher { source, config, anchor: None, confirmed_through, window: VecDeque::new(), head: 0 })
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The newest confirmed block number.
    pub fn confirmed_through(&self) -> u64 {
        self.anchor.map(|a| a.number).unwrap_or(self.confirmed_through)
    }

    /// The chain head read by the last successful poll (0 before the first).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Number of seen but unconfirmed blocks.
    pub fn unconfirmed_blocks(&self) -> usize {
        self.window.len()
    }

    /// Reads the chain once and reports what changed. All reads happen before any state
    /// changes, so a poll that fails (RPC error) changes nothing and can simply be retried:
    /// nothing is skipped and nothing is reported twice as confirmed.
    pub async fn poll(&mut self) -> Result<Vec<WatchEvent>, ChainError> {
        let mut out = Vec::new();
        let mut window = self.window.clone();
        let mut anchor = self.anchor;
        let head = self.source.head().await?;
        // Blocks at or below this height have enough confirmations.
        let confirm_to = (head + 1).saturating_sub(self.config.confirmations);

        // 1. Anchor: after a restart, learn the hash of the last confirmed block.
        if anchor.is_none() && self.confirmed_through >= self.config.start_block && self.confirmed_through > 0 {
            anchor = self.source.block(self.confirmed_through).await?;
        }

        // 2. Disconnect remembered blocks that left the canonical chain.
        while let Some(tip) = window.back() {
            let now = self.source.block(tip.block.number).await?;
            if now.map(|b| b.hash) == Some(tip.block.hash) {
                break;
            }
            let gone = window.pop_back().expect("tip exists");
            out.push(WatchEvent::Disconnected { block: gone.block.number, hash: gone.block.hash });
        }
        if window.is_empty() {
            if let Some(a) = anchor {
                let now = self.source.block(a.number).await?;
                if now.map(|b| b.hash) != Some(a.hash) {
                    return Err(ChainError::ReorgBeyondConfirmations { block: a.number, hash: a.hash });
                }
            }
        }

        let next_block = |window: &VecDeque<SeenBlock>, anchor: Option<BlockRef>| match (window.back(), anchor) {
            (Some(b), _) => b.block.number + 1,
            (None, Some(a)) => a.number + 1,
            (None, None) => (self.confirmed_through + 1).max(self.config.start_block),
        };

        // 3. Catch up over already-confirmed blocks with range queries.
        let mut confirmed_any = false;
        let mut next = next_block(&window, anchor);
        if window.is_empty() && next + self.config.confirmations <= confirm_to {
            let end = confirm_to.min(next + self.config.max_blocks_per_poll.saturating_mul(16) - 1);
            let mut from = next;
            while from <= end {
                let to = end.min(from + self.config.max_log_range_blocks - 1);
                for (at, event) in decode_all(&self.source.logs_in_range(from, to).await?)? {
                    out.push(WatchEvent::Confirmed { at, event });
                }
                from = to + 1;
            }
            let end_block =
                self.source.block(end).await?.ok_or_else(|| {
                    ChainError::RpcAnswerMalformed(format!("block {end} below head {head} is missing"))
                })?;
            anchor = Some(end_block);
            confirmed_any = true;
            next = end + 1;
        }

        // 4. Connect new blocks one by one, checking the parent chain.
        let last = head.min(next + self.config.max_blocks_per_poll - 1);
        for n in next..=last {
            let Some(block) = self.source.block(n).await? else { break };
            let parent = window.back().map(|b| b.block).or(anchor);
            if let Some(p) = parent {
                if block.parent_hash != p.hash {
                    // The chain changed under us between reads: drop the tip and let the next
                    // poll walk back to the fork point.
                    match window.pop_back() {
                        Some(gone) => {
                            out.push(WatchEvent::Disconnected { block: gone.block.number, hash: gone.block.hash })
                        }
                        None => return Err(ChainError::ReorgBeyondConfirmations { block: p.number, hash: p.hash }),
                    }
                    break;
                }
            }
            let events = decode_all(&self.source.logs_in_block(block.hash).await?)?;
            for (at, event) in &events {
                out.push(WatchEvent::Seen { at: *at, block_hash: block.hash, event: *event });
            }
            window.push_back(SeenBlock { block, events });
        }

        // 5. Confirm what is deep enough.
        while window.front().is_some_and(|b| b.block.number <= confirm_to) {
            let b = window.pop_front().expect("front exists");
            for (at, event) in b.events {
                out.push(WatchEvent::Confirmed { at, event });
            }
            anchor = Some(b.block);
            confirmed_any = true;
        }
        self.window = window;
        self.anchor = anchor;
        self.head = head;
        if confirmed_any {
            out.push(WatchEvent::ConfirmedThrough { block: self.confirmed_through() });
        }
        Ok(out)
    }
}
