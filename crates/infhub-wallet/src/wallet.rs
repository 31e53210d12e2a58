//! The wallet's flows over the core's channel state machine (`Role::User`), the store, the hub
//! and the chain.
//!
//! Every change follows the same order: take the directory lock, reload the state, compute
//! the next state with `infhub_core::channel::step` (which checks the hub's signatures and the
//! balance rules), write what must survive a crash *before* the network call that depends on
//! it (a signed debit is stored as pending before it is sent; a co-signed withdrawal before it
//! is submitted), and save. Chain facts come from the contract's record of the channel at the
//! confirmed block; hub reports are compared with the wallet's own proofs and every
//! disagreement is reported, never silently adopted.

use crate::chain::{status, ChainClient, ChannelView};
use crate::error::WalletError;
use crate::hub::{HubClient, HubError};
use crate::store::{CoSignedWithdrawal, DirLock, HubInfo, JournalEntry, WalletDir, WalletState, STATE_VERSION};
use crate::units::{format_inf, TOKEN_DECIMALS};
use alloy::primitives::Bytes;
use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::events::{credit_arg, submit_credit_call, submit_debit_call, withdrawal_arg};
use infhub_core::channel::{self, ChannelParams, ChannelState, Effect, Input, Role, Status};
use infhub_core::messages::{Eip712Message, Signed, SignedCredit, SignedDebit, SignedReceipt};
use infhub_core::{Address, Amount, Domain, PaymentKind, PrivateKey, Registration, Withdrawal, B256};
use serde_json::{json, Value};
use std::time::Duration;

/// Blocks a registration request stays valid.
pub const REGISTRATION_VALID_BLOCKS: u64 = 100;
/// Blocks a co-signed withdrawal stays valid (bounded by the hub's limit).
pub const WITHDRAWAL_VALID_BLOCKS: u64 = 100;
/// How long the wallet waits for the chain to confirm something it sent.
pub const CONFIRMATION_WAIT: Duration = Duration::from_secs(180);
/// How often the wallet polls while it waits.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What a synchronization with the hub found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubCheck {
    /// The hub's figures agree with this wallet's proofs.
    pub agrees: bool,
    /// Every disagreement, in words.
    pub disagreements: Vec<String>,
    /// The balance the hub reports.
    pub hub_balance: Option<Amount>,
    /// Things worth telling the user that are not disagreements.
    pub notes: Vec<String>,
}

/// An open wallet: key, store, clients.
pub struct Wallet {
    /// The directory.
    pub dir: WalletDir,
    key: PrivateKey,
    key_bytes: B256,
    /// The state as last loaded or saved.
    pub state: WalletState,
    /// The hub.
    pub hub: HubClient,
    /// The chain.
    pub chain: ChainClient,
}

/// A human line and its machine form, for progress and watch output.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, WalletError> {
    serde_json::from_value(v.clone()).map_err(|e| WalletError::HubMisbehaved(format!("{what}: {e}")))
}

fn random_id() -> Result<B256, WalletError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| WalletError::InvalidInput(format!("no randomness: {e}")))?;
    Ok(B256::from(b))
}

impl Wallet {
    /// Registers `key` with the hub at `hub_url` on the chain at `rpc_url`: checks the hub's
    /// claims against the chain, asks the hub to open the channel, waits until it is open, and
    /// writes the store.
    pub async fn register(
        dir: WalletDir,
        key: PrivateKey,
        key_bytes: B256,
        hub_url: &str,
        rpc_url: &str,
        progress: Progress<'_>,
    ) -> Result<Wallet, WalletError> {
        let _lock = dir.lock().await?;
        if let Some(s) = dir.load()? {
            if s.user != key.address() {
                return Err(WalletError::KeyMismatch { key: key.address().to_string(), store: s.user.to_string() });
            }
        }
        let hub = HubClient::new(hub_url)?;
        let info = hub.info().await.map_err(|e| e.into_wallet(hub_url))?;
        let contract: Address = parse(&info["hubContract"], "info.hubContract")?;
        let chain = ChainClient::connect(rpc_url, contract).await?;
        let chain_id = chain.chain_id().await?;
        if info["chainId"].as_u64() != Some(chain_id) {
            return Err(WalletError::HubMisbehaved(format!(
                "the hub says chain {} but {rpc_url} is chain {chain_id}",
                info["chainId"]
            )));
        }
        let hub_addr = chain.contract_hub().await?;
        let token = chain.contract_token().await?;
        if info["hub"] != json!(hub_addr) || info["token"] != json!(token) {
            return Err(WalletError::HubMisbehaved(format!(
                "the hub's address or token differs from the contract's ({hub_addr}, {token})"
            )));
        }
        let decimals = chain.token_decimals(token).await?;
        if u32::from(decimals) != TOKEN_DECIMALS {
            return Err(WalletError::InvalidInput(format!(
                "the token has {decimals} decimals; this wallet handles {TOKEN_DECIMALS}"
            )));
        }
        let hub_info = HubInfo {
            hub_url: hub.url().to_string(),
            rpc_url: rpc_url.to_string(),
            chain_id,
            hub_contract: contract,
            hub: hub_addr,
            token,
            confirmations: info["confirmations"].as_u64().unwrap_or(1).max(1),
            max_withdrawal_expiry_blocks: info["limits"]["max_withdrawal_expiry_blocks"].as_u64().unwrap_or(100),
        };
        let head = chain.head().await?;
        let user = key.address();
        let state = match dir.load()? {
            Some(mut s) => {
                s.hub = hub_info.clone();
                s
            }
            None => WalletState {
                version: STATE_VERSION,
                user,
                hub: hub_info.clone(),
                channel: None,
                pending_debit: None,
                withdrawal: None,
                since_block: head,
            },
        };
        dir.save(&state)?;
        dir.append(&[JournalEntry::Registered { hub: hub_info }])?;
        drop(_lock);
        let mut w = Wallet { dir, key, key_bytes, state, hub, chain };
        let view = w.chain.channel_at(user, head).await?;
        if view.status != status::OPEN {
            let r = Signed::new(
                Registration { user, valid_until_block: head + REGISTRATION_VALID_BLOCKS },
                &w.domain(),
                &w.key,
            );
            let answer = w.hub.register(&r).await.map_err(|e| e.into_wallet(hub_url))?;
            progress(&format!("registered with the hub; channel {}", answer["status"].as_str().unwrap_or("opening")));
        }
        w.wait_for(progress, "your channel to open on chain", |w| w.state.channel.is_some()).await?;
        Ok(w)
    }

