//! `pyfilter show` and `check --json`, against the real binary: a daemon without firewall
//! bans from a log it follows, and `show` tells why an address is banned or not, with the
//! daemon running and after it stopped.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const CONFIG: &str = "firewall: { backend: none }\nfailed_attempts: 3\nban_time: 1h\n\
                      ban_time_increment: { factor: 2, max: 1d }\n\
                      ignore: [127.0.0.0/8, 198.51.100.0/24]";

fn show(s: &Setup, what: &str) -> Value {
    let out = s.cli(None, &["show", what, "--json"]);
    assert!(out.status.success(), "show {what}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

#[test]
fn show_tells_why_an_address_is_banned_and_what_is_counted_with_and_without_the_daemon() {
    let s = Setup::new(CONFIG);
    append(&s.log(), "");
    let d = Daemon::start_without_firewall(&s, &[]);
    for _ in 0..3 {
        append(&s.log(), &failed("192.0.2.10"));
    }
    append(&s.log(), &failed("192.0.2.11"));
    d.wait_log("banned 192.0.2.10");
    wait_for(Duration::from_secs(10), "192.0.2.11 to be counted", || {
        show(&s, "192.0.2.11")["counts"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    });

    let banned = show(&s, "192.0.2.10");
    assert_eq!(banned["daemon"], true, "{banned}");
    assert_eq!(banned["in_firewall"], serde_json::json!(["192.0.2.10"]));
    assert_eq!(banned["ignored_by"], Value::Null);
    let bans = banned["bans"].as_array().unwrap();
    assert_eq!(bans.len(), 1, "{banned}");
    assert_eq!(bans[0]["rule"], "sshd");
    assert_eq!(bans[0]["active"], true);
    assert!(
        bans[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Failed password for invalid user admin from 192.0.2.10"),
        "the log line that tipped it: {banned}"
    );
    // Banned once already: the next ban lasts twice the rule's hour.
    assert_eq!(banned["next_ban"][0]["ban_time"], "2h", "{banned}");
    assert_eq!(banned["next_ban"][0]["earlier_bans"], 1);

    let counted = show(&s, "192.0.2.11");
    assert_eq!(counted["in_firewall"], serde_json::json!([]));
    assert_eq!(counted["bans"], serde_json::json!([]));
    let counts = &counted["counts"][0];
    assert_eq!(
        (
            &counts["rule"],
            &counts["attempts"],
            &counts["failed_attempts"]
        ),
        (&Value::from("sshd"), &Value::from(1), &Value::from(3)),
        "{counted}"
    );
    assert_eq!(counted["next_ban"][0]["ban_time"], "1h");

    let text = stdout(&s.cli(None, &["show", "192.0.2.10"]));
    assert!(
        text.contains("firewall now: banned, as 192.0.2.10"),
        "{text}"
    );
    assert!(
        text.contains("by rule sshd on test-1 (log, 3 attempts)"),
        "{text}"
    );
    assert!(
        text.contains("next ban: sshd for 2h (1 earlier ban"),
        "{text}"
    );
    let text = stdout(&s.cli(None, &["show", "192.0.2.11"]));
    assert!(text.contains("counting now: sshd 1 of 3"), "{text}");
    assert!(text.contains("bans: none recorded"), "{text}");

    // A block shows the bans inside it.
    let block = show(&s, "192.0.2.0/24");
    assert_eq!(block["bans"].as_array().unwrap().len(), 1, "{block}");

    let ignored = show(&s, "198.51.100.7");
    assert_eq!(ignored["ignored_by"], "198.51.100.0/24", "{ignored}");
    let text = stdout(&s.cli(None, &["show", "198.51.100.7"]));
    assert!(
        text.contains("ignore list: covered by 198.51.100.0/24"),
        "{text}"
    );

    // Stopped: the firewall is unknown, the bans and the saved counts are still told.
    d.stop();
    let banned = show(&s, "192.0.2.10");
    assert_eq!(banned["daemon"], false);
    assert_eq!(banned["in_firewall"], Value::Null);
    assert_eq!(banned["bans"].as_array().unwrap().len(), 1);
    let counted = show(&s, "192.0.2.11");
    assert_eq!(
        counted["counts"][0]["attempts"], 1,
        "saved at stop: {counted}"
    );
    let text = stdout(&s.cli(None, &["show", "192.0.2.10"]));
    assert!(
        text.contains("firewall now: unknown, no daemon answers"),
        "{text}"
    );
}

#[test]
fn show_refuses_what_is_not_an_address_with_a_usage_error() {
    let s = Setup::new(CONFIG);
    let out = s.cli(None, &["show", "example.org"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("example.org"), "{}", stderr(&out));
}

#[test]
fn check_json_has_the_same_content_as_check() {
    let s = Setup::new(CONFIG);
    let json = s.cli(None, &["check", "--json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let report: Value = serde_json::from_str(&stdout(&json)).unwrap();
    let text = stdout(&s.cli(None, &["check"]));

    assert_eq!(report["ok"], true);
    assert_eq!(report["server_name"], "test-1");
    assert_eq!(report["firewall"]["kind"], "none");
    assert_eq!(
        report["ignore"],
        serde_json::json!(["127.0.0.0/8", "198.51.100.0/24"])
    );
    let rules = report["rules"].as_array().unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" -> ban "))
        .collect();
    assert_eq!(rules.len(), lines.len(), "one rule a line in the text");
    for rule in rules {
        let name = rule["name"].as_str().unwrap();
        let line = lines
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("{name} not in check's text"));
        let state = if rule["enabled"] == true {
            "enabled"
        } else {
            "disabled"
        };
        assert!(line.contains(state), "{line} / {rule}");
        let patterns = rule["patterns"].as_u64().unwrap();
        let noun = if patterns == 1 { "pattern" } else { "patterns" };
        assert!(
            line.contains(&format!("{patterns} {noun}")),
            "{line} / {rule}"
        );
        assert!(line.contains(&format!("-> ban {}", rule["ban_time"].as_str().unwrap())));
    }
    let sshd = rules.iter().find(|r| r["name"] == "sshd").unwrap();
    assert_eq!(
        sshd["reads"]["absent"],
        serde_json::json!([s.log().display().to_string()])
    );
    for w in report["warnings"].as_array().unwrap() {
        assert!(
            text.contains(&format!("warning: {}", w.as_str().unwrap())),
            "{w}"
        );
    }
}
