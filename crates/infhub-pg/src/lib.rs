//! The ledger's store on PostgreSQL (issue 23): the [`LogStore`] the embedded file store
//! implements, on a database that can be replicated and failed over, so the hub's proofs and
//! history outlive one disk.
//!
//! One row per group commit (`batches`: the batch's first and last sequence numbers and its
//! records, each `[u32 length][bincode(LogRecord)]` as in the file log), committed in one
//! transaction: a batch is whole or absent, so there is no torn tail to cut. Rows are never
//! deleted (they are the account history the hub must keep); snapshots (`snapshots`, each
//! written as rows of `snapshot_chunks`) bound replay, and the two newest are kept. The store
//! refuses a batch that does not follow the newest stored one (`StoreError::Database`): a second writer on the same schema cannot
//! interleave its records with the first's. With a synchronous standby the store never
//! acknowledges a batch the standby did not confirm: a commit whose wait for the standby ended
//! (the commit timeout) is committed on the primary only, and the append fails so the ledger
//! stops (`require_synchronous_standby` refuses a server without one).
//!
//! One writer at a time holds the schema's writer lease (`writer_lease`: holder, epoch,
//! expiry). Opening takes it when it is free, expired, or held under the same writer name (a
//! restart), raising its epoch; a thread renews it every third of its length. Every append
//! renews it in the batch's own transaction, conditioned on the epoch this store took: once
//! another writer has taken the lease (a standby, after this process was paused or cut off past
//! the expiry), this store's next append fails with [`StoreError::Fenced`] and commits nothing,
//! so an old writer can never commit again (D37). [`PgRecords`] reads records beside the
//! writer for the account history, on a connection and thread of its own.
//!
//! The client is the synchronous `postgres` crate (tokio-postgres underneath, runtime SQL, no
//! query macros); like the file store, the store is driven from the ledger's writer thread.

pub mod formation;
pub mod lease;
pub mod monitor;
pub mod projection;
mod records;
pub mod server;

pub use records::{PgRecords, MAX_QUEUED_READS, MAX_READ_CONNECTIONS, READER_APPLICATION_NAME};

use infhub_ledger::file::MAX_RECORD_BYTES;
use infhub_ledger::store::{LogRecord, LogStore, StoreError, StoreStats};
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The format this build writes and reads, kept in the schema's `meta` table.
pub const FORMAT: &str = "infhub-pg-2";
/// Snapshots kept (the newest ones).
pub const SNAPSHOTS_KEPT: i64 = 2;
/// Longest schema name (PostgreSQL's identifier limit).
const MAX_SCHEMA_CHARS: usize = 63;

/// Where the store lives and what a commit must reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgStoreOptions {
    /// A libpq connection string or URL, e.g. `host=127.0.0.1 port=5432 user=infhub dbname=infhub`.
    pub url: String,
    /// The schema holding the store's tables (one hub per schema): lowercase letters, digits
    /// and `_`, starting with a letter or `_`.
    pub schema: String,
    /// Refuse to open unless the server commits synchronously to a standby
    /// (`synchronous_standby_names` set, `synchronous_commit` at least `on`): nothing is then
    /// acknowledged that a failover could lose.
    pub require_synchronous_standby: bool,
    /// Longest wait for a commit's confirmation by the synchronous standby (0: no limit). A
    /// commit whose standby did not confirm in time is cancelled by the store and stands on the
    /// primary only: the append fails (not replicated) and the ledger stops.
    pub commit_timeout_ms: u64,
    /// This writer's name in the lease: a writer opening under the name that holds the lease
    /// (the same node restarted) takes it at once; another waits for it to expire.
    pub writer_name: String,
    /// How long the writer lease lasts unrenewed; it is renewed every third of this. A standby
    /// takes over at most this long after the active writer stops.
    pub lease_ms: u64,
    /// A snapshot is written as rows of at most this many bytes (`snapshot_chunks`), so a
    /// ledger of any size stays under PostgreSQL's 1 GB value limit and no one message holds it
    /// whole.
    pub snapshot_chunk_bytes: usize,
    /// Connections serving history reads beside the writer's ([`PgRecords`]).
    pub read_connections: usize,
}

