//! The on-disk index of per-account history lists, beside the log: `history/entries.bin` of
//! 48-byte entries linked back to the previous entry and to one further back (so a page before
//! any seq is found in O(log² n) reads), and checkpoints of the lists' heads so a start indexes
//! only the log after the newest one. Every file operation goes through [`Fs`], so the
//! simulated disk (crashes, torn writes) covers the history as it covers the log.

use super::projection::{entries_of, payment_result, FirstResult, HistoryEntry};
use crate::fs::{Fs, FsFile, OsFs};
use crate::store::RecordSource;
use crate::{LogRecord, StoreError};
use infhub_core::ledger::{fill_proofs, Command, Outcome, Payout};
use infhub_core::{Address, Domain, B256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of one index entry on disk.
const INDEX_ENTRY_BYTES: u64 = 48;
/// Format 2: checkpoints no longer list payout batches (the ledger keeps the batches in flight).
const CHECKPOINT_MAGIC: &[u8; 8] = b"INFHHIX2";
/// Records read from the log per step while indexing at open.
const OPEN_CHUNK_RECORDS: u64 = 8_192;

/// One entry of an account's list in `entries.bin`: the record's seq, its place in the list,
/// links to the previous entry and to the entry `ordinal - lowbit(ordinal)` (so any seq is found
/// in O(log² n) reads), and the records of the proof batch the record belongs to (whose seal
/// signs its proofs; 0 when it issued none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IndexEntry {
    seq: u64,
    ordinal: u64,
    prev: u64,
    jump: u64,
    batch_first: u64,
    batch_last: u64,
}

impl IndexEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.seq, self.ordinal, self.prev, self.jump, self.batch_first, self.batch_last] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn decode(b: &[u8]) -> IndexEntry {
        let v = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        IndexEntry { seq: v(0), ordinal: v(1), prev: v(2), jump: v(3), batch_first: v(4), batch_last: v(5) }
    }
}

/// The newest entry of one list (position in `entries.bin`, 1-based; 0 = empty list) and how
/// many entries it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListHead {
    index: u64,
    ordinal: u64,
}

/// An account's lists: every entry, and the channel payments it made (found by debit nonce).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heads {
    all: ListHead,
    paid: ListHead,
}

/// One list as the writer keeps it: the (ordinal, position) of each entry on the head's jump
/// path (ordinals h, h − lowbit(h), …, newest first; about log₂(h)/2 of them). The jump
/// target of the next entry n is n − lowbit(n), which is on that path, so appending reads
/// nothing from disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ListPath(Vec<(u64, u64)>);

impl ListPath {
    fn head(&self) -> ListHead {
        self.0.first().map_or(ListHead::default(), |&(ordinal, index)| ListHead { index, ordinal })
    }

    /// Appends the entry at `index`; returns its ordinal and its links (previous, jump).
    fn push(&mut self, index: u64) -> (u64, u64, u64) {
        let head = self.head();
        let ordinal = head.ordinal + 1;
        let target = ordinal - (ordinal & ordinal.wrapping_neg());
        // The path of the new entry: itself, then the target's path, a suffix of the old one.
        let keep_from = self.0.iter().position(|&(o, _)| o == target).unwrap_or(self.0.len());
        assert!(target == 0 || keep_from < self.0.len(), "jump target {target} not on the path of {}", head.ordinal);
        let jump = self.0.get(keep_from).map_or(0, |&(_, i)| i);
        self.0.drain(..keep_from);
        self.0.insert(0, (ordinal, index));
        (ordinal, head.index, jump)
    }
}

/// An account's lists as the writer keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct AccountLists {
    all: ListPath,
    paid: ListPath,
}

/// What a checkpoint holds: the index as of `last_seq`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    last_seq: u64,
    entries: u64,
    heads: Vec<(Address, AccountLists)>,
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The log or the index could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index names something the log does not hold.
    #[error("history index inconsistent: {0}")]
    Inconsistent(String),
}

impl From<std::io::Error> for HistoryError {
    fn from(e: std::io::Error) -> Self {
        HistoryError::Store(StoreError::Io(e))
    }
}

/// The history index, written by the node's writer after every group commit.
pub struct History<F: Fs = OsFs> {
    fs: F,
    dir: PathBuf,
    reader: Arc<HistoryReader<F>>,
    entries: F::File,
    entries_count: u64,
    pending: Vec<u8>,
    heads: HashMap<Address, AccountLists>,
    last_seq: u64,
    checkpoint_every_records: u64,
    records_since_checkpoint: u64,
}

