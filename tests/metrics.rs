//! Prometheus metrics end to end: the real daemon with `--metrics` in a network namespace
//! of the test's own, attacked through its log and scraped over HTTP; every scrape is
//! parsed strictly as the text format 0.0.4. And the snapshot the daemon leaves in its
//! SQLite file, which the admin renders.

mod common;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use prometheus::{Scrape, parse, value};

/// A fresh namespace has every port free, so a fixed one does.
const ADDR: &str = "127.0.0.1:9179";

/// A GET from inside the namespace: a thread of its own joins it (setns changes only the
/// calling thread), so the test needs no HTTP client program. Status, head and body.
fn http_get(ns: &Netns, path: &str) -> std::io::Result<(u16, String, String)> {
    let netns = std::fs::File::open(ns.path())?;
    let path = path.to_string();
    std::thread::spawn(move || {
        // SAFETY: setns with a namespace file this thread opened; it affects this
        // thread only, which ends with the request.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut s = TcpStream::connect(ADDR)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {ADDR}\r\n\r\n")?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, head.to_string(), body.to_string()))
    })
    .join()
    .unwrap()
}

/// Scrapes `/metrics` and parses it; panics on anything but a clean 200.
fn scrape(ns: &Netns) -> Scrape {
    let (status, head, body) = http_get(ns, "/metrics").unwrap();
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// A namespace whose loopback is up, so the daemon can listen on 127.0.0.1.
fn netns_with_loopback() -> Netns {
    let ns = Netns::new();
    ns.ok("ip", &["link", "set", "lo", "up"]);
    ns
}

#[test]
fn the_daemon_serves_its_counts_and_bans_as_prometheus_text() {
    let ns = netns_with_loopback();
    let s = Setup::new("failed_attempts: 5\nfirewall: { backend: iptables }");
    append(&s.log(), "");
    let _d = Daemon::start_with(&s, &ns, &["--metrics", ADDR]);
    let before = scrape(&ns);
    assert_eq!(value(&before, "pyfilter_store_up", &[]), Some(1.0));
    assert_eq!(value(&before, "pyfilter_active_bans", &[]), Some(0.0));
    assert_eq!(value(&before, "pyfilter_lines_read_total", &[]), Some(0.0));

    let mut written = 0;
    for i in 0..10 {
        append(&s.log(), &format!("noise line {i} that no rule matches\n"));
        written += 1;
    }
    for _ in 0..6 {
        append(&s.log(), &failed("192.0.2.50"));
        written += 1;
    }
    wait_for(Duration::from_secs(5), "the ban", || {
        ns.has_ban("192.0.2.50")
    });
    // The lines are counted once their read is over, which may end just after the ban,
    // and the store's figures may be a scrape old for a moment (metrics::STORE_TTL).
    let mut m = Scrape::new();
    wait_for(
        Duration::from_secs(5),
        "every line and the ban to show",
        || {
            m = scrape(&ns);
            value(&m, "pyfilter_lines_read_total", &[]) >= Some(f64::from(written))
                && value(&m, "pyfilter_active_bans", &[]) == Some(1.0)
        },
    );
    let attempts = value(&m, "pyfilter_attempts_total", &[("rule", "sshd")]).unwrap();
    assert!(attempts >= 5.0, "{attempts}");
    assert_eq!(
        value(
            &m,
            "pyfilter_bans_total",
            &[("rule", "sshd"), ("server", "test-1")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&m, "pyfilter_active_bans", &[]), Some(1.0));
    assert_eq!(value(&m, "pyfilter_daemon_bans_total", &[]), Some(1.0));
    assert_eq!(
        value(&m, "pyfilter_lines_skipped_total", &[("rule", "sshd")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "pyfilter_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    let (status, _, _) = http_get(&ns, "/").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn a_taken_metrics_port_stops_the_daemon_before_it_touches_the_firewall() {
    let ns = netns_with_loopback();
    let first = Setup::new("");
    append(&first.log(), "");
    let _d = Daemon::start_with(&first, &ns, &["--metrics", ADDR]);
    let flushed = first.cli(Some(&ns), &["flush"]);
    assert!(flushed.status.success(), "{}", stderr(&flushed));
    let second = Setup::new("");
    let out = second.cli(Some(&ns), &["run", "--metrics", ADDR]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("serving --metrics: cannot listen on {ADDR}")),
        "{}",
        stderr(&out)
    );
    assert!(ns.rules("iptables", "PYFILTER").is_empty());
    assert!(!second.path("db/pyfilter.db").exists());
}

#[test]
fn an_unreachable_redis_gives_store_up_0_and_the_rest_of_the_scrape() {
    let ns = netns_with_loopback();
    let s = Setup::new(
        "store: redis\nredis: { url: 'redis+unix:///nonexistent/redis.sock', timeout: 200ms }",
    );
    append(&s.log(), "");
    let _d = Daemon::start_with(&s, &ns, &["--metrics", ADDR]);
    append(&s.log(), &failed("192.0.2.51"));
    let mut m = Scrape::new();
    // The attempt is counted as its line is matched, the line once the read is over.
    wait_for(
        Duration::from_secs(5),
        "the line and attempt to be counted",
        || {
            m = scrape(&ns);
            value(&m, "pyfilter_attempts_total", &[("rule", "sshd")]) == Some(1.0)
                && value(&m, "pyfilter_lines_read_total", &[]) == Some(1.0)
        },
    );
    assert_eq!(value(&m, "pyfilter_store_up", &[]), Some(0.0));
    assert!(value(&m, "pyfilter_active_bans", &[]).is_none());
    assert!(m.keys().all(|(name, _)| name != "pyfilter_bans_total"));
}

#[test]
fn a_fleet_event_is_counted_with_its_lag_and_the_reconcile_is_timed() {
    let redis = RedisServer::start();
    let ns = netns_with_loopback();
    let s = Setup::new(&format!(
        "store: redis\nredis: {{ url: '{}' }}",
        redis.url()
    ));
    append(&s.log(), "");
    let d = Daemon::start_with(&s, &ns, &["--metrics", ADDR]);
    // Subscribed before it read the bans: the restore was its reconcile.
    d.wait_log("sync: connected to Redis");
    let sent = chrono::Utc::now() - chrono::Duration::seconds(3);
    let event = format!(
        r#"{{"v":1,"kind":"ban","ip":"198.51.100.9","rule":"sshd","server":"web-9","reason":"x","at":"{}","until":null,"id":1}}"#,
        sent.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    redis.cli(&["PUBLISH", "pyfilter:events", &event]);
    wait_for(Duration::from_secs(5), "the remote ban", || {
        ns.has_ban("198.51.100.9")
    });
    let m = scrape(&ns);
    assert_eq!(value(&m, "pyfilter_remote_events_total", &[]), Some(1.0));
    let lag = value(&m, "pyfilter_sync_lag_seconds", &[]).unwrap();
    assert!((2.5..10.0).contains(&lag), "{lag}");
    assert_eq!(value(&m, "pyfilter_sync_lag_max_seconds", &[]), Some(lag));
    let reconciled = value(&m, "pyfilter_last_reconcile_timestamp_seconds", &[]).unwrap();
    assert!((chrono::Utc::now().timestamp() as f64 - reconciled).abs() < 30.0);
    assert_eq!(
        value(&m, "pyfilter_last_reconcile_changes", &[("change", "ban")]),
        Some(0.0)
    );
}

#[test]
fn the_counters_reach_the_sqlite_file_and_the_admin_renders_them() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 3");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    append(&s.log(), "a line no rule matches\n");
    for _ in 0..3 {
        append(&s.log(), &failed("192.0.2.52"));
    }
    wait_for(Duration::from_secs(5), "the ban", || {
        ns.has_ban("192.0.2.52")
    });
    let (_, status, out) = d.stop();
    assert!(status.success(), "{out}");

    let db = s.path("db/pyfilter.db");
    let local = pyfilter::store::SqliteStore::open(&db).unwrap();
    let saved: BTreeMap<String, f64> = local
        .stats()
        .unwrap()
        .into_iter()
        .map(|(name, value, _)| (name, value))
        .collect();
    assert_eq!(
        saved.get("attempts_total{rule=\"sshd\"}"),
        Some(&3.0),
        "{saved:?}"
    );
    assert_eq!(saved.get("lines_read_total"), Some(&4.0), "{saved:?}");
    assert_eq!(saved.get("daemon_bans_total"), Some(&1.0), "{saved:?}");

    // What the admin's /metrics answers from the same file, with no daemon running.
    let mut store = pyfilter::store::SqliteStore::open(&db).unwrap();
    let summary = pyfilter::store::figures::summary(&mut store, chrono::Utc::now());
    let mut text = String::new();
    pyfilter::metrics::render_saved(&mut text, &local.stats().unwrap(), summary.as_ref());
    let m = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        value(
            &m,
            "pyfilter_bans_total",
            &[("rule", "sshd"), ("server", "test-1")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&m, "pyfilter_lines_read_total", &[]), Some(4.0));
    assert!(value(&m, "pyfilter_daemon_stats_timestamp_seconds", &[]).is_some());
}

#[test]
fn the_strict_parser_refuses_what_prometheus_would() {
    let good = "# HELP pyfilter_x_total X.\n# TYPE pyfilter_x_total counter\npyfilter_x_total{a=\"q\\\"\\n\\\\\"} 1\n";
    assert!(parse(good).is_ok());
    for bad in [
        "pyfilter_x_total 1\n",
        "# HELP pyfilter_x_total X.\npyfilter_x_total 1\n",
        "# TYPE pyfilter_x_total counter\npyfilter_x_total 1\n",
        &good.replace("\\\"", "\\t"),
        &good.replace(" 1\n", " 1"),
        &good.replace(" 1\n", " 1 1700000000\n"),
        &good.replace("{a=", "{a=\"\",a="),
        &format!("{good}pyfilter_x_total{{a=\"q\\\"\\n\\\\\"}} 2\n"),
        &good.replace(" 1\n", " -1\n"),
        &good.replace("pyfilter_x", "other_x"),
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}
