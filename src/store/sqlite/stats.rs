//! The daemon's counters as last saved (`daemon_stats`), for the admin's `/metrics`: the
//! admin is another process and cannot see the daemon's atomics.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteStore;
use crate::store::StoreError;

impl SqliteStore {
    /// Replaces the daemon's saved counters with `stats` (name, value), in one
    /// transaction: a reader sees the whole previous snapshot or the whole new one, and a
    /// counter the daemon no longer has (a rule removed) does not linger.
    pub fn save_stats(&mut self, stats: &[(String, f64)]) -> Result<(), StoreError> {
        let now = Utc::now().timestamp();
        self.batch(|s| {
            s.conn
                .execute("DELETE FROM daemon_stats", [])
                .map_err(|e| s.err(e))?;
            let mut stmt = s
                .conn
                .prepare_cached(
                    "INSERT INTO daemon_stats (name, value, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )
                .map_err(|e| s.err(e))?;
            for (name, value) in stats {
                stmt.execute(params![name, value, now])
                    .map_err(|e| s.err(e))?;
            }
            Ok(())
        })
    }

    /// The daemon's saved counters: name, value, and when they were saved.
    pub fn stats(&self) -> Result<Vec<(String, f64, DateTime<Utc>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, value, updated_at FROM daemon_stats ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, f64, i64)> =
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(name, value, at)| {
                let at = DateTime::from_timestamp(at, 0).ok_or_else(|| StoreError::Corrupt {
                    path: self.path.clone(),
                    message: format!("daemon_stats {name}: time {at} out of range"),
                })?;
                Ok((name, value, at))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("sub/pyfilter.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn saved_stats_replace_the_previous_snapshot_whole() {
        let (_d, mut s) = store();
        s.save_stats(&[
            ("lines_read_total".into(), 10.0),
            ("attempts_total{rule=\"gone\"}".into(), 2.0),
        ])
        .unwrap();
        s.save_stats(&[
            ("lines_read_total".into(), 12.0),
            ("sync_lag_seconds".into(), 0.25),
        ])
        .unwrap();
        let stats = s.stats().unwrap();
        let named: Vec<(&str, f64)> = stats.iter().map(|(n, v, _)| (n.as_str(), *v)).collect();
        assert_eq!(
            named,
            [("lines_read_total", 12.0), ("sync_lag_seconds", 0.25)]
        );
        assert!((Utc::now() - stats[0].2).num_seconds().abs() < 5);
    }
}
