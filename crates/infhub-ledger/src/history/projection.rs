//! The pure projection of the log onto accounts: which history entries each ledger record
//! makes for which account, with which signed proofs, and a payment's first result as a retry
//! gets it again. No IO: the index ([`super::index`]) stores where entries are, this module
//! says what they are.

use crate::LogRecord;
use infhub_core::channel::LockChange;
use infhub_core::ledger::{ChainEvent, Command, CustodialResult, Outcome, Payout};
use infhub_core::messages::{SignedCredit, SignedDebit, SignedReceipt};
use infhub_core::{Address, Amount, Domain, Signature, Withdrawal, B256};
use serde::Serialize;

/// One line of an account's history. The proofs sit behind one pointer (most entries carry
/// none, and a transfer's would otherwise make every entry about 900 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HistoryEntry {
    /// Ledger sequence number of the operation.
    pub seq: u64,
    /// When it was committed, in milliseconds since the Unix epoch (the hub's clock).
    pub at_ms: u64,
    /// What happened.
    pub kind: EntryKind,
    /// Amount moved (for chain events: the new running total where the event carries one).
    pub amount: Amount,
    /// The other party (payee, payer, or chain recipient).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<infhub_core::schema::AddressSchema>"))]
    pub counterparty: Option<Address>,
    /// The payment or purchase id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<infhub_core::schema::WordSchema>"))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// The payer's side of a refused payment: the user's signed debit, the hub's refund of its
    /// amount, and the rule the payment broke.
    Refunded {
        /// The user's signed debit (spent).
        debit: SignedDebit,
        /// The hub's signed credit of the amount back.
        refund: SignedCredit,
        /// The rule's code (`reserve_insufficient`, …).
        refused: String,
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// A payment refused and refunded (its debit spent, its amount credited back: no change).
    Refunded,
    /// Custodial balance moved into a channel (conversion).
    ConvertedOut,
    /// Channel credited with a converted custodial balance.
    ConvertedIn,
    /// The custodial account's API key was replaced (the old one stopped working).
    CustodialKeyRotated,
    /// A point lock of the user's to the hub was added (held out of her balance; spec §5.17b).
    LockedOut,
    /// A point lock of the hub's to the user was added (not spendable until settled).
    LockedIn,
    /// The user's lock settled with its scalar (paid; it was already held).
    LockSettledOut,
    /// The hub's lock to the user settled with her scalar (paid to her).
    LockSettledIn,
    /// The user's lock dropped (returned to her balance).
    LockDroppedOut,
    /// The operator froze the account (spec §5.20).
    AccountFrozen,
    /// The operator unfroze the account.
    AccountUnfrozen,
    /// The hub's lock to the user dropped (never hers).
    LockDroppedIn,
}

/// The payer's first result of a payment, as a retry gets it again: applied, or refused and
/// refunded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstResult {
    /// Applied.
    Paid(PaymentResult),
    /// Refused for a reason of state and refunded.
    Refunded {
        /// Ledger sequence number.
        seq: u64,
        /// The refused debit (as signed).
        debit: SignedDebit,
        /// The hub's refund.
        refund: SignedCredit,
        /// The rule's code.
        refused: String,
    },
}

impl FirstResult {
    /// Whether this is the result of exactly `debit` (by its EIP-712 digest).
    pub fn is_for(&self, debit: &infhub_core::Debit, domain: &Domain) -> bool {
        use infhub_core::messages::Eip712Message;
        let digest = debit.digest(domain);
        match self {
            FirstResult::Paid(p) => p.receipt.message.debit_digest == digest,
            FirstResult::Refunded { debit: d, .. } => d.message.digest(domain) == digest,
        }
    }
}

/// The payer's result of a payment (returned again to a retry). It carries the payer's proofs
/// only: the payee's credit goes to the payee (stream and history), never to the payer, whom
/// it would tell the payee's running totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PaymentResult {
    /// Ledger sequence number.
    pub seq: u64,
    /// The hub's receipt.
    pub receipt: SignedReceipt,
    /// The queued payout (external payments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<Payout>,
}

pub(crate) fn entry(seq: u64, kind: EntryKind, amount: Amount) -> HistoryEntry {
    HistoryEntry { seq, at_ms: 0, kind, amount, counterparty: None, payment_id: None, block: None, proofs: None }
}

/// Calls `f` with every history entry record `r` makes, for each account it concerns, in
/// order. With `proofs` false the entries carry none (the index needs only the accounts).
pub(crate) fn entries_of(r: &LogRecord, proofs: bool, f: &mut impl FnMut(Address, HistoryEntry)) {
    let at_ms = r.at_ms;
    entries_of_record(r, proofs, &mut |a, e: HistoryEntry| f(a, HistoryEntry { at_ms, ..e }));
}

