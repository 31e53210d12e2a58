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

/// One line of an account's history. The proofs sit behind one pointer (most entries carry
/// none, and a transfer's would otherwise make every entry about 900 bytes).
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
    /// Chain block of a chain event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// The signed proofs of the entry, written as fields of the entry.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub proofs: Option<Box<EntryProofs>>,
}

/// The signed proofs a history entry carries.
// Already behind the entry's one pointer; the large variant is the most common one.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum EntryProofs {
    /// The payer's side of a payment: the user's signed debit and the hub's receipt.
    Paid {
        /// The user's signed debit.
        debit: SignedDebit,
        /// The hub's signed receipt of it.
        receipt: SignedReceipt,
    },
    /// A credit from the hub (payee of a payment, purchase, conversion).
    Credited {
        /// The hub's signed credit.
        credit: SignedCredit,
    },
    /// A co-signed withdrawal.
    CoSigned {
        /// The withdrawal.
        withdrawal: Withdrawal,
        /// The hub's signature on it.
        hub_signature: Signature,
    },
}

impl HistoryEntry {
    /// The hub's receipt, for the payer's side of a payment.
    pub fn receipt(&self) -> Option<&SignedReceipt> {
        match self.proofs.as_deref() {
            Some(EntryProofs::Paid { receipt, .. }) => Some(receipt),
            _ => None,
        }
    }

    /// The hub's credit, for an entry that credited a channel.
    pub fn credit(&self) -> Option<&SignedCredit> {
        match self.proofs.as_deref() {
            Some(EntryProofs::Credited { credit }) => Some(credit),
            _ => None,
        }
    }

    fn with(mut self, proofs: EntryProofs) -> HistoryEntry {
        self.proofs = Some(Box::new(proofs));
        self
    }

    fn with_credit(self, credit: Option<&SignedCredit>) -> HistoryEntry {
        match credit {
            Some(c) => self.with(EntryProofs::Credited { credit: c.clone() }),
            None => self,
        }
    }
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
    /// (payer, payment id) → the seq of the payment (its first result is rebuilt from the
    /// payer's entry: nothing stored twice).
    payments: HashMap<(Address, B256), u64>,
    /// purchase id → the purchase's credit.
    purchases: HashMap<B256, SignedCredit>,
    /// (custodial account, transfer id) → its queued payout.
    custodial_payouts: HashMap<(Address, B256), Payout>,
    payout_batches: Vec<PayoutBatchRecord>,
    last_seq: u64,
}

/// The payer's result of a payment (returned again to a retry). It carries the payer's proofs
/// only: the payee's credit goes to the payee (stream and history), never to the payer, whom
/// it would tell the payee's running totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResult {
    /// Ledger sequence number.
    pub seq: u64,
    /// The hub's receipt.
    pub receipt: SignedReceipt,
    /// The queued payout (external payments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<Payout>,
}

