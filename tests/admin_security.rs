//! `pyfilter admin`'s defences, at the HTTP level: the real binary on a loopback port,
//! spoken to over real sockets (sessions, CSRF and Origin checks, sign-in limits and
//! timing, escaping, TLS, proxies, access removed, slow clients). The firewall is `none`
//! here, so these run outside any network namespace; the admin's bans reaching a real
//! firewall are in tests/admin_browser.rs.

#[path = "common/admin.rs"]
mod admin;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use admin::*;
use common::{BIN, Setup, stderr, stdout};

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
            .record(&pyfilter::ban::NewBan {
                net: "192.0.2.66/32".parse().unwrap(),
                rule: "<script>alert('rule')</script>".into(),
                reason: "Failed password for <script>alert(\"x\")</script> from 192.0.2.66".into(),
                attempts: 5,
                server: "\"><svg onload=alert(2)>".into(),
                source: pyfilter::ban::Origin::Log,
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
