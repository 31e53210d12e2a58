//! The embedded default store: segment files of checksummed records, plus snapshot files.
//!
//! Layout of the data directory:
//! - `log-<first seq, 20 digits>.seg`: a header (`INFHLOG4`) then records framed as
//!   `[u32 length][u32 crc32 of payload][payload]`, little-endian; payload = bincode(`LogRecord`).
//! - `log-<first seq, 20 digits>.idx`: beside each segment, the byte offset of each of its
//!   records' frames (u64 little-endian, one per record, in seq order), so a record is read by
//!   its seq without scanning ([`LogReader`]). Derived data: written without a sync, checked
//!   at open (a length that does not match the segment's record count, or the last segment's,
//!   is rebuilt from the segment), and every read checks the record it finds is the one asked.
//! - `snapshot-<seq, 20 digits>.snap`: `INFHSNP4`, `[u64 seq][u64 length][u32 crc32]`, payload.
//!   Written to a `.tmp` file, synced, renamed, and the directory synced, so a snapshot is either
//!   whole or absent.
//!
//! Appends are one `write` of all frames of a batch followed by one `fdatasync` (group commit).
//! On open, the last segment is scanned: an incomplete or checksum-failing final record (a torn
//! write) is truncated away; a bad record followed by good ones is corruption and refuses to open.

use crate::fs::{Fs, FsFile, OsFs};
use crate::store::{LogRecord, LogStore, SnapshotWriter, StoreError, StoreStats};
use std::path::{Path, PathBuf};

/// The on-disk format: the last byte of each magic. Format 2 (decision D28): chain events and
/// channel state carry running totals instead of nonces, and ledger outcomes include refunds.
/// Format 3 (D30): the ledger follows reserve-withdrawal announcements (new chain events and
/// commands, and the announcement in its state).
const LOG_MAGIC: &[u8; 8] = b"INFHLOG4";
const SNAP_MAGIC: &[u8; 8] = b"INFHSNP4";

/// Refuses a file written in another format of this store, by name, before anything tries to
/// decode it (the records of another format would not decode, or worse, decode wrongly).
fn check_format(buf: &[u8], magic: &[u8; 8], path: &Path) -> Result<(), StoreError> {
    let stem = &magic[..7];
    if buf.len() >= 8 && &buf[..7] == stem && buf[7] != magic[7] {
        return Err(StoreError::FormatMismatch {
            path: path.display().to_string(),
            found: char::from(buf[7]).to_string(),
            expected: char::from(magic[7]).to_string(),
        });
    }
    Ok(())
}
const FRAME_HEADER_BYTES: usize = 8;
/// Largest record payload accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Options of the file store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStoreOptions {
    /// A new segment starts once the current one exceeds this many bytes.
    pub max_segment_bytes: u64,
    /// Snapshots kept on disk (the newest ones), at least 1.
    pub snapshots_kept: usize,
    /// Segments a snapshot covers are moved to `archive/` (the account history the hub must
    /// keep) instead of deleted. Recovery never reads the archive.
    pub archive_compacted: bool,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions { max_segment_bytes: 256 << 20, snapshots_kept: 2, archive_compacted: false }
    }
}

/// The file store. Not shared between processes: one node owns its data directory.
pub struct FileStore<F: Fs = OsFs> {
    fs: F,
    dir: PathBuf,
    options: FileStoreOptions,
    /// The segment being appended to and its size.
    current: Option<(F::File, u64)>,
    /// The offset index of the current segment.
    current_index: Option<F::File>,
    /// Sequence number the next appended record must carry (0 = unknown until load/append).
    next_seq: u64,
    stats: StoreStats,
}

/// Writes a snapshot file durably: a temporary file with a checksummed header, synced,
/// renamed into place, and the directory synced. A crash leaves either no snapshot at `seq`
/// (the `.tmp` is removed at the next open) or a whole one.
fn write_snapshot_file<F: Fs>(fs: &F, dir: &Path, seq: u64, ledger_bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("snapshot-{seq:020}.tmp"));
    let fin = dir.join(format!("snapshot-{seq:020}.snap"));
    {
        let mut f = fs.create(&tmp)?;
        let mut header = Vec::with_capacity(28);
        header.extend_from_slice(SNAP_MAGIC);
        header.extend_from_slice(&seq.to_le_bytes());
        header.extend_from_slice(&(ledger_bytes.len() as u64).to_le_bytes());
        header.extend_from_slice(&crc32fast::hash(ledger_bytes).to_le_bytes());
        f.append(&header)?;
        f.append(ledger_bytes)?;
        f.sync_all()?;
    }
    fs.rename(&tmp, &fin)?;
    fs.sync_dir(dir)?;
    Ok(())
}

