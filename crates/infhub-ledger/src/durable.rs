//! The core's ledger made durable: batches of commands, group commit, snapshots and recovery.
//!
//! [`DurableLedger::execute`] applies a batch of commands in memory in order, appends the ones
//! that changed the ledger to the store with one sync, and only then returns their results: a
//! result returned is a result that survives a crash. If the store fails, the in-memory ledger
//! may be ahead of the disk, so the ledger poisons itself and refuses further work; the node
//! restarts and recovers from the store.

use crate::store::{LogRecord, LogStore, StoreError, StoreStats};
use infhub_core::channel::CheckedDebit;
use infhub_core::ledger::{fill_proofs, Command, Ledger, LedgerParams, Outcome, SealedBatch};
use infhub_core::merkle::MAX_UNSEALED_PROOFS;
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
    /// The log ended inside a batch (a crash before its seal): opening sealed its proofs
    /// with a new record.
    pub sealed_on_open: bool,
}

/// Fills the batch signatures and paths into `records` (in seq order): each run of records
/// up to a [`Outcome::Sealed`] is one batch. Records after the last seal (a history that
/// begins or ends mid-batch, which a crash before the seal leaves: nothing of it was
/// acknowledged) keep their proofs unsigned.
pub fn fill_sealed(domain: &infhub_core::Domain, records: &mut [LogRecord]) -> Result<(), String> {
    let mut start = 0;
    for i in 0..records.len() {
        if !matches!(records[i].outcome, Outcome::Sealed { .. }) {
            continue;
        }
        let (batch, rest) = records.split_at_mut(i);
        let mut outcomes: Vec<&mut Outcome> = batch[start..].iter_mut().map(|r| &mut r.outcome).collect();
        let filled = fill_proofs(domain, &mut outcomes, &rest[0].outcome);
        // A history that does not start at seq 1 (no archive) may start inside a batch, whose
        // first proofs it then lacks; those records keep their proofs unsigned.
        let starts_inside_a_batch = start == 0 && batch.first().is_some_and(|r| r.seq != 1);
        if !starts_inside_a_batch {
            filled.map_err(|e| format!("seal at seq {}: {e}", rest[0].seq))?;
        }
        start = i + 1;
    }
    Ok(())
}

/// The signature check of every transfer among `records` (None for other commands, and for a
/// debit whose check fails: the replay then names the rule it breaks), spread over the cores.
fn check_debits_in_parallel(records: &[LogRecord], domain: &infhub_core::Domain) -> Vec<Option<CheckedDebit>> {
    let check = |r: &LogRecord| match &r.command {
        Command::Transfer(debit) => CheckedDebit::check(*debit, domain).ok(),
        _ => None,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || records.len() < 1_024 {
        return records.iter().map(check).collect();
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> =
            records.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(check).collect::<Vec<_>>())).collect();
        parts.into_iter().flat_map(|p| p.join().expect("a signature-check thread panicked")).collect()
    })
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
    /// Whether snapshots are encoded and written on a thread of their own.
    background_snapshots: bool,
    /// The snapshot being written on its own thread, if any (at most one at a time).
    in_flight: Option<InFlightSnapshot>,
    /// The records of the batch whose append failed: applied in memory, not acknowledged,
    /// and perhaps not durable (see [`DurableLedger::unconfirmed`]).
    unconfirmed: Vec<LogRecord>,
    /// Where the commit time of a batch comes from (the seam the simulator replaces).
    clock: Clock,
    /// The newest commit time logged: a batch is never logged earlier (a clock stepping back
    /// does not reorder time, so a date range is a range of sequence numbers).
    last_at_ms: u64,
}

/// The wall clock a durable ledger stamps its batches with, in milliseconds since the Unix
/// epoch: the system's, or one the caller gives (a simulation's).
pub type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// The system's wall clock in milliseconds since the Unix epoch (0 before it).
pub fn system_clock_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<S: LogStore> Drop for DurableLedger<S> {
    /// A snapshot still being written is finished first, so no thread of this ledger touches
    /// its files after it is gone (a reopen in the same process must not race it).
    fn drop(&mut self) {
        if let Some(f) = self.in_flight.take() {
            if let Ok(Ok(_)) = f.thread.join() {
                let _ = self.store.finish_detached_snapshot(f.seq);
            }
        }
    }
}

