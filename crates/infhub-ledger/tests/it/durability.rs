//! Crash and restart behaviour of the durable ledger on the embedded file store.

use infhub_core::ledger::{Command, Ledger, LedgerParams, Outcome};
use infhub_core::{Amount, PrivateKey, B256};
use infhub_ledger::durable::{DurableLedger, DurableParams, ExecuteError};
use infhub_ledger::file::{FileStore, FileStoreOptions};
use infhub_ledger::store::{LogRecord, LogStore, StoreError, StoreStats};
use infhub_ledger::testkit::{self, key};
use std::fs;
use std::path::{Path, PathBuf};

fn params(hub: &PrivateKey) -> LedgerParams {
    testkit::params(hub, 10_000)
}

struct Fixture {
    hub: PrivateKey,
    users: Vec<PrivateKey>,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(users: u64) -> Fixture {
        Fixture {
            hub: key(0x0048_5542),
            users: (0..users).map(|i| key(0xA000 + i)).collect(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn open(&self, snapshot_every: u64) -> DurableLedger<FileStore> {
        self.open_at(self.dir.path(), snapshot_every).expect("open")
    }

    fn open_at(&self, dir: &Path, snapshot_every: u64) -> Result<DurableLedger<FileStore>, StoreError> {
        self.open_with(dir, snapshot_every, false)
    }

    fn open_with(
        &self,
        dir: &Path,
        snapshot_every: u64,
        archive: bool,
    ) -> Result<DurableLedger<FileStore>, StoreError> {
        let options = FileStoreOptions { max_segment_bytes: 4096, snapshots_kept: 2, archive_compacted: archive };
        let store = FileStore::open(dir, options)?;
        let dp = DurableParams { snapshot_every_records: snapshot_every, max_batch_commands: 1_000 };
        DurableLedger::open(store, params(&self.hub), self.hub.clone(), dp)
    }

    /// Channel openings, a reserve and a deposit for every user.
    fn genesis(&self) -> Vec<Command> {
        testkit::genesis(&self.hub, &self.users, Amount(10_000))
    }

    /// A signed payment from user `a` to user `b` built against the ledger's current state.
    fn payment(&self, ledger: &Ledger, a: usize, b: usize, amount: u128, id: u64) -> Command {
        testkit::payment(ledger, &self.users[a], self.users[b].address(), amount, id)
    }
}

fn all_ok(results: Vec<Result<Outcome, infhub_core::Error>>) {
    for r in results {
        r.expect("command accepted");
    }
}

/// Runs `batches` batches of payments; returns the ledger after each batch.
fn run_batches(f: &Fixture, dl: &mut DurableLedger<FileStore>, batches: usize, per_batch: usize) -> Vec<Ledger> {
    let n = f.users.len();
    let mut states = Vec::new();
    let mut id = dl.ledger().next_seq * 1_000;
    for b in 0..batches {
        // Each batch pays around a ring, one payment per payer, so commands built against the
        // current state stay valid in sequence.
        let cmds: Vec<Command> = (0..per_batch.min(n))
            .map(|i| {
                id += 1;
                f.payment(dl.ledger(), (i + b) % n, (i + b + 1) % n, 3 + i as u128, id)
            })
            .collect();
        all_ok(dl.execute(cmds).expect("batch durable"));
        states.push(dl.ledger().clone());
    }
    states
}

/// One batch as [`run_batches`] makes it, with what the durable ledger reports of it.
fn run_batch(f: &Fixture, dl: &mut DurableLedger<FileStore>, per_batch: usize) -> (Ledger, infhub_ledger::Executed) {
    let n = f.users.len();
    let mut id = dl.ledger().next_seq * 1_000;
    let cmds: Vec<(Command, Option<infhub_core::channel::CheckedDebit>)> = (0..per_batch.min(n))
        .map(|i| {
            id += 1;
            (f.payment(dl.ledger(), i % n, (i + 1) % n, 3 + i as u128, id), None)
        })
        .collect();
    let executed = dl.execute_checked(cmds).expect("batch durable");
    all_ok(executed.results.clone());
    (dl.ledger().clone(), executed)
}

#[test]
fn restart_recovers_exactly_the_acknowledged_state() {
    let f = Fixture::new(6);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    let states = run_batches(&f, &mut dl, 20, 6);
    let stats = dl.store_stats();
    assert_eq!(stats.syncs, 21, "one sync per batch (group commit)");
    // Each batch of payments ends with the seal record that signs its proofs.
    assert_eq!(stats.records, 1 + 12 + 20 * (6 + 1));
    drop(dl);
    let reopened = f.open(0);
    assert_eq!(reopened.ledger(), states.last().expect("state"));
    assert_eq!(reopened.recovery().replayed, stats.records);
}

/// A data directory written in another format of the store (an earlier version) is refused by
/// name at open, for a log segment and for a snapshot, and nothing in it is changed.
#[test]
fn a_data_directory_of_another_format_is_refused_by_name() {
    let f = Fixture::new(3);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    drop(dl);
    let seg = segment_files(f.dir.path()).pop().expect("a segment");
    let mut bytes = fs::read(&seg).expect("read");
    assert_eq!(&bytes[..7], b"INFHLOG", "segments start with the log magic");
    let current = bytes[7];
    assert!(current > b'1', "a format digit after the first");
    bytes[7] = current - 1;
    fs::write(&seg, &bytes).expect("write");
    let (old, now) = (char::from(current - 1).to_string(), char::from(current).to_string());
    match f.open_at(f.dir.path(), 0) {
        Err(StoreError::FormatMismatch { found, expected, .. }) => assert_eq!((found, expected), (old, now)),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a segment of the previous format opened"),
    }
    assert_eq!(fs::read(&seg).expect("read"), bytes, "the old file is left as it was");
    // A snapshot of the old format likewise.
    bytes[7] = current;
    fs::write(&seg, &bytes).expect("write");
    let mut dl = f.open(0);
    dl.snapshot().expect("snapshot");
    drop(dl);
    let snap = files_with_extension(f.dir.path(), "snap").pop().expect("a snapshot");
    let mut s = fs::read(&snap).expect("read");
    s[7] = current - 1;
    fs::write(&snap, &s).expect("write");
    assert!(matches!(f.open_at(f.dir.path(), 0), Err(StoreError::FormatMismatch { .. })));
}

/// Files of `dir` (not its archive) with the extension `ext`, in name (= seq) order.
fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    files_with_extension(dir, "seg")
}

#[test]
fn a_torn_tail_at_any_byte_recovers_a_prefix_of_the_log() {
    let f = Fixture::new(3);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    run_batches(&f, &mut dl, 6, 3);
    let final_state = dl.ledger().clone();
    drop(dl);
    // The state after every prefix of the log, by replaying it from scratch.
    let records = FileStore::open(f.dir.path(), FileStoreOptions::default()).expect("s").load_records(0).expect("r");
    let mut ledger = Ledger::new(params(&f.hub));
    let mut after_prefix = vec![ledger.clone()];
    for r in &records {
        ledger.apply(&f.hub, r.command.clone()).expect("replay");
        after_prefix.push(ledger.clone());
    }
    assert_eq!(after_prefix.last(), Some(&final_state));
    let last = segment_files(f.dir.path()).pop().expect("a segment");
    let full_len = fs::metadata(&last).expect("meta").len();
    let scratch = tempfile::tempdir().expect("tmp");
    let mut previous_seq = 0;
    let mut distinct = std::collections::BTreeSet::new();
    // Cut the last segment at every byte offset, as a crash mid-write would: the store must open,
    // drop the torn record, and hold exactly the state after some prefix of the log; a longer
    // file never recovers less.
    for cut in 0..=full_len {
        let dir = scratch.path().join(format!("cut-{cut}"));
        copy_tree(f.dir.path(), &dir);
        let seg = dir.join(last.file_name().expect("name"));
        fs::OpenOptions::new().write(true).open(&seg).expect("open").set_len(cut).expect("truncate");
        let dl = f.open_at(&dir, 0).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let got = dl.ledger();
        let applied = (got.next_seq - 1) as usize;
        if dl.recovery().sealed_on_open {
            // The cut fell inside a batch: the prefix, then a seal of its waiting proofs.
            let mut want = after_prefix[applied - 1].clone();
            assert!(want.unsealed_proofs() > 0, "cut at {cut}: sealed on open with nothing to seal");
            want.apply(&f.hub, Command::SealProofs).expect("seal");
            assert_eq!(got, &want, "cut at {cut}: not the state after {} records and a seal", applied - 1);
            assert_eq!(got.unsealed_proofs(), 0);
        } else {
            assert_eq!(got, &after_prefix[applied], "cut at {cut}: not the state after {applied} records");
        }
        assert!(got.next_seq >= previous_seq, "cut at {cut} recovered less than a shorter cut");
        previous_seq = got.next_seq;
        distinct.insert(got.next_seq);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
    assert_eq!(previous_seq, final_state.next_seq, "the uncut file recovers everything");
    assert!(distinct.len() > 3, "cuts recovered several different prefixes: {distinct:?}");
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let f = Fixture::new(3);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    let states = run_batches(&f, &mut dl, 2, 3);
    drop(dl);
    let last = segment_files(f.dir.path()).pop().expect("segment");
    // A half-written frame: a length, a checksum and a few bytes of payload.
    let mut junk = 300u32.to_le_bytes().to_vec();
    junk.extend_from_slice(&[0xAB; 4]);
    junk.extend_from_slice(&[1, 2, 3]);
    let mut bytes = fs::read(&last).expect("read");
    bytes.extend_from_slice(&junk);
    fs::write(&last, bytes).expect("write");
    let mut dl = f.open(0);
    assert_eq!(dl.ledger(), states.last().expect("state"));
    assert_eq!(dl.store_stats().truncated_bytes, junk.len() as u64);
    let more = run_batches(&f, &mut dl, 1, 3);
    // The index rewritten at the repair leads to every record, old and appended since.
    let records = dl.history().expect("history");
    let last_seq = records.last().expect("records").seq;
    let read = dl.store().reader().read_range(1, last_seq).expect("read through the index");
    assert_eq!(
        read.iter().map(|r| &r.command).collect::<Vec<_>>(),
        records.iter().map(|r| &r.command).collect::<Vec<_>>()
    );
    drop(dl);
    assert_eq!(f.open(0).ledger(), more.last().expect("state"), "appends after the repair are durable");
}

#[test]
fn corruption_before_intact_records_refuses_to_open() {
    let f = Fixture::new(3);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    run_batches(&f, &mut dl, 3, 3);
    drop(dl);
    let first = segment_files(f.dir.path()).remove(0);
    let mut bytes = fs::read(&first).expect("read");
    bytes[20] ^= 0xFF; // inside the first record's payload
    fs::write(&first, bytes).expect("write");
    match f.open_at(f.dir.path(), 0) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("checksum") || msg.contains("intact"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a corrupt log"),
    }
}

#[test]
fn snapshots_bound_replay_and_drop_old_segments() {
    let f = Fixture::new(6);
    let mut dl = f.open(25);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    let states = run_batches(&f, &mut dl, 30, 6);
    let total = dl.store_stats().records;
    drop(dl);
    let snaps = snapshot_files(f.dir.path()).len();
    assert_eq!(snaps, 2, "only the newest snapshots are kept");
    let reopened = f.open(25);
    assert_eq!(reopened.ledger(), states.last().expect("state"));
    let rec = reopened.recovery();
    assert!(rec.snapshot_seq > 0, "a snapshot was used");
    assert!(rec.replayed < 25, "only the tail after the snapshot is replayed: {rec:?} of {total}");
    let remaining: u64 = segment_files(f.dir.path()).iter().map(|p| fs::metadata(p).expect("m").len()).sum();
    assert!(remaining < dl_bytes_upper_bound(total), "old segments were deleted: {remaining} bytes left");
}

fn dl_bytes_upper_bound(records: u64) -> u64 {
    // Far less than every record ever written (each is several hundred bytes).
    records * 100
}

#[test]
fn a_tampered_record_is_caught_by_replay() {
    let f = Fixture::new(3);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    run_batches(&f, &mut dl, 2, 3);
    drop(dl);
    // Rewrite the log with one outcome altered but checksums valid: only replay can notice.
    let mut store = FileStore::open(f.dir.path(), FileStoreOptions::default()).expect("store");
    let mut records = store.load_records(0).expect("records");
    drop(store);
    let victim = records.iter_mut().find(|r| matches!(r.outcome, Outcome::Paid { .. })).expect("a payment");
    if let Outcome::Paid { receipt, .. } = &mut victim.outcome {
        receipt.message.payment_id = B256::repeat_byte(0x66);
    }
    let victim_seq = victim.seq;
    let fresh = tempfile::tempdir().expect("tmp");
    let mut store = FileStore::open(fresh.path(), FileStoreOptions::default()).expect("store");
    store.append(&records).expect("append");
    drop(store);
    match f.open_at(fresh.path(), 0) {
        Err(StoreError::ReplayDiverged { seq, .. }) => assert_eq!(seq, victim_seq),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a tampered outcome went unnoticed"),
    }
}

#[test]
fn a_payment_retried_after_restart_returns_the_first_result() {
    let f = Fixture::new(2);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    let pay = f.payment(dl.ledger(), 0, 1, 42, 7);
    let seq = dl.ledger().next_seq;
    all_ok(dl.execute(vec![pay.clone()]).expect("pay"));
    drop(dl);
    let mut dl = f.open(0);
    let r = dl.execute(vec![pay]).expect("retry");
    assert_eq!(r, vec![Ok(Outcome::Duplicate { first_seq: seq })]);
    assert_eq!(dl.store_stats().records, 0, "a duplicate writes nothing");
}

/// A store whose appends fail, to check the ledger stops acknowledging.
struct FailingStore;

impl LogStore for FailingStore {
    fn append(&mut self, _: &[LogRecord]) -> Result<(), StoreError> {
        Err(StoreError::Io(std::io::Error::other("disk full")))
    }
    fn write_snapshot(&mut self, _: u64, _: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::Io(std::io::Error::other("disk full")))
    }
    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(None)
    }
    fn load_records(&mut self, _: u64) -> Result<Vec<LogRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
    fn history(&mut self) -> Result<Vec<LogRecord>, StoreError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_storage_failure_acknowledges_nothing_and_poisons_the_ledger() {
    let f = Fixture::new(1);
    let mut dl =
        DurableLedger::open(FailingStore, params(&f.hub), f.hub.clone(), DurableParams::default()).expect("open");
    let genesis = f.genesis();
    assert!(dl.unconfirmed().is_empty());
    assert!(matches!(dl.execute(genesis.clone()), Err(ExecuteError::Store(_))));
    // The failed batch stays known, so readers of the in-memory ledger can withhold what it
    // touched: every command of it, and the accounts it names.
    let unconfirmed: Vec<Command> = dl.unconfirmed().iter().map(|r| r.command.clone()).collect();
    assert_eq!(unconfirmed, genesis, "the failed batch's records");
    let user = f.users[0].address();
    assert!(dl.unconfirmed().iter().any(|r| r.accounts().contains(&user)), "the user's channel is named");
    assert!(matches!(dl.execute(vec![]), Err(ExecuteError::Poisoned)));
}

#[test]
fn oversized_batches_are_refused_by_name() {
    let f = Fixture::new(1);
    let mut dl = f.open(0);
    let cmds = vec![Command::Block(1); 1_001];
    assert!(matches!(dl.execute(cmds), Err(ExecuteError::BatchTooLarge(1_001))));
}

#[test]
fn a_damaged_newest_snapshot_never_yields_a_silently_older_state() {
    let f = Fixture::new(4);
    let mut dl = f.open(10);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    run_batches(&f, &mut dl, 12, 4);
    drop(dl);
    let mut snaps = snapshot_files(f.dir.path());
    let newest = snaps.pop().expect("a snapshot");
    let mut bytes = fs::read(&newest).expect("read");
    let n = bytes.len();
    bytes[n - 1] ^= 0x01;
    fs::write(&newest, bytes).expect("write");
    // The older snapshot's log was deleted when the newest was written, so recovery must refuse
    // (a gap) rather than start from the older state.
    match f.open_at(f.dir.path(), 10) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("gap"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started from an older state with a hole in the log"),
    }
}

#[test]
fn chain_events_survive_restart_exactly_once() {
    let f = Fixture::new(4);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    let after_genesis = dl.ledger().clone();
    let records = dl.store_stats().records;
    drop(dl);
    let mut reopened = f.open(0);
    assert_eq!(reopened.ledger(), &after_genesis);
    // The watcher re-delivers the same events after a restart: the cursor makes them no-ops.
    all_ok(reopened.execute(f.genesis()).expect("redelivery"));
    assert_eq!(reopened.ledger(), &after_genesis, "re-delivered chain events changed the ledger");
    assert_eq!(reopened.store_stats().records, 0, "re-delivered chain events were logged");
    assert_eq!(records, 1 + 2 * 4);
}

#[test]
fn the_archive_keeps_every_record_as_history_while_recovery_replays_only_the_tail() {
    let f = Fixture::new(5);
    let mut dl = f.open_with(f.dir.path(), 40, true).expect("open");
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    let states = run_batches(&f, &mut dl, 30, 5);
    let written = 1 + 2 * 5 + 30 * (5 + 1);
    drop(dl);
    let mut reopened = f.open_with(f.dir.path(), 40, true).expect("reopen");
    assert_eq!(reopened.ledger(), states.last().expect("state"));
    assert!(reopened.recovery().snapshot_seq > 0, "no snapshot was taken");
    assert!(reopened.recovery().replayed < 40, "replayed {} records", reopened.recovery().replayed);
    let history = reopened.history().expect("history");
    let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=written as u64).collect::<Vec<_>>(), "history lost or duplicated records");
    assert!(f.dir.path().join("archive").is_dir());
    // The log stores proofs unsigned; history read back carries them signed by their seals.
    let (domain, hub) = (reopened.ledger().params.domain, reopened.ledger().params.hub);
    let mut paid = 0;
    for r in &history {
        if let infhub_core::ledger::Outcome::Paid { receipt, credit: Some(credit), .. } = &r.outcome {
            receipt.verify(&domain, hub).unwrap_or_else(|e| panic!("receipt at {}: {e}", r.seq));
            credit.verify(&domain, hub).unwrap_or_else(|e| panic!("credit at {}: {e}", r.seq));
            assert!(!credit.path.is_empty(), "a batch proof, not a direct signature");
            paid += 1;
        }
    }
    assert_eq!(paid, 30 * 5);
}

