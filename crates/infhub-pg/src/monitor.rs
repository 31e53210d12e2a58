//! How the database's replicas keep up (issue 23: a replica that falls behind gets a metric and
//! a log line while running). A thread with its own connection reads `pg_stat_replication` on
//! the primary once a second: how many standbys stream from it, how many of them commit
//! synchronously, and how many bytes of WAL the furthest one has yet to replay. The node exports
//! them (`infhub_postgres_standbys`, `infhub_postgres_synchronous_standbys`,
//! `infhub_postgres_replica_lag_bytes`) and the thread logs when a replica falls behind or the
//! synchronous ones are gone. Reading `pg_stat_replication` needs the `pg_monitor` role (or a
//! superuser); without it the figures stay at their last value and the thread says so once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the replicas are read.
pub const REPLICATION_SAMPLE_MS: u64 = 1_000;
/// A replica this many bytes of WAL behind is logged as falling behind.
pub const REPLICA_LAG_WARN_BYTES: u64 = 64 << 20;

/// The latest figures, shared with the node's metrics.
#[derive(Debug, Default)]
pub struct ReplicationGauges {
    /// Standbys streaming from the primary.
    pub standbys: AtomicU64,
    /// Of them, synchronous (`sync` or `quorum`).
    pub synchronous: AtomicU64,
    /// WAL bytes the furthest standby has yet to replay.
    pub lag_bytes: AtomicU64,
    /// Whether a sample has been read.
    pub sampled: AtomicBool,
}

/// The thread that samples the replicas until dropped.
pub struct ReplicationMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const SAMPLE: &str = "SELECT count(*)::bigint,
        count(*) FILTER (WHERE sync_state IN ('sync', 'quorum'))::bigint,
        coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint
    FROM pg_stat_replication";

impl ReplicationMonitor {
    /// Starts sampling the primary at `url` into `gauges`.
    pub fn start(url: String, gauges: Arc<ReplicationGauges>) -> ReplicationMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("infhub-replication".into())
            .spawn(move || {
                let mut client: Option<postgres::Client> = None;
                let (mut warned_lag, mut warned_error) = (false, false);
                while !s.load(Ordering::SeqCst) {
                    if client.is_none() {
                        client = postgres::Client::connect(&url, postgres::NoTls).ok();
                    }
                    if let Some(c) = client.as_mut() {
                        match c.query_one(SAMPLE, &[]) {
                            Ok(row) => {
                                let (standbys, synchronous, lag) =
                                    (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2));
                                let lag = u64::try_from(lag).unwrap_or(0);
                                gauges.standbys.store(u64::try_from(standbys).unwrap_or(0), Ordering::Relaxed);
                                gauges.synchronous.store(u64::try_from(synchronous).unwrap_or(0), Ordering::Relaxed);
                                gauges.lag_bytes.store(lag, Ordering::Relaxed);
                                gauges.sampled.store(true, Ordering::Relaxed);
                                if lag >= REPLICA_LAG_WARN_BYTES && !warned_lag {
                                    tracing::warn!(lag_bytes = lag, standbys, "a replica is falling behind");
                                } else if lag < REPLICA_LAG_WARN_BYTES && warned_lag {
                                    tracing::info!(lag_bytes = lag, "the replicas caught up");
                                }
                                warned_lag = lag >= REPLICA_LAG_WARN_BYTES;
                                warned_error = false;
                            }
                            Err(e) => {
                                if !warned_error {
                                    tracing::warn!(error = %e, "cannot read pg_stat_replication (grant pg_monitor to the hub's role)");
                                    warned_error = true;
                                }
                                client = None;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(REPLICATION_SAMPLE_MS));
                }
                // The synchronous client is closed here, on this thread.
                drop(client);
            })
            .expect("spawn the replication monitor");
        ReplicationMonitor { stop, thread: Some(thread) }
    }
}

impl Drop for ReplicationMonitor {
    fn drop(&mut self) {
        // Not joined: a connection attempt to an unreachable host may take long, and the node
        // must not wait for it to stop; the thread ends at its next look at the flag.
        self.stop.store(true, Ordering::SeqCst);
        drop(self.thread.take());
    }
}