fn entry(seq: u64, kind: EntryKind, amount: Amount) -> HistoryEntry {
    HistoryEntry { seq, kind, amount, counterparty: None, payment_id: None, block: None, proofs: None }
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
                let mut out =
                    entry(seq, kind, m.amount).with(EntryProofs::Paid { debit: *d, receipt: receipt.clone() });
                out.counterparty = Some(m.recipient);
                out.payment_id = Some(m.payment_id);
                self.push(m.user, out);
                if payout.is_none() {
                    // To a channel (with its credit) or to a custodial account (no proof needed).
                    let mut inn = entry(seq, EntryKind::TransferIn, m.amount).with_credit(credit.as_ref());
                    inn.counterparty = Some(m.user);
                    inn.payment_id = Some(m.payment_id);
                    self.push(m.recipient, inn);
                }
                self.payments.insert((m.user, m.payment_id), seq);
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
                        let mut inn = entry(seq, EntryKind::TransferIn, t.amount).with_credit(credit.as_ref());
                        inn.counterparty = Some(t.from);
                        inn.payment_id = Some(t.transfer_id);
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
                let mut inn = entry(seq, EntryKind::ConvertedIn, moved).with_credit(Some(credit));
                inn.counterparty = Some(*account);
                inn.payment_id = Some(*transfer_id);
                self.push(*user, inn);
            }
            (Command::Purchase { user, amount, purchase_id }, Outcome::Credited(c)) => {
                let mut e = entry(seq, EntryKind::Purchase, *amount).with_credit(Some(c));
                e.payment_id = Some(*purchase_id);
                self.push(*user, e);
                self.purchases.insert(*purchase_id, c.clone());
            }
            (Command::Withdraw { .. }, Outcome::WithdrawalCoSigned { withdrawal, hub_signature }) => {
                let e = entry(seq, EntryKind::WithdrawalCoSigned, withdrawal.cumulative_withdrawn)
                    .with(EntryProofs::CoSigned { withdrawal: *withdrawal, hub_signature: *hub_signature });
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

    /// The first result of payment `payment_id` by `payer`, rebuilt from the payer's entry
    /// (receipt, payout) and the payee's (credit).
    pub fn payment(&self, payer: &Address, payment_id: &B256) -> Option<PaymentResult> {
        let seq = *self.payments.get(&(*payer, *payment_id))?;
        let out = self.entry_at(payer, seq)?;
        let receipt = out.receipt()?.clone();
        let payout = (out.kind == EntryKind::ExternalOut).then(|| Payout {
            payer: *payer,
            payment_id: *payment_id,
            recipient: out.counterparty.expect("an external payment names its recipient"),
            amount: out.amount,
        });
        Some(PaymentResult { seq, receipt, payout })
    }

    /// The entry of `user` logged at `seq` (entries are in seq order).
    fn entry_at(&self, user: &Address, seq: u64) -> Option<&HistoryEntry> {
        let all = self.by_account.get(user)?;
        let i = all.partition_point(|e| e.seq < seq);
        all.get(i).filter(|e| e.seq == seq)
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

#[cfg(test)]
mod tests {
    use super::*;
    use infhub_core::messages::{Credit, Debit, HubSigned, PaymentKind, Receipt, Signed};
    use infhub_core::{Domain, PrivateKey};

    fn key(n: u8) -> PrivateKey {
        PrivateKey::from_bytes([n; 32]).expect("key")
    }

    fn domain() -> Domain {
        Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) }
    }

    /// A payment record as the ledger logs it (signatures are not checked by the history).
    fn paid(seq: u64, payer: &PrivateKey, recipient: Address, kind: PaymentKind, id: u8) -> LogRecord {
        let m = Debit {
            user: payer.address(),
            epoch: 1,
            nonce: seq,
            cumulative_debit: Amount(u128::from(seq) * 10),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
            kind: kind as u8,
            recipient,
            amount: Amount(10),
            payment_id: B256::repeat_byte(id),
        };
        let debit = Signed::new(m, &domain(), payer);
        let receipt = HubSigned::new(
            Receipt {
                payer: m.user,
                epoch: 1,
                debit_nonce: m.nonce,
                payment_id: m.payment_id,
                debit_digest: B256::repeat_byte(7),
            },
            &domain(),
            &key(9),
        );
        let (credit, payout) = match kind {
            PaymentKind::Internal => (
                Some(HubSigned::new(
                    Credit {
                        user: recipient,
                        epoch: 1,
                        nonce: seq,
                        cumulative_credit: Amount(u128::from(seq) * 10),
                        locked_amount: Amount::ZERO,
                        locks_root: B256::ZERO,
                    },
                    &domain(),
                    &key(9),
                )),
                None,
            ),
            PaymentKind::External => {
                (None, Some(Payout { payer: m.user, payment_id: m.payment_id, recipient, amount: m.amount }))
            }
        };
        LogRecord { seq, command: Command::Transfer(debit), outcome: Outcome::Paid { receipt, credit, payout } }
    }

    #[test]
    fn a_retried_payment_gets_its_first_result_rebuilt_from_the_entries() {
        let (alice, bob) = (key(1), key(2));
        let mut h = History::default();
        let records = [
            paid(1, &alice, bob.address(), PaymentKind::Internal, 1),
            paid(2, &alice, Address::repeat_byte(0xEE), PaymentKind::External, 2),
            paid(3, &bob, alice.address(), PaymentKind::Internal, 1),
        ];
        for r in &records {
            h.add(r);
        }
        for r in &records {
            let (Command::Transfer(d), Outcome::Paid { receipt, payout, .. }) = (&r.command, &r.outcome) else {
                unreachable!()
            };
            let expected = PaymentResult { seq: r.seq, receipt: receipt.clone(), payout: *payout };
            assert_eq!(h.payment(&d.message.user, &d.message.payment_id), Some(expected), "seq {}", r.seq);
        }
        assert_eq!(h.payment(&alice.address(), &B256::repeat_byte(3)), None, "unknown payment");
        // Entries carry their proofs as flat fields, only those of their side.
        let out = serde_json::to_value(&h.all(&alice.address())[0]).expect("json");
        assert!(out.get("debit").is_some() && out.get("receipt").is_some() && out.get("credit").is_none(), "{out}");
        let inn = serde_json::to_value(&h.all(&bob.address())[0]).expect("json");
        assert!(inn.get("credit").is_some() && inn.get("debit").is_none(), "{inn}");
        assert_eq!(inn["kind"], "transfer_in");
    }
}
