//! One scenario, two stores: the durable ledger on the PostgreSQL store and on the file store
//! must recover the same acknowledged state, replay only the tail after a snapshot and keep
//! every record as history. The PostgreSQL cases start their own server (one per test run of
//! this function, stopped at its end).

use infhub_core::ledger::{Command, Ledger, Outcome};
use infhub_core::{Amount, PrivateKey};
use infhub_ledger::durable::{DurableLedger, DurableParams, ExecuteError};
use infhub_ledger::file::{FileStore, FileStoreOptions};
use infhub_ledger::store::RecordSource;
use infhub_ledger::store::{LogRecord, LogStore, StoreError};
use infhub_ledger::testkit::{genesis, key, params, payment};
use infhub_pg::formation::LocalFormation;
use infhub_pg::projection::Projection;
use infhub_pg::server::LocalPostgres;
use infhub_pg::{PgRecords, PgStore, PgStoreOptions};

const USERS: usize = 5;
const BATCHES: usize = 30;
const SNAPSHOT_EVERY: u64 = 40;

struct Parties {
    hub: PrivateKey,
    users: Vec<PrivateKey>,
}

impl Parties {
    fn new() -> Parties {
        Parties { hub: key(0x0048_5542), users: (0..USERS as u64).map(|i| key(0xA000 + i)).collect() }
    }

    fn open<S: LogStore>(&self, store: S) -> Result<DurableLedger<S>, StoreError> {
        let dp = DurableParams { snapshot_every_records: SNAPSHOT_EVERY, max_batch_commands: 1_000 };
        DurableLedger::open(store, params(&self.hub, 10_000), self.hub.clone(), dp)
    }

    fn genesis(&self) -> Vec<Command> {
        genesis(&self.hub, &self.users, Amount(10_000))
    }

    fn payment(&self, ledger: &Ledger, a: usize, b: usize, amount: u128, id: u64) -> Command {
        payment(ledger, &self.users[a], self.users[b].address(), amount, id)
    }

    /// Genesis and `BATCHES` batches of payments around a ring; the final state.
    fn run<S: LogStore>(&self, dl: &mut DurableLedger<S>) -> Ledger {
        for r in dl.execute(self.genesis()).expect("genesis durable") {
            r.expect("genesis accepted");
        }
        let mut id = 0;
        for b in 0..BATCHES {
            let cmds: Vec<Command> = (0..USERS)
                .map(|i| {
                    id += 1;
                    self.payment(dl.ledger(), (i + b) % USERS, (i + b + 1) % USERS, 3 + i as u128, id)
                })
                .collect();
            for r in dl.execute(cmds).expect("batch durable") {
                r.expect("payment accepted");
            }
        }
        dl.ledger().clone()
    }
}

/// Records written by [`Parties::run`]: genesis, then each batch's payments and its seal.
const WRITTEN: u64 = (1 + 2 * USERS + BATCHES * (USERS + 1)) as u64;

/// The scenario on a store `open` opens (twice: before and after a restart).
fn scenario<S: LogStore>(open: &dyn Fn() -> S) {
    let parties = Parties::new();
    let mut dl = parties.open(open()).expect("open");
    let state = parties.run(&mut dl);
    assert_eq!(dl.store_stats().syncs, 1 + BATCHES as u64, "one commit per batch (group commit)");
    drop(dl);
    let mut reopened = parties.open(open()).expect("reopen");
    assert_eq!(reopened.ledger(), &state, "the acknowledged state is recovered exactly");
    assert!(reopened.recovery().snapshot_seq > 0, "a snapshot was taken");
    assert!(reopened.recovery().replayed < SNAPSHOT_EVERY + USERS as u64 + 1, "replay is bounded by the snapshot");
    let history = reopened.history().expect("history");
    let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=WRITTEN).collect::<Vec<_>>(), "the history keeps every record once");
    let (domain, hub) = (reopened.ledger().params.domain, reopened.ledger().params.hub);
    let paid = history
        .iter()
        .filter(|r| match &r.outcome {
            Outcome::Paid { receipt, credit: Some(credit), .. } => {
                receipt.verify(&domain, hub).is_ok() && credit.verify(&domain, hub).is_ok()
            }
            _ => false,
        })
        .count();
    assert_eq!(paid, BATCHES * USERS, "every payment's proofs come back signed");
}