    /// Opens the registered wallet in `dir` with `key`; URLs given override the stored ones.
    pub async fn open(
        dir: WalletDir,
        key: PrivateKey,
        key_bytes: B256,
        hub_url: Option<&str>,
        rpc_url: Option<&str>,
    ) -> Result<Wallet, WalletError> {
        let mut state = dir.load()?.ok_or(WalletError::NotRegistered)?;
        if state.user != key.address() {
            return Err(WalletError::KeyMismatch { key: key.address().to_string(), store: state.user.to_string() });
        }
        if let Some(u) = hub_url {
            state.hub.hub_url = u.to_string();
        }
        if let Some(u) = rpc_url {
            state.hub.rpc_url = u.to_string();
        }
        let hub = HubClient::new(&state.hub.hub_url)?;
        let chain = ChainClient::connect(&state.hub.rpc_url, state.hub.hub_contract).await?;
        Ok(Wallet { dir, key, key_bytes, state, hub, chain })
    }

    /// The account.
    pub fn user(&self) -> Address {
        self.state.user
    }

    /// The signing domain.
    pub fn domain(&self) -> Domain {
        Domain { chain_id: self.state.hub.chain_id, verifying_contract: self.state.hub.hub_contract }
    }

    fn params(&self) -> ChannelParams {
        ChannelParams {
            domain: self.domain(),
            hub: self.state.hub.hub,
            role: Role::User,
            max_withdrawal_expiry_blocks: self.state.hub.max_withdrawal_expiry_blocks,
        }
    }

    /// The channel, or an error saying it is not open yet.
    pub fn channel(&self) -> Result<&ChannelState, WalletError> {
        self.state.channel.as_ref().ok_or(WalletError::ChannelNotOpenYet)
    }

    fn step(&mut self, input: Input) -> Result<Vec<Effect>, WalletError> {
        let ch = self.channel()?.clone();
        let (next, effects) = channel::step(&ch, &self.params(), input)?;
        self.state.channel = Some(next);
        Ok(effects)
    }

    async fn lock_and_reload(&mut self) -> Result<DirLock, WalletError> {
        let lock = self.dir.lock().await?;
        let mut fresh = self.dir.load()?.ok_or(WalletError::NotRegistered)?;
        fresh.hub.hub_url = self.state.hub.hub_url.clone();
        fresh.hub.rpc_url = self.state.hub.rpc_url.clone();
        self.state = fresh;
        Ok(lock)
    }

    /// The confirmed block: the newest block with `confirmations` blocks including itself.
    pub async fn confirmed_block(&self) -> Result<(u64, u64), WalletError> {
        let head = self.chain.head().await?;
        Ok((head, head.saturating_sub(self.state.hub.confirmations - 1)))
    }

    /// Brings the channel up to the contract's record at the confirmed block. Returns the
    /// state machine's effects (disputes to raise, settlement due, settled).
    pub async fn sync_chain(&mut self) -> Result<Vec<Effect>, WalletError> {
        let _lock = self.lock_and_reload().await?;
        let effects = self.sync_chain_locked().await?;
        self.dir.save(&self.state)?;
        Ok(effects)
    }

