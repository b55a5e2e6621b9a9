//! Redis store: a fleet's bans under one key prefix, with every change published.
//!
//! Keys (prefix `pyfilter:` by default), in layout 2 (`layout` = 2, set by the first ban
//! of a new store, or by `pyfilter prune --compact`):
//! - `records` — a hash id → the ban's record packed in one line (`record`): net, rule,
//!   attempts, server, source, banned_at, expires_at, reason, and once lifted lifted_at
//!   and lift_reason; `prune` drops those lifted more than `history_retention` ago;
//! - `offences` — a hash network → its bans as `id:time` words (repeat offenders;
//!   whether the store still knows a ban this server made), trimmed by `prune` with them;
//! - `expiry` — a sorted set net → expiry time (`+inf` for forever): the networks
//!   banned now, each by the last of its `offences`;
//! - `history:<id / 128>` — sorted sets id → ban time, 128 ids each (`history`);
//! - `next_id` — the id counter; `epoch` — a random token, new when Redis lost its data.
//!
//! A store written before layout 2 (no `layout` key) keeps a hash `ban:<id>` per record,
//! expiring `history_retention` after its lift, a sorted set `bans_of:<net>` per
//! network, a hash `active` net → id and one sorted set `history`; servers go on writing
//! it that way until `prune --compact` rewrites it, and read both. Layout 2 takes about
//! a third of the memory: a record's log line is longer than Redis's 64-byte listpack
//! values, which made each `ban:<id>` a full hash table, and the history's small buckets
//! are listpacks, a tenth of one big sorted set.
//!
//! Recording and lifting are Lua scripts, so each is atomic and publishes its event on the
//! ban channel in the same step (`sync`). When Redis cannot be reached, bans and unbans
//! go to the outbox in the local SQLite file and are delivered in order, exactly once,
//! when it is back.
//!
//! This file opens the store and runs commands on it; the scripts (`scripts`), the bans
//! (`bans`), the outbox's delivery (`outbox`), the admin's questions (`query`) and
//! accounts (`accounts`) each have their own file.

mod accounts;
mod bans;
mod history;
mod outbox;
mod query;
mod record;
mod scripts;

use std::path::Path;
use std::time::Duration;

use ::redis::{Connection, Script};
use chrono::Utc;

use super::{SqliteStore, StoreError};
use crate::config::RedisConfig;
use crate::fleet::Endpoint;

/// A Redis store, with its outbox in the local SQLite file.
pub struct RedisStore {
    /// The server, or the primary the sentinels name, asked anew on each connection.
    endpoint: Endpoint,
    conn: Option<Connection>,
    /// The URL without its password, for messages.
    url: String,
    prefix: String,
    /// Where events are published; `None` without sync.
    channel: Option<String>,
    retention: Duration,
    /// This server's name, for the unban events it publishes.
    server: String,
    outbox: SqliteStore,
    record: Script,
    lift: Script,
}

impl RedisStore {
    /// Prepares the store; the connection is made on first use (and again after a loss),
    /// so a server starts, and bans locally, even while Redis is down. `local_db` holds
    /// the outbox.
    pub fn open(
        config: &RedisConfig,
        local_db: &Path,
        retention: Duration,
        server: &str,
    ) -> Result<RedisStore, StoreError> {
        RedisStore::with_outbox(config, SqliteStore::open(local_db)?, retention, server)
    }

    /// The store for read-only commands: they never queue anything, so the local SQLite
    /// file (which they may not be allowed to write) is left alone.
    pub fn read_only(
        config: &RedisConfig,
        retention: Duration,
        server: &str,
    ) -> Result<RedisStore, StoreError> {
        let outbox = SqliteStore::empty(Path::new(":memory:"))?;
        RedisStore::with_outbox(config, outbox, retention, server)
    }

    fn with_outbox(
        config: &RedisConfig,
        outbox: SqliteStore,
        retention: Duration,
        server: &str,
    ) -> Result<RedisStore, StoreError> {
        let endpoint = Endpoint::new(config).map_err(|e| StoreError::Redis {
            url: crate::config::redacted(&config.url),
            message: e.to_string(),
        })?;
        Ok(RedisStore {
            url: endpoint.describe(),
            endpoint,
            conn: None,
            prefix: config.prefix.clone(),
            channel: config.sync.then(|| config.channel()),
            retention,
            server: server.to_string(),
            outbox,
            record: scripts::record(),
            lift: scripts::lift(),
        })
    }