#[test]
fn the_file_store_passes_the_scenario() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    scenario(&|| {
        let options = FileStoreOptions { max_segment_bytes: 4096, snapshots_kept: 2, archive_compacted: true };
        FileStore::open(&path, options).expect("file store")
    });
}

fn record(seq: u64) -> LogRecord {
    LogRecord { seq, at_ms: seq, command: Command::Block(seq), outcome: Outcome::Applied(Vec::new()) }
}

/// Every PostgreSQL case on one throwaway server (started here, stopped at the end).
#[test]
fn the_postgres_store_passes_the_scenario_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = LocalPostgres::start(dir.path()).unwrap_or_else(|e| panic!("start postgres: {e}"));
    let options = |schema: &str| PgStoreOptions::new(server.url(), schema);

    // The same scenario as the file store's.
    scenario(&|| PgStore::open(&options("scenario")).expect("pg store"));

    // A second writer under the same name (the node restarted) takes the lease at once and
    // fences the first: its next append commits nothing. A batch that does not follow the
    // newest stored one is refused (a replayed or skipped batch).
    let named = |name: &str| PgStoreOptions { writer_name: name.into(), ..options("two_writers") };
    let mut first = PgStore::open(&named("hub-a")).expect("open");
    first.append(&[record(1), record(2)]).expect("first writer");
    let mut second = PgStore::open(&named("hub-a")).expect("the same writer restarted");
    assert_eq!(second.lease_epoch(), first.lease_epoch() + 1, "taking the lease raises its epoch");
    // The first store's renewal finds it out by itself, without a write (readiness: the
    // renewal runs every third of the lease).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !first.fenced() {
        assert!(std::time::Instant::now() < deadline, "the renewal never found the lease taken");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!second.fenced());
    let fenced = first.append(&[record(3)]);
    assert!(matches!(fenced, Err(StoreError::Fenced(_))), "{fenced:?}");
    let replayed = second.append(&[record(2)]);
    assert!(matches!(replayed, Err(StoreError::Database(ref m)) if m.contains("does not follow")), "{replayed:?}");
    let skipped = second.append(&[record(4)]);
    assert!(matches!(skipped, Err(StoreError::Database(_))), "a gap is refused: {skipped:?}");
    second.append(&[record(3)]).expect("the next batch");
    let seqs: Vec<u64> = second.load_records(0).expect("read").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "nothing of the fenced writer's batch is stored");
    assert_eq!(second.load_records(2).expect("read after").len(), 1, "records after a seq only");
    // A writer of another name is refused while the lease runs, by name.
    let held = PgStore::open(&named("hub-b"));
    assert!(matches!(held, Err(StoreError::LeaseHeld(ref m)) if m.contains("hub-a")), "{:?}", held.err());
    // Once the lease has expired (its holder paused or cut off: here the row is aged, as the
    // holder's renewals are every third of a long lease), another writer takes it, and the old
    // holder's next append is fenced inside its own transaction.
    let mut admin = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    admin
        .execute("UPDATE two_writers.writer_lease SET expires_at = clock_timestamp() - interval '1 second'", &[])
        .expect("age the lease");
    let mut standby = PgStore::open(&named("hub-b")).expect("the standby takes the expired lease");
    assert_eq!(standby.lease_epoch(), second.lease_epoch() + 1);
    let fenced = second.append(&[record(4)]);
    assert!(matches!(fenced, Err(StoreError::Fenced(_))), "{fenced:?}");
    let fenced_snapshot = second.write_snapshot(3, b"ledger");
    assert!(matches!(fenced_snapshot, Err(StoreError::Fenced(_))), "{fenced_snapshot:?}");
    standby.append(&[record(4)]).expect("the new writer goes on");
    // The history's reader sees what the writers committed, beside them.
    let records = PgRecords::new(&server.url(), "two_writers", 3).expect("reader");
    assert_eq!(records.first_seq().expect("first"), Some(1));
    let read: Vec<u64> = records.read_range(2, 4).expect("range").iter().map(|r| r.seq).collect();
    assert_eq!(read, vec![2, 3, 4]);
    let missing = records.read_range(4, 5);
    assert!(matches!(missing, Err(StoreError::Corrupt(_))), "a record not stored is named: {missing:?}");
    assert!(records.read_range(3, 2).expect("empty").is_empty());
    reads_are_served_by_a_bounded_pool(&server, &records);
    for size in [0, infhub_pg::MAX_READ_CONNECTIONS + 1] {
        let refused = PgRecords::new(&server.url(), "two_writers", size).err().map(|e| e.to_string());
        assert!(refused.as_deref().is_some_and(|e| e.contains("1..=64")), "{size} connections: {refused:?}");
    }
    // A writer paused inside a transaction holds the lease row's lock: a standby's take must
    // neither hang nor take it. Here a raw session stands in for the paused writer.
    let paused_writer = |idle_timeout_ms: u64| {
        let mut c = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
        if idle_timeout_ms > 0 {
            c.batch_execute(&format!("SET idle_in_transaction_session_timeout = {idle_timeout_ms}")).expect("set");
        }
        c.batch_execute("BEGIN; UPDATE two_writers.writer_lease SET holder = holder").expect("lock the row");
        c
    };
    let quick = |name: &str| PgStoreOptions { lease_ms: 600, ..named(name) };
    // Without a session timeout the lock outlives the take's lock_timeout: refused by name.
    let mut holder = paused_writer(0);
    let started = std::time::Instant::now();
    let locked = PgStore::open(&quick("hub-c"));
    assert!(matches!(locked, Err(StoreError::LeaseHeld(ref m)) if m.contains("locked")), "{:?}", locked.err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the take waited {:?}", started.elapsed());
    holder.batch_execute("ROLLBACK").expect("release");
    // With the timeout every writer connection sets, the server ends the stalled session and
    // the take proceeds (here to find the lease still held, by hub-b, alive).
    let mut stalled = paused_writer(200);
    let held = PgStore::open(&quick("hub-c"));
    assert!(matches!(held, Err(StoreError::LeaseHeld(ref m)) if m.contains("hub-b")), "{:?}", held.err());
    assert!(stalled.batch_execute("SELECT 1").is_err(), "the server ended the stalled session");
    // Bad lease settings are named.
    let short = PgStore::open(&PgStoreOptions { lease_ms: 10, ..named("hub-c") });
    assert!(matches!(short, Err(StoreError::Database(ref m)) if m.contains("lease")), "{:?}", short.err());
    drop((first, second, standby));

    // A schema written in another format is refused by name, and left as it was.
    let mut c = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    c.batch_execute("CREATE SCHEMA old; CREATE TABLE old.meta (key text PRIMARY KEY, value text NOT NULL);")
        .expect("old schema");
    c.execute("INSERT INTO old.meta VALUES ('format', 'infhub-pg-0')", &[]).expect("old format");
    let r = PgStore::open(&options("old"));
    assert!(matches!(r, Err(StoreError::FormatMismatch { ref found, .. }) if found == "infhub-pg-0"), "{:?}", r.err());

    // A bad schema name and an unreachable database are named errors, not panics.
    assert!(matches!(PgStore::open(&options("no;such")), Err(StoreError::Database(_))));
    let unreachable = PgStoreOptions::new("host=127.0.0.1 port=1 user=infhub", "x");
    assert!(matches!(PgStore::open(&unreachable), Err(StoreError::Database(m)) if m.starts_with("connect")));

    // The database going away: the next append fails by name, acknowledges nothing and
    // poisons the ledger (it must reopen from the database before it answers again), as on a
    // failing disk.
    let parties = Parties::new();
    let mut dl = parties.open(PgStore::open(&options("outage")).expect("open")).expect("ledger");
    for r in dl.execute(parties.genesis()).expect("genesis") {
        r.expect("accepted");
    }
    drop(server);
    let cmd = parties.payment(dl.ledger(), 0, 1, 5, 1);
    let failed = dl.execute(vec![cmd]);
    assert!(matches!(failed, Err(ExecuteError::Store(StoreError::Database(_)))), "{:?}", failed.err());
    assert!(matches!(dl.execute(vec![]), Err(ExecuteError::Poisoned)));
}

