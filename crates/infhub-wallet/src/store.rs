//! The wallet's durable local store: everything the user needs to exit without the hub.
//!
//! A wallet directory holds `keystore.json` (the encrypted key), `state.json` (the channel
//! state with the newest hub-signed credit, the user's newest debit, a payment sent but not
//! yet answered, a co-signed withdrawal not yet executed) and `journal.jsonl` (every proof and
//! event ever seen, append-only: the user's debits with the hub's receipts, every credit,
//! withdrawals, chain events). `state.json` is replaced atomically (write, fsync, rename,
//! fsync the directory); journal lines are fsynced before the command reports success. A
//! lock file serializes wallet commands that share the directory (e.g. `watch` and `pay`).

use crate::error::WalletError;
use infhub_core::channel::ChannelState;
use infhub_core::messages::{SignedCredit, SignedDebit, SignedReceipt};
use infhub_core::{Address, Amount, Signature, Withdrawal, B256};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Format version of `state.json`.
pub const STATE_VERSION: u32 = 1;
/// How long a command waits for another one to release the wallet directory.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The hub this wallet is registered with, as checked at registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubInfo {
    /// The hub's API.
    pub hub_url: String,
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// Chain id (from the RPC, equal to the hub's).
    pub chain_id: u64,
    /// The hub contract.
    pub hub_contract: Address,
    /// The hub's signing address (read from the contract, not taken from the hub).
    pub hub: Address,
    /// The token.
    pub token: Address,
    /// Blocks, including the event's own, before a chain event counts.
    pub confirmations: u64,
    /// Longest withdrawal authorization the hub accepts, in blocks.
    pub max_withdrawal_expiry_blocks: u64,
}

/// A withdrawal both sides signed, kept until it executes on chain or expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoSignedWithdrawal {
    /// The withdrawal.
    pub withdrawal: Withdrawal,
    /// The user's signature.
    pub user_signature: Signature,
    /// The hub's signature.
    pub hub_signature: Signature,
}

/// What `state.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletState {
    /// Format version.
    pub version: u32,
    /// The account.
    pub user: Address,
    /// The hub.
    pub hub: HubInfo,
    /// The channel as this wallet knows it (None until opened on chain).
    pub channel: Option<ChannelState>,
    /// A signed debit sent to the hub whose answer has not arrived; resent (same payment id)
    /// before anything else, so it is applied exactly once.
    pub pending_debit: Option<SignedDebit>,
    /// The newest co-signed withdrawal not yet seen executed.
    pub withdrawal: Option<CoSignedWithdrawal>,
    /// Block of the channel's opening transaction's search start (for log queries).
    pub since_block: u64,
    /// The watchtowers this wallet feeds (spec §5.10a).
    #[serde(default)]
    pub towers: Vec<TowerLink>,
    /// A signed lock debit sent to the hub whose answer has not arrived (spec §5.17b); resent
    /// as is before anything else, like `pending_debit`.
    #[serde(default)]
    pub pending_lock: Option<PendingLock>,
    /// The invoice a pending lock add pays across hubs (spec §5.23a): its hub forwards the
    /// lock to the payee's hub, so a resend carries it again.
    #[serde(default)]
    pub forwarded_invoice: Option<infhub_core::invoice::SignedInvoice>,
    /// What the forward request adds to the invoice when the payment goes over a route of
    /// several hubs (`lockPoint` and `quoteId` or `route`, spec §5.23b).
    #[serde(default)]
    pub forwarded_route: Option<serde_json::Value>,
}

/// A lock debit on its way to the hub: the debit, the change it signs, and for a locked
/// transfer the payee the hub locks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingLock {
    /// The signed debit.
    pub debit: SignedDebit,
    /// Its lock change.
    pub change: infhub_core::channel::LockChange,
    /// The payee of a locked transfer (None: a change to a lock already with the hub).
    pub payee: Option<Address>,
}

/// A watchtower the wallet feeds its credits to and has offered a fee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TowerLink {
    /// Its API URL.
    pub url: String,
    /// Its address (named in the fee offer; the fee goes there).
    pub address: Address,
}