fn io_corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

/// The offset index beside segment `segment`.
fn index_path(segment: &Path) -> PathBuf {
    segment.with_extension("idx")
}

/// The segment files in `dir` with their first seq, oldest first.
fn segments_in<F: Fs>(fs: &F, dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut segs = Vec::new();
    for name in fs.list(dir)? {
        if let Some(seq) = seq_of(&name, "log-", ".seg") {
            segs.push((seq, dir.join(name)));
        }
    }
    segs.sort();
    Ok(segs)
}

/// Every segment of the store in `dir`, archived then live, oldest first.
fn archived_and_live_segments<F: Fs>(fs: &F, dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut all = segments_in(fs, &dir.join("archive"))?;
    all.extend(segments_in(fs, dir)?);
    // Archived segments are the older ones; sorting keeps the order whatever a crash left.
    all.sort();
    Ok(all)
}

fn seq_of(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

/// How [`parse_frames`] names a whole, checksummed frame whose record does not decode.
const UNDECODABLE: &str = "undecodable record";

/// Parses frames from `buf`. Returns the records and the offset just past the last good frame,
/// and whether a bad frame was followed by more data that looks like good frames.
fn parse_frames(buf: &[u8], start: usize) -> (Vec<(usize, LogRecord)>, usize, Option<String>) {
    let mut out = Vec::new();
    let mut off = start;
    while off < buf.len() {
        let bad = |why: &str| Some(format!("{why} at byte {off}"));
        if buf.len() - off < FRAME_HEADER_BYTES {
            return (out, off, bad("incomplete frame header"));
        }
        let len = u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buf[off + 4..off + 8].try_into().expect("4 bytes"));
        let body = off + FRAME_HEADER_BYTES;
        if len > MAX_RECORD_BYTES || buf.len() - body < len {
            return (out, off, bad("incomplete or oversized frame"));
        }
        let payload = &buf[body..body + len];
        if crc32fast::hash(payload) != crc {
            return (out, off, bad("checksum mismatch"));
        }
        match bincode::deserialize::<LogRecord>(payload) {
            Ok(r) => out.push((off, r)),
            Err(e) => return (out, off, Some(format!("{UNDECODABLE} at byte {off}: {e}"))),
        }
        off = body + len;
    }
    (out, off, None)
}

/// True if some good frame starts after `bad_at` (so the damage is not a torn tail).
fn good_frame_after(buf: &[u8], bad_at: usize) -> bool {
    // Scan forward for any offset where a complete frame with a valid checksum begins.
    let mut off = bad_at + 1;
    while off + FRAME_HEADER_BYTES <= buf.len() {
        let len = u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        if len > 0 && len <= MAX_RECORD_BYTES && off + FRAME_HEADER_BYTES + len <= buf.len() {
            let crc = u32::from_le_bytes(buf[off + 4..off + 8].try_into().expect("4 bytes"));
            let payload = &buf[off + FRAME_HEADER_BYTES..off + FRAME_HEADER_BYTES + len];
            if crc32fast::hash(payload) == crc && bincode::deserialize::<LogRecord>(payload).is_ok() {
                return true;
            }
        }
        off += 1;
    }
    false
}

impl FileStore<OsFs> {
    /// Opens (creating if needed) the store in `dir` and repairs a torn tail of the last segment.
    pub fn open(dir: impl Into<PathBuf>, options: FileStoreOptions) -> Result<FileStore, StoreError> {
        FileStore::open_on(OsFs, dir, options)
    }
}

impl<F: Fs> FileStore<F> {
    /// Opens the store in `dir` of the file system `fs` (see [`FileStore::open`]).
    pub fn open_on(fs: F, dir: impl Into<PathBuf>, options: FileStoreOptions) -> Result<FileStore<F>, StoreError> {
        let dir = dir.into();
        fs.create_dir_all(&dir)?;
        let mut store = FileStore {
            fs,
            dir,
            options,
            current: None,
            current_index: None,
            next_seq: 0,
            stats: StoreStats::default(),
        };
        store.finish_interrupted_archiving()?;
        store.repair_tail()?;
        store.check_indexes()?;
        Ok(store)
    }

