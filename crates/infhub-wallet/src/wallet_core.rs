//! The user's end of the channel, without IO: every rule the wallet applies to what it signs,
//! what the hub answers and what the chain shows, as one value. The CLI wallet
//! ([`crate::wallet::Wallet`]) drives it over HTTP and JSON-RPC and persists what it records;
//! the simulator drives the same value in process. Nothing here waits, reads a clock or
//! touches a file: inputs are the hub's answers and the contract's record of the channel,
//! outputs are the next state, journal entries to persist, and call data to send.
//!
//! The rules, in one place:
//! - a debit is signed only if the channel machine accepts it (balance, nonce, running
//!   total), and is kept as pending (write-ahead) until an answer settles it;
//! - a receipt applies the pending debit only if the hub signed it and it names that debit;
//!   a refund (a hub credit of the amount back) settles it as refused for good; any other
//!   refusal leaves it pending unless it can no longer be charged;
//! - a hub credit is taken only if the channel machine accepts it (signature, nonce, a higher
//!   total); the hub's report of the account is compared with the wallet's own proofs and
//!   every disagreement is named, never silently adopted;
//! - the chain's record at the confirmed block moves the channel (deposits, withdrawals, a
//!   close, settlements, epochs missed while away);
//! - while the channel closes, the newest credit is submitted if the contract holds a lower
//!   total (totals decide, spec §5.10), and the channel is settled once the period is over.

use crate::chain::{status, ChannelView};
use crate::error::WalletError;
use crate::store::{CoSignedWithdrawal, JournalEntry, JournalLine, PendingLock, WalletState};
use crate::units::format_inf;
use alloy::primitives::Bytes;
use alloy::sol_types::SolCall;
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::events::{credit_arg, submit_credit_call, submit_debit_call, withdrawal_arg};
use infhub_core::channel::{self, ChannelParams, ChannelState, Effect, Input, LockChange, Role, Status};
use infhub_core::checkpoint::{credit_contradicts_leaf, ChannelFacts, Leaf};
use infhub_core::messages::{Eip712Message, Signed, SignedCredit, SignedDebit, SignedReceipt};
use infhub_core::{Address, Amount, Domain, PaymentKind, PrivateKey, Signature, Withdrawal, B256, U256};
use serde_json::Value;
use std::collections::BTreeMap;

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

/// The hub's record of the account, as it reports it (`GET /v1/accounts/{user}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubAccount {
    /// The epoch the hub is at.
    pub epoch: u64,
    /// The hub's newest credit of the account.
    pub latest_credit: Option<SignedCredit>,
    /// The newest debit of the account the hub holds.
    pub latest_debit: Option<SignedDebit>,
    /// The hub's pending point locks to the account, as it lists them (spec §5.17b): what
    /// the newest credit's `locksRoot` must open when it changed the book.
    pub incoming_locks: Option<Vec<infhub_core::point_lock::Lock>>,
    /// The scalars the hub learned for this user's pending locks to it (her payees revealed
    /// them): each one's proof of payment, for her to settle the lock with.
    pub outgoing_scalars: Vec<(B256, infhub_core::point_lock::Scalar)>,
    /// This user's pending locks the hub agrees to cancel before their expiry: the payment each
    /// funds was refused on its way, or the payee's hub abandoned it (spec §5.23a, §5.23c).
    pub cancellable_locks: Vec<B256>,
    /// Its nonce.
    pub debit_nonce: u64,
    /// Its running total.
    pub cumulative_debit: Option<Amount>,
    /// The newest credit's nonce.
    pub credit_nonce: u64,
    /// Its running total.
    pub cumulative_credit: Option<Amount>,
    /// Confirmed deposits.
    pub deposited: Option<Amount>,
    /// The hub's confirmed block.
    pub confirmed_block: u64,
    /// The balance it reports.
    pub balance: Option<Amount>,
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, WalletError> {
    serde_json::from_value(v.clone()).map_err(|e| WalletError::HubMisbehaved(format!("{what}: {e}")))
}

impl HubAccount {
    /// Reads the hub's JSON answer; malformed proofs are the hub misbehaving.
    pub fn from_json(a: &Value) -> Result<HubAccount, WalletError> {
        let amount = |k: &str| a[k].as_str().and_then(|s| s.parse::<u128>().ok()).map(Amount);
        let proof = |k: &str| a.get(k).filter(|v| !v.is_null());
        Ok(HubAccount {
            epoch: a["epoch"].as_u64().unwrap_or(0),
            latest_credit: proof("latestCredit").map(|c| parse(c, "latestCredit")).transpose()?,
            latest_debit: proof("latestDebit").map(|d| parse(d, "latestDebit")).transpose()?,
            incoming_locks: a
                .get("locks")
                .and_then(|l| l.get("incoming"))
                .map(|l| parse(l, "locks.incoming"))
                .transpose()?,
            outgoing_scalars: outgoing_scalars(a)?,
            cancellable_locks: cancellable_locks(a)?,
            debit_nonce: a["debitNonce"].as_u64().unwrap_or(0),
            cumulative_debit: amount("cumulativeDebit"),
            credit_nonce: a["creditNonce"].as_u64().unwrap_or(0),
            cumulative_credit: amount("cumulativeCredit"),
            deposited: amount("deposited"),
            confirmed_block: a["confirmedBlock"].as_u64().unwrap_or(0),
            balance: amount("balance"),
        })
    }
}

/// The ids of the outgoing locks the hub marks `cancellable` (`locks.outgoing`).
fn cancellable_locks(a: &Value) -> Result<Vec<B256>, WalletError> {
    let Some(list) = a.get("locks").and_then(|l| l.get("outgoing")).and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in list.iter().filter(|e| e["cancellable"] == Value::Bool(true)) {
        let lock: infhub_core::point_lock::Lock = parse(&entry["lock"], "locks.outgoing.lock")?;
        out.push(lock.lock_id);
    }
    Ok(out)
}

/// The learned scalars in the hub's list of this user's outgoing locks (`locks.outgoing`).
fn outgoing_scalars(a: &Value) -> Result<Vec<(B256, infhub_core::point_lock::Scalar)>, WalletError> {
    let Some(list) = a.get("locks").and_then(|l| l.get("outgoing")).and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in list {
        if entry["scalar"].is_null() {
            continue;
        }
        let lock: infhub_core::point_lock::Lock = parse(&entry["lock"], "locks.outgoing.lock")?;
        out.push((lock.lock_id, parse(&entry["scalar"], "locks.outgoing.scalar")?));
    }
    Ok(out)
}

/// A lock of the hub's this wallet can open, as it claims it on chain (see
/// [`WalletCore::lock_claims`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockClaim {
    /// The newest credit, which carries the lock.
    pub credit: SignedCredit,
    /// The lock.
    pub lock: infhub_core::point_lock::Lock,
    /// The scalar that opens it.
    pub scalar: infhub_core::point_lock::Scalar,
    /// Its path to `credit.locksRoot`.
    pub path: infhub_core::merkle::MerklePath,
}

