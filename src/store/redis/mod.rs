//! Redis store: a fleet's bans under one key prefix, with every change published.
//!
//! Keys (prefix `pyfilter:` by default):
//! - `ban:<id>` — a hash with the ban's details (net, rule, reason, attempts, server,
//!   source, banned_at, expires_at, lifted_at, lift_reason); a lifted ban's hash expires
//!   by itself after `history_retention`;
//! - `active` — a hash net → id, one active ban per network;
//! - `expiry` — a sorted set net → expiry time (`+inf` for forever);
//! - `history` — a sorted set id → ban time;
//! - `next_id` — the id counter; `epoch` — a random token, new when Redis lost its data.
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
mod outbox;
mod query;
mod scripts;

use std::path::Path;
use std::time::Duration;

use ::redis::{Client, Connection, Script};
use chrono::Utc;

use super::{SqliteStore, StoreError};
use crate::config::{RedisConfig, redacted};

/// A Redis store, with its outbox in the local SQLite file.
pub struct RedisStore {
    client: Client,
    conn: Option<Connection>,
    /// The URL without its password, for messages.
    url: String,
    prefix: String,
    /// Where events are published; `None` without sync.
    channel: Option<String>,
    timeout: Duration,
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
        let url = redacted(&config.url);
        let client = Client::open(config.url.as_str()).map_err(|e| StoreError::Redis {
            url: url.clone(),
            message: e.to_string(),
        })?;
        Ok(RedisStore {
            client,
            conn: None,
            url,
            prefix: config.prefix.clone(),
            channel: config.sync.then(|| config.channel()),
            timeout: config.timeout,
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
            let conn = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(|e| self.classify(e))?;
            let _ = conn.set_read_timeout(Some(self.timeout * 5));
            let _ = conn.set_write_timeout(Some(self.timeout * 5));
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

    /// Refused, timed out, dropped: Redis is away and will be back (`Unreachable`). A
    /// refused password or database, a script error: a configuration error (`Redis`).
    fn classify(&self, e: ::redis::RedisError) -> StoreError {
        let (url, message) = (self.url.clone(), e.to_string());
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
        {
            StoreError::Unreachable { url, message }
        } else {
            StoreError::Redis { url, message }
        }
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