    async fn sync_chain_locked(&mut self) -> Result<Vec<Effect>, WalletError> {
        let (_, confirmed) = self.confirmed_block().await?;
        let user = self.user();
        let view = self.chain.channel_at(user, confirmed).await?;
        let mut journal = Vec::new();
        let mut effects = Vec::new();
        if self.state.channel.is_none() {
            if view.status == status::NONE {
                return Ok(effects);
            }
            self.state.channel = Some(ChannelState::opened(user, view.epoch));
            journal.push(JournalEntry::ChannelOpened { epoch: view.epoch });
        }
        let before = self.channel()?.clone();
        // Epochs this wallet missed entirely (settled and reopened while it was away).
        while view.epoch > self.channel()?.epoch {
            let ch = self.channel()?.clone();
            if ch.status == Status::Open {
                effects.extend(self.step(Input::ChainExitStarted { epoch: ch.epoch, settle_block: 0 })?);
            }
            if ch.status != Status::Settled {
                let paid = self.settled_paid(ch.epoch).await?;
                effects.extend(self.step(Input::ChainSettled { epoch: ch.epoch, paid })?);
            }
            effects.extend(self.step(Input::ChainOpened { epoch: ch.epoch + 1 })?);
        }
        let epoch = view.epoch;
        match view.status {
            status::OPEN | status::CLOSING => {
                effects.extend(self.step(Input::ChainDeposited { epoch, total_deposited: view.deposited })?);
                self.sync_withdrawn(&view)?;
                if view.status == status::CLOSING {
                    if self.channel()?.status == Status::Open {
                        effects.extend(self.step(Input::ChainExitStarted { epoch, settle_block: view.settle_block })?);
                    }
                    effects.extend(self.step(Input::ChainDebitSubmitted { epoch, cumulative: view.debit_total })?);
                    effects.extend(self.step(Input::ChainCreditSubmitted { epoch, cumulative: view.credit_total })?);
                }
            }
            status::SETTLED if self.channel()?.status != Status::Settled => {
                if self.channel()?.status == Status::Open {
                    effects.extend(self.step(Input::ChainExitStarted { epoch, settle_block: 0 })?);
                }
                let paid = self.settled_paid(epoch).await?;
                effects.extend(self.step(Input::ChainSettled { epoch, paid })?);
            }
            _ => {}
        }
        if confirmed > self.channel()?.block {
            effects.extend(self.step(Input::Block(confirmed))?);
        }
        let after = self.channel()?.clone();
        if after.deposited > before.deposited && after.epoch == before.epoch {
            journal.push(JournalEntry::Deposited { total: after.deposited });
        }
        if after.withdrawn > before.withdrawn && after.epoch == before.epoch {
            journal.push(JournalEntry::Withdrawn { total: after.withdrawn });
            self.state.withdrawal = None;
        }
        if let (Status::Open, Status::Closing { settle_block }) = (before.status, after.status) {
            journal.push(JournalEntry::ExitStarted { settle_block });
        }
        for e in &effects {
            match e {
                Effect::Settled { paid, expected } => {
                    journal.push(JournalEntry::Settled { paid: *paid, expected: *expected });
                    self.state.withdrawal = None;
                }
                Effect::WithdrawalHoldReleased(_) => self.state.withdrawal = None,
                _ => {}
            }
        }
        self.dir.append(&journal)?;
        Ok(effects)
    }

    fn sync_withdrawn(&mut self, view: &ChannelView) -> Result<(), WalletError> {
        let ch = self.channel()?.clone();
        if view.withdrawn > ch.withdrawn && ch.withdrawal_hold.is_none() {
            return Err(WalletError::HubMisbehaved(format!(
                "the contract shows {} INF withdrawn but this wallet co-signed no such withdrawal; \
                 was this key used by another wallet?",
                format_inf(view.withdrawn.0)
            )));
        }
        self.step(Input::ChainWithdrawn { epoch: view.epoch, total_withdrawn: view.withdrawn })?;
        Ok(())
    }

    async fn settled_paid(&self, epoch: u64) -> Result<Amount, WalletError> {
        self.chain.settled_paid(self.user(), epoch, self.state.since_block).await?.ok_or_else(|| WalletError::Chain {
            url: self.state.hub.rpc_url.clone(),
            reason: format!("the channel is settled but no Settled log for epoch {epoch} was found"),
        })
    }

    async fn ensure_login(&mut self) -> Result<(), WalletError> {
        if self.hub.token().is_none() {
            let domain = self.domain();
            let url = self.state.hub.hub_url.clone();
            self.hub.login(&self.key, &domain).await.map_err(|e| e.into_wallet(&url))?;
        }
        Ok(())
    }

    /// Resends a pending payment (its answer was lost, or the hub refused it without a refund)
    /// with the same signed debit. Ok once it is settled: applied, refunded, or spent; Err while
    /// it stays pending, so that no other debit is signed over it.
    async fn resolve_pending_locked(&mut self) -> Result<(), WalletError> {
        let Some(debit) = self.state.pending_debit else { return Ok(()) };
        let answer = self.hub.transfer(&debit).await;
        match self.settle_answer(debit, answer).await? {
            Resolution::Applied(_) | Resolution::Refunded { .. } => Ok(()),
        }
    }

