//! One server per data folder: [`DataDirLock`] holds an exclusive advisory lock on
//! `<data_dir>/serve.lock` for as long as the server runs.
//!
//! Invariant: while one process holds the lock, a second `flowbot serve` on the same folder is
//! refused before it opens the store; the operating system drops the lock when the holder exits,
//! however it exits (a `kill -9` included), so a stale lock file never blocks a restart.

use crate::ServeError;
use fs2::FileExt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name in the data folder.
pub const LOCK_FILE: &str = "serve.lock";

/// The held lock of a data folder; dropping it releases the folder.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Locks `data_dir` (creating it when missing), or says that another server holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, ServeError> {
        let failed = |source| ServeError::Lock {
            data_dir: data_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(failed)?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(failed)?;
        if file.try_lock_exclusive().is_err() {
            return Err(ServeError::DataDirInUse {
                data_dir: data_dir.to_path_buf(),
                lock_file: path,
            });
        }
        // The holder's process id, for people looking at the folder.
        file.set_len(0).map_err(failed)?;
        writeln!(file, "{}", std::process::id()).map_err(failed)?;
        Ok(Self { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_folder_is_refused_until_the_first_is_dropped() {
        let data = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(data.path()).unwrap();
        assert_eq!(first.path(), data.path().join(LOCK_FILE));
        let second = DataDirLock::acquire(data.path()).unwrap_err();
        assert!(
            matches!(second, ServeError::DataDirInUse { .. }),
            "{second}"
        );
        assert!(second.to_string().contains("another flowbot serve"));
        drop(first);
        DataDirLock::acquire(data.path()).unwrap();
    }
}
