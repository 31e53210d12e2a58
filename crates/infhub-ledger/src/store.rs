//! The storage trait the durable ledger writes through, and the record it stores.
//!
//! A record is one applied command with everything it produced, including every signed proof
//! the hub received (the debit inside the command) or issued (receipts, credits, co-signatures
//! inside the outcome): seed 000 asks the hub to keep every "update credential" and the history.

use infhub_core::ledger::{Command, Outcome};
use infhub_core::Address;
use serde::{Deserialize, Serialize};

/// One applied command, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The ledger sequence number the command received.
    pub seq: u64,
    /// When its batch was committed, in milliseconds since the Unix epoch (the writer's wall
    /// clock; never earlier than the record before it).
    pub at_ms: u64,
    /// The command, with any proof the hub received.
    pub command: Command,
    /// What it produced, with every proof the hub issued.
    pub outcome: Outcome,
}

impl LogRecord {
    /// The accounts (channels and custodial accounts) whose state this record changed.
    pub fn accounts(&self) -> Vec<Address> {
        let mut out = Vec::new();
        match &self.command {
            Command::Transfer(d) => out.extend([d.message.user, d.message.recipient]),
            Command::Purchase { user, .. } => out.push(*user),
            Command::Withdraw { withdrawal, .. } => out.push(withdrawal.user),
            Command::OpenCustodial { account, .. } | Command::RotateCustodialKey { account, .. } => {
                out.push(*account);
            }
            Command::CustodialTransfers(batch) => out.extend(batch.iter().flat_map(|t| [t.from, t.to])),
            Command::CustodialWithdraw { from, .. } => out.push(*from),
            Command::ConvertToChannel { account, user, .. } => out.extend([*account, *user]),
            Command::Chain { event, .. } => out.extend(event.account()),
            Command::DebitLock { debit, .. } => out.push(debit.message.user),
            Command::CreditLock { user, .. } | Command::CollectedTransfer { payee: user, .. } => out.push(*user),
            Command::SetFrozen { account, .. } => out.push(*account),
            Command::LockScalarLearned { payer, .. } => out.push(*payer),
            Command::CancelForwardedLock { debit } => out.push(debit.message.user),
            Command::LockedTransfer { debit, payee, .. } => out.extend([debit.message.user, *payee]),
            Command::Block(_)
            | Command::SealProofs
            | Command::TakePayoutBatch { .. }
            | Command::EarmarkReserveWithdrawal { .. }
            | Command::ReleaseReserveEarmark
            | Command::CheckpointBuilt(_) => {}
        }
        if let Outcome::Applied(effects) = &self.outcome {
            out.extend(effects.iter().map(|(user, _)| *user));
        }
        out
    }
}

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused a read, write or sync.
    #[error("storage io error: {0}")]
    Io(#[from] std::io::Error),
    /// A record or snapshot in the middle of the log failed its checksum or could not be decoded:
    /// data written and synced earlier is damaged. The node refuses to start rather than guess.
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// A replayed command did not reproduce its stored outcome (a bug, or foreign data).
    #[error("replay diverged at seq {seq}: {detail}")]
    ReplayDiverged {
        /// Where.
        seq: u64,
        /// What differed.
        detail: String,
    },
    /// The database behind a database store refused, failed or could not be reached. Nothing
    /// of the batch in hand is acknowledged.
    #[error("storage database error: {0}")]
    Database(String),
    /// Another writer took the store's writer lease (a failover): this writer must stop and
    /// never write again; what it had not committed is not acknowledged.
    #[error("storage fenced: {0}")]
    Fenced(String),
    /// Another live writer holds the store's writer lease: this one must not write (stop the
    /// other, or wait for its lease as a standby).
    #[error("storage lease held: {0}")]
    LeaseHeld(String),
    /// A record or snapshot exceeds the configured size limit.
    #[error("record too large: {0} bytes")]
    RecordTooLarge(usize),
    /// A file of the data directory was written in another format of the store (an earlier
    /// version of infhub). Nothing is decoded; the directory must be migrated or started anew.
    #[error(
        "{path} is in store format {found}; this build reads format {expected} (written by another version of \
         infhub: settle the old hub's channels with it, or start this one on a new data directory)"
    )]
    FormatMismatch {
        /// The file.
        path: String,
        /// Its format.
        found: String,
        /// The format this build reads.
        expected: String,
    },
}

/// Writes one snapshot's bytes durably, from any thread (see
/// [`LogStore::begin_detached_snapshot`]).
pub struct SnapshotWriter {
    write: WriteSnapshot,
}

/// Writes an encoded ledger durably.
type WriteSnapshot = Box<dyn FnOnce(&[u8]) -> Result<(), StoreError> + Send>;