    /// Completes a move of covered segments to the archive that a crash interrupted. The move
    /// renames a segment from the live directory into `archive/` and syncs both directories,
    /// the archive first; a crash between the two syncs can leave the segment under both
    /// names (issue 25: the store then refused to open). Both names hold the same file, which
    /// a durable snapshot already covers, so the live name is removed (its index moved or
    /// removed likewise). Two copies that differ are corruption, refused by name.
    fn finish_interrupted_archiving(&mut self) -> Result<(), StoreError> {
        let archive = self.archive_dir();
        let archived = self.segments_in(&archive)?;
        if archived.is_empty() {
            return Ok(());
        }
        let mut finished = false;
        for (first, live) in self.segments()? {
            let Some((_, kept)) = archived.iter().find(|(a, _)| *a == first) else { continue };
            if self.fs.read(&live)? != self.fs.read(kept)? {
                return Err(io_corrupt(format!(
                    "{} and {} hold the same records' segment with different bytes",
                    live.display(),
                    kept.display()
                )));
            }
            let (live_index, kept_index) = (index_path(&live), index_path(kept));
            if self.fs.file_len(&live_index).is_ok() {
                if self.fs.file_len(&kept_index).is_ok() {
                    self.fs.remove(&live_index)?;
                } else {
                    self.fs.rename(&live_index, &kept_index)?;
                }
            }
            self.fs.remove(&live)?;
            finished = true;
        }
        if finished {
            self.sync_dir(&archive)?;
            self.sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), StoreError> {
        self.fs.sync_dir(dir)?;
        Ok(())
    }

    /// Segment files, oldest first, with their first sequence number.
    fn segments(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        self.segments_in(&self.dir)
    }

    fn archive_dir(&self) -> PathBuf {
        self.dir.join("archive")
    }

    fn segments_in(&self, dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        segments_in(&self.fs, dir)
    }

    fn snapshots(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let mut snaps = Vec::new();
        for name in self.fs.list(&self.dir)? {
            if let Some(seq) = seq_of(&name, "snapshot-", ".snap") {
                snaps.push((seq, self.dir.join(name)));
            } else if name.ends_with(".tmp") {
                // A snapshot that never completed.
                self.fs.remove(&self.dir.join(name))?;
            }
        }
        snaps.sort();
        Ok(snaps)
    }

    fn read_segment(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        Ok(self.fs.read(path)?)
    }

    /// Every archived record, in order (see [`FileStoreOptions::archive_compacted`]).
    pub fn archived_records(&self) -> Result<Vec<LogRecord>, StoreError> {
        let mut out: Vec<LogRecord> = Vec::new();
        for (first_seq, path) in self.segments_in(&self.archive_dir())? {
            let buf = self.read_segment(&path)?;
            check_format(&buf, LOG_MAGIC, &path)?;
            if buf.len() < LOG_MAGIC.len() || &buf[..LOG_MAGIC.len()] != LOG_MAGIC {
                return Err(io_corrupt(format!("{} lacks the log header", path.display())));
            }
            let (records, _, problem) = parse_frames(&buf, LOG_MAGIC.len());
            if let Some(problem) = problem {
                return Err(io_corrupt(format!("{}: {problem}", path.display())));
            }
            for (_, r) in records {
                let expected = out.last().map(|l| l.seq + 1).unwrap_or(first_seq);
                if r.seq != expected {
                    return Err(io_corrupt(format!("{}: seq {} where {expected} was due", path.display(), r.seq)));
                }
                out.push(r);
            }
        }
        Ok(out)
    }

    fn repair_tail(&mut self) -> Result<(), StoreError> {
        let Some((_, path)) = self.segments()?.pop() else { return Ok(()) };
        let buf = self.read_segment(&path)?;
        check_format(&buf, LOG_MAGIC, &path)?;
        if buf.len() < LOG_MAGIC.len() || &buf[..LOG_MAGIC.len()] != LOG_MAGIC {
            if buf.len() < LOG_MAGIC.len() && LOG_MAGIC.starts_with(&buf) {
                // Crashed while creating the segment: nothing in it was ever acknowledged. The
                // segment before it is the last one now, and its index is repaired as the
                // last one's (found by the simulator: left alone, it could stay empty).
                self.fs.remove(&path)?;
                self.sync_dir(&self.dir)?;
                return self.repair_tail();
            }
            return Err(io_corrupt(format!("{} lacks the log header", path.display())));
        }
        let (records, end, problem) = parse_frames(&buf, LOG_MAGIC.len());
        if let Some(problem) = problem {
            // A whole frame whose checksum holds was written and synced as it is: a record this
            // build cannot decode is never a torn write, and truncating it would drop an
            // acknowledged record.
            if problem.starts_with(UNDECODABLE) {
                return Err(io_corrupt(format!("{}: {problem}", path.display())));
            }
            if good_frame_after(&buf, end) {
                return Err(io_corrupt(format!("{}: {problem}, with intact records after it", path.display())));
            }
            self.fs.truncate(&path, end as u64)?;
            self.stats.truncated_bytes += (buf.len() - end) as u64;
        }
        // The last segment's index may lack records appended before a crash or name records
        // truncated now: rewrite it from the scan just made.
        self.write_index(&path, records.iter().map(|(off, _)| *off as u64))?;
        Ok(())
    }

    /// Rewrites the offset index of segment `path` (no sync: the index is derived data).
    fn write_index(&self, path: &Path, offsets: impl Iterator<Item = u64>) -> Result<(), StoreError> {
        let bytes: Vec<u8> = offsets.flat_map(u64::to_le_bytes).collect();
        let mut f = self.fs.create(&index_path(path))?;
        f.append(&bytes)?;
        Ok(())
    }

    /// Checks that every segment but the last (live and archived) has an index of exactly one
    /// offset per record, rebuilding the ones that do not (an index lost in a crash, or a data
    /// directory from before indexes).
    fn check_indexes(&self) -> Result<(), StoreError> {
        for pair in archived_and_live_segments(&self.fs, &self.dir)?.windows(2) {
            let ((first, path), (next_first, _)) = (&pair[0], &pair[1]);
            let expected = next_first.checked_sub(*first).ok_or_else(|| io_corrupt("segments out of order"))? * 8;
            if self.fs.file_len(&index_path(path)).ok() == Some(expected) {
                continue;
            }
            let buf = self.read_segment(path)?;
            let (records, _, problem) = parse_frames(&buf, LOG_MAGIC.len());
            if let Some(problem) = problem {
                return Err(io_corrupt(format!("{}: {problem}", path.display())));
            }
            if records.len() as u64 * 8 != expected {
                return Err(io_corrupt(format!(
                    "{} holds {} records where the next segment implies {}",
                    path.display(),
                    records.len(),
                    expected / 8
                )));
            }
            self.write_index(path, records.iter().map(|(off, _)| *off as u64))?;
        }
        Ok(())
    }

    /// A reader of records by seq, usable beside the store (see [`LogReader`]).
    pub fn reader(&self) -> LogReader<F>
    where
        F: Clone,
    {
        LogReader::new(self.fs.clone(), self.dir.clone())
    }

    /// Starts a new segment for records after a snapshot at `seq` (unless one already starts
    /// there, as when snapshotting twice with nothing in between), so that every segment before
    /// it is covered by the snapshot.
    fn roll_for_snapshot(&mut self, seq: u64) -> Result<(), StoreError> {
        let starts_there = self.segments()?.last().is_some_and(|(first, _)| *first == seq + 1);
        if !starts_there {
            self.current = None;
            self.new_segment(seq + 1)?;
        }
        self.next_seq = seq + 1;
        Ok(())
    }

    /// Once a snapshot at `seq` is durable: archives (or deletes) the segments it covers and
    /// the snapshots beyond the number kept.
    fn drop_covered(&mut self, seq: u64) -> Result<(), StoreError> {
        let segs = self.segments()?;
        for pair in segs.windows(2) {
            // A segment's records end where the next segment begins.
            if pair[1].0 <= seq + 1 {
                let index = index_path(&pair[0].1);
                if self.options.archive_compacted {
                    let archive = self.archive_dir();
                    self.fs.create_dir_all(&archive)?;
                    let name = pair[0].1.file_name().expect("segment file name");
                    // The index first: a crash between the renames leaves a live segment
                    // without its index, which open rebuilds.
                    let moved = archive.join(name);
                    self.fs.rename(&index, &index_path(&moved))?;
                    self.fs.rename(&pair[0].1, &moved)?;
                    self.sync_dir(&archive)?;
                    self.sync_dir(&self.dir)?;
                } else {
                    self.fs.remove(&pair[0].1)?;
                    let _ = self.fs.remove(&index);
                }
            }
        }
        let snaps = self.snapshots()?;
        let keep = self.options.snapshots_kept.max(1);
        if snaps.len() > keep {
            for (_, path) in &snaps[..snaps.len() - keep] {
                self.fs.remove(path)?;
            }
        }
        self.sync_dir(&self.dir)?;
        Ok(())
    }

    fn new_segment(&mut self, first_seq: u64) -> Result<(), StoreError> {
        let path = self.dir.join(format!("log-{first_seq:020}.seg"));
        let mut f = self.fs.create_new(&path)?;
        f.append(LOG_MAGIC)?;
        f.sync_all()?;
        self.sync_dir(&self.dir)?;
        self.current = Some((f, LOG_MAGIC.len() as u64));
        self.current_index = Some(self.fs.create(&index_path(&path))?);
        Ok(())
    }

    fn open_current(&mut self, first_seq: u64) -> Result<(), StoreError> {
        if self.current.is_some() {
            return Ok(());
        }
        match self.segments()?.pop() {
            Some((_, path)) => {
                let mut f = self.fs.open_append(&path)?;
                let len = f.len()?;
                self.current = Some((f, len));
                // repair_tail wrote this segment's index at open.
                self.current_index = Some(self.fs.open_append(&index_path(&path))?);
                Ok(())
            }
            None => self.new_segment(first_seq),
        }
    }
}

impl<F: Fs> LogStore for FileStore<F> {
    fn append(&mut self, records: &[LogRecord]) -> Result<(), StoreError> {
        let Some(first) = records.first() else { return Ok(()) };
        if self.next_seq != 0 {
            assert_eq!(first.seq, self.next_seq, "records appended out of sequence");
        }
        for pair in records.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1, "records in a batch must be contiguous");
        }
        self.open_current(first.seq)?;
        if self.current.as_ref().is_some_and(|(_, size)| *size >= self.options.max_segment_bytes) {
            self.new_segment(first.seq)?;
        }
        let mut buf = Vec::with_capacity(records.len() * 512);
        let mut offsets = Vec::with_capacity(records.len() * 8);
        let start = self.current.as_ref().expect("segment open").1;
        for r in records {
            offsets.extend_from_slice(&(start + buf.len() as u64).to_le_bytes());
            let payload = bincode::serialize(r).map_err(|e| io_corrupt(format!("encode: {e}")))?;
            if payload.len() > MAX_RECORD_BYTES {
                return Err(StoreError::RecordTooLarge(payload.len()));
            }
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
        }
        let (f, size) = self.current.as_mut().expect("segment open");
        f.append(&buf)?;
        f.sync_data()?;
        *size += buf.len() as u64;
        // After the records are durable: a crash before this line leaves an index that open
        // rebuilds.
        self.current_index.as_mut().expect("index open with its segment").append(&offsets)?;
        self.next_seq = records.last().expect("non-empty").seq + 1;
        self.stats.syncs += 1;
        self.stats.records += records.len() as u64;
        self.stats.bytes += buf.len() as u64;
        Ok(())
    }

    fn write_snapshot(&mut self, seq: u64, ledger_bytes: &[u8]) -> Result<(), StoreError> {
        write_snapshot_file(&self.fs, &self.dir, seq, ledger_bytes)?;
        self.roll_for_snapshot(seq)?;
        self.drop_covered(seq)
    }

    fn begin_detached_snapshot(&mut self, seq: u64) -> Result<Option<SnapshotWriter>, StoreError> {
        let Some(fs) = self.fs.detached() else { return Ok(None) };
        // A crash before the snapshot file is durable leaves the older snapshot and every
        // segment: a segment boundary here changes nothing that recovery reads.
        self.roll_for_snapshot(seq)?;
        let dir = self.dir.clone();
        Ok(Some(SnapshotWriter::new(move |bytes: &[u8]| write_snapshot_file(&fs, &dir, seq, bytes))))
    }

    fn finish_detached_snapshot(&mut self, seq: u64) -> Result<(), StoreError> {
        self.drop_covered(seq)
    }

    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        // Newest intact snapshot; an older one is only usable if the log after it still exists,
        // which load_records checks (a gap is reported as corruption).
        let mut damaged = Vec::new();
        for (seq, path) in self.snapshots()?.into_iter().rev() {
            let buf = self.fs.read(&path)?;
            check_format(&buf, SNAP_MAGIC, &path)?;
            let header = SNAP_MAGIC.len() + 8 + 8 + 4;
            let intact = buf.len() >= header && &buf[..8] == SNAP_MAGIC && {
                let stored_seq = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
                let len = u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes")) as usize;
                let crc = u32::from_le_bytes(buf[24..28].try_into().expect("4 bytes"));
                let body = &buf[header..];
                stored_seq == seq && body.len() == len && crc32fast::hash(body) == crc
            };
            if intact {
                return Ok(Some((seq, buf[header..].to_vec())));
            }
            damaged.push(path.display().to_string());
        }
        if damaged.is_empty() {
            Ok(None)
        } else {
            Err(io_corrupt(format!("no intact snapshot; damaged: {}", damaged.join(", "))))
        }
    }

    fn history(&mut self) -> Result<Vec<LogRecord>, StoreError> {
        let mut all = self.archived_records()?;
        // Without an archive, the history starts where the oldest live segment starts.
        let oldest_live = self.segments()?.first().map_or(1, |(first, _)| *first);
        let after = all.last().map_or(oldest_live.saturating_sub(1), |r| r.seq);
        let live = self.load_records(after)?;
        if let (Some(last), Some(first)) = (all.last(), live.first()) {
            if first.seq != last.seq + 1 {
                return Err(io_corrupt(format!("history gap between seq {} and {}", last.seq, first.seq)));
            }
        }
        all.extend(live);
        Ok(all)
    }

    fn load_records(&mut self, after: u64) -> Result<Vec<LogRecord>, StoreError> {
        let segs = self.segments()?;
        let mut out: Vec<LogRecord> = Vec::new();
        for (i, (first_seq, path)) in segs.iter().enumerate() {
            // Skip segments that end before `after`.
            if let Some((next_first, _)) = segs.get(i + 1) {
                if *next_first <= after + 1 {
                    continue;
                }
            }
            // The first segment read must start within what the snapshot covers, even if it
            // holds no record yet: else the records in between are gone (e.g. archived without
            // a durable snapshot), and an empty segment must not hide that.
            if out.is_empty() && *first_seq > after + 1 {
                return Err(io_corrupt(format!(
                    "gap in the log: {} starts at seq {first_seq}, but the snapshot covers only up to seq {after}",
                    path.display()
                )));
            }
            let buf = self.read_segment(path)?;
            check_format(&buf, LOG_MAGIC, path)?;
            if buf.len() < LOG_MAGIC.len() || &buf[..LOG_MAGIC.len()] != LOG_MAGIC {
                return Err(io_corrupt(format!("{} lacks the log header", path.display())));
            }
            let (records, _, problem) = parse_frames(&buf, LOG_MAGIC.len());
            if let Some(problem) = problem {
                // repair_tail ran at open, so any problem now is damage.
                return Err(io_corrupt(format!("{}: {problem}", path.display())));
            }
            if let Some((_, r)) = records.first() {
                if r.seq != *first_seq {
                    return Err(io_corrupt(format!("{} starts at seq {} not {first_seq}", path.display(), r.seq)));
                }
            }
            for (_, r) in records {
                if r.seq <= after {
                    continue;
                }
                let expected = out.last().map_or(after + 1, |p| p.seq + 1);
                if r.seq != expected {
                    return Err(io_corrupt(format!("gap in the log: expected seq {expected}, found {}", r.seq)));
                }
                out.push(r);
            }
        }
        self.next_seq = out.last().map_or(after + 1, |r| r.seq + 1);
        Ok(out)
    }

    fn stats(&self) -> StoreStats {
        self.stats
    }
}

