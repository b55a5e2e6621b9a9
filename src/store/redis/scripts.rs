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

/// The id of the active ban of the network `net`, or false: `active` holds it in layout
/// 1; in layout 2 a network in `expiry` is banned and its ban is its last, the highest id
/// of its `offences` words (a network is banned again only once lifted).
macro_rules! active_id {
    () => {
        r#"
local function active_id(p, net)
  local id = redis.call('HGET', p .. 'active', net)
  if id then return id end
  if not redis.call('ZSCORE', p .. 'expiry', net) then return false end
  local words = redis.call('HGET', p .. 'offences', net)
  if not words then return false end
  local last = false
  for w in string.gmatch(words, '(%d+):%d+') do
    if not last or tonumber(w) > tonumber(last) then last = w end
  end
  return last
end
"#
    };
}

/// The key of the history bucket of the ban `id`: 128 ids a bucket (`history::BUCKET`).
macro_rules! history_key {
    () => {
        r#"
local function history_key(p, id)
  return p .. 'history:' .. string.format('%d', math.floor(tonumber(id) / 128))
end
"#
    };
}

/// Records a ban in the store's layout (`layout`: 2 for a new store, whose first ban
/// sets it; a store without it is of layout 1, written before layout 2 existed). Its
/// network's past bans are `id:time` words, oldest first; its id and time go to the
/// `history:<id / 128>` bucket (`history_key`).
const RECORD: &str = concat!(
    active_id!(),
    history_key!(),
    r#"
local p = ARGV[1]
local net = ARGV[2]
local existing = active_id(p, net)
if existing then return {tonumber(existing), 0} end
local layout = redis.call('GET', p .. 'layout')
if not layout then
  layout = '1'
  if redis.call('EXISTS', p .. 'next_id') == 0 then
    layout = '2'
    redis.call('SET', p .. 'layout', '2')
  end
end
local id = redis.call('INCR', p .. 'next_id')
if layout == '1' then
  redis.call('HSET', p .. 'ban:' .. id, 'net', net, 'rule', ARGV[3], 'reason', ARGV[4], 'attempts', ARGV[5],
    'server', ARGV[6], 'source', ARGV[7], 'banned_at', ARGV[8], 'expires_at', ARGV[9])
  redis.call('ZADD', p .. 'bans_of:' .. net, ARGV[8], id)
  if tonumber(ARGV[13]) > 0 then redis.call('EXPIRE', p .. 'bans_of:' .. net, ARGV[13]) end
  redis.call('HSET', p .. 'active', net, id)
  redis.call('ZADD', p .. 'history', ARGV[8], id)
else
  redis.call('HSET', p .. 'records', id, ARGV[14])
  local word = id .. ':' .. ARGV[8]
  local past = redis.call('HGET', p .. 'offences', net)
  if past then word = past .. ' ' .. word end
  redis.call('HSET', p .. 'offences', net, word)
  redis.call('ZADD', history_key(p, id), ARGV[8], id)
end
local score = '+inf'
if ARGV[9] ~= '' then score = ARGV[9] end
redis.call('ZADD', p .. 'expiry', score, net)
if ARGV[10] ~= '' then
  redis.call('PUBLISH', ARGV[10], ARGV[11] .. string.format('%d', id) .. ARGV[12])
end
return {id, 1}
"#
);

/// Lifts a ban, in the layout its record has: a packed record gets the lift's two fields
/// appended (`record`), a hash its two fields and a time to live.
const LIFT: &str = concat!(
    active_id!(),
    r#"
local p = ARGV[1]
local net = ARGV[2]
local id = active_id(p, net)
if not id then
  -- A network in expiry whose ban is gone (its record and offences dropped by hand)
  -- leaves it too, rather than be due for ever.
  redis.call('ZREM', p .. 'expiry', net)
  return false
end
redis.call('HDEL', p .. 'active', net)
redis.call('ZREM', p .. 'expiry', net)
local packed = redis.call('HGET', p .. 'records', id)
if packed then
  redis.call('HSET', p .. 'records', id, packed .. '\t' .. ARGV[3] .. '\t' .. ARGV[9])
else
  local key = p .. 'ban:' .. id
  redis.call('HSET', key, 'lifted_at', ARGV[3], 'lift_reason', ARGV[4])
  if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', key, ARGV[5]) end
end
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. string.format('%d', tonumber(id)) .. ARGV[8])
end
return tonumber(id)
"#
);

/// Takes out of `expiry` the networks due by ARGV[2] (Unix seconds) whose ban cannot be
/// found (no id, or an id with no record in either layout): ARGV is the prefix, the time,
/// then networks. Left there they would be due for ever, and every server would wake for
/// them again and again. A network banned again meanwhile is no longer due, or has its
/// ban, and stays. Returns how many were dropped.
const DROP_STALE: &str = concat!(
    active_id!(),
    r#"
local p = ARGV[1]
local now = tonumber(ARGV[2])
local dropped = 0
for i = 3, #ARGV do
  local net = ARGV[i]
  local at = tonumber(redis.call('ZSCORE', p .. 'expiry', net) or '')
  if at and at <= now then
    local id = active_id(p, net)
    if not id or (redis.call('HEXISTS', p .. 'records', id) == 0
        and redis.call('EXISTS', p .. 'ban:' .. id) == 0) then
      redis.call('ZREM', p .. 'expiry', net)
      redis.call('HDEL', p .. 'active', net)
      dropped = dropped + 1
    end
  end
end
return dropped
"#
);

