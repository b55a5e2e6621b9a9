//! The decision thread's failed-attempt counters, kept across restarts, and the one
//! transaction that saves them with the read positions and journal cursors: a count and
//! the position of the lines it counted are written together, so a restart (even after
//! SIGKILL) neither counts a line twice nor forgets one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;
use rusqlite::params;

use super::SqliteStore;
use crate::event::{Cursors, Positions};
use crate::store::StoreError;

/// One (rule, address) counter as saved: attempts so far, the time of the latest and the
/// time after which it can no longer lead to a ban (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedCount {
    pub attempts: u32,
    pub last: u32,
    pub stale_after: u32,
}

/// Counters to save, by (rule, address); `None` removes a counter that is gone.
pub type CountChanges = HashMap<(Arc<str>, IpAddr), Option<SavedCount>>;

impl SqliteStore {
    /// The counters saved by earlier runs that can still lead to a ban at `now`; the
    /// stale ones are dropped from the file (when it can be written).
    pub fn counters(&mut self, now: u32) -> Result<Vec<(String, IpAddr, SavedCount)>, StoreError> {
        let rows = {
            let mut stmt = self
                .conn
                .prepare("SELECT rule, ip, attempts, last, stale_after FROM counters WHERE stale_after >= ?1")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([now], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        SavedCount {
                            attempts: r.get(2)?,
                            last: r.get(3)?,
                            stale_after: r.get(4)?,
                        },
                    ))
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))?
        };
        if let Err(e) = self
            .conn
            .execute("DELETE FROM counters WHERE stale_after < ?1", [now])
        {
            log::debug!("stale counters stay in the file for now: {e}");
        }
        Ok(rows
            .into_iter()
            .filter_map(|(rule, ip, count)| Some((rule, ip.parse().ok()?, count)))
            .collect())
    }

    /// Saves read positions, journal cursors and counters in one transaction.
    pub fn save_progress(
        &mut self,
        positions: &Positions,
        cursors: &Cursors,
        counts: &CountChanges,
    ) -> Result<(), StoreError> {
        self.batch(|s| {
            let now = Utc::now().timestamp();
            let err = |s: &SqliteStore, e| s.err(e);
            for (file, pos) in positions {
                s.conn
                    .prepare_cached(
                        "INSERT INTO positions (path, inode, offset, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(path) DO UPDATE SET inode = excluded.inode, offset = excluded.offset, updated_at = excluded.updated_at",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            file.to_string_lossy(),
                            pos.inode as i64,
                            pos.offset as i64,
                            now
                        ])
                    })
                    .map_err(|e| err(s, e))?;
            }
            for (rule, cursor) in cursors {
                s.conn
                    .prepare_cached(
                        "INSERT INTO journal_cursors (rule, cursor, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT(rule) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                    )
                    .and_then(|mut st| st.execute(params![rule, cursor, now]))
                    .map_err(|e| err(s, e))?;
            }
            for ((rule, ip), count) in counts {
                let ip = ip.to_string();
                let done = match count {
                    Some(c) => s
                        .conn
                        .prepare_cached(
                            "INSERT INTO counters (rule, ip, attempts, last, stale_after) VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT(rule, ip) DO UPDATE SET attempts = excluded.attempts, last = excluded.last, stale_after = excluded.stale_after",
                        )
                        .and_then(|mut st| {
                            st.execute(params![&**rule, ip, c.attempts, c.last, c.stale_after])
                        }),
                    None => s
                        .conn
                        .prepare_cached("DELETE FROM counters WHERE rule = ?1 AND ip = ?2")
                        .and_then(|mut st| st.execute(params![&**rule, ip])),
                };
                done.map_err(|e| err(s, e))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_and_gone_or_stale_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let mut s = SqliteStore::open(&path).unwrap();
        let rule: Arc<str> = Arc::from("sshd");
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let count = |attempts, last| SavedCount {
            attempts,
            last,
            stale_after: last + 60,
        };
        let mut changes = CountChanges::new();
        changes.insert((Arc::clone(&rule), ip("192.0.2.1")), Some(count(2, 1000)));
        changes.insert((Arc::clone(&rule), ip("2001:db8::1")), Some(count(1, 1000)));
        changes.insert((Arc::clone(&rule), ip("192.0.2.3")), Some(count(1, 100)));
        s.save_progress(&Positions::new(), &Cursors::new(), &changes)
            .unwrap();
        let mut changes = CountChanges::new();
        changes.insert((Arc::clone(&rule), ip("2001:db8::1")), None);
        changes.insert((Arc::clone(&rule), ip("192.0.2.1")), Some(count(3, 1010)));
        s.save_progress(&Positions::new(), &Cursors::new(), &changes)
            .unwrap();
        drop(s);
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.counters(1000).unwrap(),
            [("sshd".to_string(), ip("192.0.2.1"), count(3, 1010))]
        );
        let left: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM counters", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1, "the stale one is gone from the file");
    }
}
