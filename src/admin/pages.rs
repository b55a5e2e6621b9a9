//! The admin's pages, rendered on the server: sign-in, dashboard, a ban's details, the
//! history search, the ban form and the password form. Each takes what it shows and
//! returns the page's HTML; none reads the store itself.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::chart;
use super::html::{Text, Viewer, csrf_field, page, url, when};
use crate::ban::{Ban, BanQuery, Origin, Page, Summary};
use crate::net::display_net;

/// A ban's country, from the GeoIP database when one is configured.
pub type Countries<'a> = &'a dyn Fn(&Ban) -> Option<String>;

/// Why a form was refused, above it.
fn alert(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error {
            p class="error" role="alert" { (Text(e)) }
        }
    }
}

pub fn sign_in(csrf: &str, error: Option<&str>) -> String {
    let body = html! {
        (alert(error))
        form method="post" action="/login" id="login-form" class="card narrow" {
            (csrf_field(csrf))
            label {
                "User "
                input name="user" id="user" autocomplete="username" required autofocus;
            }
            label {
                "Password "
                input name="password" id="password" type="password"
                    autocomplete="current-password" required;
            }
            button type="submit" id="sign-in" { "Sign in" }
        }
    };
    page("Sign in", None, body)
}

/// How a ban came to be, as seen from this server.
fn origin(ban: &Ban) -> &'static str {
    match ban.source {
        Origin::Log => "from its logs",
        Origin::Manual => "by hand",
        Origin::Remote => "by another server",
    }
}

fn until(ban: &Ban, now: DateTime<Utc>) -> Markup {
    html! {
        @match (ban.lifted_at, ban.expires_at) {
            (Some(t), _) => { "lifted " (when(t, now)) }
            (None, Some(t)) => (when(t, now)),
            (None, None) => "forever",
        }
    }
}

