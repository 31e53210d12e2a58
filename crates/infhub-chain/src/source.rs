//! Where the watcher reads the chain from: a small trait with the four questions it asks,
//! the real implementation over an alloy JSON-RPC provider (HTTP or WebSocket), and an
//! in-process chain for the deterministic simulation (reorgs on demand, no network). The
//! same watcher runs against both; the anvil tests cover the real one.

use crate::error::ChainError;
use crate::events::RawLog;
use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, Log};
use std::future::Future;

/// A block's identity: its number, hash and parent hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent block hash.
    pub parent_hash: B256,
}

/// What the watcher needs from a chain.
pub trait ChainSource {
    /// The current head block number.
    fn head(&self) -> impl Future<Output = Result<u64, ChainError>> + Send;
    /// The canonical block at `number`, if the chain is that long.
    fn block(&self, number: u64) -> impl Future<Output = Result<Option<BlockRef>, ChainError>> + Send;
    /// The hub contract's logs in the block with this hash, in log-index order.
    fn logs_in_block(&self, hash: B256) -> impl Future<Output = Result<Vec<RawLog>, ChainError>> + Send;
    /// The hub contract's logs in blocks `from..=to` of the canonical chain, in order.
    fn logs_in_range(&self, from: u64, to: u64) -> impl Future<Output = Result<Vec<RawLog>, ChainError>> + Send;
}

/// A JSON-RPC chain source for one hub contract (and the chain's point registry).
#[derive(Clone, Debug)]
pub struct RpcSource {
    provider: DynProvider,
    contracts: Vec<Address>,
}

impl RpcSource {
    /// A source reading `contract`'s logs through `provider`.
    pub fn new(provider: DynProvider, contract: Address) -> RpcSource {
        RpcSource { provider, contracts: vec![contract] }
    }

    /// The same, reading the logs of the point registry `registry` too (its reveals, which
    /// the hub's lock duties follow, spec §5.11a).
    pub fn with_point_registry(mut self, registry: Address) -> RpcSource {
        if !self.contracts.contains(&registry) {
            self.contracts.push(registry);
        }
        self
    }
}

fn raw_log(log: Log) -> Result<RawLog, ChainError> {
    let missing = |what: &str| ChainError::RpcAnswerMalformed(format!("log without {what}"));
    Ok(RawLog {
        block_number: log.block_number.ok_or_else(|| missing("block number"))?,
        block_hash: log.block_hash.ok_or_else(|| missing("block hash"))?,
        log_index: log.log_index.ok_or_else(|| missing("log index"))?,
        address: log.inner.address,
        topics: log.inner.data.topics().to_vec(),
        data: log.inner.data.data.clone(),
        transaction_hash: log.transaction_hash,
    })
}

fn sorted(mut logs: Vec<RawLog>) -> Vec<RawLog> {
    logs.sort_by_key(|l| (l.block_number, l.log_index));
    logs
}

impl ChainSource for RpcSource {
    async fn head(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(ChainError::rpc)
    }

    async fn block(&self, number: u64) -> Result<Option<BlockRef>, ChainError> {
        let block =
            self.provider.get_block_by_number(BlockNumberOrTag::Number(number)).await.map_err(ChainError::rpc)?;
        Ok(block.map(|b| BlockRef { number: b.header.number, hash: b.header.hash, parent_hash: b.header.parent_hash }))
    }

    async fn logs_in_block(&self, hash: B256) -> Result<Vec<RawLog>, ChainError> {
        let filter = Filter::new().address(self.contracts.clone()).at_block_hash(hash);
        let logs = self.provider.get_logs(&filter).await.map_err(ChainError::rpc)?;
        let logs = logs.into_iter().map(raw_log).collect::<Result<Vec<_>, _>>()?;
        if let Some(l) = logs.iter().find(|l| l.block_hash != hash) {
            return Err(ChainError::RpcAnswerMalformed(format!("log from block {} in a by-hash query", l.block_hash)));
        }
        Ok(sorted(logs))
    }

    async fn logs_in_range(&self, from: u64, to: u64) -> Result<Vec<RawLog>, ChainError> {
        let filter = Filter::new().address(self.contracts.clone()).from_block(from).to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(ChainError::rpc)?;
        Ok(sorted(logs.into_iter().map(raw_log).collect::<Result<Vec<_>, _>>()?))
    }
}

/// An in-process chain for simulations: blocks with hashes, parents and logs, extended and
/// reorganised on command. Hashes are derived from a fork counter, so a replaced block gets a
/// new hash exactly as on a real chain.
pub mod memory {
    use super::*;
    use alloy::primitives::keccak256;
    use std::sync::{Arc, Mutex, MutexGuard};

    #[derive(Debug, Default)]
    struct Inner {
        blocks: Vec<(BlockRef, Vec<RawLog>)>,
        forks: u64,
    }

    /// A shared handle to the in-process chain.
    #[derive(Clone, Debug, Default)]
    pub struct MemoryChain {
        inner: Arc<Mutex<Inner>>,
    }

    impl MemoryChain {
        /// A chain holding only a genesis block (number 0).
        pub fn new() -> MemoryChain {
            let chain = MemoryChain::default();
            chain.push_block(Vec::new());
            chain
        }

        fn lock(&self) -> MutexGuard<'_, Inner> {
            self.inner.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Appends a block holding logs with these topics and data; returns its number.
        pub fn push_block(&self, logs: Vec<(Vec<B256>, Vec<u8>)>) -> u64 {
            let mut g = self.lock();
            let number = g.blocks.len() as u64;
            let parent_hash = g.blocks.last().map(|(b, _)| b.hash).unwrap_or_default();
            let mut seed = Vec::new();
            seed.extend_from_slice(parent_hash.as_slice());
            seed.extend_from_slice(&number.to_be_bytes());
            seed.extend_from_slice(&g.forks.to_be_bytes());
            let hash = keccak256(&seed);
            let logs = logs
                .into_iter()
                .enumerate()
                .map(|(i, (topics, data))| RawLog {
                    block_number: number,
                    block_hash: hash,
                    log_index: i as u64,
                    address: Address::ZERO,
                    topics,
                    data: data.into(),
                    transaction_hash: None,
                })
                .collect();
            g.blocks.push((BlockRef { number, hash, parent_hash }, logs));
            number
        }

        /// Drops the newest `depth` blocks; the next blocks pushed form a new fork.
        pub fn rewind(&self, depth: u64) {
            let mut g = self.lock();
            let keep = g.blocks.len().saturating_sub(depth as usize).max(1);
            g.blocks.truncate(keep);
            g.forks += 1;
        }
    }

    impl ChainSource for MemoryChain {
        async fn head(&self) -> Result<u64, ChainError> {
            Ok(self.lock().blocks.len() as u64 - 1)
        }

        async fn block(&self, number: u64) -> Result<Option<BlockRef>, ChainError> {
            Ok(self.lock().blocks.get(number as usize).map(|(b, _)| *b))
        }

        async fn logs_in_block(&self, hash: B256) -> Result<Vec<RawLog>, ChainError> {
            let g = self.lock();
            match g.blocks.iter().find(|(b, _)| b.hash == hash) {
                Some((_, logs)) => Ok(logs.clone()),
                None => Err(ChainError::Rpc(format!("unknown block {hash}"))),
            }
        }

        async fn logs_in_range(&self, from: u64, to: u64) -> Result<Vec<RawLog>, ChainError> {
            let g = self.lock();
            Ok(g.blocks
                .iter()
                .filter(|(b, _)| b.number >= from && b.number <= to)
                .flat_map(|(_, logs)| logs.iter().cloned())
                .collect())
        }
    }
}