    /// Settles a payment by the hub's answer. A receipt applies it; a refund (a hub-signed credit
    /// of its amount, checked like any credit) settles it as refused for good. Any other refusal
    /// leaves the debit pending unless it can no longer be charged (`PaymentHeld`), and no answer
    /// leaves it pending (`PaymentUncertain`).
    async fn settle_answer(
        &mut self,
        debit: SignedDebit,
        answer: Result<Value, HubError>,
    ) -> Result<Resolution, WalletError> {
        let payment_id = debit.message.payment_id;
        match answer {
            Ok(a) => {
                self.commit_payment(debit, &a)?;
                Ok(Resolution::Applied(a))
            }
            Err(HubError::Refused { code, message, refund: Some(refund), .. }) => {
                self.take_refund(debit, &code, &refund)?;
                Ok(Resolution::Refunded { code, message })
            }
            Err(HubError::Refused { code, message, refund: None, .. }) => {
                if matches!(code.as_str(), "nonce_must_increase" | "nonce_must_be_next" | "cumulative_mismatch") {
                    // Out of step with the hub: learn what it holds signed by this key first.
                    let _ = self.check_hub_locked().await;
                }
                if self.debit_is_spent(&debit)? {
                    self.state.pending_debit = None;
                    self.dir.append(&[JournalEntry::PaymentRefused {
                        payment_id,
                        code: code.clone(),
                        refund: None,
                    }])?;
                    self.dir.save(&self.state)?;
                    return Err(WalletError::HubRefused { code, message });
                }
                self.dir.append(&[JournalEntry::PaymentHeld { payment_id, code: code.clone() }])?;
                Err(WalletError::PaymentHeld { payment_id: payment_id.to_string(), code, message })
            }
            Err(HubError::Unreachable(_)) => Err(WalletError::PaymentUncertain { payment_id: payment_id.to_string() }),
        }
    }

    /// Whether `debit` can no longer raise what this key is charged: its epoch is over, or this
    /// wallet holds a debit of this key at least as new with a total at least as high.
    fn debit_is_spent(&self, debit: &SignedDebit) -> Result<bool, WalletError> {
        let ch = self.channel()?;
        let d = &debit.message;
        Ok(d.epoch != ch.epoch || (ch.debit_nonce() >= d.nonce && ch.cumulative_debit() >= d.cumulative_debit))
    }

    /// Records a refused payment's refund: the debit is spent and its amount came back as the
    /// hub's credit (signature and amount checked by the channel machine).
    fn take_refund(&mut self, debit: SignedDebit, code: &str, refund: &Value) -> Result<(), WalletError> {
        let refund: SignedCredit = parse(refund, "refund")?;
        let misbehaved = |what: String| WalletError::HubMisbehaved(format!("the refund of a refused payment {what}"));
        refund
            .verify(&self.domain(), self.state.hub.hub)
            .map_err(|e| misbehaved(format!("is not signed by the hub ({})", e.code())))?;
        let ch = self.channel()?.clone();
        if ch.debit_nonce() < debit.message.nonce {
            let input = if ch.credit_nonce() >= refund.message.nonce {
                // The refund already arrived as the newest credit (a sync): it covers the debit.
                if ch.cumulative_credit() < refund.message.cumulative_credit {
                    return Err(misbehaved("conflicts with a credit of the same nonce".into()));
                }
                Input::Debit(debit)
            } else {
                Input::DebitRefunded { debit, refund: refund.clone() }
            };
            self.step(input).map_err(|e| misbehaved(format!("does not check out: {e} ({})", e.code())))?;
        }
        self.state.pending_debit = None;
        let payment_id = debit.message.payment_id;
        self.dir.append(&[JournalEntry::PaymentRefused {
            payment_id,
            code: code.to_string(),
            refund: Some(refund),
        }])?;
        self.dir.save(&self.state)
    }

    /// Checks the hub's receipt for `debit` and records the payment as applied.
    fn commit_payment(&mut self, debit: SignedDebit, answer: &Value) -> Result<(), WalletError> {
        let receipt: SignedReceipt = parse(&answer["result"]["receipt"], "receipt")?;
        receipt.verify(&self.domain(), self.state.hub.hub).map_err(|e| {
            WalletError::HubMisbehaved(format!("the receipt's signature is not the hub's ({})", e.code()))
        })?;
        let r = &receipt.message;
        let d = &debit.message;
        if r.payer != d.user
            || r.epoch != d.epoch
            || r.debit_nonce != d.nonce
            || r.payment_id != d.payment_id
            || r.debit_digest != d.digest(&self.domain())
        {
            return Err(WalletError::HubMisbehaved("the receipt names another debit".into()));
        }
        if self.channel()?.debit_nonce() < d.nonce {
            self.step(Input::Debit(debit))?;
        }
        self.state.pending_debit = None;
        self.dir.append(&[JournalEntry::PaymentApplied { debit, receipt }])?;
        self.dir.save(&self.state)
    }

    /// Takes a hub-signed credit if it is newer and valid. Returns whether it was new.
    fn take_credit(
        &mut self,
        credit: SignedCredit,
        from: Option<Address>,
        amount: Option<Amount>,
    ) -> Result<bool, WalletError> {
        if credit.message.nonce <= self.channel()?.credit_nonce() {
            return Ok(false);
        }
        self.step(Input::Credit(credit.clone())).map_err(|e| {
            WalletError::HubMisbehaved(format!("a credit from the hub was refused: {e} ({})", e.code()))
        })?;
        self.dir.append(&[JournalEntry::Credit { credit, from, amount }])?;
        Ok(true)
    }

