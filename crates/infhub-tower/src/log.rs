//! The tower's write-ahead log of appointments: nothing is acknowledged before it is durable.
//!
//! One file, `appointments.log`: the header `INFHTWR1`, then records framed as
//! `[u32 length][u32 crc32 of payload][payload]` (little-endian), payload = JSON of a
//! [`TowerRecord`]. Each accepted credit or offer is appended and synced before the tower
//! answers, so a SIGKILL at any point loses nothing that was acknowledged. On open, a torn or
//! checksum-failing final record (a crash mid-write) is cut off; a bad record followed by good
//! ones is corruption and the tower refuses to start. Because the book keeps one entry per user,
//! the log is compacted at open once it holds more than twice the live records: the live ones
//! are written to a temporary file, synced and renamed over the log.
//!
//! Storage goes through [`infhub_ledger::fs::Fs`], so the simulator's crashing file system can
//! drive it as well as the real one.

use infhub_core::messages::{SignedCredit, SignedDebit};
use infhub_core::tower::{SignedTowerFee, TowerBook};
use infhub_core::Address;
use infhub_ledger::fs::{Fs, FsFile};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"INFHTWR1";
/// Largest record accepted (a credit with a 20-node path is under 3 KB of JSON).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One durable change of the book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TowerRecord {
    /// A credit was accepted.
    Credit(SignedCredit),
    /// A fee offer was accepted.
    Offer(SignedTowerFee),
    /// A user-signed debit was accepted (kept for the hub operator).
    Debit(SignedDebit),
    /// The user's channel settled in this epoch: stop watching.
    Forget {
        /// The user.
        user: Address,
        /// The settled epoch.
        epoch: u64,
    },
}

/// Why the log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The operating system refused a read, write or sync.
    #[error("tower log io error: {0}")]
    Io(#[from] io::Error),
    /// A record in the middle of the log is damaged: data synced earlier is lost. Refuse to guess.
    #[error("tower log corrupt: {0}")]
    Corrupt(String),
}

/// The open log.
pub struct AppointmentLog<F: Fs> {
    fs: F,
    path: PathBuf,
    file: F::File,
    records: u64,
}

fn frame(record: &TowerRecord) -> Vec<u8> {
    let payload = serde_json::to_vec(record).expect("records serialize");
    assert!(payload.len() <= MAX_RECORD_BYTES, "a tower record of {} bytes", payload.len());
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Parses the frames of `buf` (after the header). Returns the records and the length of the
/// valid prefix; a damaged final frame ends the prefix, a damaged frame before good data is an error.
fn parse(buf: &[u8]) -> Result<(Vec<TowerRecord>, usize), LogError> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while buf.len() - at >= 8 {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes"));
        let end = at.saturating_add(8).saturating_add(len);
        let whole = len <= MAX_RECORD_BYTES && end <= buf.len() && crc32fast::hash(&buf[at + 8..end]) == crc;
        if !whole {
            // Only the last record may be torn (a crash mid-append): it reaches the end of the
            // file, or what follows it was never written (zeros).
            let rest_unwritten = buf[at..].iter().skip(8).all(|b| *b == 0);
            if (len <= MAX_RECORD_BYTES && end >= buf.len()) || rest_unwritten {
                return Ok((records, at));
            }
            return Err(LogError::Corrupt(format!("bad record at byte {at} of the log body")));
        }
        match serde_json::from_slice(&buf[at + 8..end]) {
            Ok(r) => records.push(r),
            Err(e) => return Err(LogError::Corrupt(format!("record at byte {at}: {e}"))),
        }
        at = end;
    }
    Ok((records, at))
}

impl<F: Fs> AppointmentLog<F> {
    /// Opens (or creates) the log in `dir` and returns it with every record, oldest first.
    pub fn open(fs: F, dir: &Path) -> Result<(AppointmentLog<F>, Vec<TowerRecord>), LogError> {
        fs.create_dir_all(dir)?;
        let path = dir.join("appointments.log");
        let exists = fs.list(dir)?.iter().any(|n| n == "appointments.log");
        if !exists {
            let mut f = fs.create(&path)?;
            f.append(MAGIC)?;
            f.sync_all()?;
            fs.sync_dir(dir)?;
        }
        let buf = fs.read(&path)?;
        if buf.len() < MAGIC.len() || &buf[..MAGIC.len()] != MAGIC {
            if buf.len() < MAGIC.len() && MAGIC.starts_with(&buf) {
                // Created but its header never reached the disk.
                let mut f = fs.create(&path)?;
                f.append(MAGIC)?;
                f.sync_all()?;
                let file = fs.open_append(&path)?;
                return Ok((AppointmentLog { fs, path, file, records: 0 }, Vec::new()));
            }
            return Err(LogError::Corrupt(format!("{} is not a tower log", path.display())));
        }
        let (records, valid) = parse(&buf[MAGIC.len()..])?;
        let valid_len = (MAGIC.len() + valid) as u64;
        if valid_len < buf.len() as u64 {
            tracing::warn!(cut = buf.len() as u64 - valid_len, "tower log: cut a torn final record");
            fs.truncate(&path, valid_len)?;
        }
        let file = fs.open_append(&path)?;
        let n = records.len() as u64;
        Ok((AppointmentLog { fs, path, file, records: n }, records))
    }