#[test]
fn without_an_archive_the_history_is_the_live_log_after_the_newest_snapshot() {
    // Found by the simulator (seed 1): history() demanded seq 1 after compaction deleted it.
    let f = Fixture::new(5);
    let mut dl = f.open_with(f.dir.path(), 40, false).expect("open");
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    run_batches(&f, &mut dl, 34, 5);
    let written = (1 + 2 * 5 + 34 * (5 + 1)) as u64;
    drop(dl);
    let mut reopened = f.open_with(f.dir.path(), 40, false).expect("reopen");
    let snapshot_seq = reopened.recovery().snapshot_seq;
    assert!(snapshot_seq > 0, "no snapshot was taken");
    let history = reopened.history().expect("history without an archive");
    let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
    // The live log holds what follows the newest snapshot (possibly nothing), without gaps.
    assert!(snapshot_seq < written, "the last records must follow the newest snapshot for this test");
    let first = *seqs.first().expect("live records after the snapshot");
    assert!(first <= snapshot_seq + 1, "history starts at {first}, after the snapshot at {snapshot_seq}");
    assert_eq!(seqs, (first..=written).collect::<Vec<_>>(), "live history has a gap");
}

/// Every segment's offset index file, live and archived.
fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in [dir.join("archive"), dir.to_path_buf()] {
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries {
                let p = e.expect("entry").path();
                if p.extension().is_some_and(|x| x == "idx") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn records_are_read_by_seq_through_the_segment_indexes_which_open_rebuilds_when_lost_or_stale() {
    let f = Fixture::new(5);
    let mut dl = f.open_with(f.dir.path(), 40, true).expect("open");
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    run_batches(&f, &mut dl, 30, 5);
    let all = dl.history().expect("history");
    let unsigned =
        |records: Vec<LogRecord>| -> Vec<(u64, Command)> { records.into_iter().map(|r| (r.seq, r.command)).collect() };
    let last = all.last().expect("records").seq;
    let read_all = |reader: &infhub_ledger::file::LogReader| {
        // Ranges of every width and start, across segment and archive boundaries.
        for width in [1u64, 2, 7, 40, last] {
            let mut from = 1;
            while from <= last {
                let to = (from + width - 1).min(last);
                let got = reader.read_range(from, to).expect("read");
                let want: Vec<LogRecord> = all[(from - 1) as usize..to as usize].to_vec();
                assert_eq!(unsigned(got), unsigned(want), "records {from}..={to}");
                from = to + 1;
            }
        }
        assert!(reader.read_range(last + 1, last + 1).is_err(), "a record not yet written is refused by name");
    };
    read_all(&dl.store().reader());
    let indexes = index_files(f.dir.path());
    assert!(indexes.len() >= 3 && indexes.iter().any(|p| p.starts_with(f.dir.path().join("archive"))), "{indexes:?}");
    drop(dl);
    // Lose one index, cut another short, leave garbage in a third: open rebuilds them all.
    fs::remove_file(&indexes[0]).expect("remove");
    fs::write(&indexes[1], [0u8; 5]).expect("truncate");
    let last_index = indexes.last().expect("index");
    fs::write(last_index, vec![0xAB; 64]).expect("garbage");
    let dl = f.open_with(f.dir.path(), 40, true).expect("reopen");
    read_all(&dl.store().reader());
    // An index whose length is right but whose offsets are wrong is caught by the read.
    drop(dl);
    let middle = &indexes[1];
    let len = fs::metadata(middle).expect("meta").len() as usize;
    fs::write(middle, vec![0u8; len]).expect("zero offsets");
    let dl = f.open_with(f.dir.path(), 40, true).expect("reopen");
    let reader = dl.store().reader();
    let refused = (1..=last).any(|s| reader.read_range(s, s).is_err());
    assert!(refused, "a damaged index must fail the read, not return another record");
}

#[test]
fn a_whole_checksummed_record_that_does_not_decode_refuses_to_open_instead_of_being_cut_as_torn() {
    let f = Fixture::new(3);
    let mut dl = f.open(0);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    run_batches(&f, &mut dl, 2, 3);
    drop(dl);
    let last = segment_files(f.dir.path()).pop().expect("segment");
    let payload = [0xFFu8; 24];
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    let mut bytes = fs::read(&last).expect("read");
    let before = bytes.len();
    bytes.extend_from_slice(&frame);
    fs::write(&last, bytes).expect("write");
    match f.open_at(f.dir.path(), 0) {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("undecodable"), "{why}"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("opened after cutting a whole record away"),
    }
    assert_eq!(fs::metadata(&last).expect("meta").len() as usize, before + frame.len(), "nothing was truncated");
}

/// Copies a store directory with its archive, as a crash would leave it. A file that the
/// snapshot thread renames away during the copy is skipped: the copy then shows the moment
/// before that file was created.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("dir") {
        let e = e.expect("entry");
        if e.path().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
            continue;
        }
        match fs::copy(e.path(), to.join(e.file_name())) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("copy {}: {err}", e.path().display()),
        }
    }
}

