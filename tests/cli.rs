//! The CLI's contract without a daemon: bad input exits 2 with a precise message and
//! changes nothing; `scan` follows DESIGN.md's JSON Lines format to the letter.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn malformed_addresses_exit_2_and_change_nothing() {
    let ns = Netns::new();
    let s = Setup::new("");
    for (ip, says) in [
        ("not-an-ip", "not an IP address or CIDR block"),
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("256.1.1.1", "not an IP address"),
        ("127.0.0.1", "overlaps 127.0.0.0/8 in the ignore list"),
        ("0.0.0.0/0", "overlaps 127.0.0.0/8"),
    ] {
        let out = s.cli(Some(&ns), &["ban", ip]);
        assert_eq!(out.status.code(), Some(2), "ban {ip}");
        assert!(stderr(&out).contains(says), "ban {ip}: {}", stderr(&out));
    }
    let out = s.cli(Some(&ns), &["ban", "192.0.2.1", "--for", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--for: `soon` is not a duration"));
    assert!(
        ns.rules("iptables", "PYFILTER").is_empty(),
        "no chain was created"
    );
    assert!(
        !s.path("db/pyfilter.db").exists(),
        "no database was created"
    );
}

#[test]
fn a_malformed_config_exits_2_naming_file_line_and_key() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 3\nfirewall:\n  backend: iptables\n  acton: DROP");
    for cmd in [&["check"][..], &["run"], &["ban", "192.0.2.1"], &["list"]] {
        let out = s.cli(Some(&ns), cmd);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "{}:4: firewall: unknown field `acton`",
                s.config().display()
            )),
            "{cmd:?}: {err}"
        );
    }
    s.write_config("request_time: 10 minutes please");
    let err = stderr(&s.cli(None, &["check"]));
    assert!(
        err.contains(":1: request_time: `10 minutes please` is not a duration"),
        "{err}"
    );
    s.write_config("rules:\n  sshd: { log_files: [/x] }\n  nginx-typo: { enabled: true }");
    let err = stderr(&s.cli(None, &["check"]));
    assert!(err.contains(":3: rules.nginx-typo: no such rule"), "{err}");
    assert!(ns.rules("iptables", "PYFILTER").is_empty());
    assert!(!s.path("db").exists());
}

#[test]
fn check_prints_the_resolved_configuration_and_rules() {
    let s = Setup::new("failed_attempts: 4\nban_time: forever");
    let out = s.cli(None, &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("server_name: test-1"), "{text}");
    assert!(text.contains("sshd (enabled, "), "{text}");
    assert!(
        text.contains("4 attempts within 10m -> ban forever"),
        "{text}"
    );
    assert!(text.contains("configuration OK"));
    assert!(
        text.contains(
            "admin: 127.0.0.1:8080 (plain HTTP), log /var/log/pyfilter/admin.log, no user yet"
        ),
        "{text}"
    );
    assert!(
        !s.path("db").exists(),
        "check counted users without creating the database"
    );

    s.write_config(
        "admin: { geoip: /nonexistent/GeoLite2-Country.mmdb, tls_cert: /nonexistent/c.pem }",
    );
    let out = s.cli(None, &["check"]);
    let err = stdout(&out);
    assert!(
        err.contains("warning: admin: GeoIP database /nonexistent/GeoLite2-Country.mmdb"),
        "{err}"
    );
    assert!(err.contains("tls_cert and tls_key go together"), "{err}");
}

