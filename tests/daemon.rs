//! The daemon end to end: real log files appended, renamed and truncated; real iptables
//! and ip6tables inside a network namespace of the test's own; a real SQLite file.

mod common;

use std::time::Duration;

use chrono::Local;
use common::*;

const BAN_WAIT: Duration = Duration::from_secs(5);

fn ban_appears(ns: &Netns, ip: &str) {
    wait_for(
        BAN_WAIT,
        &format!("{ip} to be banned in the firewall"),
        || ns.has_ban(ip),
    );
}

#[test]
fn ipv4_and_ipv6_attackers_are_banned_from_appended_lines() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 3\nfirewall: { backend: iptables }");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    for _ in 0..3 {
        append(&s.log(), &failed("192.0.2.10"));
        append(&s.log(), &failed("2001:db8::10"));
    }
    ban_appears(&ns, "192.0.2.10");
    ban_appears(&ns, "2001:db8::10");
    // pyfilter's chain is jumped to from INPUT in both families.
    assert!(
        ns.rules("iptables", "INPUT")
            .contains("-A INPUT -j PYFILTER")
    );
    assert!(
        ns.rules("ip6tables", "INPUT")
            .contains("-A INPUT -j PYFILTER")
    );
    let list = stdout(&s.cli(Some(&ns), &["list", "--json"]));
    let bans: Vec<serde_json::Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bans.len(), 2, "{list}");
    for ban in &bans {
        assert_eq!(ban["rule"], "sshd");
        assert_eq!(ban["source"], "log");
        assert_eq!(ban["server"], "test-1");
        assert!(
            ban["reason"]
                .as_str()
                .unwrap()
                .contains("Failed password for invalid user admin")
        );
        assert!(ban["expires_at"].is_string());
    }
    let (took, status, _) = d.stop();
    assert!(status.success());
    assert!(took < Duration::from_secs(1), "stopping took {took:?}");
}

#[test]
fn ignored_addresses_and_slow_attackers_are_never_banned() {
    let ns = Netns::new();
    let s = Setup::new(
        "failed_attempts: 3\nrequest_time: 1m\nignore: [127.0.0.0/8, '::1', 10.0.0.0/8]",
    );
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    let now = Local::now();
    for _ in 0..5 {
        append(&s.log(), &failed("127.0.0.1"));
        append(&s.log(), &failed("10.9.8.7"));
    }
    // Once every two minutes (in the log's own time) for six attempts: the count keeps
    // starting again at 1.
    for i in (0..6).rev() {
        append(
            &s.log(),
            &failed_at("192.0.2.30", now - chrono::Duration::minutes(2 * i)),
        );
    }
    // A fast attacker afterwards proves every earlier line was handled.
    for _ in 0..3 {
        append(&s.log(), &failed("192.0.2.31"));
    }
    ban_appears(&ns, "192.0.2.31");
    for ip in ["127.0.0.1", "10.9.8.7", "192.0.2.30"] {
        assert!(!ns.has_ban(ip), "{ip} must not be banned");
    }
    let out = d.stop().2;
    assert!(out.contains("is in the ignore list"), "{out}");
}

#[test]
fn the_count_restarts_after_request_time_then_bans_when_fast() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 3\nrequest_time: 5s");
    append(&s.log(), "");
    let _d = Daemon::start(&s, &ns);
    let t = Local::now() - chrono::Duration::seconds(60);
    let sec = |n| t + chrono::Duration::seconds(n);
    // 1, 2, then a 20 s gap: the third line counts as 1 again.
    append(&s.log(), &failed_rfc3339("192.0.2.40", sec(0)));
    append(&s.log(), &failed_rfc3339("192.0.2.40", sec(4)));
    append(&s.log(), &failed_rfc3339("192.0.2.40", sec(24)));
    append(&s.log(), &failed_rfc3339("192.0.2.41", sec(25)));
    append(&s.log(), &failed_rfc3339("192.0.2.41", sec(26)));
    append(&s.log(), &failed_rfc3339("192.0.2.41", sec(27)));
    ban_appears(&ns, "192.0.2.41");
    assert!(!ns.has_ban("192.0.2.40"));
    // Two more quick ones: 2 and 3 within 5 s of each other -> banned.
    append(&s.log(), &failed_rfc3339("192.0.2.40", sec(26)));
    append(&s.log(), &failed_rfc3339("192.0.2.40", sec(28)));
    ban_appears(&ns, "192.0.2.40");
}

