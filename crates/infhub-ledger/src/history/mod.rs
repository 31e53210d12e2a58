//! Account history, served from disk: every ledger record turned into per-account entries that
//! carry the signed proofs (the user's debit, the hub's credit and receipt, co-signed
//! withdrawals). The records stay in the log (archive and live segments) alone; this module
//! keeps an index beside it, `history/entries.bin`, of per-account lists of seqs, each entry
//! linked to the previous one and to one further back, so a page before any seq is found in
//! O(log² n) reads. A checkpoint (the lists' heads) is written every few records, so a start
//! indexes only the log after it: restart time and memory do not grow with the history. The
//! writer extends the index after every group commit, so it holds exactly what is durable.
//! It also answers a retried payment or purchase with the first result (read back from the
//! log, its proofs signed by the seal of their batch).
//!
//! Three parts: the pure projection of records onto accounts ([`projection`]), the on-disk
//! index through [`crate::fs::Fs`] ([`index`]), and statements ([`statement`]).

pub mod index;
pub mod projection;
pub mod statement;

pub use index::{Heads, History, HistoryError, HistoryReader, ListHead};
pub use infhub_core::time::{parse_utc_time, utc_time, RangeEnd};
pub use projection::{EntryKind, EntryProofs, FirstResult, HistoryEntry, PaymentResult};
pub use statement::{statement, statement_between, statement_csv, StatementLine};
