//! `pyfilter import --fail2ban`: Debian's packaged /etc/fail2ban (unpacked from the real
//! package, never installed) with a jail.local, turned into a pyfilter.yml that
//! `pyfilter check` accepts; what cannot be carried over on stderr; the errors; and an
//! imported `journalmatch` with `+` followed by a real daemon.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Debian's /etc/fail2ban, from the package itself (scripts/fetch-fail2ban). Fails, never
/// skips, when it cannot be had.
fn packaged() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fail2ban-deb");
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-fail2ban"))
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/fetch-fail2ban runs");
    assert!(
        out.status.success(),
        "cannot unpack Debian's fail2ban package (apt-get download fail2ban): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("etc/fail2ban")
}

/// A copy of the packaged configuration the test may write in.
fn fail2ban_dir(s: &Setup) -> PathBuf {
    let dir = s.path("fail2ban");
    let out = Command::new("cp")
        .arg("-a")
        .arg(packaged())
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

const JAIL_LOCAL: &str = "\
[DEFAULT]
ignoreip = 127.0.0.1/8 ::1 192.0.2.0/24 office.example.org
bantime  = 1h
findtime = 15m
maxretry = 4

[sshd]
enabled = true
mode    = aggressive

[postfix]
enabled = true

[nginx-http-auth]
enabled  = true
maxretry = 3

# A service of our own: no pyfilter rule has its name. It mails whois and log lines.
[myapp]
enabled = true
filter  = myapp
logpath = /var/log/myapp.log
action  = %(action_mwl)s
";

/// Whether this pyfilter accepts `mode` for a rule (another change adds it).
fn accepts_mode(s: &Setup, rule: &str, mode: &str) -> bool {
    let probe = s.path("mode-probe.yml");
    std::fs::write(
        &probe,
        format!(
            "rules_dir: {}\nrules:\n  {rule}: {{ mode: {mode} }}\n",
            s.path("rules.d").display()
        ),
    )
    .unwrap();
    Command::new(BIN)
        .arg("-c")
        .arg(&probe)
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn debians_packaged_configuration_with_a_jail_local_becomes_a_checked_pyfilter_yml() {
    let s = Setup::new("");
    let dir = fail2ban_dir(&s);
    std::fs::write(dir.join("jail.local"), JAIL_LOCAL).unwrap();
    std::fs::write(
        dir.join("jail.d/x.local"),
        "[nginx-http-auth]\nbantime = 1d\n",
    )
    .unwrap();

    let out = s.cli(None, &["import", "--fail2ban", dir.to_str().unwrap()]);
    let (yaml, notes) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{notes}");

    // The files, in fail2ban's order, includes first.
    let read: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter(|l| l.starts_with('/'))
        .collect();
    let d = dir.display();
    assert_eq!(
        read,
        [
            format!("{d}/paths-common.conf"),
            format!("{d}/paths-debian.conf"),
            format!("{d}/jail.conf"),
            format!("{d}/jail.d/defaults-debian.conf"),
            format!("{d}/jail.local"),
            format!("{d}/jail.d/x.local"),
        ]
    );

    // Key by key.
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let mut top: Vec<&str> = v
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [
            "ban_time",
            "failed_attempts",
            "firewall",
            "ignore",
            "request_time",
            "rules",
        ],
        "server_name is left out\n{yaml}"
    );
    assert_eq!(v["failed_attempts"], 4);
    assert_eq!(v["request_time"], "15m");
    assert_eq!(v["ban_time"], "1h");
    assert_eq!(
        v["ignore"],
        serde_yaml::from_str::<serde_yaml::Value>("[127.0.0.0/8, '::1', 192.0.2.0/24]").unwrap()
    );
    assert_eq!(
        v["firewall"]["backend"], "iptables",
        "banaction iptables-multiport"
    );
    let rules = v["rules"].as_mapping().unwrap();
    let mut names: Vec<&str> = rules.keys().map(|k| k.as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["nginx-http-auth", "postfix", "sshd"],
        "no rule for myapp"
    );

    let sshd = &v["rules"]["sshd"];
    assert_eq!(sshd["enabled"], true);
    assert_eq!(sshd["log_files"][0], "/var/log/auth.log");
    assert_eq!(sshd["log_files"].as_sequence().unwrap().len(), 1);
    assert!(sshd.get("failed_attempts").is_none(), "as the defaults");
    let postfix = &v["rules"]["postfix"];
    assert_eq!(postfix["enabled"], true);
    assert_eq!(
        postfix["log_files"][0], "/var/log/mail.log",
        "%(syslog_mail_warn)s on Debian"
    );
    let nginx = &v["rules"]["nginx-http-auth"];
    assert_eq!(nginx["enabled"], true);
    assert_eq!(nginx["failed_attempts"], 3);
    assert_eq!(nginx["ban_time"], "1d", "jail.d/x.local wins");
    assert_eq!(nginx["log_files"][0], "/var/log/nginx/*error.log");
    assert!(nginx.get("mode").is_none(), "normal is the default mode");

    // Modes: carried when this pyfilter takes them, a note otherwise.
    for (rule, mode) in [("sshd", "aggressive"), ("postfix", "more")] {
        if accepts_mode(&s, rule, mode) {
            assert_eq!(v["rules"][rule]["mode"], mode, "{yaml}");
        } else {
            assert!(v["rules"][rule].get("mode").is_none());
            assert!(
                notes.contains(&format!("# jail {rule}: mode {mode} not carried over:")),
                "{notes}"
            );
        }
    }

    // What cannot be carried over: on stderr as YAML comments, and in the YAML itself.
    for expected in [
        "# [DEFAULT]: ignoreip office.example.org not carried over: a host name",
        "# jail sshd: port ssh not carried over: pyfilter bans an address on every port",
        "# jail postfix: port smtp,465,submission not carried over",
        "# jail myapp: filter myapp not carried over: pyfilter has no rule of that name",
        "# jail myapp: action sendmail-whois-lines not carried over: pyfilter sends no mail",
    ] {
        assert!(notes.contains(expected), "{expected:?} not in\n{notes}");
        assert!(yaml.contains(expected), "{expected:?} not in\n{yaml}");
    }
    for line in notes.lines() {
        assert!(line.starts_with("# "), "not a YAML comment: {line}");
        if !line.starts_with("# 4 jails enabled") {
            assert!(yaml.contains(line), "{line:?} is not in the YAML");
        }
    }
    assert!(
        notes
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("# 4 jails enabled: 3 carried over, 1 not;")),
        "{notes}"
    );
    // Beside its jail: the myapp notes follow the `# jail myapp` line.
    let at = yaml.find("  # jail myapp\n").expect("the jail's heading");
    assert!(yaml[at..].contains("  # jail myapp: action sendmail-whois-lines"));

    // pyfilter check accepts it.
    let file = s.path("imported.yml");
    std::fs::write(&file, &yaml).unwrap();
    let check = Command::new(BIN)
        .arg("-c")
        .arg(&file)
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
}

