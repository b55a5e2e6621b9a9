//! The admin's pages, rendered on the server: sign-in, dashboard, a ban's details, the
//! history search, the ban form and the password form. Each takes what it shows and
//! returns HTML; none reads the store itself.

use chrono::{DateTime, Utc};

use super::chart;
use super::html::{Viewer, csrf_field, esc, page, url, when};
use crate::ban::{Ban, BanQuery, Origin, Page, Summary};
use crate::net::display_net;

/// A ban's country, from the GeoIP database when one is configured.
pub type Countries<'a> = &'a dyn Fn(&Ban) -> Option<String>;

pub fn sign_in(csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, esc(e))
    });
    page(
        "Sign in",
        None,
        &format!(
            r#"{error}<form method="post" action="/login" id="login-form" class="card narrow">{csrf}
<label>User <input name="user" id="user" autocomplete="username" required autofocus></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="sign-in">Sign in</button></form>"#,
            csrf = csrf_field(csrf)
        ),
    )
}

/// How a ban came to be, as seen from this server.
fn origin(ban: &Ban) -> &'static str {
    match ban.source {
        Origin::Log => "from its logs",
        Origin::Manual => "by hand",
        Origin::Remote => "by another server",
    }
}

fn until(ban: &Ban, now: DateTime<Utc>) -> String {
    match (ban.lifted_at, ban.expires_at) {
        (Some(t), _) => format!("lifted {}", when(t, now)),
        (None, Some(t)) => when(t, now),
        (None, None) => "forever".into(),
    }
}

fn ban_rows(bans: &[Ban], now: DateTime<Utc>, countries: Countries) -> String {
    let mut rows = String::new();
    for ban in bans {
        let country = countries(ban).map_or(String::new(), |c| format!("<td>{}</td>", esc(&c)));
        rows.push_str(&format!(
            r#"<tr><td><a href="/bans/{id}">{ip}</a></td><td>{rule}</td><td>{server}</td><td>{when}</td><td>{until}</td>{country}</tr>"#,
            id = ban.id,
            ip = esc(&display_net(&ban.net)),
            rule = esc(&ban.rule),
            server = esc(&ban.server),
            when = when(ban.banned_at, now),
            until = until(ban, now),
        ));
    }
    rows
}

fn ban_table(
    id: &str,
    bans: &[Ban],
    now: DateTime<Utc>,
    countries: Countries,
    geo: bool,
) -> String {
    if bans.is_empty() {
        return r#"<p class="empty">No bans.</p>"#.into();
    }
    format!(
        r#"<table id="{id}"><thead><tr><th>IP</th><th>Rule</th><th>Server</th><th>When</th><th>Until</th>{c}</tr></thead><tbody>{rows}</tbody></table>"#,
        c = if geo { "<th>Country</th>" } else { "" },
        rows = ban_rows(bans, now, countries)
    )
}