/// Snapshots cut into rows of 100 bytes: the scenario holds, the newest snapshot spans many
/// chunks, the older ones' chunks go with them, and a missing chunk is refused by name.
#[test]
fn snapshots_in_chunks_pass_the_scenario_and_a_missing_chunk_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = LocalPostgres::start(dir.path()).unwrap_or_else(|e| panic!("start postgres: {e}"));
    let chunked = || {
        PgStore::open(&PgStoreOptions { snapshot_chunk_bytes: 100, ..PgStoreOptions::new(server.url(), "chunked") })
            .expect("store")
    };
    scenario(&chunked);
    let mut admin = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    let (snapshots, chunks): (i64, i64) = {
        let r = admin
            .query_one("SELECT count(DISTINCT seq), count(*) FROM chunked.snapshot_chunks", &[])
            .expect("count chunks");
        (r.get(0), r.get(1))
    };
    assert!((1..=infhub_pg::SNAPSHOTS_KEPT).contains(&snapshots), "{snapshots} snapshots' chunks kept");
    assert!(chunks > 2 * snapshots, "each snapshot spans several chunks: {chunks}");
    admin
        .execute(
            "DELETE FROM chunked.snapshot_chunks WHERE chunk = 1
             AND seq = (SELECT max(seq) FROM chunked.snapshots)",
            &[],
        )
        .expect("lose a chunk");
    let damaged = chunked().load_snapshot();
    assert!(matches!(damaged, Err(StoreError::Corrupt(ref m)) if m.contains("chunk 2 where 1 belongs")), "{damaged:?}");
}

