//! SQLite store: bans, their history, and log read positions in one file.
//!
//! WAL mode with a busy timeout lets the CLI write while the daemon runs. One active ban
//! per network is enforced by a partial unique index, so two processes banning the same
//! address at once cannot both succeed. The schema is versioned with `user_version`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use crate::ban::{Ban, BanQuery, NewBan, Page, Recorded, Summary};
use crate::event::{Position, Positions};

const SCHEMA_VERSION: i64 = 5;

const SCHEMA_V1: &str = "
CREATE TABLE bans (
    id          INTEGER PRIMARY KEY,
    net         TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    server      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    banned_at   INTEGER NOT NULL,
    expires_at  INTEGER,
    lifted_at   INTEGER,
    lift_reason TEXT
);
CREATE UNIQUE INDEX bans_active ON bans(net) WHERE lifted_at IS NULL;
CREATE INDEX bans_expiry ON bans(expires_at) WHERE lifted_at IS NULL;
CREATE INDEX bans_lifted ON bans(lifted_at);
CREATE TABLE positions (
    path       TEXT    PRIMARY KEY,
    inode      INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// Version 2: the outbox of a Redis store, for bans and unbans made while Redis was away.
const SCHEMA_V2: &str = "
CREATE TABLE outbox (
    seq       INTEGER PRIMARY KEY,
    op        TEXT    NOT NULL,
    payload   TEXT    NOT NULL,
    queued_at INTEGER NOT NULL
);
";

/// Version 3: where each rule's journal was left.
const SCHEMA_V3: &str = "
CREATE TABLE journal_cursors (
    rule       TEXT PRIMARY KEY,
    cursor     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// Version 4: bans by address, for repeat offenders.
const SCHEMA_V4: &str = "CREATE INDEX bans_net ON bans(net, banned_at);";

/// Version 5: the admin's users and API tokens (`admin`), and the daemon's counters,
/// saved for the admin's `/metrics` (`metrics`).
const SCHEMA_V5: &str = "
CREATE TABLE admin_users (
    name       TEXT    PRIMARY KEY,
    hash       TEXT    NOT NULL,
    changed_at INTEGER NOT NULL
);
CREATE TABLE admin_tokens (
    digest     TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE daemon_stats (
    name       TEXT    PRIMARY KEY,
    value      REAL    NOT NULL,
    updated_at INTEGER NOT NULL
);
";

pub(super) const COLUMNS: &str = "id, net, rule, reason, attempts, server, source, banned_at, expires_at, lifted_at, lift_reason";

/// An open SQLite store.
pub struct SqliteStore {
    pub(super) conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating when needed) the database and its directory.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
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

    pub(super) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let steps: [(i64, &str); 5] = [
            (1, SCHEMA_V1),
            (2, SCHEMA_V2),
            (3, SCHEMA_V3),
            (4, SCHEMA_V4),
            (5, SCHEMA_V5),
        ];
        for (to, sql) in steps.into_iter().filter(|(to, _)| *to > version) {
            let path = self.path.clone();
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", to))
                .and_then(|_| tx.commit())
                .map_err(err)?;
        }
        Ok(())
    }

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
                    ban.banned_at.timestamp(),
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

    /// Queues an operation for Redis (see `store::redis`).
    pub fn outbox_push(&mut self, op: &str, payload: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO outbox (op, payload, queued_at) VALUES (?1, ?2, ?3)",
                params![op, payload, Utc::now().timestamp()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The queued operations, oldest first: (sequence number, op, payload).
    pub fn outbox(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, op, payload FROM outbox ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Removes one delivered operation.
    pub fn outbox_remove(&mut self, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM outbox WHERE seq = ?1", params![seq])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Saved journal cursors, by rule.
    pub fn cursors(&self) -> Result<crate::event::Cursors, StoreError> {
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
    pub fn save_cursors(&mut self, cursors: &crate::event::Cursors) -> Result<(), StoreError> {
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

    pub(super) fn query_one(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<Ban>, StoreError> {
        let row = self
            .conn
            .query_row(sql, params, raw_ban)
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|raw| self.decode(raw)).transpose()
    }

    pub(super) fn query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Ban>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let raws = stmt.query_map(params, raw_ban).map_err(|e| self.err(e))?;
        let raws: Vec<RawBan> = raws.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        raws.into_iter().map(|raw| self.decode(raw)).collect()
    }

    fn decode(&self, raw: RawBan) -> Result<Ban, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            message,
        };
        let time = |secs: i64| {
            DateTime::from_timestamp(secs, 0)
                .ok_or_else(|| corrupt(format!("ban {}: time {secs} out of range", raw.id)))
        };
        Ok(Ban {
            id: raw.id,
            new: NewBan {
                net: raw.net.parse().map_err(|_| {
                    corrupt(format!("ban {}: `{}` is not a network", raw.id, raw.net))
                })?,
                rule: raw.rule,
                reason: raw.reason,
                attempts: raw.attempts,
                server: raw.server,
                source: raw
                    .source
                    .parse()
                    .map_err(|e| corrupt(format!("ban {}: {e}", raw.id)))?,
                banned_at: time(raw.banned_at)?,
                expires_at: raw.expires_at.map(time).transpose()?,
            },
            lifted_at: raw.lifted_at.map(time).transpose()?,
            lift_reason: raw.lift_reason,
        })
    }
}

/// Whole seconds, rounded up: a ban is never lifted before its time.
pub(super) fn ceil_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

/// A row before its text columns are parsed.
struct RawBan {
    id: i64,
    net: String,
    rule: String,
    reason: String,
    attempts: u32,
    server: String,
    source: String,
    banned_at: i64,
    expires_at: Option<i64>,
    lifted_at: Option<i64>,
    lift_reason: Option<String>,
}

fn raw_ban(r: &Row) -> rusqlite::Result<RawBan> {
    Ok(RawBan {
        id: r.get(0)?,
        net: r.get(1)?,
        rule: r.get(2)?,
        reason: r.get(3)?,
        attempts: r.get(4)?,
        server: r.get(5)?,
        source: r.get(6)?,
        banned_at: r.get(7)?,
        expires_at: r.get(8)?,
        lifted_at: r.get(9)?,
        lift_reason: r.get(10)?,
    })
}

impl super::BanStore for SqliteStore {
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

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
