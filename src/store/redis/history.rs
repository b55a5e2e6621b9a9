//! The history index: each ban's id and start time, for the admin's history and for
//! `prune`. Layout 2 keeps it in buckets `history:<id / 128>`, sorted sets of at most
//! 128 consecutive ids, which Redis stores as compact listpacks (about 11 bytes an entry
//! against 94 in one big sorted set); layout 1 kept one sorted set `history`, which a
//! store not yet compacted still has. Both are read together, so a store part-way
//! through `prune --compact` answers whole.

use ::redis::Value;

use super::RedisStore;
use crate::store::StoreError;

/// Ids per bucket: Redis's `zset-max-listpack-entries` default, so that a full bucket is
/// still a listpack. The scripts compute the bucket the same way (`history_key`).
pub(super) const BUCKET: i64 = 128;
/// Buckets read per round trip.
const BUCKETS_PER_TRIP: usize = 1000;

/// One ban as the history index knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Indexed {
    pub id: i64,
    /// Start of the ban, Unix seconds.
    pub at: i64,
}

impl RedisStore {
    /// The key of the bucket holding `id`.
    fn bucket(&self, id: i64) -> String {
        self.key(&format!("history:{}", id.div_euclid(BUCKET)))
    }

    /// The bans begun in `[min, max)` (Unix seconds; `None`: unbounded), from every
    /// bucket up to the last id given and from layout 1's `history`, in no set order.
    pub(super) fn history(
        &mut self,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Result<Vec<Indexed>, StoreError> {
        let min = min.map_or("-inf".to_string(), |t| t.to_string());
        let max = max.map_or("+inf".to_string(), |t| format!("({t}"));
        let next_id = self.key("next_id");
        let last: Option<i64> = self.with(|c| ::redis::cmd("GET").arg(&next_id).query(c))?;
        let mut keys = vec![self.key("history")];
        keys.extend((0..=last.unwrap_or(0).div_euclid(BUCKET)).map(|b| self.bucket(b * BUCKET)));
        let mut out = Vec::new();
        for chunk in keys.chunks(BUCKETS_PER_TRIP) {
            let replies: Vec<Vec<(i64, f64)>> = self.with(|c| {
                let mut pipe = ::redis::pipe();
                for key in chunk {
                    pipe.cmd("ZRANGEBYSCORE")
                        .arg(key)
                        .arg(&min)
                        .arg(&max)
                        .arg("WITHSCORES");
                }
                pipe.query(c)
            })?;
            out.extend(
                replies
                    .into_iter()
                    .flatten()
                    .map(|(id, at)| Indexed { id, at: at as i64 }),
            );
        }
        Ok(out)
    }

    /// The first `count` ids of layout 1's `history`.
    pub(super) fn layout_1_history(&mut self, count: usize) -> Result<Vec<i64>, StoreError> {
        let history = self.key("history");
        self.with(|c| {
            ::redis::cmd("ZRANGE")
                .arg(&history)
                .arg(0)
                .arg(count - 1)
                .query(c)
        })
    }

    /// Drops `ids` from the index, wherever each is.
    pub(super) fn unindex(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut by_bucket = std::collections::BTreeMap::<String, Vec<i64>>::new();
        for &id in ids {
            by_bucket.entry(self.bucket(id)).or_default().push(id);
        }
        let history = self.key("history");
        self.with(|c| {
            let mut pipe = ::redis::pipe();
            pipe.cmd("ZREM").arg(&history).arg(ids).ignore();
            for (key, ids) in &by_bucket {
                pipe.cmd("ZREM").arg(key).arg(ids).ignore();
            }
            pipe.query::<Value>(c)
        })
        .map(drop)
    }
}