/// The default number of history readers' connections.
pub const READ_CONNECTIONS: usize = 4;

/// The default size of a snapshot's chunks.
pub const SNAPSHOT_CHUNK_BYTES: usize = 8 << 20;

impl PgStoreOptions {
    /// The store in `schema` at `url`: a standby not required, commits wait at most 10 s.
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> PgStoreOptions {
        PgStoreOptions {
            url: url.into(),
            schema: schema.into(),
            require_synchronous_standby: false,
            commit_timeout_ms: 10_000,
            writer_name: format!("pid-{}", std::process::id()),
            lease_ms: lease::DEFAULT_LEASE_MS,
            snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES,
            read_connections: READ_CONNECTIONS,
        }
    }
}

/// The ledger's log and snapshots in PostgreSQL.
pub struct PgStore {
    /// The writer's connection (in a mutex only so the hub's threads can share the ledger
    /// holding it: the writer alone uses it, through `&mut`).
    client: std::sync::Mutex<Conn>,
    schema: String,
    /// The newest sequence number stored (0: none).
    last_seq: u64,
    stats: StoreStats,
    /// Set by the connection when the server says it stopped waiting for a synchronous standby
    /// (the transaction committed on the primary only).
    replication_unconfirmed: Arc<AtomicBool>,
    /// Longest wait for a commit (zero: no limit).
    commit_timeout: Duration,
    /// The writer lease this store holds, renewed beside it.
    lease: lease::Lease,
    /// The append, prepared once: the lease's fence and the batch's insert in one statement.
    append_statement: postgres::Statement,
    /// Whether every append checks that the server still commits synchronously.
    require_synchronous_standby: bool,
    /// The largest row of a snapshot.
    snapshot_chunk_bytes: usize,
}

/// A connection that is closed on a thread of its own: closing the synchronous client blocks
/// on its runtime, which must not happen on an async runtime's thread (where the node drops
/// its state when it stops).
struct Conn(Option<Client>);

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            let _ = std::thread::spawn(move || drop(client)).join();
        }
    }
}

fn conn(m: &mut std::sync::Mutex<Conn>) -> &mut Client {
    m.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).0.as_mut().expect("open until dropped")
}

/// The server's words when it stops waiting for a synchronous standby (a cancelled wait, the
/// statement timeout included): the commit stands on the primary alone.
const SYNC_WAIT_CANCELLED: &str = "canceling wait for synchronous replication";

pub(crate) fn db(what: &str) -> impl Fn(postgres::Error) -> StoreError + '_ {
    move |e| match e.as_db_error() {
        Some(d) => StoreError::Database(format!("{what}: {} (SQLSTATE {})", d.message(), d.code().code())),
        None => StoreError::Database(format!("{what}: {e}")),
    }
}

pub(crate) fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Database(format!("sequence number {seq} beyond bigint")))
}

pub(crate) fn seq_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative sequence number {v} in the database")))
}

/// Checks a schema name: an unquoted PostgreSQL identifier of our own choosing.
pub fn check_schema(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= MAX_SCHEMA_CHARS {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "schema name {name:?}: use lowercase letters, digits and _, at most {MAX_SCHEMA_CHARS}"
        )))
    }
}

/// Encodes a batch's records as one row's body.
fn encode_batch(records: &[LogRecord]) -> Result<Vec<u8>, StoreError> {
    let mut body = Vec::new();
    for r in records {
        let payload = bincode::serialize(r).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))?;
        if payload.len() > MAX_RECORD_BYTES {
            return Err(StoreError::RecordTooLarge(payload.len()));
        }
        let len = u32::try_from(payload.len()).expect("at most MAX_RECORD_BYTES");
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&payload);
    }
    Ok(body)
}

