//! The hub's transaction sender.
//!
//! One sender per key. It owns the key's nonce: nonces are assigned locally in order (started
//! from the node's pending count), so many transactions can be in flight without waiting for
//! each other. Every transaction is EIP-1559 with fees from the node's estimate. A
//! transaction not mined after `bump_after_blocks` blocks is re-signed with the same nonce
//! and fees raised by `bump_percent` (at least the 10 % nodes require for a replacement),
//! never above `max_fee_per_gas_cap_wei`. `poll` reports each transaction's receipt once,
//! whichever of its versions was mined. Calls are estimated first, so a call the contract
//! would reject fails at once with the contract's error name instead of burning gas.
//!
//! Restart safety comes from the calls, not from this in-memory table: every call the hub
//! makes is idempotent on chain (payout batches carry a batch id the contract refuses to
//! execute twice; proofs carry nonces the contract refuses to go back on), so a restarted
//! node simply sends again what it has not seen confirmed.

use crate::bindings::{IErc20, IInfHub, IPointRegistry};
use crate::error::ChainError;
use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::Encodable2718;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::SolInterface;
use alloy::transports::TransportError;
use std::collections::BTreeMap;

/// Sender policy and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Blocks a transaction may stay unmined before it is re-sent with higher fees.
    pub bump_after_blocks: u64,
    /// Fee increase per replacement, in percent (at least 10).
    pub bump_percent: u64,
    /// No transaction is ever signed with a higher max fee per gas.
    pub max_fee_per_gas_cap_wei: u128,
    /// Most transactions in flight at once.
    pub max_in_flight: usize,
    /// Margin added to the gas estimate, in percent.
    pub gas_margin_percent: u64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            bump_after_blocks: 3,
            bump_percent: 25,
            max_fee_per_gas_cap_wei: 500_000_000_000,
            max_in_flight: 64,
            gas_margin_percent: 25,
        }
    }
}

/// A transaction handed to the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentTx {
    /// Its nonce (identifies it across replacements).
    pub nonce: u64,
    /// Hash of the version just sent.
    pub hash: B256,
}

/// What became of an in-flight transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// A version of it was mined.
    Mined {
        /// Its nonce.
        nonce: u64,
        /// Hash of the mined version.
        hash: B256,
        /// Block it was mined in.
        block: u64,
        /// Whether it succeeded (false: reverted).
        success: bool,
        /// How many versions were sent.
        versions: usize,
        /// Gas it used.
        gas_used: u64,
    },
    /// Another transaction with its nonce was mined (the key is used elsewhere).
    NonceTakenElsewhere {
        /// Its nonce.
        nonce: u64,
    },
}

#[derive(Clone, Debug)]
struct InFlight {
    to: TxKind,
    input: Bytes,
    gas_limit: u64,
    max_fee_per_gas: u128,
    max_priority_fee_per_gas: u128,
    hashes: Vec<B256>,
    sent_at_block: u64,
    /// The key's mined nonce passed this one while none of its receipts was found.
    nonce_passed: bool,
}

/// The sender. See the module documentation.
#[derive(Debug)]
pub struct TxSender {
    provider: DynProvider,
    signer: PrivateKeySigner,
    chain_id: u64,
    config: SenderConfig,
    next_nonce: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Block at which the chain was first seen waiting for a nonce below all of ours.
    gap_since_block: Option<u64>,
}

/// The name of a contract's custom error in revert data, if it is one of `E`'s.
fn error_name<E: SolInterface + std::fmt::Debug>(data: &[u8]) -> Option<String> {
    let err = E::abi_decode(data).ok()?;
    let name = format!("{err:?}");
    Some(name.split('(').next().unwrap_or(&name).to_string())
}

/// The contract error name in a revert, if the error is one.
pub fn revert_reason(e: &TransportError) -> String {
    if let Some(data) = e.as_error_resp().and_then(|p| p.as_revert_data()) {
        let name = error_name::<IInfHub::IInfHubErrors>(&data)
            .or_else(|| error_name::<IPointRegistry::IPointRegistryErrors>(&data));
        if let Some(name) = name {
            return name;
        }
        return format!("revert 0x{}", alloy::primitives::hex::encode(&data));
    }
    e.to_string()
}

impl TxSender {
    /// A sender for `key`, its nonce read from the node.
    pub async fn new(provider: DynProvider, key: B256, config: SenderConfig) -> Result<TxSender, ChainError> {
        if config.bump_percent < 10 {
            return Err(ChainError::Config("bump_percent must be at least 10".into()));
        }
        if config.max_in_flight == 0 {
            return Err(ChainError::Config("max_in_flight must be positive".into()));
        }
        let signer = PrivateKeySigner::from_bytes(&key).map_err(|e| ChainError::Config(format!("key: {e}")))?;
        let chain_id = provider.get_chain_id().await.map_err(ChainError::rpc)?;
        let next_nonce = provider.get_transaction_count(signer.address()).pending().await.map_err(ChainError::rpc)?;
        Ok(TxSender {
            provider,
            signer,
            chain_id,
            config,
            next_nonce,
            in_flight: BTreeMap::new(),
            gap_since_block: None,
        })
    }