fn totals_table(title: &str, rows: &[(&str, u64)]) -> String {
    let body: String = rows
        .iter()
        .take(5)
        .map(|(k, n)| format!("<tr><td>{}</td><td class=\"num\">{n}</td></tr>", esc(k)))
        .collect();
    format!(
        r#"<section class="card"><h2>{title}</h2><table><tbody>{body}</tbody></table></section>"#,
        body = if body.is_empty() {
            "<tr><td>none yet</td></tr>".into()
        } else {
            body
        }
    )
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
    let latest = s.latest.first().map_or("none yet".to_string(), |b| {
        format!(
            r#"<a href="/bans/{}">{}</a> {}"#,
            b.id,
            esc(&display_net(&b.net)),
            when(b.banned_at, d.now)
        )
    });
    let days: Vec<(String, u64)> = s
        .per_day
        .iter()
        .map(|(day, n)| (day.format("%m-%d").to_string(), *n))
        .collect();
    let countries = d.per_country.as_ref().map_or(String::new(), |c| {
        let top: Vec<(String, u64)> = c.iter().take(12).cloned().collect();
        format!(
            r#"<section class="card wide"><h2>Bans per country</h2>{}</section>"#,
            chart::bars("bans-per-country", "Bans per country", &top)
        )
    });
    let body = format!(
        r#"<div class="cards">
<section class="card stat"><h2>Total bans</h2><p class="big" id="total-bans">{total}</p></section>
<section class="card stat"><h2>Active bans</h2><p class="big" id="active-bans">{active}</p></section>
<section class="card stat"><h2>Latest ban</h2><p id="latest-ban">{latest}</p></section>
</div>
<section class="card wide"><h2>Bans per day, last 10 days</h2>{chart}</section>
<div class="cards">{rules}{servers}</div>
{countries}
<section class="card wide"><h2>Latest bans</h2>{table}<p><a href="/history">All bans…</a></p></section>"#,
        total = s.total,
        active = s.active,
        chart = chart::bars("bans-per-day", "Bans per day, last 10 days", &days),
        rules = totals_table("Top rules", &s.totals_by(|r, _| r)),
        servers = totals_table("Top servers", &s.totals_by(|_, sv| sv)),
        table = ban_table(
            "latest",
            &s.latest,
            d.now,
            d.countries,
            d.per_country.is_some()
        ),
    );
    page("Dashboard", Some(viewer), &body)
}