/// Decodes a row's body; anything else than whole records is damage.
pub(crate) fn decode_batch(first_seq: u64, body: &[u8]) -> Result<Vec<LogRecord>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("batch at seq {first_seq}: {what}"));
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt("a cut length".into()));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_RECORD_BYTES || len > tail.len() {
            return Err(corrupt(format!("a record of {len} bytes where {} remain", tail.len())));
        }
        let record: LogRecord = bincode::deserialize(&tail[..len]).map_err(|e| corrupt(e.to_string()))?;
        out.push(record);
        rest = &tail[len..];
    }
    Ok(out)
}

/// Refuses a server that would acknowledge a commit no standby holds.
fn require_synchronous_standby(client: &mut Client) -> Result<(), StoreError> {
    let setting = |client: &mut Client, name: &str| -> Result<String, StoreError> {
        Ok(client.query_one(&format!("SHOW {name}"), &[]).map_err(db("read a setting"))?.get(0))
    };
    let names = setting(client, "synchronous_standby_names")?;
    let commit = setting(client, "synchronous_commit")?;
    if names.trim().is_empty() || !["on", "remote_write", "remote_apply"].contains(&commit.as_str()) {
        return Err(StoreError::Database(format!(
            "a synchronous standby is required but the server has synchronous_standby_names = {names:?}, \
             synchronous_commit = {commit:?}: configure a synchronous standby, or do not require one"
        )));
    }
    Ok(())
}

