//! The bans in SQLite: recording (once per network), lifting, the active ones, what is
//! due, and the history's purge; and the `BanStore` made of them.

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use rusqlite::params;

use super::SqliteStore;
use super::row::{COLUMNS, ceil_secs};
use crate::ban::{Ban, BanQuery, Change, NewBan, Page, Recorded, Summary};
use crate::store::{BanStore, StoreError};

impl SqliteStore {
    /// Records a ban unless the network is already banned.
    pub fn record(&mut self, ban: &NewBan) -> Result<Recorded, StoreError> {
        let inserted = self
            .conn
            .execute(
                "INSERT INTO bans (net, rule, reason, attempts, server, source, banned_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                params![
                    ban.net.to_string(),
                    ban.rule,
                    ban.reason,
                    ban.attempts,
                    ban.server,
                    ban.source.as_str(),
                    ceil_secs(ban.banned_at),
                    ban.expires_at.map(ceil_secs),
                ],
            )
            .map_err(|e| self.err(e))?;
        if inserted == 1 {
            let id = self.conn.last_insert_rowid();
            return Ok(Recorded::New(Ban {
                id,
                new: ban.clone(),
                lifted_at: None,
                lift_reason: None,
            }));
        }
        match self.active(&ban.net)? {
            Some(existing) => Ok(Recorded::AlreadyBanned(existing)),
            // Lifted between the two statements: try once more.
            None => self.record(ban),
        }
    }

    /// Records many bans in one transaction (none for no bans: a write transaction would
    /// wait for another process's lock for nothing).
    pub fn record_many(&mut self, bans: &[NewBan]) -> Result<Vec<Recorded>, StoreError> {
        if bans.is_empty() {
            return Ok(Vec::new());
        }
        self.batch(|s| bans.iter().map(|b| s.record(b)).collect())
    }

    /// Lifts many bans in one transaction; returns those that were active.
    pub fn lift_many(
        &mut self,
        nets: &[IpNet],
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<Vec<Ban>, StoreError> {
        if nets.is_empty() {
            return Ok(Vec::new());
        }
        self.batch(|s| {
            let mut lifted = Vec::new();
            for net in nets {
                lifted.extend(s.lift(net, at, why)?);
            }
            Ok(lifted)
        })
    }

    /// The active ban of exactly this network.
    pub fn active(&self, net: &IpNet) -> Result<Option<Ban>, StoreError> {
        self.query_one(
            &format!("SELECT {COLUMNS} FROM bans WHERE net = ?1 AND lifted_at IS NULL"),
            params![net.to_string()],
        )
    }

    /// Active bans, oldest first.
    pub fn active_bans(&self) -> Result<Vec<Ban>, StoreError> {
        self.query(
            &format!("SELECT {COLUMNS} FROM bans WHERE lifted_at IS NULL ORDER BY banned_at, id"),
            params![],
        )
    }

    /// Every ban, active and lifted, oldest first.
    pub fn all_bans(&self) -> Result<Vec<Ban>, StoreError> {
        self.query(
            &format!("SELECT {COLUMNS} FROM bans ORDER BY banned_at, id"),
            params![],
        )
    }

    /// Active bans whose time is up at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<Ban>, StoreError> {
        self.query(
            &format!("SELECT {COLUMNS} FROM bans WHERE lifted_at IS NULL AND expires_at <= ?1 ORDER BY expires_at"),
            params![now.timestamp()],
        )
    }

    /// When the next active ban expires.
    pub fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let secs: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(expires_at) FROM bans WHERE lifted_at IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(secs.and_then(|s| DateTime::from_timestamp(s, 0)))
    }

    /// Lifts the active ban of `net`; returns it, or `None` when it was not banned.
    pub fn lift(
        &mut self,
        net: &IpNet,
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<Option<Ban>, StoreError> {
        let Some(mut ban) = self.active(net)? else {
            return Ok(None);
        };
        let changed = self
            .conn
            .execute(
                "UPDATE bans SET lifted_at = ?1, lift_reason = ?2 WHERE id = ?3 AND lifted_at IS NULL",
                params![at.timestamp(), why, ban.id],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Ok(None);
        }
        ban.lifted_at = Some(at);
        ban.lift_reason = Some(why.to_string());
        Ok(Some(ban))
    }

    /// Deletes lifted bans lifted before `before`; returns how many.
    pub fn purge_history(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM bans WHERE lifted_at IS NOT NULL AND lifted_at < ?1",
                params![before.timestamp()],
            )
            .map_err(|e| self.err(e))
    }
}

