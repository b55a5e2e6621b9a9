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

use std::path::Path;
use std::time::Duration;

use ::redis::{Client, Connection, Script, Value};
use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;

use super::{BanStore, SqliteStore, StoreError};
use crate::ban::{Ban, BanQuery, NewBan, Origin, Page, Recorded, Summary};
use crate::config::RedisConfig;
use crate::net::display_net;

const RECORD: &str = r#"
local p = ARGV[1]
local net = ARGV[2]
local existing = redis.call('HGET', p .. 'active', net)
if existing then return {tonumber(existing), 0} end
local id = redis.call('INCR', p .. 'next_id')
redis.call('HSET', p .. 'ban:' .. id, 'net', net, 'rule', ARGV[3], 'reason', ARGV[4], 'attempts', ARGV[5],
  'server', ARGV[6], 'source', ARGV[7], 'banned_at', ARGV[8], 'expires_at', ARGV[9])
redis.call('HSET', p .. 'active', net, id)
local score = '+inf'
if ARGV[9] ~= '' then score = ARGV[9] end
redis.call('ZADD', p .. 'expiry', score, net)
redis.call('ZADD', p .. 'history', ARGV[8], id)
redis.call('ZADD', p .. 'bans_of:' .. net, ARGV[8], id)
if tonumber(ARGV[14]) > 0 then redis.call('EXPIRE', p .. 'bans_of:' .. net, ARGV[14]) end
if ARGV[10] ~= '' then
  local untl = cjson.null
  if ARGV[12] ~= '' then untl = ARGV[12] end
  redis.call('PUBLISH', ARGV[10], cjson.encode({v = 1, kind = 'ban', ip = ARGV[13], rule = ARGV[3],
    server = ARGV[6], reason = ARGV[4], at = ARGV[11], ['until'] = untl, id = id}))
end
return {id, 1}
"#;

const LIFT: &str = r#"
local p = ARGV[1]
local net = ARGV[2]
local id = redis.call('HGET', p .. 'active', net)
if not id then return false end
redis.call('HDEL', p .. 'active', net)
redis.call('ZREM', p .. 'expiry', net)
local key = p .. 'ban:' .. id
redis.call('HSET', key, 'lifted_at', ARGV[3], 'lift_reason', ARGV[4])
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', key, ARGV[5]) end
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], cjson.encode({v = 1, kind = 'unban', ip = ARGV[8], server = ARGV[7],
    reason = ARGV[4], at = ARGV[9], id = tonumber(id)}))
end
return tonumber(id)
"#;

/// Ban records read per round trip.
const LOAD_CHUNK: usize = 1000;

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