pub fn ban_details(
    viewer: &Viewer,
    ban: &Ban,
    earlier: &[Ban],
    country: Option<String>,
    now: DateTime<Utc>,
) -> String {
    let ip = display_net(&ban.net);
    let state = if ban.lifted_at.is_none() {
        format!(
            r#"<span class="state active">active</span>
<form method="post" action="/unban" id="unban-form" class="inline">{csrf}<input type="hidden" name="ip" value="{ip}">
<label>Why <input name="reason" placeholder="unbanned in the admin"></label> <button type="submit" id="unban">Unban</button></form>"#,
            csrf = csrf_field(viewer.csrf),
            ip = esc(&ip)
        )
    } else {
        format!(
            r#"<span class="state lifted">lifted</span> {}"#,
            esc(ban.lift_reason.as_deref().unwrap_or(""))
        )
    };
    let country = country.map_or(String::new(), |c| {
        format!("<dt>Country</dt><dd>{}</dd>", esc(&c))
    });
    let why = if ban.source == Origin::Log || (ban.source == Origin::Remote && ban.rule != "manual")
    {
        "The log line that tipped it"
    } else {
        "Reason"
    };
    let others: Vec<Ban> = earlier.iter().filter(|b| b.id != ban.id).cloned().collect();
    let body = format!(
        r#"<section class="card wide" id="ban-details"><dl>
<dt>Address</dt><dd class="ip">{ip_text}</dd>
<dt>State</dt><dd>{state}</dd>
<dt>Rule</dt><dd>{rule}</dd>
<dt>Banned by</dt><dd>server <b>{server}</b>, {origin}</dd>
<dt>Attempts</dt><dd>{attempts}</dd>
<dt>When</dt><dd>{when}</dd>
<dt>Until</dt><dd>{until}</dd>{country}
</dl>
<h2>{why}</h2><pre class="reason" id="reason">{reason}</pre></section>
<section class="card wide"><h2>This address's other bans</h2>{others}
<p><a href="/history?ip={ip_url}">Search the history for {ip_text}</a></p></section>"#,
        ip_text = esc(&ip),
        ip_url = url(&ip),
        rule = esc(&ban.rule),
        server = esc(&ban.server),
        origin = origin(ban),
        attempts = ban.attempts,
        when = when(ban.banned_at, now),
        until = until(ban, now),
        reason = esc(&ban.reason),
        others = ban_table("earlier", &others, now, &|_| None, false),
    );
    page(&format!("Ban of {ip}"), Some(viewer), &body)
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
    let error = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, esc(e))
    });
    let page_no = query.offset / PAGE_SIZE + 1;
    let pages = result.total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: usize| {
        format!(
            "/history?ip={}&amp;rule={}&amp;server={}&amp;from={}&amp;to={}&amp;page={p}",
            url(&form.ip),
            url(&form.rule),
            url(&form.server),
            url(&form.from),
            url(&form.to)
        )
    };
    let mut nav = format!(
        r#"<p class="pages">Page {page_no} of {pages}, {} bans"#,
        result.total
    );
    if page_no > 1 {
        nav.push_str(&format!(
            r#" · <a href="{}" rel="prev">Newer</a>"#,
            link(page_no - 1)
        ));
    }
    if page_no < pages {
        nav.push_str(&format!(
            r#" · <a href="{}" rel="next" id="next-page">Older</a>"#,
            link(page_no + 1)
        ));
    }
    nav.push_str("</p>");
    let body = format!(
        r#"{error}<form method="get" action="/history" id="search-form" class="card wide search">
<label>IP or CIDR <input name="ip" value="{ip}" placeholder="192.0.2.0/24"></label>
<label>Rule <input name="rule" value="{rule}" placeholder="sshd"></label>
<label>Server <input name="server" value="{server}"></label>
<label>From <input name="from" type="date" value="{from}"></label>
<label>To <input name="to" type="date" value="{to}"></label>
<button type="submit">Search</button></form>
<section class="card wide">{nav}{table}</section>"#,
        ip = esc(&form.ip),
        rule = esc(&form.rule),
        server = esc(&form.server),
        from = esc(&form.from),
        to = esc(&form.to),
        table = ban_table(
            "history",
            &result.bans,
            now,
            countries.unwrap_or(&|_| None),
            countries.is_some()
        ),
    );
    page("History", Some(viewer), &body)
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
    let error = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, esc(e))
    });
    let body = format!(
        r#"{error}<form method="post" action="/ban" id="ban-form" class="card narrow">{csrf}
<label>IP or CIDR <input name="ip" id="ban-ip" value="{ip}" required placeholder="192.0.2.1 or 198.51.100.0/24"></label>
<label>For <input name="duration" id="ban-duration" value="{duration}" placeholder="{default} (30m, 12h, 7d, forever)"></label>
<label>Reason <input name="reason" id="ban-reason" value="{reason}" placeholder="banned by hand"></label>
<button type="submit" id="ban-submit">Ban</button></form>
<p class="hint">The ban goes into this server's firewall at once{fleet}. Addresses in the ignore list are refused.</p>"#,
        csrf = csrf_field(viewer.csrf),
        ip = esc(&form.ip),
        duration = esc(&form.duration),
        default = esc(default_duration),
        reason = esc(&form.reason),
        fleet = if viewer.fleet {
            ", and through Redis into every other server's"
        } else {
            ""
        },
    );
    page("Ban an address", Some(viewer), &body)
}

pub fn password_form(viewer: &Viewer, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, esc(e))
    });
    let body = format!(
        r#"{error}<form method="post" action="/password" id="password-form" class="card narrow">{csrf}
<label>Current password <input name="current" type="password" autocomplete="current-password" required></label>
<label>New password <input name="new" type="password" autocomplete="new-password" required minlength="{min}"></label>
<label>New password again <input name="confirm" type="password" autocomplete="new-password" required minlength="{min}"></label>
<button type="submit" id="change-password">Change password</button></form>
<p class="hint">Changing the password signs out every session of this user, this one included.</p>"#,
        csrf = csrf_field(viewer.csrf),
        min = super::auth::MIN_PASSWORD,
    );
    page("Password", Some(viewer), &body)
}

/// A short page for refusals and errors.
pub fn message(viewer: Option<&Viewer>, title: &str, text: &str) -> String {
    page(
        title,
        viewer,
        &format!(r#"<p class="error" role="alert">{}</p>"#, esc(text)),
    )
}
