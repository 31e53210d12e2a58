//! The core's ledger made durable: batches of commands, group commit, snapshots and recovery.
//!
//! [`DurableLedger::execute`] applies a batch of commands in memory in order, appends the ones
//! that changed the ledger to the store with one sync, and only then returns their results: a
//! result returned is a result that survives a crash. If the store fails, the in-memory ledger
//! may be ahead of the disk, so the ledger poisons itself and refuses further work; the node
//! restarts and recovers from the store.

use crate::store::{LogRecord, LogStore, StoreError, StoreStats};
use infhub_core::channel::CheckedDebit;
use infhub_core::ledger::{Command, Ledger, LedgerParams, Outcome};
use infhub_core::{Error, PrivateKey};

/// Durability settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableParams {
    /// A snapshot is written after this many records (0 = never automatically).
    pub snapshot_every_records: u64,
    /// Most commands accepted in one batch.
    pub max_batch_commands: usize,
}

impl Default for DurableParams {
    fn default() -> Self {
        DurableParams { snapshot_every_records: 1_000_000, max_batch_commands: 8_192 }
    }
}

/// What opening found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Seq of the snapshot loaded (0 = none).
    pub snapshot_seq: u64,
    /// Records replayed after it.
    pub replayed: u64,
}

/// The durable ledger.
pub struct DurableLedger<S: LogStore> {
    ledger: Ledger,
    store: S,
    hub_key: PrivateKey,
    params: DurableParams,
    records_since_snapshot: u64,
    poisoned: bool,
    recovery: Recovery,
    last_batch: Vec<LogRecord>,
    last_seqs: Vec<Option<u64>>,
}

/// Why a batch could not be executed at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// Storage failed; nothing of this batch was acknowledged. The ledger must be reopened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An earlier storage failure left memory ahead of disk; reopen the ledger.
    #[error("ledger poisoned by an earlier storage failure; reopen it")]
    Poisoned,
    /// More commands than `max_batch_commands`.
    #[error("batch of {0} commands exceeds the limit")]
    BatchTooLarge(usize),
}

impl<S: LogStore> DurableLedger<S> {
    /// Opens the ledger from `store`: loads the newest snapshot and replays the log after it,
    /// checking that every replayed command reproduces its stored outcome.
    pub fn open(
        mut store: S,
        ledger_params: LedgerParams,
        hub_key: PrivateKey,
        params: DurableParams,
    ) -> Result<Self, StoreError> {
        assert_eq!(hub_key.address(), ledger_params.hub, "hub key does not match the ledger's hub address");
        let (mut ledger, snapshot_seq) = match store.load_snapshot()? {
            Some((seq, bytes)) => {
                let ledger: Ledger =
                    bincode::deserialize(&bytes).map_err(|e| StoreError::Corrupt(format!("snapshot {seq}: {e}")))?;
                if ledger.params != ledger_params {
                    return Err(StoreError::Corrupt(format!(
                        "snapshot {seq} belongs to another hub or configuration: {:?}",
                        ledger.params
                    )));
                }
                if ledger.next_seq != seq + 1 {
                    return Err(StoreError::Corrupt(format!("snapshot {seq} holds ledger at seq {}", ledger.next_seq)));
                }
                (ledger, seq)
            }
            None => (Ledger::new(ledger_params), 0),
        };
        let records = store.load_records(snapshot_seq)?;
        let replayed = records.len() as u64;
        for r in records {
            if r.seq != ledger.next_seq {
                return Err(StoreError::ReplayDiverged {
                    seq: r.seq,
                    detail: format!("ledger at {}", ledger.next_seq),
                });
            }
            match ledger.apply(&hub_key, r.command.clone()) {
                Ok(out) if out == r.outcome => {}
                Ok(out) => {
                    return Err(StoreError::ReplayDiverged {
                        seq: r.seq,
                        detail: format!("stored {:?}, replay gave {out:?}", r.outcome),
                    })
                }
                Err(e) => {
                    return Err(StoreError::ReplayDiverged { seq: r.seq, detail: format!("replay refused: {e}") })
                }
            }
        }
        ledger.check_invariants();
        Ok(DurableLedger {
            ledger,
            store,
            hub_key,
            params,
            records_since_snapshot: replayed,
            poisoned: false,
            recovery: Recovery { snapshot_seq, replayed },
            last_batch: Vec::new(),
            last_seqs: Vec::new(),
        })
    }

    /// The ledger (read-only: every change goes through `execute`).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// What opening found.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Storage counters.
    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// Applies `commands` in order; the results are durable when this returns.
    pub fn execute(&mut self, commands: Vec<Command>) -> Result<Vec<Result<Outcome, Error>>, ExecuteError> {
        self.execute_checked(commands.into_iter().map(|c| (c, None)).collect())
    }

    /// Like [`DurableLedger::execute`], with transfers' signatures already checked where a
    /// [`CheckedDebit`] is given (see [`Ledger::apply_checked`]).
    pub fn execute_checked(
        &mut self,
        commands: Vec<(Command, Option<CheckedDebit>)>,
    ) -> Result<Vec<Result<Outcome, Error>>, ExecuteError> {
        if self.poisoned {
            return Err(ExecuteError::Poisoned);
        }
        if commands.len() > self.params.max_batch_commands {
            return Err(ExecuteError::BatchTooLarge(commands.len()));
        }
        self.last_batch.clear();
        self.last_seqs.clear();
        let mut results = Vec::with_capacity(commands.len());
        let mut records = Vec::new();
        for (command, checked) in commands {
            let seq = self.ledger.next_seq;
            let result = self.ledger.apply_checked(&self.hub_key, command.clone(), checked);
            if self.ledger.next_seq != seq {
                assert_eq!(self.ledger.next_seq, seq + 1, "a command took more than one sequence number");
                let outcome = result.clone().expect("only successful commands advance the sequence");
                records.push(LogRecord { seq, command, outcome });
                self.last_seqs.push(Some(seq));
            } else {
                self.last_seqs.push(None);
            }
            results.push(result);
        }
        if let Err(e) = self.store.append(&records) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.records_since_snapshot += records.len() as u64;
        self.last_batch = records;
        if self.params.snapshot_every_records != 0 && self.records_since_snapshot >= self.params.snapshot_every_records
        {
            if let Err(e) = self.snapshot() {
                // The batch is durable in the log; only the snapshot failed.
                self.poisoned = true;
                return Err(e.into());
            }
        }
        Ok(results)
    }

    /// For each command of the last successful `execute`, the sequence number it was logged
    /// at (None: it changed nothing, e.g. refused or a duplicate).
    pub fn last_seqs(&self) -> &[Option<u64>] {
        &self.last_seqs
    }

    /// The records the last successful `execute` made durable (the commands that changed the
    /// ledger, with their outcomes and sequence numbers).
    pub fn last_batch(&self) -> &[LogRecord] {
        &self.last_batch
    }

    /// Every record the store keeps (see [`LogStore::history`]).
    pub fn history(&mut self) -> Result<Vec<LogRecord>, StoreError> {
        self.store.history()
    }

    /// Writes a snapshot of the current ledger and lets the store drop the log it covers.
    pub fn snapshot(&mut self) -> Result<(), StoreError> {
        self.ledger.check_invariants();
        let bytes =
            bincode::serialize(&self.ledger).map_err(|e| StoreError::Corrupt(format!("encode snapshot: {e}")))?;
        self.store.write_snapshot(self.ledger.next_seq - 1, &bytes)?;
        self.records_since_snapshot = 0;
        Ok(())
    }
}