impl History<OsFs> {
    /// [`History::open_on`] the operating system's file system.
    pub fn open(
        dir: &Path,
        reader: impl RecordSource + 'static,
        domain: Domain,
        last_seq: u64,
        checkpoint_every_records: u64,
    ) -> Result<History, HistoryError> {
        History::open_on(OsFs, dir, reader, domain, last_seq, checkpoint_every_records)
    }
}

impl<F: Fs + Clone> History<F> {
    /// Opens the index in `dir` of `fs` for the log `reader` reads, whose newest record is
    /// `last_seq`: loads the newest checkpoint and indexes the log after it (all of it when
    /// there is none, as for a data directory from before the index). A checkpoint is written
    /// every `checkpoint_every_records` records (0 = never).
    pub fn open_on(
        fs: F,
        dir: &Path,
        reader: impl RecordSource + 'static,
        domain: Domain,
        last_seq: u64,
        checkpoint_every_records: u64,
    ) -> Result<History<F>, HistoryError> {
        fs.create_dir_all(dir)?;
        let entries_path = dir.join("entries.bin");
        if fs.file_len(&entries_path).is_err() {
            fs.create(&entries_path)?.sync_all()?;
            fs.sync_dir(dir)?;
        }
        let on_disk_bytes = fs.file_len(&entries_path)?;
        let on_disk = on_disk_bytes / INDEX_ENTRY_BYTES;
        let checkpoint = newest_checkpoint(&fs, dir)?.filter(|c| c.entries <= on_disk && c.last_seq <= last_seq);
        let entries_count = checkpoint.as_ref().map_or(0, |c| c.entries);
        // Entries past the checkpoint (or all, without one) are indexed again from the log;
        // a torn entry at the end (a crash kept part of an unsynced append) goes too, or every
        // entry appended after it would be misaligned (found by the simulator).
        if on_disk_bytes != entries_count * INDEX_ENTRY_BYTES {
            fs.truncate(&entries_path, entries_count * INDEX_ENTRY_BYTES)?;
        }
        let entries = fs.open_append(&entries_path)?;
        let reader = Arc::new(HistoryReader { log: Box::new(reader), fs: fs.clone(), entries: entries_path, domain });
        let mut h = History {
            fs,
            dir: dir.to_path_buf(),
            reader,
            entries,
            entries_count: 0,
            pending: Vec::new(),
            heads: HashMap::new(),
            last_seq: 0,
            checkpoint_every_records,
            records_since_checkpoint: 0,
        };
        let first = match checkpoint {
            Some(c) => {
                h.entries_count = c.entries;
                h.heads = c.heads.into_iter().collect();
                h.last_seq = c.last_seq;
                c.last_seq + 1
            }
            None => h.reader.log.first_seq()?.unwrap_or(1),
        };
        if first > 1 && h.last_seq == 0 {
            // No archive: the history starts at the oldest segment kept.
            h.last_seq = first - 1;
        }
        let mut carry: Vec<LogRecord> = Vec::new();
        let mut next = first;
        while next <= last_seq {
            let to = last_seq.min(next + OPEN_CHUNK_RECORDS - 1);
            carry.extend(h.reader.log.read_range(next, to)?);
            next = to + 1;
            // Index up to the last seal read; the rest waits for its seal.
            let cut = carry.iter().rposition(|r| matches!(r.outcome, Outcome::Sealed { .. })).map_or(0, |i| i + 1);
            let rest = carry.split_off(cut);
            h.index(&carry);
            carry = rest;
        }
        h.index(&carry);
        h.flush()?;
        if h.records_since_checkpoint > 0 {
            h.checkpoint()?;
        }
        Ok(h)
    }

