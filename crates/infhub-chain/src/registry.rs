//! The chain's point registry over JSON-RPC (spec §5.17, D42): a hop reveals the scalar it
//! learned (and, with its tweak, the one upstream) so a lock opens whoever cooperates, and reads
//! the reveals of others to learn the scalars it needs. Every scalar read from a log is checked
//! against its point with the core's arithmetic before anyone uses it.

use crate::bindings::IPointRegistry;
use crate::error::ChainError;
use crate::sender::{TxOutcome, TxSender};
use alloy::primitives::{Address, Bytes, TxKind, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use infhub_core::point_lock::{Scalar, MAX_REVEALS_PER_CALL};
use std::time::Duration;

/// The widest block range one read of reveals asks the node for.
pub const MAX_REVEAL_LOG_RANGE_BLOCKS: u64 = 10_000;

/// A reveal found in the registry's logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reveal {
    /// The point's address.
    pub point: Address,
    /// Its scalar (checked: it opens `point`).
    pub scalar: Scalar,
    /// The block it was recorded at.
    pub block: u64,
}

/// A mined reveal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revealed {
    /// The block it was mined in (the one recorded, for a point revealed first here).
    pub block: u64,
    /// Gas the transaction used.
    pub gas_used: u64,
}

/// Reads and writes one `PointRegistry`.
pub struct PointRegistryClient {
    provider: DynProvider,
    address: Address,
}

impl PointRegistryClient {
    /// The registry at `address`.
    pub fn new(provider: DynProvider, address: Address) -> PointRegistryClient {
        PointRegistryClient { provider, address }
    }

    /// The block of `point`'s first reveal (None: never revealed).
    pub async fn revealed_at(&self, point: Address) -> Result<Option<u64>, ChainError> {
        let input = IPointRegistry::revealedAtCall { point }.abi_encode();
        let req = TransactionRequest::default().to(self.address).input(Bytes::from(input).into());
        let out = self.provider.call(req).await.map_err(ChainError::rpc)?;
        let at = IPointRegistry::revealedAtCall::abi_decode_returns(&out)
            .map_err(|e| ChainError::RpcAnswerMalformed(format!("revealedAt: {e}")))?;
        if at.is_zero() {
            return Ok(None);
        }
        u64::try_from(at).map(Some).map_err(|_| ChainError::RpcAnswerMalformed(format!("revealedAt {at}")))
    }

    /// Reveals `scalar` and waits until it is mined.
    pub async fn reveal(&self, sender: &mut TxSender, scalar: &Scalar) -> Result<Revealed, ChainError> {
        let input = IPointRegistry::revealCall { scalar: scalar.value() }.abi_encode();
        self.send(sender, input).await
    }

    /// Reveals `scalar` and then each scalar upstream of it (`scalar − tweak₁`, then minus
    /// `tweak₂`, …) in one transaction, and waits until it is mined.
    pub async fn reveal_upstream(
        &self,
        sender: &mut TxSender,
        scalar: &Scalar,
        tweaks: &[Scalar],
    ) -> Result<Revealed, ChainError> {
        if tweaks.len() >= MAX_REVEALS_PER_CALL {
            return Err(ChainError::TransactionRejected { reason: "TooManyReveals".into() });
        }
        let tweaks: Vec<U256> = tweaks.iter().map(Scalar::value).collect();
        let input = IPointRegistry::revealUpstreamCall { scalar: scalar.value(), tweaks }.abi_encode();
        self.send(sender, input).await
    }

    async fn send(&self, sender: &mut TxSender, input: Vec<u8>) -> Result<Revealed, ChainError> {
        match sender.send_and_wait(TxKind::Call(self.address), input.into(), Duration::from_millis(20)).await? {
            TxOutcome::Mined { success: true, block, gas_used, .. } => Ok(Revealed { block, gas_used }),
            other => Err(ChainError::TransactionRejected { reason: format!("reveal: {other:?}") }),
        }
    }

    /// The reveals recorded in blocks `from..=to` (at most [`MAX_REVEAL_LOG_RANGE_BLOCKS`]), in
    /// order. A log whose scalar does not open its point is refused (`EventUndecodable`).
    pub async fn reveals(&self, from: u64, to: u64) -> Result<Vec<Reveal>, ChainError> {
        if to < from || to - from >= MAX_REVEAL_LOG_RANGE_BLOCKS {
            return Err(ChainError::Config(format!(
                "reveals of blocks {from}..={to}: the range must be 1..={MAX_REVEAL_LOG_RANGE_BLOCKS} blocks"
            )));
        }
        let filter = Filter::new()
            .address(self.address)
            .event_signature(IPointRegistry::PointRevealed::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(ChainError::rpc)?;
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            let block =
                log.block_number.ok_or_else(|| ChainError::RpcAnswerMalformed("a log without its block".into()))?;
            let event = IPointRegistry::PointRevealed::decode_log(&log.inner)
                .map_err(|e| ChainError::EventUndecodable(format!("PointRevealed: {e}")))?;
            let scalar = Scalar::new(event.data.scalar)
                .map_err(|e| ChainError::EventUndecodable(format!("PointRevealed scalar: {e}")))?;
            if scalar.point().address() != event.data.point {
                return Err(ChainError::EventUndecodable(format!(
                    "PointRevealed: the scalar does not open point {}",
                    event.data.point
                )));
            }
            out.push(Reveal { point: event.data.point, scalar, block });
        }
        Ok(out)
    }
}
