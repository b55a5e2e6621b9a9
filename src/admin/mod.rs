//! `pyfilter admin`: the web interface — dashboard, history, a ban's details, manual
//! bans and unbans, `/api/bans` and `/metrics` — served by the one pyfilter binary.
//!
//! HTTP workers (`http`) only read requests and write responses; one thread, the
//! `Admin`, owns the store, the sessions and the sign-in limiter and
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
mod identity;
mod machine;
pub mod pages;
pub mod session;
mod views;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use chrono::Utc;
use crossbeam_channel::{Sender, bounded};

use crate::cli::UsageError;
use crate::settings::Settings;
use crate::store::{AdminStore, SqliteStore, StoreError};
use crate::web::{Request, Response, Server};

use audit::Audit;
use auth::Verifier;
use html::Viewer;
use pages::BanForm;
use session::{Limiter, Sessions};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

const SESSION_COOKIE: &str = "pyfilter_session";
const LOGIN_COOKIE: &str = "pyfilter_login";

/// Connections served at once; their threads only do I/O, the `Admin` thread does the
/// work.
const CONNECTIONS: usize = 64;

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
        (Some(cert), Some(key)) => Some(crate::web::tls_config(&cert, &key)?),
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
    server.spawn("admin", CONNECTIONS, move |request| {
        let (reply, answer) = bounded(1);
        if requests.send((request, reply)).is_err() {
            return Response::text(503, "the admin is stopping\n");
        }
        answer
            .recv()
            .unwrap_or_else(|_| Response::text(500, "internal error\n"))
    })?;
    log::info!("admin ready on {scheme}://{bound}/");
    for (request, reply) in inbox {
        let _ = reply.send(admin.handle(request));
    }
    Ok(())
}

/// The admin's state, owned by one thread.
pub struct Admin {
    settings: Settings,
    /// The bans and the users and tokens.
    store: Box<dyn AdminStore>,
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
    /// Opens the store and the accounts; refuses to start without a user. The admin never
    /// touches the firewall: it records bans and unbans, and the daemon, the firewall's
    /// one owner, applies them (so the admin needs no privilege).
    pub fn open(settings: Settings) -> anyhow::Result<Admin> {
        let mut store = crate::store::open_admin(&settings)?;
        if store.user_count()? == 0 {
            return Err(UsageError(
                "the admin has no user yet, and there is no default one: create one with `pyfilter admin passwd NAME`".into(),
            )
            .into());
        }
        let local = SqliteStore::open(&settings.config.sqlite.path)?;
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
                // The details are in the log: this page may be shown before sign-in.
                let text = if status == 503 {
                    "The store cannot be reached just now; the admin's log says more."
                } else {
                    "Something went wrong; the admin's log says what."
                };
                Response::html(status, pages::message(None, "Error", text))
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
            // Browsers ask for it by themselves; a redirect to the sign-in page would be
            // wasted on them.
            "/favicon.ico" => return Ok(Response::text(404, "no icon\n")),
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
                self.sign_in_page(req, None, 200, secure)
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
            return Ok(csrf_refused());
        }
        let server = self.settings.config.server_name.clone();
        let viewer = Viewer {
            user: &signed.user,
            csrf: &signed.csrf,
            server: &server,
            fleet: self.settings.config.store == crate::config::StoreKind::Redis,
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

    /// Whether `ip` is a reverse proxy whose forwarding headers are believed.
    fn trusted_proxy(&self, ip: &IpAddr) -> bool {
        self.settings
            .config
            .admin
            .trusted_proxies
            .iter()
            .any(|n| n.0.contains(ip))
    }

    /// The client's address: the peer, or what a trusted reverse proxy says it is.
    fn client(&self, req: &Request) -> IpAddr {
        if !self.trusted_proxy(&req.peer) {
            return req.peer;
        }
        // The rightmost address no trusted proxy added is the client.
        let forwarded = req.header("x-forwarded-for").unwrap_or("");
        forwarded
            .rsplit(',')
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .find(|ip| !self.trusted_proxy(ip))
            .unwrap_or(req.peer)
    }

    /// Whether the browser's connection is HTTPS, here or up to a trusted proxy.
    fn secure(&self, req: &Request) -> bool {
        req.tls
            || (self.trusted_proxy(&req.peer)
                && req
                    .header("x-forwarded-proto")
                    .is_some_and(|p| p.eq_ignore_ascii_case("https")))
    }
}

/// The answer to a form without its CSRF token.
fn csrf_refused() -> Response {
    Response::html(
        403,
        pages::message(
            None,
            "Refused",
            "This form has no valid CSRF token; reload the page and try again.",
        ),
    )
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
}
