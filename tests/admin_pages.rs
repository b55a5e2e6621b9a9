//! `pyfilter admin`'s pages and API, at the HTTP level: the real binary on a loopback
//! port (dashboard, history, details, the ban form, countries, `/api/bans`,
//! `/metrics`, and a fleet sharing users and bans through a real Redis). The firewall
//! is `none` here; tests/admin_browser.rs drives the same pages in a browser with real
//! iptables.

#[path = "common/admin.rs"]
mod admin;
mod common;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use admin::*;
use common::{RedisServer, stderr, stdout};
use prometheus::value;

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
    let samples = prometheus::parse(&m.body).unwrap_or_else(|e| panic!("{e}\n{}", m.body));
    assert_eq!(
        value(&samples, "pyfilter_active_bans", &[]),
        Some(1.0),
        "{}",
        m.body
    );
    assert_eq!(
        value(
            &samples,
            "pyfilter_bans_total",
            &[("rule", "manual"), ("server", "test-1")]
        ),
        Some(1.0),
        "{}",
        m.body
    );
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
        .args(["--no-auth-warning", "-a", common::ADMIN_PASSWORD])
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
    assert_eq!(redis.cli(&["ZCARD", "pyfilter:expiry"]).trim(), "0");
}
