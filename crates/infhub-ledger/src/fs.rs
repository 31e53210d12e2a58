//! The file-system operations the file store performs, behind a small trait.
//!
//! The file store's crash safety rests on a few operations and their ordering: append then
//! `fdatasync`, write a temporary file, sync it, rename it, sync the directory. [`OsFs`] does
//! them on the real file system. The deterministic simulator (`infhub-sim`) supplies a
//! simulated disk that loses unsynced data, tears the last write or fails at any operation,
//! so the very same store code is exercised under crashes that a real disk can only produce
//! by chance.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// An open file the store writes to.
pub trait FsFile {
    /// Writes all of `bytes` at the end of the file.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;
    /// The file's current length in bytes.
    fn len(&mut self) -> io::Result<u64>;
    /// True if the file holds no bytes.
    fn is_empty(&mut self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// What the file store needs from a file system.
pub trait Fs {
    /// The open-file type.
    type File: FsFile;
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir` (empty if `dir` does not exist).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Up to `len` bytes of a file from byte `offset` (fewer at its end).
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// A file's length in bytes.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Creates a new file; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;
    /// Creates a file, or truncates it if it exists.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for appending.
    fn open_append(&self, path: &Path) -> io::Result<Self::File>;
    /// Truncates a file to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Renames a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes `dir`'s entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The same file system as a handle another thread may use, if it can be shared: the real
    /// one can; the simulator's deterministic disk cannot (its snapshots stay on the caller's
    /// thread).
    fn detached(&self) -> Option<OsFs> {
        None
    }
}

/// A file system the hub's threads share: the store's files move to the writer thread and the
/// history's reads run beside it.
pub trait SharedFs: Fs<File: Send + Sync> + Clone + Send + Sync + 'static {}

impl<F: Fs<File: Send + Sync> + Clone + Send + Sync + 'static> SharedFs for F {}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

impl FsFile for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }
    fn len(&mut self) -> io::Result<u64> {
        self.seek(SeekFrom::End(0))
    }
}

impl Fs for OsFs {
    type File = File;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(path)?.read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = File::open(path)?;
        let mut buf = vec![0; len];
        let mut got = 0;
        while got < len {
            match f.read_at(&mut buf[got..], offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().create_new(true).write(true).open(path)
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        File::create(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<File> {
        let mut f = OpenOptions::new().write(true).open(path)?;
        f.seek(SeekFrom::End(0))?;
        Ok(f)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn detached(&self) -> Option<OsFs> {
        Some(OsFs)
    }
}
