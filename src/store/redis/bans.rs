//! The bans in Redis: reading ban records (a pipeline at a time), the active ones, what
//! is due, the history and its purge; and the `BanStore` made of them, which queues in
//! the outbox what Redis cannot take now.

use std::collections::HashMap;

use ::redis::Value;
use chrono::{DateTime, Utc};
use ipnet::IpNet;

use super::{RedisStore, record};
use crate::ban::{Ban, BanQuery, NewBan, Page, Recorded, Summary};
use crate::store::{Active, ActivePage, BanStore, StoreError};

/// Ban records read per round trip.
const LOAD_CHUNK: usize = 1000;
/// Bans recorded per round trip.
const RECORD_CHUNK: usize = 1000;
/// Active bans read per round trip.
const PAGE: usize = 10_000;
/// How far back each page starts from where the last ended: bans lifted meanwhile may
/// shift the rest by as many without one being skipped.
const PAGE_OVERLAP: usize = 1000;

impl RedisStore {
    /// Reads one ban record.
    pub(super) fn load(&mut self, id: i64) -> Result<Option<Ban>, StoreError> {
        Ok(self.load_many(&[id])?.pop().flatten())
    }

    /// Reads ban records, `LOAD_CHUNK` at a time: the raw replies of a hundred thousand
    /// at once would take hundreds of MB. Packed records (layout 2) come in one HMGET;
    /// those not found there are read as hashes (layout 1), a pipeline of HGETALLs.
    pub(super) fn load_many(&mut self, ids: &[i64]) -> Result<Vec<Option<Ban>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let records = self.key("records");
        for chunk in ids.chunks(LOAD_CHUNK) {
            let packed: Vec<Option<String>> =
                self.with(|c| ::redis::cmd("HMGET").arg(&records).arg(chunk).query(c))?;
            let hashed: Vec<i64> = chunk
                .iter()
                .zip(&packed)
                .filter(|(_, p)| p.is_none())
                .map(|(id, _)| *id)
                .collect();
            let mut maps = self.hashes(&hashed)?.into_iter();
            for (id, p) in chunk.iter().zip(packed) {
                out.push(match p {
                    Some(line) => record::unpack(*id, &line),
                    None => maps.next().and_then(|m| record::decode(*id, &m)),
                });
            }
        }
        Ok(out)
    }

    /// The hashes of layout-1 records, one per id (empty for those that do not exist).
    fn hashes(&mut self, ids: &[i64]) -> Result<Vec<HashMap<String, String>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.key(&format!("ban:{id}")))
            .collect();
        self.with(|c| {
            let mut pipe = ::redis::pipe();
            for k in &keys {
                pipe.hgetall(k);
            }
            pipe.query(c)
        })
    }

    /// The start (Unix seconds) of every ban of `net` the store still knows: its words
    /// in `offences` (layout 2) and its `bans_of` sorted set (layout 1).
    fn ban_times(&mut self, net: &IpNet) -> Result<Vec<i64>, StoreError> {
        let offences = self.key("offences");
        let key = self.key(&format!("bans_of:{net}"));
        let (words, old): (Option<String>, Vec<(i64, f64)>) = self.with(|c| {
            ::redis::pipe()
                .cmd("HGET")
                .arg(&offences)
                .arg(net.to_string())
                .cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
        })?;
        let mut times: Vec<i64> = words
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|w| w.split_once(':')?.1.parse().ok())
            .collect();
        times.extend(old.into_iter().map(|(_, at)| at as i64));
        Ok(times)
    }

    /// The active bans of `nets`: a network in `expiry` is banned, by the ban `active`
    /// names (layout 1) or else by its last in `offences`, the highest id (layout 2: a
    /// network is banned again only once lifted).
    fn bans_of(&mut self, nets: &[String]) -> Result<Vec<Ban>, StoreError> {
        if nets.is_empty() {
            return Ok(Vec::new());
        }
        let (active, expiry, offences) =
            (self.key("active"), self.key("expiry"), self.key("offences"));
        let (named, ends, words): ActiveLookup = self.with(|c| {
            ::redis::pipe()
                .cmd("HMGET")
                .arg(&active)
                .arg(nets)
                .cmd("ZMSCORE")
                .arg(&expiry)
                .arg(nets)
                .cmd("HMGET")
                .arg(&offences)
                .arg(nets)
                .query(c)
        })?;
        let ids: Vec<i64> = named
            .into_iter()
            .zip(ends)
            .zip(words)
            .filter_map(|((named, end), words)| {
                named.or_else(|| end.and(last_offence(words.as_deref()?)))
            })
            .collect();
        Ok(self.load_many(&ids)?.into_iter().flatten().collect())
    }
}

/// Per network: the id `active` names, its end in `expiry`, its `offences` words.
type ActiveLookup = (Vec<Option<i64>>, Vec<Option<f64>>, Vec<Option<String>>);