impl PgStore {
    /// Connects, creates the schema and tables if absent, checks the stored format, and reads
    /// the newest sequence number stored.
    pub fn open(options: &PgStoreOptions) -> Result<PgStore, StoreError> {
        check_schema(&options.schema)?;
        let mut config: postgres::Config =
            options.url.parse().map_err(|e| StoreError::Database(format!("database URL: {e}")))?;
        let replication_unconfirmed = Arc::new(AtomicBool::new(false));
        let flag = replication_unconfirmed.clone();
        config.notice_callback(move |notice| {
            if notice.message().contains(SYNC_WAIT_CANCELLED) {
                flag.store(true, Ordering::SeqCst);
            } else {
                tracing::debug!(notice = notice.message(), "postgres notice");
            }
        });
        let mut client = config.connect(NoTls).map_err(db("connect"))?;
        lease::end_stalled_transactions(&mut client, options.lease_ms)?;
        if options.require_synchronous_standby {
            require_synchronous_standby(&mut client)?;
        }
        let s = &options.schema;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL);
                 CREATE TABLE IF NOT EXISTS {s}.batches (
                     first_seq bigint PRIMARY KEY,
                     last_seq bigint NOT NULL UNIQUE CHECK (last_seq >= first_seq),
                     records bytea NOT NULL);
                 CREATE TABLE IF NOT EXISTS {s}.snapshots (seq bigint PRIMARY KEY, ledger bytea NOT NULL);
                 CREATE TABLE IF NOT EXISTS {s}.snapshot_chunks (
                     seq bigint NOT NULL, chunk int NOT NULL, bytes bytea NOT NULL, PRIMARY KEY (seq, chunk));
                 CREATE TABLE IF NOT EXISTS {s}.writer_lease (
                     id int PRIMARY KEY CHECK (id = 1),
                     holder text NOT NULL,
                     epoch bigint NOT NULL,
                     expires_at timestamptz NOT NULL);"
            ))
            .map_err(db("create the schema"))?;
        // Batches are written once and read rarely: no compression on the commit path (pglz on
        // a large batch cost the custodial path 40 % of its speed). Set once, when the table is
        // new: a DDL commit waits for the synchronous standby, which may be down at an open.
        let storage: i8 = client
            .query_one(
                &format!("SELECT attstorage FROM pg_attribute WHERE attrelid = '{s}.batches'::regclass AND attname = 'records'"),
                &[],
            )
            .map_err(db("read the batches' storage"))?
            .get(0);
        if storage != b'e' as i8 {
            client
                .batch_execute(&format!("ALTER TABLE {s}.batches ALTER COLUMN records SET STORAGE EXTERNAL"))
                .map_err(db("set the batches' storage"))?;
        }
        client
            .execute(&format!("INSERT INTO {s}.meta VALUES ('format', $1) ON CONFLICT DO NOTHING"), &[&FORMAT])
            .map_err(db("record the format"))?;
        let found: String = client
            .query_one(&format!("SELECT value FROM {s}.meta WHERE key = 'format'"), &[])
            .map_err(db("read the format"))?
            .get(0);
        if found != FORMAT {
            return Err(StoreError::FormatMismatch {
                path: format!("schema {s}"),
                found,
                expected: FORMAT.to_string(),
            });
        }
        let lease = lease::Lease::take(&mut client, options)?;
        // With a standby required, the append also checks, in its own statement, that the
        // server still commits synchronously: a failover manager that drops synchronous
        // replication (pg_auto_failover's `wait_primary`, when no standby is left) must not
        // make the hub acknowledge writes a second failover could lose.
        let synchronous_guard = if options.require_synchronous_standby {
            "AND current_setting('synchronous_standby_names') <> ''"
        } else {
            ""
        };
        let append_statement = client
            .prepare(&format!(
                "WITH lease AS (
                     UPDATE {s}.writer_lease
                     SET expires_at = clock_timestamp() + $4::bigint * interval '1 millisecond'
                     WHERE id = 1 AND epoch = $5::bigint RETURNING 1)
                 INSERT INTO {s}.batches (first_seq, last_seq, records)
                 SELECT $1::bigint, $2::bigint, $3::bytea
                 WHERE EXISTS (SELECT 1 FROM lease)
                   AND coalesce((SELECT max(last_seq) FROM {s}.batches), 0) = $1::bigint - 1
                   {synchronous_guard}"
            ))
            .map_err(db("prepare the append"))?;
        let last: Option<i64> = client
            .query_one(&format!("SELECT max(last_seq) FROM {s}.batches"), &[])
            .map_err(db("read the newest batch"))?
            .get(0);
        let last_seq = last.map(seq_of).transpose()?.unwrap_or(0);
        Ok(PgStore {
            client: std::sync::Mutex::new(Conn(Some(client))),
            schema: s.clone(),
            last_seq,
            stats: StoreStats::default(),
            replication_unconfirmed,
            commit_timeout: Duration::from_millis(options.commit_timeout_ms),
            lease,
            append_statement,
            require_synchronous_standby: options.require_synchronous_standby,
            snapshot_chunk_bytes: options.snapshot_chunk_bytes,
        })
    }

    /// The lease epoch this store writes under (each taking of the lease raises it).
    pub fn lease_epoch(&self) -> i64 {
        self.lease.epoch()
    }

    /// The newest sequence number stored (0: none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn records_after(&mut self, after: u64) -> Result<Vec<LogRecord>, StoreError> {
        let s = &self.schema;
        let rows = conn(&mut self.client)
            .query(
                &format!("SELECT first_seq, records FROM {s}.batches WHERE last_seq > $1 ORDER BY first_seq"),
                &[&seq_param(after)?],
            )
            .map_err(db("read batches"))?;
        let mut out: Vec<LogRecord> = Vec::new();
        for row in rows {
            let first = seq_of(row.get(0))?;
            for r in decode_batch(first, row.get(1))? {
                if r.seq <= after {
                    continue;
                }
                if let Some(prev) = out.last() {
                    if r.seq != prev.seq + 1 {
                        return Err(StoreError::Corrupt(format!("seq {} follows {} in the database", r.seq, prev.seq)));
                    }
                }
                out.push(r);
            }
        }
        Ok(out)
    }
}

