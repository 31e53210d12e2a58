//! A simulated disk under the real file store, for the deterministic simulator and for the
//! store's crash-point tests.
//!
//! It implements the file store's [`Fs`] trait with the failure semantics of a real disk:
//! written data is volatile until the file is synced, created, renamed and removed names are
//! volatile until their directory is synced, and a crash keeps only what was durable, plus
//! possibly any prefix of what was written after the last sync (a torn write), plus possibly
//! the unsynced directory changes. A crash can be scheduled to strike at the N-th operation,
//! so it lands inside an append, between a snapshot's rename and its directory sync, and so
//! on; every operation after it fails, as the process is gone. What a crash keeps is chosen
//! by a [`CrashChoices`]: the simulator draws it from its seeded generator, the store's tests
//! enumerate the extremes.

use crate::fs::{Fs, FsFile};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
struct DiskState {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
    /// Operations left before the scheduled crash strikes.
    ops_until_crash: Option<u64>,
    crashed: bool,
    /// Operations performed.
    ops: u64,
}

/// What a crash keeps of what was not yet durable.
pub trait CrashChoices {
    /// Whether the unsynced directory changes (creations, renames, removals) reached the disk:
    /// all of them, or none.
    fn keep_unsynced_names(&mut self) -> bool;
    /// How many of a file's `unsynced` trailing bytes reached the disk (a torn write keeps a
    /// prefix), at most `unsynced`.
    fn unsynced_bytes_kept(&mut self, unsynced: usize) -> usize;
}

/// How much of a file's unsynced tail a crash keeps, in [`FixedChoices`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsyncedKept {
    /// None of it.
    None,
    /// Its first byte only: a torn write shorter than any record or entry.
    OneByte,
    /// Its first half.
    Half,
    /// All of it.
    All,
}

/// A fixed choice for every crash, for tests that enumerate the extremes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedChoices {
    /// Keep the unsynced directory changes.
    pub names: bool,
    /// How much of each file's unsynced bytes to keep.
    pub unsynced: UnsyncedKept,
}

impl FixedChoices {
    /// Every combination: names kept or lost, times each share of the unsynced bytes kept.
    pub fn all() -> Vec<FixedChoices> {
        use UnsyncedKept::*;
        [false, true]
            .into_iter()
            .flat_map(|names| [None, OneByte, Half, All].map(move |unsynced| FixedChoices { names, unsynced }))
            .collect()
    }
}

impl CrashChoices for FixedChoices {
    fn keep_unsynced_names(&mut self) -> bool {
        self.names
    }
    fn unsynced_bytes_kept(&mut self, unsynced: usize) -> usize {
        match self.unsynced {
            UnsyncedKept::None => 0,
            UnsyncedKept::OneByte => unsynced.min(1),
            UnsyncedKept::Half => unsynced / 2,
            UnsyncedKept::All => unsynced,
        }
    }
}

/// Handle to the simulated disk (cheap to clone; all clones share the disk).
#[derive(Clone, Debug, Default)]
pub struct SimDisk(Arc<Mutex<DiskState>>);

/// An open file on the simulated disk.
#[derive(Debug)]
pub struct SimFile {
    disk: SimDisk,
    inode: usize,
}

fn gone() -> io::Error {
    io::Error::other("simulated crash: the process lost its disk")
}

fn missing(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the crash strike at the `n`-th operation from now (0 = the next one).
    pub fn schedule_crash(&self, n: u64) {
        self.state().ops_until_crash = Some(n);
    }

    /// Cancels a scheduled crash that has not struck yet.
    pub fn cancel_crash(&self) {
        self.state().ops_until_crash = None;
    }

    /// True once a scheduled crash has struck (until [`SimDisk::restart`]).
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// The file names and sizes on the disk now (for failure reports).
    pub fn listing(&self) -> Vec<(String, usize)> {
        let s = self.state();
        s.names.iter().map(|(p, i)| (p.display().to_string(), s.inodes[*i].data.len())).collect()
    }

    /// An independent copy of this disk as it is now (a test restarts each copy differently).
    pub fn fork(&self) -> SimDisk {
        SimDisk(Arc::new(Mutex::new(self.state().clone())))
    }

    /// Operations performed so far (a crash scheduled at this number strikes the next one).
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// The machine lost power (or the process died): keeps what a real disk may keep, as
    /// `choices` decide, and makes the disk usable again for the restarted process.
    pub fn restart(&self, choices: &mut dyn CrashChoices) {
        let mut s = self.state();
        // Unsynced directory changes either all reached the disk or none did.
        if !choices.keep_unsynced_names() {
            s.names = s.durable_names.clone();
        }
        let names = s.names.clone();
        s.durable_names = names;
        for inode in &mut s.inodes {
            let keep = if inode.data.len() > inode.durable.len() && inode.data.starts_with(&inode.durable) {
                // Any prefix of the unsynced tail may have reached the platter.
                let extra = inode.data.len() - inode.durable.len();
                inode.durable.len() + choices.unsynced_bytes_kept(extra).min(extra)
            } else if inode.data == inode.durable {
                inode.data.len()
            } else {
                // Rewritten or truncated since the last sync: the old durable content stays.
                inode.data = inode.durable.clone();
                inode.data.len()
            };
            inode.data.truncate(keep);
            inode.durable = inode.data.clone();
        }
        s.crashed = false;
        s.ops_until_crash = None;
    }

    fn op(&self) -> io::Result<()> {
        let mut s = self.state();
        if s.crashed {
            return Err(gone());
        }
        s.ops += 1;
        if let Some(n) = s.ops_until_crash {
            if n == 0 {
                s.crashed = true;
                s.ops_until_crash = None;
                return Err(gone());
            }
            s.ops_until_crash = Some(n - 1);
        }
        Ok(())
    }

    fn inode_of(&self, path: &Path) -> io::Result<usize> {
        self.state().names.get(path).copied().ok_or_else(|| missing(path))
    }

    fn new_inode(&self, path: &Path) -> usize {
        let mut s = self.state();
        s.inodes.push(Inode::default());
        let id = s.inodes.len() - 1;
        s.names.insert(path.to_path_buf(), id);
        id
    }
}