    /// `name` under the key prefix.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs `f` on a live connection. A connection or I/O failure drops the connection and
    /// is `Unreachable`; any other error (a script error, a wrong type) is `Redis`.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> ::redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        if self.conn.is_none() {
            let conn = self.endpoint.connect().map_err(|e| self.classify(e))?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        f(conn).map_err(|e| {
            let e = self.classify(e);
            if matches!(e, StoreError::Unreachable { .. }) {
                self.conn = None;
            }
            e
        })
    }

    /// Refused, timed out, dropped, or a primary demoted by a failover (READONLY): Redis
    /// is away and will be back (`Unreachable`). A command the ACL user may not run: a
    /// configuration error naming it (`Denied`). A refused password or database, a
    /// script error: a configuration error (`Redis`).
    fn classify(&self, e: ::redis::RedisError) -> StoreError {
        let (url, message) = (self.url.clone(), e.to_string());
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.code() == Some("READONLY")
            || message.contains("READONLY")
        {
            StoreError::Unreachable { url, message }
        } else if let Some(what) = denied(&message) {
            StoreError::Denied { url, what, message }
        } else {
            StoreError::Redis { url, message }
        }
    }

    /// How this store reaches Redis (for `check`).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A random token that changes when Redis loses its data (a restart without
    /// persistence): then this server puts back every ban it still knows.
    fn read_epoch(&mut self) -> Result<String, StoreError> {
        let key = self.key("epoch");
        let fresh = format!(
            "{:x}{:x}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        self.with(|c| {
            let _: bool = ::redis::cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .arg("NX")
                .query::<Option<String>>(c)
                .map(|r| r.is_some())?;
            ::redis::cmd("GET").arg(&key).query::<String>(c)
        })
    }
}

/// What `check` says of a store: its layout and its active bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// 1 or 2; `None` for a store without a ban yet (layout 2 from its first).
    pub layout: Option<u8>,
    pub active: u64,
}

/// Reads a store's layout as RECORD decides it (`layout` when set; otherwise a store that
/// gave ids is of layout 1, an earlier version's) and its number of active bans.
pub fn shape(conn: &mut Connection, prefix: &str) -> ::redis::RedisResult<Shape> {
    let (layout, next_id, active): (Option<u8>, Option<i64>, u64) = ::redis::pipe()
        .cmd("GET")
        .arg(format!("{prefix}layout"))
        .cmd("GET")
        .arg(format!("{prefix}next_id"))
        .cmd("ZCARD")
        .arg(format!("{prefix}expiry"))
        .query(conn)?;
    Ok(Shape {
        layout: layout.or(next_id.map(|_| 1)),
        active,
    })
}

/// What an ACL refusal (`NOPERM`) refused, from Redis's message: `the 'zscan' command`,
/// `a key`, `a channel`; `None` when `message` is no ACL refusal.
fn denied(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    // Inside a Lua script Redis says it differently, and does not name the command.
    if let Some(at) = lower.find("the user executing the script can't ") {
        let rest = &message[at + "the user executing the script can't ".len()..];
        let clause = rest
            .split(" script:")
            .next()
            .unwrap_or(rest)
            .trim_end_matches('.');
        return Some(format!("what a pyfilter script runs (it may not {clause})"));
    }
    if !message.contains("NOPERM") && !lower.contains("no permissions") {
        return None;
    }
    if let Some(at) = lower.find("to run the '") {
        let rest = &message[at + "to run the '".len()..];
        if let Some(end) = rest.find('\'') {
            return Some(format!("the command {}", rest[..end].to_ascii_uppercase()));
        }
    }
    for (word, what) in [("key", "a key"), ("channel", "a channel")] {
        if lower.contains(&format!("access a {word}"))
            || lower.contains(&format!("access one of the {word}"))
        {
            return Some(what.to_string());
        }
    }
    Some("a command".to_string())
}

#[cfg(test)]
mod tests {
    use super::denied;

    #[test]
    fn an_acl_refusal_names_what_was_refused() {
        assert_eq!(
            denied("NOPERM: User pyfilter has no permissions to run the 'zscan' command"),
            Some("the command ZSCAN".into())
        );
        assert_eq!(
            denied("NOPERM: No permissions to access a key"),
            Some("a key".into())
        );
        assert_eq!(
            denied("ERR The user executing the script can't publish to the channel mentioned in the command script: 4f63, on @user_script:1."),
            Some("what a pyfilter script runs (it may not publish to the channel mentioned in the command)".into())
        );
        assert_eq!(denied("WRONGTYPE Operation against a key"), None);
    }
}