/// Drops bans from their network's past bans in `offences`: ARGV is the prefix, then
/// (network, id) pairs.
const FORGET: &str = r#"
local key = ARGV[1] .. 'offences'
for i = 2, #ARGV - 1, 2 do
  local net, id = ARGV[i], ARGV[i + 1]
  local words = redis.call('HGET', key, net)
  if words then
    local kept = {}
    for w in string.gmatch(words, '%S+') do
      if string.sub(w, 1, #id + 1) ~= id .. ':' then table.insert(kept, w) end
    end
    if #kept == 0 then
      redis.call('HDEL', key, net)
    else
      redis.call('HSET', key, net, table.concat(kept, ' '))
    end
  end
end
return 0
"#;

/// Rewrites records of layout 1 into layout 2: ARGV is the prefix, then ids, taken from
/// the `history` index of layout 1. Each record is packed (`record::pack`'s packing,
/// escapes included) with its network's past bans moved into `offences` (its own among
/// them, even once `bans_of` expired: an active ban is found there), its entry moves to
/// its `history:<id / 128>` bucket and its network leaves `active`. A record already
/// packed is left as it is, one gone only leaves the index. Returns how many were
/// rewritten.
const COMPACT: &str = concat!(
    history_key!(),
    r#"
local p = ARGV[1]
local function esc(s)
  s = string.gsub(s, '\\', '\\\\')
  s = string.gsub(s, '\t', '\\t')
  s = string.gsub(s, '\n', '\\n')
  return s
end
local function has_word(words, id)
  for w in string.gmatch(words, '(%d+):%d+') do
    if w == id then return true end
  end
  return false
end
local done = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local key = p .. 'ban:' .. id
  local net = false
  local h = redis.call('HGETALL', key)
  local packed = redis.call('HGET', p .. 'records', id)
  if #h > 0 and not packed then
    local f = {}
    for j = 1, #h - 1, 2 do f[h[j]] = h[j + 1] end
    local line = table.concat({f.net or '', f.rule or '', f.attempts or '0', f.server or '',
      f.source or '', f.banned_at or '', f.expires_at or '', esc(f.reason or '')}, '\t')
    if f.lifted_at then line = line .. '\t' .. f.lifted_at .. '\t' .. esc(f.lift_reason or '') end
    redis.call('HSET', p .. 'records', id, line)
    redis.call('DEL', key)
    net = f.net
    if net then
      local words = {}
      local old = p .. 'bans_of:' .. net
      local scored = redis.call('ZRANGE', old, 0, -1, 'WITHSCORES')
      for j = 1, #scored - 1, 2 do
        table.insert(words, scored[j] .. ':' .. string.format('%d', tonumber(scored[j + 1])))
      end
      redis.call('DEL', old)
      local known = redis.call('HGET', p .. 'offences', net)
      if known then table.insert(words, known) end
      local all = table.concat(words, ' ')
      if f.banned_at and not has_word(all, id) then
        if all ~= '' then all = all .. ' ' end
        all = all .. id .. ':' .. f.banned_at
      end
      if all ~= '' then redis.call('HSET', p .. 'offences', net, all) end
    end
    done = done + 1
  elseif packed then
    net = string.match(packed, '^[^\t]*')
  end
  local at = redis.call('ZSCORE', p .. 'history', id)
  if at then
    redis.call('ZADD', history_key(p, id), at, id)
    redis.call('ZREM', p .. 'history', id)
  end
  if net and redis.call('HGET', p .. 'active', net) == id then
    redis.call('HDEL', p .. 'active', net)
  end
end
return done
"#
);

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
            super::record::pack(ban),
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
            .arg(&publish.after)
            .arg(super::record::escape(why));
        let id: Option<i64> = self.with(|c| inv.invoke(c))?;
        match id {
            Some(id) => self.load(id),
            None => Ok(None),
        }
    }
}

impl RedisStore {
    /// Drops `(network, id)` pairs from the networks' past bans (layout 2).
    pub(super) fn forget_offences(&mut self, pairs: &[(String, String)]) -> Result<(), StoreError> {
        let script = Script::new(FORGET);
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix);
        for (net, id) in pairs {
            inv.arg(net).arg(id);
        }
        self.with(|c| inv.invoke::<i64>(c)).map(drop)
    }

    /// Drops from `expiry` those of `nets` due at `now` whose ban has no record; how many.
    pub(super) fn drop_stale(&mut self, now: i64, nets: &[&String]) -> Result<usize, StoreError> {
        let script = Script::new(DROP_STALE);
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix).arg(now).arg(nets);
        self.with(|c| inv.invoke::<usize>(c))
    }

    /// Rewrites the layout-1 records of `ids` into layout 2; how many were.
    pub(super) fn compact_records(&mut self, ids: &[i64]) -> Result<usize, StoreError> {
        let script = Script::new(COMPACT);
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix).arg(ids);
        self.with(|c| inv.invoke::<usize>(c))
    }
}