#[test]
fn a_missing_directory_or_a_malformed_file_exits_2_naming_file_and_line() {
    let s = Setup::new("");
    let out = s.cli(
        None,
        &["import", "--fail2ban", s.path("nope").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nope: no such directory"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    let empty = s.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = s.cli(None, &["import", "--fail2ban", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no jail.conf, jail.local"),
        "{}",
        stderr(&out)
    );

    let dir = fail2ban_dir(&s);
    std::fs::write(
        dir.join("jail.local"),
        "[sshd]\nenabled = true\nmaxretry = 3\nmaxretry = 4\n",
    )
    .unwrap();
    let out = s.cli(None, &["import", "--fail2ban", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "{}:4: `maxretry` is set twice",
            dir.join("jail.local").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "nothing half-made on stdout");

    std::fs::write(dir.join("jail.local"), "enabled = true\n").unwrap();
    let out = s.cli(None, &["import", "--fail2ban", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("jail.local:1:"), "{}", stderr(&out));
}

#[test]
fn a_rule_of_the_sites_own_rules_dir_takes_a_jail_and_the_rules_dir_is_carried() {
    let s = Setup::new("");
    let dir = fail2ban_dir(&s);
    std::fs::write(dir.join("jail.local"), JAIL_LOCAL).unwrap();
    std::fs::create_dir(s.path("rules.d")).unwrap();
    std::fs::write(
        s.path("rules.d/myapp.yml"),
        "name: myapp\nlog_files: [/var/log/myapp.log]\npatterns: ['^login failed from <IP>$']\n",
    )
    .unwrap();
    let out = s.cli(None, &["import", "--fail2ban", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_yaml::Value = serde_yaml::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["rules_dir"], s.path("rules.d").to_str().unwrap());
    assert_eq!(v["rules"]["myapp"]["log_files"][0], "/var/log/myapp.log");
    assert!(!stderr(&out).contains("filter myapp not carried over"));
    assert!(
        stderr(&out).contains("# jail myapp: action sendmail-whois-lines not carried over"),
        "{}",
        stderr(&out)
    );
}

/// pyfilter(1)'s way of writing text in an example.
fn man_text(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The example runs shown in the README and in pyfilter(1), as this binary prints them
/// on Debian's packaged configuration (run on a copy: its path is shown as
/// /etc/fail2ban). `PYFILTER_UPDATE_DOCS=1` writes them into the docs instead.
#[test]
fn the_readme_and_the_man_page_show_what_the_binary_prints() {
    let s = Setup::new("");
    let run = |dir: &Path| {
        let out = s.cli(None, &["import", "--fail2ban", dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let shown = |t: String| t.replace(dir.to_str().unwrap(), "/etc/fail2ban");
        (shown(stdout(&out)), shown(stderr(&out)))
    };
    let dir = fail2ban_dir(&s);
    let (plain, plain_err) = run(&dir);
    std::fs::write(dir.join("jail.local"), JAIL_LOCAL).unwrap();
    std::fs::write(
        dir.join("jail.d/x.local"),
        "[nginx-http-auth]\nbantime = 1d\n",
    )
    .unwrap();
    let (full, full_err) = run(&dir);

    let docs = [
        (
            "README.md",
            vec![
                (
                    "with this\n`jail.local`:\n\n```ini\n",
                    "\n```",
                    JAIL_LOCAL.trim_end().to_string(),
                ),
                (
                    "`sudo pyfilter import --fail2ban > pyfilter.yml` writes\n\n```yaml\n",
                    "\n```",
                    full.trim_end().to_string(),
                ),
                (
                    "and on standard error\n\n```\n",
                    "\n```",
                    full_err.trim_end().to_string(),
                ),
            ],
        ),
        (
            "man/pyfilter.1",
            vec![
                (
                    "standard output is\n.PP\n.in +4n\n.EX\n",
                    "\n.EE",
                    man_text(&plain),
                ),
                (
                    "and standard error\n.PP\n.in +4n\n.EX\n",
                    "\n.EE",
                    man_text(&plain_err),
                ),
            ],
        ),
    ];
    let update = std::env::var("PYFILTER_UPDATE_DOCS").is_ok_and(|v| v == "1");
    for (file, blocks) in docs {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (before, end, want) in blocks {
            let start = text
                .find(before)
                .unwrap_or_else(|| panic!("{file} has no {before:?}"))
                + before.len();
            let stop = start + text[start..].find(end).unwrap();
            if update {
                text.replace_range(start..stop, &want);
            } else {
                assert_eq!(
                    text[start..stop],
                    want,
                    "{file} shows other output than the binary prints: run this test with PYFILTER_UPDATE_DOCS=1"
                );
            }
        }
        if update {
            std::fs::write(&path, text).unwrap();
        }
    }
}

#[test]
fn an_imported_journalmatch_with_plus_reads_entries_matching_either_side() {
    let ns = Netns::new();
    let s = Setup::new("");
    let journal = s.path("system.journal");
    let dir = fail2ban_dir(&s);
    // `_SYSTEMD_UNIT=none.service` matches nothing here: an entry counts through the
    // other side of the `+` alone.
    std::fs::write(
        dir.join("jail.local"),
        format!(
            "[DEFAULT]\nmaxretry = 2\nbantime = 1h\n\n[sshd]\nenabled = true\nbackend = systemd[journalpath={}]\njournalmatch = _SYSTEMD_UNIT=none.service + _COMM=sshd\n",
            journal.display()
        ),
    )
    .unwrap();
    let out = s.cli(None, &["import", "--fail2ban", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let imported = stdout(&out);
    // The test's own keys: its database, its name, only this rule.
    let config = format!(
        "{imported}server_name: test-1\nsqlite: {{ path: {} }}\nenabled_rules: [sshd]\n",
        s.path("db/pyfilter.db").display()
    );
    std::fs::write(s.config(), config).unwrap();
    journal_entry(&journal, "web1", "cron", 4242, "started");
    let d = Daemon::start(&s, &ns);
    d.wait_log("following the journal for sshd");
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..2 {
        journal_entry(
            &journal,
            "web1",
            "sshd",
            4242,
            "Failed password for root from 192.0.2.161 port 22 ssh2",
        );
        // Another program's line, matched by neither side, is not read.
        journal_entry(
            &journal,
            "web1",
            "cron",
            4242,
            "Failed password for root from 192.0.2.162 port 22 ssh2",
        );
    }
    wait_for(Duration::from_secs(10), "192.0.2.161 to be banned", || {
        ns.has_ban("192.0.2.161")
    });
    assert!(!ns.has_ban("192.0.2.162"), "{}", d.output());
}
