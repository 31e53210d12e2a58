//! The chain as the wallet sees it: the contract's record of this user's channel read at the
//! confirmed block (a state read, so reorgs above the confirmation depth cannot mislead it and
//! no event is ever counted twice), token balances, the `Settled` log for what a settlement
//! paid, and the user's own transactions (approve, deposit, withdraw, exit, dispute, settle)
//! signed with the user's key. The wallet needs only an RPC URL for all of this: the hub can be
//! gone.

use crate::error::WalletError;
use alloy::eips::BlockId;
use alloy::primitives::{Bytes, TxKind, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::sender::{SenderConfig, TxOutcome, TxSender};
use infhub_core::contract::PostedCheckpoint;
use infhub_core::{Address, Amount, B256};
use std::time::Duration;

/// The contract's channel record (`IInfHub.channel(user)`) in protocol types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelView {
    /// 0 none, 1 open, 2 closing, 3 settled.
    pub status: u8,
    /// Epoch.
    pub epoch: u64,
    /// First block settlement is possible (while closing).
    pub settle_block: u64,
    /// Deposits this epoch.
    pub deposited: Amount,
    /// Withdrawals this epoch.
    pub withdrawn: Amount,
    /// Nonce of the debit the contract holds.
    pub debit_nonce: u64,
    /// Running total of the debit the contract holds (what disputes compare).
    pub debit_total: Amount,
    /// Nonce of the credit the contract holds (while closing).
    pub credit_nonce: u64,
    /// Running total of the credit the contract holds (what disputes compare).
    pub credit_total: Amount,
    /// The channel's funds: deposited + advanced from the reserve − withdrawn − realized debits.
    pub funds: Amount,
    /// Block of this epoch's newest deposit (0: none).
    pub last_deposit_block: u64,
}

impl From<IInfHub::Channel> for ChannelView {
    fn from(c: IInfHub::Channel) -> ChannelView {
        ChannelView {
            status: c.status,
            epoch: c.epoch,
            settle_block: c.settleBlock,
            last_deposit_block: c.lastDepositBlock,
            deposited: Amount(c.deposited),
            withdrawn: Amount(c.withdrawn),
            debit_nonce: c.debit.nonce,
            debit_total: Amount(c.debit.cumulative),
            credit_nonce: c.credit.nonce,
            credit_total: Amount(c.credit.cumulative),
            // The contract keeps this non-negative; saturating so a hostile node cannot panic us.
            funds: Amount(
                (c.deposited.saturating_add(c.advancedFromReserve))
                    .saturating_sub(c.withdrawn.saturating_add(c.realizedDebit)),
            ),
        }
    }
}

/// Channel status codes of the contract.
pub mod status {
    /// No channel.
    pub const NONE: u8 = 0;
    /// Open.
    pub const OPEN: u8 = 1;
    /// Closing (challenge period).
    pub const CLOSING: u8 = 2;
    /// Settled.
    pub const SETTLED: u8 = 3;
}

/// A chain client for one hub contract.
#[derive(Clone, Debug)]
pub struct ChainClient {
    url: String,
    provider: DynProvider,
    contract: Address,
}

impl ChainClient {
    /// Connects to `url` for `contract`.
    pub async fn connect(url: &str, contract: Address) -> Result<ChainClient, WalletError> {
        let provider = infhub_chain::anvil::connect(url)
            .await
            .map_err(|e| WalletError::Chain { url: url.into(), reason: e.to_string() })?;
        Ok(ChainClient { url: url.into(), provider, contract })
    }

    fn err(&self, e: impl std::fmt::Display) -> WalletError {
        WalletError::Chain { url: self.url.clone(), reason: e.to_string() }
    }

    /// The provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The newest block number.
    pub async fn head(&self) -> Result<u64, WalletError> {
        self.provider.get_block_number().await.map_err(|e| self.err(e))
    }

    /// The chain id.
    pub async fn chain_id(&self) -> Result<u64, WalletError> {
        self.provider.get_chain_id().await.map_err(|e| self.err(e))
    }

    async fn call<C: SolCall>(&self, to: Address, call: C, block: Option<u64>) -> Result<C::Return, WalletError> {
        let req = TransactionRequest::default().to(to).input(call.abi_encode().into());
        let mut c = self.provider.call(req);
        if let Some(b) = block {
            c = c.block(BlockId::number(b));
        }
        let raw = c.await.map_err(|e| self.err(e))?;
        C::abi_decode_returns(&raw).map_err(|e| self.err(e))
    }

    /// The contract's hub address.
    pub async fn contract_hub(&self) -> Result<Address, WalletError> {
        self.call(self.contract, IInfHub::hubCall {}, None).await
    }

    /// The chain's point registry the contract uses (spec §5.17).
    pub async fn point_registry(&self) -> Result<Address, WalletError> {
        self.call(self.contract, IInfHub::pointRegistryCall {}, None).await
    }

    /// The block `point` was first revealed in the registry `registry` (0: never).
    pub async fn revealed_at(&self, registry: Address, point: Address) -> Result<u64, WalletError> {
        let at = self.call(registry, infhub_chain::bindings::IPointRegistry::revealedAtCall { point }, None).await?;
        Ok(u64::try_from(at).unwrap_or(u64::MAX))
    }

    /// The registration of `lock_id` through the proof `proof_digest` (amount 0: none).
    pub async fn lock_registration(
        &self,
        proof_digest: B256,
        lock_id: B256,
    ) -> Result<IInfHub::LockRegistration, WalletError> {
        self.call(self.contract, IInfHub::lockRegistrationOfCall { proofDigest: proof_digest, lockId: lock_id }, None)
            .await
    }

