//! The hub's durable ledger.
//!
//! The pure ledger state machine lives in `infhub_core::ledger`; this crate makes it durable.
//! Commands are applied in memory, in batches; the successful ones are appended to a
//! checksummed log and made durable with one fsync per batch (group commit) before any of the
//! batch's results is returned. Periodic snapshots bound restart time and let old log segments
//! be deleted. On open, a torn or corrupt tail is detected by checksums and truncated to the
//! last complete record, and the log after the newest snapshot is replayed; each replayed
//! command must reproduce the outcome stored with it.
//!
//! Storage sits behind the [`store::LogStore`] trait: the embedded file store
//! ([`file::FileStore`]) and, in `infhub-pg`, PostgreSQL.

pub mod durable;
pub mod file;
pub mod fs;
pub mod history;
pub mod simfs;
pub mod store;
pub mod testkit;

pub use durable::{DurableLedger, DurableParams, Executed};
pub use store::{LogRecord, LogStore, StoreError};