    /// Synchronizes with the chain and the hub: resolves a pending payment, takes the hub's
    /// newest credit, and compares the hub's account with this wallet's proofs.
    pub async fn sync(&mut self) -> Result<HubCheck, WalletError> {
        let _lock = self.lock_and_reload().await?;
        self.sync_chain_locked().await?;
        self.dir.save(&self.state)?;
        if self.state.channel.is_none() {
            return Err(WalletError::ChannelNotOpenYet);
        }
        self.resolve_pending_locked().await?;
        let check = self.check_hub_locked().await?;
        self.dir.save(&self.state)?;
        Ok(check)
    }

    async fn check_hub_locked(&mut self) -> Result<HubCheck, WalletError> {
        self.ensure_login().await?;
        let url = self.state.hub.hub_url.clone();
        let a = self.hub.account(self.user()).await.map_err(|e| e.into_wallet(&url))?;
        let mut check = HubCheck::default();
        let ch = self.channel()?.clone();
        let hub_epoch = a["epoch"].as_u64().unwrap_or(0);
        if hub_epoch != ch.epoch {
            check.disagreements.push(format!("the hub is at epoch {hub_epoch}, the contract at {}", ch.epoch));
        }
        if hub_epoch == ch.epoch {
            if let Some(c) = a.get("latestCredit").filter(|v| !v.is_null()) {
                let c: SignedCredit = parse(c, "latestCredit")?;
                if let Err(e) = self.take_credit(c, None, None) {
                    check.disagreements.push(e.to_string());
                }
            }
            if let Some(d) = a.get("latestDebit").filter(|v| !v.is_null()) {
                let d: SignedDebit = parse(d, "latestDebit")?;
                let mine = self.channel()?.debit_nonce();
                if d.message.nonce > mine {
                    // A debit this key signed elsewhere (another device, or an answer lost
                    // before this wallet stored it): valid only with this key's signature.
                    match d.verify(&self.domain(), self.user()) {
                        Ok(()) => match self.step(Input::Debit(d)) {
                            Ok(_) => {
                                self.dir.append(&[JournalEntry::DebitLearned { debit: d }])?;
                                check.notes.push(format!(
                                    "learned debit #{} ({} INF) signed by this key elsewhere",
                                    d.message.nonce,
                                    format_inf(d.message.amount.0)
                                ));
                            }
                            Err(e) => {
                                check.disagreements.push(format!("the hub's newest debit does not follow yours: {e}"))
                            }
                        },
                        Err(_) => check
                            .disagreements
                            .push(format!("the hub claims debit #{} that this key did not sign", d.message.nonce)),
                    }
                }
            }
        }
        let ch = self.channel()?.clone();
        let hub_amount = |k: &str| a[k].as_str().and_then(|s| s.parse::<u128>().ok()).map(Amount);
        let hub_nonce = |k: &str| a[k].as_u64().unwrap_or(0);
        if hub_epoch == ch.epoch {
            if hub_nonce("debitNonce") != ch.debit_nonce()
                || hub_amount("cumulativeDebit") != Some(ch.cumulative_debit())
            {
                check.disagreements.push(format!(
                    "the hub records debits #{} totalling {:?}, this wallet #{} totalling {}",
                    hub_nonce("debitNonce"),
                    hub_amount("cumulativeDebit").map(|a| format_inf(a.0)),
                    ch.debit_nonce(),
                    format_inf(ch.cumulative_debit().0)
                ));
            }
            if hub_nonce("creditNonce") != ch.credit_nonce()
                || hub_amount("cumulativeCredit") != Some(ch.cumulative_credit())
            {
                check.disagreements.push(format!(
                    "the hub records credits #{} totalling {:?}, this wallet holds #{} totalling {}",
                    hub_nonce("creditNonce"),
                    hub_amount("cumulativeCredit").map(|a| format_inf(a.0)),
                    ch.credit_nonce(),
                    format_inf(ch.cumulative_credit().0)
                ));
            }
            let hub_block = a["confirmedBlock"].as_u64().unwrap_or(0);
            match hub_amount("deposited") {
                Some(d) if d < ch.deposited => check.notes.push(format!(
                    "the hub has not confirmed {} INF of your deposits yet",
                    format_inf(ch.deposited.0 - d.0)
                )),
                Some(d) if d > ch.deposited && hub_block <= ch.block => check.disagreements.push(format!(
                    "the hub counts {} INF deposited, the contract {}",
                    format_inf(d.0),
                    format_inf(ch.deposited.0)
                )),
                _ => {}
            }
        }
        check.hub_balance = hub_amount("balance");
        check.agrees = check.disagreements.is_empty();
        if !check.agrees {
            self.dir.append(
                &check
                    .disagreements
                    .iter()
                    .map(|d| JournalEntry::Disagreement { detail: d.clone() })
                    .collect::<Vec<_>>(),
            )?;
        }
        Ok(check)
    }