    /// The contract's token.
    pub async fn contract_token(&self) -> Result<Address, WalletError> {
        self.call(self.contract, IInfHub::tokenCall {}, None).await
    }

    /// The token's decimals.
    pub async fn token_decimals(&self, token: Address) -> Result<u8, WalletError> {
        self.call(token, IErc20::decimalsCall {}, None).await
    }

    /// `who`'s token balance at the head.
    pub async fn token_balance(&self, token: Address, who: Address) -> Result<U256, WalletError> {
        self.call(token, IErc20::balanceOfCall { owner: who }, None).await
    }

    /// The newest checkpoint id the contract holds (0: none).
    pub async fn last_checkpoint_id(&self) -> Result<u64, WalletError> {
        self.call(self.contract, IInfHub::lastCheckpointIdCall {}, None).await
    }

    /// The checkpoint a complaint proved wrong (0: the hub is not halted).
    pub async fn halted_at_checkpoint(&self) -> Result<u64, WalletError> {
        self.call(self.contract, IInfHub::haltedAtCheckpointCall {}, None).await
    }

    /// The account's newest debit challenge (spec §5.16): (checkpoint id, answer-by block, open).
    pub async fn debit_challenge(&self, account: Address) -> Result<(u64, u64, bool), WalletError> {
        let c = self.call(self.contract, IInfHub::debitChallengesCall { account }, None).await?;
        Ok((c.checkpointId, c.answerByBlock, c.open))
    }

    /// Checkpoint `id` as the contract holds it (a zero root: no such checkpoint).
    pub async fn checkpoint(&self, id: u64) -> Result<PostedCheckpoint, WalletError> {
        let c = self.call(self.contract, IInfHub::checkpointsCall { id }, None).await?;
        Ok(PostedCheckpoint {
            root: c.root,
            total_liability: c.totalLiability,
            ledger_seq: c.ledgerSeq,
            chain_block: c.chainBlock,
            inflows_through: c.inflowsThrough,
        })
    }

    /// The contract's record of `user`'s channel at `block`.
    pub async fn channel_at(&self, user: Address, block: u64) -> Result<ChannelView, WalletError> {
        let c = self.call(self.contract, IInfHub::channelCall { user }, Some(block)).await?;
        Ok(ChannelView::from(c))
    }

    /// What the settlement of `user`'s channel in `epoch` paid, from its `Settled` log.
    pub async fn settled_paid(
        &self,
        user: Address,
        epoch: u64,
        from_block: u64,
    ) -> Result<Option<Amount>, WalletError> {
        let filter = Filter::new()
            .address(self.contract)
            .event_signature(IInfHub::Settled::SIGNATURE_HASH)
            .topic1(user.into_word())
            .from_block(from_block);
        let logs = self.provider.get_logs(&filter).await.map_err(|e| self.err(e))?;
        for log in logs {
            let decoded = IInfHub::Settled::decode_log_data(log.data()).map_err(|e| self.err(e))?;
            if decoded.epoch == epoch {
                let paid = u128::try_from(decoded.paid).map_err(|_| self.err("Settled.paid beyond uint128"))?;
                return Ok(Some(Amount(paid)));
            }
        }
        Ok(None)
    }

    /// What the settlement of `user`'s channel in `epoch` paid towers as the fees she offered
    /// (`TowerFeePaid` logs; spec §5.10a): `Settled.paid` is the whole claim, fees included.
    pub async fn tower_fees_paid(&self, user: Address, epoch: u64, from_block: u64) -> Result<Amount, WalletError> {
        let filter = Filter::new()
            .address(self.contract)
            .event_signature(IInfHub::TowerFeePaid::SIGNATURE_HASH)
            .topic1(user.into_word())
            .from_block(from_block);
        let logs = self.provider.get_logs(&filter).await.map_err(|e| self.err(e))?;
        let mut total = 0u128;
        for log in logs {
            let fee = IInfHub::TowerFeePaid::decode_log_data(log.data()).map_err(|e| self.err(e))?;
            if fee.epoch == epoch {
                let amount = u128::try_from(fee.amount).map_err(|_| self.err("TowerFeePaid.amount beyond uint128"))?;
                total = total.checked_add(amount).ok_or_else(|| self.err("tower fees beyond uint128"))?;
            }
        }
        Ok(Amount(total))
    }

    /// A transaction sender for the user's key.
    pub async fn sender(&self, key: B256) -> Result<TxSender, WalletError> {
        TxSender::new(self.provider.clone(), key, SenderConfig::default()).await.map_err(|e| self.err(e))
    }

    /// Sends a call to `to` and waits until it is mined; fails if it reverts.
    pub async fn transact(
        &self,
        sender: &mut TxSender,
        what: &str,
        to: Address,
        input: Vec<u8>,
    ) -> Result<(B256, u64), WalletError> {
        let failed = |reason: String| WalletError::TransactionFailed { what: what.into(), reason };
        let outcome = sender
            .send_and_wait(TxKind::Call(to), Bytes::from(input), Duration::from_millis(100))
            .await
            .map_err(|e| match e {
                infhub_chain::ChainError::TransactionRejected { reason } => failed(reason),
                other => failed(other.to_string()),
            })?;
        match outcome {
            TxOutcome::Mined { success: true, hash, block, .. } => Ok((hash, block)),
            TxOutcome::Mined { success: false, hash, .. } => Err(failed(format!("reverted on chain ({hash})"))),
            TxOutcome::NonceTakenElsewhere { nonce } => {
                Err(failed(format!("nonce {nonce} was used by another transaction of this key")))
            }
        }
    }

    /// The hub contract's address.
    pub fn contract(&self) -> Address {
        self.contract
    }
}