#[test]
fn an_instant_pattern_bans_on_one_line() {
    let ns = Netns::new();
    let s = Setup::new("enabled_rules: [probe]");
    std::fs::create_dir_all(s.path("rules.d")).unwrap();
    std::fs::write(
        s.path("rules.d/probe.yml"),
        format!(
            "name: probe\nlog_files: [{}]\ntime_format: rfc3339\nprefix: '^\\S+ '\npatterns:\n  - {{ regex: 'exploit probe from <IP>$', instant: true }}\n  - 'odd request from <IP>$'\n",
            s.path("probe.log").display()
        ),
    )
    .unwrap();
    append(&s.path("probe.log"), "");
    let _d = Daemon::start(&s, &ns);
    let now = Local::now().to_rfc3339();
    append(
        &s.path("probe.log"),
        &format!("{now} odd request from 198.51.100.7\n{now} exploit probe from 198.51.100.8\n"),
    );
    ban_appears(&ns, "198.51.100.8");
    assert!(!ns.has_ban("198.51.100.7"));
}

#[test]
fn rotation_by_rename_and_by_copytruncate_lose_no_line() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 3");
    append(&s.log(), "");
    let _d = Daemon::start(&s, &ns);

    // Rename: two attempts in the old file, the third in the new one.
    append(&s.log(), &failed("192.0.2.50"));
    append(&s.log(), &failed("192.0.2.50"));
    std::fs::rename(s.log(), s.path("auth.log.1")).unwrap();
    append(&s.log(), &failed("192.0.2.50"));
    ban_appears(&ns, "192.0.2.50");

    // Copytruncate: copy away, truncate in place, keep writing.
    append(&s.log(), &failed("192.0.2.51"));
    append(&s.log(), &failed("192.0.2.51"));
    std::thread::sleep(Duration::from_millis(200));
    std::fs::copy(s.log(), s.path("auth.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(s.log())
        .unwrap();
    append(&s.log(), &failed("192.0.2.51"));
    ban_appears(&ns, "192.0.2.51");
}

#[test]
fn a_line_written_in_two_pieces_counts_once() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    let line = failed("192.0.2.60");
    let (a, b) = line.split_at(30);
    append(&s.log(), a);
    std::thread::sleep(Duration::from_millis(300));
    append(&s.log(), b);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!ns.has_ban("192.0.2.60"), "one whole line is one attempt");
    append(&s.log(), &line);
    ban_appears(&ns, "192.0.2.60");
    assert!(d.output().contains("attempt 1 of 2"));
}

#[test]
fn a_log_file_created_after_start_is_followed_from_its_start() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    let sub = s.path("later/auth.log");
    s.write_config(&format!(
        "failed_attempts: 2\nrules:\n  sshd: {{ log_files: ['{}'] }}",
        sub.display()
    ));
    let _d = Daemon::start(&s, &ns);
    std::fs::create_dir_all(sub.parent().unwrap()).unwrap();
    append(
        &sub,
        &format!("{}{}", failed("192.0.2.70"), failed("192.0.2.70")),
    );
    ban_appears(&ns, "192.0.2.70");
}

#[test]
fn globbed_log_files_are_found_now_and_later() {
    let ns = Netns::new();
    let s = Setup::new("");
    std::fs::create_dir_all(s.path("logs")).unwrap();
    append(&s.path("logs/a.log"), "");
    s.write_config(&format!(
        "failed_attempts: 2\nrules:\n  sshd: {{ log_files: ['{}/logs/*.log'] }}",
        s.dir.path().display()
    ));
    let d = Daemon::start(&s, &ns);
    d.wait_log("a.log: following");
    append(
        &s.path("logs/a.log"),
        &format!("{}{}", failed("192.0.2.80"), failed("192.0.2.80")),
    );
    ban_appears(&ns, "192.0.2.80");
    append(
        &s.path("logs/b.log"),
        &format!("{}{}", failed("192.0.2.81"), failed("192.0.2.81")),
    );
    ban_appears(&ns, "192.0.2.81");
}

