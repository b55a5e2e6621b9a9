//! The database's schema, by version (`PRAGMA user_version`), and the migrations that
//! bring an older file up to date, in one transaction. A file from a newer pyfilter
//! is refused rather than misread.

use super::SqliteStore;
use crate::store::StoreError;

const SCHEMA_VERSION: i64 = 7;

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

/// Version 6: the failed-attempt counters, so that a restart goes on counting.
const SCHEMA_V6: &str = "
CREATE TABLE counters (
    rule        TEXT    NOT NULL,
    ip          TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    last        INTEGER NOT NULL,
    stale_after INTEGER NOT NULL,
    PRIMARY KEY (rule, ip)
);
CREATE INDEX counters_stale ON counters(stale_after);
";

/// Version 7: the change feed. Every ban recorded and every ban lifted, by whichever
/// process (the daemon, the CLI, the admin), adds a row, kept by triggers so that no
/// writer can forget; the daemon reads it from where it stopped (`feed`) and applies what
/// others changed, and says how far it read, for the admin.
///
/// A database of the branch that gave the feed version 6 (before the counters took that
/// number) has an older feed and no counters: the counters are made if missing, and the
/// feed is made again, empty. Its rows only matter to a running daemon, and a daemon
/// starts reading at the feed's end.
const SCHEMA_V7: &str = "
CREATE TABLE IF NOT EXISTS counters (
    rule        TEXT    NOT NULL,
    ip          TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    last        INTEGER NOT NULL,
    stale_after INTEGER NOT NULL,
    PRIMARY KEY (rule, ip)
);
CREATE INDEX IF NOT EXISTS counters_stale ON counters(stale_after);
DROP TRIGGER IF EXISTS ban_changes_on_ban;
DROP TRIGGER IF EXISTS ban_changes_on_lift;
DROP TABLE IF EXISTS ban_changes;
DROP TABLE IF EXISTS feed_readers;
CREATE TABLE ban_changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    ban    INTEGER NOT NULL,
    lifted INTEGER NOT NULL
);
CREATE TRIGGER ban_changes_on_ban AFTER INSERT ON bans WHEN NEW.lifted_at IS NULL
BEGIN
    INSERT INTO ban_changes (ban, lifted) VALUES (NEW.id, 0);
END;
CREATE TRIGGER ban_changes_on_lift AFTER UPDATE OF lifted_at ON bans
    WHEN OLD.lifted_at IS NULL AND NEW.lifted_at IS NOT NULL
BEGIN
    INSERT INTO ban_changes (ban, lifted) VALUES (NEW.id, 1);
END;
CREATE TABLE feed_readers (
    reader  TEXT    PRIMARY KEY,
    seq     INTEGER NOT NULL,
    read_at INTEGER NOT NULL
);
";

impl SqliteStore {
    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// For a read-only connection, which cannot migrate: the file must be of this
    /// version already.
    pub(super) fn check_version(&self) -> Result<(), StoreError> {
        let version = self.version()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            return Err(StoreError::TooOld {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let version = |conn: &rusqlite::Connection| -> Result<i64, StoreError> {
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(err)?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: path.clone(),
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            Ok(version)
        };
        if version(&self.conn)? == SCHEMA_VERSION {
            return Ok(());
        }
        // Several processes may open a new database at once (the daemon, the admin, a
        // CLI): the write lock is taken first and the version read again under it, so one
        // migrates and the others find it done.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let from = version(&tx)?;
        let steps: [(i64, &str); 7] = [
            (1, SCHEMA_V1),
            (2, SCHEMA_V2),
            (3, SCHEMA_V3),
            (4, SCHEMA_V4),
            (5, SCHEMA_V5),
            (6, SCHEMA_V6),
            (7, SCHEMA_V7),
        ];
        for (to, sql) in steps.into_iter().filter(|(to, _)| *to > from) {
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", to))
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

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

    /// A file at `version`, made by running the steps up to it, then `extra`.
    fn file_at(path: &std::path::Path, steps: &[&str], version: i64) -> Connection {
        let conn = Connection::open(path).unwrap();
        for sql in steps {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version).unwrap();
        conn
    }

    fn tables(path: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_version_6_file_with_the_counters_gains_the_change_feed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let conn = file_at(
            &path,
            &[
                SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6,
            ],
            6,
        );
        conn.execute(
            "INSERT INTO counters VALUES ('sshd', '192.0.2.1', 2, 100, 200)",
            [],
        )
        .unwrap();
        drop(conn);
        let s = SqliteStore::open(&path).unwrap();
        let kept: i64 = s
            .conn
            .query_row("SELECT attempts FROM counters", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 2, "the counts survive the migration");
        let names = tables(&path);
        for t in [
            "ban_changes",
            "ban_changes_on_ban",
            "ban_changes_on_lift",
            "feed_readers",
        ] {
            assert!(names.iter().any(|n| n == t), "{t} missing: {names:?}");
        }
    }

    /// The feed as the `owner` branch first made it, as version 6, before the counters
    /// took that number: no `lifted` column, and no counters.
    const OWNER_V6: &str = "
        CREATE TABLE ban_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, ban INTEGER NOT NULL);
        CREATE TRIGGER ban_changes_on_ban AFTER INSERT ON bans WHEN NEW.lifted_at IS NULL
        BEGIN INSERT INTO ban_changes (ban) VALUES (NEW.id); END;
        CREATE TRIGGER ban_changes_on_lift AFTER UPDATE OF lifted_at ON bans
            WHEN OLD.lifted_at IS NULL AND NEW.lifted_at IS NOT NULL
        BEGIN INSERT INTO ban_changes (ban) VALUES (NEW.id); END;
        CREATE TABLE feed_readers (reader TEXT PRIMARY KEY, seq INTEGER NOT NULL, read_at INTEGER NOT NULL);
    ";

    #[test]
    fn a_version_6_file_with_the_first_change_feed_gains_the_counters_and_a_new_feed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let conn = file_at(
            &path,
            &[
                SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, OWNER_V6,
            ],
            6,
        );
        conn.execute(
            "INSERT INTO bans (net, rule, reason, attempts, server, source, banned_at) VALUES ('192.0.2.1/32', 'sshd', 'r', 5, 'web-1', 'log', 1)",
            [],
        )
        .unwrap();
        drop(conn);
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.active_bans().unwrap().len(), 1, "the bans survive");
        s.conn
            .execute(
                "INSERT INTO counters VALUES ('sshd', '192.0.2.9', 1, 100, 200)",
                [],
            )
            .unwrap();
        let end = s.feed_end().unwrap();
        s.lift(
            &"192.0.2.1/32".parse().unwrap(),
            chrono::Utc::now(),
            "by hand",
        )
        .unwrap();
        let changes = s.changes(end, s.feed_end().unwrap()).unwrap();
        assert_eq!(changes.len(), 1);
        assert!(changes[0].lifted, "the new feed says what changed");
    }

    #[test]
    fn processes_opening_a_new_file_at_once_all_find_it_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let opened: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(drop))
            })
            .collect();
        for t in opened {
            t.join().unwrap().unwrap();
        }
    }
}
