//! The Lua scripts that record and lift a ban, each atomic and publishing its event in
//! the same step, and their invocation: the order of the arguments given here is the
//! ARGV the scripts read.

use ::redis::Script;
use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;

use super::RedisStore;
use crate::ban::{Ban, NewBan, Recorded};
use crate::net::display_net;
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

/// The RECORD script, prepared once per store.
pub(super) fn record() -> Script {
    Script::new(RECORD)
}

/// The LIFT script, prepared once per store.
pub(super) fn lift() -> Script {
    Script::new(LIFT)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

impl RedisStore {
    /// Records one ban unless its network is already banned, publishing it when new.
    pub(super) fn record_one(&mut self, ban: &NewBan) -> Result<Recorded, StoreError> {
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

    /// Lifts the active ban of `net`, publishing the unban; `None` when it was not banned.
    pub(super) fn lift_one(
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
}