impl BanStore for SqliteStore {
    /// One indexed look-up per network: the feed names few at a time.
    fn active_bans_of(&mut self, nets: &[IpNet]) -> Result<Vec<Ban>, StoreError> {
        let mut bans = Vec::new();
        for net in nets {
            bans.extend(self.active(net)?);
        }
        Ok(bans)
    }
    fn feed_end(&mut self) -> Result<Option<i64>, StoreError> {
        SqliteStore::feed_end(self).map(Some)
    }
    fn changes(&mut self, after: i64, to: i64) -> Result<Vec<Change>, StoreError> {
        SqliteStore::changes(self, after, to)
    }
    fn feed_read(&mut self, seq: i64, at: i64) -> Result<(), StoreError> {
        SqliteStore::feed_read(self, seq, at)
    }
    fn ban(&mut self, id: i64) -> Result<Option<Ban>, StoreError> {
        self.ban_by_id(id)
    }
    fn summary(&mut self, now: DateTime<Utc>) -> Result<Summary, StoreError> {
        self.sql_summary(now)
    }
    fn search(&mut self, q: &BanQuery) -> Result<Page, StoreError> {
        self.sql_search(q)
    }
    fn record_many(&mut self, bans: &[NewBan]) -> Result<Vec<Recorded>, StoreError> {
        SqliteStore::record_many(self, bans)
    }
    fn lift_many(
        &mut self,
        nets: &[IpNet],
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<Vec<Ban>, StoreError> {
        SqliteStore::lift_many(self, nets, at, why)
    }
    fn active_bans(&mut self) -> Result<Vec<Ban>, StoreError> {
        SqliteStore::active_bans(self)
    }
    fn all_bans(&mut self) -> Result<Vec<Ban>, StoreError> {
        SqliteStore::all_bans(self)
    }
    fn due(&mut self, now: DateTime<Utc>) -> Result<Vec<Ban>, StoreError> {
        SqliteStore::due(self, now)
    }
    fn next_expiry(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        SqliteStore::next_expiry(self)
    }
    fn purge_history(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        SqliteStore::purge_history(self, before)
    }
    fn bans_since(&mut self, net: &IpNet, since: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM bans WHERE net = ?1 AND banned_at >= ?2",
                params![net.to_string(), since.timestamp()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::Origin;

    fn ban(net: &str, secs: Option<i64>) -> NewBan {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        NewBan {
            net: crate::net::parse_net(net).unwrap(),
            rule: "sshd".into(),
            reason: "Failed password for root from 192.0.2.1'; DROP TABLE bans; --".into(),
            attempts: 5,
            server: "web-1".into(),
            source: Origin::Log,
            banned_at: now,
            expires_at: secs.map(|s| now + chrono::Duration::seconds(s)),
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("sub/pyfilter.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn records_once_and_keeps_text_verbatim() {
        let (_d, mut s) = store();
        let b = ban("192.0.2.1", Some(60));
        assert!(matches!(s.record(&b).unwrap(), Recorded::New(_)));
        assert!(matches!(s.record(&b).unwrap(), Recorded::AlreadyBanned(_)));
        let active = s.active_bans().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].new, b);
    }

    #[test]
    fn lifting_moves_a_ban_to_history_and_allows_a_new_one() {
        let (_d, mut s) = store();
        let b = ban("198.51.100.0/24", None);
        s.record(&b).unwrap();
        let at = b.banned_at + chrono::Duration::seconds(5);
        let lifted = s.lift(&b.net, at, "manual").unwrap().unwrap();
        assert_eq!(lifted.lift_reason.as_deref(), Some("manual"));
        assert!(s.lift(&b.net, at, "manual").unwrap().is_none());
        assert!(s.active_bans().unwrap().is_empty());
        assert!(matches!(s.record(&b).unwrap(), Recorded::New(_)));
        assert_eq!(s.all_bans().unwrap().len(), 2);
    }

    #[test]
    fn due_and_next_expiry_follow_expires_at() {
        let (_d, mut s) = store();
        s.record(&ban("192.0.2.1", Some(60))).unwrap();
        s.record(&ban("192.0.2.2", Some(10))).unwrap();
        s.record(&ban("192.0.2.3", None)).unwrap();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            s.next_expiry().unwrap(),
            Some(t0 + chrono::Duration::seconds(10))
        );
        assert_eq!(s.due(t0 + chrono::Duration::seconds(30)).unwrap().len(), 1);
        assert_eq!(s.due(t0 + chrono::Duration::days(999)).unwrap().len(), 2);
    }

    #[test]
    fn purge_drops_only_old_history() {
        let (_d, mut s) = store();
        let b = ban("192.0.2.1", Some(1));
        s.record(&b).unwrap();
        s.lift(&b.net, b.banned_at, "expired").unwrap();
        s.record(&ban("192.0.2.9", None)).unwrap();
        assert_eq!(s.purge_history(b.banned_at).unwrap(), 0);
        assert_eq!(
            s.purge_history(b.banned_at + chrono::Duration::seconds(1))
                .unwrap(),
            1
        );
        assert_eq!(s.all_bans().unwrap().len(), 1);
    }
}
