//! The database's schema, by version (`PRAGMA user_version`), and the migrations that
//! bring an older file up to date, each in one transaction. A file from a newer pyfilter
//! is refused rather than misread.

use super::SqliteStore;
use crate::store::StoreError;

const SCHEMA_VERSION: i64 = 6;

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
        let version = self.version()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let steps: [(i64, &str); 6] = [
            (1, SCHEMA_V1),
            (2, SCHEMA_V2),
            (3, SCHEMA_V3),
            (4, SCHEMA_V4),
            (5, SCHEMA_V5),
            (6, SCHEMA_V6),
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
}
