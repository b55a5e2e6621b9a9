//! What a signed-in user sees and does: the dashboard, a ban's details, the history
//! search, and manual bans and unbans (checked as the CLI checks them, recorded in the
//! store — and with Redis published to the fleet — for the daemon to apply: whether it
//! has, here, is shown with each ban).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, NaiveDate, NaiveTime, Utc};

use super::Admin;
use super::html::{self, Viewer};
use super::pages::{self, BanForm, Here, HistoryForm};
use crate::ban::{Ban, BanQuery, Recorded};
use crate::config::StoreKind;
use crate::control::{Paths, lock};
use crate::engine::manual::{self, ManualError};
use crate::net::{display_net, parse_net};
use crate::web::{Request, Response};

impl Admin {
    pub(super) fn dashboard(
        &mut self,
        viewer: &Viewer,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Response> {
        let mut summary = self.store.summary(now)?;
        crate::ban::mark_remote(&self.settings.config, &mut summary.latest);
        let per_country = match &self.geo {
            None => None,
            Some(geo) => {
                let mut counts = std::collections::BTreeMap::<String, u64>::new();
                for ban in self.store.all_bans()? {
                    let c = geo.country_of(&ban.net).unwrap_or_else(|| "unknown".into());
                    *counts.entry(c).or_default() += 1;
                }
                let mut v: Vec<(String, u64)> = counts.into_iter().collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                Some(v)
            }
        };
        let geo = self.geo.as_ref();
        let countries = |b: &Ban| geo.and_then(|g| g.country_of(&b.net));
        let d = pages::Dashboard {
            summary: &summary,
            now,
            per_country,
            countries: &countries,
        };
        Ok(Response::html(200, pages::dashboard(viewer, &d)))
    }

    pub(super) fn details(
        &mut self,
        viewer: &Viewer,
        id: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Response> {
        let ban = match id.parse::<i64>() {
            Ok(id) => self.store.ban(id)?,
            Err(_) => None,
        };
        let Some(ban) = ban else {
            return Ok(Response::html(
                404,
                pages::message(
                    Some(viewer),
                    "Not found",
                    "There is no ban with this number.",
                ),
            ));
        };
        let mut bans = vec![ban];
        let mut earlier = self
            .store
            .search(&BanQuery {
                net: Some(bans[0].net),
                limit: 50,
                ..BanQuery::default()
            })?
            .bans;
        crate::ban::mark_remote(&self.settings.config, &mut bans);
        crate::ban::mark_remote(&self.settings.config, &mut earlier);
        let country = self.geo.as_ref().and_then(|g| g.country_of(&bans[0].net));
        let here = self.here(bans[0].id);
        Ok(Response::html(
            200,
            pages::ban_details(viewer, &bans[0], &earlier, country, here, now),
        ))
    }

    pub(super) fn history(
        &mut self,
        viewer: &Viewer,
        req: &Request,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Response> {
        let param = |name: &str| req.query_param(name).unwrap_or_default().trim().to_string();
        let form = HistoryForm {
            ip: param("ip"),
            rule: param("rule"),
            server: param("server"),
            from: param("from"),
            to: param("to"),
        };
        let page: usize = req
            .query_param("page")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p >= 1)
            .unwrap_or(1);
        let mut query = BanQuery {
            rule: Some(form.rule.clone()).filter(|s| !s.is_empty()),
            server: Some(form.server.clone()).filter(|s| !s.is_empty()),
            offset: (page - 1).saturating_mul(pages::PAGE_SIZE),
            limit: pages::PAGE_SIZE,
            ..BanQuery::default()
        };
        let mut error = None;
        if !form.ip.is_empty() {
            match parse_net(&form.ip) {
                Ok(net) => query.net = Some(net),
                Err(e) => error = Some(e.to_string()),
            }
        }
        for (text, field, end) in [
            (&form.from, &mut query.from, false),
            (&form.to, &mut query.to, true),
        ] {
            if text.is_empty() {
                continue;
            }
            match day_start(text, end) {
                Some(t) => *field = Some(t),
                None => error = Some(format!("`{text}` is not a date (YYYY-MM-DD)")),
            }
        }
        let mut result = if error.is_some() {
            crate::ban::Page::default()
        } else {
            self.store.search(&query)?
        };
        crate::ban::mark_remote(&self.settings.config, &mut result.bans);
        let status = if error.is_some() { 400 } else { 200 };
        let geo = self.geo.as_ref();
        let countries = |b: &Ban| geo.and_then(|g| g.country_of(&b.net));
        Ok(Response::html(
            status,
            pages::history(
                viewer,
                &form,
                &query,
                &result,
                error.as_deref(),
                now,
                geo.is_some().then_some(&countries as pages::Countries),
            ),
        ))
    }

    pub(super) fn default_duration(&self) -> String {
        self.settings.config.ban_time.to_string()
    }

    pub(super) fn ban(
        &mut self,
        viewer: &Viewer,
        req: &Request,
        client: IpAddr,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Response> {
        let form = BanForm {
            ip: req.form("ip").unwrap_or_default(),
            duration: req.form("duration").unwrap_or_default(),
            reason: req.form("reason").unwrap_or_default(),
        };
        let default = self.default_duration();
        let refuse = |msg: &str| {
            Ok(Response::html(
                400,
                pages::ban_form(viewer, &form, &default, Some(msg)),
            ))
        };
        let reason = form.reason.trim();
        let reason = format!(
            "{} (admin: {})",
            if reason.is_empty() {
                "banned by hand"
            } else {
                reason
            },
            viewer.user
        );
        let new = match manual::check(
            &self.settings,
            &form.ip,
            Some(&form.duration),
            Some(&reason),
            now,
        ) {
            Ok(new) => new,
            Err(ManualError::Duration(e)) => return refuse(&format!("For: {e}")),
            Err(e) => return refuse(&e.to_string()),
        };
        let recorded = self.store.record_many(std::slice::from_ref(&new))?.pop();
        match recorded.ok_or_else(|| anyhow::anyhow!("the store recorded nothing"))? {
            Recorded::New(ban) => {
                self.await_daemon(ban.id);
                self.audit.event(
                    client,
                    viewer.user,
                    &format!("banned {}", display_net(&ban.net)),
                );
                // Id 0: Redis is away and the ban waits in the outbox.
                Ok(Response::redirect(&if ban.id == 0 {
                    format!("/history?ip={}", html::url(&display_net(&ban.net)))
                } else {
                    format!("/bans/{}", ban.id)
                }))
            }
            Recorded::AlreadyBanned(ban) => refuse(&format!(
                "{} is already banned (rule {}, since {}); unban it first to change the ban.",
                display_net(&ban.net),
                ban.rule,
                crate::time::human_time(ban.banned_at)
            )),
        }
    }

    pub(super) fn unban(
        &mut self,
        viewer: &Viewer,
        req: &Request,
        client: IpAddr,
        _now: DateTime<Utc>,
    ) -> anyhow::Result<Response> {
        let ip = req.form("ip").unwrap_or_default();
        let net = match parse_net(ip.trim()) {
            Ok(net) => net,
            Err(e) => {
                return Ok(Response::html(
                    400,
                    pages::message(Some(viewer), "Unban", &e.to_string()),
                ));
            }
        };
        let reason = req.form("reason").unwrap_or_default();
        let reason = format!(
            "{} (admin: {})",
            if reason.trim().is_empty() {
                "unbanned in the admin"
            } else {
                reason.trim()
            },
            viewer.user
        );
        let lifted = self.store.lift_many(&[net], Utc::now(), &reason)?.pop();
        match lifted {
            Some(ban) => {
                self.await_daemon(ban.id);
                self.audit.event(
                    client,
                    viewer.user,
                    &format!("unbanned {}", display_net(&net)),
                );
                Ok(Response::redirect(&format!("/bans/{}", ban.id)))
            }
            None => Ok(Response::html(
                400,
                pages::message(
                    Some(viewer),
                    "Unban",
                    &format!("{} was not banned.", display_net(&net)),
                ),
            )),
        }
    }
}

impl Admin {
    /// Whether this server's firewall agrees with the latest change of ban `id`: the
    /// daemon applied it, is about to, or is not running.
    fn here(&mut self, id: i64) -> Here {
        let lock = Paths::beside(&self.settings.config.sqlite.path).lock;
        let running = lock::daemon_running(&lock);
        let applied = match self.settings.config.store {
            // Published with the change: a running daemon applies it as it hears it.
            StoreKind::Redis => running,
            StoreKind::Sqlite => match (self.local.change_of(id), self.local.feed_applied()) {
                (Ok(Some(change)), Ok(read)) => read.is_some_and(|read| read >= change),
                // No change kept: older than what the daemon read (or than the feed).
                (Ok(None), Ok(_)) => true,
                (Err(e), _) | (_, Err(e)) => {
                    log::warn!("cannot tell whether the daemon applied ban {id}: {e}");
                    return Here::Unknown;
                }
            },
        };
        match (applied, running) {
            (true, _) => Here::Applied,
            (false, true) => Here::Pending,
            (false, false) => Here::NoDaemon,
        }
    }

    /// Gives a running daemon a moment to apply a change just recorded, so that the page
    /// shown next says it is in force (it takes milliseconds; the wait ends at a second).
    fn await_daemon(&mut self, id: i64) {
        let start = Instant::now();
        while self.here(id) == Here::Pending && start.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The start of a local day (`end`: of the day after, so that "to" includes its day).
fn day_start(text: &str, end: bool) -> Option<DateTime<Utc>> {
    let mut day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    if end {
        day = day.succ_opt()?;
    }
    day.and_time(NaiveTime::MIN)
        .and_local_timezone(Local)
        .earliest()
        .map(|t| t.to_utc())
}
