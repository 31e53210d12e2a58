//! The writer lease: one writer per schema, and fencing of any other (D37).
//!
//! The lease is one row (`writer_lease`: holder, epoch, expiry). [`Lease::take`] takes it when
//! it is free, past its expiry, or held under the same writer name (the same node restarted),
//! raising the epoch; otherwise it names the holder and how long its lease still runs
//! ([`StoreError::LeaseHeld`]). A thread renews it every third of its length on a connection
//! of its own. Every append renews it inside the batch's transaction on the condition that the
//! epoch is still this store's ([`Lease::renew_in`]), which is the fence: after a standby took
//! the lease, the old writer's transaction updates no row and is rolled back, whatever the old
//! writer's clock or state believes. Expiry is judged by the database's clock alone.

use crate::{db, PgStoreOptions};
use infhub_ledger::store::StoreError;
use postgres::{Client, NoTls, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// The lease length unless configured: a standby takes over at most this long after the
/// active writer stops.
pub const DEFAULT_LEASE_MS: u64 = 5_000;
/// Shortest lease (renewals every third of it must fit in it with a round trip to spare).
pub const MIN_LEASE_MS: u64 = 300;
/// SQLSTATE of a lock wait that reached `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Makes the server end this connection's session when it sits inside a transaction for half a
/// lease (its process paused or cut off mid-append): the session's row lock on the lease would
/// otherwise stop any standby from taking over.
pub fn end_stalled_transactions(client: &mut Client, lease_ms: u64) -> Result<(), StoreError> {
    client
        .batch_execute(&format!("SET idle_in_transaction_session_timeout = {}", (lease_ms / 2).max(1)))
        .map_err(db("set idle_in_transaction_session_timeout"))
}

/// Longest writer name.
pub const MAX_WRITER_NAME_CHARS: usize = 200;

/// The lease this store holds, and the thread renewing it.
pub struct Lease {
    schema: String,
    epoch: i64,
    lease_ms: i64,
    /// Set by the renewing thread when it found the lease taken by another writer.
    lost: Arc<AtomicBool>,
    /// Dropping it stops the renewing thread.
    stop: Option<mpsc::Sender<()>>,
}

/// Who holds a schema's lease, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's writer name.
    pub holder: String,
    /// Its epoch.
    pub epoch: i64,
    /// Milliseconds its lease still runs by the database's clock (negative: expired).
    pub remaining_ms: i64,
}

/// Reads who holds the lease of `schema` (None: nobody ever took it).
pub fn holder(client: &mut Client, schema: &str) -> Result<Option<LeaseHolder>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT holder, epoch,
                        (extract(epoch FROM (expires_at - clock_timestamp())) * 1000)::bigint
                 FROM {schema}.writer_lease WHERE id = 1"
            ),
            &[],
        )
        .map_err(db("read the writer lease"))?;
    Ok(row.map(|r| LeaseHolder { holder: r.get(0), epoch: r.get(1), remaining_ms: r.get(2) }))
}

fn renew_sql(schema: &str) -> String {
    format!(
        "UPDATE {schema}.writer_lease SET expires_at = clock_timestamp() + $2::bigint * interval '1 millisecond'
         WHERE id = 1 AND epoch = $1"
    )
}

fn fenced(schema: &str, epoch: i64, now: Option<LeaseHolder>) -> StoreError {
    let by = now.map_or_else(|| "another writer".to_string(), |h| format!("{} (epoch {})", h.holder, h.epoch));
    StoreError::Fenced(format!(
        "the writer lease of schema {schema} passed from epoch {epoch} to {by}: this writer must stop; \
         what it had not committed is not acknowledged"
    ))
}

impl Lease {
    /// Takes the lease of `options.schema` for `options.writer_name`, and starts renewing it.
    pub fn take(client: &mut Client, options: &PgStoreOptions) -> Result<Lease, StoreError> {
        let name = &options.writer_name;
        if name.is_empty() || name.chars().count() > MAX_WRITER_NAME_CHARS {
            return Err(StoreError::Database(format!(
                "writer name {name:?}: give 1 to {MAX_WRITER_NAME_CHARS} characters"
            )));
        }
        if options.lease_ms < MIN_LEASE_MS || options.lease_ms > i64::MAX as u64 / 2 {
            return Err(StoreError::Database(format!(
                "lease of {} ms: give at least {MIN_LEASE_MS} ms",
                options.lease_ms
            )));
        }
        let s = &options.schema;
        let lease_ms = options.lease_ms as i64;
        // The lease row needs no standby's confirmation (a lease lost in a failover only
        // fences its new holder's next append, which then reopens): with a standby down, a
        // writer still opens and reads, and its appends fail by name.
        let mut tx = client.transaction().map_err(db("begin"))?;
        // A holder paused inside a transaction keeps the row locked until the server ends its
        // session (`idle_in_transaction_session_timeout`, set on every writer connection): wait
        // for the lock no longer than a lease, then report the lease as held.
        tx.batch_execute(&format!("SET LOCAL synchronous_commit = local; SET LOCAL lock_timeout = {lease_ms}"))
            .map_err(db("take the writer lease"))?;
        let taken = tx
            .query_opt(
                &format!(
                    "INSERT INTO {s}.writer_lease AS l (id, holder, epoch, expires_at)
                     VALUES (1, $1, 1, clock_timestamp() + $2::bigint * interval '1 millisecond')
                     ON CONFLICT (id) DO UPDATE
                       SET holder = EXCLUDED.holder, epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at
                       WHERE l.holder = EXCLUDED.holder OR l.expires_at < clock_timestamp()
                     RETURNING epoch"
                ),
                &[name, &lease_ms],
            )
            .map_err(|e| match e.as_db_error().map(|d| d.code().code()) {
                Some(LOCK_NOT_AVAILABLE) => StoreError::LeaseHeld(format!(
                    "the writer lease of schema {s} is locked by another writer's open transaction"
                )),
                _ => db("take the writer lease")(e),
            })?;
        tx.commit().map_err(db("take the writer lease"))?;
        let Some(row) = taken else {
            let now = holder(client, s)?;
            let (by, remaining) = now.map_or_else(|| ("nobody".to_string(), 0), |h| (h.holder, h.remaining_ms));
            return Err(StoreError::LeaseHeld(format!(
                "the writer lease of schema {s} is held by {by} for another {remaining} ms: another hub process \
                 is writing; stop it, or wait as a standby"
            )));
        };
        let epoch: i64 = row.get(0);
        tracing::info!(schema = %s, writer = %name, epoch, lease_ms, "writer lease taken");
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = Renewer { url: options.url.clone(), schema: s.clone(), epoch, lease_ms, lost: lost.clone() };
        std::thread::Builder::new()
            .name("infhub-pg-lease".into())
            .spawn(move || renewer.run(&stopped))
            .map_err(|e| StoreError::Database(format!("start the lease thread: {e}")))?;
        Ok(Lease { schema: s.clone(), epoch, lease_ms, lost, stop: Some(stop) })
    }

