//! The hub's durable state: the ledger over its log, and the account history indexed from the
//! same log, opened and committed together.
//!
//! [`HubLedger::commit`] runs one group commit: the commands are applied in order, the batch is
//! made durable with one sync, the history indexes it, and the caller gets one [`Commit`] with
//! every command's result and sequence number, the notices for subscribers and the timings. A
//! storage failure stops the ledger: nothing of that batch was acknowledged, and every later
//! commit is refused until the process reopens it from the log (the only way to know what the
//! disk holds). A history failure after a durable batch answers the batch and stops later ones
//! the same way.
//!
//! The file system is a parameter: the node runs on the operating system's, the simulator on
//! its crashing simulated disk, so a restart is tested with the same code that runs. The log
//! is the embedded file store in the data directory, or any other [`LogStore`] with its
//! [`RecordSource`] (PostgreSQL, in the node); the history index stays in the data directory
//! either way (it is derived from the log and rebuilt from it when absent).

use crate::notice::{notices_of, Notice};
use infhub_core::channel::CheckedDebit;
use infhub_core::ledger::{Command, Ledger, LedgerParams, Outcome};
use infhub_core::{Error, PrivateKey};
use infhub_ledger::durable::{ExecuteError, Recovery};
use infhub_ledger::file::{FileStore, FileStoreOptions};
use infhub_ledger::fs::{Fs, OsFs, SharedFs};
use infhub_ledger::history::{History, HistoryError};
use infhub_ledger::store::{LogStore, RecordSource};
use infhub_ledger::{DurableLedger, DurableParams, StoreError};
use std::path::PathBuf;
use std::time::Duration;

/// Snapshots kept on disk (the newest; older ones and the log they cover are archived).
pub const SNAPSHOTS_KEPT: usize = 2;

/// Where and how the hub keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubLedgerConfig {
    /// The data directory (the log, snapshots, archive and `history/`).
    pub data_dir: PathBuf,
    /// A log segment is closed past this size.
    pub max_segment_bytes: u64,
    /// A snapshot is written every this many records (0: never); the history checkpoints at
    /// the same interval.
    pub snapshot_every_records: u64,
    /// Most commands in one group commit.
    pub max_batch_commands: usize,
    /// Snapshots are encoded and written on a thread of their own (the real file system only).
    pub background_snapshots: bool,
}

/// Why the hub's state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The log or a snapshot.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// The history index.
    #[error("history: {0}")]
    History(#[from] HistoryError),
}

/// Why a commit was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Storage failed (now or earlier): nothing of this batch is acknowledged; reopen.
    #[error("storage failed: {0}")]
    StorageFailed(String),
}

/// How long the parts of one commit took (metrics only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitTimings {
    /// Applying the commands and signing the batch (everything but the sync and snapshot).
    pub apply: Duration,
    /// Appending and syncing the records.
    pub sync: Duration,
    /// A snapshot taken by this commit.
    pub snapshot: Option<Duration>,
    /// A snapshot completed on its own thread by this commit: how long that thread worked.
    pub background_snapshot: Option<Duration>,
    /// Indexing the history.
    pub history: Duration,
}

/// A command's result and, if it changed the ledger, its sequence number.
pub type Sequenced = (Result<Outcome, Error>, Option<u64>);

/// What one group commit did.
#[derive(Debug)]
pub struct Commit {
    /// Each command's result and sequence number, in the order given.
    pub results: Vec<Sequenced>,
    /// Notices for subscribers (only when asked for).
    pub notices: Vec<Notice>,
    /// Payments applied (`Paid`).
    pub payments: u64,
    /// Timings.
    pub timings: CommitTimings,
}

/// How long opening took (a restart's figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenTimings {
    /// Loading the newest snapshot and replaying the log after it.
    pub ledger: Duration,
    /// Loading the history's checkpoint and indexing the log after it.
    pub history: Duration,
}

/// A log store the writer thread owns (readers share the ledger beside it).
pub type BoxedStore = Box<dyn LogStore + Send + Sync>;

/// The ledger and its history.
pub struct HubLedger<F: Fs + Clone = OsFs> {
    dl: DurableLedger<BoxedStore>,
    history: History<F>,
    stopped: Option<String>,
    /// The store refused a batch because another writer took its lease: this process must
    /// exit, not reopen.
    fenced: bool,
    opened: OpenTimings,
    /// The public record of blocks and chain events, for the explorer.
    chronicle: crate::chronicle::Chronicle,
}

impl<F: SharedFs> HubLedger<F> {
    /// Opens (or creates) the hub's state in `config.data_dir` on `fs`: the newest snapshot,
    /// the log after it, then the history index from its checkpoint and the log after that.
    pub fn open(
        fs: F,
        config: &HubLedgerConfig,
        params: LedgerParams,
        key: PrivateKey,
    ) -> Result<HubLedger<F>, OpenError> {
        fs.create_dir_all(&config.data_dir).map_err(StoreError::Io)?;
        let options = FileStoreOptions {
            max_segment_bytes: config.max_segment_bytes,
            snapshots_kept: SNAPSHOTS_KEPT,
            archive_compacted: true,
        };
        let store = FileStore::open_on(fs.clone(), config.data_dir.clone(), options)?;
        let records = store.reader();
        HubLedger::open_on_store(fs, config, params, key, Box::new(store), records)
    }
}