/// A URL with its password replaced by `***`, fit for logs and messages.
pub fn redacted(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    // redis+unix URLs carry the password as `?pass=`.
    if u.query_pairs().any(|(k, _)| k == "pass") {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "pass" {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
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
            outbox: SqliteStore::open(local_db)?,
            record: Script::new(RECORD),
            lift: Script::new(LIFT),
        })
    }

    pub(super) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs `f` on a live connection. A connection or I/O failure drops the connection and
    /// is `Unreachable`; any other error (a script error, a wrong type) is `Redis`.
    pub(super) fn with<T>(
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

    fn record_one(&mut self, ban: &NewBan) -> Result<Recorded, StoreError> {
        let script = self.record.clone();
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(ban.net.to_string())
            .arg(&ban.rule)
            .arg(&ban.reason)
            .arg(ban.attempts)
            .arg(&ban.server)
            .arg(ban.source.as_str())
            .arg(ban.banned_at.timestamp())
            .arg(
                ban.expires_at
                    .map(|t| t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0))
                    .map_or(String::new(), |t| t.to_string()),
            )
            .arg(self.channel.clone().unwrap_or_default())
            .arg(rfc3339(ban.banned_at))
            .arg(ban.expires_at.map(rfc3339).unwrap_or_default())
            .arg(display_net(&ban.net))
            .arg(self.retention.as_secs());
        let (id, new): (i64, i64) = self.with(|c| inv.invoke(c))?;
        if new == 1 {
            Ok(Recorded::New(Ban {
                id,
                new: ban.clone(),
                lifted_at: None,
                lift_reason: None,
            }))
        } else {
            let existing = self.load(id)?.ok_or_else(|| StoreError::Redis {
                url: self.url.clone(),
                message: format!("active ban {id} has no record"),
            })?;
            Ok(Recorded::AlreadyBanned(existing))
        }
    }

    fn lift_one(
        &mut self,
        net: &IpNet,
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<Option<Ban>, StoreError> {
        let script = self.lift.clone();
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(net.to_string())
            .arg(at.timestamp())
            .arg(why)
            .arg(self.retention.as_secs())
            .arg(self.channel.clone().unwrap_or_default())
            .arg(&self.server)
            .arg(display_net(net))
            .arg(rfc3339(at));
        let id: Option<i64> = self.with(|c| inv.invoke(c))?;
        match id {
            Some(id) => self.load(id),
            None => Ok(None),
        }
    }

    /// Reads one ban record.
    fn load(&mut self, id: i64) -> Result<Option<Ban>, StoreError> {
        Ok(self.load_many(&[id])?.pop().flatten())
    }

    /// Reads ban records, a pipeline of `LOAD_CHUNK` at a time: the raw replies of a
    /// hundred thousand hashes at once would take hundreds of MB.
    pub(super) fn load_many(&mut self, ids: &[i64]) -> Result<Vec<Option<Ban>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(LOAD_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|id| self.key(&format!("ban:{id}")))
                .collect();
            let maps: Vec<std::collections::HashMap<String, String>> = self.with(|c| {
                let mut pipe = ::redis::pipe();
                for k in &keys {
                    pipe.hgetall(k);
                }
                pipe.query(c)
            })?;
            out.extend(chunk.iter().zip(maps).map(|(id, m)| decode(*id, &m)));
        }
        Ok(out)
    }

    fn bans_of(&mut self, nets: Vec<String>) -> Result<Vec<Ban>, StoreError> {
        if nets.is_empty() {
            return Ok(Vec::new());
        }
        let active = self.key("active");
        let ids: Vec<Option<i64>> =
            self.with(|c| ::redis::cmd("HMGET").arg(&active).arg(&nets).query(c))?;
        let ids: Vec<i64> = ids.into_iter().flatten().collect();
        Ok(self.load_many(&ids)?.into_iter().flatten().collect())
    }

    /// Delivers the outbox, oldest first; stops (keeping the rest) at the first failure.
    /// Returns how many operations were delivered.
    fn deliver_outbox(&mut self) -> Result<usize, StoreError> {
        let mut delivered = 0;
        for (seq, op, payload) in self.outbox.outbox()? {
            match op.as_str() {
                "ban" => match ban_from_json(&payload) {
                    Some(ban) => {
                        self.record_one(&ban)?;
                    }
                    None => log::error!("outbox entry {seq} is not a ban, dropped: {payload}"),
                },
                "unban" => match unban_from_json(&payload) {
                    Some((net, at, why)) => {
                        self.lift_one(&net, at, &why)?;
                    }
                    None => log::error!("outbox entry {seq} is not an unban, dropped: {payload}"),
                },
                other => log::error!("outbox entry {seq} has unknown kind {other}, dropped"),
            }
            self.outbox.outbox_remove(seq)?;
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Whether the outbox is empty, delivering it first when it is not. Queued operations
    /// go before new ones, so the fleet sees them in order; `false` means Redis is away
    /// (or still refusing), so new operations queue behind them.
    fn outbox_delivered(&mut self) -> Result<bool, StoreError> {
        Ok(self.outbox_len()? == 0 || self.deliver_outbox().is_ok())
    }

    /// How many operations wait in the outbox.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        Ok(self.outbox.outbox()?.len())
    }
}

impl BanStore for RedisStore {
    /// When Redis is unreachable the bans are queued in the outbox and reported as new:
    /// the server keeps protecting itself.
    fn record_many(&mut self, bans: &[NewBan]) -> Result<Vec<Recorded>, StoreError> {
        let mut out = Vec::with_capacity(bans.len());
        let mut reachable = self.outbox_delivered()?;
        for ban in bans {
            if reachable {
                match self.record_one(ban) {
                    Ok(r) => {
                        out.push(r);
                        continue;
                    }
                    Err(StoreError::Unreachable { .. }) => reachable = false,
                    Err(e) => return Err(e),
                }
            }
            self.outbox.outbox_push("ban", &ban_to_json(ban))?;
            out.push(Recorded::New(Ban {
                id: 0,
                new: ban.clone(),
                lifted_at: None,
                lift_reason: None,
            }));
        }
        Ok(out)
    }

