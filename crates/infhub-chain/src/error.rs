//! The chain layer's expected failures, each named after what went wrong. Transport errors
//! are retried by the caller; a reorg deeper than the confirmation depth is fatal for the
//! watcher because confirmed events were already applied to the ledger.

use alloy::primitives::B256;

/// A chain-layer failure.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC node could not be reached or answered with an error.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The RPC node returned something that is not a valid answer.
    #[error("rpc answer malformed: {0}")]
    RpcAnswerMalformed(String),
    /// A contract log could not be decoded against the hub ABI.
    #[error("event undecodable: {0}")]
    EventUndecodable(String),
    /// A contract event carried an amount beyond the protocol's uint128 range.
    #[error("event amount out of range in field {field}")]
    EventAmountOutOfRange {
        /// Which event field.
        field: &'static str,
    },
    /// A block the watcher had already confirmed is no longer on the canonical chain.
    #[error("reorg beyond the confirmation depth: confirmed block {block} ({hash}) was replaced")]
    ReorgBeyondConfirmations {
        /// The confirmed block that vanished.
        block: u64,
        /// Its hash as confirmed.
        hash: B256,
    },
    /// A configuration value is outside its allowed range.
    #[error("config: {0}")]
    Config(String),
    /// The node rejected a transaction before it was mined (estimate or broadcast); `reason`
    /// is the contract's custom error name when the call reverts.
    #[error("transaction rejected: {reason}")]
    TransactionRejected {
        /// The revert reason or RPC message.
        reason: String,
    },
    /// Too many transactions are in flight; the caller must wait.
    #[error("too many transactions in flight (limit {limit})")]
    TooManyInFlight {
        /// The limit.
        limit: usize,
    },
    /// A fee would exceed the configured cap.
    #[error("fee cap reached: {max_fee_per_gas_wei} wei per gas would exceed the cap of {cap_wei}")]
    FeeCapReached {
        /// The fee that would be needed.
        max_fee_per_gas_wei: u128,
        /// The configured cap.
        cap_wei: u128,
    },
    /// A local process (anvil) could not be started or used.
    #[error("process: {0}")]
    Process(String),
}

impl ChainError {
    /// Wraps any transport error.
    pub fn rpc(e: impl std::fmt::Display) -> ChainError {
        ChainError::Rpc(e.to_string())
    }
}
