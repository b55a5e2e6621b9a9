//! Bookkeeping of the sources: how far each log file was read (its inode and offset) and
//! where each rule's journal was left (a journald cursor), so a restart neither replays
//! old lines nor misses new ones.

use std::path::PathBuf;

use chrono::Utc;
use rusqlite::params;

use super::SqliteStore;
use crate::event::{Cursors, Position, Positions};
use crate::store::StoreError;

impl SqliteStore {
    /// Saved journal cursors, by rule.
    pub fn cursors(&self) -> Result<Cursors, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT rule, cursor FROM journal_cursors")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Saves journal cursors in one transaction.
    pub fn save_cursors(&mut self, cursors: &Cursors) -> Result<(), StoreError> {
        self.batch(|s| {
            for (rule, cursor) in cursors {
                s.conn
                    .execute(
                        "INSERT INTO journal_cursors (rule, cursor, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT(rule) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                        params![rule, cursor, Utc::now().timestamp()],
                    )
                    .map_err(|e| s.err(e))?;
            }
            Ok(())
        })
    }

    /// Saved read positions of log files.
    pub fn positions(&self) -> Result<Positions, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, inode, offset FROM positions")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let path: String = r.get(0)?;
                let inode: i64 = r.get(1)?;
                let offset: i64 = r.get(2)?;
                Ok((
                    PathBuf::from(path),
                    Position {
                        inode: inode as u64,
                        offset: offset as u64,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Saves read positions in one transaction.
    pub fn save_positions(&mut self, positions: &Positions) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO positions (path, inode, offset, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(path) DO UPDATE SET inode = excluded.inode, offset = excluded.offset, updated_at = excluded.updated_at",
                )
                .map_err(err)?;
            let now = Utc::now().timestamp();
            for (file, pos) in positions {
                stmt.execute(params![
                    file.to_string_lossy(),
                    pos.inode as i64,
                    pos.offset as i64,
                    now
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let mut s = SqliteStore::open(&path).unwrap();
        let mut p = Positions::new();
        p.insert(
            "/var/log/auth.log".into(),
            Position {
                inode: 42,
                offset: 1000,
            },
        );
        s.save_positions(&p).unwrap();
        p.insert(
            "/var/log/auth.log".into(),
            Position {
                inode: 43,
                offset: 7,
            },
        );
        s.save_positions(&p).unwrap();
        drop(s);
        assert_eq!(SqliteStore::open(&path).unwrap().positions().unwrap(), p);
    }
}