#[test]
fn restart_restores_bans_resumes_the_log_and_leaves_foreign_rules_alone() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.90"), failed("192.0.2.90")),
    );
    ban_appears(&ns, "192.0.2.90");
    assert!(d.stop().1.success());

    // While stopped: someone flushes the chain, adds their own rule, and the log grows.
    assert!(
        ns.run("iptables", &["-w", "-F", "PYFILTER"])
            .status
            .success()
    );
    assert!(
        ns.run(
            "iptables",
            &["-w", "-A", "INPUT", "-s", "198.51.100.99", "-j", "ACCEPT"]
        )
        .status
        .success()
    );
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.91"), failed("192.0.2.91")),
    );

    let d = Daemon::start(&s, &ns);
    ban_appears(&ns, "192.0.2.90");
    ban_appears(&ns, "192.0.2.91");
    assert!(d.output().contains("2 bans restored") || d.output().contains("1 ban restored"));
    let input = ns.rules("iptables", "INPUT");
    assert!(
        input.contains("-A INPUT -s 198.51.100.99/32 -j ACCEPT"),
        "{input}"
    );
    assert_eq!(
        input.matches("-j PYFILTER").count(),
        1,
        "one jump, not two: {input}"
    );
    // The old lines were not replayed: 192.0.2.90 was banned once only.
    let all = stdout(&s.cli(Some(&ns), &["list", "--all", "--json"]));
    assert_eq!(all.matches(r#""ip":"192.0.2.90""#).count(), 1, "{all}");
}

#[test]
fn cli_ban_unban_and_list_while_the_daemon_runs() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);

    let out = s.cli(
        Some(&ns),
        &[
            "ban",
            "198.51.100.0/24",
            "--for",
            "2s",
            "--reason",
            "scanner <b>net</b>",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("banned 198.51.100.0/24 until"));
    assert!(ns.has_ban("198.51.100.0/24"));
    let table = stdout(&s.cli(Some(&ns), &["list"]));
    assert!(
        table.contains("198.51.100.0/24")
            && table.contains("manual")
            && table.contains("scanner <b>net</b>"),
        "{table}"
    );

    // The daemon honours the manual ban's expiry by itself.
    wait_for(
        Duration::from_secs(6),
        "the daemon to lift the 2 s ban",
        || !ns.has_ban("198.51.100.0/24"),
    );
    d.wait_log("unbanned 198.51.100.0/24 (expired)");

    // A log ban lifted by hand stays lifted: the daemon does not undo it.
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.100"), failed("192.0.2.100")),
    );
    ban_appears(&ns, "192.0.2.100");
    let out = s.cli(Some(&ns), &["unban", "192.0.2.100"]);
    assert_eq!(stdout(&out).trim(), "unbanned 192.0.2.100");
    assert!(!ns.has_ban("192.0.2.100"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!ns.has_ban("192.0.2.100"));
    assert_eq!(
        stdout(&s.cli(Some(&ns), &["unban", "192.0.2.100"])).trim(),
        "192.0.2.100 was not banned"
    );

    // A forever ban, and the history shows everything.
    assert!(
        s.cli(Some(&ns), &["ban", "2001:db8:bad::1", "--for", "forever"])
            .status
            .success()
    );
    assert!(ns.has_ban("2001:db8:bad::1"));
    let all = stdout(&s.cli(Some(&ns), &["list", "--all", "--json"]));
    let sources: Vec<String> = all
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["source"].to_string())
        .collect();
    assert_eq!(sources, ["\"manual\"", "\"log\"", "\"manual\""], "{all}");
    assert!(all.contains("\"expires_at\":null"));
}

