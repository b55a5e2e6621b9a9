//! The change feed: which networks' bans changed since a position, so the daemon applies
//! what other processes recorded (the admin, a CLI that ran while the daemon was away)
//! without reading every active ban again. Rows are added by triggers (`schema`, v6);
//! the daemon reads from its last position, records how far it read (the admin compares
//! a ban's change with it), and trims what it has read.

use ipnet::IpNet;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::net::parse_net;
use crate::store::StoreError;

/// The name the daemon's position is kept under.
const DAEMON: &str = "daemon";

/// Rows kept behind the daemon's position before they are trimmed.
const KEEP: i64 = 1000;

impl SqliteStore {
    /// Where the feed ends now: the position of the latest change (0 for none).
    pub fn feed_end(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM ban_changes", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// The networks whose bans changed after `after`, up to and with `to`, each once.
    pub fn changed_nets(&self, after: i64, to: i64) -> Result<Vec<IpNet>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT b.net FROM ban_changes c JOIN bans b ON b.id = c.ban
                 WHERE c.seq > ?1 AND c.seq <= ?2",
            )
            .map_err(|e| self.err(e))?;
        let nets: Vec<String> = stmt
            .query_map(params![after, to], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        nets.iter()
            .map(|n| {
                parse_net(n).map_err(|message| StoreError::Corrupt {
                    path: self.path.clone(),
                    message: message.to_string(),
                })
            })
            .collect()
    }

    /// The daemon has applied the feed up to `seq`: says so, and trims older rows.
    pub fn feed_read(&mut self, seq: i64, at: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO feed_readers (reader, seq, read_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (reader) DO UPDATE SET seq = excluded.seq, read_at = excluded.read_at",
                params![DAEMON, seq, at],
            )
            .and_then(|_| {
                self.conn.execute(
                    "DELETE FROM ban_changes WHERE seq <= ?1",
                    params![seq - KEEP],
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

    #[test]
    fn every_writer_feeds_the_changes_of_bans_and_lifts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let mut daemon = SqliteStore::open(&path).unwrap();
        let start = daemon.feed_end().unwrap();
        // Another process: the admin, a CLI.
        let mut other = SqliteStore::open(&path).unwrap();
        other.record(&ban("192.0.2.1")).unwrap();
        other.record(&ban("192.0.2.2")).unwrap();
        // Already banned: no change.
        other.record(&ban("192.0.2.2")).unwrap();
        other
            .lift(&parse_net("192.0.2.1").unwrap(), Utc::now(), "by hand")
            .unwrap();
        let end = daemon.feed_end().unwrap();
        assert_eq!(end - start, 3);
        let mut nets = daemon.changed_nets(start, end).unwrap();
        nets.sort();
        assert_eq!(
            nets,
            [
                parse_net("192.0.2.1").unwrap(),
                parse_net("192.0.2.2").unwrap()
            ]
        );
        assert!(daemon.changed_nets(end, end).unwrap().is_empty());
        assert_eq!(daemon.feed_applied().unwrap(), None);
        daemon.feed_read(end, 0).unwrap();
        assert_eq!(daemon.feed_applied().unwrap(), Some(end));
    }

    #[test]
    fn reading_trims_all_but_the_last_rows_and_positions_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        for i in 0..(KEEP + 10) {
            let n = format!("10.{}.{}.1", i / 256, i % 256);
            s.record(&ban(&n)).unwrap();
        }
        let end = s.feed_end().unwrap();
        s.feed_read(end, 0).unwrap();
        let rows: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM ban_changes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, KEEP);
        // AUTOINCREMENT: a trimmed position is never given again.
        s.conn.execute("DELETE FROM ban_changes", []).unwrap();
        s.record(&ban("192.0.2.99")).unwrap();
        assert_eq!(s.feed_end().unwrap(), end + 1);
    }
}
