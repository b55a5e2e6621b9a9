//! Notifications end to end: the real daemon (without firewall, on the machine's loopback)
//! bans from its log and tells a webhook (a small HTTP server in the test) and a command
//! (a script that writes down its environment and input). A receiver that hangs delays no
//! ban, its queue stays bounded, and what it missed is counted in the metrics.

mod common;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// One request the receiver got.
#[derive(Debug)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on 127.0.0.1: answers 200 to every POST, or never answers when
/// `hang`. Returns its address and what it received.
fn receiver(hang: bool) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            if hang {
                // Read nothing, answer nothing: the client waits for its timeout.
                held.push(stream);
                continue;
            }
            if let Some(req) = read_request(stream)
                && tx.send(req).is_err()
            {
                return;
            }
        }
    });
    (addr, rx)
}

fn read_request(mut stream: TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .ok()?;
    Some(Request {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A script that appends its PYFILTER_* environment and its input to `out`.
fn recorder(s: &Setup) -> (std::path::PathBuf, std::path::PathBuf) {
    let script = s.path("notify.sh");
    let out = s.path("notified.txt");
    std::fs::write(
        &script,
        "#!/bin/sh\n{ echo '--'; env | grep '^PYFILTER_' | sort; cat; } >> \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, out)
}

fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_ban_is_posted_to_webhooks_and_told_to_a_command_then_its_unban() {
    let (addr, requests) = receiver(false);
    let s = Setup::new("");
    let (script, out) = recorder(&s);
    s.write_config(&format!(
        r#"firewall: {{ backend: none }}
failed_attempts: 2
ban_time: 2s
notify:
  - url: http://{addr}/ban
    headers: {{ Authorization: "Bearer t0ken" }}
  - name: slack
    url: http://{addr}/slack
    json: {{ text: "{{server}} banned {{ip}} ({{rule}}) until {{until}}: {{reason}}" }}
  - name: abuseipdb
    url: http://{addr}/report
    headers: {{ Key: k3y, Accept: application/json }}
    form: {{ ip: "{{ip}}", categories: "18,22", comment: "{{rule}}: {{reason}}" }}
  - command: [{script}, {out}]
    on: [ban, unban]
"#,
        script = script.display(),
        out = out.display()
    ));
    let d = Daemon::start_without_firewall(&s, &[]);
    append(&s.log(), &failed("192.0.2.44").repeat(2));
    let mut got: Vec<Request> = Vec::new();
    while got.len() < 3 {
        got.push(
            requests
                .recv_timeout(Duration::from_secs(10))
                .expect("the webhooks were told"),
        );
    }
    got.sort_by(|a, b| a.path.cmp(&b.path));
    let [ban, report, slack] = &got[..] else {
        unreachable!()
    };
    // The ban's JSON is the object `list --json` prints.
    assert_eq!(ban.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(ban.header("content-type"), Some("application/json"));
    let posted: serde_json::Value = serde_json::from_str(&ban.body).unwrap();
    let listed: serde_json::Value = serde_json::from_str(
        stdout(&s.cli(None, &["list", "--json", "--all"]))
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(posted["ip"], "192.0.2.44");
    assert_eq!(posted["rule"], "sshd");
    assert_eq!(posted["source"], "log");
    assert_eq!(posted["banned_at"], listed["banned_at"]);
    assert_eq!(posted["expires_at"], listed["expires_at"]);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&posted), keys(&listed));
    let text: serde_json::Value = serde_json::from_str(&slack.body).unwrap();
    let text = text["text"].as_str().unwrap();
    assert!(
        text.starts_with("test-1 banned 192.0.2.44 (sshd) until 20"),
        "{text}"
    );
    assert!(
        text.ends_with("Failed password for invalid user admin from 192.0.2.44 port 50022 ssh2"),
        "{text}"
    );
    assert_eq!(report.header("key"), Some("k3y"));
    assert_eq!(
        report.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(report.body.contains("ip=192.0.2.44"), "{}", report.body);
    assert!(
        report.body.contains("categories=18%2C22"),
        "{}",
        report.body
    );
    assert!(report.body.contains("comment=sshd%3A+"), "{}", report.body);

    // The command, on the ban and on its unban two seconds later.
    wait_until(
        Duration::from_secs(10),
        "the command told of the unban",
        || std::fs::read_to_string(&out).is_ok_and(|t| t.contains("PYFILTER_EVENT=unban")),
    );
    let told = std::fs::read_to_string(&out).unwrap();
    let (first, second) = told.trim_start_matches("--\n").split_once("--\n").unwrap();
    for line in [
        "PYFILTER_EVENT=ban",
        "PYFILTER_IP=192.0.2.44",
        "PYFILTER_RULE=sshd",
        "PYFILTER_SERVER=test-1",
        "PYFILTER_SOURCE=log",
        "PYFILTER_ATTEMPTS=2",
    ] {
        assert!(first.lines().any(|l| l == line), "{line} in {first}");
    }
    let stdin: serde_json::Value = serde_json::from_str(first.lines().last().unwrap()).unwrap();
    assert_eq!(stdin["ip"], "192.0.2.44");
    assert!(
        second.lines().any(|l| l == "PYFILTER_LIFT_REASON=expired"),
        "{second}"
    );
    // Webhooks are told of bans only, by default.
    assert!(requests.recv_timeout(Duration::from_millis(300)).is_err());
    let (_, status, _) = d.stop();
    assert!(status.success());
}

/// Scrapes the daemon's metrics.
fn scrape(addr: &str) -> prometheus::Scrape {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    prometheus::parse(body).unwrap()
}

#[test]
fn a_hanging_receiver_delays_no_ban_and_its_queue_stays_bounded() {
    let (addr, _requests) = receiver(true);
    let s = Setup::new("");
    s.write_config(&format!(
        "firewall: {{ backend: none }}
failed_attempts: 1
notify:
  - name: hang
    url: http://{addr}/hook
    timeout: 1m
    retries: 0
    queue: 2
"
    ));
    let d = Daemon::start_without_firewall(&s, &["--metrics", "127.0.0.1:0"]);
    let log = d.output();
    let metrics = log
        .split("metrics at http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("the metrics address in the log")
        .to_string();
    let started = Instant::now();
    let lines: String = (1..=20).map(|i| failed(&format!("192.0.2.{i}"))).collect();
    append(&s.log(), &lines);
    wait_until(Duration::from_secs(10), "20 bans", || {
        stdout(&s.cli(None, &["list"])).ends_with("\n20 active bans\n")
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "bans waited for the receiver: {took:?}"
    );
    // One notice is being tried (it hangs), two wait in the queue, the rest are dropped.
    let m = scrape(&metrics);
    let count = |result: &str| {
        prometheus::value(
            &m,
            "pyfilter_notifications_total",
            &[("notifier", "hang"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert!((17.0..=18.0).contains(&count("dropped")), "{m:?}");
    assert_eq!(count("sent"), 0.0);
    assert!(d.output().contains("notify hang: its queue is full"));
    // Stopping does not wait for the receiver either.
    let (took, status, _) = d.stop();
    assert!(status.success());
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
}

#[test]
fn a_failing_command_is_retried_counted_and_logged_while_bans_go_on() {
    let s = Setup::new("");
    s.write_config(
        "firewall: { backend: none }
failed_attempts: 1
notify:
  - name: broken
    command: [/bin/false]
    retries: 1
",
    );
    let d = Daemon::start_without_firewall(&s, &[]);
    append(&s.log(), &failed("192.0.2.80"));
    d.wait_log("notify broken: the ban of 192.0.2.80 was not delivered (the command failed (exit status: 1)); trying again in 1s");
    d.wait_log("given up after 2 tries");
    assert!(stdout(&s.cli(None, &["list"])).contains("192.0.2.80"));
    let (_, status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn check_lists_the_receivers_without_their_secrets_and_warns_of_a_missing_program() {
    let s = Setup::new(
        "firewall: { backend: none }
notify:
  - name: slack
    url: https://hooks.slack.com/services/T000/B000/S3CRET
  - command: [/nonexistent/sendmail, -t]
    on: [ban, unban]
    rules: [sshd]
    retries: 1
",
    );
    let out = s.cli(None, &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("  slack: POSTs to hooks.slack.com, on bans from log, manual (every rule), timeout 10s, 3 retries\n"),
        "{text}"
    );
    assert!(
        text.contains("  sendmail: runs /nonexistent/sendmail, on bans and unbans from log, manual (rules sshd), timeout 10s, 1 retry\n"),
        "{text}"
    );
    assert!(!text.contains("S3CRET"), "{text}");
    assert!(text.contains("warning: notify sendmail: /nonexistent/sendmail is not there"));
    // A misspelt placeholder is a configuration error, located.
    s.write_config(
        "firewall: { backend: none }
notify:
  - url: http://127.0.0.1:9/x
    json: { text: \"banned {address}\" }
",
    );
    let out = s.cli(None, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(":2: notify: entry 1 (127.0.0.1): `{address}` is not a placeholder"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bans_and_unbans_by_hand_through_the_daemon_are_told_too() {
    let s = Setup::new("");
    let (script, out) = recorder(&s);
    s.write_config(&format!(
        "firewall: {{ backend: none }}
notify:
  - command: [{}, {}]
    on: [ban, unban]
    sources: [manual]
",
        script.display(),
        out.display()
    ));
    let d = Daemon::start_without_firewall(&s, &[]);
    let ban = s.cli(
        None,
        &[
            "ban",
            "192.0.2.91",
            "--for",
            "1h",
            "--reason",
            "seen on the honeypot",
        ],
    );
    assert!(ban.status.success(), "{}", stderr(&ban));
    let unban = s.cli(None, &["unban", "192.0.2.91"]);
    assert!(unban.status.success(), "{}", stderr(&unban));
    wait_until(Duration::from_secs(10), "both told", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("PYFILTER_EVENT=unban"))
    });
    let told = std::fs::read_to_string(&out).unwrap();
    for line in [
        "PYFILTER_EVENT=ban",
        "PYFILTER_SOURCE=manual",
        "PYFILTER_RULE=manual",
        "PYFILTER_REASON=seen on the honeypot",
        "PYFILTER_LIFT_REASON=unbanned by hand",
    ] {
        assert!(told.lines().any(|l| l == line), "{line} in {told}");
    }
    let (_, status, _) = d.stop();
    assert!(status.success());
}