impl<F: Fs + Clone> HubLedger<F> {
    /// Opens the hub's state from `store` (the newest snapshot, the log after it), then the
    /// history index in `config.data_dir` on `fs` from its checkpoint and the records after it,
    /// read through `records` (the same store's records, read beside the writer).
    pub fn open_on_store(
        fs: F,
        config: &HubLedgerConfig,
        params: LedgerParams,
        key: PrivateKey,
        store: BoxedStore,
        records: impl RecordSource + 'static,
    ) -> Result<HubLedger<F>, OpenError> {
        let start = std::time::Instant::now();
        fs.create_dir_all(&config.data_dir).map_err(StoreError::Io)?;
        let durable = DurableParams {
            snapshot_every_records: config.snapshot_every_records,
            max_batch_commands: config.max_batch_commands,
        };
        let mut dl = DurableLedger::open(store, params, key, durable)?;
        dl.set_background_snapshots(config.background_snapshots);
        let ledger_opened = start.elapsed();
        let history = History::open_on(
            fs,
            &config.data_dir.join("history"),
            records,
            params.domain,
            dl.ledger().next_seq - 1,
            config.snapshot_every_records,
        )?;
        assert_eq!(history.last_seq(), dl.ledger().next_seq - 1, "the history must index the whole log");
        let opened = OpenTimings { ledger: ledger_opened, history: start.elapsed().saturating_sub(ledger_opened) };
        let mut chronicle = crate::chronicle::Chronicle::default();
        let last = dl.ledger().next_seq - 1;
        if last > 0 {
            let first = last.saturating_sub(crate::chronicle::REBUILD_RECORDS - 1).max(1);
            match history.reader().records(first, last) {
                Ok(records) => chronicle.observe(&records),
                // The explorer starts empty; the ledger and its history are whole.
                Err(e) => tracing::warn!(error = %e, "the explorer's blocks not rebuilt from the log"),
            }
        }
        Ok(HubLedger { dl, history, stopped: None, fenced: false, opened, chronicle })
    }

    /// Replaces the clock the ledger stamps its batches with (a simulation's own).
    pub fn set_clock(&mut self, clock: infhub_ledger::durable::Clock) {
        self.dl.set_clock(clock);
    }

    /// How long the open took.
    pub fn open_timings(&self) -> OpenTimings {
        self.opened
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        self.dl.ledger()
    }

    /// The public record of blocks and chain events (the explorer's).
    pub fn chronicle(&self) -> &crate::chronicle::Chronicle {
        &self.chronicle
    }

    /// The history index.
    pub fn history(&self) -> &History<F> {
        &self.history
    }

    /// The durable ledger (store statistics, recovery figures).
    pub fn durable(&self) -> &DurableLedger<BoxedStore> {
        &self.dl
    }

    /// What the last open recovered.
    pub fn recovery(&self) -> Recovery {
        self.dl.recovery()
    }

    /// Whether another writer took the store's lease (this process must stop): a write was
    /// refused for it, or the store found it out by itself.
    pub fn fenced(&self) -> bool {
        self.fenced || self.dl.store().fenced()
    }

    /// Why commits are refused, if they are.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Applies `commands` in order as one durable batch (a transfer's debit may come with its
    /// signature already checked) and indexes it; with `notices`, also builds the notices.
    pub fn commit(
        &mut self,
        commands: Vec<(Command, Option<CheckedDebit>)>,
        notices: bool,
    ) -> Result<Commit, CommitError> {
        if let Some(reason) = &self.stopped {
            return Err(CommitError::StorageFailed(reason.clone()));
        }
        let start = std::time::Instant::now();
        let executed = match self.dl.execute_checked(commands) {
            Ok(e) => e,
            Err(e) => {
                let reason = e.to_string();
                self.fenced = matches!(e, ExecuteError::Store(StoreError::Fenced(_)));
                tracing::error!(%reason, "ledger storage failed; refusing all writes until restart");
                self.stopped = Some(reason.clone());
                return Err(CommitError::StorageFailed(reason));
            }
        };
        let elapsed = start.elapsed();
        let history_start = std::time::Instant::now();
        // The batch is durable: it is answered even if its history cannot be indexed; later
        // commits are refused until a restart indexes it from the log.
        if let Err(e) = self.history.add_batch(&executed.records) {
            let reason = format!("history index: {e}");
            tracing::error!(%reason, "history index failed; refusing all writes until restart");
            self.stopped = Some(reason);
        }
        let history = history_start.elapsed();
        self.chronicle.observe(&executed.records);
        let mut out = Vec::new();
        let mut payments = 0;
        for r in &executed.records {
            payments += matches!(r.outcome, Outcome::Paid { .. }) as u64;
            if notices {
                notices_of(r, &mut out);
            }
        }
        let timings = CommitTimings {
            apply: elapsed.saturating_sub(executed.append).saturating_sub(executed.snapshot.unwrap_or_default()),
            sync: executed.append,
            snapshot: executed.snapshot,
            background_snapshot: executed.background_snapshot,
            history,
        };
        Ok(Commit { results: executed.sequenced(), notices: out, payments, timings })
    }

    /// [`HubLedger::commit`] without pre-checked signatures or notices: the results only.
    pub fn execute(&mut self, commands: Vec<Command>) -> Result<Vec<Result<Outcome, Error>>, CommitError> {
        let commit = self.commit(commands.into_iter().map(|c| (c, None)).collect(), false)?;
        Ok(commit.results.into_iter().map(|(r, _)| r).collect())
    }

    /// Writes a snapshot and a history checkpoint now (tools and the restart benchmark).
    pub fn snapshot(&mut self) -> Result<(), OpenError> {
        self.dl.snapshot()?;
        self.history.checkpoint()?;
        Ok(())
    }
}