fn ban_table(
    id: &str,
    bans: &[Ban],
    now: DateTime<Utc>,
    countries: Countries,
    geo: bool,
) -> Markup {
    html! {
        @if bans.is_empty() {
            p class="empty" { "No bans." }
        } @else {
            table id=(id) {
                thead {
                    tr {
                        th { "IP" } th { "Rule" } th { "Server" } th { "When" } th { "Until" }
                        @if geo { th { "Country" } }
                    }
                }
                tbody {
                    @for ban in bans {
                        tr {
                            td { a href={ "/bans/" (ban.id) } { (display_net(&ban.net)) } }
                            td { (Text(&ban.rule)) }
                            td { (Text(&ban.server)) }
                            td { (when(ban.banned_at, now)) }
                            td { (until(ban, now)) }
                            @if let Some(country) = countries(ban) {
                                td { (Text(&country)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn totals_table(title: &str, rows: &[(&str, u64)]) -> Markup {
    html! {
        section class="card" {
            h2 { (title) }
            table {
                tbody {
                    @for (key, n) in rows.iter().take(5) {
                        tr { td { (Text(key)) } td class="num" { (n) } }
                    }
                    @if rows.is_empty() {
                        tr { td { "none yet" } }
                    }
                }
            }
        }
    }
}

pub struct Dashboard<'a> {
    pub summary: &'a Summary,
    pub now: DateTime<Utc>,
    /// Bans per country, when a GeoIP database is configured.
    pub per_country: Option<Vec<(String, u64)>>,
    pub countries: Countries<'a>,
}

pub fn dashboard(viewer: &Viewer, d: &Dashboard) -> String {
    let s = d.summary;
    let days: Vec<(String, u64)> = s
        .per_day
        .iter()
        .map(|(day, n)| (day.format("%m-%d").to_string(), *n))
        .collect();
    let body = html! {
        div class="cards" {
            section class="card stat" {
                h2 { "Total bans" }
                p class="big" id="total-bans" { (s.total) }
            }
            section class="card stat" {
                h2 { "Active bans" }
                p class="big" id="active-bans" { (s.active) }
            }
            section class="card stat" {
                h2 { "Latest ban" }
                p id="latest-ban" {
                    @match s.latest.first() {
                        None => "none yet",
                        Some(b) => {
                            a href={ "/bans/" (b.id) } { (display_net(&b.net)) }
                            " "
                            (when(b.banned_at, d.now))
                        }
                    }
                }
            }
        }
        section class="card wide" {
            h2 { "Bans per day, last 10 days" }
            (chart::bars("bans-per-day", "Bans per day, last 10 days", &days))
        }
        div class="cards" {
            (totals_table("Top rules", &s.totals_by(|r, _| r)))
            (totals_table("Top servers", &s.totals_by(|_, sv| sv)))
        }
        @if let Some(per_country) = &d.per_country {
            section class="card wide" {
                h2 { "Bans per country" }
                @let top = &per_country[..per_country.len().min(12)];
                (chart::bars("bans-per-country", "Bans per country", top))
            }
        }
        section class="card wide" {
            h2 { "Latest bans" }
            (ban_table("latest", &s.latest, d.now, d.countries, d.per_country.is_some()))
            p { a href="/history" { "All bans…" } }
        }
    };
    page("Dashboard", Some(viewer), body)
}

/// Whether this server's firewall agrees with a ban's record (its ban, or its lift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Here {
    /// The daemon applied it.
    Applied,
    /// The daemon runs and has not applied it yet.
    Pending,
    /// No daemon runs here: it applies it when it starts.
    NoDaemon,
    /// The store could not say.
    Unknown,
}

impl Here {
    fn text(self, active: bool) -> &'static str {
        match (self, active) {
            (Here::Applied, true) => "in force in this server's firewall",
            (Here::Applied, false) => "out of this server's firewall",
            (Here::Pending, _) => "recorded; the daemon is applying it",
            (Here::NoDaemon, _) => {
                "recorded, waiting: the daemon is not running here; it applies this when it starts"
            }
            (Here::Unknown, _) => "unknown (the store did not say)",
        }
    }
}

pub fn ban_details(
    viewer: &Viewer,
    ban: &Ban,
    earlier: &[Ban],
    country: Option<String>,
    here: Here,
    now: DateTime<Utc>,
) -> String {
    let ip = display_net(&ban.net);
    let why = if ban.source == Origin::Log || (ban.source == Origin::Remote && ban.rule != "manual")
    {
        "The log line that tipped it"
    } else {
        "Reason"
    };
    let others: Vec<Ban> = earlier.iter().filter(|b| b.id != ban.id).cloned().collect();
    let body = html! {
        section class="card wide" id="ban-details" {
            dl {
                dt { "Address" } dd class="ip" { (ip) }
                dt { "State" }
                dd {
                    @if ban.lifted_at.is_none() {
                        span class="state active" { "active" }
                        // The form is inline: the spaces around it show.
                        " "
                        form method="post" action="/unban" id="unban-form" class="inline" {
                            (csrf_field(viewer.csrf))
                            input type="hidden" name="ip" value=(ip);
                            " "
                            label {
                                "Why "
                                input name="reason" placeholder="unbanned in the admin";
                            }
                            " "
                            button type="submit" id="unban" { "Unban" }
                        }
                    } @else {
                        span class="state lifted" { "lifted" }
                        " "
                        (Text(ban.lift_reason.as_deref().unwrap_or("")))
                    }
                }
                dt { "This server" }
                dd id="here" class={ "here " (format!("{here:?}").to_lowercase()) } {
                    (here.text(ban.lifted_at.is_none()))
                }
                dt { "Rule" } dd { (Text(&ban.rule)) }
                dt { "Banned by" } dd { "server " b { (Text(&ban.server)) } ", " (origin(ban)) }
                dt { "Attempts" } dd { (ban.attempts) }
                dt { "When" } dd { (when(ban.banned_at, now)) }
                dt { "Until" } dd { (until(ban, now)) }
                @if let Some(country) = &country {
                    dt { "Country" } dd { (Text(country)) }
                }
            }
            h2 { (why) }
            pre class="reason" id="reason" { (Text(&ban.reason)) }
        }
        section class="card wide" {
            h2 { "This address's other bans" }
            (ban_table("earlier", &others, now, &|_| None, false))
            p { a href={ "/history?ip=" (url(&ip)) } { "Search the history for " (ip) } }
        }
    };
    page(&format!("Ban of {ip}"), Some(viewer), body)
}

/// The history search form's values, as typed.
#[derive(Debug, Default, Clone)]
pub struct HistoryForm {
    pub ip: String,
    pub rule: String,
    pub server: String,
    pub from: String,
    pub to: String,
}

pub const PAGE_SIZE: usize = 25;

pub fn history(
    viewer: &Viewer,
    form: &HistoryForm,
    query: &BanQuery,
    result: &Page,
    error: Option<&str>,
    now: DateTime<Utc>,
    countries: Option<Countries>,
) -> String {
    let page_no = query.offset / PAGE_SIZE + 1;
    let pages = result.total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: usize| {
        format!(
            "/history?ip={}&rule={}&server={}&from={}&to={}&page={p}",
            url(&form.ip),
            url(&form.rule),
            url(&form.server),
            url(&form.from),
            url(&form.to)
        )
    };
    let body = html! {
        (alert(error))
        form method="get" action="/history" id="search-form" class="card wide search" {
            label {
                "IP or CIDR "
                input name="ip" value=(Text(&form.ip)) placeholder="192.0.2.0/24";
            }
            label { "Rule " input name="rule" value=(Text(&form.rule)) placeholder="sshd"; }
            label { "Server " input name="server" value=(Text(&form.server)); }
            label { "From " input name="from" type="date" value=(Text(&form.from)); }
            label { "To " input name="to" type="date" value=(Text(&form.to)); }
            button type="submit" { "Search" }
        }
        section class="card wide" {
            p class="pages" {
                "Page " (page_no) " of " (pages) ", " (result.total) " bans"
                @if page_no > 1 {
                    " · " a href=(link(page_no - 1)) rel="prev" { "Newer" }
                }
                @if page_no < pages {
                    " · " a href=(link(page_no + 1)) rel="next" id="next-page" { "Older" }
                }
            }
            (ban_table(
                "history",
                &result.bans,
                now,
                countries.unwrap_or(&|_| None),
                countries.is_some()
            ))
        }
    };
    page("History", Some(viewer), body)
}

/// The ban form's values, as typed.
#[derive(Debug, Default, Clone)]
pub struct BanForm {
    pub ip: String,
    pub duration: String,
    pub reason: String,
}

pub fn ban_form(
    viewer: &Viewer,
    form: &BanForm,
    default_duration: &str,
    error: Option<&str>,
) -> String {
    let body = html! {
        (alert(error))
        form method="post" action="/ban" id="ban-form" class="card narrow" {
            (csrf_field(viewer.csrf))
            label {
                "IP or CIDR "
                input name="ip" id="ban-ip" value=(Text(&form.ip)) required
                    placeholder="192.0.2.1 or 198.51.100.0/24";
            }
            label {
                "For "
                input name="duration" id="ban-duration" value=(Text(&form.duration))
                    placeholder={ (Text(default_duration)) " (30m, 12h, 7d, forever)" };
            }
            label {
                "Reason "
                input name="reason" id="ban-reason" value=(Text(&form.reason))
                    placeholder="banned by hand";
            }
            button type="submit" id="ban-submit" { "Ban" }
        }
        p class="hint" {
            "The ban is recorded, and the daemon puts it into this server's firewall at once"
            @if viewer.fleet { ", and through Redis into every other server's" }
            " (a stopped daemon does when it starts). Addresses in the ignore list are refused."
        }
    };
    page("Ban an address", Some(viewer), body)
}

pub fn password_form(viewer: &Viewer, error: Option<&str>) -> String {
    let min = super::auth::MIN_PASSWORD;
    let body = html! {
        (alert(error))
        form method="post" action="/password" id="password-form" class="card narrow" {
            (csrf_field(viewer.csrf))
            label {
                "Current password "
                input name="current" type="password" autocomplete="current-password" required;
            }
            label {
                "New password "
                input name="new" type="password" autocomplete="new-password" required
                    minlength=(min);
            }
            label {
                "New password again "
                input name="confirm" type="password" autocomplete="new-password" required
                    minlength=(min);
            }
            button type="submit" id="change-password" { "Change password" }
        }
        p class="hint" {
            "Changing the password signs out every session of this user, this one included."
        }
    };
    page("Password", Some(viewer), body)
}

/// A short page for refusals and errors.
pub fn message(viewer: Option<&Viewer>, title: &str, text: &str) -> String {
    page(title, viewer, alert(Some(text)))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::ban::NewBan;

    const HOSTILE: &str = r#"<script>alert("x")</script> & 'y'"#;
    const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;";

    fn viewer() -> Viewer<'static> {
        Viewer {
            user: "alice",
            csrf: "token",
            server: "web-1",
            fleet: false,
        }
    }

    fn hostile_ban(now: DateTime<Utc>) -> Ban {
        Ban {
            id: 7,
            new: NewBan {
                net: "192.0.2.1/32".parse().unwrap(),
                rule: format!("rule {HOSTILE}"),
                reason: format!("reason {HOSTILE}"),
                attempts: 5,
                server: format!("server {HOSTILE}"),
                source: Origin::Log,
                banned_at: now,
                expires_at: None,
            },
            lifted_at: None,
            lift_reason: None,
        }
    }

    /// Only the page's own tag may open a script: `<script src="/static/app.js" defer>`.
    fn assert_no_markup_from(page: &str) {
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        assert!(!page.contains(HOSTILE), "{page}");
    }

    #[test]
    fn markup_in_a_bans_reason_rule_and_server_comes_out_escaped() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let ban = hostile_ban(now);
        let details = ban_details(&viewer(), &ban, &[], None, Here::Applied, now);
        assert_no_markup_from(&details);
        assert!(details.contains(&format!(
            r#"<pre class="reason" id="reason">reason {ESCAPED}</pre>"#
        )));
        assert!(details.contains(&format!("<dd>rule {ESCAPED}</dd>")));
        assert!(details.contains(&format!("server <b>server {ESCAPED}</b>")));

        let summary = Summary {
            latest: vec![ban.clone()],
            by_rule_server: vec![(ban.rule.clone(), ban.server.clone(), 1)],
            ..Summary::default()
        };
        let d = Dashboard {
            summary: &summary,
            now,
            per_country: None,
            countries: &|_| None,
        };
        let dash = dashboard(&viewer(), &d);
        assert_no_markup_from(&dash);
        assert!(dash.contains(&format!("<td>rule {ESCAPED}</td><td>server {ESCAPED}</td>")));
    }

    #[test]
    fn markup_in_a_page_title_comes_out_escaped() {
        let page = message(None, &format!("title {HOSTILE}"), "text");
        assert_no_markup_from(&page);
        assert!(page.contains(&format!("<title>title {ESCAPED} · pyfilter</title>")));
        assert!(page.contains(&format!("<h1>title {ESCAPED}</h1>")));
    }
}
