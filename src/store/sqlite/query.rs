//! The admin's questions answered in SQL: a ban by id, the dashboard's figures (counts
//! and groups in SQL, only the last ten days' times read) and history pages (the page
//! itself in SQL when no address is asked for).

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use rusqlite::params;

use super::SqliteStore;
use super::row::{COLUMNS, ceil_secs};
use crate::ban::Ban;
use crate::ban::query::{self, BanQuery, Page, Summary};
use crate::store::StoreError;

impl SqliteStore {
    pub(super) fn ban_by_id(&mut self, id: i64) -> Result<Option<Ban>, StoreError> {
        self.query_one(
            &format!("SELECT {COLUMNS} FROM bans WHERE id = ?1"),
            params![id],
        )
    }

    /// In SQL: the dashboard must not read the whole history on every visit.
    pub(super) fn sql_summary(&mut self, now: DateTime<Utc>) -> Result<Summary, StoreError> {
        let err = |e| self.err(e);
        let (total, active): (i64, i64) = self
            .conn
            .query_row(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE lifted_at IS NULL) FROM bans",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT banned_at FROM bans WHERE banned_at >= ?1")
            .map_err(err)?;
        let times: Vec<i64> = stmt
            .query_map(params![query::first_day(now).timestamp()], |r| r.get(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT rule, server, COUNT(*) FROM bans GROUP BY rule, server")
            .map_err(err)?;
        let groups: Vec<(String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let latest = self.query(
            &format!("SELECT {COLUMNS} FROM bans ORDER BY banned_at DESC, id DESC LIMIT ?1"),
            params![query::LATEST as i64],
        )?;
        Ok(Summary {
            total: total as u64,
            active: active as u64,
            per_day: query::per_day(
                times
                    .into_iter()
                    .filter_map(|t| DateTime::from_timestamp(t, 0)),
                now,
            ),
            by_rule_server: query::sorted_groups(
                groups.into_iter().map(|(r, s, n)| (r, s, n as u64)),
            ),
            latest,
        })
    }

    /// Rule, server and dates in SQL, and the page too when no address is asked for.
    /// Containment of networks (either way) is no text comparison: then only ids and
    /// networks are read and tested here, and just the page's rows are loaded.
    pub(super) fn sql_search(&mut self, q: &BanQuery) -> Result<Page, StoreError> {
        const WHERE: &str = "(?1 IS NULL OR rule = ?1) AND (?2 IS NULL OR server = ?2)
            AND (?3 IS NULL OR banned_at >= ?3) AND (?4 IS NULL OR banned_at < ?4)";
        let (rule, server) = (q.rule.as_deref(), q.server.as_deref());
        // Stored times are whole seconds: rounding the bounds up keeps both tests exact.
        let (from, to) = (q.from.map(ceil_secs), q.to.map(ceil_secs));
        let err = |e| self.err(e);
        let Some(net) = q.net else {
            let total: i64 = self
                .conn
                .query_row(
                    &format!("SELECT COUNT(*) FROM bans WHERE {WHERE}"),
                    params![rule, server, from, to],
                    |r| r.get(0),
                )
                .map_err(err)?;
            let bans = self.query(
                &format!(
                    "SELECT {COLUMNS} FROM bans WHERE {WHERE} ORDER BY banned_at DESC, id DESC LIMIT ?5 OFFSET ?6"
                ),
                params![rule, server, from, to, q.limit as i64, q.offset as i64],
            )?;
            return Ok(Page {
                bans,
                total: total as usize,
            });
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, net FROM bans WHERE {WHERE} ORDER BY banned_at DESC, id DESC"
            ))
            .map_err(err)?;
        let rows: Vec<(i64, String)> = stmt
            .query_map(params![rule, server, from, to], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        drop(stmt);
        let hits: Vec<i64> = rows
            .into_iter()
            .filter(|(_, text)| {
                text.parse::<IpNet>()
                    .is_ok_and(|b| net.contains(&b) || b.contains(&net))
            })
            .map(|(id, _)| id)
            .collect();
        let mut bans = Vec::new();
        for id in hits.iter().skip(q.offset).take(q.limit) {
            bans.extend(self.ban_by_id(*id)?);
        }
        Ok(Page {
            bans,
            total: hits.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::{NewBan, Origin};

    fn ban(net: &str) -> NewBan {
        NewBan {
            net: crate::net::parse_net(net).unwrap(),
            rule: "sshd".into(),
            reason: "Failed password".into(),
            attempts: 5,
            server: "web-1".into(),
            source: Origin::Log,
            banned_at: Utc::now(),
            expires_at: None,
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        (dir, s)
    }

    #[test]
    fn summary_and_search_in_sql_answer_as_the_whole_history_does() {
        use crate::ban::{BanQuery, Summary};
        use crate::store::BanStore;
        let (_d, mut s) = store();
        let now = Utc::now();
        for i in 0..40i64 {
            let mut b = ban(&format!("192.0.2.{i}"));
            b.rule = ["sshd", "nginx", "manual"][i as usize % 3].into();
            b.server = ["a", "b"][i as usize % 2].into();
            b.banned_at = DateTime::from_timestamp(now.timestamp() - i * 7 * 3600, 0).unwrap();
            s.record(&b).unwrap();
        }
        for i in 0..10 {
            s.lift(
                &crate::net::parse_net(&format!("192.0.2.{i}")).unwrap(),
                now,
                "x",
            )
            .unwrap();
        }
        let all = SqliteStore::all_bans(&s).unwrap();
        assert_eq!(
            BanStore::summary(&mut s, now).unwrap(),
            Summary::of(&all, now)
        );
        let queries = [
            BanQuery {
                limit: 7,
                offset: 3,
                ..BanQuery::default()
            },
            BanQuery {
                rule: Some("nginx".into()),
                server: Some("b".into()),
                limit: 50,
                ..BanQuery::default()
            },
            BanQuery {
                net: Some("192.0.2.0/28".parse().unwrap()),
                limit: 50,
                ..BanQuery::default()
            },
            BanQuery {
                net: Some("192.0.2.0/24".parse().unwrap()),
                rule: Some("sshd".into()),
                offset: 4,
                limit: 5,
                ..BanQuery::default()
            },
            BanQuery {
                net: Some("192.0.2.7/32".parse().unwrap()),
                limit: 5,
                ..BanQuery::default()
            },
            BanQuery {
                from: Some(now - chrono::Duration::milliseconds(7 * 3600 * 1000 + 500)),
                limit: 50,
                ..BanQuery::default()
            },
            BanQuery {
                from: Some(now - chrono::Duration::days(3)),
                to: Some(now - chrono::Duration::days(1)),
                limit: 50,
                ..BanQuery::default()
            },
        ];
        for q in queries {
            assert_eq!(
                BanStore::search(&mut s, &q).unwrap(),
                q.page(all.clone()),
                "{q:?}"
            );
        }
        assert_eq!(BanStore::ban(&mut s, 5).unwrap().unwrap().id, 5);
        assert_eq!(BanStore::ban(&mut s, 500).unwrap(), None);
    }
}
