//! A ban row read back: the columns selected, and their decoding into a `Ban`. A row that
//! does not decode (a network or a time out of range) is `StoreError::Corrupt`, never a
//! panic.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row};

use super::SqliteStore;
use crate::ban::{Ban, NewBan};
use crate::store::StoreError;

pub(super) const COLUMNS: &str = "id, net, rule, reason, attempts, server, source, banned_at, expires_at, lifted_at, lift_reason";

impl SqliteStore {
    /// The ban of the row `sql` selects (`COLUMNS`), if any.
    pub(super) fn query_one(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<Ban>, StoreError> {
        let row = self
            .conn
            .query_row(sql, params, raw_ban)
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|raw| self.decode(raw)).transpose()
    }

    /// The bans of the rows `sql` selects (`COLUMNS`), in its order.
    pub(super) fn query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Ban>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let raws = stmt.query_map(params, raw_ban).map_err(|e| self.err(e))?;
        let raws: Vec<RawBan> = raws.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        raws.into_iter().map(|raw| self.decode(raw)).collect()
    }

    fn decode(&self, raw: RawBan) -> Result<Ban, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            message,
        };
        let time = |secs: i64| {
            DateTime::from_timestamp(secs, 0)
                .ok_or_else(|| corrupt(format!("ban {}: time {secs} out of range", raw.id)))
        };
        Ok(Ban {
            id: raw.id,
            new: NewBan {
                net: raw.net.parse().map_err(|_| {
                    corrupt(format!("ban {}: `{}` is not a network", raw.id, raw.net))
                })?,
                rule: raw.rule,
                reason: raw.reason,
                attempts: raw.attempts,
                server: raw.server,
                source: raw
                    .source
                    .parse()
                    .map_err(|e| corrupt(format!("ban {}: {e}", raw.id)))?,
                banned_at: time(raw.banned_at)?,
                expires_at: raw.expires_at.map(time).transpose()?,
            },
            lifted_at: raw.lifted_at.map(time).transpose()?,
            lift_reason: raw.lift_reason,
        })
    }
}

/// Whole seconds, rounded up as every time is shown (`time::to_second`): a ban is never
/// lifted before its time, nor shown with another time than the one kept.
pub(super) fn ceil_secs(t: DateTime<Utc>) -> i64 {
    crate::time::to_second(t).timestamp()
}

/// A row before its text columns are parsed.
struct RawBan {
    id: i64,
    net: String,
    rule: String,
    reason: String,
    attempts: u32,
    server: String,
    source: String,
    banned_at: i64,
    expires_at: Option<i64>,
    lifted_at: Option<i64>,
    lift_reason: Option<String>,
}

fn raw_ban(r: &Row) -> rusqlite::Result<RawBan> {
    Ok(RawBan {
        id: r.get(0)?,
        net: r.get(1)?,
        rule: r.get(2)?,
        reason: r.get(3)?,
        attempts: r.get(4)?,
        server: r.get(5)?,
        source: r.get(6)?,
        banned_at: r.get(7)?,
        expires_at: r.get(8)?,
        lifted_at: r.get(9)?,
        lift_reason: r.get(10)?,
    })
}