/// With a synchronous standby (spec: never sign what the replicas did not accept): a store that
/// requires one refuses a server without it; with the standby up a batch is acknowledged and
/// the primary reports it synchronous; with the standby stopped, the commit's wait ends at the
/// commit timeout, the batch stands on the primary alone and the append fails by name instead
/// of acknowledging it.
#[test]
fn a_batch_no_synchronous_standby_confirmed_is_not_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alone = dir.path().join("alone");
    std::fs::create_dir_all(&alone).expect("dir");
    let server = LocalPostgres::start(&alone).unwrap_or_else(|e| panic!("start postgres: {e}"));
    let refused = PgStore::open(&PgStoreOptions {
        require_synchronous_standby: true,
        ..PgStoreOptions::new(server.url(), "sync")
    });
    assert!(
        matches!(refused, Err(StoreError::Database(ref m)) if m.contains("synchronous standby is required")),
        "{:?}",
        refused.err()
    );
    drop(server);

    let (primary, mut standby) = LocalPostgres::start_with_synchronous_standby(&dir.path().join("pair"))
        .unwrap_or_else(|e| panic!("primary and standby: {e}"));
    let required = PgStoreOptions { require_synchronous_standby: true, ..PgStoreOptions::new(primary.url(), "sync") };
    let mut store = PgStore::open(&PgStoreOptions { commit_timeout_ms: 1_000, ..required.clone() }).expect("open");
    store.append(&[record(1), record(2)]).expect("acknowledged with the standby's confirmation");

    // A failover manager drops synchronous replication while the store is open (as
    // pg_auto_failover does in `wait_primary`, when no standby is left): the next append
    // commits nothing and says why, instead of acknowledging what no standby holds.
    set_synchronous_standby_names(&primary, "");
    let r = store.append(&[record(3)]);
    assert!(matches!(r, Err(StoreError::Database(ref m)) if m.contains("synchronous standby is required")), "{r:?}");
    assert_eq!(store.last_seq(), 2, "nothing written");
    set_synchronous_standby_names(&primary, "standby1");
    store.append(&[record(3)]).expect("synchronous again");

    standby.stop().unwrap_or_else(|e| panic!("stop the standby: {e}"));
    let r = store.append(&[record(4)]);
    assert!(matches!(r, Err(StoreError::Database(ref m)) if m.contains("no synchronous standby confirmed")), "{r:?}");
    // It stands on the primary alone: a reopened store sees it (what a failover could lose).
    let mut reopened = PgStore::open(&PgStoreOptions {
        writer_name: required.writer_name.clone(),
        ..PgStoreOptions::new(primary.url(), "sync")
    })
    .expect("reopen under the same writer name");
    assert_eq!(reopened.last_seq(), 4);
    assert_eq!(reopened.load_records(0).expect("read").len(), 4);
}