/// One journal line's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    /// Registered with a hub.
    Registered {
        /// The hub.
        hub: HubInfo,
    },
    /// The channel is open on chain.
    ChannelOpened {
        /// Its epoch.
        epoch: u64,
    },
    /// A debit was signed and is about to be sent.
    DebitSigned {
        /// The debit.
        debit: SignedDebit,
    },
    /// The hub applied a debit and signed its receipt.
    PaymentApplied {
        /// The debit.
        debit: SignedDebit,
        /// The hub's receipt.
        receipt: SignedReceipt,
    },
    /// The hub refused a debit for good: it refunded it (the debit is spent and its amount came
    /// back as this credit), or the debit can no longer be charged (superseded or of an old epoch).
    PaymentRefused {
        /// Its payment id.
        payment_id: B256,
        /// The hub's code.
        code: String,
        /// The hub-signed refund, if the hub refunded it.
        #[serde(default)]
        refund: Option<SignedCredit>,
    },
    /// The hub refused a debit without a refund: it may still be applied, so it stays pending and
    /// is resent before any other payment (no other debit is signed with its nonce).
    PaymentHeld {
        /// Its payment id.
        payment_id: B256,
        /// The hub's code.
        code: String,
    },
    /// A debit signed by this key elsewhere (another device) that the hub holds.
    DebitLearned {
        /// The debit.
        debit: SignedDebit,
    },
    /// A hub-signed credit.
    Credit {
        /// The credit.
        credit: SignedCredit,
        /// Who paid, when the hub said.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        from: Option<Address>,
        /// This payment's amount, when known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        amount: Option<Amount>,
    },
    /// A withdrawal co-signed by the hub.
    WithdrawalCoSigned {
        /// The withdrawal with both signatures.
        withdrawal: CoSignedWithdrawal,
    },
    /// A transaction this wallet sent.
    Transaction {
        /// What for.
        what: String,
        /// Its hash.
        hash: B256,
    },
    /// Confirmed deposits rose to this total.
    Deposited {
        /// Running total this epoch.
        total: Amount,
    },
    /// Confirmed withdrawals rose to this total.
    Withdrawn {
        /// Running total this epoch.
        total: Amount,
    },
    /// A close of the channel started on chain.
    ExitStarted {
        /// First block settlement is possible.
        settle_block: u64,
    },
    /// The channel settled.
    Settled {
        /// Paid by the contract.
        paid: Amount,
        /// What this wallet's proofs entitle it to.
        expected: Amount,
    },
    /// The hub's report disagrees with this wallet's proofs.
    Disagreement {
        /// What disagrees.
        detail: String,
    },
}

/// A journal line: an entry with its wall-clock time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalLine {
    /// Unix seconds.
    pub at: u64,
    /// The entry.
    #[serde(flatten)]
    pub entry: JournalEntry,
}

/// A wallet directory.
#[derive(Clone, Debug)]
pub struct WalletDir {
    path: PathBuf,
}

