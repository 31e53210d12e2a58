//! The hub's checkpoints (spec §5.16): built from the ledger when one is due, their leaves
//! stored before the ledger records them, and kept at hand for the wallets' proofs.
//!
//! The order makes a crash harmless: leaves are written (temporary file, sync, rename, sync the
//! directory) before [`Command::CheckpointBuilt`] enters the ledger's log, so a recorded
//! checkpoint always has its file, and a crash before the record only leaves a file the next
//! build replaces. Posting is then an ordinary duty of the ledger's state. Files are named by
//! id and root, so a checkpoint rebuilt under the same id (the chain did not take the first
//! build in time) never overwrites the one the chain may yet take; the chain's root picks the
//! file. After a restart the posted and pending checkpoints are read back from their files.

use crate::duties::LedgerAccess;
use alloy::primitives::keccak256;
use infhub_core::checkpoint::{BuiltCheckpoint, CheckpointDomain, LeafKind, LeafProof};
use infhub_core::contract::PostedCheckpoint;
use infhub_core::ledger::{CheckpointHeader, Command, Ledger, Outcome};
use infhub_core::{Address, Amount, PrivateKey, B256, U256};
use infhub_ledger::fs::{Fs, FsFile};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Checkpoints kept in memory for proofs: the posted one and the one built after it.
pub const CHECKPOINTS_IN_MEMORY: usize = 2;

/// How the hub checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// A checkpoint is built when the newest posted one is this many blocks old (0: off).
    pub interval_blocks: u64,
    /// Checkpoint files kept on disk (the oldest are removed).
    pub files_kept: usize,
    /// TEST ONLY: a dishonest hub that counts half of this user's newest credit in her channel
    /// leaf (same nonce; her liability lowered as much). The tests use it to show that her
    /// wallet catches it and that her complaint halts the hub; an honest hub never sets it.
    pub dishonest_understate_credit_of: Option<Address>,
    /// TEST ONLY: a dishonest hub that states more debit than this user signed in her channel
    /// leaf (half her deposit more; her liability lowered as much). The tests use it to show that
    /// her wallet's challenge goes unanswered and halts the hub; an honest hub never sets it.
    pub dishonest_invent_debit_of: Option<Address>,
}

/// The secret behind leaf salts and the shuffle, derived from the hub's key so that nothing
/// else needs keeping and no one else can derive it.
pub fn checkpoint_secret(key: &PrivateKey) -> B256 {
    let mut input = b"infhub.CheckpointSecret".to_vec();
    input.extend_from_slice(&key.secret_bytes());
    keccak256(input)
}

/// Where checkpoint files live: written whole and atomically, listed and removed by name.
pub trait CheckpointStorage: Send {
    /// Writes `bytes` as `name`, durably, replacing any file of that name.
    fn write(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Reads `name`.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// The names stored.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Removes `name`.
    fn remove(&mut self, name: &str) -> io::Result<()>;
}

/// Checkpoint files in a directory of an [`Fs`].
pub struct FsCheckpointStorage<F: Fs> {
    fs: F,
    dir: PathBuf,
}

impl<F: Fs> FsCheckpointStorage<F> {
    /// Files under `dir` of `fs`.
    pub fn new(fs: F, dir: PathBuf) -> FsCheckpointStorage<F> {
        FsCheckpointStorage { fs, dir }
    }
}

impl<F: Fs + Send> CheckpointStorage for FsCheckpointStorage<F> {
    fn write(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.fs.create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = self.fs.create(&tmp)?;
        f.append(bytes)?;
        f.sync_all()?;
        drop(f);
        self.fs.rename(&tmp, &self.dir.join(name))?;
        self.fs.sync_dir(&self.dir)
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.fs.read(&self.dir.join(name))
    }
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> =
            self.fs.list(&self.dir)?.into_iter().filter(|n| n.ends_with(FILE_SUFFIX)).collect();
        names.sort();
        Ok(names)
    }
    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.fs.remove(&self.dir.join(name))?;
        self.fs.sync_dir(&self.dir)
    }
}

const FILE_SUFFIX: &str = ".ckpt";

/// The file name of checkpoint `id` with `root`: sorts by id.
pub fn file_name(id: u64, root: B256) -> String {
    format!("{id:020}-{root}{FILE_SUFFIX}")
}