/// A snapshot whose copy of the ledger is being checked, encoded and written elsewhere.
struct InFlightSnapshot {
    seq: u64,
    thread: std::thread::JoinHandle<Result<std::time::Duration, StoreError>>,
}

/// What one durable batch did: every command's result, in order, and what was logged.
#[derive(Debug)]
pub struct Executed {
    /// Each command's result (proofs signed), in the order given.
    pub results: Vec<Result<Outcome, Error>>,
    /// For each command, the sequence number it was logged at (None: it changed nothing, e.g.
    /// refused or a duplicate).
    pub seqs: Vec<Option<u64>>,
    /// The records made durable (the commands that changed the ledger and the seals), in
    /// sequence order, with their proofs signed.
    pub records: Vec<LogRecord>,
    /// Time spent appending the records and waiting for their sync (a metric only).
    pub append: std::time::Duration,
    /// Time spent on a snapshot taken by this batch, if it took one (a metric only).
    pub snapshot: Option<std::time::Duration>,
    /// If this batch completed a snapshot written on its own thread: how long that thread
    /// worked on it (check, encode, write, sync; a metric only).
    pub background_snapshot: Option<std::time::Duration>,
}

impl Executed {
    /// Each result with its sequence number.
    pub fn sequenced(self) -> Vec<(Result<Outcome, Error>, Option<u64>)> {
        self.results.into_iter().zip(self.seqs).collect()
    }
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
                let mut ledger: Ledger =
                    bincode::deserialize(&bytes).map_err(|e| StoreError::Corrupt(format!("snapshot {seq}: {e}")))?;
                ledger.rebuild_indexes();
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
        let last_at_ms = records.last().map_or(0, |r| r.at_ms);
        // The debits' signatures are checked on every core first; the apply stays in order.
        let checks = check_debits_in_parallel(&records, &ledger.params.domain);
        for (r, checked) in records.into_iter().zip(checks) {
            if r.seq != ledger.next_seq {
                return Err(StoreError::ReplayDiverged {
                    seq: r.seq,
                    detail: format!("ledger at {}", ledger.next_seq),
                });
            }
            match ledger.apply_checked(&hub_key, r.command.clone(), checked) {
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
        let mut dl = DurableLedger {
            ledger,
            store,
            hub_key,
            params,
            records_since_snapshot: replayed,
            poisoned: false,
            unconfirmed: Vec::new(),
            recovery: Recovery { snapshot_seq, replayed, sealed_on_open: false },
            background_snapshots: false,
            in_flight: None,
            clock: Box::new(system_clock_ms),
            last_at_ms,
        };
        // A crash can leave a batch's records without their seal (none of them was
        // acknowledged); seal them now so no stored credit stays unsigned.
        if dl.ledger.unsealed_proofs() > 0 {
            let at_ms = dl.commit_time();
            let (seal, _) = dl.seal(at_ms);
            dl.store.append(std::slice::from_ref(&seal))?;
            dl.records_since_snapshot += 1;
            dl.recovery.sealed_on_open = true;
        }
        Ok(dl)
    }

    /// Replaces the clock batches are stamped with (a simulation's own time).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// The time to stamp the next batch with: the clock's, never before the last one logged.
    fn commit_time(&mut self) -> u64 {
        self.last_at_ms = self.last_at_ms.max((self.clock)());
        self.last_at_ms
    }

    /// The ledger (read-only: every change goes through `execute`).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The store (read-only: appends go through `execute`).
    pub fn store(&self) -> &S {
        &self.store
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
        Ok(self.execute_checked(commands.into_iter().map(|c| (c, None)).collect())?.results)
    }

    /// Like [`DurableLedger::execute`], with transfers' signatures already checked where a
    /// [`CheckedDebit`] is given (see [`Ledger::apply_checked`]).
    pub fn execute_checked(
        &mut self,
        commands: Vec<(Command, Option<CheckedDebit>)>,
    ) -> Result<Executed, ExecuteError> {
        if self.poisoned {
            return Err(ExecuteError::Poisoned);
        }
        if commands.len() > self.params.max_batch_commands {
            return Err(ExecuteError::BatchTooLarge(commands.len()));
        }
        // A snapshot written meanwhile is completed (or its failure reported) before anything
        // of this batch is applied.
        let mut background_snapshot = None;
        if self.in_flight.as_ref().is_some_and(|f| f.thread.is_finished()) {
            match self.complete_snapshot() {
                Ok(worked) => background_snapshot = worked,
                Err(e) => {
                    self.poisoned = true;
                    return Err(e.into());
                }
            }
        }
        let mut seqs = Vec::with_capacity(commands.len());
        let mut results = Vec::with_capacity(commands.len());
        let mut records = Vec::with_capacity(commands.len() + 1);
        // Each seal with the index in `records` of the first record it covers.
        let mut seals: Vec<(usize, SealedBatch)> = Vec::new();
        let mut batch_start = 0;
        let at_ms = self.commit_time();
        for (command, checked) in commands {
            let seq = self.ledger.next_seq;
            let result = self.ledger.apply_checked(&self.hub_key, command.clone(), checked);
            if self.ledger.next_seq != seq {
                assert_eq!(self.ledger.next_seq, seq + 1, "a command took more than one sequence number");
                let outcome = result.clone().expect("only successful commands advance the sequence");
                records.push(LogRecord { seq, at_ms, command, outcome });
                seqs.push(Some(seq));
            } else {
                seqs.push(None);
            }
            results.push(result);
            if self.ledger.unsealed_proofs() >= MAX_UNSEALED_PROOFS {
                let (record, batch) = self.seal(at_ms);
                records.push(record);
                seals.push((batch_start, batch));
                batch_start = records.len();
            }
        }
        // One signature for every credit and receipt of the batch (see `infhub_core::merkle`).
        if self.ledger.unsealed_proofs() > 0 {
            let (record, batch) = self.seal(at_ms);
            records.push(record);
            seals.push((batch_start, batch));
        }
        let append_start = std::time::Instant::now();
        if let Err(e) = self.store.append(&records) {
            self.poisoned = true;
            self.unconfirmed = records;
            return Err(e.into());
        }
        let append = append_start.elapsed();
        self.records_since_snapshot += records.len() as u64;
        // The log keeps the proofs unsigned (the seal record signs them); the answers and
        // records returned carry them signed. Records between the last seal and the end issued no
        // proofs (else they would have been sealed).
        let mut end = records.len();
        for (start, batch) in seals.iter().rev() {
            let covered = &mut records[*start..end];
            let mut outcomes: Vec<&mut Outcome> = covered.iter_mut().map(|r| &mut r.outcome).collect();
            batch.fill(&mut outcomes);
            end = *start;
        }
        for (result, seq) in results.iter_mut().zip(&seqs) {
            if let (Ok(outcome), Some(seq)) = (result, seq) {
                let i = records.binary_search_by_key(seq, |r| r.seq).expect("every logged command is in the batch");
                *outcome = records[i].outcome.clone();
            }
        }
        let mut snapshot = None;
        if self.params.snapshot_every_records != 0 && self.records_since_snapshot >= self.params.snapshot_every_records
        {
            let snapshot_start = std::time::Instant::now();
            let taken = if self.background_snapshots {
                self.start_background_snapshot()
            } else {
                self.snapshot().map(|()| true)
            };
            match taken {
                Ok(true) => snapshot = Some(snapshot_start.elapsed()),
                // One is still being written: this one is left for a later commit.
                Ok(false) => {}
                Err(e) => {
                    // The batch is durable in the log; only the snapshot failed.
                    self.poisoned = true;
                    return Err(e.into());
                }
            }
        }
        Ok(Executed { results, seqs, records, append, snapshot, background_snapshot })
    }

    /// The records of the batch whose append failed (empty unless that poisoned the ledger):
    /// the in-memory ledger holds their effects, but nothing of them was acknowledged and the
    /// store may not have them. Whoever reads the ledger from memory until it is reopened must
    /// not present what they touched as settled ([`LogRecord::accounts`]).
    pub fn unconfirmed(&self) -> &[LogRecord] {
        &self.unconfirmed
    }

    fn seal(&mut self, at_ms: u64) -> (LogRecord, SealedBatch) {
        let seq = self.ledger.next_seq;
        let (outcome, batch) = self.ledger.seal_batch(&self.hub_key).expect("waiting proofs can always be sealed");
        assert_eq!(self.ledger.next_seq, seq + 1, "a seal takes one sequence number");
        (LogRecord { seq, at_ms, command: Command::SealProofs, outcome }, batch)
    }

    /// Every record the store keeps (see [`LogStore::history`]), with the proofs of sealed
    /// batches filled in.
    pub fn history(&mut self) -> Result<Vec<LogRecord>, StoreError> {
        let mut records = self.store.history()?;
        fill_sealed(&self.ledger.params.domain, &mut records).map_err(StoreError::Corrupt)?;
        Ok(records)
    }

    /// Writes a snapshot of the current ledger and lets the store drop the log it covers.
    pub fn snapshot(&mut self) -> Result<(), StoreError> {
        self.complete_snapshot()?;
        self.ledger.check_invariants();
        assert_eq!(self.ledger.unsealed_proofs(), 0, "a snapshot between batches holds no unsealed proofs");
        let bytes =
            bincode::serialize(&self.ledger).map_err(|e| StoreError::Corrupt(format!("encode snapshot: {e}")))?;
        self.store.write_snapshot(self.ledger.next_seq - 1, &bytes)?;
        self.records_since_snapshot = 0;
        Ok(())
    }

    /// Lets snapshots be checked, encoded and written on a thread of their own, so a commit
    /// that reaches the interval pays only for copying the ledger (D27). Only where the store
    /// can write from another thread (the real file system); elsewhere snapshots stay on the
    /// caller's thread, as without this.
    pub fn set_background_snapshots(&mut self, on: bool) {
        self.background_snapshots = on;
    }

    /// Starts a snapshot of the ledger as it is now on a thread of its own; if one is still
    /// being written, this one is left for a later commit (the log keeps everything meanwhile).
    /// Returns whether a snapshot was started (or, where the store cannot write from another
    /// thread, written).
    fn start_background_snapshot(&mut self) -> Result<bool, StoreError> {
        if self.in_flight.is_some() {
            return Ok(false);
        }
        assert_eq!(self.ledger.unsealed_proofs(), 0, "a snapshot between batches holds no unsealed proofs");
        let seq = self.ledger.next_seq - 1;
        let Some(writer) = self.store.begin_detached_snapshot(seq)? else { return self.snapshot().map(|()| true) };
        let copy = self.ledger.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-snapshot".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                copy.check_invariants();
                let bytes =
                    bincode::serialize(&copy).map_err(|e| StoreError::Corrupt(format!("encode snapshot: {e}")))?;
                drop(copy);
                writer.write(&bytes)?;
                Ok(start.elapsed())
            })
            .map_err(StoreError::Io)?;
        self.in_flight = Some(InFlightSnapshot { seq, thread });
        self.records_since_snapshot = 0;
        Ok(true)
    }

    /// Waits for the snapshot being written on its own thread, if any, and once it is durable
    /// lets the store drop what it covers. Returns how long its thread worked, if there was one.
    pub fn complete_snapshot(&mut self) -> Result<Option<std::time::Duration>, StoreError> {
        let Some(InFlightSnapshot { seq, thread }) = self.in_flight.take() else { return Ok(None) };
        // A panic there is a bug (a broken invariant of the copy): it stays one here.
        let worked = match thread.join() {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        self.store.finish_detached_snapshot(seq)?;
        Ok(Some(worked))
    }
}