/// [`entries_of`] before the commit time is stamped.
fn entries_of_record(r: &LogRecord, proofs: bool, f: &mut impl FnMut(Address, HistoryEntry)) {
    let seq = r.seq;
    if lock_and_freeze_entries(r, proofs, f) {
        return;
    }
    let with = |e: HistoryEntry, p: &dyn Fn() -> EntryProofs| if proofs { e.with(p()) } else { e };
    match (&r.command, &r.outcome) {
        (Command::Transfer(d), Outcome::Paid { receipt, credit, payout }) => {
            let m = &d.message;
            let kind = if payout.is_some() { EntryKind::ExternalOut } else { EntryKind::TransferOut };
            let mut out =
                with(entry(seq, kind, m.amount), &|| EntryProofs::Paid { debit: *d, receipt: receipt.clone() });
            out.counterparty = Some(m.recipient);
            out.payment_id = Some(m.payment_id);
            f(m.user, out);
            if payout.is_none() {
                // To a channel (with its credit) or to a custodial account (no proof needed).
                let mut inn = entry(seq, EntryKind::TransferIn, m.amount);
                if proofs {
                    inn = inn.with_credit(credit.as_ref());
                }
                inn.counterparty = Some(m.user);
                inn.payment_id = Some(m.payment_id);
                f(m.recipient, inn);
            }
        }
        (Command::Transfer(d), Outcome::Refunded { refused, refund }) => {
            let m = &d.message;
            let mut e = with(entry(seq, EntryKind::Refunded, m.amount), &|| EntryProofs::Refunded {
                debit: *d,
                refund: refund.clone(),
                refused: refused.code(),
            });
            e.counterparty = Some(m.recipient);
            e.payment_id = Some(m.payment_id);
            f(m.user, e);
        }
        (Command::Purchase { user, amount, purchase_id }, Outcome::CustodialCredited) => {
            let mut e = entry(seq, EntryKind::Purchase, *amount);
            e.payment_id = Some(*purchase_id);
            f(*user, e);
        }
        (Command::OpenCustodial { account, .. }, Outcome::CustodialOpened) => {
            f(*account, entry(seq, EntryKind::CustodialOpened, Amount::ZERO));
        }
        (Command::RotateCustodialKey { account, .. }, Outcome::CustodialKeyRotated) => {
            f(*account, entry(seq, EntryKind::CustodialKeyRotated, Amount::ZERO));
        }
        (Command::CustodialTransfers(batch), Outcome::CustodialTransfers(results)) => {
            for (t, r) in batch.iter().zip(results) {
                if let CustodialResult::Moved { credit } = r {
                    let mut out = entry(seq, EntryKind::TransferOut, t.amount);
                    out.counterparty = Some(t.to);
                    out.payment_id = Some(t.transfer_id);
                    f(t.from, out);
                    let mut inn = entry(seq, EntryKind::TransferIn, t.amount);
                    if proofs {
                        inn = inn.with_credit(credit.as_ref());
                    }
                    inn.counterparty = Some(t.from);
                    inn.payment_id = Some(t.transfer_id);
                    f(t.to, inn);
                }
            }
        }
        (Command::CustodialWithdraw { from, recipient, amount, transfer_id }, Outcome::CustodialPayoutQueued(_)) => {
            let mut e = entry(seq, EntryKind::ExternalOut, *amount);
            e.counterparty = Some(*recipient);
            e.payment_id = Some(*transfer_id);
            f(*from, e);
        }
        (Command::ConvertToChannel { account, user, transfer_id }, Outcome::Converted { credit, amount }) => {
            let moved = *amount;
            let mut out = entry(seq, EntryKind::ConvertedOut, moved);
            out.counterparty = Some(*user);
            out.payment_id = Some(*transfer_id);
            f(*account, out);
            let mut inn =
                with(entry(seq, EntryKind::ConvertedIn, moved), &|| EntryProofs::Credited { credit: credit.clone() });
            inn.counterparty = Some(*account);
            inn.payment_id = Some(*transfer_id);
            f(*user, inn);
        }
        (Command::Purchase { user, amount, purchase_id }, Outcome::Credited(c)) => {
            let mut e = with(entry(seq, EntryKind::Purchase, *amount), &|| EntryProofs::Credited { credit: c.clone() });
            e.payment_id = Some(*purchase_id);
            f(*user, e);
        }
        (Command::Withdraw { .. }, Outcome::WithdrawalCoSigned { withdrawal, hub_signature }) => {
            let e = with(entry(seq, EntryKind::WithdrawalCoSigned, withdrawal.cumulative_withdrawn), &|| {
                EntryProofs::CoSigned { withdrawal: *withdrawal, hub_signature: *hub_signature }
            });
            f(withdrawal.user, e);
        }
        (Command::Chain { at, event }, _) => {
            if let Some((user, e)) = chain_entry(seq, at.block, event) {
                f(user, e);
            }
        }
        _ => {}
    }
}