    /// Pays `amount` to `recipient` (an account of this hub, or a chain address for
    /// [`PaymentKind::External`]). Returns the hub's answer (receipt, payout).
    pub async fn pay(&mut self, kind: PaymentKind, recipient: Address, amount: Amount) -> Result<Value, WalletError> {
        let _lock = self.lock_and_reload().await?;
        self.sync_chain_locked().await?;
        self.resolve_pending_locked().await?;
        // Take the hub's newest credit first: what others paid in is spendable.
        self.check_hub_locked().await?;
        self.dir.save(&self.state)?;
        let ch = self.channel()?.clone();
        let debit = ch.next_debit(kind, recipient, amount, random_id()?)?;
        let signed = Signed::new(debit, &self.domain(), &self.key);
        // Checks the balance and every other rule before anything leaves the wallet.
        channel::step(&ch, &self.params(), Input::Debit(signed))?;
        self.state.pending_debit = Some(signed);
        self.dir.append(&[JournalEntry::DebitSigned { debit: signed }])?;
        self.dir.save(&self.state)?;
        let answer = self.hub.transfer(&signed).await;
        match self.settle_answer(signed, answer).await? {
            Resolution::Applied(answer) => Ok(answer),
            Resolution::Refunded { code, message } => Err(WalletError::HubRefused {
                code,
                message: format!("{message}; the payment was refunded (its amount is back in your balance)"),
            }),
        }
    }

    /// The status of an external payment's payout.
    pub async fn payout_status(&mut self, payment_id: B256) -> Result<Value, WalletError> {
        self.ensure_login().await?;
        let url = self.state.hub.hub_url.clone();
        self.hub.payout(self.user(), payment_id).await.map_err(|e| e.into_wallet(&url))
    }

    /// Approves and deposits `amount` on chain, then waits for the confirmations.
    pub async fn deposit(&mut self, amount: Amount, progress: Progress<'_>) -> Result<Amount, WalletError> {
        self.sync_chain().await?;
        let ch = self.channel()?.clone();
        if ch.status != Status::Open {
            return Err(infhub_core::Error::ChannelNotOpen.into());
        }
        let token = self.state.hub.token;
        let contract = self.state.hub.hub_contract;
        let have = self.chain.token_balance(token, self.user()).await?;
        if have < U256::from(amount.0) {
            return Err(WalletError::InvalidInput(format!(
                "you hold {} INF on chain, less than {}",
                format_inf(u128::try_from(have).unwrap_or(u128::MAX)),
                format_inf(amount.0)
            )));
        }
        let mut sender = self.chain.sender(self.key_bytes).await?;
        let approve = IErc20::approveCall { spender: contract, amount: U256::from(amount.0) }.abi_encode();
        let (hash, _) = self.chain.transact(&mut sender, "approve", token, approve).await?;
        self.dir.append(&[JournalEntry::Transaction { what: "approve".into(), hash }])?;
        let call = IInfHub::depositCall { user: self.user(), amount: U256::from(amount.0) }.abi_encode();
        let (hash, block) = self.chain.transact(&mut sender, "deposit", contract, call).await?;
        self.dir.append(&[JournalEntry::Transaction { what: "deposit".into(), hash }])?;
        progress(&format!("deposit mined in block {block} ({hash})"));
        let target = ch.deposited.checked_add(amount)?;
        self.wait_for(progress, "the deposit's confirmations", |w| {
            w.state.channel.as_ref().is_some_and(|c| c.deposited >= target || c.epoch != ch.epoch)
        })
        .await?;
        Ok(self.channel()?.deposited)
    }