    fn lift_many(
        &mut self,
        nets: &[IpNet],
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<Vec<Ban>, StoreError> {
        let mut lifted = Vec::new();
        let mut reachable = self.outbox_delivered()?;
        for net in nets {
            if reachable {
                match self.lift_one(net, at, why) {
                    Ok(ban) => {
                        lifted.extend(ban);
                        continue;
                    }
                    Err(StoreError::Unreachable { .. }) => reachable = false,
                    Err(e) => return Err(e),
                }
            }
            self.outbox
                .outbox_push("unban", &unban_to_json(net, at, why))?;
        }
        Ok(lifted)
    }

    fn active_bans(&mut self) -> Result<Vec<Ban>, StoreError> {
        let active = self.key("active");
        let ids: std::collections::HashMap<String, i64> =
            self.with(|c| ::redis::cmd("HGETALL").arg(&active).query(c))?;
        let ids: Vec<i64> = ids.into_values().collect();
        let mut bans: Vec<Ban> = self.load_many(&ids)?.into_iter().flatten().collect();
        bans.sort_by_key(|b| (b.banned_at, b.id));
        Ok(bans)
    }

    fn all_bans(&mut self) -> Result<Vec<Ban>, StoreError> {
        let history = self.key("history");
        let ids: Vec<i64> =
            self.with(|c| ::redis::cmd("ZRANGE").arg(&history).arg(0).arg(-1).query(c))?;
        let loaded = self.load_many(&ids)?;
        // Records whose hash expired (past history_retention) leave the index too.
        let gone: Vec<i64> = ids
            .iter()
            .zip(&loaded)
            .filter(|(_, b)| b.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !gone.is_empty() {
            self.with(|c| {
                ::redis::cmd("ZREM")
                    .arg(&history)
                    .arg(&gone)
                    .query::<Value>(c)
            })?;
        }
        Ok(loaded.into_iter().flatten().collect())
    }

    fn due(&mut self, now: DateTime<Utc>) -> Result<Vec<Ban>, StoreError> {
        let expiry = self.key("expiry");
        let nets: Vec<String> = self.with(|c| {
            ::redis::cmd("ZRANGEBYSCORE")
                .arg(&expiry)
                .arg("-inf")
                .arg(now.timestamp())
                .query(c)
        })?;
        self.bans_of(nets)
    }

    fn next_expiry(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let expiry = self.key("expiry");
        let first: Vec<(String, f64)> = self.with(|c| {
            ::redis::cmd("ZRANGE")
                .arg(&expiry)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .query(c)
        })?;
        Ok(first
            .first()
            .filter(|(_, s)| s.is_finite())
            .and_then(|(_, s)| DateTime::from_timestamp(*s as i64, 0)))
    }

    /// Lifted records expire by themselves after history_retention; this drops those
    /// lifted before `before` now (a shorter retention, or records from before it was set).
    fn flush_outbox(&mut self) -> Result<usize, StoreError> {
        self.deliver_outbox()
    }

    fn bans_since(&mut self, net: &IpNet, since: DateTime<Utc>) -> Result<usize, StoreError> {
        let key = self.key(&format!("bans_of:{net}"));
        self.with(|c| {
            ::redis::cmd("ZCOUNT")
                .arg(&key)
                .arg(since.timestamp())
                .arg("+inf")
                .query(c)
        })
    }

    fn ban(&mut self, id: i64) -> Result<Option<Ban>, StoreError> {
        self.load(id)
    }

    fn summary(&mut self, now: DateTime<Utc>) -> Result<Summary, StoreError> {
        self.indexed_summary(now)
    }

    fn search(&mut self, query: &BanQuery) -> Result<Page, StoreError> {
        self.indexed_search(query)
    }

    fn epoch(&mut self) -> Result<Option<String>, StoreError> {
        self.read_epoch().map(Some)
    }

    fn purge_history(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let history = self.key("history");
        let ids: Vec<i64> =
            self.with(|c| ::redis::cmd("ZRANGE").arg(&history).arg(0).arg(-1).query(c))?;
        let loaded = self.load_many(&ids)?;
        let old: Vec<i64> = ids
            .iter()
            .zip(&loaded)
            .filter(|(_, b)| {
                b.as_ref()
                    .is_none_or(|b| b.lifted_at.is_some_and(|t| t < before))
            })
            .map(|(id, _)| *id)
            .collect();
        let dropped = loaded
            .iter()
            .flatten()
            .filter(|b| b.lifted_at.is_some_and(|t| t < before))
            .count();
        if !old.is_empty() {
            let keys: Vec<String> = old
                .iter()
                .map(|id| self.key(&format!("ban:{id}")))
                .collect();
            self.with(|c| {
                ::redis::pipe()
                    .cmd("DEL")
                    .arg(&keys)
                    .ignore()
                    .cmd("ZREM")
                    .arg(&history)
                    .arg(&old)
                    .ignore()
                    .query::<Value>(c)
            })?;
        }
        Ok(dropped)
    }
}

fn decode(id: i64, m: &std::collections::HashMap<String, String>) -> Option<Ban> {
    let get = |k: &str| m.get(k).map(String::as_str);
    let time = |k: &str| {
        get(k)
            .filter(|v| !v.is_empty())
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|s| DateTime::from_timestamp(s, 0))
    };
    let net: IpNet = get("net")?.parse().ok()?;
    let source: Origin = get("source")?.parse().ok()?;
    Some(Ban {
        id,
        new: NewBan {
            net,
            rule: get("rule")?.to_string(),
            reason: get("reason").unwrap_or_default().to_string(),
            attempts: get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
            server: get("server").unwrap_or_default().to_string(),
            source,
            banned_at: time("banned_at")?,
            expires_at: time("expires_at"),
        },
        lifted_at: time("lifted_at"),
        lift_reason: get("lift_reason").map(str::to_string),
    })
}

fn ban_to_json(ban: &NewBan) -> String {
    serde_json::json!({
        "net": ban.net.to_string(),
        "rule": ban.rule,
        "reason": ban.reason,
        "attempts": ban.attempts,
        "server": ban.server,
        "source": ban.source.as_str(),
        "banned_at": ban.banned_at.timestamp(),
        "expires_at": ban.expires_at.map(|t| t.timestamp()),
    })
    .to_string()
}

fn ban_from_json(text: &str) -> Option<NewBan> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(NewBan {
        net: v["net"].as_str()?.parse().ok()?,
        rule: v["rule"].as_str()?.to_string(),
        reason: v["reason"].as_str()?.to_string(),
        attempts: u32::try_from(v["attempts"].as_u64()?).ok()?,
        server: v["server"].as_str()?.to_string(),
        source: v["source"].as_str()?.parse().ok()?,
        banned_at: DateTime::from_timestamp(v["banned_at"].as_i64()?, 0)?,
        expires_at: match &v["expires_at"] {
            serde_json::Value::Null => None,
            t => Some(DateTime::from_timestamp(t.as_i64()?, 0)?),
        },
    })
}

