//! Questions asked of the bans as a whole, for the admin and the metrics: a summary (how
//! many, per day, per rule and server, the latest) and a history search with pages.
//!
//! The answers are computed here from a list of bans; `BanStore` answers them this way
//! from `all_bans` by default, so every store answers them the same way, and a store may
//! answer faster itself.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, Local, NaiveDate, Utc};
use ipnet::IpNet;

use super::Ban;

/// What the dashboard shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bans in the history (active and lifted, within `history_retention`).
    pub total: u64,
    pub active: u64,
    /// Bans begun on each of the last `DAYS` local days, oldest first.
    pub per_day: Vec<(NaiveDate, u64)>,
    /// Bans by rule and server, most first.
    pub by_rule_server: Vec<(String, String, u64)>,
    /// The latest bans, newest first.
    pub latest: Vec<Ban>,
}

/// Days in `Summary::per_day`.
pub const DAYS: u64 = 10;
/// Bans in `Summary::latest`.
pub const LATEST: usize = 10;

impl Summary {
    pub fn of(bans: &[Ban], now: DateTime<Utc>) -> Summary {
        let mut groups: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for ban in bans {
            *groups.entry((&ban.rule, &ban.server)).or_default() += 1;
        }
        let mut latest: Vec<&Ban> = bans.iter().collect();
        latest.sort_by_key(|b| std::cmp::Reverse((b.banned_at, b.id)));
        Summary {
            total: bans.len() as u64,
            active: bans.iter().filter(|b| b.lifted_at.is_none()).count() as u64,
            per_day: per_day(bans.iter().map(|b| b.banned_at), now),
            by_rule_server: sorted_groups(
                groups
                    .into_iter()
                    .map(|((r, s), n)| (r.to_string(), s.to_string(), n)),
            ),
            latest: latest.into_iter().take(LATEST).cloned().collect(),
        }
    }

    /// Totals by one key (`by(|r, s| r)`: by rule), most first.
    pub fn totals_by<'a>(
        &'a self,
        key: impl Fn(&'a str, &'a str) -> &'a str,
    ) -> Vec<(&'a str, u64)> {
        let mut map: BTreeMap<&str, u64> = BTreeMap::new();
        for (rule, server, n) in &self.by_rule_server {
            *map.entry(key(rule, server)).or_default() += n;
        }
        let mut v: Vec<(&str, u64)> = map.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

/// The first instant of the oldest day in `Summary::per_day`.
pub fn first_day(now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.with_timezone(&Local).date_naive();
    let first = today.checked_sub_days(Days::new(DAYS - 1)).unwrap_or(today);
    first
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(Local).earliest())
        .map_or(now, |t| t.to_utc())
}

/// Bans per local day over the last `DAYS` days, from their start times.
pub fn per_day(
    times: impl Iterator<Item = DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<(NaiveDate, u64)> {
    let today = now.with_timezone(&Local).date_naive();
    let first = today.checked_sub_days(Days::new(DAYS - 1)).unwrap_or(today);
    let mut days: BTreeMap<NaiveDate, u64> = (0..DAYS)
        .filter_map(|i| first.checked_add_days(Days::new(i)))
        .map(|d| (d, 0))
        .collect();
    for t in times {
        if let Some(n) = days.get_mut(&t.with_timezone(&Local).date_naive()) {
            *n += 1;
        }
    }
    days.into_iter().collect()
}

/// (rule, server, count) most first, then by name.
pub fn sorted_groups(
    groups: impl Iterator<Item = (String, String, u64)>,
) -> Vec<(String, String, u64)> {
    let mut v: Vec<(String, String, u64)> = groups.collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    v
}

/// A history search. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BanQuery {
    /// Bans of this address or block, or of blocks that hold it.
    pub net: Option<IpNet>,
    pub rule: Option<String>,
    pub server: Option<String>,
    /// Bans begun at or after.
    pub from: Option<DateTime<Utc>>,
    /// Bans begun before.
    pub to: Option<DateTime<Utc>>,
    pub offset: usize,
    pub limit: usize,
}

/// One page of a search's results, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub bans: Vec<Ban>,
    /// How many bans match in all.
    pub total: usize,
}

impl BanQuery {
    pub fn matches(&self, ban: &Ban) -> bool {
        self.net
            .is_none_or(|q| q.contains(&ban.net) || ban.net.contains(&q))
            && self.rule.as_ref().is_none_or(|r| *r == ban.rule)
            && self.server.as_ref().is_none_or(|s| *s == ban.server)
            && self.from.is_none_or(|t| ban.banned_at >= t)
            && self.to.is_none_or(|t| ban.banned_at < t)
    }