/// The entries of a lock record (spec §5.17b) or a freeze (§5.20), if `r` is one: the payer's
/// and the payee's of a locked transfer, the user's of a lock debit or a lock credit, the
/// account's of a freeze or an unfreeze.
fn lock_and_freeze_entries(r: &LogRecord, proofs: bool, f: &mut impl FnMut(Address, HistoryEntry)) -> bool {
    let seq = r.seq;
    let with = |e: HistoryEntry, p: &dyn Fn() -> EntryProofs| if proofs { e.with(p()) } else { e };
    match (&r.command, &r.outcome) {
        (Command::SetFrozen { account, frozen }, Outcome::FrozenSet { .. }) => {
            let kind = if *frozen { EntryKind::AccountFrozen } else { EntryKind::AccountUnfrozen };
            f(*account, entry(seq, kind, Amount::ZERO));
        }
        (Command::LockedTransfer { debit, lock, payee }, Outcome::LockedTransferApplied { receipt, payee_credit }) => {
            let m = &debit.message;
            let mut out = with(entry(seq, EntryKind::LockedOut, lock.amount), &|| EntryProofs::Paid {
                debit: *debit,
                receipt: receipt.clone(),
            });
            (out.counterparty, out.payment_id) = (Some(*payee), Some(lock.lock_id));
            f(m.user, out);
            let mut inn = with(entry(seq, EntryKind::LockedIn, lock.amount), &|| EntryProofs::Credited {
                credit: payee_credit.clone(),
            });
            (inn.counterparty, inn.payment_id) = (Some(m.user), Some(lock.lock_id));
            f(*payee, inn);
        }
        (
            Command::DebitLock { debit, .. } | Command::CancelForwardedLock { debit },
            Outcome::DebitLockApplied { receipt, change, lock },
        ) => {
            let kind = match change {
                LockChange::Add(_) => EntryKind::LockedOut,
                LockChange::Settle { .. } => EntryKind::LockSettledOut,
                LockChange::Drop { .. } | LockChange::Cancel { .. } => EntryKind::LockDroppedOut,
            };
            let m = &debit.message;
            let mut e =
                with(entry(seq, kind, lock.amount), &|| EntryProofs::Paid { debit: *debit, receipt: receipt.clone() });
            e.payment_id = Some(lock.lock_id);
            f(m.user, e);
        }
        (
            Command::CreditLock { user, .. } | Command::CollectedTransfer { payee: user, .. },
            Outcome::CreditLockIssued { credit, change, lock },
        ) => {
            let kind = match change {
                LockChange::Add(_) => EntryKind::LockedIn,
                LockChange::Settle { .. } => EntryKind::LockSettledIn,
                LockChange::Drop { .. } | LockChange::Cancel { .. } => EntryKind::LockDroppedIn,
            };
            let mut e = with(entry(seq, kind, lock.amount), &|| EntryProofs::Credited { credit: credit.clone() });
            e.payment_id = Some(lock.lock_id);
            f(*user, e);
        }
        _ => return false,
    }
    true
}

/// The entry a confirmed chain event makes in its account's history, if it makes one.
fn chain_entry(seq: u64, block: u64, event: &ChainEvent) -> Option<(Address, HistoryEntry)> {
    let (user, kind, amount) = match *event {
        ChainEvent::ChannelOpened { user, .. } => (user, EntryKind::ChannelOpened, Amount::ZERO),
        ChainEvent::Deposited { user, total_deposited, .. } => (user, EntryKind::Deposited, total_deposited),
        ChainEvent::Withdrawn { user, total_withdrawn, .. } => (user, EntryKind::Withdrawn, total_withdrawn),
        ChainEvent::ExitStarted { user, .. } => (user, EntryKind::ExitStarted, Amount::ZERO),
        ChainEvent::Settled { user, paid, .. } => (user, EntryKind::Settled, paid),
        ChainEvent::CustodialDeposited { account, amount, .. } => (account, EntryKind::CustodialDeposited, amount),
        _ => return None,
    };
    let mut e = entry(seq, kind, amount);
    e.block = Some(block);
    Some((user, e))
}

/// The payment result an out-entry of `payer` holds for `payment_id`.
pub(crate) fn payment_result(payer: &Address, payment_id: &B256, e: &HistoryEntry) -> Option<FirstResult> {
    if e.payment_id != Some(*payment_id) {
        return None;
    }
    if let Some(EntryProofs::Refunded { debit, refund, refused }) = e.proofs.as_deref() {
        return Some(FirstResult::Refunded {
            seq: e.seq,
            debit: *debit,
            refund: refund.clone(),
            refused: refused.clone(),
        });
    }
    let receipt = e.receipt()?.clone();
    let payout = (e.kind == EntryKind::ExternalOut).then(|| Payout {
        payer: *payer,
        payment_id: *payment_id,
        recipient: e.counterparty.expect("an external payment names its recipient"),
        amount: e.amount,
    });
    Some(FirstResult::Paid(PaymentResult { seq: e.seq, receipt, payout }))
}