/// Reads records by seq from a store's segments (live and archived) through their offset
/// indexes, without the store itself: the node's history reads with it beside the writer.
/// Only records already appended may be asked for; a segment moved to the archive while
/// being read is looked up again.
pub struct LogReader<F: Fs = OsFs> {
    fs: F,
    dir: PathBuf,
    /// Segments (first seq, path), oldest first, as last listed.
    segments: std::sync::Mutex<Vec<(u64, PathBuf)>>,
}

/// Most records one [`LogReader::read_range`] call returns.
pub const MAX_RECORDS_PER_READ: u64 = 1 << 16;

impl<F: Fs + Send + Sync> crate::store::RecordSource for LogReader<F> {
    fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        LogReader::first_seq(self)
    }

    fn read_range(&self, first: u64, last: u64) -> Result<Vec<LogRecord>, StoreError> {
        LogReader::read_range(self, first, last)
    }
}

impl<F: Fs> LogReader<F> {
    /// A reader of the store in `dir`.
    pub fn new(fs: F, dir: PathBuf) -> LogReader<F> {
        LogReader { fs, dir, segments: std::sync::Mutex::new(Vec::new()) }
    }

    fn list(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        archived_and_live_segments(&self.fs, &self.dir)
    }

    /// The seq of the oldest record kept (None: no segment yet).
    pub fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.list()?.first().map(|(seq, _)| *seq))
    }

    /// The records `first..=last`, in order. Fails by name when one is not kept or the index
    /// and the segment disagree.
    pub fn read_range(&self, first: u64, last: u64) -> Result<Vec<LogRecord>, StoreError> {
        if last < first {
            return Ok(Vec::new());
        }
        if last - first >= MAX_RECORDS_PER_READ {
            return Err(io_corrupt(format!("a read of records {first}..={last} exceeds {MAX_RECORDS_PER_READ}")));
        }
        let mut out = Vec::with_capacity((last - first + 1) as usize);
        let mut refreshed = false;
        while out.len() as u64 <= last - first {
            let from = first + out.len() as u64;
            let segments = {
                let mut cached = self.segments.lock().unwrap_or_else(|p| p.into_inner());
                // A seq past the newest listed segment may sit in a segment started since.
                if cached.is_empty() || !refreshed && cached.last().is_some_and(|(s, _)| *s < from) {
                    *cached = self.list()?;
                    refreshed = true;
                }
                cached.clone()
            };
            let i = segments.partition_point(|(s, _)| *s <= from);
            if i == 0 {
                return Err(io_corrupt(format!("record {from} is older than every kept segment")));
            }
            let (seg_first, path) = &segments[i - 1];
            let seg_last = segments.get(i).map_or(u64::MAX, |(next, _)| next - 1);
            let to = last.min(seg_last);
            match self.read_in_segment(path, *seg_first, from, to) {
                Ok(records) => out.extend(records),
                Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !refreshed => {
                    // Moved to the archive by a snapshot meanwhile.
                    *self.segments.lock().unwrap_or_else(|p| p.into_inner()) = self.list()?;
                    refreshed = true;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn read_in_segment(&self, path: &Path, seg_first: u64, from: u64, to: u64) -> Result<Vec<LogRecord>, StoreError> {
        let count = (to - from + 1) as usize;
        let index = self.fs.read_at(&index_path(path), (from - seg_first) * 8, count * 8)?;
        if index.len() != count * 8 {
            return Err(io_corrupt(format!("records {from}..={to} are not in the index of {}", path.display())));
        }
        let offsets: Vec<u64> =
            index.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let (start, last_frame) = (offsets[0], offsets[count - 1]);
        if last_frame < start {
            return Err(io_corrupt(format!("the index of {} is out of order", path.display())));
        }
        let header = self.fs.read_at(path, last_frame, FRAME_HEADER_BYTES)?;
        if header.len() != FRAME_HEADER_BYTES {
            return Err(io_corrupt(format!("{}: the index points past the end at {last_frame}", path.display())));
        }
        let last_len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        let total = last_frame - start + FRAME_HEADER_BYTES as u64 + last_len;
        if total > (count * (MAX_RECORD_BYTES + FRAME_HEADER_BYTES)) as u64 {
            return Err(io_corrupt(format!("the index of {} names an oversized range", path.display())));
        }
        let buf = self.fs.read_at(path, start, total as usize)?;
        let (records, _, problem) = parse_frames(&buf, 0);
        if let Some(problem) = problem {
            return Err(io_corrupt(format!("{} from byte {start}: {problem}", path.display())));
        }
        if records.len() != count || records.iter().enumerate().any(|(i, (_, r))| r.seq != from + i as u64) {
            return Err(io_corrupt(format!("the index of {} does not lead to records {from}..={to}", path.display())));
        }
        Ok(records.into_iter().map(|(_, r)| r).collect())
    }
}