    /// The page of `bans` this query asks for.
    pub fn page(&self, bans: Vec<Ban>) -> Page {
        let mut hits: Vec<Ban> = bans.into_iter().filter(|b| self.matches(b)).collect();
        hits.sort_by_key(|b| std::cmp::Reverse((b.banned_at, b.id)));
        let total = hits.len();
        Page {
            bans: hits
                .into_iter()
                .skip(self.offset)
                .take(self.limit)
                .collect(),
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::{NewBan, Origin};
    use chrono::TimeZone;

    fn ban(id: i64, net: &str, rule: &str, server: &str, at: DateTime<Utc>, lifted: bool) -> Ban {
        Ban {
            id,
            new: NewBan {
                net: net.parse().unwrap(),
                rule: rule.into(),
                reason: String::new(),
                attempts: 5,
                server: server.into(),
                source: Origin::Log,
                banned_at: at,
                expires_at: None,
            },
            lifted_at: lifted.then_some(at),
            lift_reason: None,
        }
    }

    #[test]
    fn summary_counts_days_rules_servers_and_latest() {
        let now = Local
            .with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
            .unwrap()
            .to_utc();
        let day = chrono::Duration::days(1);
        let bans = vec![
            ban(1, "192.0.2.1/32", "sshd", "a", now - day * 30, true),
            ban(2, "192.0.2.2/32", "sshd", "a", now - day * 2, true),
            ban(3, "192.0.2.3/32", "nginx", "b", now - day * 2, false),
            ban(4, "192.0.2.4/32", "sshd", "b", now, false),
        ];
        let s = Summary::of(&bans, now);
        assert_eq!((s.total, s.active), (4, 2));
        assert_eq!(s.per_day.len(), 10);
        assert_eq!(s.per_day[9], (now.with_timezone(&Local).date_naive(), 1));
        assert_eq!(s.per_day[7].1, 2);
        assert_eq!(
            s.per_day.iter().map(|d| d.1).sum::<u64>(),
            3,
            "the 30-day-old ban is outside"
        );
        assert_eq!(
            s.latest.iter().map(|b| b.id).collect::<Vec<_>>(),
            [4, 3, 2, 1]
        );
        assert_eq!(s.totals_by(|r, _| r), [("sshd", 3), ("nginx", 1)]);
        assert_eq!(s.totals_by(|_, s| s), [("a", 2), ("b", 2)]);
    }

    #[test]
    fn search_filters_by_block_rule_server_and_dates_newest_first() {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let h = chrono::Duration::hours(1);
        let bans = vec![
            ban(1, "192.0.2.1/32", "sshd", "a", t, true),
            ban(2, "192.0.2.9/32", "sshd", "b", t + h, false),
            ban(3, "198.51.100.0/24", "manual", "a", t + h * 2, false),
            ban(4, "192.0.2.1/32", "sshd", "a", t + h * 3, false),
        ];
        let q = |f: &dyn Fn(&mut BanQuery)| {
            let mut q = BanQuery {
                limit: 10,
                ..BanQuery::default()
            };
            f(&mut q);
            q.page(bans.clone())
                .bans
                .iter()
                .map(|b| b.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(q(&|_| {}), [4, 3, 2, 1]);
        assert_eq!(
            q(&|q: &mut BanQuery| q.net = Some("192.0.2.0/24".parse().unwrap())),
            [4, 2, 1]
        );
        assert_eq!(
            q(&|q: &mut BanQuery| q.net = Some("198.51.100.7/32".parse().unwrap())),
            [3]
        );
        assert_eq!(
            q(&|q: &mut BanQuery| q.rule = Some("sshd".into())),
            [4, 2, 1]
        );
        assert_eq!(q(&|q: &mut BanQuery| q.server = Some("b".into())), [2]);
        assert_eq!(q(&|q: &mut BanQuery| q.from = Some(t + h)), [4, 3, 2]);
        assert_eq!(q(&|q: &mut BanQuery| q.to = Some(t + h)), [1]);
        let mut paged = BanQuery {
            offset: 1,
            limit: 2,
            ..BanQuery::default()
        };
        let page = paged.page(bans.clone());
        assert_eq!(
            (
                page.total,
                page.bans.iter().map(|b| b.id).collect::<Vec<_>>()
            ),
            (4, vec![3, 2])
        );
        paged.offset = 4;
        assert!(paged.page(bans).bans.is_empty());
    }
}