#[test]
fn prune_lifts_expired_bans_when_no_daemon_runs() {
    let ns = Netns::new();
    let s = Setup::new("history_retention: 1s");
    assert!(
        s.cli(Some(&ns), &["ban", "192.0.2.110", "--for", "1s"])
            .status
            .success()
    );
    assert!(
        s.cli(Some(&ns), &["ban", "192.0.2.111", "--for", "1h"])
            .status
            .success()
    );
    assert!(ns.has_ban("192.0.2.110"));
    std::thread::sleep(Duration::from_millis(2100));
    let out = s.cli(Some(&ns), &["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("1 expired ban lifted"),
        "{}",
        stdout(&out)
    );
    assert!(!ns.has_ban("192.0.2.110"));
    assert!(ns.has_ban("192.0.2.111"));
    // Past history_retention the lifted ban is dropped from the history too.
    std::thread::sleep(Duration::from_millis(2100));
    let out = s.cli(Some(&ns), &["prune"]);
    assert!(
        stdout(&out).contains("1 old history record dropped"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stdout(&s.cli(Some(&ns), &["list", "--all", "--json"]))
            .lines()
            .count(),
        1
    );
}

#[test]
fn sighup_applies_a_good_config_and_refuses_a_bad_one() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 5");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    append(&s.log(), &failed("192.0.2.120"));
    std::thread::sleep(Duration::from_millis(200));

    s.write_config("failed_attempts: 2");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded");
    // The counter survived the reload: one more line reaches the new threshold of 2.
    append(&s.log(), &failed("192.0.2.120"));
    ban_appears(&ns, "192.0.2.120");

    std::fs::write(s.config(), "failed_attempts: 2\nban_tme: 1h\n").unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("reload refused");
    assert!(d.output().contains("unknown field `ban_tme`"));
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.121"), failed("192.0.2.121")),
    );
    ban_appears(&ns, "192.0.2.121");
    assert!(ns.has_ban("192.0.2.120"), "bans survive reloads");
}

#[test]
fn sigterm_stops_within_a_second_and_saves_the_position() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 3");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    append(&s.log(), &failed("192.0.2.130"));
    std::thread::sleep(Duration::from_millis(300));
    let (took, status, _) = d.stop();
    assert!(status.success());
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The first attempt was read before the stop, and its count saved with the position:
    // a second after restart is the second, not the third (the line read before the stop
    // is not read again) ...
    let d = Daemon::start(&s, &ns);
    append(&s.log(), &failed("192.0.2.130"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!ns.has_ban("192.0.2.130"), "{}", d.output());
    // ... and a third is a ban (the count was not forgotten).
    append(&s.log(), &failed("192.0.2.130"));
    wait_for(
        Duration::from_secs(5),
        "the ban at the third attempt",
        || ns.has_ban("192.0.2.130"),
    );
}

#[test]
fn lines_written_right_after_ready_count_and_old_history_does_not() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    // History from before pyfilter was installed: not replayed on a first start.
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.140"), failed("192.0.2.140")),
    );
    let d = Daemon::start(&s, &ns);
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.141"), failed("192.0.2.141")),
    );
    ban_appears(&ns, "192.0.2.141");
    assert!(!ns.has_ban("192.0.2.140"), "{}", d.output());
}