    /// Adds the records of one group commit (in seq order, each proof batch with its seal).
    pub fn add_batch(&mut self, records: &[LogRecord]) -> Result<(), HistoryError> {
        self.index(records);
        self.flush()?;
        if self.checkpoint_every_records != 0 && self.records_since_checkpoint >= self.checkpoint_every_records {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn index(&mut self, records: &[LogRecord]) {
        let mut batch_start = 0;
        for (i, r) in records.iter().enumerate() {
            if matches!(r.outcome, Outcome::Sealed { .. }) {
                let batch = (records[batch_start].seq, r.seq);
                for r in &records[batch_start..=i] {
                    self.index_one(r, batch);
                }
                batch_start = i + 1;
            }
        }
        for r in &records[batch_start..] {
            self.index_one(r, (0, 0));
        }
    }

    fn index_one(&mut self, r: &LogRecord, batch: (u64, u64)) {
        assert!(r.seq > self.last_seq, "history records out of order: {} after {}", r.seq, self.last_seq);
        self.last_seq = r.seq;
        self.records_since_checkpoint += 1;
        let mut accounts: Vec<Address> = Vec::with_capacity(2);
        entries_of(r, false, &mut |a, _| {
            if !accounts.contains(&a) {
                accounts.push(a);
            }
        });
        for a in accounts {
            self.append(a, r.seq, batch, false);
        }
        if let (Command::Transfer(d), Outcome::Paid { .. } | Outcome::Refunded { .. }) = (&r.command, &r.outcome) {
            self.append(d.message.user, r.seq, batch, true);
        }
    }

    fn append(&mut self, account: Address, seq: u64, (batch_first, batch_last): (u64, u64), paid: bool) {
        let lists = self.heads.entry(account).or_default();
        let list = if paid { &mut lists.paid } else { &mut lists.all };
        let index = self.entries_count + 1;
        let (ordinal, prev, jump) = list.push(index);
        IndexEntry { seq, ordinal, prev, jump, batch_first, batch_last }.encode(&mut self.pending);
        self.entries_count = index;
    }

    fn flush(&mut self) -> Result<(), HistoryError> {
        if !self.pending.is_empty() {
            self.entries.append(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Makes the index durable up to `last_seq` (entries synced, then the checkpoint written
    /// atomically) so the next start indexes only the log after it.
    pub fn checkpoint(&mut self) -> Result<(), HistoryError> {
        self.flush()?;
        self.entries.sync_data()?;
        let mut heads: Vec<(Address, AccountLists)> = self.heads.iter().map(|(a, h)| (*a, h.clone())).collect();
        heads.sort_unstable_by_key(|(a, _)| *a);
        let c = Checkpoint { last_seq: self.last_seq, entries: self.entries_count, heads };
        let body = bincode::serialize(&c).map_err(|e| HistoryError::Inconsistent(format!("encode checkpoint: {e}")))?;
        let mut bytes = Vec::with_capacity(body.len() + 12);
        bytes.extend_from_slice(CHECKPOINT_MAGIC);
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let name = format!("checkpoint-{:020}.bin", self.last_seq);
        let tmp = self.dir.join(format!("{name}.tmp"));
        {
            let mut f = self.fs.create(&tmp)?;
            f.append(&bytes)?;
            f.sync_all()?;
        }
        self.fs.rename(&tmp, &self.dir.join(&name))?;
        self.fs.sync_dir(&self.dir)?;
        for old in checkpoint_files(&self.fs, &self.dir)? {
            if old.1 < self.last_seq {
                self.fs.remove(&old.0)?;
            }
        }
        self.records_since_checkpoint = 0;
        Ok(())
    }

    /// The reader the API queries with, beside the writer and without the state lock.
    pub fn reader(&self) -> Arc<HistoryReader<F>> {
        self.reader.clone()
    }

    /// The lists of `user` as of the newest record added (None: no history).
    pub fn heads(&self, user: &Address) -> Option<Heads> {
        self.heads.get(user).map(|l| Heads { all: l.all.head(), paid: l.paid.head() })
    }

    /// Sequence number of the newest record added.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Index entries written.
    pub fn entries_count(&self) -> u64 {
        self.entries_count
    }
}

fn checkpoint_files<F: Fs>(fs: &F, dir: &Path) -> Result<Vec<(PathBuf, u64)>, HistoryError> {
    let mut out = Vec::new();
    for name in fs.list(dir)? {
        if let Some(seq) = name.strip_prefix("checkpoint-").and_then(|n| n.strip_suffix(".bin")) {
            if let Ok(seq) = seq.parse() {
                out.push((dir.join(&name), seq));
            }
        } else if name.ends_with(".tmp") {
            fs.remove(&dir.join(&name))?;
        }
    }
    out.sort_by_key(|(_, s)| *s);
    Ok(out)
}

/// The newest intact checkpoint in `dir` (a damaged one is skipped: the index is rebuilt
/// from the log instead).
fn newest_checkpoint<F: Fs>(fs: &F, dir: &Path) -> Result<Option<Checkpoint>, HistoryError> {
    for (path, seq) in checkpoint_files(fs, dir)?.into_iter().rev() {
        let bytes = fs.read(&path)?;
        if bytes.len() < 12 || &bytes[..8] != CHECKPOINT_MAGIC {
            tracing::warn!(path = %path.display(), "history checkpoint without its header; skipped");
            continue;
        }
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[12..]) != crc {
            tracing::warn!(path = %path.display(), "history checkpoint fails its checksum; skipped");
            continue;
        }
        match bincode::deserialize::<Checkpoint>(&bytes[12..]) {
            Ok(c) if c.last_seq == seq => return Ok(Some(c)),
            _ => tracing::warn!(path = %path.display(), "history checkpoint undecodable; skipped"),
        }
    }
    Ok(None)
}

/// Reads entries and the records they point at, with their proofs signed.
pub struct HistoryReader<F: Fs = OsFs> {
    log: Box<dyn RecordSource>,
    fs: F,
    /// `entries.bin`.
    entries: PathBuf,
    domain: Domain,
}

impl<F: Fs> HistoryReader<F> {
    fn entry(&self, index: u64) -> Result<IndexEntry, HistoryError> {
        let buf = self.fs.read_at(&self.entries, (index - 1) * INDEX_ENTRY_BYTES, INDEX_ENTRY_BYTES as usize)?;
        if buf.len() != INDEX_ENTRY_BYTES as usize {
            return Err(HistoryError::Inconsistent(format!("entry {index} is past the end of the index")));
        }
        let e = IndexEntry::decode(&buf);
        if e.ordinal == 0 || e.prev >= index || e.jump >= index {
            return Err(HistoryError::Inconsistent(format!("entry {index} links forward: {e:?}")));
        }
        Ok(e)
    }

    /// The newest entry of the list at `head` for which `below` holds (entries are ordered:
    /// once it holds, it holds for every older one).
    fn last_where(
        &self,
        head: ListHead,
        mut below: impl FnMut(&IndexEntry) -> Result<bool, HistoryError>,
    ) -> Result<Option<(u64, IndexEntry)>, HistoryError> {
        let mut index = head.index;
        while index != 0 {
            let e = self.entry(index)?;
            if below(&e)? {
                return Ok(Some((index, e)));
            }
            index = if e.jump != 0 && !below(&self.entry(e.jump)?)? { e.jump } else { e.prev };
        }
        Ok(None)
    }

    /// The records `first..=last` as logged (proofs unsigned).
    pub fn records(&self, first: u64, last: u64) -> Result<Vec<LogRecord>, HistoryError> {
        Ok(self.log.read_range(first, last)?)
    }

    /// The record `seq` as logged (proofs unsigned).
    pub fn record(&self, seq: u64) -> Result<LogRecord, HistoryError> {
        self.log.read_range(seq, seq)?.pop().ok_or_else(|| HistoryError::Inconsistent(format!("record {seq} missing")))
    }

    /// The entries of `user` from the records of `found` (newest first), proofs signed.
    fn entries_from(&self, user: &Address, found: &[IndexEntry]) -> Result<Vec<HistoryEntry>, HistoryError> {
        let mut batches: HashMap<u64, Vec<LogRecord>> = HashMap::new();
        let mut out = Vec::with_capacity(found.len());
        for e in found {
            let record = if e.batch_first == 0 {
                self.record(e.seq)?
            } else {
                if let std::collections::hash_map::Entry::Vacant(slot) = batches.entry(e.batch_first) {
                    let mut records = self.log.read_range(e.batch_first, e.batch_last)?;
                    let (seal, covered) = records
                        .split_last_mut()
                        .ok_or_else(|| HistoryError::Inconsistent(format!("empty batch at {}", e.batch_first)))?;
                    let mut outcomes: Vec<&mut Outcome> = covered.iter_mut().map(|r| &mut r.outcome).collect();
                    fill_proofs(&self.domain, &mut outcomes, &seal.outcome)
                        .map_err(|why| HistoryError::Inconsistent(format!("batch {}: {why}", e.batch_first)))?;
                    slot.insert(records);
                }
                let records = &batches[&e.batch_first];
                records
                    .get((e.seq - e.batch_first) as usize)
                    .cloned()
                    .ok_or_else(|| HistoryError::Inconsistent(format!("record {} outside its batch", e.seq)))?
            };
            let mut mine = Vec::new();
            entries_of(&record, true, &mut |a, h| {
                if a == *user {
                    mine.push(h)
                }
            });
            if mine.is_empty() {
                return Err(HistoryError::Inconsistent(format!("record {} does not concern {user}", e.seq)));
            }
            out.extend(mine.into_iter().rev());
        }
        Ok(out)
    }

    /// At least `limit` entries of `user` with `seq < before`, newest first (a record's
    /// entries are never split between pages, so a page may hold a few more).
    pub fn page(
        &self,
        user: &Address,
        heads: Heads,
        before: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        let Some((_, mut e)) = self.last_where(heads.all, |e| Ok(e.seq < before))? else { return Ok(Vec::new()) };
        let mut found = vec![e];
        // Custodial batches can give one record several entries; records mostly give one.
        while found.len() < limit && e.prev != 0 {
            e = self.entry(e.prev)?;
            found.push(e);
        }
        self.entries_from(user, &found)
    }

    /// Like [`HistoryReader::page`], of the entries committed within `from_ms..=to_ms` only:
    /// the newest one at or before `to_ms` is found by the list's skip links (commit times
    /// never fall as sequence numbers rise, so the test holds for every older entry once it
    /// holds), then older ones down to `from_ms`. Fewer than `limit` means none is left.
    pub fn page_between(
        &self,
        user: &Address,
        heads: Heads,
        before: u64,
        limit: usize,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        let newest = self.last_where(heads.all, |e| Ok(e.seq < before && self.record(e.seq)?.at_ms <= to_ms))?;
        let Some((_, mut e)) = newest else { return Ok(Vec::new()) };
        let mut found = vec![e];
        while found.len() < limit && e.prev != 0 {
            e = self.entry(e.prev)?;
            found.push(e);
        }
        let mut entries = self.entries_from(user, &found)?;
        entries.retain(|x| x.at_ms >= from_ms);
        Ok(entries)
    }

    /// The entries of `user` from about `limit` records with `seq > after`, oldest first (a
    /// record's entries are never split): the event feed a merchant's back end resumes from the
    /// last `seq` it processed. Found by ordinal (the account list's position): the cursor's
    /// ordinal, then the entry `limit` later, each through the skip links, then back to it.
    pub fn after(
        &self,
        user: &Address,
        heads: Heads,
        after: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        let total = heads.all.ordinal;
        let start = match self.last_where(heads.all, |e| Ok(e.seq <= after))? {
            Some((_, e)) => e.ordinal,
            None => 0,
        };
        if start >= total || limit == 0 {
            return Ok(Vec::new());
        }
        let end = start.saturating_add(limit as u64).min(total);
        let Some((_, mut e)) = self.last_where(heads.all, |e| Ok(e.ordinal <= end))? else {
            return Err(HistoryError::Inconsistent(format!("no entry at ordinal {end} of {total}")));
        };
        let mut found = vec![e];
        while e.ordinal > start + 1 {
            e = self.entry(e.prev)?;
            found.push(e);
        }
        let mut entries = self.entries_from(user, &found)?;
        entries.reverse();
        Ok(entries)
    }

    /// Every entry of `user`, oldest first.
    pub fn all(&self, user: &Address, heads: Heads) -> Result<Vec<HistoryEntry>, HistoryError> {
        let mut found = Vec::with_capacity(heads.all.ordinal as usize);
        let mut index = heads.all.index;
        while index != 0 {
            let e = self.entry(index)?;
            index = e.prev;
            found.push(e);
        }
        let mut entries = self.entries_from(user, &found)?;
        entries.reverse();
        Ok(entries)
    }

    /// The entries of `user` logged at `seq`.
    pub fn entries_at(&self, user: &Address, heads: Heads, seq: u64) -> Result<Vec<HistoryEntry>, HistoryError> {
        match self.last_where(heads.all, |e| Ok(e.seq <= seq))? {
            Some((_, e)) if e.seq == seq => self.entries_from(user, &[e]),
            _ => Ok(Vec::new()),
        }
    }

    /// The payer's result of payment `payment_id`, logged at `seq`.
    pub fn payment_at(
        &self,
        payer: &Address,
        heads: Heads,
        payment_id: &B256,
        seq: u64,
    ) -> Result<Option<FirstResult>, HistoryError> {
        Ok(self.entries_at(payer, heads, seq)?.iter().find_map(|e| payment_result(payer, payment_id, e)))
    }

    /// The payer's result of the channel payment signed at (`epoch`, `nonce`), found by the
    /// debit nonce (for a retry the ledger no longer remembers by id).
    pub fn payment_by_debit(
        &self,
        payer: &Address,
        heads: Heads,
        payment_id: &B256,
        epoch: u64,
        nonce: u64,
    ) -> Result<Option<FirstResult>, HistoryError> {
        let key_of = |e: &IndexEntry| -> Result<(u64, u64), HistoryError> {
            match self.record(e.seq)?.command {
                Command::Transfer(d) => Ok((d.message.epoch, d.message.nonce)),
                other => Err(HistoryError::Inconsistent(format!("paid entry {} is {other:?}", e.seq))),
            }
        };
        match self.last_where(heads.paid, |e| Ok(key_of(e)? <= (epoch, nonce)))? {
            Some((_, e)) if key_of(&e)? == (epoch, nonce) => self.payment_at(payer, heads, payment_id, e.seq),
            _ => Ok(None),
        }
    }

    /// The payout queued at `seq` (an external payment or a custodial withdrawal).
    pub fn payout_at(&self, seq: u64) -> Result<Option<Payout>, HistoryError> {
        Ok(match self.record(seq)?.outcome {
            Outcome::Paid { payout, .. } => payout,
            Outcome::CustodialPayoutQueued(p) => Some(p),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::{FileStore, FileStoreOptions};
    use crate::{DurableLedger, DurableParams};
    use infhub_core::ledger::{ChainEvent, Ledger, LedgerParams, LogPosition};
    use infhub_core::messages::{PaymentKind, Signed, SignedReceipt};
    use infhub_core::{Amount, PrivateKey, U256};

    fn key(n: u64) -> PrivateKey {
        let mut b = [0u8; 32];
        b[24..].copy_from_slice(&(n + 1).to_be_bytes());
        PrivateKey::from_bytes(b).expect("key")
    }

    fn domain() -> Domain {
        Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) }
    }

    fn open_ledger(dir: &Path, hub: &PrivateKey) -> DurableLedger<FileStore> {
        // Small segments and snapshots: records move to the archive while the test runs.
        let options = FileStoreOptions { max_segment_bytes: 8_192, snapshots_kept: 2, archive_compacted: true };
        let params = LedgerParams {
            domain: domain(),
            hub: hub.address(),
            max_withdrawal_expiry_blocks: 100,
            max_accounts: 100,
            max_queued_payouts: 100,
            max_payment_amount: Amount(1_000_000),
            transfer_ids_kept: 4,
        };
        let dp = DurableParams { snapshot_every_records: 90, max_batch_commands: 1_000 };
        let mut dl = DurableLedger::open(FileStore::open(dir, options).expect("store"), params, hub.clone(), dp)
            .expect("ledger");
        // Ten milliseconds a batch: every batch its own time, so date ranges cut between them.
        let clock = std::sync::atomic::AtomicU64::new(1_000);
        dl.set_clock(Box::new(move || clock.fetch_add(10, std::sync::atomic::Ordering::Relaxed)));
        dl
    }

    fn open_history(dir: &Path, dl: &DurableLedger<FileStore>, checkpoint_every: u64) -> History {
        History::open(&dir.join("history"), dl.store().reader(), domain(), dl.ledger().next_seq - 1, checkpoint_every)
            .expect("history")
    }

    fn payment(ledger: &Ledger, payer: &PrivateKey, to: Address, kind: PaymentKind, id: u64) -> Command {
        let ch = &ledger.account(&payer.address()).expect("account").channel;
        let d = ch.next_debit(kind, to, Amount(1 + id as u128 % 7), B256::from(U256::from(id))).expect("debit");
        Command::Transfer(Signed::new(d, &ledger.params.domain, payer))
    }

    /// The entries of `user` among `records` (proofs filled), oldest first: the reference the
    /// disk index must reproduce.
    fn reference(records: &[LogRecord], user: &Address) -> Vec<HistoryEntry> {
        let mut out = Vec::new();
        for r in records {
            entries_of(r, true, &mut |a, e| {
                if a == *user {
                    out.push(e)
                }
            });
        }
        out
    }

    /// What a page must hold: the entries before `before`, newest first, at least `limit`
    /// of them when there are, never splitting a record.
    fn reference_page(all: &[HistoryEntry], before: u64, limit: usize) -> Vec<HistoryEntry> {
        let mut page: Vec<HistoryEntry> = Vec::new();
        for e in all.iter().rev().filter(|e| e.seq < before) {
            if page.len() >= limit && page.last().is_some_and(|l| l.seq != e.seq) {
                break;
            }
            page.push(e.clone());
        }
        page
    }

    /// What the event feed must hold: the entries of the first `limit` records after `after`,
    /// oldest first.
    fn reference_after(all: &[HistoryEntry], after: u64, limit: usize) -> Vec<HistoryEntry> {
        let mut seqs = Vec::new();
        for e in all.iter().filter(|e| e.seq > after) {
            if !seqs.contains(&e.seq) {
                seqs.push(e.seq);
            }
        }
        seqs.truncate(limit);
        all.iter().filter(|e| seqs.contains(&e.seq)).cloned().collect()
    }

    /// Every page, event feed and date range of `a` against the reference `all`.
    fn check_pages(reader: &HistoryReader, a: &Address, heads: Heads, all: &[HistoryEntry], when: &str) {
        for limit in [1usize, 3, 8] {
            for before in (0..=all.last().map_or(0, |e| e.seq + 2)).step_by(5).chain([u64::MAX]) {
                assert_eq!(
                    reader.page(a, heads, before, limit).expect("page"),
                    reference_page(all, before, limit),
                    "{when}: page of {a} before {before} limit {limit}"
                );
                assert_eq!(
                    reader.after(a, heads, before, limit).expect("after"),
                    reference_after(all, before, limit),
                    "{when}: events of {a} after {before} limit {limit}"
                );
            }
            // Date ranges between the times of entries (a quarter and three quarters in).
            let (from, to) = (all[all.len() / 4].at_ms, all[all.len() * 3 / 4].at_ms);
            let until_to: Vec<HistoryEntry> = all.iter().filter(|e| e.at_ms <= to).cloned().collect();
            let mut want = reference_page(&until_to, u64::MAX, limit);
            want.retain(|e| e.at_ms >= from);
            assert_eq!(
                reader.page_between(a, heads, u64::MAX, limit, from, to).expect("range"),
                want,
                "{when}: {a} from {from} to {to} limit {limit}"
            );
        }
    }

    #[test]
    fn the_disk_index_serves_every_page_and_payment_exactly_as_the_log_holds_them_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = key(1_000);
        let users: Vec<PrivateKey> = (0..5).map(key).collect();
        let mut dl = open_ledger(dir.path(), &hub);
        let mut history = open_history(dir.path(), &dl, 37);
        let mut genesis = vec![ChainEvent::ReserveDeposited { reserve_after: Amount(1_000_000) }];
        for u in &users {
            genesis.push(ChainEvent::ChannelOpened { user: u.address(), epoch: 1, opened_by: hub.address() });
            genesis.push(ChainEvent::Deposited { user: u.address(), epoch: 1, total_deposited: Amount(100_000) });
        }
        let genesis: Vec<Command> = genesis
            .into_iter()
            .enumerate()
            .map(|(i, event)| Command::Chain { at: LogPosition { block: 1, log_index: i as u64 }, event })
            .collect();
        let executed = dl.execute_checked(genesis.into_iter().map(|c| (c, None)).collect()).expect("genesis");
        history.add_batch(&executed.records).expect("index");
        // Payments around a ring (user 0 the busiest, paying and paid), some external, in
        // commits of 1 to 5 payments by distinct payers (one proof batch each); the answers
        // are what later reads must reproduce.
        let mut answered: Vec<(Address, B256, u64, u64, u64, SignedReceipt)> = Vec::new();
        let mut last_records = 0;
        let mut id = 0u64;
        for b in 0..80usize {
            let mut cmds = Vec::new();
            for i in 0..(1 + b % 5) {
                id += 1;
                let payer = &users[(b + i) % 5];
                let (to, kind) = if id.is_multiple_of(9) {
                    (Address::repeat_byte(0xEE), PaymentKind::External)
                } else if payer.address() != users[0].address() && i % 2 == 0 {
                    (users[0].address(), PaymentKind::Internal)
                } else {
                    (users[(b + i + 1) % 5].address(), PaymentKind::Internal)
                };
                cmds.push(payment(dl.ledger(), payer, to, kind, id));
            }
            let executed = dl.execute_checked(cmds.iter().cloned().map(|c| (c, None)).collect()).expect("durable");
            history.add_batch(&executed.records).expect("index");
            last_records = executed.records.len();
            for ((r, cmd), seq) in executed.results.iter().zip(&cmds).zip(&executed.seqs) {
                let (Ok(Outcome::Paid { receipt, .. }), Command::Transfer(d)) = (r, cmd) else { panic!("{r:?}") };
                let m = d.message;
                answered.push((m.user, m.payment_id, seq.expect("logged"), m.epoch, m.nonce, receipt.clone()));
            }
        }
        assert!(last_records > 3, "commits must hold several payments and their seal");
        assert!(dir.path().join("archive").exists(), "the test must read archived segments too");
        let check = |history: &History, dl: &mut DurableLedger<FileStore>, when: &str| {
            let records = dl.history().expect("log");
            let reader = history.reader();
            for u in &users {
                let a = u.address();
                let heads = history.heads(&a).expect("heads");
                let all = reference(&records, &a);
                assert!(all.len() > 20, "{when}: too few entries to test with");
                assert_eq!(reader.all(&a, heads).expect("all"), all, "{when}: all of {a}");
                check_pages(&reader, &a, heads, &all, when);
            }
            for (payer, pid, seq, epoch, nonce, receipt) in &answered {
                let heads = history.heads(payer).expect("heads");
                let by_seq = reader.payment_at(payer, heads, pid, *seq).expect("read").expect("found by seq");
                let FirstResult::Paid(paid) = &by_seq else { panic!("{when}: seq {seq} read back as {by_seq:?}") };
                assert_eq!(&paid.receipt, receipt, "{when}: receipt of seq {seq} read back signed as answered");
                let by_nonce =
                    reader.payment_by_debit(payer, heads, pid, *epoch, *nonce).expect("read").expect("found by nonce");
                assert_eq!(by_nonce, by_seq, "{when}: seq {seq}");
                let missing = reader.payment_by_debit(payer, heads, pid, *epoch, nonce + 1_000).expect("read");
                assert_eq!(missing, None, "{when}: no debit at an unused nonce");
            }
        };
        check(&history, &mut dl, "live");
        let entries = history.entries_count();
        drop(history);
        // From the newest checkpoint plus the log after it.
        let history = open_history(dir.path(), &dl, 37);
        assert_eq!(history.entries_count(), entries);
        check(&history, &mut dl, "reopened from a checkpoint");
        drop(history);
        // A damaged checkpoint is skipped and the index rebuilt from the whole log.
        for (path, _) in checkpoint_files(&OsFs, &dir.path().join("history")).expect("list") {
            let mut bytes = std::fs::read(&path).expect("read");
            let last = bytes.len() - 1;
            bytes[last] ^= 0xFF;
            std::fs::write(&path, bytes).expect("write");
        }
        let history = open_history(dir.path(), &dl, 0);
        assert_eq!(history.entries_count(), entries);
        check(&history, &mut dl, "rebuilt after a damaged checkpoint");
    }

    #[test]
    fn the_jump_links_find_every_seq_of_a_long_list() {
        // One account with 1,000 entries: every `before` and every seq is found, and each
        // lookup reads O(log² n) entries, not O(n).
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = key(1_000);
        let dl = open_ledger(dir.path(), &hub);
        let mut h = open_history(dir.path(), &dl, 0);
        let user = Address::repeat_byte(7);
        for n in 1..=1_000u64 {
            h.append(user, n * 3, (0, 0), false);
            if n % 10 == 0 {
                h.flush().expect("flush");
            }
        }
        h.flush().expect("flush");
        let heads = h.heads(&user).expect("heads");
        let reader = h.reader();
        for index in 1..=1_000u64 {
            let e = reader.entry(index).expect("entry");
            let target = e.ordinal - (e.ordinal & e.ordinal.wrapping_neg());
            let jumped = if e.jump == 0 { 0 } else { reader.entry(e.jump).expect("jump").ordinal };
            assert_eq!((e.ordinal, jumped), (index, target), "entry {index} jumps to the wrong entry");
        }
        for before in 0..3_010u64 {
            let mut reads = 0;
            let found = reader
                .last_where(heads.all, |e| {
                    reads += 1;
                    Ok(e.seq < before)
                })
                .expect("search");
            let expected = (before.saturating_sub(1) / 3).min(1_000);
            assert_eq!(found.map_or(0, |(_, e)| e.ordinal), expected, "before {before}");
            assert!(reads <= 200, "before {before}: {reads} comparisons");
        }
    }
}