impl LogStore for PgStore {
    fn append(&mut self, records: &[LogRecord]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else { return Ok(()) };
        assert!(records.windows(2).all(|w| w[1].seq == w[0].seq + 1), "a batch's sequence numbers are contiguous");
        let body = encode_batch(records)?;
        self.lease.check_not_lost()?;
        let client = conn(&mut self.client);
        self.replication_unconfirmed.store(false, Ordering::SeqCst);
        // A commit waits for the synchronous standby with no limit of the server's own (the
        // statement timeout ends before it): past the commit timeout a watchdog cancels the
        // wait, the server commits on the primary alone and says so in a notice.
        let watchdog = (!self.commit_timeout.is_zero()).then(|| {
            let (done, timer) = std::sync::mpsc::channel::<()>();
            let token = client.cancel_token();
            let timeout = self.commit_timeout;
            let thread = std::thread::spawn(move || {
                if timer.recv_timeout(timeout) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    if let Err(e) = token.cancel_query(NoTls) {
                        tracing::warn!(error = %e, "could not cancel a commit's wait for the standby");
                    }
                }
            });
            (done, thread)
        });
        // One prepared statement, committed on its own: the lease renewal (the fence) and the
        // insert of the batch that follows the newest stored one, or neither.
        let params: [&(dyn postgres::types::ToSql + Sync); 5] =
            [&seq_param(first.seq)?, &seq_param(last.seq)?, &body, &self.lease.lease_ms(), &self.lease.epoch()];
        let written = client.execute(&self.append_statement, &params);
        if let Some((done, thread)) = watchdog {
            let _ = done.send(());
            let _ = thread.join();
        }
        let committed = match written.map_err(db("append"))? {
            1 => Ok(()),
            _ => {
                // Nothing was written: another writer took the lease (fenced), the server no
                // longer commits synchronously, or the batch does not follow the newest stored
                // one (a replayed batch).
                self.lease.fenced_now(client)?;
                if self.require_synchronous_standby {
                    require_synchronous_standby(client)?;
                }
                Err(StoreError::Database(format!(
                    "seq {} does not follow the newest stored batch (another writer on schema {}?)",
                    first.seq, self.schema
                )))
            }
        };
        committed?;
        self.last_seq = last.seq;
        if self.replication_unconfirmed.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Database(format!(
                "the batch ending at seq {} is committed on the primary but no synchronous standby confirmed it in \
                 time: a failover could lose it, so it is not acknowledged (reopen once a standby is back)",
                last.seq
            )));
        }
        self.stats.syncs += 1;
        self.stats.records += records.len() as u64;
        self.stats.bytes += body.len() as u64;
        Ok(())
    }

    /// One transaction: the snapshot's row (its `ledger` empty, its length in `chunks`' sum),
    /// its chunks in order, and the removal of the snapshots past the newest kept, with their
    /// chunks.
    fn write_snapshot(&mut self, seq: u64, ledger_bytes: &[u8]) -> Result<(), StoreError> {
        let s = &self.schema;
        assert!(!ledger_bytes.is_empty(), "a ledger never encodes to nothing");
        let mut tx = conn(&mut self.client).transaction().map_err(db("begin"))?;
        self.lease.renew_in(&mut tx)?;
        let seq = seq_param(seq)?;
        tx.execute(&format!("DELETE FROM {s}.snapshot_chunks WHERE seq = $1"), &[&seq])
            .map_err(db("replace a snapshot's chunks"))?;
        tx.execute(
            &format!(
                "INSERT INTO {s}.snapshots (seq, ledger) VALUES ($1, ''::bytea)
                 ON CONFLICT (seq) DO UPDATE SET ledger = EXCLUDED.ledger"
            ),
            &[&seq],
        )
        .map_err(db("write a snapshot"))?;
        let insert_chunk = tx
            .prepare(&format!("INSERT INTO {s}.snapshot_chunks (seq, chunk, bytes) VALUES ($1, $2, $3)"))
            .map_err(db("prepare a snapshot chunk"))?;
        for (i, chunk) in ledger_bytes.chunks(self.snapshot_chunk_bytes.max(1)).enumerate() {
            let i = i32::try_from(i).map_err(|_| StoreError::Database("a snapshot of over 2^31 chunks".into()))?;
            tx.execute(&insert_chunk, &[&seq, &i, &chunk]).map_err(db("write a snapshot chunk"))?;
        }
        tx.execute(
            &format!(
                "DELETE FROM {s}.snapshots WHERE seq NOT IN
                 (SELECT seq FROM {s}.snapshots ORDER BY seq DESC LIMIT $1)"
            ),
            &[&SNAPSHOTS_KEPT],
        )
        .map_err(db("drop old snapshots"))?;
        tx.execute(&format!("DELETE FROM {s}.snapshot_chunks WHERE seq NOT IN (SELECT seq FROM {s}.snapshots)"), &[])
            .map_err(db("drop old snapshots' chunks"))?;
        tx.commit().map_err(db("commit a snapshot"))
    }

    /// The newest snapshot: its chunks in order (or, written before chunks, its one value).
    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let s = &self.schema;
        let client = conn(&mut self.client);
        let row = client
            .query_opt(&format!("SELECT seq, ledger FROM {s}.snapshots ORDER BY seq DESC LIMIT 1"), &[])
            .map_err(db("read the newest snapshot"))?;
        let Some(row) = row else { return Ok(None) };
        let (seq, whole): (i64, Vec<u8>) = (row.get(0), row.get(1));
        if !whole.is_empty() {
            return Ok(Some((seq_of(seq)?, whole)));
        }
        let chunks = client
            .query(&format!("SELECT chunk, bytes FROM {s}.snapshot_chunks WHERE seq = $1 ORDER BY chunk"), &[&seq])
            .map_err(db("read a snapshot's chunks"))?;
        let mut ledger = Vec::new();
        for (expected, chunk) in chunks.iter().enumerate() {
            let number: i32 = chunk.get(0);
            if usize::try_from(number).ok() != Some(expected) {
                return Err(StoreError::Corrupt(format!("snapshot {seq}: chunk {number} where {expected} belongs")));
            }
            ledger.extend_from_slice(chunk.get::<_, &[u8]>(1));
        }
        if ledger.is_empty() {
            return Err(StoreError::Corrupt(format!("snapshot {seq} has no chunks")));
        }
        Ok(Some((seq_of(seq)?, ledger)))
    }

    fn load_records(&mut self, after: u64) -> Result<Vec<LogRecord>, StoreError> {
        self.records_after(after)
    }

    fn stats(&self) -> StoreStats {
        self.stats
    }

    fn history(&mut self) -> Result<Vec<LogRecord>, StoreError> {
        self.records_after(0)
    }

    fn fenced(&self) -> bool {
        self.lease.lost()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema("infhub").is_ok());
        assert!(check_schema("_t1").is_ok());
        for bad in ["", "1a", "Infhub", "a-b", "a;drop", "a b", &"a".repeat(64)] {
            assert!(matches!(check_schema(bad), Err(StoreError::Database(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_batch_body_decodes_to_its_records_and_damage_is_named() {
        let records: Vec<LogRecord> = (1..=3)
            .map(|seq| LogRecord {
                seq,
                at_ms: seq,
                command: infhub_core::ledger::Command::Block(seq),
                outcome: infhub_core::ledger::Outcome::Applied(Vec::new()),
            })
            .collect();
        let body = encode_batch(&records).expect("encode");
        assert_eq!(decode_batch(1, &body).expect("decode"), records);
        for cut in [1, 3, body.len() - 1] {
            assert!(matches!(decode_batch(1, &body[..cut]), Err(StoreError::Corrupt(_))), "cut at {cut}");
        }
    }
}
