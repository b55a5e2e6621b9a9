//! HTTP-level tests of `pyfilter admin`: the real binary serving on a loopback port,
//! spoken to over real sockets. The firewall is `none` here (the admin's bans reaching
//! a real firewall, and another server through Redis, are in tests/admin_browser.rs),
//! so these run outside any network namespace.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, RedisServer, Setup, stderr, stdout};

const PASSWORD: &str = "correct horse battery";

/// A running admin and the address it listens on.
struct Admin {
    child: Child,
    addr: String,
}

impl Admin {
    fn start(setup: &Setup, args: &[&str]) -> Admin {
        let mut child = Command::new(BIN)
            .arg("-c")
            .arg(setup.config())
            .arg("admin")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the admin stopped before it was ready")
                .unwrap();
            if let Some(rest) = line.split("admin ready on ").nth(1) {
                let url = rest.trim().trim_end_matches('/');
                break url.split("://").nth(1).unwrap().to_string();
            }
        };
        // Keep reading stderr so the admin never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Admin { child, addr }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One request; returns the status, the headers (lower-case names, repeated ones
    /// joined by newlines) and the body.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if method == "POST" {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut headers: HashMap<String, String> = HashMap::new();
        for line in lines {
            let (n, v) = line.split_once(": ").unwrap();
            headers
                .entry(n.to_ascii_lowercase())
                .and_modify(|old| {
                    old.push('\n');
                    old.push_str(v);
                })
                .or_insert_with(|| v.to_string());
        }
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        match cookie {
            Some(c) => self.request("GET", path, &[("Cookie", c)], ""),
            None => self.request("GET", path, &[], ""),
        }
    }

    /// A POST as a browser on this site sends it.
    fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Reply {
        let origin = self.origin();
        self.request(
            "POST",
            path,
            &[("Cookie", cookie), ("Origin", &origin)],
            &encode(form),
        )
    }

    /// Signs in; returns the session cookie (`name=value`).
    fn sign_in(&self, user: &str, password: &str) -> Result<String, Reply> {
        let page = self.get("/login", None);
        let login_cookie = page.cookie("pyfilter_login").unwrap();
        let csrf = page.field("csrf");
        let reply = self.post(
            "/login",
            &login_cookie,
            &[("csrf", &csrf), ("user", user), ("password", password)],
        );
        match reply.cookie("pyfilter_session") {
            Some(c) if reply.status == 303 => Ok(c),
            _ => Err(reply),
        }
    }

    /// The CSRF token of a signed-in session (every form carries it).
    fn csrf(&self, cookie: &str) -> String {
        self.get("/ban", Some(cookie)).field("csrf")
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// A cookie the reply sets, as `name=value` for the next request's Cookie header.
    fn cookie(&self, name: &str) -> Option<String> {
        self.header("set-cookie")
            .lines()
            .map(|c| c.split(';').next().unwrap())
            .find(|c| c.starts_with(&format!("{name}=")) && c.len() > name.len() + 1)
            .map(str::to_string)
    }

    /// The value of the first hidden input `name` in the page.
    fn field(&self, name: &str) -> String {
        let marker = format!(r#"name="{name}" value=""#);
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

fn encode(form: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

/// A directory whose configuration has an admin log, no firewall, and `extra`.
fn setup(extra: &str) -> Setup {
    let s = Setup::new("");
    s.write_config(&format!(
        "firewall: {{ backend: none }}\nadmin:\n  log: {}\n{extra}",
        s.path("admin.log").display()
    ));
    s
}

fn add_user(setup: &Setup, user: &str, password: &str) {
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(setup.config())
        .args(["admin", "passwd", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

fn admin_with_user(extra: &str) -> (Setup, Admin) {
    let s = setup(extra);
    add_user(&s, "alice", PASSWORD);
    let a = Admin::start(&s, &[]);
    (s, a)
}

#[test]
fn the_admin_refuses_to_start_without_a_user() {
    let s = setup("");
    let out = s.cli(None, &["admin", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pyfilter admin passwd"),
        "{}",
        stderr(&out)
    );
    // A password too short is refused, and nothing is created.
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(s.config())
        .args(["admin", "passwd", "alice"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "short").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("at least 10 characters"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_page_but_sign_in_is_served_without_a_session() {
    let (_s, a) = admin_with_user("");
    for path in ["/", "/history", "/bans/1", "/ban", "/password", "/nowhere"] {
        let r = a.get(path, None);
        assert_eq!((r.status, r.header("location")), (303, "/login"), "{path}");
        assert!(r.body.is_empty());
    }
    // A made-up session cookie is no session.
    let r = a.get("/", Some("pyfilter_session=0123456789abcdef"));
    assert_eq!(r.status, 303);
    for path in ["/api/bans", "/metrics"] {
        assert_eq!(a.get(path, None).status, 401, "{path}");
    }
    let origin = a.origin();
    let r = a.request("POST", "/ban", &[("Origin", &origin)], "ip=192.0.2.1");
    assert_eq!(r.status, 403);
    let login = a.get("/login", None);
    assert_eq!(login.status, 200);
    assert!(login.body.contains(r#"id="login-form""#));
    // Every response carries the security headers.
    let csp = login.header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(login.header("x-frame-options"), "DENY");
    assert_eq!(login.header("referrer-policy"), "same-origin");
    assert_eq!(a.get("/static/app.css", None).status, 200);
}

#[test]
fn cross_origin_and_csrf_less_posts_are_refused() {
    let (s, a) = admin_with_user("");
    let cookie = a.sign_in("alice", PASSWORD).unwrap();
    let csrf = a.csrf(&cookie);
    let ban = [
        ("csrf", csrf.as_str()),
        ("ip", "192.0.2.10"),
        ("duration", "1h"),
        ("reason", "x"),
    ];
    let body = encode(&ban);
    let evil = [
        ("Cookie", cookie.as_str()),
        ("Origin", "http://evil.example"),
    ];
    assert_eq!(a.request("POST", "/ban", &evil, &body).status, 403);
    let other_port = format!("http://127.0.0.1:{}", 1);
    let wrong_port = [("Cookie", cookie.as_str()), ("Origin", other_port.as_str())];
    assert_eq!(a.request("POST", "/ban", &wrong_port, &body).status, 403);
    let no_origin = [("Cookie", cookie.as_str())];
    assert_eq!(a.request("POST", "/ban", &no_origin, &body).status, 403);
    assert_eq!(
        a.post("/ban", &cookie, &ban[1..]).status,
        403,
        "no CSRF token"
    );
    let forged =
        [("csrf", "0".repeat(64).as_str()), ("ip", "192.0.2.10")].map(|(k, v)| (k, v.to_string()));
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        a.post("/ban", &cookie, &forged).status,
        403,
        "a wrong CSRF token"
    );
    let pw = [
        ("current", PASSWORD),
        ("new", "another long password"),
        ("confirm", "another long password"),
    ];
    assert_eq!(
        a.request("POST", "/password", &evil, &encode(&pw)).status,
        403
    );
    assert_eq!(
        a.post("/password", &cookie, &pw).status,
        403,
        "no CSRF token"
    );
    // Nothing was banned and the password still works.
    assert_eq!(stdout(&s.cli(None, &["list", "--json"])), "");
    assert!(a.sign_in("alice", PASSWORD).is_ok());
    // The same form, from this site with its token, is accepted.
    let r = a.post("/ban", &cookie, &ban);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.header("location").starts_with("/bans/"));
    let list = stdout(&s.cli(None, &["list", "--json"]));
    assert!(list.contains(r#""ip":"192.0.2.10""#), "{list}");
    assert!(
        list.contains(r#""source":"manual""#) && list.contains("(admin: alice)"),
        "{list}"
    );
}

#[test]
fn the_ban_form_validates_like_the_cli() {
    let (s, a) = admin_with_user("");
    let cookie = a.sign_in("alice", PASSWORD).unwrap();
    let csrf = a.csrf(&cookie);
    for (ip, duration, expected) in [
        ("not-an-ip", "1h", "not-an-ip"),
        ("192.0.2.1", "soon", "For:"),
        ("127.0.0.1", "1h", "ignore list"),
    ] {
        let r = a.post(
            "/ban",
            &cookie,
            &[("csrf", &csrf), ("ip", ip), ("duration", duration)],
        );
        assert_eq!(r.status, 400, "{ip} {duration}");
        assert!(r.body.contains(expected), "{ip}: {}", r.body);
        let cli = s.cli(None, &["ban", ip, "--for", duration]);
        assert_eq!(
            cli.status.code(),
            Some(2),
            "the CLI refuses {ip} {duration} too"
        );
    }
    assert_eq!(stdout(&s.cli(None, &["list", "--json"])), "");
    // A ban, then the same address again: refused with the existing ban named.
    let form = [
        ("csrf", csrf.as_str()),
        ("ip", "2001:db8::/64"),
        ("duration", "forever"),
    ];
    assert_eq!(a.post("/ban", &cookie, &form).status, 303);
    let again = a.post("/ban", &cookie, &form);
    assert_eq!(again.status, 400);
    assert!(again.body.contains("already banned"), "{}", again.body);
    // Unban from the admin.
    let r = a.post(
        "/unban",
        &cookie,
        &[
            ("csrf", &csrf),
            ("ip", "2001:db8::/64"),
            ("reason", "mistake"),
        ],
    );
    assert_eq!(r.status, 303);
    let details = a.get(r.header("location"), Some(&cookie));
    assert!(details.body.contains("lifted"), "{}", details.body);
    assert!(details.body.contains("mistake (admin: alice)"));
    assert_eq!(stdout(&s.cli(None, &["list", "--json"])), "");
}

#[test]
fn a_cookie_replayed_after_sign_out_or_a_password_change_is_refused() {
    let (s, a) = admin_with_user("");
    let cookie = a.sign_in("alice", PASSWORD).unwrap();
    assert_eq!(a.get("/", Some(&cookie)).status, 200);
    let csrf = a.csrf(&cookie);
    let out = a.post("/logout", &cookie, &[("csrf", &csrf)]);
    assert_eq!((out.status, out.header("location")), (303, "/login"));
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    assert_eq!(
        a.get("/", Some(&cookie)).status,
        303,
        "the old cookie after sign-out"
    );

    // A password change in the admin ends every session of the user.
    let one = a.sign_in("alice", PASSWORD).unwrap();
    let two = a.sign_in("alice", PASSWORD).unwrap();
    let csrf = a.csrf(&one);
    let wrong = a.post(
        "/password",
        &one,
        &[
            ("csrf", &csrf),
            ("current", "not the password"),
            ("new", "a brand new password"),
            ("confirm", "a brand new password"),
        ],
    );
    assert_eq!(wrong.status, 400, "the current password is asked for");
    assert_eq!(a.get("/", Some(&one)).status, 200);
    let changed = a.post(
        "/password",
        &one,
        &[
            ("csrf", &csrf),
            ("current", PASSWORD),
            ("new", "a brand new password"),
            ("confirm", "a brand new password"),
        ],
    );
    assert_eq!(changed.status, 303);
    assert_eq!(a.get("/", Some(&one)).status, 303);
    assert_eq!(a.get("/", Some(&two)).status, 303);
    assert!(a.sign_in("alice", PASSWORD).is_err());
    let three = a.sign_in("alice", "a brand new password").unwrap();

    // So does `admin passwd` from the command line, while the admin runs.
    add_user(&s, "alice", "the third long password");
    assert_eq!(a.get("/", Some(&three)).status, 303);
    assert!(a.sign_in("alice", "the third long password").is_ok());
}

#[test]
fn idle_sessions_expire() {
    let (_s, a) = admin_with_user("  session_idle: 2s\n");
    let cookie = a.sign_in("alice", PASSWORD).unwrap();
    assert_eq!(a.get("/", Some(&cookie)).status, 200);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(a.get("/", Some(&cookie)).status, 303);
}

#[test]
fn sign_in_takes_as_long_for_an_unknown_user_as_for_a_wrong_password() {
    let (_s, a) = admin_with_user("  sign_in_attempts: 1000\n");
    // Alternate the two so that whatever else the machine does weighs on both alike,
    // and compare medians: without a decoy hash an unknown user would be refused in well
    // under a millisecond, a known one after a whole argon2id verification.
    let once = |user: &str| {
        let t = Instant::now();
        assert!(a.sign_in(user, "wrong password!").is_err());
        t.elapsed()
    };
    once("alice");
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        known.push(once("alice"));
        unknown.push(once("nobody"));
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[4], unknown[4]);
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "known user {known:?}, unknown user {unknown:?}"
    );
}

#[test]
fn failed_sign_ins_are_rate_limited_logged_and_banned_by_the_shipped_rule() {
    let (s, a) = admin_with_user("  sign_in_attempts: 3\n  sign_in_window: 10m\n");
    for _ in 0..3 {
        let r = a.sign_in("alice", "wrong password!").unwrap_err();
        assert_eq!(r.status, 401);
        assert!(r.body.contains("Wrong user name or password"));
    }
    // Now even the right password is refused from this address.
    let r = a.sign_in("alice", PASSWORD).unwrap_err();
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").parse::<u64>().unwrap() > 500);
    assert_eq!(
        a.sign_in("nobody", "guess number five").unwrap_err().status,
        429
    );
    let log = std::fs::read_to_string(s.path("admin.log")).unwrap();
    assert_eq!(
        log.matches("failed sign-in from 127.0.0.1 for user \"alice\"")
            .count(),
        4,
        "{log}"
    );
    assert_eq!(
        log.matches("failed sign-in from 127.0.0.1 for user \"nobody\"")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains("signed in"));

    // The shipped rule reads that log: scan it as the daemon would (loopback is in the
    // default ignore list, so this configuration ignores nothing).
    let scan = Setup::new("ignore: []\nenabled_rules: [pyfilter-admin]\nrules: {}\n");
    let out = scan.cli(
        None,
        &[
            "scan",
            "--rule",
            "pyfilter-admin",
            "--json",
            s.path("admin.log").to_str().unwrap(),
        ],
    );
    let text = stdout(&out);
    let matches = text
        .lines()
        .filter(|l| l.contains(r#""type":"match""#) && l.contains(r#""ip":"127.0.0.1""#));
    assert_eq!(matches.count(), 5, "{text}\n{}", stderr(&out));
    assert!(
        text.lines()
            .any(|l| l.contains(r#""type":"ban""#) && l.contains(r#""ip":"127.0.0.1""#)),
        "five failed sign-ins ban the address: {text}"
    );
}

#[test]
fn reason_rule_and_server_names_are_shown_as_text_never_as_markup() {
    let s = setup("server_name: '<img src=x onerror=alert(1)>'\n");
    add_user(&s, "alice", PASSWORD);
    {
        let mut store = pyfilter::store::SqliteStore::open(&s.path("db/pyfilter.db")).unwrap();
        let now = chrono::Utc::now();
        store
            .record(&pyfilter::store::NewBan {
                net: "192.0.2.66/32".parse().unwrap(),
                rule: "<script>alert('rule')</script>".into(),
                reason: "Failed password for <script>alert(\"x\")</script> from 192.0.2.66".into(),
                attempts: 5,
                server: "\"><svg onload=alert(2)>".into(),
                source: pyfilter::store::Origin::Log,
                banned_at: now,
                expires_at: None,
            })
            .unwrap();
    }
    let a = Admin::start(&s, &[]);
    let cookie = a.sign_in("alice", PASSWORD).unwrap();
    let pages = [
        a.get("/", Some(&cookie)).body,
        a.get("/bans/1", Some(&cookie)).body,
        a.get("/history?rule=%3Cscript%3E", Some(&cookie)).body,
        a.get("/history", Some(&cookie)).body,
    ];
    for page in &pages {
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<svg onload"), "{page}");
        assert!(!page.contains("<img src=x"), "{page}");
    }
    assert!(
        pages[1].contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
        "{}",
        pages[1]
    );
    assert!(pages[0].contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(pages[2].contains("value=\"&lt;script&gt;\""));
}

#[test]
fn dashboard_history_and_details_show_the_bans() {
    let (s, a) = admin_with_user("");
    for i in 1..=30 {
        let out = s.cli(
            None,
            &[
                "ban",
                &format!("198.51.100.{i}"),
                "--reason",
                &format!("ban {i}"),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = s.cli(None, &["unban", "198.51.100.1"]);
    assert!(out.status.success());
    let cookie = a.sign_in("alice", PASSWORD).unwrap();
    let dash = a.get("/", Some(&cookie)).body;
    assert!(
        dash.contains(r#"<p class="big" id="total-bans">30</p>"#),
        "{dash}"
    );
    assert!(dash.contains(r#"<p class="big" id="active-bans">29</p>"#));
    assert!(dash.contains(r#"<svg id="bans-per-day""#));
    assert_eq!(dash.matches("<rect").count(), 10, "one bar per day");
    assert!(dash.contains(">30</text>"), "today's bar says 30");
    let latest = &dash[dash.find(r#"<table id="latest""#).unwrap()..];
    assert_eq!(latest.matches("<tr><td><a href=\"/bans/").count(), 10);
    assert!(
        latest.find("198.51.100.30").unwrap() < latest.find("198.51.100.29").unwrap(),
        "newest first"
    );
    assert!(dash.contains("just now") && dash.contains("manual"));

    let h1 = a.get("/history", Some(&cookie)).body;
    assert!(h1.contains("Page 1 of 2, 30 bans"), "{h1}");
    let h2 = a.get("/history?page=2", Some(&cookie)).body;
    assert!(
        h2.contains("Page 2 of 2") && h2.contains("198.51.100.1<"),
        "{h2}"
    );
    let net = a.get("/history?ip=198.51.100.0%2F28", Some(&cookie)).body;
    assert!(net.contains("15 bans"), "{net}");
    let none = a.get("/history?rule=sshd", Some(&cookie)).body;
    assert!(none.contains("0 bans"));
    let bad = a.get("/history?ip=nope&from=yesterday", Some(&cookie));
    assert_eq!(bad.status, 400);
    let future = a.get("/history?from=2999-01-01", Some(&cookie)).body;
    assert!(future.contains("0 bans"));

    let details = a.get("/bans/1", Some(&cookie)).body;
    assert!(
        details.contains("198.51.100.1") && details.contains("lifted"),
        "{details}"
    );
    assert!(details.contains("by hand") && details.contains("ban 1"));
    assert_eq!(a.get("/bans/999", Some(&cookie)).status, 404);
    assert_eq!(a.get("/bans/x", Some(&cookie)).status, 404);
}

#[test]
fn the_api_and_metrics_answer_a_bearer_token() {
    let (s, a) = admin_with_user("");
    assert!(
        s.cli(None, &["ban", "192.0.2.44", "--reason", "api"])
            .status
            .success()
    );
    let out = s.cli(None, &["admin", "token", "--name", "prometheus"]);
    assert!(out.status.success());
    let token = stdout(&out).trim().to_string();
    assert_eq!(token.len(), 64);
    let auth = format!("Bearer {token}");
    let r = a.request("GET", "/api/bans", &[("Authorization", &auth)], "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    let api: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let list: serde_json::Value =
        serde_json::from_str(stdout(&s.cli(None, &["list", "--json"])).trim()).unwrap();
    assert_eq!(
        api,
        serde_json::Value::Array(vec![list]),
        "the same fields as list --json"
    );
    let wrong = a.request("GET", "/api/bans", &[("Authorization", "Bearer 1234")], "");
    assert_eq!(wrong.status, 401);

    let m = a.request("GET", "/metrics", &[("Authorization", &auth)], "");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    let samples = parse_prometheus(&m.body);
    assert_eq!(
        samples.get("pyfilter_active_bans"),
        Some(&1.0),
        "{}",
        m.body
    );
    assert_eq!(
        samples.get(r#"pyfilter_bans_total{rule="manual",server="test-1"}"#),
        Some(&1.0),
        "{}",
        m.body
    );
}

/// A strict reader of the Prometheus text format: every sample's family has HELP and
/// TYPE before it, names and labels are well formed, values are numbers.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "untyped", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(name_ok(name), "bad name in {line}");
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
            let family = typed
                .keys()
                .find(|f| {
                    name == f.as_str()
                        || name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| ["_total", "_sum", "_count", "_bucket"].contains(&s))
                })
                .unwrap_or_else(|| panic!("no TYPE before {line}"));
            assert!(helped.contains(family), "no HELP for {family}");
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            samples.insert(series.to_string(), v);
        }
    }
    samples
}

#[test]
fn tls_serves_https_with_secure_cookies() {
    let s = setup("");
    add_user(&s, "alice", PASSWORD);
    let (cert, key) = (s.path("cert.pem"), s.path("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed by scripts/test");
    assert!(out.status.success(), "{}", stderr(&out));
    let a = Admin::start(
        &s,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let out = Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null"])
        .arg(format!("https://{}/login", a.addr))
        .output()
        .expect("curl is installed by scripts/test");
    let head = stdout(&out);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}{}", stderr(&out));
    assert!(head.contains("; Secure"), "{head}");
    assert!(head.contains("Strict-Transport-Security"), "{head}");
    // Plain HTTP to the TLS port gets no page.
    let mut plain = TcpStream::connect(&a.addr).unwrap();
    plain
        .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("login-form"));
    // A key without a certificate is a usage error.
    let out = s.cli(None, &["admin", "--tls-key", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn countries_show_when_a_geoip_database_is_configured() {
    let db = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-test.mmdb");
    let (s, a) = admin_with_user(&format!("  geoip: {}\n", db.display()));
    for ip in ["192.0.2.1", "192.0.2.2", "198.51.100.3", "10.1.2.3"] {
        assert!(s.cli(None, &["ban", ip]).status.success());
    }
    let cookie = a.sign_in("alice", PASSWORD).unwrap();
    let dash = a.get("/", Some(&cookie)).body;
    assert!(dash.contains(r#"<svg id="bans-per-country""#), "{dash}");
    assert!(dash.contains("Germany (DE): 2"), "{dash}");
    assert!(dash.contains("<td>Brazil (BR)</td>"));
    assert!(dash.contains("unknown: 1"));
    let details = a.get("/bans/1", Some(&cookie)).body;
    assert!(
        details.contains("<dt>Country</dt><dd>Germany (DE)</dd>"),
        "{details}"
    );

    // Without a database the same pages are complete, with no country anywhere.
    let (s2, plain) = admin_with_user("");
    assert!(s2.cli(None, &["ban", "192.0.2.1"]).status.success());
    let cookie = plain.sign_in("alice", PASSWORD).unwrap();
    let dash = plain.get("/", Some(&cookie)).body;
    assert!(
        !dash.contains("country") && !dash.contains("Country"),
        "{dash}"
    );
    assert!(dash.contains(r#"<svg id="bans-per-day""#));
}

#[test]
fn with_redis_a_fleet_shares_users_and_an_admin_ban_is_published_at_once() {
    let redis = RedisServer::start();
    let fleet = |name: &str| {
        setup(&format!(
            "server_name: {name}\nstore: redis\nredis: {{ url: '{}' }}\n",
            redis.url()
        ))
    };
    let (sa, sb) = (fleet("a"), fleet("b"));
    // The user is created through server a; server b's admin knows it.
    add_user(&sa, "alice", PASSWORD);
    let hash = redis.cli(&["HGET", "pyfilter:admin:users", "alice"]);
    assert!(hash.contains("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    let (a, b) = (Admin::start(&sa, &[]), Admin::start(&sb, &[]));
    let cookie_b = b.sign_in("alice", PASSWORD).unwrap();

    // Listen to the ban channel as every daemon of the fleet does.
    let mut sub = Command::new("redis-cli")
        .arg("-s")
        .arg(redis.socket())
        .args(["SUBSCRIBE", "pyfilter:events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events = BufReader::new(sub.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        events.next(); // the subscription's own reply
    }
    let cookie_a = a.sign_in("alice", PASSWORD).unwrap();
    let csrf = a.csrf(&cookie_a);
    let r = a.post(
        "/ban",
        &cookie_a,
        &[
            ("csrf", &csrf),
            ("ip", "203.0.113.50"),
            ("duration", "2h"),
            ("reason", "seen in the admin"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let event = loop {
        let line = events.next().unwrap().unwrap();
        if line.starts_with('{') {
            break line;
        }
    };
    let _ = sub.kill();
    let _ = sub.wait();
    let event: serde_json::Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["kind"], "ban");
    assert_eq!(event["ip"], "203.0.113.50");
    assert_eq!(event["server"], "a");
    assert_eq!(event["rule"], "manual");

    // Server b's admin shows it as another server's ban.
    let id = r
        .header("location")
        .trim_start_matches("/bans/")
        .to_string();
    let details = b.get(&format!("/bans/{id}"), Some(&cookie_b)).body;
    assert!(
        details.contains("203.0.113.50") && details.contains("server <b>a</b>, by another server"),
        "{details}"
    );
    let dash = b.get("/", Some(&cookie_b)).body;
    assert!(dash.contains(r#"id="active-bans">1<"#), "{dash}");
    // And b may lift it for the whole fleet.
    let csrf_b = b.csrf(&cookie_b);
    let r = b.post(
        "/unban",
        &cookie_b,
        &[("csrf", &csrf_b), ("ip", "203.0.113.50")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(redis.cli(&["HLEN", "pyfilter:active"]).trim(), "0");
}

#[test]
fn a_second_sign_in_page_leaves_the_first_form_valid() {
    let (_s, a) = admin_with_user("");
    let first = a.get("/login", None);
    let cookie = first.cookie("pyfilter_login").unwrap();
    let csrf = first.field("csrf");
    // Another tab, or the browser fetching its icon, shows the page again.
    let second = a.get("/login", Some(&cookie));
    assert_eq!(second.field("csrf"), csrf);
    assert_eq!(a.get("/favicon.ico", Some(&cookie)).status, 404);
    let r = a.post(
        "/login",
        &cookie,
        &[("csrf", &csrf), ("user", "alice"), ("password", PASSWORD)],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    // A made-up login cookie is replaced, not taken as a token.
    let odd = a.get("/login", Some("pyfilter_login=<x>"));
    assert_ne!(odd.field("csrf"), "<x>");
    assert_eq!(odd.field("csrf").len(), 64);
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_logged() {
    let (s, a) = admin_with_user("  trusted_proxies: [127.0.0.1]\n  sign_in_attempts: 2\n");
    let origin = a.origin();
    let attempt = |client: &str, password: &str| {
        let page = a.request("GET", "/login", &[("X-Forwarded-For", client)], "");
        let cookie = page.cookie("pyfilter_login").unwrap();
        let body = encode(&[
            ("csrf", &page.field("csrf")),
            ("user", "alice"),
            ("password", password),
        ]);
        a.request(
            "POST",
            "/login",
            &[
                ("Cookie", &cookie),
                ("Origin", &origin),
                // A client-supplied first hop, then what the proxy appended.
                ("X-Forwarded-For", &format!("10.9.9.9, {client}")),
                ("X-Forwarded-Proto", "https"),
            ],
            &body,
        )
    };
    assert_eq!(attempt("203.0.113.5", "wrong password!").status, 401);
    assert_eq!(attempt("203.0.113.5", "wrong password!").status, 401);
    assert_eq!(
        attempt("203.0.113.5", PASSWORD).status,
        429,
        "that client is limited"
    );
    let ok = attempt("198.51.100.6", PASSWORD);
    assert_eq!(
        ok.status, 303,
        "another client behind the same proxy is not"
    );
    assert!(
        ok.header("set-cookie").contains("; Secure"),
        "{:?}",
        ok.headers
    );
    let log = std::fs::read_to_string(s.path("admin.log")).unwrap();
    assert_eq!(
        log.matches("failed sign-in from 203.0.113.5 ").count(),
        3,
        "{log}"
    );
    assert!(log.contains("signed in from 198.51.100.6 "), "{log}");
    assert!(
        !log.contains("10.9.9.9") && !log.contains("from 127.0.0.1"),
        "{log}"
    );

    // Without trusted_proxies the header is the client's own word, and ignored.
    let (s2, b) = admin_with_user("");
    let page = b.request("GET", "/login", &[], "");
    let cookie = page.cookie("pyfilter_login").unwrap();
    let body = encode(&[
        ("csrf", &page.field("csrf")),
        ("user", "alice"),
        ("password", "wrong password!"),
    ]);
    let origin = b.origin();
    let r = b.request(
        "POST",
        "/login",
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("X-Forwarded-For", "203.0.113.5"),
            ("X-Forwarded-Proto", "https"),
        ],
        &body,
    );
    assert_eq!(r.status, 401);
    assert!(!r.header("set-cookie").contains("Secure"));
    let log = std::fs::read_to_string(s2.path("admin.log")).unwrap();
    assert!(log.contains("failed sign-in from 127.0.0.1 "), "{log}");
}

#[test]
fn a_removed_user_and_a_revoked_token_lose_access_at_once() {
    let (s, a) = admin_with_user("");
    add_user(&s, "bob", "bob's long password");
    let cookie = a.sign_in("bob", "bob's long password").unwrap();
    let token = stdout(&s.cli(None, &["admin", "token", "--name", "grafana"]))
        .trim()
        .to_string();
    let auth = format!("Bearer {token}");
    assert_eq!(
        a.request("GET", "/api/bans", &[("Authorization", &auth)], "")
            .status,
        200
    );
    let users = stdout(&s.cli(None, &["admin", "users"]));
    assert!(
        users.contains("user  alice")
            && users.contains("user  bob")
            && users.contains("token grafana"),
        "{users}"
    );
    assert!(!users.contains("argon2"), "hashes are not shown: {users}");

    let out = s.cli(None, &["admin", "deluser", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(a.get("/", Some(&cookie)).status, 303, "bob's session ended");
    assert!(a.sign_in("bob", "bob's long password").is_err());
    assert_eq!(
        s.cli(None, &["admin", "deluser", "bob"]).status.code(),
        Some(2)
    );

    assert!(
        s.cli(None, &["admin", "revoke", "grafana"])
            .status
            .success()
    );
    assert_eq!(
        a.request("GET", "/api/bans", &[("Authorization", &auth)], "")
            .status,
        401
    );
    assert_eq!(
        s.cli(None, &["admin", "revoke", "grafana"]).status.code(),
        Some(2)
    );
    assert!(a.sign_in("alice", PASSWORD).is_ok());
}

#[test]
fn idle_connections_do_not_stall_the_admin_for_others() {
    let (_s, a) = admin_with_user("");
    // Twenty clients connect and send nothing (each is held until the 10 s read
    // deadline); a fixed pool of workers would be stalled by them.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&a.addr).unwrap())
        .collect();
    let t = Instant::now();
    let r = a.get("/login", None);
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(idle);
}