/// Sets the primary's `synchronous_standby_names` and returns once a new session sees it (the
/// postmaster has reloaded and signalled every session, the store's too).
fn set_synchronous_standby_names(primary: &LocalPostgres, names: &str) {
    let mut admin = postgres::Client::connect(&primary.url(), postgres::NoTls).expect("connect");
    admin.batch_execute(&format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'")).expect("alter system");
    admin.batch_execute("SELECT pg_reload_conf()").expect("reload");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut fresh = postgres::Client::connect(&primary.url(), postgres::NoTls).expect("connect");
        let now: String = fresh.query_one("SHOW synchronous_standby_names", &[]).expect("show").get(0);
        if now == names {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the reload never took effect");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// PostgreSQL itself fails over (a real pg_auto_failover formation: a monitor, a primary and
/// two standbys, one synchronous standby required): the primary's machine is killed with
/// SIGKILL after acknowledged batches; the store's next append fails; the monitor promotes a
/// standby; the store reopened on the same multi-host URL finds the new primary and every
/// acknowledged batch on it, and goes on appending.
#[test]
fn a_failover_of_postgresql_loses_no_acknowledged_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let mut formation = LocalFormation::start(dir.path()).unwrap_or_else(|e| panic!("formation: {e}"));
    let old_primary = formation.primary().expect("states").expect("a primary");
    println!("formation ready in {} ms (primary n{})", started.elapsed().as_millis(), old_primary + 1);
    let options = PgStoreOptions {
        require_synchronous_standby: true,
        writer_name: "hub-a".into(),
        lease_ms: 1_000,
        ..PgStoreOptions::new(formation.url(), "failover")
    };
    let mut store = PgStore::open(&options).expect("open on the formation");
    for seq in 1..=20 {
        store.append(&[record(seq)]).expect("acknowledged");
    }

    formation.kill_node(old_primary);
    let killed = std::time::Instant::now();
    // Its machine is gone: the next append fails, its outcome unknown (nothing acknowledged);
    // should a backend have outlived its postmaster long enough to commit it with the
    // standby's confirmation, it is acknowledged, and must then survive the failover.
    let acknowledged = if store.append(&[record(21)]).is_ok() { 21 } else { 20 };
    drop(store);
    let new_primary = formation.wait_ready(Some(old_primary)).unwrap_or_else(|e| panic!("failover: {e}"));
    assert_ne!(new_primary, old_primary);
    let mut reopened = PgStore::open(&options).expect("reopen on the new primary");
    println!(
        "n{} killed; n{} primary with a synchronous standby and the store reopened {} ms later",
        old_primary + 1,
        new_primary + 1,
        killed.elapsed().as_millis()
    );
    let last = reopened.last_seq();
    assert!((acknowledged..=21).contains(&last), "every acknowledged batch ({acknowledged}), found {last}");
    let records = reopened.load_records(0).expect("read");
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>());
    reopened.append(&[record(last + 1)]).expect("appends go on on the new primary");
}

/// History reads run on up to the pool's connections at once: while the batches table is locked,
/// five readers wait on exactly three server sessions (the pool's size, never more), and when
/// the lock goes every read answers correctly. A pool of one would show one waiting session.
fn reads_are_served_by_a_bounded_pool(server: &LocalPostgres, records: &PgRecords) {
    let mut admin = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    let mut locker = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    locker.batch_execute("BEGIN; LOCK TABLE two_writers.batches IN ACCESS EXCLUSIVE MODE").expect("lock");
    let waiting = |admin: &mut postgres::Client| -> (i64, i64) {
        let row = admin
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock')
                 FROM pg_stat_activity WHERE application_name = $1",
                &[&infhub_pg::READER_APPLICATION_NAME],
            )
            .expect("activity");
        (row.get(0), row.get(1))
    };
    std::thread::scope(|scope| {
        let reads: Vec<_> =
            (0..5u64).map(|i| scope.spawn(move || records.read_range(1 + i % 4, 4).map(|r| r.len()))).collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen = waiting(&mut admin);
        while seen.1 < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            seen = waiting(&mut admin);
        }
        // Unlocked before asserting, so a failure does not leave the readers waiting forever.
        locker.batch_execute("COMMIT").expect("unlock");
        assert_eq!(seen, (3, 3), "sessions of the pool and those waiting on the lock");
        for (i, read) in reads.into_iter().enumerate() {
            let got = read.join().expect("reader thread").expect("read after the lock");
            assert_eq!(got, 4 - i % 4, "read {i}");
        }
    });
    assert_eq!(waiting(&mut admin), (3, 0), "the pool keeps its three connections, none waiting");
}

