//! The Lua scripts that record and lift a ban, each atomic and publishing its event in
//! the same step, and their invocation: the order of the arguments given here is the
//! ARGV the scripts read.
//!
//! The event is the fleet's `WireEvent`, encoded here. Only the script knows the ban's
//! id (RECORD takes it from `next_id`), so it is given the event's text before and after
//! the id and publishes them with the id in between: the script writes no JSON, and the
//! ban is still recorded and published in one atomic step and one round trip.

use ::redis::Script;
use chrono::{DateTime, Utc};
use ipnet::IpNet;

use super::RedisStore;
use crate::ban::{Ban, NewBan, Recorded};
use crate::fleet::wire::WireEvent;
use crate::store::StoreError;

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
if tonumber(ARGV[13]) > 0 then redis.call('EXPIRE', p .. 'bans_of:' .. net, ARGV[13]) end
if ARGV[10] ~= '' then
  redis.call('PUBLISH', ARGV[10], ARGV[11] .. string.format('%d', id) .. ARGV[12])
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
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. string.format('%d', tonumber(id)) .. ARGV[8])
end
return tonumber(id)
"#;

/// The RECORD script, prepared once per store.
pub(super) fn record() -> Script {
    Script::new(RECORD)
}

/// The LIFT script, prepared once per store.
pub(super) fn lift() -> Script {
    Script::new(LIFT)
}

/// What a script publishes: on `channel`, the event's text around the id the script
/// learns (`WireEvent::around_id`). All empty when this store does not sync: the script
/// then publishes nothing.
#[derive(Default)]
struct Publish {
    channel: String,
    before: String,
    after: String,
}

impl Publish {
    fn new(channel: Option<&str>, event: impl FnOnce() -> WireEvent) -> Publish {
        let Some(channel) = channel else {
            return Publish::default();
        };
        let (before, after) = event().around_id();
        Publish {
            channel: channel.to_string(),
            before,
            after,
        }
    }
}

impl RedisStore {
    /// RECORD's arguments for `ban`, in the order the script reads them.
    fn record_args(&self, ban: &NewBan) -> Vec<String> {
        let publish = Publish::new(self.channel.as_deref(), || WireEvent::ban(ban));
        vec![
            self.prefix.clone(),
            ban.net.to_string(),
            ban.rule.clone(),
            ban.reason.clone(),
            ban.attempts.to_string(),
            ban.server.clone(),
            ban.source.as_str().to_string(),
            crate::time::to_second(ban.banned_at)
                .timestamp()
                .to_string(),
            ban.expires_at
                .map(|t| crate::time::to_second(t).timestamp())
                .map_or(String::new(), |t| t.to_string()),
            publish.channel,
            publish.before,
            publish.after,
            self.retention.as_secs().to_string(),
        ]
    }

    /// What RECORD answered for `ban`: (id, 1) new, (id, 0) already banned as `id`.
    fn recorded(&mut self, ban: &NewBan, (id, new): (i64, i64)) -> Result<Recorded, StoreError> {
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

    /// Records one ban unless its network is already banned, publishing it when new.
    pub(super) fn record_one(&mut self, ban: &NewBan) -> Result<Recorded, StoreError> {
        let script = self.record.clone();
        let mut inv = script.prepare_invoke();
        for arg in self.record_args(ban) {
            inv.arg(arg);
        }
        let answer: (i64, i64) = self.with(|c| inv.invoke(c))?;
        self.recorded(ban, answer)
    }

    /// Records bans in one round trip: the script (loaded again, a no-op when Redis has
    /// it) and one EVALSHA per ban, pipelined. A burst of ten thousand bans is ten round
    /// trips, not ten thousand. Each ban is still recorded and published atomically; when
    /// the pipeline fails half way, running it again records nothing twice (a network
    /// already banned is left as it is).
    pub(super) fn record_pipelined(
        &mut self,
        bans: &[NewBan],
    ) -> Result<Vec<Recorded>, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(RECORD).ignore();
        let hash = self.record.get_hash().to_string();
        for ban in bans {
            pipe.cmd("EVALSHA")
                .arg(&hash)
                .arg(0)
                .arg(self.record_args(ban));
        }
        let answers: Vec<(i64, i64)> = self.with(|c| pipe.query(c))?;
        bans.iter()
            .zip(answers)
            .map(|(ban, answer)| self.recorded(ban, answer))
            .collect()
    }

    /// Lifts the active ban of `net`, publishing the unban; `None` when it was not banned.
    pub(super) fn lift_one(
        &mut self,
        net: &IpNet,
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<Option<Ban>, StoreError> {
        let publish = Publish::new(self.channel.as_deref(), || {
            WireEvent::unban(net, &self.server, why, at)
        });
        let script = self.lift.clone();
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(net.to_string())
            .arg(at.timestamp())
            .arg(why)
            .arg(self.retention.as_secs())
            .arg(&publish.channel)
            .arg(&publish.before)
            .arg(&publish.after);
        let id: Option<i64> = self.with(|c| inv.invoke(c))?;
        match id {
            Some(id) => self.load(id),
            None => Ok(None),
        }
    }
}
