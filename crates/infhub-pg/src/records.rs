//! Records read beside the writer (the account history's reads), on a small pool of
//! connections with a thread each: the history is queried from the API's tasks, where the
//! synchronous client cannot run, and the writer's connection is busy committing. Several
//! connections let one slow read (a large range, a cold page) not hold up the others; the queue
//! in front of them is bounded, so a flood of reads waits instead of growing memory.

use crate::{db, decode_batch, seq_of, seq_param};
use infhub_ledger::file::MAX_RECORDS_PER_READ;
use infhub_ledger::store::{LogRecord, RecordSource, StoreError};
use postgres::{Client, NoTls};
use std::sync::{mpsc, Arc, Mutex};

/// The most connections one store's readers open.
pub const MAX_READ_CONNECTIONS: usize = 64;

/// Reads waiting for a free connection before a new one waits to be queued.
pub const MAX_QUEUED_READS: usize = 1024;

/// The name the readers' connections give the server (`pg_stat_activity.application_name`).
pub const READER_APPLICATION_NAME: &str = "infhub-records";

/// A read the thread answers.
enum Read {
    FirstSeq(mpsc::Sender<Result<Option<u64>, StoreError>>),
    Range(u64, u64, mpsc::Sender<Result<Vec<LogRecord>, StoreError>>),
}

/// Reads a PostgreSQL store's records by sequence number.
pub struct PgRecords {
    requests: mpsc::SyncSender<Read>,
}

impl PgRecords {
    /// Reads the store in `schema` at `url` on up to `connections` connections (each opened
    /// on first use, and again after a failure; a read while the database is unreachable fails
    /// by name).
    pub fn new(url: &str, schema: &str, connections: usize) -> Result<PgRecords, StoreError> {
        crate::check_schema(schema)?;
        if connections == 0 || connections > MAX_READ_CONNECTIONS {
            return Err(StoreError::Database(format!(
                "the record readers' connections must be in 1..={MAX_READ_CONNECTIONS}, not {connections}"
            )));
        }
        let mut config: postgres::Config =
            url.parse().map_err(|e| StoreError::Database(format!("database URL: {e}")))?;
        config.application_name(READER_APPLICATION_NAME);
        let (requests, rx) = mpsc::sync_channel::<Read>(MAX_QUEUED_READS);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..connections {
            let reader = Reader { config: config.clone(), schema: schema.to_string(), client: None };
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("infhub-pg-records-{i}"))
                .spawn(move || reader.run(&rx))
                .map_err(|e| StoreError::Database(format!("start the record reader: {e}")))?;
        }
        Ok(PgRecords { requests })
    }

    fn ask<T>(&self, read: impl FnOnce(mpsc::Sender<Result<T, StoreError>>) -> Read) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::channel();
        let gone = || StoreError::Database("the record reader thread stopped".into());
        self.requests.send(read(tx)).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

impl RecordSource for PgRecords {
    fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        self.ask(Read::FirstSeq)
    }

    fn read_range(&self, first: u64, last: u64) -> Result<Vec<LogRecord>, StoreError> {
        if last < first {
            return Ok(Vec::new());
        }
        if last - first >= MAX_RECORDS_PER_READ {
            return Err(StoreError::Corrupt(format!(
                "a read of records {first}..={last} exceeds {MAX_RECORDS_PER_READ}"
            )));
        }
        self.ask(|tx| Read::Range(first, last, tx))
    }
}

struct Reader {
    config: postgres::Config,
    schema: String,
    client: Option<Client>,
}

impl Reader {
    /// Takes reads off the shared queue until the store is dropped (the lock is held only to
    /// take one, never while reading).
    fn run(mut self, rx: &Mutex<mpsc::Receiver<Read>>) {
        loop {
            let next = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
            let Ok(read) = next else { return };
            match read {
                Read::FirstSeq(reply) => {
                    let _ = reply.send(self.first_seq());
                }
                Read::Range(first, last, reply) => {
                    let _ = reply.send(self.range(first, last));
                }
            }
        }
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.config.connect(NoTls).map_err(db("connect the record reader"))?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn first_seq(&mut self) -> Result<Option<u64>, StoreError> {
        let s = self.schema.clone();
        let first: Option<i64> = self
            .client()?
            .query_one(&format!("SELECT min(first_seq) FROM {s}.batches"), &[])
            .map_err(db("read the oldest batch"))?
            .get(0);
        first.map(seq_of).transpose()
    }

    fn range(&mut self, first: u64, last: u64) -> Result<Vec<LogRecord>, StoreError> {
        let s = self.schema.clone();
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT first_seq, records FROM {s}.batches
                     WHERE last_seq >= $1 AND first_seq <= $2 ORDER BY first_seq"
                ),
                &[&seq_param(first)?, &seq_param(last)?],
            )
            .map_err(db("read batches"))?;
        let mut out = Vec::with_capacity((last - first + 1) as usize);
        for row in rows {
            for r in decode_batch(seq_of(row.get(0))?, row.get(1))? {
                if r.seq >= first && r.seq <= last {
                    out.push(r);
                }
            }
        }
        let contiguous = out.iter().enumerate().all(|(i, r)| r.seq == first + i as u64);
        if !contiguous || out.len() as u64 != last - first + 1 {
            return Err(StoreError::Corrupt(format!(
                "records {first}..={last}: the database holds {} of them in order",
                out.iter().enumerate().take_while(|(i, r)| r.seq == first + *i as u64).count()
            )));
        }
        Ok(out)
    }
}