    /// The sending address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// Transactions sent and not yet reported by `poll`.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Runs a read-only call.
    pub async fn call(&self, to: Address, input: Bytes) -> Result<Bytes, ChainError> {
        let req = TransactionRequest::default().from(self.address()).to(to).input(input.into());
        self.provider.call(req).await.map_err(|e| ChainError::TransactionRejected { reason: revert_reason(&e) })
    }

    /// Estimates, signs and broadcasts a call (or a contract creation with `TxKind::Create`).
    pub async fn send(&mut self, to: TxKind, input: Bytes) -> Result<SentTx, ChainError> {
        if self.in_flight.len() >= self.config.max_in_flight {
            return Err(ChainError::TooManyInFlight { limit: self.config.max_in_flight });
        }
        if self.in_flight.is_empty() {
            // Nothing of ours is pending: take the node's count, which also recovers from our
            // mined transactions vanishing in a reorg (the count goes back).
            self.next_nonce =
                self.provider.get_transaction_count(self.address()).pending().await.map_err(ChainError::rpc)?;
        }
        let mut req = TransactionRequest::default().from(self.address()).input(input.clone().into());
        req.to = Some(to);
        let estimate = self
            .provider
            .estimate_gas(req)
            .await
            .map_err(|e| ChainError::TransactionRejected { reason: revert_reason(&e) })?;
        let gas_limit = estimate.saturating_mul(100 + self.config.gas_margin_percent) / 100;
        let fees = self.provider.estimate_eip1559_fees().await.map_err(ChainError::rpc)?;
        let max_fee = fees.max_fee_per_gas.min(self.config.max_fee_per_gas_cap_wei);
        let prio = fees.max_priority_fee_per_gas.min(max_fee);
        let block = self.provider.get_block_number().await.map_err(ChainError::rpc)?;
        let nonce = self.next_nonce;
        let mut tx = InFlight {
            to,
            input,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: prio,
            hashes: Vec::new(),
            sent_at_block: block,
            nonce_passed: false,
        };
        let hash = self.broadcast(nonce, &tx).await?;
        tx.hashes.push(hash);
        self.next_nonce += 1;
        self.in_flight.insert(nonce, tx);
        Ok(SentTx { nonce, hash })
    }