/// The id of the last ban among a network's `offences` words (`id:time`).
fn last_offence(words: &str) -> Option<i64> {
    words
        .split_whitespace()
        .filter_map(|w| w.split_once(':')?.0.parse().ok())
        .max()
}

impl RedisStore {
    /// Queues bans for when Redis is back, reporting them as new: the server keeps
    /// protecting itself.
    fn queue_bans(&mut self, bans: &[NewBan], out: &mut Vec<Recorded>) -> Result<(), StoreError> {
        for ban in bans {
            self.queue_ban(ban)?;
            out.push(Recorded::New(Ban {
                id: 0,
                new: ban.clone(),
                lifted_at: None,
                lift_reason: None,
            }));
        }
        Ok(())
    }
}

impl BanStore for RedisStore {
    fn active_bans_of(&mut self, nets: &[IpNet]) -> Result<Vec<Ban>, StoreError> {
        let mut bans = Vec::new();
        for chunk in nets.chunks(LOAD_CHUNK) {
            let names: Vec<String> = chunk.iter().map(IpNet::to_string).collect();
            bans.extend(self.bans_of(&names)?);
        }
        Ok(bans)
    }
    /// When Redis is unreachable the bans are queued in the outbox and reported as new:
    /// the server keeps protecting itself.
    fn record_many(&mut self, bans: &[NewBan]) -> Result<Vec<Recorded>, StoreError> {
        let mut out = Vec::with_capacity(bans.len());
        let mut reachable = self.outbox_delivered()?;
        for chunk in bans.chunks(RECORD_CHUNK) {
            if reachable {
                match self.record_pipelined(chunk) {
                    Ok(r) => {
                        out.extend(r);
                        continue;
                    }
                    Err(StoreError::Unreachable { .. }) => reachable = false,
                    Err(e) => return Err(e),
                }
            }
            self.queue_bans(chunk, &mut out)?;
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
            self.queue_unban(net, at, why)?;
        }
        Ok(lifted)
    }

    fn active_bans(&mut self) -> Result<Vec<Ban>, StoreError> {
        let expiry = self.key("expiry");
        let nets: Vec<String> =
            self.with(|c| ::redis::cmd("ZRANGE").arg(&expiry).arg(0).arg(-1).query(c))?;
        let mut bans = Vec::with_capacity(nets.len());
        for chunk in nets.chunks(LOAD_CHUNK) {
            bans.extend(self.bans_of(chunk)?);
        }
        bans.sort_by_key(|b| (b.banned_at, b.id));
        Ok(bans)
    }

    fn all_bans(&mut self) -> Result<Vec<Ban>, StoreError> {
        let mut indexed = self.history(None, None)?;
        indexed.sort_by_key(|e| (e.at, e.id));
        let ids: Vec<i64> = indexed.iter().map(|e| e.id).collect();
        let loaded = self.load_many(&ids)?;
        // Records gone (past history_retention, in layout 1) leave the index too.
        let gone: Vec<i64> = ids
            .iter()
            .zip(&loaded)
            .filter(|(_, b)| b.is_none())
            .map(|(id, _)| *id)
            .collect();
        for chunk in gone.chunks(LOAD_CHUNK) {
            self.unindex(chunk)?;
        }
        Ok(loaded.into_iter().flatten().collect())
    }

    /// The bans due at `now`. A network due whose ban has no record (dropped by hand, or
    /// lost) leaves `expiry` here: it would be due for ever, and every server would wake
    /// for it without pause.
    fn due(&mut self, now: DateTime<Utc>) -> Result<Vec<Ban>, StoreError> {
        let expiry = self.key("expiry");
        let nets: Vec<String> = self.with(|c| {
            ::redis::cmd("ZRANGEBYSCORE")
                .arg(&expiry)
                .arg("-inf")
                .arg(now.timestamp())
                .query(c)
        })?;
        let bans = self.bans_of(&nets)?;
        if bans.len() < nets.len() {
            let found: std::collections::HashSet<String> =
                bans.iter().map(|b| b.net.to_string()).collect();
            let stale: Vec<&String> = nets.iter().filter(|n| !found.contains(*n)).collect();
            let dropped = self.drop_stale(now.timestamp(), &stale)?;
            if dropped > 0 {
                log::warn!(
                    "{expiry}: dropped {dropped} due networks whose ban has no record ({}...)",
                    stale[0]
                );
            }
        }
        Ok(bans)
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
        let since = since.timestamp();
        Ok(self.ban_times(net)?.iter().filter(|&&t| t >= since).count())
    }

    fn ban(&mut self, id: i64) -> Result<Option<Ban>, StoreError> {
        self.load(id)
    }

