//! Account history: every ledger record turned into per-account entries that carry the signed
//! proofs (the user's debit, the hub's credit and receipt, co-signed withdrawals). Built from
//! the durable log (archive and live segments) at start, then extended after every group
//! commit, so it holds exactly what is durable. It also answers a retried payment or purchase
//! with the first result, and lists payout batches for the chain task's restart recovery.

use infhub_core::ledger::{ChainEvent, Command, CustodialResult, Outcome, Payout};
use infhub_core::messages::{SignedCredit, SignedDebit, SignedReceipt};
use infhub_core::{Address, Amount, Signature, Withdrawal, B256};
use infhub_ledger::LogRecord;
use serde::Serialize;
use std::collections::HashMap;

/// One line of an account's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Ledger sequence number of the operation.
    pub seq: u64,
    /// What happened.
    pub kind: EntryKind,
    /// Amount moved (for chain events: the new running total where the event carries one).
    pub amount: Amount,
    /// The other party (payee, payer, or chain recipient).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<Address>,
    /// The payment or purchase id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<B256>,
    /// The user's signed debit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debit: Option<SignedDebit>,
    /// The hub's signed credit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit: Option<SignedCredit>,
    /// The hub's signed receipt of a debit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<SignedReceipt>,
    /// A co-signed withdrawal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawal: Option<Withdrawal>,
    /// The hub's signature on `withdrawal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_signature: Option<Signature>,
    /// Chain block of a chain event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
}

/// Kinds of history entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Paid another account.
    TransferOut,
    /// Paid by another account.
    TransferIn,
    /// Paid a chain address (payout queued).
    ExternalOut,
    /// Bought from the platform.
    Purchase,
    /// Withdrawal co-signed by the hub.
    WithdrawalCoSigned,
    /// Channel opened on chain.
    ChannelOpened,
    /// Deposit confirmed (amount = running total).
    Deposited,
    /// Withdrawal executed on chain (amount = running total).
    Withdrawn,
    /// Exit or hub close started on chain.
    ExitStarted,
    /// Channel settled on chain (amount = paid).
    Settled,
    /// Custodial account opened by the operator.
    CustodialOpened,
    /// On-chain deposit for a custodial account (amount = this deposit).
    CustodialDeposited,
    /// Custodial balance moved into a channel (conversion).
    ConvertedOut,
    /// Channel credited with a converted custodial balance.
    ConvertedIn,
}

/// A payout batch taken from the queue, as recorded in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutBatchRecord {
    /// Ledger sequence number of `TakePayoutBatch`.
    pub seq: u64,
    /// The payouts.
    pub payouts: Vec<Payout>,
}

/// The history index.
#[derive(Debug, Default)]
pub struct History {
    by_account: HashMap<Address, Vec<HistoryEntry>>,
    /// (payer, payment id) → the payment's first result.
    payments: HashMap<(Address, B256), PaymentResult>,
    /// purchase id → the purchase's credit.
    purchases: HashMap<B256, SignedCredit>,
    /// (custodial account, transfer id) → its queued payout.
    custodial_payouts: HashMap<(Address, B256), Payout>,
    payout_batches: Vec<PayoutBatchRecord>,
    last_seq: u64,
}

/// The first result of a payment, returned again to a retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResult {
    /// Ledger sequence number.
    pub seq: u64,
    /// The hub's receipt.
    pub receipt: SignedReceipt,
    /// The payee's credit (internal payments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit: Option<SignedCredit>,
    /// The queued payout (external payments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<Payout>,
}

fn entry(seq: u64, kind: EntryKind, amount: Amount) -> HistoryEntry {
    HistoryEntry {
        seq,
        kind,
        amount,
        counterparty: None,
        payment_id: None,
        debit: None,
        credit: None,
        receipt: None,
        withdrawal: None,
        hub_signature: None,
        block: None,
    }
}

