//! Statements: an account's history, oldest first, with the running balance after each entry,
//! as JSON lines or CSV (custodial statements, reconciliation by hand).

use super::projection::{EntryKind, HistoryEntry};
use infhub_core::Amount;
use serde::Serialize;

/// One statement line: a history entry with the balance after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
            // A lock of the user's is held out of the balance when added, returned when dropped;
            // the hub's lock to her counts when it settles (spec §5.17a).
            EntryKind::TransferOut | EntryKind::ExternalOut | EntryKind::ConvertedOut | EntryKind::LockedOut => -a,
            EntryKind::TransferIn
            | EntryKind::Purchase
            | EntryKind::CustodialDeposited
            | EntryKind::ConvertedIn
            | EntryKind::LockSettledIn
            | EntryKind::LockDroppedOut => a,
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
            EntryKind::WithdrawalCoSigned
            | EntryKind::ExitStarted
            | EntryKind::CustodialOpened
            | EntryKind::CustodialKeyRotated
            | EntryKind::Refunded
            | EntryKind::LockedIn
            | EntryKind::LockSettledOut
            | EntryKind::LockDroppedIn
            | EntryKind::AccountFrozen
            | EntryKind::AccountUnfrozen => 0,
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
    let mut out = String::from("seq,time,kind,counterparty,payment_id,block,change,balance_after\n");
    for l in lines {
        let kind =
            serde_json::to_value(l.entry.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            l.entry.seq,
            infhub_core::time::utc_time(l.entry.at_ms),
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

/// The lines of `lines` (a whole statement, oldest first) committed within `from_ms..=to_ms`,
/// with the balance before the first of them (the opening balance).
pub fn statement_between(lines: Vec<StatementLine>, from_ms: u64, to_ms: u64) -> (Amount, Vec<StatementLine>) {
    let opening = lines.iter().take_while(|l| l.entry.at_ms < from_ms).last().map_or(Amount::ZERO, |l| l.balance_after);
    let within = lines.into_iter().filter(|l| (from_ms..=to_ms).contains(&l.entry.at_ms)).collect();
    (opening, within)
}