    /// Polls the chain until `done`, reporting confirmations.
    async fn wait_for(
        &mut self,
        progress: Progress<'_>,
        what: &str,
        done: impl Fn(&Wallet) -> bool,
    ) -> Result<(), WalletError> {
        let deadline = tokio::time::Instant::now() + CONFIRMATION_WAIT;
        let mut last = String::new();
        loop {
            self.sync_chain().await?;
            if done(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(WalletError::Timeout(format!("waiting for {what}")));
            }
            let (head, confirmed) = self.confirmed_block().await?;
            let line = format!("waiting for {what} (block {head}, confirmed {confirmed})");
            if line != last {
                progress(&line);
                last = line;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Withdraws `amount` (None: everything) cooperatively: the hub co-signs, the wallet
    /// submits on chain and waits for the confirmations. Returns the amount withdrawn.
    pub async fn withdraw(&mut self, amount: Option<Amount>, progress: Progress<'_>) -> Result<Amount, WalletError> {
        let cosigned = {
            let _lock = self.lock_and_reload().await?;
            self.sync_chain_locked().await?;
            self.dir.save(&self.state)?;
            match self.resumable_withdrawal().await? {
                Some(w) => {
                    progress("resuming a co-signed withdrawal that was not yet submitted");
                    w
                }
                None => self.cosign_withdrawal_locked(amount).await?,
            }
        };
        let w = cosigned.withdrawal;
        let before = self.channel()?.withdrawn;
        let call = IInfHub::withdrawCall {
            w: withdrawal_arg(&w),
            userSignature: cosigned.user_signature.0.to_vec().into(),
            hubSignature: cosigned.hub_signature.0.to_vec().into(),
        }
        .abi_encode();
        let mut sender = self.chain.sender(self.key_bytes).await?;
        let (hash, block) = self.chain.transact(&mut sender, "withdraw", self.state.hub.hub_contract, call).await?;
        self.dir.append(&[JournalEntry::Transaction { what: "withdraw".into(), hash }])?;
        progress(&format!("withdrawal mined in block {block} ({hash})"));
        self.wait_for(progress, "the withdrawal's confirmations", |wl| {
            wl.state.channel.as_ref().is_some_and(|c| c.withdrawn >= w.cumulative_withdrawn || c.epoch != w.epoch)
        })
        .await?;
        w.cumulative_withdrawn.checked_sub_or(before, infhub_core::Error::ChainEventInconsistent).map_err(Into::into)
    }

    /// A stored co-signed withdrawal that can still execute.
    async fn resumable_withdrawal(&self) -> Result<Option<CoSignedWithdrawal>, WalletError> {
        let Some(c) = self.state.withdrawal else { return Ok(None) };
        let ch = self.channel()?;
        let head = self.chain.head().await?;
        let held = ch.withdrawal_hold == Some(c.withdrawal);
        Ok((held && head < c.withdrawal.expiry_block && ch.withdrawn < c.withdrawal.cumulative_withdrawn).then_some(c))
    }

    async fn cosign_withdrawal_locked(&mut self, amount: Option<Amount>) -> Result<CoSignedWithdrawal, WalletError> {
        self.resolve_pending_locked().await?;
        self.check_hub_locked().await?;
        let url = self.state.hub.hub_url.clone();
        let ch = self.channel()?.clone();
        let amount = match amount {
            Some(a) => a,
            None => ch.balance()?,
        };
        if amount.is_zero() {
            return Err(infhub_core::Error::AmountMustNotBeZero.into());
        }
        let valid = WITHDRAWAL_VALID_BLOCKS.min(self.state.hub.max_withdrawal_expiry_blocks.saturating_sub(5)).max(1);
        let w: Withdrawal = ch.next_withdrawal(amount, ch.block + valid)?;
        let user_signature = Signed::new(w, &self.domain(), &self.key).signature;
        let (next, _) = channel::step(
            &ch,
            &self.params(),
            Input::WithdrawalRequest { withdrawal: w, user_signature, block: ch.block },
        )?;
        let answer = self.hub.withdraw(&w, &user_signature).await.map_err(|e| e.into_wallet(&url))?;
        let echoed: Withdrawal = parse(&answer["withdrawal"], "withdrawal")?;
        if echoed != w {
            return Err(WalletError::HubMisbehaved("the hub co-signed a different withdrawal".into()));
        }
        let hub_signature = parse(&answer["hubSignature"], "hubSignature")?;
        Signed { message: w, signature: hub_signature }
            .verify(&self.domain(), self.state.hub.hub)
            .map_err(|_| WalletError::HubMisbehaved("the withdrawal's co-signature is not the hub's".into()))?;
        let cosigned = CoSignedWithdrawal { withdrawal: w, user_signature, hub_signature };
        self.state.channel = Some(next);
        self.state.withdrawal = Some(cosigned);
        self.dir.append(&[JournalEntry::WithdrawalCoSigned { withdrawal: cosigned }])?;
        self.dir.save(&self.state)?;
        Ok(cosigned)
    }

    /// Starts a unilateral exit with the newest hub-signed credit this wallet holds. Needs
    /// only the chain. Returns the settle block.
    pub async fn start_exit(&mut self) -> Result<u64, WalletError> {
        self.sync_chain().await?;
        let ch = self.channel()?.clone();
        match ch.status {
            Status::Open => {}
            Status::Closing { settle_block } => return Ok(settle_block),
            Status::Settled => return Err(infhub_core::Error::ChannelNotOpen.into()),
        }
        let (credit, sig) = match ch.credit {
            Some(c) => (credit_arg(&c.message), Bytes::from(c.proof_bytes())),
            None => (
                IInfHub::Credit {
                    user: self.user(),
                    epoch: ch.epoch,
                    nonce: 0,
                    cumulativeCredit: 0,
                    lockedAmount: 0,
                    locksRoot: B256::ZERO,
                },
                Default::default(),
            ),
        };
        let call = IInfHub::startExitCall { credit, hubSignature: sig }.abi_encode();
        let mut sender = self.chain.sender(self.key_bytes).await?;
        let (hash, _) = self.chain.transact(&mut sender, "exit", self.state.hub.hub_contract, call).await?;
        self.dir.append(&[JournalEntry::Transaction { what: "exit".into(), hash }])?;
        // An honest exit also hands the contract this wallet's own newest debit, so the
        // settlement pays exactly the off-chain balance even if the hub never answers.
        if let Some(d) = ch.debit {
            let call = submit_debit_call(&d).abi_encode();
            let (hash, _) = self.chain.transact(&mut sender, "own debit", self.state.hub.hub_contract, call).await?;
            self.dir.append(&[JournalEntry::Transaction { what: "own debit".into(), hash }])?;
        }
        let view = self.chain.channel_at(self.user(), self.chain.head().await?).await?;
        Ok(view.settle_block)
    }

    /// One round of defence: follows the chain, submits the newest credit against a close
    /// that holds an older one, and settles once the challenge period is over (if `settle`).
    /// Returns what happened, in words, and the settlement if there was one.
    pub async fn defend(
        &mut self,
        settle: bool,
        submitted: &mut Option<(u64, u64)>,
    ) -> Result<(Vec<String>, Option<(Amount, Amount)>), WalletError> {
        let effects = self.sync_chain().await?;
        let mut said = Vec::new();
        let mut settled = None;
        for e in &effects {
            if let Effect::Settled { paid, expected } = e {
                settled = Some((*paid, *expected));
            }
        }
        let ch = self.channel()?.clone();
        let Status::Closing { settle_block } = ch.status else { return Ok((said, settled)) };
        let head = self.chain.head().await?;
        let contract = self.state.hub.hub_contract;
        // The contract holds an older credit than ours: submit ours before the period ends.
        let view = self.chain.channel_at(self.user(), head).await?;
        if let Some(c) = ch.credit {
            let n = c.message.nonce;
            let recently = submitted.is_some_and(|(nonce, at)| nonce == n && head < at + 3);
            // Totals decide on chain (spec §5.10): a higher nonce with a lower total is no defence.
            let behind = view.credit_total < c.message.cumulative_credit;
            if view.status == status::CLOSING && behind && head < settle_block && !recently {
                let call = submit_credit_call(&c).abi_encode();
                let mut sender = self.chain.sender(self.key_bytes).await?;
                match self.chain.transact(&mut sender, "dispute", contract, call).await {
                    Ok((hash, block)) => {
                        *submitted = Some((n, block));
                        self.dir.append(&[JournalEntry::Transaction { what: "dispute".into(), hash }])?;
                        said.push(format!(
                            "the channel is closing with credits of {} INF on chain; submitted your credit #{n} ({} INF) in block {block}",
                            format_inf(view.credit_total.0),
                            format_inf(c.message.cumulative_credit.0)
                        ));
                    }
                    Err(e) => said.push(format!("submitting your newest credit failed, retrying: {e}")),
                }
            }
        }
        if settle && head >= settle_block && view.status == status::CLOSING {
            let call = IInfHub::settleCall { user: self.user() }.abi_encode();
            let mut sender = self.chain.sender(self.key_bytes).await?;
            match self.chain.transact(&mut sender, "settle", contract, call).await {
                Ok((hash, block)) => {
                    self.dir.append(&[JournalEntry::Transaction { what: "settle".into(), hash }])?;
                    said.push(format!("settled the channel in block {block}"));
                }
                // Someone else (the hub, a watchtower) may have settled it first.
                Err(e) => said.push(format!("settle failed, will check again: {e}")),
            }
        }
        Ok((said, settled))
    }

    /// Handles one message from the hub's account stream. Returns a line for the user.
    pub async fn on_stream_message(&mut self, text: &str) -> Result<Option<String>, WalletError> {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        let n = &v["notice"];
        if n["type"] != "credit" {
            return Ok(None);
        }
        let credit: SignedCredit = parse(&n["credit"], "credit")?;
        let from = n["from"].as_str().and_then(|s| s.parse().ok());
        let amount = n["amount"].as_str().and_then(|s| s.parse::<u128>().ok()).map(Amount);
        let _lock = self.lock_and_reload().await?;
        if self.state.channel.is_none() || credit.message.epoch != self.channel()?.epoch {
            return Ok(None);
        }
        let (nonce, total) = (credit.message.nonce, credit.message.cumulative_credit);
        let new = self.take_credit(credit, from, amount)?;
        self.dir.save(&self.state)?;
        Ok(new.then(|| match (from, amount) {
            (Some(f), Some(a)) => format!(
                "received {} INF from {f}; stored credit #{} (total credits {} INF)",
                format_inf(a.0),
                nonce,
                format_inf(total.0)
            ),
            _ => format!("stored credit #{} (total credits {} INF)", nonce, format_inf(total.0)),
        }))
    }

    /// What the user can spend or withdraw now: the balance while the channel is open or
    /// closing, zero once the contract has paid it out.
    pub fn spendable(&self) -> Result<Amount, WalletError> {
        let ch = self.channel()?;
        Ok(if ch.status == Status::Settled { Amount::ZERO } else { ch.balance()? })
    }

    /// A summary of the channel for display.
    pub fn summary(&self) -> Result<Value, WalletError> {
        let ch = self.channel()?;
        let status = match ch.status {
            Status::Open => json!({"state": "open"}),
            Status::Closing { settle_block } => json!({"state": "closing", "settleBlock": settle_block}),
            Status::Settled => json!({"state": "settled"}),
        };
        Ok(json!({
            "user": self.user(),
            "epoch": ch.epoch,
            "status": status,
            "balance": self.spendable()?,
            "deposited": ch.deposited,
            "withdrawn": ch.withdrawn,
            "cumulativeCredit": ch.cumulative_credit(),
            "cumulativeDebit": ch.cumulative_debit(),
            "creditNonce": ch.credit_nonce(),
            "debitNonce": ch.debit_nonce(),
            "pendingPayment": self.state.pending_debit.map(|d| d.message.payment_id),
            "confirmedBlock": ch.block,
        }))
    }

    /// The user's on-chain token balance.
    pub async fn token_balance(&self) -> Result<U256, WalletError> {
        self.chain.token_balance(self.state.hub.token, self.user()).await
    }
}

/// How a payment's answer settled it.
enum Resolution {
    /// Applied: the hub's answer with its checked receipt.
    Applied(Value),
    /// Refused and refunded (final).
    Refunded {
        /// The rule the payment broke.
        code: String,
        /// The hub's message.
        message: String,
    },
}