impl History {
    /// Adds a durable record. Records must come in sequence order.
    pub fn add(&mut self, r: &LogRecord) {
        assert!(r.seq > self.last_seq, "history records out of order: {} after {}", r.seq, self.last_seq);
        self.last_seq = r.seq;
        let seq = r.seq;
        match (&r.command, &r.outcome) {
            (Command::Transfer(d), Outcome::Paid { receipt, credit, payout }) => {
                let m = &d.message;
                let kind = if payout.is_some() { EntryKind::ExternalOut } else { EntryKind::TransferOut };
                let mut out = entry(seq, kind, m.amount);
                out.counterparty = Some(m.recipient);
                out.payment_id = Some(m.payment_id);
                out.debit = Some(*d);
                out.receipt = Some(receipt.clone());
                self.push(m.user, out);
                if payout.is_none() {
                    // To a channel (with its credit) or to a custodial account (no proof needed).
                    let mut inn = entry(seq, EntryKind::TransferIn, m.amount);
                    inn.counterparty = Some(m.user);
                    inn.payment_id = Some(m.payment_id);
                    inn.credit = credit.clone();
                    self.push(m.recipient, inn);
                }
                self.payments.insert(
                    (m.user, m.payment_id),
                    PaymentResult { seq, receipt: receipt.clone(), credit: credit.clone(), payout: *payout },
                );
            }
            (Command::Purchase { user, amount, purchase_id }, Outcome::CustodialCredited) => {
                let mut e = entry(seq, EntryKind::Purchase, *amount);
                e.payment_id = Some(*purchase_id);
                self.push(*user, e);
            }
            (Command::OpenCustodial { account, .. }, Outcome::CustodialOpened) => {
                self.push(*account, entry(seq, EntryKind::CustodialOpened, Amount::ZERO));
            }
            (Command::CustodialTransfers(batch), Outcome::CustodialTransfers(results)) => {
                for (t, r) in batch.iter().zip(results) {
                    if let CustodialResult::Moved { credit } = r {
                        let mut out = entry(seq, EntryKind::TransferOut, t.amount);
                        out.counterparty = Some(t.to);
                        out.payment_id = Some(t.transfer_id);
                        self.push(t.from, out);
                        let mut inn = entry(seq, EntryKind::TransferIn, t.amount);
                        inn.counterparty = Some(t.from);
                        inn.payment_id = Some(t.transfer_id);
                        inn.credit = credit.clone();
                        self.push(t.to, inn);
                    }
                }
            }
            (
                Command::CustodialWithdraw { from, recipient, amount, transfer_id },
                Outcome::CustodialPayoutQueued(p),
            ) => {
                let mut e = entry(seq, EntryKind::ExternalOut, *amount);
                e.counterparty = Some(*recipient);
                e.payment_id = Some(*transfer_id);
                self.push(*from, e);
                self.custodial_payouts.insert((*from, *transfer_id), *p);
            }
            (Command::ConvertToChannel { account, user, transfer_id }, Outcome::Converted { credit, amount }) => {
                let moved = *amount;
                let mut out = entry(seq, EntryKind::ConvertedOut, moved);
                out.counterparty = Some(*user);
                out.payment_id = Some(*transfer_id);
                self.push(*account, out);
                let mut inn = entry(seq, EntryKind::ConvertedIn, moved);
                inn.counterparty = Some(*account);
                inn.payment_id = Some(*transfer_id);
                inn.credit = Some(credit.clone());
                self.push(*user, inn);
            }
            (Command::Purchase { user, amount, purchase_id }, Outcome::Credited(c)) => {
                let mut e = entry(seq, EntryKind::Purchase, *amount);
                e.payment_id = Some(*purchase_id);
                e.credit = Some(c.clone());
                self.push(*user, e);
                self.purchases.insert(*purchase_id, c.clone());
            }
            (Command::Withdraw { .. }, Outcome::WithdrawalCoSigned { withdrawal, hub_signature }) => {
                let mut e = entry(seq, EntryKind::WithdrawalCoSigned, withdrawal.cumulative_withdrawn);
                e.withdrawal = Some(*withdrawal);
                e.hub_signature = Some(*hub_signature);
                self.push(withdrawal.user, e);
            }
            (Command::TakePayoutBatch { .. }, Outcome::PayoutBatch(p)) if !p.is_empty() => {
                self.payout_batches.push(PayoutBatchRecord { seq, payouts: p.clone() });
            }
            (Command::Chain { at, event }, _) => {
                let (user, kind, amount) = match *event {
                    ChainEvent::ChannelOpened { user, .. } => (user, EntryKind::ChannelOpened, Amount::ZERO),
                    ChainEvent::Deposited { user, total_deposited, .. } => {
                        (user, EntryKind::Deposited, total_deposited)
                    }
                    ChainEvent::Withdrawn { user, total_withdrawn, .. } => {
                        (user, EntryKind::Withdrawn, total_withdrawn)
                    }
                    ChainEvent::ExitStarted { user, .. } => (user, EntryKind::ExitStarted, Amount::ZERO),
                    ChainEvent::Settled { user, paid, .. } => (user, EntryKind::Settled, paid),
                    ChainEvent::CustodialDeposited { account, amount, .. } => {
                        (account, EntryKind::CustodialDeposited, amount)
                    }
                    _ => return,
                };
                let mut e = entry(seq, kind, amount);
                e.block = Some(at.block);
                self.push(user, e);
            }
            _ => {}
        }
    }

