//! Following logs as they really come and go, end to end: real files appended, cut,
//! rotated, deleted, replaced by directories; directories created late; the daemon with
//! no inotify to be had; what `status` and `check` say about it all; the state's modes.

mod common;

use std::time::Duration;

use common::*;

const BAN_WAIT: Duration = Duration::from_secs(8);

/// The addresses banned now, from `list --json`.
fn banned(s: &Setup) -> Vec<String> {
    let out = s.cli(None, &["list", "--json"]);
    stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|b| b["ip"].as_str().map(str::to_owned))
        .collect()
}

fn ban_recorded(s: &Setup, ip: &str) {
    wait_for(BAN_WAIT, &format!("{ip} to be banned"), || {
        banned(s).iter().any(|b| b == ip)
    });
}

/// A `Failed password` line of exactly `max` bytes whose user name ends in a forged
/// ` from FAKE port 1 ssh2`, followed by the real end: cut at `max`, the line would
/// name FAKE.
fn forged_long_line(max: usize, fake: &str, real: &str) -> String {
    let head = format!(
        "{} testhost sshd[4242]: Failed password for invalid user ",
        chrono::Local::now().format("%b %e %H:%M:%S")
    );
    let forged_end = format!(" from {fake} port 1 ssh2");
    let filler = "x".repeat(max - head.len() - forged_end.len());
    format!("{head}{filler}{forged_end} from {real} port 22 ssh2\n")
}

#[test]
fn a_line_longer_than_max_line_bytes_is_not_matched_by_the_daemon() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 1\nmax_line_bytes: 1024\nfirewall: { backend: none }");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    append(
        &s.log(),
        &forged_long_line(1024, "10.66.66.66", "203.0.113.9"),
    );
    append(&s.log(), &failed("192.0.2.50"));
    ban_recorded(&s, "192.0.2.50");
    let bans = banned(&s);
    assert!(
        !bans
            .iter()
            .any(|b| b == "10.66.66.66" || b == "203.0.113.9"),
        "a cut line banned someone: {bans:?}"
    );
    d.wait_log("longer than max_line_bytes");
}

#[test]
fn a_line_longer_than_max_line_bytes_is_not_matched_by_scan() {
    let s = Setup::new("failed_attempts: 1\nmax_line_bytes: 1024");
    let log = s.path("scan.log");
    let mut text = forged_long_line(1024, "10.66.66.66", "203.0.113.9");
    text.push_str(
        "Dec  7 06:00:01 testhost sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2\n",
    );
    std::fs::write(&log, text).unwrap();
    let out = s.cli(None, &["scan", "--json", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let found = stdout(&out);
    assert!(!found.contains("10.66.66.66"), "{found}");
    // The line is still counted and numbered: the real attempt is on line 2.
    assert!(
        found.contains(r#""line":2,"rule":"sshd","ip":"192.0.2.1""#),
        "{found}"
    );
    assert!(found.contains(r#""lines":2"#), "{found}");
}