    async fn broadcast(&self, nonce: u64, tx: &InFlight) -> Result<B256, ChainError> {
        let unsigned = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: tx.gas_limit,
            max_fee_per_gas: tx.max_fee_per_gas,
            max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
            to: tx.to,
            value: U256::ZERO,
            access_list: Default::default(),
            input: tx.input.clone(),
        };
        let sig = self
            .signer
            .sign_hash_sync(&unsigned.signature_hash())
            .map_err(|e| ChainError::Config(format!("signing failed: {e}")))?;
        let envelope = TxEnvelope::Eip1559(unsigned.into_signed(sig));
        let hash = *envelope.tx_hash();
        let pending = self
            .provider
            .send_raw_transaction(&envelope.encoded_2718())
            .await
            .map_err(|e| ChainError::TransactionRejected { reason: revert_reason(&e) })?;
        if *pending.tx_hash() != hash {
            return Err(ChainError::RpcAnswerMalformed(format!("node returned hash {} for {hash}", pending.tx_hash())));
        }
        Ok(hash)
    }

    /// Checks every in-flight transaction: reports the mined ones and re-sends the stuck ones
    /// with higher fees.
    pub async fn poll(&mut self) -> Result<Vec<TxOutcome>, ChainError> {
        let mut out = Vec::new();
        if self.in_flight.is_empty() {
            return Ok(out);
        }
        let block = self.provider.get_block_number().await.map_err(ChainError::rpc)?;
        let mined_nonce = self.provider.get_transaction_count(self.address()).await.map_err(ChainError::rpc)?;
        self.fill_gap(mined_nonce, block).await;
        let nonces: Vec<u64> = self.in_flight.keys().copied().collect();
        for nonce in nonces {
            let tx = self.in_flight.get(&nonce).expect("listed").clone();
            let mut receipt = None;
            for h in tx.hashes.iter().rev() {
                if let Some(r) = self.provider.get_transaction_receipt(*h).await.map_err(ChainError::rpc)? {
                    receipt = Some(r);
                    break;
                }
            }
            if let Some(r) = receipt {
                self.in_flight.remove(&nonce);
                out.push(TxOutcome::Mined {
                    nonce,
                    hash: r.transaction_hash,
                    block: r.block_number.unwrap_or_default(),
                    success: r.status(),
                    versions: tx.hashes.len(),
                    gas_used: r.gas_used,
                });
                continue;
            }
            if nonce < mined_nonce {
                // Mined between our receipt reads (receipts can lag the nonce), or replaced by
                // another transaction of this key: look once more, then report it.
                let entry = self.in_flight.get_mut(&nonce).expect("in flight");
                if entry.nonce_passed {
                    self.in_flight.remove(&nonce);
                    out.push(TxOutcome::NonceTakenElsewhere { nonce });
                } else {
                    entry.nonce_passed = true;
                }
                continue;
            }
            if block.saturating_sub(tx.sent_at_block) >= self.config.bump_after_blocks {
                self.bump(nonce, block).await?;
            }
        }
        Ok(out)
    }

    /// If the chain waits for nonces below every one we have in flight (a transaction of ours
    /// was mined and then vanished, e.g. in a reorg), nothing of ours can be mined until those
    /// nonces are used. After `bump_after_blocks` blocks of that, fill each missing nonce with
    /// an empty transfer to ourselves. Whatever the vanished transaction did is re-derived by
    /// the node from durable state (see the module documentation).
    async fn fill_gap(&mut self, mined_nonce: u64, block: u64) {
        let Some(&lowest) = self.in_flight.keys().next() else {
            self.gap_since_block = None;
            return;
        };
        if mined_nonce >= lowest {
            self.gap_since_block = None;
            return;
        }
        let since = *self.gap_since_block.get_or_insert(block);
        if block.saturating_sub(since) < self.config.bump_after_blocks {
            return;
        }
        let fees = match self.provider.estimate_eip1559_fees().await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot price gap fillers");
                return;
            }
        };
        for nonce in mined_nonce..lowest {
            let filler = InFlight {
                to: TxKind::Call(self.address()),
                input: Bytes::new(),
                gas_limit: 21_000,
                max_fee_per_gas: fees.max_fee_per_gas.min(self.config.max_fee_per_gas_cap_wei),
                max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
                hashes: Vec::new(),
                sent_at_block: block,
                nonce_passed: false,
            };
            match self.broadcast(nonce, &filler).await {
                Ok(hash) => tracing::warn!(nonce, %hash, "filled a nonce gap left by a vanished transaction"),
                Err(e) => tracing::warn!(nonce, error = %e, "gap filler refused"),
            }
        }
        self.gap_since_block = Some(block);
    }

    async fn bump(&mut self, nonce: u64, block: u64) -> Result<(), ChainError> {
        let tx = self.in_flight.get(&nonce).expect("in flight").clone();
        let fees = self.provider.estimate_eip1559_fees().await.map_err(ChainError::rpc)?;
        let raise = |v: u128| v.saturating_mul(100 + self.config.bump_percent as u128) / 100;
        let max_fee = raise(tx.max_fee_per_gas).max(fees.max_fee_per_gas);
        let prio = raise(tx.max_priority_fee_per_gas).max(fees.max_priority_fee_per_gas);
        if max_fee > self.config.max_fee_per_gas_cap_wei {
            tracing::warn!(nonce, max_fee, cap = self.config.max_fee_per_gas_cap_wei, "fee cap reached; not bumping");
            return Ok(());
        }
        let mut next = InFlight {
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: prio.min(max_fee),
            sent_at_block: block,
            ..tx
        };
        match self.broadcast(nonce, &next).await {
            Ok(hash) => {
                tracing::info!(nonce, %hash, max_fee, "replaced a stuck transaction");
                next.hashes.push(hash);
                self.in_flight.insert(nonce, next);
                Ok(())
            }
            // The old version may have been mined in the meantime ("nonce too low"): the next
            // poll finds its receipt.
            Err(e) => {
                tracing::warn!(nonce, error = %e, "replacement refused");
                Ok(())
            }
        }
    }

    /// `approve(spender, amount)` on a token.
    pub async fn approve(&mut self, token: Address, spender: Address, amount: U256) -> Result<SentTx, ChainError> {
        let input = IErc20::IErc20Calls::approve(IErc20::approveCall { spender, amount }).abi_encode();
        self.send(TxKind::Call(token), input.into()).await
    }

    /// Sends and waits (at most 60 s) for the receipt, polling every `interval`; for tools
    /// and tests.
    pub async fn send_and_wait(
        &mut self,
        to: TxKind,
        input: Bytes,
        interval: std::time::Duration,
    ) -> Result<TxOutcome, ChainError> {
        let sent = self.send(to, input).await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if std::time::Instant::now() > deadline {
                return Err(ChainError::Rpc(format!("transaction {} not mined within 60 s", sent.hash)));
            }
            for o in self.poll().await? {
                let n = match &o {
                    TxOutcome::Mined { nonce, .. } | TxOutcome::NonceTakenElsewhere { nonce } => *nonce,
                };
                if n == sent.nonce {
                    return Ok(o);
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}