    fn push(&mut self, user: Address, e: HistoryEntry) {
        self.by_account.entry(user).or_default().push(e);
    }

    /// Up to `limit` entries of `user` with `seq < before`, newest first.
    pub fn page(&self, user: &Address, before: u64, limit: usize) -> Vec<HistoryEntry> {
        let Some(all) = self.by_account.get(user) else { return Vec::new() };
        let end = all.partition_point(|e| e.seq < before);
        all[..end].iter().rev().take(limit).cloned().collect()
    }

    /// The first result of payment `payment_id` by `payer`.
    pub fn payment(&self, payer: &Address, payment_id: &B256) -> Option<&PaymentResult> {
        self.payments.get(&(*payer, *payment_id))
    }

    /// The credit a purchase produced.
    pub fn purchase(&self, purchase_id: &B256) -> Option<&SignedCredit> {
        self.purchases.get(purchase_id)
    }

    /// The payout of custodial withdrawal `transfer_id` of `account`.
    pub fn custodial_payout(&self, account: &Address, transfer_id: &B256) -> Option<&Payout> {
        self.custodial_payouts.get(&(*account, *transfer_id))
    }

    /// Every entry of `user`, oldest first.
    pub fn all(&self, user: &Address) -> &[HistoryEntry] {
        self.by_account.get(user).map_or(&[], |v| v.as_slice())
    }

    /// Every payout batch taken from the queue, oldest first.
    pub fn payout_batches(&self) -> &[PayoutBatchRecord] {
        &self.payout_batches
    }

    /// Sequence number of the newest record added.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

pub use infhub_core::ledger::payout_batch_id;

/// One statement line: a history entry with the balance after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementLine {
    /// The entry.
    #[serde(flatten)]
    pub entry: HistoryEntry,
    /// Signed change of the balance, in base units.
    pub change: String,
    /// The balance after the entry, in base units.
    pub balance_after: Amount,
}

/// An account's statement: its history oldest first with the running balance. Deposits and
/// withdrawals of channels carry running totals; their change is the increase. A settlement
/// pays the balance out (to zero); co-signed withdrawals change nothing until executed.
pub fn statement(entries: &[HistoryEntry]) -> Vec<StatementLine> {
    let mut balance: i128 = 0;
    let (mut deposited, mut withdrawn) = (0u128, 0u128);
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let a = e.amount.0 as i128;
        let change: i128 = match e.kind {
            EntryKind::TransferOut | EntryKind::ExternalOut | EntryKind::ConvertedOut => -a,
            EntryKind::TransferIn | EntryKind::Purchase | EntryKind::CustodialDeposited | EntryKind::ConvertedIn => a,
            EntryKind::Deposited => {
                let d = e.amount.0.saturating_sub(deposited) as i128;
                deposited = deposited.max(e.amount.0);
                d
            }
            EntryKind::Withdrawn => {
                let d = e.amount.0.saturating_sub(withdrawn) as i128;
                withdrawn = withdrawn.max(e.amount.0);
                -d
            }
            EntryKind::Settled => -balance,
            EntryKind::ChannelOpened => {
                (deposited, withdrawn) = (0, 0);
                0
            }
            EntryKind::WithdrawalCoSigned | EntryKind::ExitStarted | EntryKind::CustodialOpened => 0,
        };
        balance += change;
        assert!(balance >= 0, "statement balance went negative at seq {}", e.seq);
        out.push(StatementLine {
            entry: e.clone(),
            change: change.to_string(),
            balance_after: Amount(balance as u128),
        });
    }
    out
}

/// The statement as CSV: `seq,kind,counterparty,payment_id,block,change,balance_after`.
pub fn statement_csv(lines: &[StatementLine]) -> String {
    let mut out = String::from("seq,kind,counterparty,payment_id,block,change,balance_after\n");
    for l in lines {
        let kind =
            serde_json::to_value(l.entry.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            l.entry.seq,
            kind,
            l.entry.counterparty.map(|a| a.to_string()).unwrap_or_default(),
            l.entry.payment_id.map(|p| p.to_string()).unwrap_or_default(),
            l.entry.block.map(|b| b.to_string()).unwrap_or_default(),
            l.change,
            l.balance_after.0,
        ));
    }
    out
}
