//! `pyfilter admin`: the web interface — dashboard, history, a ban's details, manual
//! bans and unbans, `/api/bans` and `/metrics` — served by the one pyfilter binary.
//!
//! HTTP workers (`http`) only read requests and write responses; one thread, the
//! `Admin`, owns the store, the firewall, the sessions and the sign-in limiter and
//! answers requests one at a time, so no state is shared between threads. That also
//! makes password checks (argon2id, deliberately slow) queue rather than pile up.
//!
//! Security, in the order a request meets it: security headers on every response; every
//! POST must come from this origin (`Origin`, else `Referer`) and carry the form's CSRF
//! token; every page but sign-in needs a live server-side session (idle ones expire; a
//! new password or signing out ends them); failed sign-ins are limited per client
//! address and written to the admin log that the `pyfilter-admin` rule reads.

pub mod audit;
pub mod auth;
pub mod chart;
pub mod geo;
pub mod html;
pub mod pages;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Local, NaiveDate, NaiveTime, Utc};
use crossbeam_channel::{Sender, bounded};

use crate::actions;
use crate::cmd::UsageError;
use crate::config::Settings;
use crate::firewall::Firewall;
use crate::http::{Request, Response, Server};
use crate::net::{display_net, parse_net};
use crate::store::{Accounts, Ban, BanQuery, BanStore, Recorded, SqliteStore, StoreError, User};

use audit::Audit;
use auth::Verifier;
use html::Viewer;
use pages::{BanForm, HistoryForm};
use session::{Limiter, Sessions};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

const SESSION_COOKIE: &str = "pyfilter_session";
const LOGIN_COOKIE: &str = "pyfilter_login";

/// HTTP worker threads: they only do I/O, the `Admin` thread does the work.
const WORKERS: usize = 8;