/// Reads checkpoint `id` back from `storage`: the file of `root` if given, else the only
/// file of that id (None if there is none, or several and no root to choose).
pub fn read_stored(
    storage: &dyn CheckpointStorage,
    id: u64,
    root: Option<B256>,
) -> Result<Option<BuiltCheckpoint>, String> {
    let name = match root {
        Some(r) => file_name(id, r),
        None => {
            let prefix = format!("{id:020}-");
            let names: Vec<String> =
                storage.list().map_err(|e| e.to_string())?.into_iter().filter(|n| n.starts_with(&prefix)).collect();
            match names.as_slice() {
                [one] => one.clone(),
                _ => return Ok(None),
            }
        }
    };
    match storage.read(&name) {
        Ok(bytes) => BuiltCheckpoint::decode(&bytes).map(Some).map_err(|e| e.to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The checkpoints in memory, shared with the API.
#[derive(Debug, Default)]
pub struct CheckpointShelf {
    built: BTreeMap<(u64, B256), Arc<BuiltCheckpoint>>,
    /// Checkpoints built since the process started.
    pub built_count: u64,
    /// The last failure to build or store one, if the last attempt failed.
    pub last_error: Option<String>,
}

impl CheckpointShelf {
    /// The checkpoint `id` whose root is `root`, if in memory.
    pub fn get(&self, id: u64, root: B256) -> Option<Arc<BuiltCheckpoint>> {
        self.built.get(&(id, root)).cloned()
    }

    /// Checkpoint `id` in memory: the one with `root` if given, else the only build of it
    /// (None if it was built twice and no root chooses).
    pub fn find(&self, id: u64, root: Option<B256>) -> Option<Arc<BuiltCheckpoint>> {
        match root {
            Some(r) => self.get(id, r),
            None => {
                let mut builds = self.built.range((id, B256::ZERO)..=(id, B256::repeat_byte(0xFF)));
                match (builds.next(), builds.next()) {
                    (Some((_, b)), None) => Some(b.clone()),
                    _ => None,
                }
            }
        }
    }

    /// The leaves of `account` in checkpoint `id` with `root`, with their paths; None if that
    /// checkpoint is not in memory.
    pub fn proofs(&self, id: u64, root: B256, account: Address) -> Option<Vec<LeafProof>> {
        self.get(id, root).map(|b| b.proofs_of(account))
    }

    fn keep(&mut self, id: u64, root: B256, built: Arc<BuiltCheckpoint>) {
        self.built.insert((id, root), built);
        while self.built.len() > CHECKPOINTS_IN_MEMORY {
            self.built.pop_first();
        }
    }
}

/// The shelf as readers on other threads hold it.
pub type ShelfHandle = Arc<Mutex<CheckpointShelf>>;

/// Builds, stores and restores the hub's checkpoints.
pub struct Checkpointer {
    config: CheckpointConfig,
    secret: B256,
    chain_id: u64,
    contract: Address,
    storage: Box<dyn CheckpointStorage>,
    shelf: ShelfHandle,
    /// Recorded checkpoints whose files could not be read back (not tried again).
    unreadable: BTreeSet<(u64, B256)>,
}

impl Checkpointer {
    /// Checkpoints of the hub with `key` behind `contract` on `chain_id`, stored in `storage`.
    pub fn new(
        config: CheckpointConfig,
        key: &PrivateKey,
        chain_id: u64,
        contract: Address,
        storage: Box<dyn CheckpointStorage>,
    ) -> Checkpointer {
        if let Some(user) = config.dishonest_understate_credit_of {
            tracing::error!(%user, "TEST ONLY: this hub's checkpoints understate a user's credit (dishonest_understate_credit_of)");
        }
        if let Some(user) = config.dishonest_invent_debit_of {
            tracing::error!(%user, "TEST ONLY: this hub's checkpoints invent a debit of a user (dishonest_invent_debit_of)");
        }
        let secret = checkpoint_secret(key);
        Checkpointer { config, secret, chain_id, contract, storage, shelf: Arc::default(), unreadable: BTreeSet::new() }
    }

    /// A handle to the checkpoints in memory.
    pub fn shelf(&self) -> ShelfHandle {
        self.shelf.clone()
    }

    fn lock(&self) -> MutexGuard<'_, CheckpointShelf> {
        self.shelf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One round: read back the ledger's checkpoints missing from memory (after a restart),
    /// then build, store and record the next one if it is due.
    pub async fn tick(&mut self, ledger: &mut impl LedgerAccess) {
        let (posted, pending) = ledger.read(|l| (l.checkpoints.posted, l.checkpoints.pending));
        for h in [posted, pending].into_iter().flatten() {
            self.restore(h);
        }
        let Some(id) = ledger.read(|l| l.checkpoint_due(self.config.interval_blocks)) else { return };
        match self.build(ledger, id).await {
            Ok(header) => {
                let mut shelf = self.lock();
                shelf.built_count += 1;
                shelf.last_error = None;
                drop(shelf);
                tracing::info!(id, root = %header.checkpoint.root, total = %header.checkpoint.total_liability,
                    seq = header.checkpoint.ledger_seq, block = header.checkpoint.chain_block, "checkpoint built");
            }
            Err(e) => {
                tracing::error!(id, error = %e, "checkpoint not built; trying again next round");
                self.lock().last_error = Some(e);
            }
        }
    }

    fn restore(&mut self, h: CheckpointHeader) {
        let root = h.checkpoint.root;
        if self.unreadable.contains(&(h.id, root)) || self.lock().get(h.id, root).is_some() {
            return;
        }
        let loaded = self
            .storage
            .read(&file_name(h.id, root))
            .map_err(|e| e.to_string())
            .and_then(|bytes| BuiltCheckpoint::decode(&bytes).map_err(|e| e.to_string()));
        match loaded {
            Ok(b) if b.root().hash == root && b.domain == self.domain(h.id) => {
                return self.lock().keep(h.id, root, Arc::new(b));
            }
            Ok(_) => tracing::error!(id = h.id, "checkpoint file does not hold the recorded checkpoint"),
            // Proofs of this checkpoint cannot be served (the API says so); the next one will be.
            Err(e) => tracing::error!(id = h.id, error = %e, "checkpoint file unreadable"),
        }
        self.unreadable.insert((h.id, root));
    }

    fn domain(&self, id: u64) -> CheckpointDomain {
        CheckpointDomain { chain_id: self.chain_id, contract: self.contract, checkpoint_id: id }
    }

    async fn build(&mut self, ledger: &mut impl LedgerAccess, id: u64) -> Result<CheckpointHeader, String> {
        let d = self.domain(id);
        let omit = self.config.dishonest_understate_credit_of;
        let (mut leaves, seq, block, inflows) = ledger.read(|l: &Ledger| {
            (l.checkpoint_leaves(&d, &self.secret), l.next_seq - 1, l.block, l.checkpoints.liability_inflows)
        });
        if let Some(user) = omit {
            for leaf in leaves.iter_mut().filter(|l| l.account == user && l.kind == LeafKind::Channel) {
                let hidden = leaf.credit_total.0 - leaf.credit_total.0 / 2;
                leaf.credit_total = Amount(leaf.credit_total.0 / 2);
                leaf.liability = Amount(leaf.liability.0.saturating_sub(hidden));
            }
        }
        if let Some(user) = self.config.dishonest_invent_debit_of {
            for leaf in leaves.iter_mut().filter(|l| l.account == user && l.kind == LeafKind::Channel) {
                let invented = leaf.deposited.0 / 2 + 1;
                leaf.debit_nonce += 1;
                leaf.debit_total = Amount(leaf.debit_total.0.saturating_add(invented));
                leaf.liability = Amount(leaf.liability.0.saturating_sub(invented));
            }
        }
        let built = BuiltCheckpoint::build(d, leaves, &self.secret);
        let root = built.root();
        let header = CheckpointHeader {
            id,
            checkpoint: PostedCheckpoint {
                root: root.hash,
                total_liability: root.sum,
                ledger_seq: seq,
                chain_block: block,
                inflows_through: U256::from(inflows.0),
            },
        };
        self.storage.write(&file_name(id, root.hash), &built.encode()).map_err(|e| format!("storing: {e}"))?;
        match ledger.commit(vec![Command::CheckpointBuilt(header)]).await {
            Ok(r) => match r.into_iter().next() {
                Some(Ok(Outcome::CheckpointRecorded)) => {}
                other => return Err(format!("the ledger refused it: {other:?}")),
            },
            Err(e) => return Err(format!("recording: {e}")),
        }
        self.lock().keep(id, root.hash, Arc::new(built));
        let posted = ledger.read(|l| l.checkpoints.posted.map_or(0, |p| p.id));
        self.prune(posted);
        Ok(header)
    }

    /// Removes the oldest files past `files_kept`, never one of the posted checkpoint or a
    /// later one.
    fn prune(&mut self, posted_id: u64) {
        let names = match self.storage.list() {
            Ok(n) => n,
            Err(e) => return tracing::warn!(error = %e, "checkpoint files not listed"),
        };
        let excess = names.len().saturating_sub(self.config.files_kept);
        let older = |n: &String| n.get(..20).and_then(|id| id.parse::<u64>().ok()).is_some_and(|id| id < posted_id);
        for name in names.into_iter().filter(older).take(excess) {
            if let Err(e) = self.storage.remove(&name) {
                tracing::warn!(file = name, error = %e, "old checkpoint file not removed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infhub_core::checkpoint::Leaf;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Memory(HashMap<String, Vec<u8>>);

    impl CheckpointStorage for Memory {
        fn write(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
            self.0.insert(name.into(), bytes.to_vec());
            Ok(())
        }
        fn read(&self, name: &str) -> io::Result<Vec<u8>> {
            self.0.get(name).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn list(&self) -> io::Result<Vec<String>> {
            let mut n: Vec<String> = self.0.keys().cloned().collect();
            n.sort();
            Ok(n)
        }
        fn remove(&mut self, name: &str) -> io::Result<()> {
            self.0.remove(name);
            Ok(())
        }
    }

    fn built(id: u64, liability: u128) -> BuiltCheckpoint {
        let d = CheckpointDomain { chain_id: 1, contract: Address::repeat_byte(1), checkpoint_id: id };
        let leaf = Leaf::owing(Address::repeat_byte(2), LeafKind::Custodial, Amount(liability));
        BuiltCheckpoint::build(d, vec![leaf], &B256::ZERO)
    }

    #[test]
    fn a_stored_checkpoint_is_read_back_by_root_and_two_builds_of_an_id_need_one() {
        let mut m = Memory::default();
        let (a, b) = (built(3, 5), built(3, 6));
        for x in [&a, &b] {
            m.write(&file_name(3, x.root().hash), &x.encode()).expect("write");
        }
        let got = read_stored(&m, 3, Some(b.root().hash)).expect("read").expect("found");
        assert_eq!(got.root(), b.root());
        assert!(read_stored(&m, 3, None).expect("read").is_none(), "two builds: the root must choose");
        assert!(read_stored(&m, 4, None).expect("read").is_none());
        m.remove(&file_name(3, a.root().hash)).expect("rm");
        assert_eq!(read_stored(&m, 3, None).expect("read").expect("one build").root(), b.root());
        m.write(&file_name(3, a.root().hash), b"garbage").expect("write");
        assert!(read_stored(&m, 3, Some(a.root().hash)).is_err(), "a damaged file is an error, not a checkpoint");
    }

    #[test]
    fn pruning_keeps_the_posted_checkpoint_and_every_later_one() {
        let key = PrivateKey::from_bytes([7; 32]).expect("key");
        let config = CheckpointConfig {
            interval_blocks: 1,
            files_kept: 2,
            dishonest_understate_credit_of: None,
            dishonest_invent_debit_of: None,
        };
        let mut c = Checkpointer::new(config, &key, 1, Address::repeat_byte(1), Box::new(Memory::default()));
        for id in 1..=6 {
            let b = built(id, u128::from(id));
            c.storage.write(&file_name(id, b.root().hash), &b.encode()).expect("write");
        }
        // A second build of the posted id 3: kept with it.
        let again = built(3, 33);
        c.storage.write(&file_name(3, again.root().hash), &again.encode()).expect("write");
        c.prune(3);
        let ids: Vec<u64> = c.storage.list().expect("list").iter().map(|n| n[..20].parse().expect("an id")).collect();
        assert_eq!(ids, vec![3, 3, 4, 5, 6], "older files go, the posted id and later stay");
    }
}