/// Snapshot files in `dir`, oldest first.
fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    files_with_extension(dir, "snap")
}

#[test]
fn snapshots_written_on_their_own_thread_bound_replay_and_keep_every_record_in_the_archive() {
    let f = Fixture::new(5);
    let mut dl = f.open_with(f.dir.path(), 40, true).expect("open");
    dl.set_background_snapshots(true);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    let mut states = Vec::new();
    let mut started = 0;
    let mut completed = 0;
    for _ in 0..30 {
        let (state, executed) = run_batch(&f, &mut dl, 5);
        states.push(state);
        started += executed.snapshot.is_some() as u32;
        completed += executed.background_snapshot.is_some() as u32;
    }
    completed += dl.complete_snapshot().expect("snapshot thread").is_some() as u32;
    assert!(started >= 3, "snapshots every 40 records over 191 records: {started} started");
    assert_eq!(started, completed, "every snapshot started was completed");
    let written = 1 + 2 * 5 + 30 * (5 + 1);
    drop(dl);
    let mut reopened = f.open_with(f.dir.path(), 40, true).expect("reopen");
    assert_eq!(reopened.ledger(), states.last().expect("state"));
    let rec = reopened.recovery();
    assert!(rec.snapshot_seq > 0, "no snapshot was written: {rec:?}");
    assert!(rec.replayed < 40 + 6, "replayed {} records", rec.replayed);
    let seqs: Vec<u64> = reopened.history().expect("history").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=written as u64).collect::<Vec<_>>(), "history lost or duplicated records");
    assert_eq!(snapshot_files(f.dir.path()).len(), 2, "only the newest snapshots are kept");
}

