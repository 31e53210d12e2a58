//! The wallet's flows over its core ([`crate::wallet_core::WalletCore`], the user's end of the
//! channel without IO), the store, the hub and the chain.
//!
//! Every change follows the same order: take the directory lock, reload the state, let the
//! core compute the next state (it runs the channel machine, which checks the hub's signatures
//! and the balance rules), write what must survive a crash *before* the network call that
//! depends on it (a signed debit is stored as pending before it is sent; a co-signed withdrawal
//! before it is submitted), and save. Chain facts come from the contract's record of the channel
//! at the confirmed block; hub reports are compared with the wallet's own proofs and every
//! disagreement is reported, never silently adopted.

use crate::chain::{status, ChainClient, ChannelView};
use crate::error::WalletError;
use crate::hub::{HubClient, HubError};
use crate::store::{
    CoSignedWithdrawal, DirLock, HubInfo, JournalEntry, TowerLink, WalletDir, WalletState, STATE_VERSION,
};
use crate::tower::{TowerAnswer, TowerClient};
use crate::units::{format_inf, TOKEN_DECIMALS};
use crate::wallet_core::{HubAccount, PaymentAnswer, Resolution, WalletCore};
use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use infhub_chain::bindings::{IInfHub, IPointRegistry};
use infhub_chain::events::{
    challenge_debit_call, complain_chain_totals_call, complain_contradicted_credit_call, exit_from_checkpoint_call,
    register_credit_lock_call,
};
use infhub_core::channel::{ChannelState, Effect, Status};
use infhub_core::checkpoint::{check_channel_leaf, CheckpointDomain, LeafKind, LeafProof, SumNode};
use infhub_core::contract::PostedCheckpoint;
use infhub_core::messages::{Eip712Message, Signed, SignedCredit, SignedReceipt};
use infhub_core::{Address, Amount, Domain, PaymentKind, PrivateKey, Registration, TowerFee, Withdrawal, B256};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::wallet_core::HubCheck;

/// Blocks a registration request stays valid.
pub const REGISTRATION_VALID_BLOCKS: u64 = 100;
/// Blocks a co-signed withdrawal stays valid (bounded by the hub's limit).
pub const WITHDRAWAL_VALID_BLOCKS: u64 = 100;
/// How long the wallet waits for the chain to confirm something it sent.
pub const CONFIRMATION_WAIT: Duration = Duration::from_secs(180);
/// How often the wallet polls while it waits.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// An open wallet: its core, store and clients.
pub struct Wallet {
    /// The directory.
    pub dir: WalletDir,
    key_bytes: B256,
    /// The user's end of the channel, and the state it keeps.
    pub core: WalletCore,
    /// The hub.
    pub hub: HubClient,
    /// The chain.
    pub chain: ChainClient,
    /// The settled epoch whose claimed locks are all resolved (known in this process), so
    /// `watch` stops asking the chain about them.
    locks_resolved_epoch: Option<u64>,
    /// The most fees the payment being made may cost (None: any the hub quotes).
    max_fee: Option<Amount>,
    /// This wallet's locks `sync` must not settle yet (a hub's link holds those whose scalar
    /// it has not recorded for the payment it forwarded).
    held_locks: Vec<B256>,
    /// Its owner syncs it on its own schedule ([`Wallet::set_synced_by_owner`]).
    synced_by_owner: bool,
    /// The link direction the last refusal of a forwarded payment named (spec §5.18), for a
    /// hub's link to pass upstream and learn from.
    last_failing_link: Option<infhub_core::routing::FailingLink>,
}

/// A human line and its machine form, for progress and watch output.
pub type Progress<'a> = &'a mut (dyn FnMut(&str) + Send);

fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, WalletError> {
    serde_json::from_value(v.clone()).map_err(|e| WalletError::HubMisbehaved(format!("{what}: {e}")))
}

fn random_id() -> Result<B256, WalletError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| WalletError::InvalidInput(format!("no randomness: {e}")))?;
    Ok(B256::from(b))
}

/// The hub's answer to a payment, in the core's terms.
fn payment_answer(answer: Result<Value, HubError>) -> Result<(PaymentAnswer, Option<Value>), WalletError> {
    Ok(match answer {
        Ok(a) => {
            let receipt: SignedReceipt = parse(&a["result"]["receipt"], "receipt")?;
            (PaymentAnswer::Applied(receipt), Some(a))
        }
        Err(HubError::Refused { code, message, refund: Some(refund), .. }) => {
            let refund: SignedCredit = parse(&refund, "refund")?;
            (PaymentAnswer::Refunded { code, message, refund }, None)
        }
        Err(HubError::Refused { code, message, refund: None, .. }) => (PaymentAnswer::Refused { code, message }, None),
        Err(HubError::Unreachable(_)) => (PaymentAnswer::Unreachable, None),
    })
}

/// The link direction a hub's refusal of a forward names, if any.
fn failing_link_of(answer: &Result<Value, HubError>) -> Option<infhub_core::routing::FailingLink> {
    match answer {
        Err(HubError::Refused { failing_link, .. }) => *failing_link,
        Ok(a) => serde_json::from_value(a["forwarded"]["error"]["failingLink"].clone()).ok(),
        Err(HubError::Unreachable(_)) => None,
    }
}

/// The hub's answer to a lock debit, in the core's terms (its receipt is at the top level).
fn lock_answer(answer: Result<Value, HubError>) -> Result<(PaymentAnswer, Option<Value>), WalletError> {
    Ok(match answer {
        Ok(a) => (PaymentAnswer::Applied(parse(&a["receipt"], "receipt")?), Some(a)),
        // Too many requests or a hub in trouble: the same debit is resent later.
        Err(HubError::Refused { status: 429 | 500.., .. }) | Err(HubError::Unreachable(_)) => {
            (PaymentAnswer::Unreachable, None)
        }
        Err(HubError::Refused { code, message, .. }) => (PaymentAnswer::Refused { code, message }, None),
    })
}

/// A random scalar in `1..n` (a tweak, an ephemeral key).
fn random_scalar() -> Result<infhub_core::point_lock::Scalar, WalletError> {
    loop {
        if let Ok(s) = infhub_core::point_lock::Scalar::from_bytes(random_id()?) {
            return Ok(s);
        }
    }
}

/// A payment across hubs as the wallet signs it: its lock's point address, amount and expiry,
/// the forward's route fields (`lockPoint`, `quoteId`, `parts`) and the tweak sum.
type SealedQuote = (Address, Amount, u64, Value, infhub_core::point_lock::Scalar);

/// Checks a hub's payment quote and seals its route (spec §5.23d): the steps chain from this
/// wallet's hub (`own_hub`, read from the contract) to the payee's, each key its hub's, the
/// amount at least the invoice's; the wallet draws every tweak and seals each step to its hub,
/// so that no hub, its own included, learns another's tweak. Her lock's point is the invoice's
/// less the tweak sum (the scalar that opens it, plus the tweak sum, is her proof of payment).
fn seal_quote(
    quote: &Value,
    own_hub: Address,
    invoice: &infhub_core::invoice::Invoice,
    invoice_point: &infhub_core::point_lock::Point,
) -> Result<SealedQuote, WalletError> {
    let bad = |what: &str| WalletError::HubMisbehaved(format!("the payment quote's {what} does not check out"));
    let parts = quote["parts"].as_array().ok_or_else(|| bad("parts"))?;
    let plans = parts
        .iter()
        .map(|p| parse::<Vec<infhub_core::sealed_step::StepPlan>>(&p["steps"], "quote.parts.steps"))
        .collect::<Result<Vec<_>, _>>()?;
    let payee_hub: Address = parse(&quote["payeeHub"], "quote.payeeHub")?;
    let amount: Amount = parse(&quote["amount"], "quote.amount")?;
    if amount < invoice.amount {
        return Err(bad("amount"));
    }
    let expiry = quote["expiryBlock"].as_u64().ok_or_else(|| bad("expiryBlock"))?;
    let draws = 2 * plans.iter().map(Vec::len).sum::<usize>();
    let mut pool = (0..draws).map(|_| random_scalar()).collect::<Result<Vec<_>, _>>()?;
    let mut draw = || pool.pop().expect("one draw per tweak and per seal");
    let route =
        infhub_core::sealed_step::seal_route(&plans, own_hub, payee_hub, invoice_point, invoice.invoice_id, &mut draw)
            .map_err(|e| WalletError::HubMisbehaved(format!("the payment quote's route: {e}")))?;
    let lock_point = alloy::primitives::FixedBytes(route.lock_point.compressed());
    let fields = json!({"lockPoint": lock_point, "quoteId": quote["quoteId"], "parts": route.parts});
    Ok((route.lock_point.address(), amount, expiry, fields, route.tweak_sum))
}

