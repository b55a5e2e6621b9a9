//! `pyfilter admin` as a person uses it: Debian's headless Chromium, driven through
//! chromedriver (tests/common/webdriver.rs), signs in, reads the pages, bans and unbans
//! by hand and signs out. The admin, chromedriver and Chromium run inside a network
//! namespace of the test's own, as root, with real iptables; a second scenario adds a
//! real redis-server and a second server's daemon in another namespace.
//!
//! Screenshots of every page land in `target/admin-screenshots/`; with
//! `PYFILTER_UPDATE_DOCS=1` the dashboard's also replaces `docs/admin-dashboard.png`.
//!
//! Without Chromium these tests fail under CI (`CI=true`) and are skipped with a notice
//! elsewhere.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use common::*;
use webdriver::{Browser, WAIT};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";
/// Where the admin listens, inside its namespace.
const LISTEN: &str = "127.0.0.1:8080";

fn base() -> String {
    format!("http://{LISTEN}")
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/admin-screenshots")
}

/// A namespace with its loopback up: the admin listens on 127.0.0.1 there.
fn namespace() -> Netns {
    let ns = Netns::new();
    ns.ok("ip", &["link", "set", "lo", "up"]);
    ns
}

/// `pyfilter admin passwd alice`, the password on standard input as a script gives it.
fn create_user(s: &Setup) {
    let mut child = std::process::Command::new(BIN)
        .arg("-c")
        .arg(s.config())
        .args(["admin", "passwd", USER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "admin passwd: {}", stderr(&out));
    assert!(
        stdout(&out).contains("created the admin user alice"),
        "{}",
        stdout(&out)
    );
}

/// `pyfilter admin --listen 127.0.0.1:8080` inside a namespace, its log captured.
struct Admin {
    child: Child,
    log: PathBuf,
}

impl Admin {
    fn start(s: &Setup, ns: &Netns) -> Admin {
        let log = s.path("admin-stderr.log");
        let child = ns
            .command(BIN)
            .arg("-c")
            .arg(s.config())
            .args(["-v", "admin", "--listen", LISTEN])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut admin = Admin { child, log };
        let ready = format!("admin ready on {}/", base());
        let start = Instant::now();
        while !admin.output().contains(&ready) {
            assert!(
                admin.child.try_wait().unwrap().is_none() && start.elapsed() < WAIT,
                "the admin never said {ready:?}; its log:\n{}",
                admin.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        admin
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs in through the form, as a person types it.
fn sign_in(b: &Browser, password: &str) {
    b.find("form#login-form");
    b.find("#user").send_keys(USER);
    b.find("#password").send_keys(password);
    b.find("#sign-in").click();
}

/// Bans `ip` through the ban form; returns the URL of its details page.
fn ban_by_hand(b: &Browser, ip: &str, duration: &str, reason: &str, shot: Option<&str>) -> String {
    b.find(r#"nav a[href="/ban"]"#).click();
    b.wait_url("the ban form", |u| u.ends_with("/ban"));
    b.find("form#ban-form");
    b.find("#ban-ip").send_keys(ip);
    let d = b.find("#ban-duration");
    d.clear();
    d.send_keys(duration);
    b.find("#ban-reason").send_keys(reason);
    if let Some(name) = shot {
        b.shot(name);
    }
    b.find("#ban-submit").click();
    let url = b.wait_url("the new ban's details", is_details);
    let details = b.find("section#ban-details").text();
    assert!(
        details.contains(ip) && details.contains("active"),
        "{details}"
    );
    assert_eq!(
        b.find("pre#reason").text(),
        format!("{reason} (admin: {USER})")
    );
    url
}

fn is_details(url: &str) -> bool {
    url.rsplit_once("/bans/")
        .is_some_and(|(_, id)| !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit()))
}

/// Unbans from the open details page and waits for the page to say so.
fn unban_here(b: &Browser) {
    b.find("form#unban-form");
    b.find("#unban").click();
    b.find("#ban-details .state.lifted");
    assert!(
        b.find_all("#unban").is_empty(),
        "a lifted ban offers no unban"
    );
}

/// What an admin of a busy little fleet would see: bans over the last ten days from
/// several rules and servers, most of them expired, written straight into the SQLite
/// file the way the store keeps them.
fn seed_history(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let now = Utc::now();
    // (days ago, hours earlier, address, rule, server, attempts, still active)
    let rows: &[(i64, i64, &str, &str, &str, u32, bool)] = &[
        (9, 3, "192.0.2.31", "sshd", "web-1", 5, false),
        (9, 7, "198.51.100.4", "sshd", "web-2", 5, false),
        (8, 2, "203.0.113.0/24", "sshd", "web-1", 41, false),
        (7, 5, "192.0.2.77", "nginx-http-auth", "web-1", 6, false),
        (7, 9, "2001:db8:42::7", "sshd", "web-2", 5, false),
        (6, 1, "198.51.100.150", "postfix-sasl", "mail-1", 8, false),
        (6, 9, "203.0.113.45", "sshd", "web-2", 5, false),
        (6, 11, "192.0.2.150", "sshd", "web-1", 6, false),
        (5, 4, "192.0.2.90", "sshd", "web-1", 5, false),
        (5, 6, "198.51.100.61", "postfix-sasl", "mail-1", 10, false),
        (5, 8, "192.0.2.91", "sshd", "web-2", 7, false),
        (4, 2, "192.0.2.66", "pyfilter-admin", "web-1", 5, false),
        (3, 3, "192.0.2.120", "nginx-http-auth", "web-2", 9, false),
        (3, 7, "198.51.100.33", "postfix-sasl", "mail-1", 9, false),
        (2, 1, "198.51.100.200", "sshd", "web-1", 5, false),
        (2, 5, "192.0.2.140", "postfix-sasl", "mail-1", 12, false),
        (1, 2, "2001:db8:7::/64", "sshd", "web-1", 23, true),
        (0, 3, "192.0.2.201", "sshd", "web-2", 5, true),
        (0, 1, "198.51.100.99", "nginx-http-auth", "web-1", 6, true),
    ];
    for &(days, hours, net, rule, server, attempts, active) in rows {
        let net: ipnet::IpNet = if net.contains('/') {
            net.parse().unwrap()
        } else {
            net.parse::<std::net::IpAddr>().unwrap().into()
        };
        let at = now - Span::days(days) - Span::hours(hours);
        let host = net.addr();
        let reason = match rule {
            "sshd" => format!(
                "{} {server} sshd[2231]: Failed password for invalid user oracle from {host} port 50412 ssh2",
                at.format("%b %e %H:%M:%S")
            ),
            "nginx-http-auth" => format!(
                "{} [error] 811#811: *4410 user \"admin\": password mismatch, client: {host}, server: {server}, request: \"GET /admin/ HTTP/1.1\"",
                at.format("%Y/%m/%d %H:%M:%S")
            ),
            "postfix-sasl" => format!(
                "{} {server} postfix/smtpd[9120]: warning: unknown[{host}]: SASL LOGIN authentication failed: authentication failure",
                at.format("%b %e %H:%M:%S")
            ),
            _ => format!(
                "{} pyfilter-admin[812]: failed sign-in from {host} for user \"admin\"",
                at.to_rfc3339()
            ),
        };
        let expires = at
            + if net.prefix_len() < 32 {
                Span::days(7)
            } else {
                Span::hours(2)
            };
        let (lifted, why) = if active {
            (None, None)
        } else {
            (Some(expires.timestamp()), Some("expired"))
        };
        let source = if server == "web-1" { "log" } else { "remote" };
        conn.execute(
            "INSERT INTO bans (net, rule, reason, attempts, server, source, banned_at, expires_at, lifted_at, lift_reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                net.to_string(),
                rule,
                reason,
                attempts,
                server,
                source,
                at.timestamp(),
                if active { (now + Span::days(6)).timestamp() } else { expires.timestamp() },
                lifted,
                why
            ],
        )
        .unwrap();
    }
}

const SCRIPT_REASON: &str = "<script>alert(1)</script> sent as a user name";

#[test]
fn a_user_signs_in_sees_the_dashboard_bans_and_unbans_by_hand_and_signs_out() {
    if !webdriver::available(
        "a_user_signs_in_sees_the_dashboard_bans_and_unbans_by_hand_and_signs_out",
    ) {
        return;
    }
    let started = Instant::now();
    let ns = namespace();
    let s = Setup::new("");
    let admin_log = s.path("admin.log");
    s.write_config(&format!(
        "server_name: web-1\nfirewall: {{ backend: iptables }}\nadmin: {{ log: {} }}",
        admin_log.display()
    ));
    // Two bans made the way an operator makes them on the command line, one with a
    // reason that would run as a script if a page did not escape it.
    for (ip, reason) in [
        ("203.0.113.7", SCRIPT_REASON),
        ("192.0.2.44", "password spraying on ssh"),
    ] {
        let out = s.cli(Some(&ns), &["ban", ip, "--for", "1d", "--reason", reason]);
        assert!(out.status.success(), "pyfilter ban {ip}: {}", stderr(&out));
        assert!(ns.has_ban(ip));
    }
    seed_history(&s.path("db/pyfilter.db"));
    create_user(&s);
    // The daemon owns the firewall: the admin records, the daemon applies.
    append(&s.log(), "");
    let daemon = Daemon::start(&s, &ns);
    let _admin = Admin::start(&s, &ns);
    let b = Browser::start(&ns.path(), &screenshots());

    // Not signed in: the dashboard sends the browser to the sign-in page.
    b.goto(&format!("{}/", base()));
    b.wait_url("the sign-in page", |u| u.ends_with("/login"));
    b.find("form#login-form");
    b.shot("login");

    // A wrong password is refused, said so, and written to the admin log. This is the
    // fresh browser's first try, judged on its password: what the browser fetches
    // besides the page (its icon, the style sheet) must not spoil the sign-in form.
    sign_in(&b, "not the password at all");
    let error = b.find("p.error").text();
    assert_eq!(error, "Wrong user name or password.");
    let log = std::fs::read_to_string(&admin_log).unwrap();
    assert!(
        log.contains(r#"failed sign-in from 127.0.0.1 for user "alice""#),
        "{log}"
    );

    sign_in(&b, PASSWORD);
    b.wait_url("the dashboard", |u| u == format!("{}/", base()));
    assert_eq!(b.title(), "Dashboard · pyfilter");
    let chart = b.find("svg#bans-per-day");
    assert_eq!(chart.tag(), "svg");
    assert_eq!(
        b.find_all("svg#bans-per-day rect").len(),
        10,
        "ten days, ten bars"
    );
    assert_eq!(b.find("p#total-bans").text(), "21");
    assert_eq!(b.find("p#active-bans").text(), "5");
    // Let the fonts settle before the picture that goes into the README.
    std::thread::sleep(Duration::from_millis(300));
    let dashboard = b.shot("dashboard");
    if std::env::var("PYFILTER_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&dashboard, docs.join("admin-dashboard.png")).unwrap();
    }

    // A ban's details, from the latest bans: the script in its reason is only text.
    let link = b
        .find_all("table#latest a")
        .into_iter()
        .find(|a| a.text() == "203.0.113.7")
        .expect("203.0.113.7 among the latest bans");
    link.click();
    b.wait_url("the ban's details", is_details);
    assert_eq!(b.find("pre#reason").text(), SCRIPT_REASON);
    assert!(b.source().contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_eq!(b.alert_text(), None, "no script of the reason ran");
    b.shot("details");

    // A ban by hand goes into this server's firewall at once, by the daemon...
    let ip = "198.51.100.23";
    ban_by_hand(
        &b,
        ip,
        "1h",
        "probing the mail server by hand",
        Some("ban-form"),
    );
    // (The page waits a second for it; a busy machine may take longer, and the page
    // then says the daemon is applying it: read again.)
    wait_for(
        Duration::from_secs(10),
        "the daemon to apply the ban",
        || ns.has_ban(ip),
    );
    b.goto(&b.url());
    assert_eq!(b.find("#here").text(), "in force in this server's firewall");
    b.shot("banned");
    // ...and an unban from its details page takes it out.
    unban_here(&b);
    wait_for(
        Duration::from_secs(10),
        "the daemon to lift the ban",
        || !ns.has_ban(ip),
    );
    b.goto(&b.url());
    assert_eq!(b.find("#here").text(), "out of this server's firewall");
    // The command-line bans were left alone.
    assert!(ns.has_ban("203.0.113.7") && ns.has_ban("192.0.2.44"));

    // With the daemon stopped, a ban is recorded and said to wait for it; its next start
    // applies it.
    let (_, status, _) = daemon.stop();
    assert!(status.success());
    let waiting = "192.0.2.99";
    ban_by_hand(&b, waiting, "1h", "while the daemon is away", None);
    assert!(
        b.find("#here")
            .text()
            .contains("the daemon is not running here"),
        "{}",
        b.find("#here").text()
    );
    assert!(!ns.has_ban(waiting));
    let _daemon = Daemon::start(&s, &ns);
    assert!(ns.has_ban(waiting), "{}", ns.rules("iptables", "PYFILTER"));

    // The history, whole and searched.
    b.find(r#"nav a[href="/history"]"#).click();
    b.wait_url("the history", |u| u.ends_with("/history"));
    assert!(b.find("table#history").text().contains("2001:db8:7::/64"));
    b.shot("history");
    let field = b.find(r#"#search-form input[name="ip"]"#);
    field.send_keys(ip);
    b.find(r#"#search-form button[type="submit"]"#).click();
    b.wait_url("the search's results", |u| u.contains(&format!("ip={ip}")));
    let rows = b.find("table#history").text();
    assert!(rows.contains(ip) && rows.contains("lifted"), "{rows}");
    assert_eq!(b.find_all("table#history tbody tr").len(), 1, "{rows}");

    // Signing out ends the session: the dashboard asks for a sign-in again.
    b.find("#sign-out").click();
    b.wait_url("the sign-in page after signing out", |u| {
        u.ends_with("/login")
    });
    b.shot("signed-out");
    b.goto(&format!("{}/", base()));
    b.wait_url("the sign-in page again", |u| u.ends_with("/login"));
    assert!(b.find_all("svg#bans-per-day").is_empty());

    let log = std::fs::read_to_string(&admin_log).unwrap();
    for line in [
        r#"signed in from 127.0.0.1 by user "alice""#,
        r#"banned 198.51.100.23 from 127.0.0.1 by user "alice""#,
        r#"unbanned 198.51.100.23 from 127.0.0.1 by user "alice""#,
        r#"signed out from 127.0.0.1 by user "alice""#,
    ] {
        assert!(
            log.contains(line),
            "{line:?} missing from the admin log:\n{log}"
        );
    }
    eprintln!("browser scenario took {:?}", started.elapsed());
}

#[test]
fn a_ban_made_in_the_browser_reaches_a_second_server_through_redis() {
    if !webdriver::available("a_ban_made_in_the_browser_reaches_a_second_server_through_redis") {
        return;
    }
    let started = Instant::now();
    let redis = RedisServer::start();
    let store = format!(
        "store: redis\nredis: {{ url: '{}', reconcile_every: 2s }}\nfirewall: {{ backend: iptables }}",
        redis.url()
    );
    // Server B: the daemon, following its logs and the fleet's events.
    let ns_b = namespace();
    let sb = Setup::new(&format!("server_name: b\n{store}"));
    append(&sb.log(), "");
    let daemon_b = Daemon::start(&sb, &ns_b);
    daemon_b.wait_log("sync: connected");
    // Server A: the admin.
    let ns_a = namespace();
    let sa = Setup::new("");
    sa.write_config(&format!(
        "server_name: a\n{store}\nadmin: {{ log: {} }}",
        sa.path("admin.log").display()
    ));
    create_user(&sa);
    // A's daemon applies the bans A's admin records.
    append(&sa.log(), "");
    let daemon_a = Daemon::start(&sa, &ns_a);
    daemon_a.wait_log("sync: connected");
    let _admin = Admin::start(&sa, &ns_a);
    let b = Browser::start(&ns_a.path(), &screenshots());

    b.goto(&format!("{}/login", base()));
    sign_in(&b, PASSWORD);
    b.wait_url("the dashboard", |u| u == format!("{}/", base()));

    let ip = "198.51.100.77";
    ban_by_hand(&b, ip, "1h", "credential stuffing seen on a", None);
    assert!(ns_a.has_ban(ip), "A bans at once");
    wait_for(WAIT, "the ban to reach B's firewall", || ns_b.has_ban(ip));
    assert!(
        daemon_b.output().contains(&format!("banned {ip} (from a")),
        "{}",
        daemon_b.output()
    );

    unban_here(&b);
    assert!(!ns_a.has_ban(ip), "A unbans at once");
    wait_for(WAIT, "the unban to reach B's firewall", || {
        !ns_b.has_ban(ip)
    });
    eprintln!("browser fleet scenario took {:?}", started.elapsed());
}
