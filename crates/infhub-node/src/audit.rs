//! The operator's audit log (issue 24): who asked the node to change what, when, and how it
//! answered. Every operator request other than a read (`GET`) is appended to
//! `<data_dir>/audit.log` and made durable before it runs (`requested`), and its answer after
//! (`answered`, with the status). A request that cannot be audited is refused
//! (`storage_failed`): an operator action nobody can account for is worse than none. Refused
//! attempts are audited too, with a fingerprint of the token tried (never the token).
//!
//! The file is JSON lines, one [`AuditEntry`] each, sequence numbers from 1 without gaps. A torn
//! last line (a crash mid-append) is cut off when the log is opened; damage anywhere else stops
//! the node from starting (`AuditLogCorrupt`), because silently dropping audit records is the
//! thing an audit log must not do. Reads page from the newest entry backwards.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name in the data directory.
pub const AUDIT_FILE: &str = "audit.log";
/// Most bytes of a request body kept in an entry; a longer one is cut and marked.
pub const MAX_AUDIT_DETAIL_BYTES: usize = 2048;
/// Most entries one page returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// 1, 2, 3, … in the order appended.
    pub seq: u64,
    /// Wall-clock time of the append, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// What an entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum AuditEvent {
    /// A request arrived, before it ran.
    #[serde(rename_all = "camelCase")]
    Requested {
        /// HTTP method.
        method: String,
        /// Path and query.
        path: String,
        /// `operator:<fingerprint>`, `token:<fingerprint>` (a token that is not the operator's)
        /// or `anonymous` (none).
        actor: String,
        /// The request body (JSON when it parses, else the text), cut at
        /// [`MAX_AUDIT_DETAIL_BYTES`].
        body: Value,
    },
    /// The node answered the request logged at `request_seq`.
    #[serde(rename_all = "camelCase")]
    Answered {
        /// The `requested` entry's sequence number.
        request_seq: u64,
        /// The HTTP status of the answer.
        status: u16,
    },
}

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be read or written.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A line before the last does not parse, or the sequence has a gap.
    #[error("audit log {path}: line {line} is damaged ({why}); refusing to drop audit records")]
    AuditLogCorrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// The append-only audit log of one node.
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    next_seq: u64,
}

impl AuditLog {
    /// Opens (or creates) `<dir>/audit.log`, cutting a torn last line.
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        let path = dir.join(AUDIT_FILE);
        let io = |source| AuditError::Io { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io)?;
        let (good_len, last_seq) = scan(&path, &file)?;
        if file.metadata().map_err(io)?.len() != good_len {
            file.set_len(good_len).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(AuditLog { path, inner: Mutex::new(Inner { file, next_seq: last_seq + 1 }) })
    }

    /// Appends `event` durably; its sequence number.
    pub fn append(&self, time_ms: u64, event: AuditEvent) -> Result<u64, AuditError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = AuditEntry { seq: inner.next_seq, time_ms, event };
        let mut line = serde_json::to_vec(&entry).expect("an audit entry serializes");
        line.push(b'\n');
        let io = |source| AuditError::Io { path: self.path.clone(), source };
        inner.file.write_all(&line).map_err(io)?;
        inner.file.sync_data().map_err(io)?;
        inner.next_seq += 1;
        Ok(entry.seq)
    }

    /// Up to `limit` entries with `seq < before`, newest first.
    pub fn page(&self, before: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        // Holding the lock keeps a half-written line out of the read.
        let _inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let file = File::open(&self.path).map_err(|source| AuditError::Io { path: self.path.clone(), source })?;
        let mut out = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|source| AuditError::Io { path: self.path.clone(), source })?;
            let entry: AuditEntry = serde_json::from_str(&line).map_err(|e| AuditError::AuditLogCorrupt {
                path: self.path.clone(),
                line: out.len() + 1,
                why: e.to_string(),
            })?;
            if entry.seq < before {
                out.push(entry);
            }
        }
        out.reverse();
        out.truncate(limit.min(MAX_AUDIT_PAGE));
        Ok(out)
    }
}

