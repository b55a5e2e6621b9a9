//! The change feed: which bans were recorded or lifted since a position, so the daemon
//! applies what other processes recorded (the admin, a CLI that ran while the daemon was
//! away) without reading every active ban again. Rows are added by triggers (`schema`,
//! v7): one per ban recorded and one per ban lifted, so a row is named by its ban's id
//! and whether it was lifted. The daemon reads from its last position and records how
//! far it read (the admin compares a ban's change with it). Rows far behind that are
//! trimmed a step at a time, so neither a start nor any one read pays for a long history
//! (an import of 100,000 bans, a daemon stopped for months).

use ipnet::IpNet;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::ban::Change;
use crate::net::parse_net;
use crate::store::StoreError;

/// The name the daemon's position is kept under.
const DAEMON: &str = "daemon";

/// Rows kept behind the daemon's position (the admin tells from them whether the daemon
/// applied a recent change).
const KEEP: i64 = 1000;

/// Rows trimmed at most per read: a long history goes in small steps.
const TRIM_STEP: i64 = 5000;

impl SqliteStore {
    /// Where the feed ends now: the position of the latest change (0 for none).
    pub fn feed_end(&self) -> Result<i64, StoreError> {
        // AUTOINCREMENT: the last position given, kept even when its row is trimmed.
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM (
                     SELECT MAX(seq) AS seq FROM ban_changes
                     UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'ban_changes')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The changes after `after`, up to and with `to`, in the order they were made. A
    /// change whose ban was purged since is left out: it no longer names a network.
    pub fn changes(&self, after: i64, to: i64) -> Result<Vec<Change>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.ban, c.lifted, b.net FROM ban_changes c JOIN bans b ON b.id = c.ban
                 WHERE c.seq > ?1 AND c.seq <= ?2 ORDER BY c.seq",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(i64, bool, String)> = stmt
            .query_map(params![after, to], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(ban, lifted, net)| {
                Ok(Change {
                    net: self.net(&net)?,
                    ban: Some(ban),
                    lifted,
                })
            })
            .collect()
    }

    fn net(&self, text: &str) -> Result<IpNet, StoreError> {
        parse_net(text).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// The daemon has applied the feed up to `seq`: says so, and trims a step of the
    /// rows it read long ago.
    pub fn feed_read(&mut self, seq: i64, at: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO feed_readers (reader, seq, read_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (reader) DO UPDATE SET seq = excluded.seq, read_at = excluded.read_at",
                params![DAEMON, seq, at],
            )
            .and_then(|_| {
                self.conn.execute(
                    "DELETE FROM ban_changes WHERE seq <= MIN(?1,
                         (SELECT MIN(seq) FROM ban_changes) + ?2 - 1)",
                    params![seq - KEEP, TRIM_STEP],
                )
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// How far the daemon has applied the feed (`None`: never).
    pub fn feed_applied(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT seq FROM feed_readers WHERE reader = ?1",
                params![DAEMON],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The position of the latest change of ban `id` (`None`: trimmed, or none).
    pub fn change_of(&self, id: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MAX(seq) FROM ban_changes WHERE ban = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::ban::{NewBan, Origin};

    fn ban(net: &str) -> NewBan {
        NewBan {
            net: parse_net(net).unwrap(),
            rule: "manual".into(),
            reason: "by hand".into(),
            attempts: 0,
            server: "web-1".into(),
            source: Origin::Manual,
            banned_at: Utc::now(),
            expires_at: None,
        }
    }

    fn rows(s: &SqliteStore) -> i64 {
        s.conn
            .query_row("SELECT COUNT(*) FROM ban_changes", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn every_writer_feeds_the_changes_of_bans_and_lifts_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let mut daemon = SqliteStore::open(&path).unwrap();
        let start = daemon.feed_end().unwrap();
        // Another process: the admin, a CLI.
        let mut other = SqliteStore::open(&path).unwrap();
        let first = other.record(&ban("192.0.2.1")).unwrap();
        other.record(&ban("192.0.2.2")).unwrap();
        // Already banned: no change.
        other.record(&ban("192.0.2.2")).unwrap();
        other
            .lift(&parse_net("192.0.2.1").unwrap(), Utc::now(), "by hand")
            .unwrap();
        let end = daemon.feed_end().unwrap();
        assert_eq!(end - start, 3);
        let changes = daemon.changes(start, end).unwrap();
        let seen: Vec<(String, bool)> = changes
            .iter()
            .map(|c| (c.net.to_string(), c.lifted))
            .collect();
        assert_eq!(
            seen,
            [
                ("192.0.2.1/32".to_string(), false),
                ("192.0.2.2/32".to_string(), false),
                ("192.0.2.1/32".to_string(), true)
            ]
        );
        let crate::ban::Recorded::New(first) = first else {
            panic!("not new")
        };
        assert_eq!(changes[0].ban, Some(first.id));
        assert_eq!(changes[2].ban, Some(first.id));
        assert!(daemon.changes(end, end).unwrap().is_empty());
        assert_eq!(daemon.feed_applied().unwrap(), None);
        daemon.feed_read(end, 0).unwrap();
        assert_eq!(daemon.feed_applied().unwrap(), Some(end));
    }

    #[test]
    fn a_long_history_is_trimmed_a_step_per_read_and_positions_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        let n = 2 * TRIM_STEP + KEEP + 10;
        let bans: Vec<NewBan> = (0..n)
            .map(|i| ban(&format!("10.{}.{}.1", i / 256, i % 256)))
            .collect();
        s.record_many(&bans).unwrap();
        let end = s.feed_end().unwrap();
        // One read trims one step, whatever lies behind.
        s.feed_read(end, 0).unwrap();
        assert_eq!(rows(&s), n - TRIM_STEP);
        s.feed_read(end, 0).unwrap();
        s.feed_read(end, 0).unwrap();
        assert_eq!(rows(&s), KEEP, "the last rows are kept for the admin");
        s.feed_read(end, 0).unwrap();
        assert_eq!(rows(&s), KEEP);
        // AUTOINCREMENT: a trimmed position is never given again, even with none left.
        s.conn.execute("DELETE FROM ban_changes", []).unwrap();
        assert_eq!(s.feed_end().unwrap(), end);
        s.record(&ban("192.0.2.99")).unwrap();
        assert_eq!(s.feed_end().unwrap(), end + 1);
    }
}
