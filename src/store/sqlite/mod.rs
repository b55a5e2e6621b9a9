//! SQLite store: bans, their history, and log read positions in one file.
//!
//! WAL mode with a busy timeout lets the CLI write while the daemon runs. One active ban
//! per network is enforced by a partial unique index, so two processes banning the same
//! address at once cannot both succeed. The schema is versioned with `user_version`
//! (`schema`). This file opens the database; each thing kept in it has its own file:
//! the bans (`bans`, read back by `row`), the admin's questions (`query`) and accounts
//! (`accounts`), read positions and journal cursors (`positions`), Redis's outbox
//! (`outbox`), the daemon's saved counters (`stats`) and its failed-attempt counts,
//! saved with the read positions (`counters`); `private` keeps the files' modes.

mod accounts;
mod bans;
mod counters;
mod feed;
mod outbox;
mod positions;
pub mod private;
mod query;
mod row;
mod schema;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

pub use counters::{CountChanges, SavedCount};

use super::StoreError;

/// An open SQLite store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

/// Creates a missing database file readable and writable by its group, less the umask:
/// SQLite would make it 0644 less the umask, never writable by the group, and the admin
/// runs as another user of the state's group (the daemon's unit sets UMask=0007, so the
/// file is 0660). The WAL and shared-memory files take the database's mode.
fn create_shared(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o660)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::CreateFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl SqliteStore {
    /// Opens (creating when needed) the database and its directory, private to their
    /// owner (`private`).
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private::create_dir(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        private::prepare_file(path).map_err(|source| StoreError::CreateFile {
            path: path.to_path_buf(),
            source,
        })?;
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        create_shared(path)?;
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// How long a write waits for another process's lock before it fails.
    pub fn set_busy_timeout(&mut self, wait: Duration) -> Result<(), StoreError> {
        self.conn.busy_timeout(wait).map_err(|e| self.err(e))
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `f` in one transaction: a burst of bans is one write to disk, not thousands.
    pub fn batch<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))?;
        match f(self) {
            Ok(value) => {
                self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}
