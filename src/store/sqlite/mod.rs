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

use rusqlite::{Connection, OpenFlags};

pub use counters::{CountChanges, SavedCount};

use super::StoreError;

/// An open SQLite store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

/// How long a writer waits for another one.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Puts the file in WAL mode (it stays so). Switching a new file takes an exclusive lock
/// for which SQLite does not call the busy handler: when several processes create the
/// file at once (the daemon, the admin, a CLI), the others are told "database is
/// locked" at once. They try again until the busy timeout has passed.
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
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
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        use_wal(&conn).map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens the database for reading only, as `list`, `check` and the other read-only
    /// commands do: nothing is created, migrated or written, so a user who may only read
    /// the state (or nobody at all, before the first ban) gets an answer, not a write error.
    /// A database that does not exist yet reads as empty.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        // Asked of the file system first: SQLite reports an unreadable file as "unable to
        // open", which does not tell the administrator what to do.
        match std::fs::File::open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SqliteStore::empty(path),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(StoreError::NotPermitted {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(StoreError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        let store = SqliteStore {
            conn,
            path: path.to_path_buf(),
        };
        match store.check_version() {
            Err(e) if cannot_share(&e) && !wal_pending(path) => {
                // A WAL database whose shared-memory file is gone (nobody has it open)
                // cannot be opened read-only by a user who may not create that file in
                // the directory. With no write-ahead log left, the file alone is the
                // whole truth: it is read as it stands.
                let uri = format!("file:{}?immutable=1", uri_path(path));
                let conn = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
                    .map_err(err)?;
                let store = SqliteStore {
                    conn,
                    path: path.to_path_buf(),
                };
                store.check_version()?;
                Ok(store)
            }
            Err(e) if cannot_share(&e) => Err(StoreError::NotPermitted {
                path: path.to_path_buf(),
            }),
            other => other.map(|()| store),
        }
    }

    /// An empty database in memory, standing for one that was never created (`path` is
    /// what messages name).
    pub fn empty(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
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

/// Whether SQLite refused to read because it may not create or write the shared-memory
/// file beside the database (not for a damaged file, which says so itself).
fn cannot_share(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Sqlite {
            source: rusqlite::Error::SqliteFailure(f, _),
            ..
        } if matches!(
            f.code,
            rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::PermissionDenied
        )
    )
}

/// Whether `path` has a write-ahead log with changes not yet in the file itself.
fn wal_pending(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
}

/// `path` as the path of a `file:` URI.
fn uri_path(path: &Path) -> String {
    path.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}