/// What the hub answered to a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentAnswer {
    /// Applied: the hub's receipt.
    Applied(SignedReceipt),
    /// Refused for a reason of state and refunded (final): the hub's credit of the amount back.
    Refunded {
        /// The rule's code.
        code: String,
        /// The hub's message.
        message: String,
        /// The refund.
        refund: SignedCredit,
    },
    /// Refused without a refund: the debit may still be charged.
    Refused {
        /// The rule's code.
        code: String,
        /// The hub's message.
        message: String,
    },
    /// No answer (lost, or the hub unreachable).
    Unreachable,
}

impl PaymentAnswer {
    /// A refusal saying the debit is out of step with the hub: learn what the hub holds signed
    /// by this key ([`WalletCore::check_hub`]) before judging it.
    pub fn needs_hub_check(&self) -> bool {
        matches!(self, PaymentAnswer::Refused { code, .. }
            if matches!(code.as_str(), "nonce_must_increase" | "nonce_must_be_next" | "cumulative_mismatch"))
    }
}

/// How a payment's answer settled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Applied.
    Applied,
    /// Refused and refunded (final).
    Refunded {
        /// The rule the payment broke.
        code: String,
        /// The hub's message.
        message: String,
    },
}

/// What the channel's defence calls for now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defence {
    /// Submit this credit: the contract holds a lower credit total while the channel closes.
    pub submit_credit: Option<SignedCredit>,
    /// The challenge period is over: settle.
    pub settle: bool,
}

/// The user's end of the channel.
#[derive(Debug)]
pub struct WalletCore {
    /// What the wallet keeps (its store's `state.json`).
    pub state: WalletState,
    key: PrivateKey,
    journal: Vec<JournalEntry>,
}

impl WalletCore {
    /// The core of the wallet with `state`, signing with `key` (the state's account).
    pub fn new(state: WalletState, key: PrivateKey) -> Result<WalletCore, WalletError> {
        if state.user != key.address() {
            return Err(WalletError::KeyMismatch { key: key.address().to_string(), store: state.user.to_string() });
        }
        Ok(WalletCore { state, key, journal: Vec::new() })
    }

    /// The account.
    pub fn user(&self) -> Address {
        self.state.user
    }

    /// The signing key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The signing domain.
    pub fn domain(&self) -> Domain {
        Domain { chain_id: self.state.hub.chain_id, verifying_contract: self.state.hub.hub_contract }
    }