#[test]
fn scan_json_follows_the_contract() {
    let s = Setup::new("failed_attempts: 3\nignore: ['192.0.2.9']");
    let log = s.path("scan.log");
    let mut text = String::new();
    for sec in 10..14 {
        text.push_str(&format!("2024-07-20T14:42:{sec}+00:00 h sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2\n"));
    }
    text.push_str("2024-07-20T14:43:00+00:00 h sshd[1]: Accepted password for bob from 192.0.2.2 port 22 ssh2\n");
    text.push_str("2024-07-20T14:43:01+00:00 h sshd[1]: Invalid user x from 192.0.2.9 port 22\n");
    std::fs::write(&log, text).unwrap();
    let out = s.cli(None, &["scan", "--json", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<&str> = stdout(&out)
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .map(|s| s.as_str())
        .collect();
    let f = log.display();
    assert_eq!(
        lines,
        [
            format!(r#"{{"type":"match","file":"{f}","line":1,"rule":"sshd","ip":"192.0.2.1","time":"2024-07-20T14:42:10+00:00","instant":false}}"#),
            format!(r#"{{"type":"match","file":"{f}","line":2,"rule":"sshd","ip":"192.0.2.1","time":"2024-07-20T14:42:11+00:00","instant":false}}"#),
            format!(r#"{{"type":"match","file":"{f}","line":3,"rule":"sshd","ip":"192.0.2.1","time":"2024-07-20T14:42:12+00:00","instant":false}}"#),
            r#"{"type":"ban","rule":"sshd","ip":"192.0.2.1","time":"2024-07-20T14:42:12+00:00","attempts":3}"#.to_string(),
            format!(r#"{{"type":"match","file":"{f}","line":4,"rule":"sshd","ip":"192.0.2.1","time":"2024-07-20T14:42:13+00:00","instant":false}}"#),
            // Ignored addresses are reported as matches, marked, never banned.
            format!(r#"{{"type":"match","file":"{f}","line":6,"rule":"sshd","ip":"192.0.2.9","time":"2024-07-20T14:43:01+00:00","instant":false,"ignored":true}}"#),
            r#"{"type":"summary","lines":6,"matched":5,"bans":1}"#.to_string(),
        ]
    );
    assert!(!s.path("db").exists(), "scan never touches the store");
}

#[test]
fn scan_reads_stdin_and_real_loghub_logs() {
    let s = Setup::new("");
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/loghub-openssh-2k.log"
    );
    let data = std::fs::read(sample).unwrap();
    let mut child = Command::new(BIN)
        .args(["-c", s.config().to_str().unwrap(), "scan", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary["lines"], 2000);
    assert!(summary["matched"].as_u64().unwrap() > 1000, "{summary}");
    assert!(summary["bans"].as_u64().unwrap() >= 10, "{summary}");
    // Every match names a real address and the line's own time.
    for l in text.lines().filter(|l| l.contains(r#""type":"match""#)) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            v["ip"]
                .as_str()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .is_ok()
        );
        assert!(v["time"].as_str().unwrap().contains("-12-10T"), "{l}");
        assert_eq!(v["file"], "-");
    }
}

#[test]
fn scan_of_an_unknown_rule_exits_2() {
    let s = Setup::new("");
    let out = s.cli(None, &["scan", "--rule", "nosuch", "/dev/null"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--rule nosuch: no such rule (known: "));
    assert!(stderr(&out).contains(" sshd,") || stderr(&out).contains(" sshd)"));
}

#[test]
fn not_root_gets_a_clear_error_naming_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new("");
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(s.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "-c",
            s.config().to_str().unwrap(),
            "ban",
            "192.0.2.1",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("needs root") && stderr(&out).contains("firewall.backend: none"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn reject_action_and_extra_parent_chains_are_used() {
    let ns = Netns::new();
    assert!(
        ns.run("iptables", &["-w", "-N", "DOCKER-USER"])
            .status
            .success()
    );
    let s = Setup::new(
        "firewall: { backend: iptables, action: REJECT, parents: [INPUT, DOCKER-USER] }",
    );
    let out = s.cli(Some(&ns), &["ban", "192.0.2.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        ns.rules("iptables", "PYFILTER")
            .contains("-A PYFILTER -s 192.0.2.5/32 -j REJECT")
    );
    assert!(
        ns.rules("iptables", "DOCKER-USER")
            .contains("-A DOCKER-USER -j PYFILTER")
    );
    // flush removes pyfilter's chain and jumps, and nothing else.
    assert!(
        ns.run(
            "iptables",
            &["-w", "-A", "INPUT", "-s", "198.51.100.1", "-j", "ACCEPT"]
        )
        .status
        .success()
    );
    assert!(s.cli(Some(&ns), &["flush"]).status.success());
    assert!(ns.rules("iptables", "PYFILTER").is_empty());
    let input = ns.rules("iptables", "INPUT");
    assert!(
        !input.contains("PYFILTER") && input.contains("-A INPUT -s 198.51.100.1/32 -j ACCEPT"),
        "{input}"
    );
    assert!(
        ns.rules("iptables", "DOCKER-USER").lines().count() == 1,
        "only the chain itself is left"
    );
}