/// Most attempts at paying an invoice across hubs, the first included (spec §5.18).
pub const PAY_INVOICE_ATTEMPTS: u32 = 3;

/// The refusals of a forward that are about a link, not the payment: the hubs name the link,
/// the payer's hub learns from them, and a new quote may route around it (spec §5.18).
pub const LINK_REFUSALS: [&str; 8] = [
    "insufficient_capacity",
    "unknown_next_hub",
    "fee_insufficient",
    "link_not_open",
    "link_busy",
    "expiry_too_soon",
    "peer_hub_unreachable",
    "hub_unreachable",
];

/// How far ahead an invoice's lock expires when this wallet pays it, in blocks: the payee has
/// until `LOCK_REVEAL_MARGIN_BLOCKS` before that to claim it (spec §5.17b).
pub const PAY_INVOICE_EXPIRY_BLOCKS: u64 = 600;

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
                towers: Vec::new(),
                pending_lock: None,
                forwarded_invoice: None,
                forwarded_route: None,
            },
        };
        dir.save(&state)?;
        dir.append(&[JournalEntry::Registered { hub: hub_info }])?;
        drop(_lock);
        let core = WalletCore::new(state, key)?;
        let mut w = Wallet::assemble(dir, key_bytes, core, hub, chain);
        let view = w.chain.channel_at(user, head).await?;
        if view.status != status::OPEN {
            let r = Signed::new(
                Registration { user, valid_until_block: head + REGISTRATION_VALID_BLOCKS },
                &w.domain(),
                w.core.key(),
            );
            let answer = w.hub.register(&r).await.map_err(|e| e.into_wallet(hub_url))?;
            progress(&format!("registered with the hub; channel {}", answer["status"].as_str().unwrap_or("opening")));
        }
        w.wait_for(progress, "your channel to open on chain", |w| w.state().channel.is_some()).await?;
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
        if let Some(u) = hub_url {
            state.hub.hub_url = u.to_string();
        }
        if let Some(u) = rpc_url {
            state.hub.rpc_url = u.to_string();
        }
        let hub = HubClient::new(&state.hub.hub_url)?;
        let chain = ChainClient::connect(&state.hub.rpc_url, state.hub.hub_contract).await?;
        let core = WalletCore::new(state, key)?;
        Ok(Wallet::assemble(dir, key_bytes, core, hub, chain))
    }

    fn assemble(dir: WalletDir, key_bytes: B256, core: WalletCore, hub: HubClient, chain: ChainClient) -> Wallet {
        Wallet {
            dir,
            key_bytes,
            core,
            hub,
            chain,
            locks_resolved_epoch: None,
            max_fee: None,
            held_locks: Vec::new(),
            synced_by_owner: false,
            last_failing_link: None,
        }
    }

    /// What the wallet keeps.
    pub fn state(&self) -> &WalletState {
        &self.core.state
    }

    /// The account.
    pub fn user(&self) -> Address {
        self.core.user()
    }

    /// The signing domain.
    pub fn domain(&self) -> Domain {
        self.core.domain()
    }

    /// Signs an invoice for `amount` (spec §5.19): addressed `account@hub-host` with the host of
    /// the hub this wallet is registered with, payable until `expires_in_seconds` from now, its
    /// payment point derived from this key and a fresh random id (so the key alone recovers
    /// the proof of payment).
    pub fn issue_invoice(
        &self,
        amount: Amount,
        description: &str,
        expires_in_seconds: u64,
    ) -> Result<infhub_core::invoice::SignedInvoice, WalletError> {
        let url = &self.state().hub.hub_url;
        let host = url.split("://").nth(1).unwrap_or(url).split('/').next().unwrap_or_default();
        let mut id = [0u8; 32];
        getrandom::fill(&mut id).map_err(|e| WalletError::InvalidInput(format!("no randomness: {e}")))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let expires =
            now.checked_add(expires_in_seconds).ok_or_else(|| WalletError::InvalidInput("expiry too far".into()))?;
        let domain = self.domain();
        Ok(infhub_core::invoice::issue(self.core.key(), host, &domain, amount, expires, description, B256::from(id))?)
    }

    /// The channel, or an error saying it is not open yet.
    pub fn channel(&self) -> Result<&ChannelState, WalletError> {
        self.core.channel()
    }

    /// Writes what the core recorded to the journal (synced), then the state.
    fn persist(&mut self) -> Result<(), WalletError> {
        let journal = self.core.take_journal();
        self.dir.append(&journal)?;
        self.dir.save(&self.core.state)
    }

    async fn lock_and_reload(&mut self) -> Result<DirLock, WalletError> {
        let lock = self.dir.lock().await?;
        let mut fresh = self.dir.load()?.ok_or(WalletError::NotRegistered)?;
        fresh.hub.hub_url = self.core.state.hub.hub_url.clone();
        fresh.hub.rpc_url = self.core.state.hub.rpc_url.clone();
        self.core.state = fresh;
        Ok(lock)
    }

    /// The confirmed block: the newest block with `confirmations` blocks including itself.
    pub async fn confirmed_block(&self) -> Result<(u64, u64), WalletError> {
        let head = self.chain.head().await?;
        Ok((head, head.saturating_sub(self.core.state.hub.confirmations - 1)))
    }

    /// Brings the channel up to the contract's record at the confirmed block. Returns the
    /// state machine's effects (disputes to raise, settlement due, settled).
    pub async fn sync_chain(&mut self) -> Result<Vec<Effect>, WalletError> {
        let _lock = self.lock_and_reload().await?;
        let effects = self.sync_chain_locked().await?;
        self.persist()?;
        Ok(effects)
    }

    async fn sync_chain_locked(&mut self) -> Result<Vec<Effect>, WalletError> {
        let (_, confirmed) = self.confirmed_block().await?;
        let view = self.chain.channel_at(self.user(), confirmed).await?;
        let mut paid = BTreeMap::new();
        for epoch in self.core.settlements_needed(&view) {
            paid.insert(epoch, self.settled_paid(epoch).await?);
        }
        let effects = self.core.apply_chain_view(&view, confirmed, &paid)?;
        self.dir.append(&self.core.take_journal())?;
        Ok(effects)
    }

    async fn settled_paid(&self, epoch: u64) -> Result<Amount, WalletError> {
        let s = &self.core.state;
        self.chain.settled_paid(s.user, epoch, s.since_block).await?.ok_or_else(|| WalletError::Chain {
            url: s.hub.rpc_url.clone(),
            reason: format!("the channel is settled but no Settled log for epoch {epoch} was found"),
        })
    }

    async fn ensure_login(&mut self) -> Result<(), WalletError> {
        if self.hub.token().is_none() {
            let domain = self.domain();
            let url = self.core.state.hub.hub_url.clone();
            self.hub.login(self.core.key(), &domain).await.map_err(|e| e.into_wallet(&url))?;
        }
        Ok(())
    }

    /// Resends a pending payment (its answer was lost, or the hub refused it without a refund)
    /// with the same signed debit. Ok once it is settled: applied, refunded, or spent; Err while
    /// it stays pending, so that no other debit is signed over it.
    async fn resolve_pending_locked(&mut self) -> Result<(), WalletError> {
        let Some(debit) = self.core.state.pending_debit else { return Ok(()) };
        let answer = self.hub.transfer(&debit).await;
        self.settle_answer(debit, answer).await.map(|_| ())
    }

    /// Settles a payment by the hub's answer (see [`WalletCore::settle_answer`]): out of step
    /// with the hub, it first learns what the hub holds signed by this key. Returns the hub's
    /// answer of an applied payment.
    async fn settle_answer(
        &mut self,
        debit: infhub_core::messages::SignedDebit,
        answer: Result<Value, HubError>,
    ) -> Result<(Resolution, Option<Value>), WalletError> {
        let (answer, raw) = payment_answer(answer)?;
        if self.core.answer_needs_hub_check(&answer)? {
            let _ = self.check_hub_locked().await;
        }
        let settled = self.core.settle_answer(debit, answer);
        self.persist()?;
        Ok((settled?, raw))
    }

    /// Resends a pending lock debit (its answer was lost) as it was signed. Ok once it is
    /// applied or refused; Err while it stays pending.
    async fn resolve_pending_lock_locked(&mut self) -> Result<(), WalletError> {
        if self.core.state.pending_lock.is_none() {
            return Ok(());
        }
        let (answer, _) = lock_answer(self.send_pending_lock().await)?;
        let settled = self.core.settle_lock_answer(answer);
        self.forget_forwarded_invoice();
        self.persist()?;
        match settled {
            Err(WalletError::HubRefused { .. }) => Ok(()), // over: recorded in the journal
            other => other,
        }
    }

    /// Synchronizes with the chain and the hub: resolves a pending payment, takes the hub's
    /// newest credit, compares the hub's account with this wallet's proofs, claims the hub's
    /// locks its invoices open and settles its own locks the hub learned the scalar of.
    pub async fn sync(&mut self) -> Result<HubCheck, WalletError> {
        let _lock = self.lock_and_reload().await?;
        self.sync_chain_locked().await?;
        self.persist()?;
        if self.core.state.channel.is_none() {
            return Err(WalletError::ChannelNotOpenYet);
        }
        self.resolve_pending_locked().await?;
        self.resolve_pending_lock_locked().await?;
        let (mut check, account) = self.check_hub_with_account_locked().await?;
        self.persist()?;
        self.settle_locks_locked(&account, &mut check).await?;
        Ok(check)
    }

    /// Pays a signed invoice (spec §5.19) by point lock: the lock's id is the invoice's, its
    /// point the invoice's payment point, its amount the invoice's, expiring
    /// [`PAY_INVOICE_EXPIRY_BLOCKS`] after the confirmed block. A payee of this wallet's hub is
    /// paid by a locked transfer inside it (spec §5.17b); a payee at another hub through this
    /// hub, which forwards the lock over its link to her hub (spec §5.23a): the invoice must
    /// then be signed in the domain her hub's `/v1/info` names, on this chain. Not expired
    /// either way. Returns the hub's answer; the payment completes when the payee claims it
    /// and a later sync settles the lock.
    pub async fn pay_invoice(&mut self, invoice: &infhub_core::invoice::SignedInvoice) -> Result<Value, WalletError> {
        self.pay_invoice_expiring(invoice, None).await
    }

    /// [`Wallet::pay_invoice`], refusing a route whose fees are above `max_fee`
    /// (`fee_above_limit`, before anything is signed).
    pub async fn pay_invoice_with_max_fee(
        &mut self,
        invoice: &infhub_core::invoice::SignedInvoice,
        max_fee: Amount,
    ) -> Result<Value, WalletError> {
        self.max_fee = Some(max_fee);
        let paid = self.pay_invoice_expiring(invoice, None).await;
        self.max_fee = None;
        paid
    }

    /// [`Wallet::pay_invoice`] with the lock's expiry block chosen (a hub forwarding a payment
    /// gives the next hop an earlier expiry than its own incoming lock). Across hubs the hub's
    /// quote gives the route, its amount (the invoice's plus the route's fees) and its expiry;
    /// the wallet draws the tweaks, seals each step to its hub and locks `T₀ = Z − tweakSum·G`
    /// (spec §5.23b, §5.23d).
    pub async fn pay_invoice_expiring(
        &mut self,
        invoice: &infhub_core::invoice::SignedInvoice,
        expiry_block: Option<u64>,
    ) -> Result<Value, WalletError> {
        let _lock = self.lock_and_reload().await?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let inv = &invoice.message;
        let url = self.state().hub.hub_url.clone();
        let host = url.split("://").nth(1).unwrap_or(&url).split('/').next().unwrap_or_default().to_ascii_lowercase();
        if inv.payee.host != host {
            return self.pay_across_locked(invoice, now).await;
        }
        let point = invoice.check(&self.domain(), now)?;
        self.catch_up_locked().await?;
        let block = self.core.channel()?.block;
        let expiry_block = expiry_block.unwrap_or(block.saturating_add(PAY_INVOICE_EXPIRY_BLOCKS));
        let lock = infhub_core::point_lock::Lock {
            lock_id: inv.invoice_id,
            amount: inv.amount,
            expiry_block,
            point: point.address(),
        };
        self.send_lock_add(invoice, lock, Some(inv.payee.user), None).await
    }

    /// Pays `invoice` at another hub (spec §5.23b): quotes, checks and seals the route, locks.
    /// A refusal about a link (capacity, openness, fee, time; the hubs name the link and the
    /// payer's hub counts it against routes through it, §5.18) whose lock was cancelled is
    /// tried again with a new quote, at most [`PAY_INVOICE_ATTEMPTS`] times in all; the answer
    /// says how many were made.
    async fn pay_across_locked(
        &mut self,
        invoice: &infhub_core::invoice::SignedInvoice,
        now: u64,
    ) -> Result<Value, WalletError> {
        let mut attempt = 1;
        loop {
            match self.pay_across_once(invoice, now).await {
                Ok(mut answer) => {
                    answer["attempts"] = json!(attempt);
                    return Ok(answer);
                }
                Err(WalletError::HubRefused { code, .. })
                    if attempt < PAY_INVOICE_ATTEMPTS
                        && LINK_REFUSALS.contains(&code.as_str())
                        && self.core.state.pending_lock.is_none()
                        && self.core.channel()?.debit_locks.get(&invoice.message.invoice_id).is_none() =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt of [`Wallet::pay_across_locked`]. Across hubs the payee hub's contract comes
    /// with this hub's quote: the invoice is then checked in that domain, so a hub that named
    /// another contract fails the payee's signature (it cannot sign for her).
    async fn pay_across_once(
        &mut self,
        invoice: &infhub_core::invoice::SignedInvoice,
        now: u64,
    ) -> Result<Value, WalletError> {
        let inv = &invoice.message;
        let url = self.state().hub.hub_url.clone();
        let quote = self.hub.payment_quote(invoice, self.user()).await.map_err(|e| e.into_wallet(&url))?;
        let domain = Domain {
            chain_id: self.state().hub.chain_id,
            verifying_contract: parse(&quote["payeeHubContract"], "quote.payeeHubContract")?,
        };
        let point = invoice.check(&domain, now)?;
        self.catch_up_locked().await?;
        let (lock_point, amount, expiry_block, route, tweak_sum) =
            seal_quote(&quote, self.state().hub.hub, inv, &point)?;
        let fees = Amount(amount.0 - inv.amount.0);
        if let Some(max) = self.max_fee.filter(|max| fees > *max) {
            return Err(WalletError::Refused {
                code: "fee_above_limit".into(),
                message: format!(
                    "the route's fees are {} INF, more than the {} INF you allow; nothing was signed",
                    format_inf(fees.0),
                    format_inf(max.0)
                ),
            });
        }
        let lock = infhub_core::point_lock::Lock { lock_id: inv.invoice_id, amount, expiry_block, point: lock_point };
        let mut answer = self.send_lock_add(invoice, lock, None, Some(route)).await?;
        answer["quote"] = json!({"fees": fees, "hops": quote["hops"], "parts": quote["parts"], "tweakSum": tweak_sum});
        Ok(answer)
    }

    /// Locks `amount` on `lock_point` to this wallet's hub for `invoice` and asks the hub to
    /// forward it along `route` (a hub forwarding a payment over its link, spec §5.23b).
    pub async fn pay_routed(
        &mut self,
        invoice: &infhub_core::invoice::SignedInvoice,
        lock_point: &[u8; 33],
        amount: Amount,
        expiry_block: u64,
        route: Value,
    ) -> Result<Value, WalletError> {
        let _lock = self.lock_and_reload().await?;
        let point = infhub_core::point_lock::Point::from_compressed(lock_point)?;
        self.catch_up_locked().await?;
        let lock = infhub_core::point_lock::Lock {
            lock_id: invoice.message.invoice_id,
            amount,
            expiry_block,
            point: point.address(),
        };
        self.send_lock_add(invoice, lock, None, Some(route)).await
    }

    /// Follows the chain and the hub before a new lock: resolves what is pending, takes the
    /// hub's newest credit.
    async fn catch_up_locked(&mut self) -> Result<(), WalletError> {
        if !self.synced_by_owner {
            self.sync_chain_locked().await?;
        }
        self.resolve_pending_locked().await?;
        self.resolve_pending_lock_locked().await?;
        if !self.synced_by_owner {
            self.check_hub_locked().await?;
        }
        self.persist()
    }

    /// Tells the wallet that its owner syncs it with the chain and the hub on its own schedule
    /// (a hub's link, every watch round), so a payment does not first read the chain and the
    /// account: a lock debit depends only on this wallet's own debits, and a close since the
    /// last round is refused by the hub by name.
    pub fn set_synced_by_owner(&mut self, yes: bool) {
        self.synced_by_owner = yes;
    }

    /// Signs the lock add (to `payee` inside the hub, or to the hub to forward `invoice` with
    /// `route`), keeps it pending before it leaves, sends it and settles the answer; a forward
    /// the next hub refused is cancelled at once.
    async fn send_lock_add(
        &mut self,
        invoice: &infhub_core::invoice::SignedInvoice,
        lock: infhub_core::point_lock::Lock,
        payee: Option<Address>,
        route: Option<Value>,
    ) -> Result<Value, WalletError> {
        let change = infhub_core::channel::LockChange::Add(lock);
        self.core.sign_lock_debit(change, payee)?;
        let across = payee.is_none();
        self.core.state.forwarded_invoice = across.then(|| invoice.clone());
        self.core.state.forwarded_route = if across { route } else { None };
        // Stored as pending before it leaves the wallet.
        self.persist()?;
        let sent = self.send_pending_lock().await;
        self.last_failing_link = failing_link_of(&sent);
        let (answer, raw) = lock_answer(sent)?;
        let settled = self.core.settle_lock_answer(answer);
        self.forget_forwarded_invoice();
        self.persist()?;
        settled?;
        let raw =
            raw.ok_or_else(|| WalletError::HubMisbehaved("an applied locked transfer without an answer".into()))?;
        if across && raw["forwarded"]["error"].is_object() {
            return Err(self.cancel_refused_forward(lock.lock_id, &raw["forwarded"]["error"]).await);
        }
        Ok(raw)
    }

    /// The next hub refused the payment this wallet's hub forwarded: cancels the lock (the hub
    /// agrees, spec §5.23a) and says what happened.
    async fn cancel_refused_forward(&mut self, lock_id: B256, error: &Value) -> WalletError {
        let code = error["code"].as_str().unwrap_or("forward_refused").to_string();
        let why = error["message"].as_str().unwrap_or_default().to_string();
        let change = infhub_core::channel::LockChange::Cancel { lock_id };
        let message = match self.send_lock_change(change).await {
            Ok(()) => format!("the payee's side refused the payment ({why}); your lock was cancelled and its amount is back"),
            Err(e) => format!(
                "the payee's side refused the payment ({why}); cancelling your lock failed ({e}), so it returns after its expiry"
            ),
        };
        WalletError::HubRefused { code, message }
    }

    /// Sends the pending lock debit to the hub: to be forwarded with its invoice, as a locked
    /// transfer to a payee of the hub, or as a change to a lock the hub holds.
    async fn send_pending_lock(&self) -> Result<Value, HubError> {
        let p = self.core.state.pending_lock.expect("a pending lock debit");
        match &self.core.state.forwarded_invoice {
            Some(invoice) if p.change.lock_id() == invoice.message.invoice_id => {
                self.hub.forwarded_transfer(&p, invoice, self.core.state.forwarded_route.as_ref()).await
            }
            _ => self.hub.lock_debit(&p).await,
        }
    }

    fn forget_forwarded_invoice(&mut self) {
        if self.core.state.pending_lock.is_none() {
            self.core.state.forwarded_invoice = None;
            self.core.state.forwarded_route = None;
        }
    }

    /// The link direction the last refused forward named (spec §5.18), taken.
    pub fn take_failing_link(&mut self) -> Option<infhub_core::routing::FailingLink> {
        self.last_failing_link.take()
    }

    /// Makes `sync` leave the locks `ids` pending even when the hub learned their scalars.
    pub fn hold_locks(&mut self, ids: Vec<B256>) {
        self.held_locks = ids;
    }

    /// The scalars the hub learned for this wallet's pending locks (their payees claimed
    /// them), by lock id, before this wallet settles them: how a hub that forwarded a payment
    /// over this link learns the proof of payment to settle upstream (spec §5.23a).
    pub async fn outgoing_scalars(&mut self) -> Result<Vec<(B256, infhub_core::point_lock::Scalar)>, WalletError> {
        let _lock = self.lock_and_reload().await?;
        let (_, account) = self.check_hub_with_account_locked().await?;
        self.persist()?;
        Ok(account.outgoing_scalars)
    }

    /// Claims the hub's locks to this wallet that its invoices open (reveals each scalar to the
    /// hub and takes the credit that settles it), then settles, one lock debit each, this
    /// wallet's locks whose scalar the hub learned (the payee claimed them: the scalar is the
    /// proof of payment). What happened is added to `check`'s notes.
    async fn settle_locks_locked(&mut self, a: &HubAccount, check: &mut HubCheck) -> Result<(), WalletError> {
        let url = self.core.state.hub.hub_url.clone();
        for (lock_id, scalar) in self.core.locks_to_claim()? {
            match self.hub.reveal(self.user(), lock_id, &scalar).await {
                Ok(v) => {
                    let credit: SignedCredit = parse(&v["credit"], "the settling credit")?;
                    let taken = self.core.take_lock_settlement(credit, lock_id, scalar)?;
                    check.notes.push(match taken {
                        true => format!("claimed the payment of invoice {lock_id}"),
                        false => format!("claimed the payment of invoice {lock_id}; it arrives with the next sync"),
                    });
                }
                Err(e) => check.notes.push(format!("invoice {lock_id} not claimed yet: {}", e.into_wallet(&url))),
            }
            self.dir.append(&self.core.take_journal())?;
            self.persist()?;
        }
        // Locks whose scalar the caller must record elsewhere first stay pending (spec §5.23b).
        let mut settleable = a.clone();
        settleable.outgoing_scalars.retain(|(id, _)| !self.held_locks.contains(id));
        for _ in 0..infhub_core::point_lock::MAX_PENDING_LOCKS {
            let Some(change) = self.core.lock_to_settle(&settleable)? else { break };
            self.send_lock_change(change).await?;
            if let infhub_core::channel::LockChange::Settle { lock_id, scalar } = change {
                check.notes.push(format!("invoice {lock_id} paid; proof of payment {}", scalar.value()));
            }
        }
        // Locks the hub agrees to cancel (their payment was refused on its way, or the payee's
        // hub abandoned it) come back now rather than at their expiry; a lock whose scalar the
        // hub learned is settled above, never cancelled.
        for lock_id in a.cancellable_locks.iter().take(infhub_core::point_lock::MAX_PENDING_LOCKS) {
            let pending = self.core.channel()?.debit_locks.get(lock_id).is_some();
            if !pending || a.outgoing_scalars.iter().any(|(id, _)| id == lock_id) {
                continue;
            }
            let change = infhub_core::channel::LockChange::Cancel { lock_id: *lock_id };
            match self.send_lock_change(change).await {
                Ok(()) => check.notes.push(format!(
                    "the payment of invoice {lock_id} was refused on its way; your lock was cancelled and its amount is back"
                )),
                Err(e @ WalletError::HubRefused { .. }) => check.notes.push(format!("lock {lock_id} not cancelled yet: {e}")),
                Err(e) => return Err(e),
            }
        }
        if let Some(change) = self.core.lock_to_drop(a)? {
            // One per sync: the hub may not have confirmed the expiry block yet (then it says
            // `lock_not_expired`, and the next sync tries again).
            let id = change.lock_id();
            match self.send_lock_change(change).await {
                Ok(()) => {
                    check.notes.push(format!("the payment of invoice {id} expired unclaimed; its amount is back"))
                }
                Err(e @ WalletError::HubRefused { .. }) => check.notes.push(format!("lock {id} not dropped yet: {e}")),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Signs `change` to one of this wallet's locks, sends it and settles the hub's answer.
    async fn send_lock_change(&mut self, change: infhub_core::channel::LockChange) -> Result<(), WalletError> {
        self.core.sign_lock_debit(change, None)?;
        self.persist()?;
        let p = self.core.state.pending_lock.expect("just signed");
        let (answer, _) = lock_answer(self.hub.lock_debit(&p).await)?;
        let settled = self.core.settle_lock_answer(answer);
        self.persist()?;
        settled
    }

    async fn check_hub_locked(&mut self) -> Result<HubCheck, WalletError> {
        Ok(self.check_hub_with_account_locked().await?.0)
    }

    async fn check_hub_with_account_locked(&mut self) -> Result<(HubCheck, HubAccount), WalletError> {
        self.ensure_login().await?;
        let url = self.core.state.hub.hub_url.clone();
        let a = match self.hub.account(self.user()).await {
            // The hub forgot the session (a restart, or it expired): log in again, once.
            Err(e) if e.is_unauthorized() => {
                self.hub.forget_session();
                self.ensure_login().await?;
                self.hub.account(self.user()).await
            }
            other => other,
        }
        .map_err(|e| e.into_wallet(&url))?;
        let account = HubAccount::from_json(&a)?;
        let check = self.core.check_hub(&account)?;
        self.dir.append(&self.core.take_journal())?;
        Ok((check, account))
    }

    /// Pays `amount` to `recipient` (an account of this hub, or a chain address for
    /// [`PaymentKind::External`]). Returns the hub's answer (receipt, payout).
    pub async fn pay(&mut self, kind: PaymentKind, recipient: Address, amount: Amount) -> Result<Value, WalletError> {
        self.pay_with_id(kind, recipient, amount, None).await
    }

    /// [`Wallet::pay`] under a payment id the payee asked for (a merchant's payment request,
    /// spec §5.21: the id is signed with the debit, and the payee looks the payment up by it);
    /// `None` draws a random one. Paying the same id again is answered with the first result.
    pub async fn pay_with_id(
        &mut self,
        kind: PaymentKind,
        recipient: Address,
        amount: Amount,
        payment_id: Option<B256>,
    ) -> Result<Value, WalletError> {
        if let Some(id) = payment_id {
            // A request already paid is refused before anything is signed: a second debit
            // under a used id would be refused by the hub unapplied, and held by this wallet
            // (it cannot tell the hub will never apply it).
            match self.payment(id).await {
                Ok(found) => {
                    return Err(WalletError::Refused {
                        code: "payment_id_reused".into(),
                        message: format!(
                            "payment id {id} is already used by this account's payment ({}); nothing was signed",
                            found["status"].as_str().unwrap_or("recorded")
                        ),
                    })
                }
                Err(e) if e.code() == "unknown_payment" => {}
                Err(e) => return Err(e),
            }
        }
        let _lock = self.lock_and_reload().await?;
        self.sync_chain_locked().await?;
        self.resolve_pending_locked().await?;
        // Take the hub's newest credit first: what others paid in is spendable.
        self.check_hub_locked().await?;
        self.persist()?;
        let id = match payment_id {
            Some(id) => id,
            None => random_id()?,
        };
        let signed = self.core.sign_payment(kind, recipient, amount, id)?;
        // Stored as pending before it leaves the wallet.
        self.persist()?;
        let answer = self.hub.transfer(&signed).await;
        match self.settle_answer(signed, answer).await? {
            (Resolution::Applied, Some(answer)) => Ok(answer),
            (Resolution::Applied, None) => {
                Err(WalletError::HubMisbehaved("an applied payment without an answer".into()))
            }
            (Resolution::Refunded { code, message }, _) => Err(WalletError::HubRefused {
                code,
                message: format!("{message}; the payment was refunded (its amount is back in your balance)"),
            }),
        }
    }

    /// A payment of this account by its id (spec §5.21): its status and every entry with its
    /// proofs (the payer's receipt, the payee's credit).
    pub async fn payment(&mut self, payment_id: B256) -> Result<Value, WalletError> {
        let user = self.user();
        self.with_session(move |hub| Box::pin(hub.payment(user, payment_id))).await
    }

    /// The status of an external payment's payout.
    pub async fn payout_status(&mut self, payment_id: B256) -> Result<Value, WalletError> {
        let user = self.user();
        self.with_session(|hub| Box::pin(hub.payout(user, payment_id))).await
    }

    /// The hub's statement of this account within `from..=to` (spec §5.21a): its lines with
    /// the running balance, the opening and closing balance.
    pub async fn statement(&mut self, from: Option<&str>, to: Option<&str>) -> Result<Value, WalletError> {
        let (user, from, to) = (self.user(), from.map(str::to_string), to.map(str::to_string));
        self.with_session(move |hub| {
            let (from, to) = (from.clone(), to.clone());
            Box::pin(async move { hub.statement(user, from.as_deref(), to.as_deref()).await })
        })
        .await
    }

    /// The merchant feature of spec §5.24: sets (`Some(url)`, delivering the events after
    /// `after`, or from now on), shows (`None`) or removes (`remove`) this account's webhook.
    pub async fn webhook(&mut self, url: Option<&str>, after: Option<u64>, remove: bool) -> Result<Value, WalletError> {
        let (user, url) = (self.user(), url.map(str::to_string));
        self.with_session(move |hub| {
            let url = url.clone();
            Box::pin(async move {
                match (url, remove) {
                    (_, true) => hub.remove_webhook(user).await,
                    (Some(url), false) => hub.set_webhook(user, &url, after).await,
                    (None, false) => hub.webhook(user).await,
                }
            })
        })
        .await
    }

    /// This account's events after the cursor `after` (spec §5.24), oldest first.
    pub async fn events(&mut self, after: u64, limit: usize) -> Result<Value, WalletError> {
        let user = self.user();
        self.with_session(move |hub| Box::pin(hub.events(user, after, limit))).await
    }

    /// Calls `read` with a session, logging in first if needed and once more if the hub
    /// forgot the session.
    async fn with_session<'a>(
        &'a mut self,
        read: impl for<'h> Fn(
            &'h HubClient,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, HubError>> + Send + 'h>>,
    ) -> Result<Value, WalletError> {
        self.ensure_login().await?;
        let url = self.core.state.hub.hub_url.clone();
        match read(&self.hub).await {
            Err(e) if e.is_unauthorized() => {
                self.hub.forget_session();
                self.ensure_login().await?;
                read(&self.hub).await
            }
            other => other,
        }
        .map_err(|e| e.into_wallet(&url))
    }

    /// Approves and deposits `amount` on chain, then waits for the confirmations.
    pub async fn deposit(&mut self, amount: Amount, progress: Progress<'_>) -> Result<Amount, WalletError> {
        self.sync_chain().await?;
        let ch = self.channel()?.clone();
        if ch.status != Status::Open {
            return Err(infhub_core::Error::ChannelNotOpen.into());
        }
        let token = self.core.state.hub.token;
        let contract = self.core.state.hub.hub_contract;
        let have = self.chain.token_balance(token, self.user()).await?;
        if have < U256::from(amount.0) {
            return Err(WalletError::InvalidInput(format!(
                "you hold {} INF on chain, less than {}",
                format_inf(u128::try_from(have).unwrap_or(u128::MAX)),
                format_inf(amount.0)
            )));
        }
        let mut sender = self.chain.sender(self.key_bytes).await?;
        let approve = self.core.approve_call(U256::from(amount.0));
        let (hash, _) = self.chain.transact(&mut sender, "approve", token, approve).await?;
        self.dir.append(&[JournalEntry::Transaction { what: "approve".into(), hash }])?;
        let call = self.core.deposit_call(amount);
        let (hash, block) = self.chain.transact(&mut sender, "deposit", contract, call).await?;
        self.dir.append(&[JournalEntry::Transaction { what: "deposit".into(), hash }])?;
        progress(&format!("deposit mined in block {block} ({hash})"));
        let target = ch.deposited.checked_add(amount)?;
        self.wait_for(progress, "the deposit's confirmations", |w| {
            w.state().channel.as_ref().is_some_and(|c| c.deposited >= target || c.epoch != ch.epoch)
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
            self.persist()?;
            let head = self.chain.head().await?;
            match self.core.resumable_withdrawal(head)? {
                Some(w) => {
                    progress("resuming a co-signed withdrawal that was not yet submitted");
                    w
                }
                None => self.cosign_withdrawal_locked(amount).await?,
            }
        };
        let w = cosigned.withdrawal;
        let before = self.channel()?.withdrawn;
        let call = WalletCore::withdraw_call(&cosigned);
        let mut sender = self.chain.sender(self.key_bytes).await?;
        let contract = self.core.state.hub.hub_contract;
        let (hash, block) = self.chain.transact(&mut sender, "withdraw", contract, call).await?;
        self.dir.append(&[JournalEntry::Transaction { what: "withdraw".into(), hash }])?;
        progress(&format!("withdrawal mined in block {block} ({hash})"));
        self.wait_for(progress, "the withdrawal's confirmations", |wl| {
            wl.state().channel.as_ref().is_some_and(|c| c.withdrawn >= w.cumulative_withdrawn || c.epoch != w.epoch)
        })
        .await?;
        w.cumulative_withdrawn.checked_sub_or(before, infhub_core::Error::ChainEventInconsistent).map_err(Into::into)
    }

    async fn cosign_withdrawal_locked(&mut self, amount: Option<Amount>) -> Result<CoSignedWithdrawal, WalletError> {
        self.resolve_pending_locked().await?;
        self.check_hub_locked().await?;
        let url = self.core.state.hub.hub_url.clone();
        let valid =
            WITHDRAWAL_VALID_BLOCKS.min(self.core.state.hub.max_withdrawal_expiry_blocks.saturating_sub(5)).max(1);
        let (w, user_signature) = self.core.sign_withdrawal(amount, valid)?;
        let answer = self.hub.withdraw(&w, &user_signature).await.map_err(|e| e.into_wallet(&url))?;
        let echoed: Withdrawal = parse(&answer["withdrawal"], "withdrawal")?;
        let hub_signature = parse(&answer["hubSignature"], "hubSignature")?;
        let cosigned = self.core.take_cosigned(w, user_signature, echoed, hub_signature)?;
        // Kept before it is submitted: it can be resumed if this command stops.
        self.persist()?;
        Ok(cosigned)
    }

    /// Follows the chain; the settle block if the channel is closing already, None if it is
    /// open, `ChannelNotOpen` if it settled: what both ways of starting an exit check first.
    async fn exit_already_started(&mut self) -> Result<Option<u64>, WalletError> {
        self.sync_chain().await?;
        match self.channel()?.status {
            Status::Open => Ok(None),
            Status::Closing { settle_block } => Ok(Some(settle_block)),
            Status::Settled => Err(infhub_core::Error::ChannelNotOpen.into()),
        }
    }

    /// Sends `call` to the hub contract from this wallet's key, waits for it to be mined, and
    /// journals it as `what`. Returns its hash and block.
    async fn send_to_contract(&mut self, what: &'static str, call: Vec<u8>) -> Result<(B256, u64), WalletError> {
        let mut sender = self.chain.sender(self.key_bytes).await?;
        let (hash, block) = self.chain.transact(&mut sender, what, self.chain.contract(), call).await?;
        self.dir.append(&[JournalEntry::Transaction { what: what.into(), hash }])?;
        Ok((hash, block))
    }

    /// Starts a unilateral exit with the newest hub-signed credit this wallet holds, and hands
    /// the contract this wallet's own newest debit. Needs only the chain. Returns the settle block.
    pub async fn start_exit(&mut self) -> Result<u64, WalletError> {
        if let Some(settle_block) = self.exit_already_started().await? {
            return Ok(settle_block);
        }
        let contract = self.core.state.hub.hub_contract;
        let mut sender = self.chain.sender(self.key_bytes).await?;
        for (what, call) in self.core.exit_calls()? {
            let (hash, _) = self.chain.transact(&mut sender, what, contract, call).await?;
            self.dir.append(&[JournalEntry::Transaction { what: what.into(), hash }])?;
        }
        let view = self.chain.channel_at(self.user(), self.chain.head().await?).await?;
        Ok(view.settle_block)
    }

    /// Starts the exit with this account's channel leaf of the contract's newest checkpoint as
    /// its credit (`startExitFromCheckpoint`, spec §5.16): for a wallet that lost its proofs.
    /// The leaf comes from the hub and is checked against the contract's root before it is
    /// sent. Returns the block from which settlement is possible.
    pub async fn start_exit_from_checkpoint(&mut self) -> Result<u64, WalletError> {
        if let Some(settle_block) = self.exit_already_started().await? {
            return Ok(settle_block);
        }
        let Some((id, posted)) = self.posted_checkpoint(None).await? else {
            return Err(WalletError::InvalidInput("the hub has posted no checkpoint to exit with".into()));
        };
        let user = self.user();
        let proof = self
            .leaf_proofs(id, posted.root)
            .await?
            .into_iter()
            .find(|p| p.leaf.account == user && p.leaf.kind == LeafKind::Channel)
            .ok_or_else(|| {
                WalletError::HubMisbehaved(format!("no channel leaf of checkpoint {id} for this account"))
            })?;
        let d = CheckpointDomain {
            chain_id: self.core.state.hub.chain_id,
            contract: self.chain.contract(),
            checkpoint_id: id,
        };
        proof
            .path
            .verify(proof.leaf.node(&d), SumNode { hash: posted.root, sum: posted.total_liability })
            .map_err(|e| WalletError::HubMisbehaved(format!("the hub's leaf of checkpoint {id}: {e}")))?;
        let call = exit_from_checkpoint_call(id, &proof).abi_encode();
        self.send_to_contract("start_exit_from_checkpoint", call).await?;
        let view = self.chain.channel_at(user, self.chain.head().await?).await?;
        Ok(view.settle_block)
    }

    /// One round of defence: follows the chain, submits the newest credit against a close
    /// that holds an older one, claims on chain the hub's locks its invoices open, settles
    /// once the challenge period is over (if `settle`), and in the rounds after the
    /// settlement resolves the locks it claimed.
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
        let (status, epoch) = (self.channel()?.status, self.channel()?.epoch);
        if status == Status::Settled && settled.is_none() && self.locks_resolved_epoch != Some(epoch) {
            // A later round (`watch`): resolve the locks this wallet claimed, once resolvable.
            match self.unlock_claimed_locks().await {
                Ok(a) if !a.is_zero() => said.push(format!("your claimed locks paid {} INF", format_inf(a.0))),
                Ok(_) => {}
                Err(e) => said.push(format!("resolving your claimed locks failed, retrying: {e}")),
            }
        }
        if !matches!(status, Status::Closing { .. }) {
            return Ok((said, settled));
        }
        let head = self.chain.head().await?;
        let contract = self.core.state.hub.hub_contract;
        let view: ChannelView = self.chain.channel_at(self.user(), head).await?;
        let defence = self.core.defence(&view, head)?;
        if let Some(c) = defence.submit_credit {
            let n = c.message.nonce;
            // Not again within a few blocks of a submission of the same credit.
            let recently = submitted.is_some_and(|(nonce, at)| nonce == n && head < at + 3);
            if !recently {
                let mut sender = self.chain.sender(self.key_bytes).await?;
                match self.chain.transact(&mut sender, "dispute", contract, WalletCore::submit_credit_call(&c)).await {
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
        if head < view.settle_block {
            self.claim_locks_on_chain(head, &mut said).await?;
        }
        if settle && defence.settle {
            let mut sender = self.chain.sender(self.key_bytes).await?;
            match self.chain.transact(&mut sender, "settle", contract, self.core.settle_call()).await {
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

    /// While the channel closes, claims on chain the hub's locks its invoices open (spec
    /// §5.11a): reveals each one's scalar in the point registry (unless revealed, or too late)
    /// and registers the lock through the newest credit (unless registered). Both are checked
    /// on chain first, so a repeated round sends nothing; a failure is said and retried.
    async fn claim_locks_on_chain(&mut self, head: u64, said: &mut Vec<String>) -> Result<(), WalletError> {
        let claims = self.core.lock_claims()?;
        if claims.is_empty() {
            return Ok(());
        }
        let registry = self.chain.point_registry().await?;
        let contract = self.core.state.hub.hub_contract;
        let domain = self.domain();
        for c in claims {
            let id = c.lock.lock_id;
            let revealed = self.chain.revealed_at(registry, c.lock.point).await?;
            if revealed == 0 && head >= c.lock.expiry_block {
                continue; // too late to open: it goes back to the hub
            }
            let mut sender = self.chain.sender(self.key_bytes).await?;
            if revealed == 0 {
                let call = IPointRegistry::revealCall { scalar: c.scalar.value() }.abi_encode();
                match self.chain.transact(&mut sender, "reveal", registry, call).await {
                    Ok((hash, block)) => {
                        self.dir.append(&[JournalEntry::Transaction { what: "reveal".into(), hash }])?;
                        said.push(format!(
                            "revealed the payment of invoice {id} in the point registry in block {block}"
                        ));
                    }
                    Err(e) => {
                        said.push(format!("revealing invoice {id}'s payment failed, retrying: {e}"));
                        continue;
                    }
                }
            }
            let digest = c.credit.message.digest(&domain);
            if self.chain.lock_registration(digest, id).await?.amount != 0 {
                continue;
            }
            let call = register_credit_lock_call(&c.credit, &c.lock, &c.path).abi_encode();
            match self.chain.transact(&mut sender, "register lock", contract, call).await {
                Ok((hash, block)) => {
                    self.dir.append(&[JournalEntry::Transaction { what: "register lock".into(), hash }])?;
                    said.push(format!("registered the hub's lock for invoice {id} in block {block}"));
                }
                Err(e) => said.push(format!("registering the lock of invoice {id} failed, retrying: {e}")),
            }
        }
        Ok(())
    }

    /// After the settlement, resolves the locks this wallet registered (`unlockMany`): each
    /// one revealed by its expiry pays this account from the hub's escrow. Returns what the
    /// call paid, zero if there was nothing to resolve.
    pub async fn unlock_claimed_locks(&mut self) -> Result<Amount, WalletError> {
        let domain = self.domain();
        let head = self.chain.head().await?;
        let registry = self.chain.point_registry().await?;
        let (mut digests, mut ids, mut total) = (Vec::new(), Vec::new(), Amount::ZERO);
        let mut waiting = false;
        for c in self.core.lock_claims()? {
            let digest = c.credit.message.digest(&domain);
            let r = self.chain.lock_registration(digest, c.lock.lock_id).await?;
            if r.amount == 0 || r.resolved {
                continue;
            }
            let revealed = self.chain.revealed_at(registry, c.lock.point).await?;
            let opened = revealed != 0 && revealed <= c.lock.expiry_block;
            if !(opened || head > c.lock.expiry_block) {
                waiting = true;
                continue;
            }
            digests.push(digest);
            ids.push(c.lock.lock_id);
            if opened {
                total = total.checked_add(c.lock.amount)?;
            }
        }
        if digests.is_empty() {
            if !waiting && self.channel()?.status == Status::Settled {
                self.locks_resolved_epoch = Some(self.channel()?.epoch);
            }
            return Ok(Amount::ZERO);
        }
        let before = self.token_balance().await?;
        let call = IInfHub::unlockManyCall { proofDigests: digests, lockIds: ids }.abi_encode();
        let contract = self.core.state.hub.hub_contract;
        let mut sender = self.chain.sender(self.key_bytes).await?;
        let (hash, _) = self.chain.transact(&mut sender, "unlock", contract, call).await?;
        self.dir.append(&[JournalEntry::Transaction { what: "unlock".into(), hash }])?;
        let received = self.token_balance().await?.saturating_sub(before);
        Ok(Amount(u128::try_from(received).unwrap_or(total.0)))
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
        if self.core.state.channel.is_none() || credit.message.epoch != self.channel()?.epoch {
            return Ok(None);
        }
        let (nonce, total) = (credit.message.nonce, credit.message.cumulative_credit);
        let new = self.core.take_credit(credit, from, amount);
        self.persist()?;
        Ok(new?.then(|| match (from, amount) {
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
            "pendingPayment": self.core.state.pending_debit.map(|d| d.message.payment_id),
            "pendingLock": self.core.state.pending_lock.map(|p| p.debit.message.payment_id),
            "confirmedBlock": ch.block,
        }))
    }

    /// Checks this wallet's leaf of checkpoint `id` (the contract's newest if None) against the
    /// root the contract holds and what the wallet knows (spec §5.16): the hub's proofs, the
    /// chain's record of the channel at the checkpoint's block, the credits it holds of nonce at
    /// most the checkpoint's ledger position, and the debits it signed. A fault is journaled as a disagreement and returned as
    /// [`WalletError::CheckpointFault`]. Returns the verdict.
    pub async fn verify_checkpoint(&mut self, id: Option<u64>) -> Result<Value, WalletError> {
        let Some((id, posted)) = self.posted_checkpoint(id).await? else {
            return Ok(json!({"checkpoint": null, "verdict": "no_checkpoint"}));
        };
        let user = self.user();
        let view = self.chain.channel_at(user, posted.chain_block).await?;
        let summary = json!({
            "id": id, "root": posted.root, "totalLiability": posted.total_liability.to_string(),
            "ledgerSeq": posted.ledger_seq, "chainBlock": posted.chain_block,
        });
        if view.status != status::OPEN && view.status != status::CLOSING {
            return Ok(json!({"checkpoint": summary, "verdict": "no_channel"}));
        }
        let proofs = self.leaf_proofs(id, posted.root).await?;
        let journal = self.dir.journal()?;
        let facts = self.core.checkpoint_facts(&view, &journal, posted.ledger_seq);
        let d = CheckpointDomain {
            chain_id: self.core.state.hub.chain_id,
            contract: self.chain.contract(),
            checkpoint_id: id,
        };
        let root = SumNode { hash: posted.root, sum: posted.total_liability };
        let facts_json = json!({
            "epoch": facts.epoch, "deposited": facts.deposited, "withdrawn": facts.withdrawn, "funds": facts.funds,
            "creditFloor": facts.credit_floor, "debitCeiling": facts.debit_ceiling,
        });
        match check_channel_leaf(&d, root, user, &proofs, &facts) {
            Ok(Some(leaf)) => Ok(json!({"checkpoint": summary, "verdict": "ok", "leaf": leaf, "facts": facts_json})),
            Ok(None) => Ok(json!({"checkpoint": summary, "verdict": "nothing_owed", "facts": facts_json})),
            Err(fault) => {
                let leaves: Vec<String> = proofs.iter().map(|p| format!("{:?}", p.leaf)).collect();
                let detail =
                    format!("checkpoint {id}: {fault}; the wallet knows {facts_json}; the hub's leaves {leaves:?}");
                self.dir.append(&[JournalEntry::Disagreement { detail: detail.clone() }])?;
                Err(WalletError::CheckpointFault { code: fault.code(), detail })
            }
        }
    }

    /// Checkpoint `id` as the contract holds it (the newest if None); None if the hub has
    /// posted none. A posted checkpoint may have a zero root (an empty tree): it is told apart
    /// by its id, not its root.
    async fn posted_checkpoint(&self, id: Option<u64>) -> Result<Option<(u64, PostedCheckpoint)>, WalletError> {
        let last = self.chain.last_checkpoint_id().await?;
        let id = id.unwrap_or(last);
        if id == 0 {
            return Ok(None);
        }
        if id > last {
            return Err(WalletError::InvalidInput(format!(
                "the contract holds no checkpoint {id} (its newest is {last})"
            )));
        }
        Ok(Some((id, self.chain.checkpoint(id).await?)))
    }

    /// This account's leaves of checkpoint `id` (the build with `root`) with their paths, from
    /// the hub.
    async fn leaf_proofs(&mut self, id: u64, root: B256) -> Result<Vec<LeafProof>, WalletError> {
        let user = self.user();
        self.ensure_login().await?;
        let url = self.core.state.hub.hub_url.clone();
        let answer = match self.hub.checkpoint_proofs(id, user, root).await {
            Err(e) if e.is_unauthorized() => {
                self.hub.forget_session();
                self.ensure_login().await?;
                self.hub.checkpoint_proofs(id, user, root).await
            }
            other => other,
        }
        .map_err(|e| e.into_wallet(&url))?;
        parse(&answer["proofs"], "the checkpoint proofs")
    }

    /// Proves on chain that checkpoint `id` (the contract's newest if None) misstates this
    /// account (spec §5.16), with the first proof that applies: a hub-signed credit this wallet
    /// holds that contradicts the leaf (`complainContradictedCredit`, halts the hub); chain
    /// totals the chain contradicts (`complainMisstatedChainTotals`, halts the hub); a debit
    /// total above any this wallet signed (`challengeDebit`: the hub must answer with her
    /// signed debit within the challenge period, else [`Wallet::halt_unanswered`] halts it).
    /// With `challenge_debit` it challenges the leaf's debit whatever the journal says (a
    /// wallet restored from its key alone knows no debits).
    pub async fn complain(&mut self, id: Option<u64>, challenge_debit: bool) -> Result<Value, WalletError> {
        if let Some(v) = self.halt_unanswered().await? {
            return Ok(v);
        }
        let Some((id, posted)) = self.posted_checkpoint(id).await? else {
            return Err(WalletError::InvalidInput("the hub has posted no checkpoint".into()));
        };
        let proofs = self.leaf_proofs(id, posted.root).await?;
        let user = self.user();
        let proof = proofs
            .into_iter()
            .find(|p| p.leaf.account == user && p.leaf.kind == LeafKind::Channel)
            .ok_or_else(|| WalletError::InvalidInput(format!("the hub gave no channel leaf of checkpoint {id}")))?;
        let leaf_json = json!({
            "creditNonce": proof.leaf.credit_nonce, "creditTotal": proof.leaf.credit_total,
            "debitTotal": proof.leaf.debit_total, "deposited": proof.leaf.deposited, "withdrawn": proof.leaf.withdrawn,
        });
        let journal = self.dir.journal()?;
        let credit = self.core.contradicting_credit(&journal, &proof.leaf, posted.ledger_seq);
        if let Some(credit) = credit.filter(|_| !challenge_debit) {
            let call = complain_contradicted_credit_call(id, &proof, &credit).abi_encode();
            let (hash, block) = self.send_to_contract("complain_contradicted_credit", call).await?;
            return Ok(json!({
                "checkpoint": id, "proof": "contradicted_credit", "txHash": hash, "block": block, "leaf": leaf_json,
                "heldCredit": {"nonce": credit.message.nonce, "total": credit.message.cumulative_credit},
            }));
        }
        let now = self.chain.channel_at(user, self.chain.head().await?).await?;
        let l = &proof.leaf;
        if !challenge_debit
            && l.epoch == now.epoch
            && (l.withdrawn > now.withdrawn
                || (l.deposited < now.deposited && now.last_deposit_block <= posted.chain_block))
        {
            let call = complain_chain_totals_call(id, &proof).abi_encode();
            let (hash, block) = self.send_to_contract("complain_misstated_chain_totals", call).await?;
            return Ok(json!({
                "checkpoint": id, "proof": "misstated_chain_totals", "txHash": hash, "block": block, "leaf": leaf_json,
                "chain": {"deposited": now.deposited, "withdrawn": now.withdrawn},
            }));
        }
        let signed = self.core.checkpoint_facts(&now, &journal, posted.ledger_seq).debit_ceiling;
        if l.epoch == now.epoch && now.status == status::OPEN && (l.debit_total > signed || challenge_debit) {
            if l.debit_total.0 == 0 {
                return Err(WalletError::InvalidInput(format!("the leaf of checkpoint {id} states no debit")));
            }
            // A halted hub answers nothing and posts nothing more: a challenge would only cost gas.
            let halted = self.chain.halted_at_checkpoint().await?;
            if halted != 0 {
                return Err(WalletError::InvalidInput(format!(
                    "the hub is halted already (checkpoint {halted} was proved wrong): exit instead"
                )));
            }
            let call = challenge_debit_call(id, &proof).abi_encode();
            let (hash, block) = self.send_to_contract("challenge_debit", call).await?;
            let (_, answer_by, _) = self.chain.debit_challenge(user).await?;
            return Ok(json!({
                "checkpoint": id, "proof": "debit_challenged", "txHash": hash, "block": block, "leaf": leaf_json,
                "highestSignedDebit": signed, "answerByBlock": answer_by,
            }));
        }
        Err(WalletError::InvalidInput(format!(
            "nothing this wallet holds contradicts its leaf of checkpoint {id}: nothing to prove on chain"
        )))
    }

    /// Halts the hub if this account's debit challenge went unanswered through its period
    /// (`haltOnUnansweredChallenge`); None if no such challenge is open or its period lasts.
    pub async fn halt_unanswered(&mut self) -> Result<Option<Value>, WalletError> {
        let user = self.user();
        let (id, answer_by, open) = self.chain.debit_challenge(user).await?;
        if !open || self.chain.head().await? <= answer_by {
            return Ok(None);
        }
        let call = IInfHub::haltOnUnansweredChallengeCall { account: user }.abi_encode();
        let (hash, block) = self.send_to_contract("halt_on_unanswered_challenge", call).await?;
        Ok(Some(json!({"checkpoint": id, "proof": "unanswered_debit_challenge", "txHash": hash, "block": block})))
    }

    /// The fees towers were paid out of this channel's settlement in its current epoch (zero
    /// unless it settled with a tower's defence).
    pub async fn tower_fees_paid(&self) -> Result<Amount, WalletError> {
        let ch = self.channel()?;
        if ch.status != Status::Settled {
            return Ok(Amount::ZERO);
        }
        self.chain.tower_fees_paid(self.user(), ch.epoch, self.core.state.since_block).await
    }

    /// The user's on-chain token balance.
    pub async fn token_balance(&self) -> Result<U256, WalletError> {
        self.chain.token_balance(self.core.state.hub.token, self.user()).await
    }

    /// Adds a watchtower (spec §5.10a): checks that it watches this hub's contract, offers it
    /// `share_bps` of what it saves the user (at most `max_fee` per close, valid for this
    /// epoch), hands it the newest credit, and asks the hub to push every new credit to it.
    pub async fn add_tower(&mut self, url: &str, max_fee: Amount, share_bps: u16) -> Result<Value, WalletError> {
        let _lock = self.lock_and_reload().await?;
        let url = url.trim().trim_end_matches('/').to_string();
        let client = TowerClient::new(&url)?;
        let info = client.info().await?;
        let tower: Address = parse(&info["tower"], "the tower's address")?;
        let contract: Address = parse(&info["contract"], "the tower's contract")?;
        if contract != self.core.state.hub.hub_contract {
            return Err(WalletError::InvalidInput(format!(
                "the tower at {url} watches contract {contract}, not this hub's {}",
                self.core.state.hub.hub_contract
            )));
        }
        let (domain, epoch) = (self.domain(), self.channel()?.epoch);
        let head = self.chain.head().await?;
        let offer = TowerFee {
            user: self.user(),
            epoch,
            tower,
            max_fee,
            gain_share_bps: share_bps,
            valid_until_block: head.saturating_add(TOWER_OFFER_VALID_BLOCKS),
        };
        let offer = Signed::new(offer, &domain, self.core.key());
        if let TowerAnswer::Refused(code, message) = client.give_offer(&offer, &domain, tower).await? {
            return Err(WalletError::InvalidInput(format!("the tower refused the fee offer: {code}: {message}")));
        }
        let held = match self.channel()?.credit.clone() {
            Some(c) => match client.give_credit(&c, &domain, tower).await? {
                TowerAnswer::Held(r) => Some(r),
                TowerAnswer::Refused(code, message) => {
                    return Err(WalletError::InvalidInput(format!("the tower refused your credit: {code}: {message}")))
                }
            },
            None => None,
        };
        if !self.core.state.towers.iter().any(|t| t.url == url) {
            self.core.state.towers.push(TowerLink { url: url.clone(), address: tower });
        }
        self.persist()?;
        self.push_tower_list().await?;
        Ok(json!({"tower": tower, "url": url, "offer": offer, "held": held}))
    }

    /// Removes a tower from this wallet and from the hub's pushes.
    pub async fn remove_tower(&mut self, url: &str) -> Result<(), WalletError> {
        let _lock = self.lock_and_reload().await?;
        let url = url.trim().trim_end_matches('/');
        let before = self.core.state.towers.len();
        self.core.state.towers.retain(|t| t.url != url);
        if self.core.state.towers.len() == before {
            return Err(WalletError::InvalidInput(format!("no tower {url} in this wallet")));
        }
        self.persist()?;
        self.push_tower_list().await
    }

    /// Tells the hub the wallet's tower list.
    async fn push_tower_list(&mut self) -> Result<(), WalletError> {
        self.ensure_login().await?;
        let urls: Vec<String> = self.core.state.towers.iter().map(|t| t.url.clone()).collect();
        let hub_url = self.core.state.hub.hub_url.clone();
        let answer = match self.hub.set_towers(self.user(), &urls).await {
            Err(e) if e.is_unauthorized() => {
                self.hub.forget_session();
                self.ensure_login().await?;
                self.hub.set_towers(self.user(), &urls).await
            }
            other => other,
        };
        answer.map(|_| ()).map_err(|e| e.into_wallet(&hub_url))
    }

    /// What each tower holds for this user (its signed receipt), or why it could not be asked.
    pub async fn tower_status(
        &self,
    ) -> Vec<(TowerLink, Result<Option<infhub_core::tower::SignedTowerReceipt>, WalletError>)> {
        let domain = self.domain();
        let mut out = Vec::new();
        for t in &self.core.state.towers {
            let held = match TowerClient::new(&t.url) {
                Ok(c) => c.held(self.user(), &domain, t.address).await,
                Err(e) => Err(e),
            };
            out.push((t.clone(), held));
        }
        out
    }

    /// Hands the newest credit to every tower (best effort: the hub pushes it too). Returns a
    /// line per tower that could not take it.
    pub async fn feed_towers(&self) -> Vec<String> {
        let Some(credit) = self.core.state.channel.as_ref().and_then(|c| c.credit.clone()) else { return Vec::new() };
        let domain = self.domain();
        let mut failed = Vec::new();
        for t in &self.core.state.towers {
            let answer = match TowerClient::new(&t.url) {
                Ok(c) => c.give_credit(&credit, &domain, t.address).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(TowerAnswer::Held(_)) => {}
                Ok(TowerAnswer::Refused(code, message)) => {
                    failed.push(format!("tower {} refused credit #{}: {code}: {message}", t.url, credit.message.nonce))
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
        failed
    }
}

/// How long a fee offer stays valid (blocks; it is void anyway once the epoch ends).
pub const TOWER_OFFER_VALID_BLOCKS: u64 = 5_000_000;