#[test]
fn the_store_and_its_reader_are_shared_by_the_hub_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<PgStore>();
    shared::<PgRecords>();
}

/// The queryable projection (issue 23): filled from the ledger's records alone, it agrees with
/// the ledger's own state (every account's running totals and balance, every payment, every
/// seal), and it is idempotent by sequence number: a second projector finds nothing to do, one
/// that started behind takes the first's position instead of projecting again, and a
/// projection rewound to seq 0 and run again changes nothing.
#[test]
fn the_projection_agrees_with_the_ledger_and_is_idempotent_by_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = LocalPostgres::start(dir.path()).unwrap_or_else(|e| panic!("start postgres: {e}"));
    let parties = Parties::new();
    let behind = Projection::open(&server.url(), "projected").expect("a projector opened before any record");
    let mut dl =
        parties.open(PgStore::open(&PgStoreOptions::new(server.url(), "projected")).expect("store")).expect("open");
    let state = parties.run(&mut dl);
    let mut projection = Projection::open(&server.url(), "projected").expect("projection");
    let mut projected = 0;
    loop {
        let n = projection.catch_up().expect("project");
        if n == 0 {
            break;
        }
        projected += n;
    }
    assert_eq!(projected, WRITTEN, "every record projected once");
    assert_eq!(projection.cursor(), WRITTEN);

    let mut client = postgres::Client::connect(&server.url(), postgres::NoTls).expect("connect");
    let check = |client: &mut postgres::Client| {
        for user in &parties.users {
            let ch = &state.account(&user.address()).expect("account").channel;
            let row = client
                .query_one(
                    "SELECT deposited::text, cumulative_credit::text, cumulative_debit::text,
                        (deposited + cumulative_credit - cumulative_debit - greatest(withdrawn, withdrawal_held))::text,
                        credit_nonce, debit_nonce, status
                     FROM projected.accounts WHERE account = $1",
                    &[&user.address().as_slice()],
                )
                .expect("an account row");
            let text = |i: usize| row.get::<_, String>(i);
            assert_eq!(text(0), ch.deposited.0.to_string());
            assert_eq!(text(1), ch.cumulative_credit().0.to_string());
            assert_eq!(text(2), ch.cumulative_debit().0.to_string());
            assert_eq!(text(3), ch.balance().expect("balance").0.to_string(), "the balance from the projection");
            assert_eq!(row.get::<_, i64>(4) as u64, ch.credit.as_ref().map_or(0, |c| c.message.nonce));
            assert_eq!(row.get::<_, i64>(5) as u64, ch.debit.as_ref().map_or(0, |d| d.message.nonce));
            assert_eq!(text(6), "open");
        }
        let count = |client: &mut postgres::Client, sql: &str| client.query_one(sql, &[]).expect(sql).get::<_, i64>(0);
        assert_eq!(
            count(client, "SELECT count(*) FROM projected.transfers WHERE kind = 'internal'"),
            (BATCHES * USERS) as i64
        );
        assert_eq!(
            count(client, "SELECT count(*) FROM projected.seals"),
            BATCHES as i64,
            "one seal per commit of payments"
        );
        assert_eq!(
            count(
                client,
                "SELECT count(*) FROM projected.transfers t JOIN projected.accounts a ON a.account = t.payer"
            ),
            (BATCHES * USERS) as i64,
            "every payer is an account"
        );
    };
    check(&mut client);

    // Idempotent: nothing more to do; a projector that was behind takes the position.
    assert_eq!(Projection::open(&server.url(), "projected").expect("again").catch_up().expect("again"), 0);
    let mut behind = behind;
    assert_eq!(behind.cursor(), 0);
    assert_eq!(behind.catch_up().expect("behind"), 0, "another projector got there first");
    assert_eq!(behind.cursor(), WRITTEN);
    // Rewound to 0 and run again: the same tables.
    client.execute("UPDATE projected.projection_cursor SET seq = 0", &[]).expect("rewind");
    let mut again = Projection::open(&server.url(), "projected").expect("again");
    while again.catch_up().expect("re-project") > 0 {}
    check(&mut client);
    drop(dl);
}