impl SnapshotWriter {
    /// A writer that runs `write` with the encoded ledger.
    pub fn new(write: impl FnOnce(&[u8]) -> Result<(), StoreError> + Send + 'static) -> SnapshotWriter {
        SnapshotWriter { write: Box::new(write) }
    }

    /// Writes the encoded ledger; the snapshot is durable when this returns Ok.
    pub fn write(self, ledger_bytes: &[u8]) -> Result<(), StoreError> {
        (self.write)(ledger_bytes)
    }
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotWriter")
    }
}

/// What the durable ledger needs from storage.
pub trait LogStore {
    /// Appends `records` (in order, contiguous sequence numbers) and makes them durable before
    /// returning. Either all of them are durable afterwards or an error is returned.
    fn append(&mut self, records: &[LogRecord]) -> Result<(), StoreError>;

    /// Durably stores a snapshot of the ledger as of `seq` (all records `<= seq` applied), then
    /// may drop log records `<= seq`.
    fn write_snapshot(&mut self, seq: u64, ledger_bytes: &[u8]) -> Result<(), StoreError>;

    /// Starts a snapshot as of `seq` whose bytes are encoded and written on another thread,
    /// so the caller keeps appending meanwhile: records after `seq` go where the snapshot will
    /// not cover them. Returns the writer to hand to that thread, or None if this store cannot
    /// write from another thread (then use [`LogStore::write_snapshot`]). Nothing is dropped
    /// until [`LogStore::finish_detached_snapshot`].
    fn begin_detached_snapshot(&mut self, _seq: u64) -> Result<Option<SnapshotWriter>, StoreError> {
        Ok(None)
    }

    /// After a detached snapshot's writer succeeded (its file is durable): may drop log
    /// records `<= seq` and older snapshots, as [`LogStore::write_snapshot`] does.
    fn finish_detached_snapshot(&mut self, _seq: u64) -> Result<(), StoreError> {
        Ok(())
    }

    /// The newest intact snapshot (its seq and bytes), if any.
    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// Every record with `seq > after`, in order, after truncating a torn tail.
    fn load_records(&mut self, after: u64) -> Result<Vec<LogRecord>, StoreError>;

    /// Counters for monitoring and benchmarks.
    fn stats(&self) -> StoreStats;

    /// Every record the store still keeps (archived and live), in order: the account history.
    fn history(&mut self) -> Result<Vec<LogRecord>, StoreError>;

    /// Whether the store knows, without being asked to write, that another writer took it
    /// over (a database store's lease renewal found it taken): this writer must stop.
    fn fenced(&self) -> bool {
        false
    }
}

/// Counters of a store since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of `fsync`/`fdatasync` calls for appends.
    pub syncs: u64,
    /// Records appended.
    pub records: u64,
    /// Bytes appended.
    pub bytes: u64,
    /// Bytes of torn tail truncated at open.
    pub truncated_bytes: u64,
}

impl<S: LogStore + ?Sized> LogStore for Box<S> {
    fn append(&mut self, records: &[LogRecord]) -> Result<(), StoreError> {
        (**self).append(records)
    }

    fn write_snapshot(&mut self, seq: u64, ledger_bytes: &[u8]) -> Result<(), StoreError> {
        (**self).write_snapshot(seq, ledger_bytes)
    }

    fn begin_detached_snapshot(&mut self, seq: u64) -> Result<Option<SnapshotWriter>, StoreError> {
        (**self).begin_detached_snapshot(seq)
    }

    fn finish_detached_snapshot(&mut self, seq: u64) -> Result<(), StoreError> {
        (**self).finish_detached_snapshot(seq)
    }

    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        (**self).load_snapshot()
    }

    fn load_records(&mut self, after: u64) -> Result<Vec<LogRecord>, StoreError> {
        (**self).load_records(after)
    }

    fn stats(&self) -> StoreStats {
        (**self).stats()
    }

    fn history(&mut self) -> Result<Vec<LogRecord>, StoreError> {
        (**self).history()
    }

    fn fenced(&self) -> bool {
        (**self).fenced()
    }
}

/// Reads stored records by sequence number beside the writer (the account history's reads):
/// the file store's segments through their offset indexes, or a database's rows over a
/// connection of its own. Only records already appended may be asked for.
pub trait RecordSource: Send + Sync {
    /// The seq of the oldest record kept (None: none yet).
    fn first_seq(&self) -> Result<Option<u64>, StoreError>;

    /// The records `first..=last`, in order (empty when `last < first`). Fails by name when
    /// one is not kept.
    fn read_range(&self, first: u64, last: u64) -> Result<Vec<LogRecord>, StoreError>;
}