#[test]
fn a_crash_while_a_snapshot_is_written_on_its_own_thread_recovers_the_acknowledged_state() {
    let f = Fixture::new(5);
    let mut dl = f.open_with(f.dir.path(), 30, true).expect("open");
    dl.set_background_snapshots(true);
    all_ok(dl.execute(f.genesis()).expect("genesis"));
    // Run until a commit starts a snapshot; copy the directory at once (a crash at whatever
    // point the snapshot thread has reached), and again once its file is in place but before
    // the writer has archived what it covers.
    let mut crashes = Vec::new();
    for _ in 0..20 {
        let (state, executed) = run_batch(&f, &mut dl, 5);
        if executed.snapshot.is_none() {
            continue;
        }
        let early = tempfile::tempdir().expect("tempdir");
        copy_tree(f.dir.path(), early.path());
        crashes.push((early, state.clone()));
        let seq = state.next_seq - 1;
        let fin = f.dir.path().join(format!("snapshot-{seq:020}.snap"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !fin.exists() {
            assert!(std::time::Instant::now() < deadline, "snapshot thread never wrote {}", fin.display());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let late = tempfile::tempdir().expect("tempdir");
        copy_tree(f.dir.path(), late.path());
        crashes.push((late, state));
    }
    assert!(crashes.len() >= 4, "two snapshots or more were started: {}", crashes.len() / 2);
    let expected_history = dl.history().expect("history").len();
    drop(dl);
    for (dir, state) in &crashes {
        let reopened = f.open_with(dir.path(), 30, true).expect("a crash copy opens");
        assert_eq!(reopened.ledger(), state, "crash copy {} recovered another state", dir.path().display());
    }
    // The last "late" copy holds the newest snapshot file with its covered segments still live.
    let (late, state) = crashes.last().expect("a crash");
    let mut reopened = f.open_with(late.path(), 30, true).expect("reopen");
    assert_eq!(reopened.recovery().snapshot_seq, state.next_seq - 1, "the snapshot written before the crash");
    let seqs: Vec<u64> = reopened.history().expect("history").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..state.next_seq).collect::<Vec<_>>(), "history lost or duplicated records");
    assert!(seqs.len() <= expected_history);
}

/// Every record of a batch carries the batch's commit time from the ledger's clock (spec
/// §5.21a); a clock stepping back does not make a later batch earlier, also after a reopen,
/// which takes the last time from the log.
#[test]
fn commit_times_come_from_the_clock_and_never_fall_across_a_reopen() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let f = Fixture::new(4);
    let clock = Arc::new(AtomicU64::new(5_000));
    let tick = |dl: &mut DurableLedger<FileStore>| {
        let c = clock.clone();
        dl.set_clock(Box::new(move || c.load(Ordering::Relaxed)));
    };
    let mut dl = f.open(0);
    tick(&mut dl);
    let executed = dl.execute_checked(f.genesis().into_iter().map(|c| (c, None)).collect()).expect("genesis");
    assert!(executed.records.iter().all(|r| r.at_ms == 5_000), "one time per batch, seal included");
    clock.store(1_000, Ordering::Relaxed);
    let (_, stepped_back) = run_batch(&f, &mut dl, 3);
    assert!(stepped_back.records.iter().all(|r| r.at_ms == 5_000), "not earlier than the last batch");
    clock.store(7_000, Ordering::Relaxed);
    let (_, later) = run_batch(&f, &mut dl, 3);
    assert!(later.records.iter().all(|r| r.at_ms == 7_000));
    drop(dl);
    let mut dl = f.open(0);
    clock.store(2_000, Ordering::Relaxed);
    tick(&mut dl);
    let (_, reopened) = run_batch(&f, &mut dl, 3);
    assert!(reopened.records.iter().all(|r| r.at_ms == 7_000), "the log's last time holds after a reopen");
    let history = dl.history().expect("history");
    assert!(history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "never falling through the whole log");
    assert_eq!(history.last().map(|r| r.at_ms), Some(7_000));
}