    /// Appends `record` and makes it durable before returning.
    pub fn append(&mut self, record: &TowerRecord) -> Result<(), LogError> {
        self.file.append(&frame(record))?;
        self.file.sync_data()?;
        self.records += 1;
        Ok(())
    }

    /// Records in the file.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// True once the file holds more than twice what `users` appointments can need (a credit,
    /// an offer and a debit each) plus a thousand: then [`AppointmentLog::compact`] keeps the
    /// file, and a restart's replay, proportional to the users watched.
    pub fn needs_compaction(&self, users: usize) -> bool {
        self.records > 2 * 3 * users as u64 + 1_000
    }

    /// Replaces the log with `live` (the book's current records): written to a temporary file,
    /// synced, renamed over the log, and the directory synced, so the log is whole either way.
    pub fn compact(&mut self, live: &[TowerRecord]) -> Result<(), LogError> {
        let dir = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let tmp = dir.join("appointments.log.tmp");
        let mut f = self.fs.create(&tmp)?;
        let mut bytes = MAGIC.to_vec();
        for r in live {
            bytes.extend_from_slice(&frame(r));
        }
        f.append(&bytes)?;
        f.sync_all()?;
        self.fs.rename(&tmp, &self.path)?;
        self.fs.sync_dir(&dir)?;
        self.file = self.fs.open_append(&self.path)?;
        self.records = live.len() as u64;
        Ok(())
    }
}

/// The records that rebuild `book` as it is (what compaction keeps).
pub fn live_records(book: &TowerBook) -> Vec<TowerRecord> {
    let mut out = Vec::new();
    for (_, a) in book.users() {
        if let Some(c) = &a.credit {
            out.push(TowerRecord::Credit(c.clone()));
        }
        if let Some(o) = &a.offer {
            out.push(TowerRecord::Offer(*o));
        }
        if let Some(d) = &a.debit {
            out.push(TowerRecord::Debit(*d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use infhub_core::messages::Credit;
    use infhub_core::{Amount, Domain, PrivateKey, B256};
    use infhub_ledger::fs::OsFs;

    fn credit(n: u64) -> TowerRecord {
        let key = PrivateKey::from_bytes([7; 32]).expect("key");
        let domain = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(1) };
        let c = Credit {
            user: Address::repeat_byte(2),
            epoch: 1,
            nonce: n,
            cumulative_credit: Amount(u128::from(n) * 10),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
        };
        TowerRecord::Credit(SignedCredit::new(c, &domain, &key))
    }

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, rs) = AppointmentLog::open(OsFs, dir.path()).expect("open");
            assert!(rs.is_empty());
            log.append(&credit(1)).expect("append");
            log.append(&credit(2)).expect("append");
        }
        let path = dir.path().join("appointments.log");
        let mut bytes = std::fs::read(&path).expect("read");
        let whole = bytes.len();
        bytes.extend_from_slice(&frame(&credit(3))[..20]);
        std::fs::write(&path, &bytes).expect("write torn");
        let (mut log, rs) = AppointmentLog::open(OsFs, dir.path()).expect("reopen");
        assert_eq!(rs, vec![credit(1), credit(2)], "the torn record is not replayed");
        assert_eq!(std::fs::metadata(&path).expect("meta").len() as usize, whole, "and is cut off");
        log.append(&credit(3)).expect("append after cut");
        drop(log);
        let (_, rs) = AppointmentLog::open(OsFs, dir.path()).expect("reopen");
        assert_eq!(rs.len(), 3);
    }

    #[test]
    fn a_damaged_record_before_good_ones_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, _) = AppointmentLog::open(OsFs, dir.path()).expect("open");
            log.append(&credit(1)).expect("append");
            log.append(&credit(2)).expect("append");
        }
        let path = dir.path().join("appointments.log");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[MAGIC.len() + 12] ^= 0xFF;
        std::fs::write(&path, &bytes).expect("write");
        assert!(matches!(AppointmentLog::open(OsFs, dir.path()), Err(LogError::Corrupt(_))));
    }

    #[test]
    fn compaction_keeps_exactly_the_live_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = AppointmentLog::open(OsFs, dir.path()).expect("open");
        for n in 1..=10 {
            log.append(&credit(n)).expect("append");
        }
        log.compact(&[credit(10)]).expect("compact");
        log.append(&credit(11)).expect("append");
        drop(log);
        let (log, rs) = AppointmentLog::open(OsFs, dir.path()).expect("reopen");
        assert_eq!(rs, vec![credit(10), credit(11)]);
        assert_eq!(log.records(), 2);
    }
}