#[test]
fn the_journal_is_followed_and_resumed_from_its_cursor() {
    let ns = Netns::new();
    let s = Setup::new("");
    let journal = s.path("system.journal");
    let config = format!(
        "failed_attempts: 2\nrules:\n  sshd: {{ log_files: [], journal: {{ file: '{}', match: [_COMM=sshd, _COMM=sshd-session] }} }}",
        journal.display()
    );
    s.write_config(&config);
    // History from before the first start is not replayed.
    journal_entry(
        &journal,
        "web1",
        "sshd",
        4242,
        "Failed password for root from 192.0.2.150 port 22 ssh2",
    );
    journal_entry(
        &journal,
        "web1",
        "sshd",
        4242,
        "Failed password for root from 192.0.2.150 port 22 ssh2",
    );
    let d = Daemon::start(&s, &ns);
    d.wait_log("following the journal for sshd");
    std::thread::sleep(Duration::from_millis(300));
    journal_entry(
        &journal,
        "web1",
        "sshd-session",
        4242,
        "Failed password for root from 192.0.2.151 port 22 ssh2",
    );
    journal_entry(
        &journal,
        "web1",
        "sshd-session",
        4242,
        "Failed password for invalid user x from 192.0.2.151 port 22 ssh2",
    );
    // Another program's entry naming an address is not sshd's.
    journal_entry(
        &journal,
        "web1",
        "cron",
        4242,
        "Failed password for root from 192.0.2.152 port 22 ssh2",
    );
    ban_appears(&ns, "192.0.2.151");
    assert!(!ns.has_ban("192.0.2.150") && !ns.has_ban("192.0.2.152"));
    let (_, status, out) = d.stop();
    assert!(status.success(), "{out}");
    // Written while stopped: read after the restart, from the saved cursor.
    journal_entry(
        &journal,
        "web1",
        "sshd",
        4242,
        "Failed password for root from 192.0.2.153 port 22 ssh2",
    );
    journal_entry(
        &journal,
        "web1",
        "sshd",
        4242,
        "Failed password for root from 192.0.2.153 port 22 ssh2",
    );
    let d = Daemon::start(&s, &ns);
    ban_appears(&ns, "192.0.2.153");
    // And the entries before the cursor were not replayed: one ban of .151 in the history.
    let all = stdout(&s.cli(Some(&ns), &["list", "--all", "--json"]));
    assert_eq!(
        all.matches(r#""ip":"192.0.2.151""#).count(),
        1,
        "{all}\n{}",
        d.output()
    );
}

#[test]
fn the_rules_reading_one_journal_share_one_journalctl_and_each_gets_its_entries() {
    let ns = Netns::new();
    let s = Setup::new("");
    let journal = s.path("system.journal");
    s.write_config(&format!(
        "failed_attempts: 1\nenabled_rules: [sshd, dropbear]\nrules:\n  sshd: {{ log_files: [], journal: {{ file: '{j}', match: [_COMM=sshd] }} }}\n  dropbear: {{ log_files: [], journal: {{ file: '{j}', match: [_COMM=dropbear] }} }}",
        j = journal.display()
    ));
    journal_entry(&journal, "web1", "cron", 1, "started");
    let d = Daemon::start(&s, &ns);
    d.wait_log("following the journal for dropbear");
    // The journalctl processes reading this test's journal file (its path is unique).
    let file = journal.display().to_string();
    let journalctls = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|p| {
                std::fs::read(p.path().join("cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.starts_with("journalctl\0") && c.contains(&file)
                })
            })
            .count()
    };
    wait_for(Duration::from_secs(5), "journalctl to start", || {
        journalctls() > 0
    });
    assert_eq!(journalctls(), 1, "one journalctl for both rules");
    std::thread::sleep(Duration::from_millis(300));
    journal_entry(
        &journal,
        "web1",
        "sshd",
        4242,
        "Failed password for root from 192.0.2.160 port 22 ssh2",
    );
    journal_entry(
        &journal,
        "web1",
        "dropbear",
        4243,
        "Bad password attempt for 'root' from 192.0.2.161:50022",
    );
    // sshd's words from dropbear's process are not sshd's, and the other way round.
    journal_entry(
        &journal,
        "web1",
        "dropbear",
        4244,
        "Failed password for root from 192.0.2.162 port 22 ssh2",
    );
    ban_appears(&ns, "192.0.2.160");
    ban_appears(&ns, "192.0.2.161");
    assert!(!ns.has_ban("192.0.2.162"));
    let out = d.output();
    assert!(out.contains("banned 192.0.2.160 (rule sshd"), "{out}");
    assert!(out.contains("banned 192.0.2.161 (rule dropbear"), "{out}");
}

#[test]
fn repeat_offenders_are_banned_longer_each_time() {
    let ns = Netns::new();
    let s =
        Setup::new("failed_attempts: 2\nban_time: 1h\nban_time_increment: { factor: 2, max: 3h }");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    let lengths = |s: &Setup| -> Vec<i64> {
        stdout(&s.cli(Some(&ns), &["list", "--all", "--json"]))
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let t = |k: &str| {
                    chrono::DateTime::parse_from_rfc3339(v[k].as_str().unwrap())
                        .unwrap()
                        .timestamp()
                };
                (t("expires_at") - t("banned_at")) / 60
            })
            .collect()
    };
    for round in 0..3 {
        append(
            &s.log(),
            &format!("{}{}", failed("192.0.2.160"), failed("192.0.2.160")),
        );
        ban_appears(&ns, "192.0.2.160");
        assert!(s.cli(Some(&ns), &["unban", "192.0.2.160"]).status.success());
        assert_eq!(lengths(&s).len(), round + 1);
    }
    // 1 h, then twice as long, then capped at 3 h (minutes, give or take the rounding).
    let l = lengths(&s);
    assert!(
        (59..=60).contains(&l[0]) && (119..=120).contains(&l[1]) && (179..=180).contains(&l[2]),
        "{l:?}\n{}",
        d.output()
    );
    assert!(
        d.output()
            .contains("was banned 2 times within 30d: banned for 3h"),
        "{}",
        d.output()
    );
}