fn unban_to_json(net: &IpNet, at: DateTime<Utc>, why: &str) -> String {
    serde_json::json!({ "net": net.to_string(), "at": at.timestamp(), "why": why }).to_string()
}

fn unban_from_json(text: &str) -> Option<(IpNet, DateTime<Utc>, String)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some((
        v["net"].as_str()?.parse().ok()?,
        DateTime::from_timestamp(v["at"].as_i64()?, 0)?,
        v["why"].as_str()?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redacted("redis://user:secret@10.0.0.1:6379/0"),
            "redis://user:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis+unix:///run/redis.sock?pass=secret&db=2"),
            "redis+unix:///run/redis.sock?pass=***&db=2"
        );
        assert_eq!(redacted("redis://127.0.0.1/0"), "redis://127.0.0.1/0");
    }

    #[test]
    fn outbox_payloads_round_trip() {
        let ban = NewBan {
            net: "192.0.2.0/24".parse().unwrap(),
            rule: "sshd".into(),
            reason: "a \"quoted\" line".into(),
            attempts: 5,
            server: "web-1".into(),
            source: Origin::Log,
            banned_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            expires_at: None,
        };
        assert_eq!(ban_from_json(&ban_to_json(&ban)), Some(ban));
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let net: IpNet = "2001:db8::1/128".parse().unwrap();
        assert_eq!(
            unban_from_json(&unban_to_json(&net, at, "by hand")),
            Some((net, at, "by hand".to_string()))
        );
    }
}