impl FsFile for SimFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.disk.op() {
            // The crash struck during this write: part of it may be in the page cache.
            let mut s = self.disk.state();
            let part = bytes.len() / 2;
            s.inodes[self.inode].data.extend_from_slice(&bytes[..part]);
            return Err(e);
        }
        self.disk.state().inodes[self.inode].data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.disk.op()?;
        let mut s = self.disk.state();
        let inode = &mut s.inodes[self.inode];
        inode.durable = inode.data.clone();
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn len(&mut self) -> io::Result<u64> {
        self.disk.op()?;
        Ok(self.disk.state().inodes[self.inode].data.len() as u64)
    }
}

impl Fs for SimDisk {
    type File = SimFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.op()?;
        self.state().dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.op()?;
        let s = self.state();
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.op()?;
        let id = self.inode_of(path)?;
        Ok(self.state().inodes[id].data.clone())
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.op()?;
        let id = self.inode_of(path)?;
        let s = self.state();
        let data = &s.inodes[id].data;
        let start = (offset as usize).min(data.len());
        Ok(data[start..(start + len).min(data.len())].to_vec())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.op()?;
        let id = self.inode_of(path)?;
        Ok(self.state().inodes[id].data.len() as u64)
    }

    fn create_new(&self, path: &Path) -> io::Result<SimFile> {
        self.op()?;
        if self.state().names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        let inode = self.new_inode(path);
        Ok(SimFile { disk: self.clone(), inode })
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        self.op()?;
        let inode = self.new_inode(path);
        Ok(SimFile { disk: self.clone(), inode })
    }

    fn open_append(&self, path: &Path) -> io::Result<SimFile> {
        self.op()?;
        let inode = self.inode_of(path)?;
        Ok(SimFile { disk: self.clone(), inode })
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.op()?;
        let id = self.inode_of(path)?;
        let mut s = self.state();
        let inode = &mut s.inodes[id];
        inode.data.truncate(len as usize);
        inode.durable = inode.data.clone();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.op()?;
        let mut s = self.state();
        let id = s.names.remove(from).ok_or_else(|| missing(from))?;
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.op()?;
        self.state().names.remove(path).map(|_| ()).ok_or_else(|| missing(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.op()?;
        let mut s = self.state();
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        s.durable_names.retain(|p, _| !in_dir(p));
        let current: Vec<(PathBuf, usize)> =
            s.names.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)).collect();
        s.durable_names.extend(current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn synced_data_survives_a_crash_and_unsynced_data_may_not() {
        let disk = SimDisk::new();
        disk.create_dir_all(&p("/d")).expect("dir");
        let mut f = disk.create_new(&p("/d/a")).expect("create");
        f.append(b"durable").expect("write");
        f.sync_data().expect("sync");
        disk.sync_dir(&p("/d")).expect("dir sync");
        f.append(b"-volatile").expect("write");
        disk.restart(&mut FixedChoices { names: true, unsynced: UnsyncedKept::Half });
        let data = disk.read(&p("/d/a")).expect("read");
        assert!(data.starts_with(b"durable"), "synced bytes lost: {data:?}");
        assert!(b"durable-volatile".starts_with(&data[..]), "bytes invented: {data:?}");
    }

    #[test]
    fn a_scheduled_crash_fails_every_later_operation_until_restart() {
        let disk = SimDisk::new();
        disk.create_dir_all(&p("/d")).expect("dir");
        disk.schedule_crash(1);
        let mut f = disk.create_new(&p("/d/a")).expect("first op succeeds");
        assert!(f.append(b"abcdef").is_err(), "the crash strikes the second op");
        assert!(disk.crashed());
        assert!(disk.list(&p("/d")).is_err(), "a crashed process has no disk");
        disk.restart(&mut FixedChoices { names: false, unsynced: UnsyncedKept::None });
        assert!(!disk.crashed());
        // The file's creation was never made durable by a directory sync: it may be gone.
        let names = disk.list(&p("/d")).expect("list");
        assert!(names.len() <= 1);
    }

    #[test]
    fn an_unsynced_rename_is_all_or_nothing() {
        for (seed, mut choices) in FixedChoices::all().into_iter().enumerate() {
            let disk = SimDisk::new();
            disk.create_dir_all(&p("/d")).expect("dir");
            let mut f = disk.create_new(&p("/d/x.tmp")).expect("create");
            f.append(b"snap").expect("write");
            f.sync_all().expect("sync");
            disk.sync_dir(&p("/d")).expect("dir sync");
            disk.rename(&p("/d/x.tmp"), &p("/d/x.snap")).expect("rename");
            disk.restart(&mut choices);
            let names = disk.list(&p("/d")).expect("list");
            assert_eq!(names.len(), 1, "seed {seed}: {names:?}");
            let data = disk.read(&p(&format!("/d/{}", names[0]))).expect("read");
            assert_eq!(data, b"snap", "seed {seed}");
        }
    }
}