/// The length of the file's good prefix and its last sequence number.
fn scan(path: &Path, file: &File) -> Result<(u64, u64), AuditError> {
    let io = |source| AuditError::Io { path: path.to_path_buf(), source };
    let mut reader = BufReader::new(file.try_clone().map_err(io)?);
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let (mut good_len, mut last_seq, mut line_no) = (0u64, 0u64, 0usize);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 {
            return Ok((good_len, last_seq));
        }
        line_no += 1;
        let complete = buf.last() == Some(&b'\n');
        let parsed = serde_json::from_slice::<AuditEntry>(&buf);
        match parsed {
            Ok(entry) if complete => {
                if entry.seq != last_seq + 1 {
                    let why = format!("sequence {} after {last_seq}", entry.seq);
                    return Err(AuditError::AuditLogCorrupt { path: path.to_path_buf(), line: line_no, why });
                }
                last_seq = entry.seq;
                good_len += n as u64;
            }
            // A torn append: the last line, incomplete. Anything after it would be damage.
            _ if !complete => return Ok((good_len, last_seq)),
            Ok(_) => unreachable!("a complete line was matched above"),
            Err(e) => {
                return Err(AuditError::AuditLogCorrupt { path: path.to_path_buf(), line: line_no, why: e.to_string() })
            }
        }
    }
}

/// The body as an entry keeps it: JSON if it parses, else text; cut at the limit.
pub fn body_detail(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    if body.len() <= MAX_AUDIT_DETAIL_BYTES {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            return v;
        }
    }
    let cut = &body[..body.len().min(MAX_AUDIT_DETAIL_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > MAX_AUDIT_DETAIL_BYTES {
        text.push_str(&format!("… ({} bytes)", body.len()));
    }
    Value::String(text)
}

/// A token's fingerprint: the first 4 bytes of its keccak256, in hex.
pub fn fingerprint(token: &str) -> String {
    let h = alloy::primitives::keccak256(token.as_bytes());
    alloy::primitives::hex::encode(&h[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(path: &str) -> AuditEvent {
        AuditEvent::Requested {
            method: "POST".into(),
            path: path.into(),
            actor: "operator:00".into(),
            body: serde_json::json!({"amount": "5"}),
        }
    }

    #[test]
    fn entries_are_numbered_durable_across_reopen_and_paged_newest_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = AuditLog::open(dir.path()).expect("open");
        assert_eq!(log.append(1, requested("/a")).expect("append"), 1);
        assert_eq!(log.append(2, AuditEvent::Answered { request_seq: 1, status: 200 }).expect("append"), 2);
        drop(log);
        let log = AuditLog::open(dir.path()).expect("reopen");
        assert_eq!(log.append(3, requested("/b")).expect("append"), 3, "numbering continues");
        let page = log.page(u64::MAX, 2).expect("page");
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2]);
        let older = log.page(2, 10).expect("page");
        assert_eq!(older.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(older[0].event, requested("/a"));
    }

    #[test]
    fn a_torn_last_line_is_cut_and_damage_before_it_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = AuditLog::open(dir.path()).expect("open");
        log.append(1, requested("/a")).expect("append");
        drop(log);
        let path = dir.path().join(AUDIT_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).expect("file");
        f.write_all(b"{\"seq\":2,\"timeMs\":5,\"pha").expect("torn");
        drop(f);
        let log = AuditLog::open(dir.path()).expect("a torn tail is repaired");
        assert_eq!(log.append(6, requested("/c")).expect("append"), 2, "the torn entry never counted");
        drop(log);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replacen("\"seq\":1", "\"seq\":7", 1)).expect("damage");
        assert!(matches!(AuditLog::open(dir.path()), Err(AuditError::AuditLogCorrupt { line: 1, .. })));
        std::fs::write(&path, format!("not json\n{text}")).expect("damage");
        assert!(matches!(AuditLog::open(dir.path()), Err(AuditError::AuditLogCorrupt { line: 1, .. })));
    }

    #[test]
    fn bodies_are_kept_as_json_or_cut_text() {
        assert_eq!(body_detail(b""), Value::Null);
        assert_eq!(body_detail(br#"{"a":1}"#), serde_json::json!({"a": 1}));
        let long = vec![b'x'; MAX_AUDIT_DETAIL_BYTES + 10];
        let Value::String(s) = body_detail(&long) else { panic!("text") };
        assert!(s.ends_with(&format!("… ({} bytes)", MAX_AUDIT_DETAIL_BYTES + 10)), "{s}");
        assert_eq!(fingerprint("secret").len(), 8);
        assert_ne!(fingerprint("secret"), fingerprint("secreT"));
    }
}