    /// The epoch this store writes under.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Renews the lease inside `tx` if this store's epoch still holds it; otherwise the
    /// transaction must not commit: [`StoreError::Fenced`].
    pub fn renew_in(&self, tx: &mut Transaction<'_>) -> Result<(), StoreError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(fenced(&self.schema, self.epoch, None));
        }
        let renewed = tx
            .execute(&renew_sql(&self.schema), &[&self.epoch, &self.lease_ms])
            .map_err(db("renew the writer lease"))?;
        if renewed != 1 {
            self.lost.store(true, Ordering::SeqCst);
            let now = tx.query_opt(
                &format!("SELECT holder, epoch, 0::bigint FROM {}.writer_lease WHERE id = 1", self.schema),
                &[],
            );
            let now = now.ok().flatten().map(|r| LeaseHolder { holder: r.get(0), epoch: r.get(1), remaining_ms: 0 });
            return Err(fenced(&self.schema, self.epoch, now));
        }
        Ok(())
    }

    /// The lease's length in milliseconds (a statement parameter).
    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// Fails with [`StoreError::Fenced`] once the renewing thread found the lease taken.
    pub fn check_not_lost(&self) -> Result<(), StoreError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(fenced(&self.schema, self.epoch, None));
        }
        Ok(())
    }

    /// After a fenced statement wrote nothing: [`StoreError::Fenced`] if the stored epoch is no
    /// longer this store's.
    pub fn fenced_now(&self, client: &mut Client) -> Result<(), StoreError> {
        let now = holder(client, &self.schema)?;
        if now.as_ref().is_some_and(|h| h.epoch == self.epoch) {
            return Ok(());
        }
        self.lost.store(true, Ordering::SeqCst);
        Err(fenced(&self.schema, self.epoch, now))
    }

    /// Whether the renewing thread found the lease taken by another writer.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The thread sees the channel closed at its next wait and exits; the lease is left to
        // expire (or to be taken at once by this writer name).
        self.stop.take();
    }
}

/// Renews the lease outside an append, committed without waiting for a standby (see
/// [`Lease::take`]).
fn renew_locally(c: &mut Client, schema: &str, epoch: i64, lease_ms: i64) -> Result<u64, postgres::Error> {
    let mut tx = c.transaction()?;
    tx.batch_execute("SET LOCAL synchronous_commit = local")?;
    let renewed = tx.execute(&renew_sql(schema), &[&epoch, &lease_ms])?;
    tx.commit()?;
    Ok(renewed)
}

/// Renews a lease on a connection of its own until stopped or fenced.
struct Renewer {
    url: String,
    schema: String,
    epoch: i64,
    lease_ms: i64,
    lost: Arc<AtomicBool>,
}

impl Renewer {
    fn run(self, stopped: &mpsc::Receiver<()>) {
        let every = Duration::from_millis(self.lease_ms as u64 / 3);
        let mut client: Option<Client> = None;
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
            if client.as_ref().is_none_or(Client::is_closed) {
                let connected = Client::connect(&self.url, NoTls).map_err(db("connect")).and_then(|mut c| {
                    end_stalled_transactions(&mut c, self.lease_ms as u64)?;
                    Ok(c)
                });
                client = match connected {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "the writer lease cannot be renewed: database unreachable");
                        continue;
                    }
                };
            }
            let Some(c) = client.as_mut() else { continue };
            match renew_locally(c, &self.schema, self.epoch, self.lease_ms) {
                Ok(1) => {}
                Ok(_) => {
                    self.lost.store(true, Ordering::SeqCst);
                    tracing::error!(schema = %self.schema, epoch = self.epoch, "writer lease taken by another writer");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "the writer lease could not be renewed"),
            }
        }
    }
}