/// Held while a command changes the store; released on drop.
pub struct DirLock {
    _file: File,
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> WalletError {
    WalletError::Store { path: path.display().to_string(), reason: e.to_string() }
}

impl WalletDir {
    /// The directory (created on first write).
    pub fn new(path: PathBuf) -> WalletDir {
        WalletDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the encrypted key lives.
    pub fn keystore_path(&self) -> PathBuf {
        self.path.join("keystore.json")
    }

    fn state_path(&self) -> PathBuf {
        self.path.join("state.json")
    }

    fn journal_path(&self) -> PathBuf {
        self.path.join("journal.jsonl")
    }

    /// Creates the directory (owner-only on Unix).
    pub fn create(&self) -> Result<(), WalletError> {
        std::fs::create_dir_all(&self.path).map_err(|e| store_err(&self.path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| store_err(&self.path, e))?;
        }
        Ok(())
    }

    /// Takes the directory's lock, waiting up to [`LOCK_WAIT`] for another command.
    pub async fn lock(&self) -> Result<DirLock, WalletError> {
        self.create()?;
        let path = self.path.join("lock");
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| store_err(&path, e))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DirLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(WalletError::Busy { dir: self.path.display().to_string() })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(store_err(&path, e)),
            }
        }
    }

    /// Writes a file atomically and durably.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), WalletError> {
        self.create()?;
        let path = self.path.join(name);
        let tmp = self.path.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| store_err(&tmp, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| store_err(&tmp, e))?;
        }
        f.write_all(bytes).map_err(|e| store_err(&tmp, e))?;
        f.sync_all().map_err(|e| store_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| store_err(&path, e))?;
        File::open(&self.path).and_then(|d| d.sync_all()).map_err(|e| store_err(&self.path, e))?;
        Ok(())
    }

    /// The saved state, if the wallet is registered.
    pub fn load(&self) -> Result<Option<WalletState>, WalletError> {
        let path = self.state_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(store_err(&path, e)),
        };
        let state: WalletState = serde_json::from_str(&text).map_err(|e| store_err(&path, e))?;
        if state.version != STATE_VERSION {
            return Err(store_err(&path, format!("format version {} is not {STATE_VERSION}", state.version)));
        }
        Ok(Some(state))
    }

    /// Saves the state durably.
    pub fn save(&self, state: &WalletState) -> Result<(), WalletError> {
        let text = serde_json::to_vec_pretty(state).map_err(|e| store_err(&self.state_path(), e))?;
        self.write_atomic("state.json", &text)
    }

    /// Appends journal entries and fsyncs them.
    pub fn append(&self, entries: &[JournalEntry]) -> Result<(), WalletError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.create()?;
        let path = self.journal_path();
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut buf = Vec::new();
        for entry in entries {
            let line = JournalLine { at, entry: entry.clone() };
            serde_json::to_writer(&mut buf, &line).map_err(|e| store_err(&path, e))?;
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| store_err(&path, e))?;
        f.write_all(&buf).map_err(|e| store_err(&path, e))?;
        f.sync_data().map_err(|e| store_err(&path, e))
    }

    /// Every journal line, oldest first. A torn last line (a crash mid-append) is skipped.
    pub fn journal(&self) -> Result<Vec<JournalLine>, WalletError> {
        let path = self.journal_path();
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(store_err(&path, e)),
        };
        let lines: Vec<String> =
            BufReader::new(f).lines().collect::<Result<_, _>>().map_err(|e| store_err(&path, e))?;
        let mut out = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str(line) {
                Ok(l) => out.push(l),
                Err(_) if i + 1 == lines.len() => {}
                Err(e) => return Err(store_err(&path, format!("line {}: {e}", i + 1))),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> WalletState {
        WalletState {
            version: STATE_VERSION,
            user: Address::repeat_byte(1),
            hub: HubInfo {
                hub_url: "http://h".into(),
                rpc_url: "http://r".into(),
                chain_id: 31337,
                hub_contract: Address::repeat_byte(2),
                hub: Address::repeat_byte(3),
                token: Address::repeat_byte(4),
                confirmations: 2,
                max_withdrawal_expiry_blocks: 100,
            },
            channel: Some(ChannelState::opened(Address::repeat_byte(1), 1)),
            pending_debit: None,
            withdrawal: None,
            since_block: 7,
            towers: Vec::new(),
            pending_lock: None,
            forwarded_invoice: None,
            forwarded_route: None,
        }
    }

    #[test]
    fn state_round_trips_and_journal_skips_only_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        let w = WalletDir::new(dir.path().join("w"));
        assert_eq!(w.load().expect("load"), None);
        w.save(&state()).expect("save");
        assert_eq!(w.load().expect("load"), Some(state()));
        w.append(&[JournalEntry::ExitStarted { settle_block: 9 }, JournalEntry::Deposited { total: Amount(5) }])
            .expect("append");
        let mut f = OpenOptions::new().append(true).open(dir.path().join("w/journal.jsonl")).expect("open");
        f.write_all(b"{\"at\":1,\"kind\":\"depos").expect("torn");
        let j = w.journal().expect("journal");
        assert_eq!(j.len(), 2);
        assert_eq!(j[1].entry, JournalEntry::Deposited { total: Amount(5) });
        // A damaged line that is not the last one is an error, not silently dropped.
        f.write_all(b"\n{\"at\":1,\"kind\":\"exit_started\",\"settle_block\":3}\n").expect("more");
        assert!(matches!(w.journal(), Err(WalletError::Store { .. })));
    }

    #[tokio::test]
    async fn a_second_command_waits_for_the_lock() {
        let dir = tempfile::tempdir().expect("tmp");
        let w = WalletDir::new(dir.path().to_path_buf());
        let held = w.lock().await.expect("lock");
        let w2 = w.clone();
        let waiter = tokio::spawn(async move { w2.lock().await.map(|_| Instant::now()) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let released = Instant::now();
        drop(held);
        let got = waiter.await.expect("join").expect("lock after release");
        assert!(got >= released, "the second lock was granted while the first was held");
    }
}