    /// A page of `expiry` by rank (`ZRANGE i j WITHSCORES`), which holds each active
    /// network with its end, so no ban record is read. A rank is no stable cursor: a ban
    /// lifted meanwhile shifts the ones after it, so each page starts `PAGE_OVERLAP`
    /// before where the last one ended (a ban may come twice; the caller checks with
    /// `still_active` before taking one it did not see for gone). A `ZSCAN` would need no
    /// overlap but costs Redis six times the CPU (1.6 s for a million bans, against 0.3 s).
    fn active_page(&mut self, cursor: u64) -> Result<ActivePage, StoreError> {
        let expiry = self.key("expiry");
        let (total, flat): (usize, Vec<String>) = self.with(|c| {
            ::redis::pipe()
                .cmd("ZCARD")
                .arg(&expiry)
                .cmd("ZRANGE")
                .arg(&expiry)
                .arg(cursor)
                .arg(cursor + PAGE as u64 - 1)
                .arg("WITHSCORES")
                .query(c)
        })?;
        let got = flat.len() / 2;
        let mut bans = Vec::with_capacity(got);
        for pair in flat.chunks_exact(2) {
            let (Ok(net), Ok(score)) = (pair[0].parse::<IpNet>(), pair[1].parse::<f64>()) else {
                log::warn!(
                    "{expiry}: skipped `{}` scored `{}`: not a network and a time",
                    pair[0],
                    pair[1]
                );
                continue;
            };
            bans.push(Active {
                net,
                expires_at: if score.is_finite() {
                    DateTime::from_timestamp(score as i64, 0)
                } else {
                    None
                },
            });
        }
        Ok(ActivePage {
            bans,
            next: (got == PAGE).then(|| cursor + (PAGE - PAGE_OVERLAP) as u64),
            total: (cursor == 0).then_some(total),
        })
    }

    fn still_active(&mut self, nets: &[IpNet]) -> Result<Vec<bool>, StoreError> {
        let expiry = self.key("expiry");
        let mut out = Vec::with_capacity(nets.len());
        for chunk in nets.chunks(LOAD_CHUNK) {
            let names: Vec<String> = chunk.iter().map(IpNet::to_string).collect();
            let scores: Vec<Option<f64>> =
                self.with(|c| ::redis::cmd("ZMSCORE").arg(&expiry).arg(&names).query(c))?;
            out.extend(scores.iter().map(Option::is_some));
        }
        Ok(out)
    }

    /// Whether the store knows a ban of that network begun at that second.
    fn holds(&mut self, ban: &NewBan) -> Result<bool, StoreError> {
        let at = ban.banned_at.timestamp();
        Ok(self.ban_times(&ban.net)?.contains(&at))
    }

    fn summary(&mut self, now: DateTime<Utc>) -> Result<Summary, StoreError> {
        self.indexed_summary(now)
    }

    fn search(&mut self, query: &BanQuery) -> Result<Page, StoreError> {
        self.indexed_search(query)
    }

    /// Sets layout 2, so every server records in it from now on, then rewrites the
    /// records of layout 1 a thousand at a time, each thousand in one script, which also
    /// moves them from layout 1's `history` into its buckets: the next thousand are
    /// always the first of what is left.
    fn compact(&mut self) -> Result<Option<usize>, StoreError> {
        let layout = self.key("layout");
        self.with(|c| ::redis::cmd("SET").arg(&layout).arg("2").query::<Value>(c))?;
        let mut done = 0;
        let mut last = Vec::new();
        loop {
            let ids = self.layout_1_history(LOAD_CHUNK)?;
            if ids.is_empty() {
                break;
            }
            if ids == last {
                return Err(StoreError::Redis {
                    url: self.url.clone(),
                    message: format!(
                        "compacting: ids {}.. stay in {} after being rewritten",
                        ids[0],
                        self.key("history")
                    ),
                });
            }
            done += self.compact_records(&ids)?;
            last = ids;
        }
        Ok(Some(done))
    }

    fn epoch(&mut self) -> Result<Option<String>, StoreError> {
        self.read_epoch().map(Some)
    }

    fn purge_history(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let ids: Vec<i64> = self.history(None, None)?.iter().map(|e| e.id).collect();
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
        // Packed records have no time to live: their network's past bans lose them here.
        let forgotten: Vec<(String, String)> = ids
            .iter()
            .zip(&loaded)
            .filter_map(|(id, b)| {
                let b = b.as_ref()?;
                b.lifted_at
                    .is_some_and(|t| t < before)
                    .then(|| (b.net.to_string(), id.to_string()))
            })
            .collect();
        let records = self.key("records");
        for chunk in old.chunks(LOAD_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|id| self.key(&format!("ban:{id}")))
                .collect();
            self.with(|c| {
                ::redis::pipe()
                    .cmd("DEL")
                    .arg(&keys)
                    .ignore()
                    .cmd("HDEL")
                    .arg(&records)
                    .arg(chunk)
                    .ignore()
                    .query::<Value>(c)
            })?;
            self.unindex(chunk)?;
        }
        for chunk in forgotten.chunks(LOAD_CHUNK) {
            self.forget_offences(chunk)?;
        }
        Ok(forgotten.len())
    }
}