/// Where and how to listen, from the command line (over the `admin` configuration).
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Runs the admin until the process is stopped.
pub fn serve(settings: Settings, options: &Options) -> anyhow::Result<()> {
    let admin_config = &settings.config.admin;
    let addr = options.listen.unwrap_or(admin_config.listen);
    let cert = options.tls_cert.clone().or(admin_config.tls_cert.clone());
    let key = options.tls_key.clone().or(admin_config.tls_key.clone());
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(crate::http::tls_config(&cert, &key)?),
        (None, None) => None,
        _ => {
            return Err(UsageError(
                "TLS needs both a certificate and a key (--tls-cert and --tls-key, or admin.tls_cert and admin.tls_key)".into(),
            )
            .into());
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut admin = Admin::open(settings)?;
    let server = Server::bind(addr, tls)?;
    let bound = server.local_addr()?;
    let (requests, inbox) = bounded::<(Request, Sender<Response>)>(256);
    server.spawn("admin", WORKERS, move |request| {
        let (reply, answer) = bounded(1);
        if requests.send((request, reply)).is_err() {
            return Response::text(503, "the admin is stopping\n");
        }
        answer
            .recv()
            .unwrap_or_else(|_| Response::text(500, "internal error\n"))
    })?;
    log::warn!("admin ready on {scheme}://{bound}/");
    for (request, reply) in inbox {
        let _ = reply.send(admin.handle(request));
    }
    Ok(())
}

/// The admin's state, owned by one thread.
pub struct Admin {
    settings: Settings,
    store: Box<dyn BanStore>,
    accounts: Box<dyn Accounts>,
    firewall: Box<dyn Firewall>,
    /// The local SQLite file: the daemon's saved counters, for `/metrics`.
    local: SqliteStore,
    sessions: Sessions,
    limiter: Limiter,
    verifier: Verifier,
    audit: Audit,
    geo: Option<geo::Geo>,
}

/// A signed-in request's session, copied out of `Sessions`.
struct Signed {
    id: String,
    user: String,
    csrf: String,
}

impl Admin {
    /// Opens the store, the accounts and the firewall; refuses to start without a user.
    pub fn open(settings: Settings) -> anyhow::Result<Admin> {
        let mut accounts = crate::store::open_accounts(&settings)?;
        if accounts.user_count()? == 0 {
            return Err(UsageError(
                "the admin has no user yet, and there is no default one: create one with `pyfilter admin passwd NAME`".into(),
            )
            .into());
        }
        let store = crate::store::open(&settings)?;
        let local = SqliteStore::open(&settings.config.sqlite.path)?;
        let mut firewall = crate::firewall::open(&settings.config.firewall)?;
        firewall
            .init()
            .context("the admin bans and unbans in the firewall, as `pyfilter ban` does")?;
        let c = &settings.config.admin;
        let geo = match &c.geoip {
            Some(path) => Some(geo::Geo::open(path).map_err(UsageError)?),
            None => None,
        };
        Ok(Admin {
            sessions: Sessions::new(c.session_idle),
            limiter: Limiter::new(c.sign_in_attempts.get(), c.sign_in_window),
            verifier: Verifier::new()?,
            audit: Audit::new(c.log.clone()),
            geo,
            store,
            local,
            accounts,
            firewall,
            settings,
        })
    }

    /// Answers one request.
    pub fn handle(&mut self, req: Request) -> Response {
        let client = self.client(&req);
        let secure = self.secure(&req);
        let mut response = match self.route(&req, client, secure) {
            Ok(r) => r,
            Err(e) => {
                log::error!("admin: {} {}: {e:#}", req.method, req.path);
                let status = if e
                    .downcast_ref::<StoreError>()
                    .is_some_and(|e| matches!(e, StoreError::Unreachable { .. }))
                {
                    503
                } else {
                    500
                };
                Response::html(status, pages::message(None, "Error", &format!("{e:#}")))
            }
        };
        response.headers.extend(
            [
                (
                    "Content-Security-Policy",
                    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
                ("X-Frame-Options", "DENY"),
                // Not `no-referrer`: with it, browsers send `Origin: null` on POSTs.
                ("Referrer-Policy", "same-origin"),
                ("X-Content-Type-Options", "nosniff"),
                ("Cache-Control", "no-store"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        if secure {
            response.headers.push((
                "Strict-Transport-Security".into(),
                "max-age=31536000".into(),
            ));
        }
        response
    }

    fn route(&mut self, req: &Request, client: IpAddr, secure: bool) -> anyhow::Result<Response> {
        let get = req.method == "GET" || req.method == "HEAD";
        let post = req.method == "POST";
        if !get && !post {
            return Ok(Response::text(405, "GET and POST only\n").with("Allow", "GET, HEAD, POST"));
        }
        match req.path.as_str() {
            "/static/app.css" if get => {
                return Ok(Response::new(200, "text/css; charset=utf-8", CSS));
            }
            "/static/app.js" if get => {
                return Ok(Response::new(200, "text/javascript; charset=utf-8", JS));
            }
            "/api/bans" if get => return self.api_bans(req),
            "/metrics" if get => return self.metrics(req),
            _ => {}
        }
        if post && !same_origin(req) {
            return Ok(Response::html(
                403,
                pages::message(
                    None,
                    "Refused",
                    "This form was not sent from this site (Origin check).",
                ),
            ));
        }
        if req.path == "/login" {
            return if get {
                self.sign_in_page(None, 200, secure)
            } else {
                self.sign_in(req, client, secure)
            };
        }
        let Some(signed) = self.session(req)? else {
            return Ok(if get {
                Response::redirect("/login")
            } else {
                Response::html(403, pages::message(None, "Refused", "Sign in first."))
            });
        };
        if post
            && !req
                .form("csrf")
                .is_some_and(|t| auth::same(&t, &signed.csrf))
        {
            return Ok(Response::html(
                403,
                pages::message(
                    None,
                    "Refused",
                    "This form has no valid CSRF token; reload the page and try again.",
                ),
            ));
        }
        let server = self.settings.config.server_name.clone();
        let viewer = Viewer {
            user: &signed.user,
            csrf: &signed.csrf,
            server: &server,
        };
        let now = Utc::now();
        match (req.method.as_str(), req.path.as_str()) {
            (_, "/") if get => self.dashboard(&viewer, now),
            (_, "/history") if get => self.history(&viewer, req, now),
            (_, p) if get && p.starts_with("/bans/") => {
                self.details(&viewer, &p["/bans/".len()..], now)
            }
            (_, "/ban") if get => Ok(Response::html(
                200,
                pages::ban_form(&viewer, &BanForm::default(), &self.default_duration(), None),
            )),
            ("POST", "/ban") => self.ban(&viewer, req, client, now),
            ("POST", "/unban") => self.unban(&viewer, req, client, now),
            (_, "/password") if get => Ok(Response::html(200, pages::password_form(&viewer, None))),
            ("POST", "/password") => self.change_password(&viewer, req, client, secure, now),
            ("POST", "/logout") => {
                self.sessions.end(&signed.id);
                self.audit.event(client, &signed.user, "signed out");
                Ok(Response::redirect("/login")
                    .with("Set-Cookie", &cookie(SESSION_COOKIE, "", "/", secure, true)))
            }
            _ => Ok(Response::html(
                404,
                pages::message(Some(&viewer), "Not found", "There is no such page."),
            )),
        }
    }

    /// The client's address: the peer, or what a trusted reverse proxy says it is.
    fn client(&self, req: &Request) -> IpAddr {
        let trusted = |ip: &IpAddr| {
            self.settings
                .config
                .admin
                .trusted_proxies
                .iter()
                .any(|n| n.0.contains(ip))
        };
        if !trusted(&req.peer) {
            return req.peer;
        }
        // The rightmost address no trusted proxy added is the client.
        let forwarded = req.header("x-forwarded-for").unwrap_or("");
        forwarded
            .rsplit(',')
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .find(|ip| !trusted(ip))
            .unwrap_or(req.peer)
    }

    fn secure(&self, req: &Request) -> bool {
        req.tls
            || (self
                .settings
                .config
                .admin
                .trusted_proxies
                .iter()
                .any(|n| n.0.contains(&req.peer))
                && req
                    .header("x-forwarded-proto")
                    .is_some_and(|p| p.eq_ignore_ascii_case("https")))
    }

    /// The request's live session: a session whose user was removed or whose password
    /// changed since sign-in is over.
    fn session(&mut self, req: &Request) -> anyhow::Result<Option<Signed>> {
        let Some(id) = req.cookie(SESSION_COOKIE) else {
            return Ok(None);
        };
        let Some(s) = self.sessions.get(id, Instant::now()) else {
            return Ok(None);
        };
        let (user, csrf, stamp) = (s.user.clone(), s.csrf.clone(), s.stamp);
        let current = self.accounts.user(&user)?;
        if current.is_none_or(|u| u.changed_at != stamp) {
            self.sessions.end(id);
            return Ok(None);
        }
        Ok(Some(Signed {
            id: id.to_string(),
            user,
            csrf,
        }))
    }

    fn sign_in_page(
        &self,
        error: Option<&str>,
        status: u16,
        secure: bool,
    ) -> anyhow::Result<Response> {
        let token = auth::token()?;
        Ok(Response::html(status, pages::sign_in(&token, error)).with(
            "Set-Cookie",
            &cookie(LOGIN_COOKIE, &token, "/login", secure, false),
        ))
    }

    fn sign_in(&mut self, req: &Request, client: IpAddr, secure: bool) -> anyhow::Result<Response> {
        let expected = req.cookie(LOGIN_COOKIE).unwrap_or("");
        if expected.is_empty() || !req.form("csrf").is_some_and(|t| auth::same(&t, expected)) {
            return Ok(Response::html(
                403,
                pages::message(
                    None,
                    "Refused",
                    "This form has no valid CSRF token; reload the page and try again.",
                ),
            ));
        }
        let name = req.form("user").unwrap_or_default();
        let password = req.form("password").unwrap_or_default();
        let now = Instant::now();
        if let Some(wait) = self.limiter.blocked(client, now) {
            self.audit.failed_sign_in(client, &name);
            let secs = wait.as_secs().max(1);
            return Ok(self
                .sign_in_page(
                    Some(&format!(
                        "Too many failed sign-ins from your address; try again in {} min.",
                        secs.div_ceil(60)
                    )),
                    429,
                    secure,
                )?
                .with("Retry-After", &secs.to_string()));
        }
        let user = self.accounts.user(&name)?;
        if !self.verifier.verify(user.as_ref(), &password) {
            self.limiter.failed(client, now);
            self.audit.failed_sign_in(client, &name);
            return self.sign_in_page(Some("Wrong user name or password."), 401, secure);
        }
        let user = user.context("verified above")?;
        self.limiter.succeeded(client);
        let id = auth::token()?;
        self.sessions
            .create(id.clone(), &user.name, auth::token()?, user.changed_at, now);
        self.audit.event(client, &user.name, "signed in");
        Ok(Response::redirect("/")
            .with(
                "Set-Cookie",
                &cookie(SESSION_COOKIE, &id, "/", secure, true),
            )
            .with(
                "Set-Cookie",
                &cookie(LOGIN_COOKIE, "", "/login", secure, false),
            ))
    }

    fn change_password(
        &mut self,
        viewer: &Viewer,
        req: &Request,
        client: IpAddr,
        secure: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Response> {
        let current = req.form("current").unwrap_or_default();
        let new = req.form("new").unwrap_or_default();
        let user = self.accounts.user(viewer.user)?;
        if !self.verifier.verify(user.as_ref(), &current) {
            self.audit.event(
                client,
                viewer.user,
                "password change refused (wrong current password)",
            );
            return Ok(Response::html(
                400,
                pages::password_form(viewer, Some("The current password is wrong.")),
            ));
        }
        if req.form("confirm").unwrap_or_default() != new {
            return Ok(Response::html(
                400,
                pages::password_form(viewer, Some("The two new passwords differ.")),
            ));
        }
        let hash = match auth::hash(&new) {
            Ok(h) => h,
            Err(e) => {
                return Ok(Response::html(
                    400,
                    pages::password_form(viewer, Some(&e.to_string())),
                ));
            }
        };
        let user = user.context("verified above")?;
        self.accounts.set_user(&User {
            name: user.name.clone(),
            hash,
            changed_at: next_stamp(&user, now),
        })?;
        self.sessions.end_user(&user.name);
        self.audit.event(client, &user.name, "password changed");
        Ok(Response::redirect("/login")
            .with("Set-Cookie", &cookie(SESSION_COOKIE, "", "/", secure, true)))
    }

    fn dashboard(&mut self, viewer: &Viewer, now: DateTime<Utc>) -> anyhow::Result<Response> {
        let mut summary = self.store.summary(now)?;
        crate::cmd::list::mark_remote(&self.settings, &mut summary.latest);
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

    fn details(
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
        crate::cmd::list::mark_remote(&self.settings, &mut bans);
        crate::cmd::list::mark_remote(&self.settings, &mut earlier);
        let country = self.geo.as_ref().and_then(|g| g.country_of(&bans[0].net));
        Ok(Response::html(
            200,
            pages::ban_details(viewer, &bans[0], &earlier, country, now),
        ))
    }

    fn history(
        &mut self,
        viewer: &Viewer,
        req: &Request,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Response> {
        let form = HistoryForm {
            ip: req.query_param("ip").unwrap_or_default().trim().to_string(),
            rule: req
                .query_param("rule")
                .unwrap_or_default()
                .trim()
                .to_string(),
            server: req
                .query_param("server")
                .unwrap_or_default()
                .trim()
                .to_string(),
            from: req
                .query_param("from")
                .unwrap_or_default()
                .trim()
                .to_string(),
            to: req.query_param("to").unwrap_or_default().trim().to_string(),
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
                Err(e) => error = Some(e),
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
            crate::store::Page::default()
        } else {
            self.store.search(&query)?
        };
        crate::cmd::list::mark_remote(&self.settings, &mut result.bans);
        let status = if error.is_some() { 400 } else { 200 };
        Ok(Response::html(
            status,
            pages::history(viewer, &form, &query, &result, error.as_deref(), now),
        ))
    }

    fn default_duration(&self) -> String {
        self.settings.config.ban_time.to_string()
    }

    fn ban(
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
        let new = match crate::cmd::ban::manual(
            &self.settings,
            &form.ip,
            Some(&form.duration),
            Some(&reason),
            now,
        ) {
            Ok(new) => new,
            Err(UsageError(msg)) => return refuse(&msg.replace("--for: ", "For: ")),
        };
        match actions::ban(self.store.as_mut(), self.firewall.as_mut(), &new)? {
            Recorded::New(ban) => {
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
                ban.banned_at
                    .with_timezone(&Local)
                    .format("%Y-%m-%d %H:%M:%S")
            )),
        }
    }

    fn unban(
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
                    pages::message(Some(viewer), "Unban", &e),
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
        match actions::unban(self.store.as_mut(), self.firewall.as_mut(), &net, &reason)? {
            Some(ban) => {
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

    /// Who may read `/api/bans` and `/metrics`: a bearer token from `admin token`, or a
    /// signed-in browser.
    fn machine_access(&mut self, req: &Request) -> anyhow::Result<bool> {
        if let Some(token) = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
        {
            return Ok(self.accounts.token(&auth::digest(token.trim()))?.is_some());
        }
        Ok(self.session(req)?.is_some())
    }

    fn api_bans(&mut self, req: &Request) -> anyhow::Result<Response> {
        if !self.machine_access(req)? {
            return Ok(Response::json(
                401,
                "{\"error\":\"a bearer token from `pyfilter admin token` is needed\"}\n",
            )
            .with("WWW-Authenticate", "Bearer"));
        }
        let all = req
            .query_param("all")
            .is_some_and(|v| v == "1" || v == "true");
        let mut bans = if all {
            self.store.all_bans()?
        } else {
            self.store.active_bans()?
        };
        crate::cmd::list::mark_remote(&self.settings, &mut bans);
        let json: Vec<_> = bans.iter().map(crate::cmd::list::to_json).collect();
        Ok(Response::json(200, serde_json::to_vec(&json)?))
    }

    fn metrics(&mut self, req: &Request) -> anyhow::Result<Response> {
        if !self.machine_access(req)? {
            return Ok(Response::text(
                401,
                "a bearer token from `pyfilter admin token` is needed\n",
            )
            .with("WWW-Authenticate", "Bearer"));
        }
        let mut text = String::new();
        crate::metrics::render_saved(&mut text, self.store.as_mut(), &self.local, Utc::now())?;
        Ok(Response::new(200, crate::metrics::CONTENT_TYPE, text))
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

/// The `changed_at` of a new password: later than the old one even within one second,
/// so that every session begun under the old password is void.
fn next_stamp(user: &User, now: DateTime<Utc>) -> DateTime<Utc> {
    let now = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    now.max(user.changed_at + chrono::Duration::seconds(1))
}

/// A cookie; an empty value deletes it.
fn cookie(name: &str, value: &str, path: &str, secure: bool, http_only: bool) -> String {
    let mut c = format!("{name}={value}; Path={path}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    if value.is_empty() {
        c.push_str("; Max-Age=0");
    }
    c
}

/// Whether a POST comes from a page of this site: its `Origin` (or, failing that, its
/// `Referer`) names the host the request was sent to.
fn same_origin(req: &Request) -> bool {
    let Some(host) = req.header("host") else {
        return false;
    };
    let origin = req
        .header("origin")
        .or_else(|| req.header("referer"))
        .and_then(|o| url::Url::parse(o).ok());
    let Some(origin) = origin else {
        return false;
    };
    let authority = match (origin.host_str(), origin.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return false,
    };
    authority.eq_ignore_ascii_case(host.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_name_the_host_asked() {
        let post = |h: &[(&str, &str)]| same_origin(&Request::new("POST", "/ban", h, b""));
        assert!(post(&[
            ("Host", "127.0.0.1:8080"),
            ("Origin", "http://127.0.0.1:8080")
        ]));
        assert!(post(&[
            ("Host", "admin.example"),
            ("Origin", "https://admin.example")
        ]));
        assert!(post(&[
            ("Host", "[::1]:8080"),
            ("Origin", "http://[::1]:8080")
        ]));
        assert!(post(&[
            ("Host", "a.example"),
            ("Referer", "https://a.example/ban")
        ]));
        assert!(!post(&[
            ("Host", "127.0.0.1:8080"),
            ("Origin", "http://evil.example")
        ]));
        assert!(!post(&[
            ("Host", "127.0.0.1:8080"),
            ("Origin", "http://127.0.0.1:9090")
        ]));
        assert!(!post(&[("Host", "127.0.0.1:8080"), ("Origin", "null")]));
        assert!(!post(&[("Host", "127.0.0.1:8080")]));
        assert!(!post(&[("Origin", "http://127.0.0.1:8080")]));
    }

    #[test]
    fn cookies_are_strict_http_only_and_secure_over_tls() {
        assert_eq!(
            cookie("s", "v", "/", false, true),
            "s=v; Path=/; SameSite=Strict; HttpOnly"
        );
        assert_eq!(
            cookie("s", "", "/", true, true),
            "s=; Path=/; SameSite=Strict; HttpOnly; Secure; Max-Age=0"
        );
    }

    #[test]
    fn a_new_password_stamp_is_later_even_within_the_second() {
        let now = Utc::now();
        let user = User {
            name: "a".into(),
            hash: String::new(),
            changed_at: DateTime::from_timestamp(now.timestamp(), 0).unwrap(),
        };
        assert!(next_stamp(&user, now) > user.changed_at);
    }
}