    /// The channel machine's parameters at the user's end.
    pub fn params(&self) -> ChannelParams {
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

    /// What the wallet recorded since the last call, for its journal.
    pub fn take_journal(&mut self) -> Vec<JournalEntry> {
        std::mem::take(&mut self.journal)
    }

    fn record(&mut self, entry: JournalEntry) {
        self.journal.push(entry);
    }

    fn step(&mut self, input: Input) -> Result<Vec<Effect>, WalletError> {
        let ch = self.channel()?.clone();
        let (next, effects) = channel::step(&ch, &self.params(), input)?;
        self.state.channel = Some(next);
        Ok(effects)
    }

    // ------------------------------------------------------------------ the chain

    /// The epochs whose settlement [`WalletCore::apply_chain_view`] needs to know the payment
    /// of (from their `Settled` logs), for the contract's record `view`.
    pub fn settlements_needed(&self, view: &ChannelView) -> Vec<u64> {
        let Some(ch) = &self.state.channel else {
            // Opened and settled before this wallet first looked.
            return if view.status == status::SETTLED { vec![view.epoch] } else { Vec::new() };
        };
        let mut epochs: Vec<u64> =
            (ch.epoch..view.epoch).filter(|e| *e > ch.epoch || ch.status != Status::Settled).collect();
        let settled_here = view.epoch > ch.epoch || ch.status != Status::Settled;
        if view.status == status::SETTLED && settled_here {
            epochs.push(view.epoch);
        }
        epochs
    }

    /// Brings the channel up to the contract's record `view` at the confirmed block
    /// `confirmed`; `paid` holds what each settlement in [`WalletCore::settlements_needed`]
    /// paid. Returns the channel machine's effects (disputes to raise, settlement due, settled).
    pub fn apply_chain_view(
        &mut self,
        view: &ChannelView,
        confirmed: u64,
        paid: &BTreeMap<u64, Amount>,
    ) -> Result<Vec<Effect>, WalletError> {
        let paid_in = |epoch: u64| {
            paid.get(&epoch).copied().ok_or_else(|| WalletError::Chain {
                url: String::new(),
                reason: format!("the channel is settled but no Settled log for epoch {epoch} was found"),
            })
        };
        let user = self.user();
        let mut effects = Vec::new();
        if self.state.channel.is_none() {
            if view.status == status::NONE {
                return Ok(effects);
            }
            self.state.channel = Some(ChannelState::opened(user, view.epoch));
            self.record(JournalEntry::ChannelOpened { epoch: view.epoch });
        }
        let before = self.channel()?.clone();
        // Epochs this wallet missed entirely (settled and reopened while it was away).
        while view.epoch > self.channel()?.epoch {
            let ch = self.channel()?.clone();
            if ch.status == Status::Open {
                effects.extend(self.step(Input::ChainExitStarted { epoch: ch.epoch, settle_block: 0 })?);
            }
            if ch.status != Status::Settled {
                effects.extend(self.step(Input::ChainSettled { epoch: ch.epoch, paid: paid_in(ch.epoch)? })?);
            }
            effects.extend(self.step(Input::ChainOpened { epoch: ch.epoch + 1 })?);
        }
        let epoch = view.epoch;
        match view.status {
            status::OPEN | status::CLOSING => {
                effects.extend(self.step(Input::ChainDeposited { epoch, total_deposited: view.deposited })?);
                self.apply_withdrawn(view)?;
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
                effects.extend(self.step(Input::ChainSettled { epoch, paid: paid_in(epoch)? })?);
            }
            _ => {}
        }
        if confirmed > self.channel()?.block {
            effects.extend(self.step(Input::Block(confirmed))?);
        }
        let after = self.channel()?.clone();
        if after.deposited > before.deposited && after.epoch == before.epoch {
            self.record(JournalEntry::Deposited { total: after.deposited });
        }
        if after.withdrawn > before.withdrawn && after.epoch == before.epoch {
            self.record(JournalEntry::Withdrawn { total: after.withdrawn });
            self.state.withdrawal = None;
        }
        if let (Status::Open, Status::Closing { settle_block }) = (before.status, after.status) {
            self.record(JournalEntry::ExitStarted { settle_block });
        }
        for e in &effects {
            match e {
                Effect::Settled { paid, expected } => {
                    self.record(JournalEntry::Settled { paid: *paid, expected: *expected });
                    self.state.withdrawal = None;
                }
                Effect::WithdrawalHoldReleased(_) => self.state.withdrawal = None,
                _ => {}
            }
        }
        Ok(effects)
    }

    fn apply_withdrawn(&mut self, view: &ChannelView) -> Result<(), WalletError> {
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

    // ------------------------------------------------------------------ payments

    /// Signs a payment of `amount` to `recipient` with payment id `id`, after the channel
    /// machine accepts it (balance, nonce, running total), and keeps it as pending: it must be
    /// stored before it is sent (write-ahead).
    pub fn sign_payment(
        &mut self,
        kind: PaymentKind,
        recipient: Address,
        amount: Amount,
        id: B256,
    ) -> Result<SignedDebit, WalletError> {
        self.require_nothing_pending()?;
        let ch = self.channel()?.clone();
        let debit = ch.next_debit(kind, recipient, amount, id)?;
        let signed = Signed::new(debit, &self.domain(), &self.key);
        // Checks the balance and every other rule before anything leaves the wallet.
        channel::step(&ch, &self.params(), Input::Debit(signed))?;
        self.state.pending_debit = Some(signed);
        self.record(JournalEntry::DebitSigned { debit: signed });
        Ok(signed)
    }

    /// Settles a payment by the hub's answer. A receipt applies it; a refund settles it as
    /// refused for good; any other refusal leaves the debit pending unless it can no longer be
    /// charged (`PaymentHeld`); no answer leaves it pending (`PaymentUncertain`). For a refusal
    /// that [`PaymentAnswer::needs_hub_check`], check the hub first.
    pub fn settle_answer(&mut self, debit: SignedDebit, answer: PaymentAnswer) -> Result<Resolution, WalletError> {
        let payment_id = debit.message.payment_id;
        match answer {
            PaymentAnswer::Applied(receipt) => {
                self.commit_payment(debit, receipt)?;
                Ok(Resolution::Applied)
            }
            PaymentAnswer::Refunded { code, message, refund } => {
                self.take_refund(debit, &code, refund)?;
                Ok(Resolution::Refunded { code, message })
            }
            PaymentAnswer::Refused { code, message } => {
                if self.debit_is_spent(&debit)? {
                    let ch = self.channel()?;
                    if debit.message.epoch == ch.epoch && ch.cumulative_debit() < debit.message.cumulative_debit {
                        let excess = debit.message.cumulative_debit.0 - ch.cumulative_debit().0;
                        self.record(JournalEntry::Disagreement {
                            detail: format!(
                                "payment {payment_id} (debit #{}) was never applied: another debit of this key took its nonce; \
                                 it stays signed, and submitted on chain it would charge {} INF more",
                                debit.message.nonce,
                                format_inf(excess)
                            ),
                        });
                    }
                    self.state.pending_debit = None;
                    self.record(JournalEntry::PaymentRefused { payment_id, code: code.clone(), refund: None });
                    return Err(WalletError::HubRefused { code, message });
                }
                self.record(JournalEntry::PaymentHeld { payment_id, code: code.clone() });
                Err(WalletError::PaymentHeld { payment_id: payment_id.to_string(), code, message })
            }
            PaymentAnswer::Unreachable => Err(WalletError::PaymentUncertain { payment_id: payment_id.to_string() }),
        }
    }

    /// Whether the hub can never apply `debit`: its epoch is over, or this wallet holds a debit
    /// of this key at least as new (the hub applies only the next nonce). Then it is no payment
    /// any more, and waiting for it would block the wallet for good. If the debit that took its
    /// nonce has a lower total (signed elsewhere with this key, e.g. on another device), the
    /// unapplied one still carries this key's signature: submitted on chain it would charge the
    /// difference, so the wallet records that as a disagreement to show the user.
    pub fn debit_is_spent(&self, debit: &SignedDebit) -> Result<bool, WalletError> {
        let ch = self.channel()?;
        let d = &debit.message;
        Ok(d.epoch != ch.epoch || ch.debit_nonce() >= d.nonce)
    }

    /// Whether the hub's answer can only be judged after a sync: a refusal out of step with the
    /// hub ([`PaymentAnswer::needs_hub_check`]), or a refund that carries a book of the hub's
    /// locks this wallet has not seen (a lock added since its last sync).
    pub fn answer_needs_hub_check(&self, answer: &PaymentAnswer) -> Result<bool, WalletError> {
        Ok(match answer {
            PaymentAnswer::Refunded { refund, .. } => self.refund_needs_hub_check(refund)?,
            other => other.needs_hub_check(),
        })
    }

    fn refund_needs_hub_check(&self, refund: &SignedCredit) -> Result<bool, WalletError> {
        let ch = self.channel()?;
        let book = (refund.message.locked_amount, refund.message.locks_root);
        Ok(refund.message.nonce > ch.credit_nonce() && book != ch.signed_credit_locks())
    }

    /// Records a refused payment's refund: the debit is spent and its amount came back as the
    /// hub's credit (signature and amount checked by the channel machine).
    fn take_refund(&mut self, debit: SignedDebit, code: &str, refund: SignedCredit) -> Result<(), WalletError> {
        let misbehaved = |what: String| WalletError::HubMisbehaved(format!("the refund of a refused payment {what}"));
        refund
            .verify(&self.domain(), self.state.hub.hub)
            .map_err(|e| misbehaved(format!("is not signed by the hub ({})", e.code())))?;
        let ch = self.channel()?.clone();
        if self.refund_needs_hub_check(&refund)? {
            // The refund carries the hub's locks to this user as they are now, which this
            // wallet has not seen yet: it cannot check the root until a sync brings the hub's
            // list. The payment stays pending; after the sync the refund is covered.
            let payment_id = debit.message.payment_id.to_string();
            return Err(WalletError::PaymentUncertain { payment_id });
        }
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
        self.record(JournalEntry::PaymentRefused { payment_id, code: code.to_string(), refund: Some(refund) });
        Ok(())
    }

    fn require_nothing_pending(&self) -> Result<(), WalletError> {
        if self.state.pending_debit.is_some() || self.state.pending_lock.is_some() {
            return Err(WalletError::InvalidInput(
                "a payment is pending; it is settled before another is signed".into(),
            ));
        }
        Ok(())
    }

    /// Checks that `receipt` is the hub's and names `debit`.
    fn check_receipt(&self, debit: &SignedDebit, receipt: &SignedReceipt) -> Result<(), WalletError> {
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
        Ok(())
    }

    /// Checks the hub's receipt for `debit` and records the payment as applied.
    fn commit_payment(&mut self, debit: SignedDebit, receipt: SignedReceipt) -> Result<(), WalletError> {
        self.check_receipt(&debit, &receipt)?;
        let d = &debit.message;
        if self.channel()?.debit_nonce() < d.nonce {
            self.step(Input::Debit(debit))?;
        }
        self.state.pending_debit = None;
        self.record(JournalEntry::PaymentApplied { debit, receipt });
        Ok(())
    }

    /// Takes a hub-signed credit if it is newer and valid. Returns whether it was taken. A
    /// credit whose pending-lock book differs from the one this wallet holds (a lock the hub
    /// added or settled since, spec §5.17a) is not taken here: the wallet cannot check its root
    /// without the hub's list of locks, so the next sync takes it ([`WalletCore::check_hub`]).
    pub fn take_credit(
        &mut self,
        credit: SignedCredit,
        from: Option<Address>,
        amount: Option<Amount>,
    ) -> Result<bool, WalletError> {
        let ch = self.channel()?;
        if credit.message.nonce <= ch.credit_nonce() {
            return Ok(false);
        }
        if (credit.message.locked_amount, credit.message.locks_root) != ch.signed_credit_locks() {
            return Ok(false);
        }
        self.step(Input::Credit(credit.clone())).map_err(|e| {
            WalletError::HubMisbehaved(format!("a credit from the hub was refused: {e} ({})", e.code()))
        })?;
        self.record(JournalEntry::Credit { credit, from, amount });
        Ok(true)
    }

    /// Takes a newer hub-signed credit that changed the hub's locks to this user, with the
    /// locks the hub lists (spec §5.17a, catching up): refused unless the list opens the
    /// credit's root and no lock owed before its expiry vanished without being paid.
    pub fn take_credit_with_locks(
        &mut self,
        credit: SignedCredit,
        locks: Vec<infhub_core::point_lock::Lock>,
    ) -> Result<bool, WalletError> {
        if credit.message.nonce <= self.channel()?.credit_nonce() {
            return Ok(false);
        }
        self.step(Input::CreditResync { credit: credit.clone(), locks }).map_err(|e| {
            WalletError::HubMisbehaved(format!("a credit with locks from the hub was refused: {e} ({})", e.code()))
        })?;
        self.record(JournalEntry::Credit { credit, from: None, amount: None });
        Ok(true)
    }

    /// What this wallet knows to check its leaf of a checkpoint at ledger position `ledger_seq`
    /// with (spec §5.16): the chain's record of the channel at the checkpoint's block (`view`),
    /// the newest credit of that epoch it holds of nonce at most `ledger_seq` (credit nonces are
    /// ledger positions, so the checkpoint had to count it), and the highest debit total it ever
    /// signed that epoch.
    pub fn checkpoint_facts(&self, view: &ChannelView, journal: &[JournalLine], ledger_seq: u64) -> ChannelFacts {
        let epoch = view.epoch;
        let mut credit_floor = Amount::ZERO;
        let mut debit_ceiling = Amount::ZERO;
        let mut debit = |d: &SignedDebit| {
            if d.message.epoch == epoch {
                debit_ceiling = debit_ceiling.max(d.message.cumulative_debit);
            }
        };
        for line in journal {
            match &line.entry {
                JournalEntry::DebitSigned { debit: d }
                | JournalEntry::PaymentApplied { debit: d, .. }
                | JournalEntry::DebitLearned { debit: d } => debit(d),
                JournalEntry::Credit { credit: c, .. } | JournalEntry::PaymentRefused { refund: Some(c), .. }
                    if c.message.epoch == epoch && c.message.nonce <= ledger_seq =>
                {
                    credit_floor = credit_floor.max(c.message.cumulative_credit);
                }
                _ => {}
            }
        }
        for d in self.state.pending_debit.iter().chain(self.state.channel.as_ref().and_then(|c| c.debit.as_ref())) {
            debit(d);
        }
        ChannelFacts {
            epoch,
            deposited: view.deposited,
            withdrawn: view.withdrawn,
            funds: view.funds,
            credit_floor,
            debit_ceiling,
        }
    }

    /// A hub-signed credit this wallet holds that contradicts `leaf` of a checkpoint at ledger
    /// position `ledger_seq` (spec §5.16): the same nonce with another total; or a higher total
    /// with a lower nonce, or with a nonce at most `ledger_seq`. What a complaint on chain needs.
    pub fn contradicting_credit(&self, journal: &[JournalLine], leaf: &Leaf, ledger_seq: u64) -> Option<SignedCredit> {
        let held = journal.iter().filter_map(|line| match &line.entry {
            JournalEntry::Credit { credit, .. } | JournalEntry::PaymentRefused { refund: Some(credit), .. } => {
                Some(credit)
            }
            _ => None,
        });
        let newest = self.state.channel.as_ref().and_then(|c| c.credit.as_ref());
        held.chain(newest).find(|c| credit_contradicts_leaf(&c.message, leaf, ledger_seq)).cloned()
    }

    /// Compares the hub's account with this wallet's proofs: takes the hub's newest credit,
    /// learns a newer debit this key signed elsewhere (another device, or an answer lost before
    /// this wallet stored it), and names every disagreement.
    pub fn check_hub(&mut self, a: &HubAccount) -> Result<HubCheck, WalletError> {
        let mut check = HubCheck::default();
        let ch = self.channel()?.clone();
        if a.epoch != ch.epoch {
            check.disagreements.push(format!("the hub is at epoch {}, the contract at {}", a.epoch, ch.epoch));
        }
        if a.epoch == ch.epoch {
            if let Some(c) = a.latest_credit.clone() {
                let book_changed = (c.message.locked_amount, c.message.locks_root) != ch.signed_credit_locks();
                let taken = match &a.incoming_locks {
                    Some(locks) if book_changed => self.take_credit_with_locks(c, locks.clone()),
                    _ => self.take_credit(c, None, None),
                };
                if let Err(e) = taken {
                    check.disagreements.push(e.to_string());
                }
            }
            if let Some(d) = a.latest_debit {
                self.learn_debit(d, &mut check)?;
            }
        }
        let ch = self.channel()?.clone();
        if a.epoch == ch.epoch {
            if a.debit_nonce != ch.debit_nonce() || a.cumulative_debit != Some(ch.cumulative_debit()) {
                check.disagreements.push(format!(
                    "the hub records debits #{} totalling {:?}, this wallet #{} totalling {}",
                    a.debit_nonce,
                    a.cumulative_debit.map(|x| format_inf(x.0)),
                    ch.debit_nonce(),
                    format_inf(ch.cumulative_debit().0)
                ));
            }
            if a.credit_nonce != ch.credit_nonce() || a.cumulative_credit != Some(ch.cumulative_credit()) {
                check.disagreements.push(format!(
                    "the hub records credits #{} totalling {:?}, this wallet holds #{} totalling {}",
                    a.credit_nonce,
                    a.cumulative_credit.map(|x| format_inf(x.0)),
                    ch.credit_nonce(),
                    format_inf(ch.cumulative_credit().0)
                ));
            }
            match a.deposited {
                Some(d) if d < ch.deposited => check.notes.push(format!(
                    "the hub has not confirmed {} INF of your deposits yet",
                    format_inf(ch.deposited.0 - d.0)
                )),
                Some(d) if d > ch.deposited && a.confirmed_block <= ch.block => check.disagreements.push(format!(
                    "the hub counts {} INF deposited, the contract {}",
                    format_inf(d.0),
                    format_inf(ch.deposited.0)
                )),
                _ => {}
            }
        }
        check.hub_balance = a.balance;
        check.agrees = check.disagreements.is_empty();
        for d in &check.disagreements {
            self.record(JournalEntry::Disagreement { detail: d.clone() });
        }
        Ok(check)
    }

    fn learn_debit(&mut self, d: SignedDebit, check: &mut HubCheck) -> Result<(), WalletError> {
        if d.message.nonce <= self.channel()?.debit_nonce() {
            return Ok(());
        }
        // Valid only with this key's signature.
        if d.verify(&self.domain(), self.user()).is_err() {
            check.disagreements.push(format!("the hub claims debit #{} that this key did not sign", d.message.nonce));
            return Ok(());
        }
        match self.step(Input::Debit(d)) {
            Ok(_) => {
                self.record(JournalEntry::DebitLearned { debit: d });
                check.notes.push(format!(
                    "learned debit #{} ({} INF) signed by this key elsewhere",
                    d.message.nonce,
                    format_inf(d.message.amount.0)
                ));
            }
            Err(e) => check.disagreements.push(format!("the hub's newest debit does not follow yours: {e}")),
        }
        Ok(())
    }

    // ------------------------------------------------------------------ point locks

    /// Signs the lock debit for `change` (spec §5.17a; a locked transfer to `payee` when
    /// given), after the channel machine accepts it, and keeps it as pending (write-ahead).
    pub fn sign_lock_debit(&mut self, change: LockChange, payee: Option<Address>) -> Result<SignedDebit, WalletError> {
        self.require_nothing_pending()?;
        let ch = self.channel()?.clone();
        let debit = Signed::new(ch.next_lock_debit(&self.params(), &change)?, &self.domain(), &self.key);
        channel::step(&ch, &self.params(), Input::DebitLock { debit, change })?;
        self.state.pending_lock = Some(PendingLock { debit, change, payee });
        self.record(JournalEntry::DebitSigned { debit });
        Ok(debit)
    }

    /// Settles the pending lock debit by the hub's answer: a receipt applies it; a named
    /// refusal ends it (a lock debit moves no running total, so nothing is refunded: the next
    /// debit takes its nonce and it can never apply); no answer leaves it pending.
    pub fn settle_lock_answer(&mut self, answer: PaymentAnswer) -> Result<(), WalletError> {
        let Some(p) = self.state.pending_lock else { return Ok(()) };
        let payment_id = p.debit.message.payment_id;
        match answer {
            PaymentAnswer::Applied(receipt) => {
                self.check_receipt(&p.debit, &receipt)?;
                let ch = self.channel()?;
                if ch.status != Status::Open || ch.epoch != p.debit.message.epoch {
                    // The channel closed meanwhile: the hub holds the debit and its receipt is
                    // journaled; what it charges is settled on chain (spec §5.11a).
                    self.state.pending_lock = None;
                    self.record(JournalEntry::PaymentApplied { debit: p.debit, receipt });
                    return Ok(());
                }
                if ch.debit_nonce() < p.debit.message.nonce {
                    self.step(Input::DebitLock { debit: p.debit, change: p.change })?;
                }
                self.state.pending_lock = None;
                self.record(JournalEntry::PaymentApplied { debit: p.debit, receipt });
                Ok(())
            }
            PaymentAnswer::Refused { code, message } | PaymentAnswer::Refunded { code, message, .. } => {
                self.state.pending_lock = None;
                self.record(JournalEntry::PaymentRefused { payment_id, code: code.clone(), refund: None });
                Err(WalletError::HubRefused { code, message })
            }
            PaymentAnswer::Unreachable => Err(WalletError::PaymentUncertain { payment_id: payment_id.to_string() }),
        }
    }

    /// The settlement this wallet owes next: one of its pending locks whose scalar the hub
    /// learned (`a.outgoing_scalars`) and that the scalar opens (a wrong one is ignored).
    pub fn lock_to_settle(&self, a: &HubAccount) -> Result<Option<LockChange>, WalletError> {
        let ch = self.channel()?;
        Ok(a.outgoing_scalars.iter().find_map(|(lock_id, scalar)| {
            let lock = ch.debit_locks.get(lock_id)?;
            (scalar.point().address() == lock.point)
                .then_some(LockChange::Settle { lock_id: *lock_id, scalar: *scalar })
        }))
    }

    /// A pending lock of this wallet's that expired with no scalar learned (its payee never
    /// claimed it): dropped by its next lock debit, which gives the amount back to its balance
    /// (the hub refuses with `lock_revealed` if the point opened after all, and the scalar then
    /// comes with the account).
    pub fn lock_to_drop(&self, a: &HubAccount) -> Result<Option<LockChange>, WalletError> {
        let ch = self.channel()?;
        Ok(ch
            .debit_locks
            .iter()
            .find(|l| l.expiry_block < ch.block && !a.outgoing_scalars.iter().any(|(id, _)| *id == l.lock_id))
            .map(|l| LockChange::Drop { lock_id: l.lock_id }))
    }

    /// The hub's pending locks to this wallet that one of its invoices opens (the lock id is
    /// the invoice id, the scalar derived from the key), not expired at the channel's block:
    /// each one's id and scalar, to reveal to the hub and be paid.
    pub fn locks_to_claim(&self) -> Result<Vec<(B256, infhub_core::point_lock::Scalar)>, WalletError> {
        let ch = self.channel()?;
        Ok(ch
            .credit_locks
            .iter()
            .filter(|l| l.expiry_block >= ch.block)
            .filter_map(|l| {
                let scalar = infhub_core::invoice::invoice_scalar(&self.key, l.lock_id);
                (scalar.point().address() == l.point).then_some((l.lock_id, scalar))
            })
            .collect())
    }

    /// The hub's pending locks to this wallet that its invoices open, each with the newest
    /// credit that carries it and its path to that credit's root: what the wallet registers
    /// on chain (and whose scalar it reveals) while its channel closes, so the hub pays them
    /// even if it never settled them off chain (spec §5.11a).
    pub fn lock_claims(&self) -> Result<Vec<LockClaim>, WalletError> {
        let ch = self.channel()?;
        let Some(credit) = ch.credit.clone() else { return Ok(Vec::new()) };
        let domain = self.domain();
        if ch.credit_locks.is_empty() || ch.credit_locks.root(&domain).0 != credit.message.locks_root {
            return Ok(Vec::new());
        }
        let tree = infhub_core::merkle::MerkleTree::new(ch.credit_locks.iter().map(|l| l.digest(&domain)).collect());
        Ok(ch
            .credit_locks
            .iter()
            .filter_map(|lock| {
                let scalar = infhub_core::invoice::invoice_scalar(&self.key, lock.lock_id);
                let path = tree.path(lock.digest(&domain))?;
                (scalar.point().address() == lock.point).then(|| LockClaim {
                    credit: credit.clone(),
                    lock: *lock,
                    scalar,
                    path,
                })
            })
            .collect())
    }

    /// Takes the hub's credit that settles its lock `lock_id` to this wallet with `scalar`.
    /// Returns whether it was taken now: when this wallet's book of the hub's locks is behind
    /// the hub's (a lock added since its last sync), the credit's root cannot be checked here,
    /// and the next sync takes it with the hub's list of locks, which must prove it.
    pub fn take_lock_settlement(
        &mut self,
        credit: SignedCredit,
        lock_id: B256,
        scalar: infhub_core::point_lock::Scalar,
    ) -> Result<bool, WalletError> {
        if credit.message.nonce <= self.channel()?.credit_nonce() {
            return Ok(false); // a sync took it already
        }
        let change = LockChange::Settle { lock_id, scalar };
        match self.step(Input::CreditLock { credit: credit.clone(), change }) {
            Ok(_) => {}
            Err(WalletError::Refused { code, .. }) if code == infhub_core::Error::LocksRootMismatch.code() => {
                return Ok(false);
            }
            Err(e) => {
                return Err(WalletError::HubMisbehaved(format!(
                    "the hub's settlement of lock {lock_id} was refused: {e} ({})",
                    e.code()
                )))
            }
        }
        self.record(JournalEntry::Credit { credit, from: None, amount: None });
        Ok(true)
    }

    // ------------------------------------------------------------------ withdrawals

    /// Signs a cooperative withdrawal of `amount` (None: the whole balance), valid for
    /// `valid_blocks` from the confirmed block, after the channel machine accepts it.
    pub fn sign_withdrawal(
        &self,
        amount: Option<Amount>,
        valid_blocks: u64,
    ) -> Result<(Withdrawal, Signature), WalletError> {
        let ch = self.channel()?.clone();
        let amount = match amount {
            Some(a) => a,
            None => ch.balance()?,
        };
        if amount.is_zero() {
            return Err(infhub_core::Error::AmountMustNotBeZero.into());
        }
        let w: Withdrawal = ch.next_withdrawal(amount, ch.block + valid_blocks)?;
        let user_signature = Signed::new(w, &self.domain(), &self.key).signature;
        channel::step(
            &ch,
            &self.params(),
            Input::WithdrawalRequest { withdrawal: w, user_signature, block: ch.block },
        )?;
        Ok((w, user_signature))
    }

    /// Takes the hub's co-signature of the withdrawal this wallet signed (`echoed` is the
    /// withdrawal the hub says it signed): checks it and holds the withdrawal until it
    /// executes. Store the state before submitting it.
    pub fn take_cosigned(
        &mut self,
        w: Withdrawal,
        user_signature: Signature,
        echoed: Withdrawal,
        hub_signature: Signature,
    ) -> Result<CoSignedWithdrawal, WalletError> {
        if echoed != w {
            return Err(WalletError::HubMisbehaved("the hub co-signed a different withdrawal".into()));
        }
        Signed { message: w, signature: hub_signature }
            .verify(&self.domain(), self.state.hub.hub)
            .map_err(|_| WalletError::HubMisbehaved("the withdrawal's co-signature is not the hub's".into()))?;
        let block = self.channel()?.block;
        self.step(Input::WithdrawalRequest { withdrawal: w, user_signature, block })?;
        let cosigned = CoSignedWithdrawal { withdrawal: w, user_signature, hub_signature };
        self.state.withdrawal = Some(cosigned);
        self.record(JournalEntry::WithdrawalCoSigned { withdrawal: cosigned });
        Ok(cosigned)
    }

    /// A stored co-signed withdrawal that can still execute at `head`.
    pub fn resumable_withdrawal(&self, head: u64) -> Result<Option<CoSignedWithdrawal>, WalletError> {
        let Some(c) = self.state.withdrawal else { return Ok(None) };
        let ch = self.channel()?;
        let held = ch.withdrawal_hold == Some(c.withdrawal);
        Ok((held && head < c.withdrawal.expiry_block && ch.withdrawn < c.withdrawal.cumulative_withdrawn).then_some(c))
    }

    /// `withdraw` call data of a co-signed withdrawal.
    pub fn withdraw_call(c: &CoSignedWithdrawal) -> Vec<u8> {
        IInfHub::withdrawCall {
            w: withdrawal_arg(&c.withdrawal),
            userSignature: Bytes::copy_from_slice(&c.user_signature.0),
            hubSignature: Bytes::copy_from_slice(&c.hub_signature.0),
        }
        .abi_encode()
    }

    // ------------------------------------------------------------------ deposits, exit, defence

    /// `approve` call data letting the hub contract pull `amount` of the token.
    pub fn approve_call(&self, amount: U256) -> Vec<u8> {
        IErc20::approveCall { spender: self.state.hub.hub_contract, amount }.abi_encode()
    }

    /// `deposit` call data of `amount` into this channel.
    pub fn deposit_call(&self, amount: Amount) -> Vec<u8> {
        IInfHub::depositCall { user: self.user(), amount: U256::from(amount.0) }.abi_encode()
    }

    /// The transactions of a unilateral exit, in order: `startExit` with the newest hub-signed
    /// credit this wallet holds, then this wallet's own newest debit (so the settlement pays
    /// exactly the off-chain balance even if the hub never answers; decision D16).
    pub fn exit_calls(&self) -> Result<Vec<(&'static str, Vec<u8>)>, WalletError> {
        let ch = self.channel()?;
        let (credit, sig) = match &ch.credit {
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
                Bytes::new(),
            ),
        };
        let mut calls = vec![("exit", IInfHub::startExitCall { credit, hubSignature: sig }.abi_encode())];
        if let Some(d) = ch.debit {
            calls.push(("own debit", submit_debit_call(&d).abi_encode()));
        }
        Ok(calls)
    }

    /// What the defence of a closing channel calls for, by the contract's record at the head
    /// `view` (head block `head`): the newest credit if the contract holds a lower total
    /// (totals decide, spec §5.10; a higher nonce with a lower total is no defence) while the
    /// period is open, and a settlement once it is over.
    pub fn defence(&self, view: &ChannelView, head: u64) -> Result<Defence, WalletError> {
        let ch = self.channel()?;
        let Status::Closing { settle_block } = ch.status else { return Ok(Defence::default()) };
        let closing = view.status == status::CLOSING;
        let submit_credit = ch
            .credit
            .clone()
            .filter(|c| closing && view.credit_total < c.message.cumulative_credit && head < settle_block);
        Ok(Defence { submit_credit, settle: closing && head >= settle_block })
    }

    /// `submitCredit` call data.
    pub fn submit_credit_call(c: &SignedCredit) -> Vec<u8> {
        submit_credit_call(c).abi_encode()
    }

    /// `settle` call data of this channel.
    pub fn settle_call(&self) -> Vec<u8> {
        IInfHub::settleCall { user: self.user() }.abi_encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HubInfo, STATE_VERSION};
    use infhub_core::messages::HubSigned;
    use infhub_core::point_lock::{Lock, Scalar};
    use infhub_core::Receipt;

    fn key(seed: u64) -> PrivateKey {
        let mut b = [0u8; 32];
        b[24..].copy_from_slice(&seed.to_be_bytes());
        PrivateKey::from_bytes(b).expect("key")
    }

    struct Fixture {
        hub: PrivateKey,
        core: WalletCore,
    }

    /// A wallet whose channel is open with 100 deposited, at confirmed block 10.
    fn fixture() -> Fixture {
        let (hub, user) = (key(1), key(2));
        let state = WalletState {
            version: STATE_VERSION,
            user: user.address(),
            hub: HubInfo {
                hub_url: "http://hub".into(),
                rpc_url: "http://chain".into(),
                chain_id: 5,
                hub_contract: Address::repeat_byte(0x33),
                hub: hub.address(),
                token: Address::repeat_byte(0x44),
                confirmations: 1,
                max_withdrawal_expiry_blocks: 50,
            },
            channel: None,
            pending_debit: None,
            withdrawal: None,
            since_block: 1,
            towers: Vec::new(),
            pending_lock: None,
            forwarded_invoice: None,
            forwarded_route: None,
        };
        let mut core = WalletCore::new(state, user).expect("core");
        let view = ChannelView {
            status: status::OPEN,
            epoch: 1,
            settle_block: 0,
            deposited: Amount(100),
            withdrawn: Amount::ZERO,
            debit_nonce: 0,
            debit_total: Amount::ZERO,
            credit_nonce: 0,
            credit_total: Amount::ZERO,
            funds: Amount(100),
            last_deposit_block: 1,
        };
        core.apply_chain_view(&view, 10, &BTreeMap::new()).expect("open");
        core.take_journal();
        Fixture { hub, core }
    }

    fn receipt(f: &Fixture, d: &SignedDebit) -> SignedReceipt {
        let m = d.message;
        let domain = f.core.domain();
        let r = Receipt {
            payer: m.user,
            epoch: m.epoch,
            debit_nonce: m.nonce,
            payment_id: m.payment_id,
            debit_digest: m.digest(&domain),
        };
        HubSigned::new(r, &domain, &f.hub)
    }

    #[test]
    fn a_payment_is_applied_only_by_the_hubs_receipt_for_that_debit() {
        let mut f = fixture();
        let to = Address::repeat_byte(9);
        let d = f.core.sign_payment(PaymentKind::Internal, to, Amount(30), B256::repeat_byte(1)).expect("signed");
        assert_eq!(f.core.state.pending_debit, Some(d), "kept before it is sent");
        assert!(matches!(f.core.take_journal().as_slice(), [JournalEntry::DebitSigned { .. }]));
        // A receipt signed by someone else, or naming another debit, is the hub misbehaving.
        let mut forged = receipt(&f, &d);
        forged.signature = HubSigned::new(forged.message, &f.core.domain(), &key(7)).signature;
        let e = f.core.settle_answer(d, PaymentAnswer::Applied(forged)).expect_err("not the hub's");
        assert_eq!(e.code(), "hub_misbehaved");
        assert_eq!(f.core.state.pending_debit, Some(d), "still pending");
        let ok = f.core.settle_answer(d, PaymentAnswer::Applied(receipt(&f, &d))).expect("applied");
        assert_eq!(ok, Resolution::Applied);
        assert_eq!(f.core.state.pending_debit, None);
        assert_eq!(f.core.channel().expect("ch").balance(), Ok(Amount(70)));
    }

    #[test]
    fn a_refusal_holds_the_payment_until_a_debit_signed_elsewhere_takes_its_nonce() {
        let mut f = fixture();
        let to = Address::repeat_byte(9);
        let d = f.core.sign_payment(PaymentKind::Internal, to, Amount(60), B256::repeat_byte(1)).expect("signed");
        let refused = || PaymentAnswer::Refused { code: "nonce_must_increase".into(), message: "no".into() };
        let e = f.core.settle_answer(d, refused()).expect_err("held");
        assert_eq!(e.code(), "payment_held");
        assert_eq!(f.core.state.pending_debit, Some(d), "it may still apply: kept");
        // The same key signed another debit at that nonce elsewhere (40), which the hub applied.
        let ch = f.core.channel().expect("ch").clone();
        let other = ch.next_debit(PaymentKind::Internal, to, Amount(40), B256::repeat_byte(2)).expect("debit");
        let other = Signed::new(other, &f.core.domain(), f.core.key());
        let account = HubAccount {
            epoch: 1,
            latest_debit: Some(other),
            debit_nonce: 1,
            cumulative_debit: Some(Amount(40)),
            cumulative_credit: Some(Amount::ZERO),
            ..HubAccount::default()
        };
        let check = f.core.check_hub(&account).expect("checked");
        assert!(check.notes.iter().any(|n| n.contains("learned debit #1")), "{check:?}");
        f.core.take_journal();
        let e = f.core.settle_answer(d, refused()).expect_err("refused for good");
        assert_eq!(e.code(), "nonce_must_increase");
        assert_eq!(f.core.state.pending_debit, None, "it can never apply: the wallet pays on");
        let journal = f.core.take_journal();
        assert!(
            journal.iter().any(|j| matches!(j, JournalEntry::Disagreement { detail } if detail.contains(&format!("charge {} INF", format_inf(20))))),
            "the user is told what the unapplied signature could still charge: {journal:?}"
        );
    }

    /// A lock of 30 whose id is `id` repeated, expiring at `expiry_block`, and its scalar.
    fn test_lock(id: u8, expiry_block: u64) -> (Lock, Scalar) {
        let scalar = Scalar::new(U256::from(id)).expect("scalar");
        let point = scalar.point().address();
        (Lock { lock_id: B256::repeat_byte(id), amount: Amount(30), expiry_block, point }, scalar)
    }

    /// The payer's side of a point lock (spec §5.17b): the lock debit is pending until the hub's
    /// receipt (no answer keeps it; nothing else is signed over it), the lock is held from the
    /// balance, a scalar the hub lists that does not open the lock is ignored, the right one
    /// settles it into the running total; a refused lock debit ends without a refund.
    #[test]
    fn a_lock_debit_waits_for_its_receipt_and_settles_only_with_the_scalar_that_opens_it() {
        let mut f = fixture();
        let (lock, scalar) = test_lock(5, 40);
        let payee = Some(Address::repeat_byte(9));
        let d = f.core.sign_lock_debit(LockChange::Add(lock), payee).expect("signed");
        assert_eq!(f.core.state.pending_lock.map(|p| p.debit), Some(d), "kept before it is sent");
        let e = f.core.sign_payment(PaymentKind::Internal, Address::ZERO, Amount(1), B256::ZERO).expect_err("busy");
        assert_eq!(e.code(), "invalid_input", "nothing is signed over a pending lock debit");
        let e = f.core.settle_lock_answer(PaymentAnswer::Unreachable).expect_err("uncertain");
        assert_eq!(e.code(), "payment_uncertain");
        assert!(f.core.state.pending_lock.is_some(), "still pending");
        f.core.settle_lock_answer(PaymentAnswer::Applied(receipt(&f, &d))).expect("applied");
        assert_eq!(f.core.state.pending_lock, None);
        assert_eq!(f.core.channel().expect("ch").balance(), Ok(Amount(70)), "held from the balance");
        // The hub lists a scalar that does not open the lock: nothing to settle.
        let wrong = Scalar::new(U256::from(78)).expect("scalar");
        let mut account = HubAccount { outgoing_scalars: vec![(lock.lock_id, wrong)], ..HubAccount::default() };
        assert_eq!(f.core.lock_to_settle(&account).expect("read"), None);
        account.outgoing_scalars = vec![(lock.lock_id, scalar)];
        let change = f.core.lock_to_settle(&account).expect("read").expect("settle it");
        assert_eq!(change, LockChange::Settle { lock_id: lock.lock_id, scalar });
        let settle = f.core.sign_lock_debit(change, None).expect("signed");
        assert_eq!(settle.message.cumulative_debit, Amount(30), "the lock joins the running total");
        f.core.settle_lock_answer(PaymentAnswer::Applied(receipt(&f, &settle))).expect("applied");
        assert_eq!(f.core.channel().expect("ch").balance(), Ok(Amount(70)));
        assert_eq!(f.core.lock_to_settle(&account).expect("read"), None, "settled once");
        // A refused lock debit ends: no refund is owed, since it moved no total.
        let other = Lock { lock_id: B256::repeat_byte(6), ..lock };
        f.core.sign_lock_debit(LockChange::Add(other), payee).expect("signed");
        let refused = PaymentAnswer::Refused { code: "expiry_too_soon".into(), message: "no".into() };
        assert_eq!(f.core.settle_lock_answer(refused).expect_err("refused").code(), "expiry_too_soon");
        assert_eq!(f.core.state.pending_lock, None);
        assert_eq!(f.core.channel().expect("ch").balance(), Ok(Amount(70)), "nothing held for it");
    }

    /// An expired lock of the wallet's with no scalar from the hub is dropped; one the hub
    /// lists a scalar for is not (it is owed), and none before the expiry.
    #[test]
    fn an_expired_lock_is_dropped_unless_its_scalar_is_known() {
        let mut f = fixture();
        let (lock, scalar) = test_lock(8, 12);
        let d = f.core.sign_lock_debit(LockChange::Add(lock), Some(Address::repeat_byte(9))).expect("signed");
        f.core.settle_lock_answer(PaymentAnswer::Applied(receipt(&f, &d))).expect("applied");
        let none = HubAccount::default();
        assert_eq!(f.core.lock_to_drop(&none).expect("read"), None, "not expired at block 10");
        let mut ch = f.core.channel().expect("ch").clone();
        ch.block = 13;
        f.core.state.channel = Some(ch);
        assert_eq!(f.core.lock_to_drop(&none).expect("read"), Some(LockChange::Drop { lock_id: lock.lock_id }));
        let owed = HubAccount { outgoing_scalars: vec![(lock.lock_id, scalar)], ..HubAccount::default() };
        assert_eq!(f.core.lock_to_drop(&owed).expect("read"), None, "revealed: settled, never dropped");
    }

    #[test]
    fn a_hub_debit_this_key_did_not_sign_is_a_disagreement_not_learned() {
        let mut f = fixture();
        let ch = f.core.channel().expect("ch").clone();
        let d = ch.next_debit(PaymentKind::Internal, Address::repeat_byte(9), Amount(40), B256::ZERO).expect("debit");
        let forged = Signed::new(d, &f.core.domain(), &f.hub);
        let account = HubAccount { epoch: 1, latest_debit: Some(forged), debit_nonce: 1, ..HubAccount::default() };
        let check = f.core.check_hub(&account).expect("checked");
        assert!(!check.agrees);
        assert!(check.disagreements.iter().any(|d| d.contains("did not sign")), "{check:?}");
        assert_eq!(f.core.channel().expect("ch").debit_nonce(), 0, "not learned");
    }

    #[test]
    fn a_close_is_defended_with_a_credit_that_arrived_late_then_settled() {
        let mut f = fixture();
        let ch = f.core.channel().expect("ch").clone();
        let credit = HubSigned::new(ch.next_credit(Amount(25)).expect("credit"), &f.core.domain(), &f.hub);
        let closing = ChannelView { status: status::CLOSING, settle_block: 40, ..ChannelView::default() };
        let closing = ChannelView { epoch: 1, deposited: Amount(100), ..closing };
        f.core.apply_chain_view(&closing, 12, &BTreeMap::new()).expect("closing");
        assert!(f.core.take_credit(credit.clone(), None, None).expect("kept while closing"));
        let d = f.core.defence(&closing, 20).expect("defence");
        assert_eq!(d, Defence { submit_credit: Some(credit), settle: false });
        let held = ChannelView { credit_total: Amount(25), credit_nonce: 1, ..closing };
        assert_eq!(f.core.defence(&held, 20).expect("defence"), Defence::default(), "the contract holds it");
        assert_eq!(f.core.defence(&held, 40).expect("defence"), Defence { submit_credit: None, settle: true });
    }

    /// The hub's lock to this user arrives with the account view: taken with the hub's list of
    /// pending locks when that list opens the credit's root, refused (and named) otherwise.
    #[test]
    fn a_lock_credit_is_taken_with_the_hubs_list_of_pending_locks() {
        use infhub_core::channel::{ChannelParams, LockChange, Role};
        let mut f = fixture();
        let domain = f.core.domain();
        let ch = f.core.channel().expect("ch").clone();
        let params = ChannelParams { domain, hub: f.hub.address(), role: Role::Hub, max_withdrawal_expiry_blocks: 100 };
        let lock = Lock {
            lock_id: B256::repeat_byte(3),
            amount: Amount(40),
            expiry_block: ch.block + 50,
            point: Address::repeat_byte(4),
        };
        let credit =
            HubSigned::new(ch.next_lock_credit(&params, &LockChange::Add(lock), 0).expect("c"), &domain, &f.hub);
        let wrong = HubAccount {
            epoch: 1,
            latest_credit: Some(credit.clone()),
            incoming_locks: Some(vec![]),
            ..HubAccount::default()
        };
        let check = f.core.check_hub(&wrong).expect("checked");
        assert!(check.disagreements.iter().any(|d| d.contains("locks_root_mismatch")), "{check:?}");
        let right = HubAccount { incoming_locks: Some(vec![lock]), ..wrong };
        f.core.check_hub(&right).expect("checked");
        let ch = f.core.channel().expect("ch");
        assert_eq!((ch.credit_nonce(), ch.credit_locks.locked()), (credit.message.nonce, Amount(40)));
    }

    #[test]
    fn epochs_missed_while_away_need_their_settlements() {
        let mut f = fixture();
        let later = ChannelView { status: status::SETTLED, epoch: 3, ..ChannelView::default() };
        assert_eq!(f.core.settlements_needed(&later), vec![1, 2, 3]);
        let err = f.core.apply_chain_view(&later, 90, &BTreeMap::new()).expect_err("payments unknown");
        assert_eq!(err.code(), "chain_unavailable");
        let mut f = fixture();
        let paid: BTreeMap<u64, Amount> = [(1, Amount(100)), (2, Amount::ZERO), (3, Amount::ZERO)].into();
        let effects = f.core.apply_chain_view(&later, 90, &paid).expect("caught up");
        let settled = effects.iter().filter(|e| matches!(e, Effect::Settled { .. })).count();
        assert_eq!(settled, 3);
        assert_eq!(f.core.channel().expect("ch").epoch, 3);
        assert_eq!(f.core.channel().expect("ch").status, Status::Settled);
    }
}
