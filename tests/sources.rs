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

/// A daemon (firewall `none`) on `s`, and the sshd line that bans on the second attempt.
fn daemon(s: &Setup, ns: &Netns) -> Daemon {
    Daemon::start(s, ns)
}

fn attack(log: &std::path::Path, ip: &str) {
    append(log, &format!("{}{}", failed(ip), failed(ip)));
}

const TWO: &str = "failed_attempts: 2\nfirewall: { backend: none }";

#[test]
fn a_log_that_appears_later_is_followed_without_a_reload() {
    let ns = Netns::new();
    let s = Setup::new(TWO);
    let d = daemon(&s, &ns);
    d.wait_log("absent, followed when they appear");
    assert!(!d.output().contains("no longer followed"), "{}", d.output());
    attack(&s.log(), "192.0.2.60");
    ban_recorded(&s, "192.0.2.60");
    d.wait_log("appeared; following it");
}

#[test]
fn a_log_replaced_by_a_directory_and_back_is_followed_again() {
    let ns = Netns::new();
    let s = Setup::new(TWO);
    append(&s.log(), "");
    let d = daemon(&s, &ns);
    std::fs::remove_file(s.log()).unwrap();
    std::fs::create_dir(s.log()).unwrap();
    d.wait_log("is now a directory");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_dir(s.log()).unwrap();
    attack(&s.log(), "192.0.2.61");
    ban_recorded(&s, "192.0.2.61");
    let out = d.output();
    assert!(!out.contains("Is a directory"), "{out}");
}

#[test]
fn a_log_deleted_and_created_again_is_followed_from_its_start() {
    let ns = Netns::new();
    let s = Setup::new(TWO);
    append(&s.log(), "");
    let d = daemon(&s, &ns);
    std::fs::remove_file(s.log()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    attack(&s.log(), "192.0.2.62");
    ban_recorded(&s, "192.0.2.62");
    drop(d);
}

#[test]
fn a_log_whose_directories_are_created_later_is_followed() {
    let ns = Netns::new();
    let s = Setup::new("");
    let log = s.path("late/a/b/auth.log");
    s.write_config(&format!(
        "{TWO}\nrules:\n  sshd: {{ log_files: ['{}'] }}",
        log.display()
    ));
    let d = daemon(&s, &ns);
    std::fs::create_dir(s.path("late")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::create_dir_all(s.path("late/a/b")).unwrap();
    attack(&log, "192.0.2.63");
    ban_recorded(&s, "192.0.2.63");
    drop(d);
}

#[test]
fn a_line_written_to_the_rotated_file_after_the_new_one_has_data_is_read() {
    let ns = Netns::new();
    let s = Setup::new(TWO);
    append(&s.log(), "");
    let d = daemon(&s, &ns);
    let old = s.path("auth.log.1");
    std::fs::rename(s.log(), &old).unwrap();
    append(&s.log(), &failed("192.0.2.64"));
    d.wait_log("rotated; following the new file");
    std::thread::sleep(Duration::from_millis(300));
    // The writer had not reopened its log yet: its next line lands in the old file.
    append(&old, &failed("192.0.2.64"));
    ban_recorded(&s, "192.0.2.64");
}

#[test]
fn created_state_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new("firewall: { backend: none }");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec {BIN} -c {} ban 192.0.2.65",
            s.config().display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = |p: &str| {
        std::fs::metadata(s.path(p))
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    // Others get nothing, whatever the umask (the state's group may write: the admin).
    assert_eq!(mode("db").map(|m| m & 0o707), Some(0o700));
    assert_eq!(mode("db/pyfilter.db").map(|m| m & 0o607), Some(0o600));
    for extra in ["db/pyfilter.db-wal", "db/pyfilter.db-shm"] {
        assert!(
            mode(extra).is_none_or(|m| m & 0o607 == 0o600),
            "{extra}: {:o}",
            mode(extra).unwrap_or(0)
        );
    }
}

#[test]
fn the_journal_fallback_and_an_auth_log_created_later_are_both_followed() {
    let ns = Netns::new();
    let s = Setup::new("");
    let journal = s.path("system.journal");
    s.write_config(&format!(
        "{TWO}\nrules:\n  sshd: {{ log_files: ['{}'], journal: {{ file: '{}', match: [_COMM=sshd] }} }}",
        s.log().display(),
        journal.display()
    ));
    journal_entry(
        &journal,
        "web1",
        "sshd",
        4242,
        "Server listening on 0.0.0.0 port 22.",
    );
    let check = stdout(&s.cli(None, &["check"]));
    let d = daemon(&s, &ns);
    d.wait_log("following the journal for sshd");
    // `check` and the first screen say the same.
    let line = format!(
        "sshd: journal ({}, _COMM=sshd); absent, followed when they appear: {}",
        journal.display(),
        s.log().display()
    );
    assert!(check.contains(&line), "{check}");
    d.wait_log(&line);
    std::thread::sleep(Duration::from_millis(300));
    attack(&s.log(), "192.0.2.66");
    ban_recorded(&s, "192.0.2.66");
    for _ in 0..2 {
        journal_entry(
            &journal,
            "web1",
            "sshd",
            4242,
            "Failed password for root from 192.0.2.67 port 22 ssh2",
        );
    }
    ban_recorded(&s, "192.0.2.67");
}

/// A child process, run as `uid`, holding every inotify instance that user may have
/// (`fs.inotify.max_user_instances`), until dropped.
struct InotifyHog {
    pid: libc::pid_t,
}

impl InotifyHog {
    fn take_all(uid: u32) -> InotifyHog {
        let mut pipe = [0; 2];
        // SAFETY: plain system calls; between fork and the child's end only async-signal-
        // safe calls are made (no allocation, no lock).
        unsafe {
            assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                libc::close(pipe[0]);
                let ok = libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setgid(uid) == 0
                    && libc::setuid(uid) == 0;
                let mut taken = 0u32;
                while ok && libc::inotify_init1(libc::IN_CLOEXEC) >= 0 {
                    taken += 1;
                }
                let full = ok && *libc::__errno_location() == libc::EMFILE && taken > 0;
                let byte: u8 = if full { b'y' } else { b'n' };
                libc::write(pipe[1], (&raw const byte).cast(), 1);
                loop {
                    libc::pause();
                }
            }
            libc::close(pipe[1]);
            let mut byte = 0u8;
            assert_eq!(libc::read(pipe[0], (&raw mut byte).cast(), 1), 1);
            libc::close(pipe[0]);
            let hog = InotifyHog { pid };
            assert_eq!(byte, b'y', "the hog could not take every inotify instance");
            hog
        }
    }
}

impl Drop for InotifyHog {
    fn drop(&mut self) {
        // SAFETY: a child this test forked.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn with_no_inotify_instance_left_the_daemon_polls_and_still_bans() {
    // A user of the test's own (no account needed: the kernel counts instances by uid),
    // so no other process shares its instances.
    let uid = 60_000 + std::process::id() % 5_000;
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2\nfirewall: { backend: none }\npoll_interval: 200ms");
    append(&s.log(), "");
    let owner = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(s.dir.path())
        .status()
        .unwrap();
    assert!(owner.success());
    let _hog = InotifyHog::take_all(uid);
    let (u, g) = (format!("--reuid={uid}"), format!("--regid={uid}"));
    let mut as_user = ns.command("setpriv");
    as_user.args([&u, &g, "--clear-groups"]).arg(BIN);
    let d = Daemon::start_by(&s, as_user, &[]);
    d.wait_log("polled every 200ms instead: no inotify instance left for this user");
    let out = d.output();
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("WARN") && l.contains("no inotify instance left"))
            .count(),
        1,
        "one warning, naming the sysctl: {out}"
    );
    assert!(
        out.contains("sysctl -w fs.inotify.max_user_instances="),
        "{out}"
    );
    attack(&s.log(), "192.0.2.68");
    ban_recorded(&s, "192.0.2.68");
    let st = status(&s);
    assert_eq!(st["inotify"], false, "{st}");
    assert_eq!(st["sources"][0]["state"], "polling", "{st}");
    assert!(
        st["sources"][0]["why"]
            .as_str()
            .unwrap()
            .contains("max_user_instances"),
        "{st}"
    );
}

/// `status --json`, parsed.
fn status(s: &Setup) -> serde_json::Value {
    let out = s.cli(None, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Each source's state in `status`, by name.
fn states(s: &Setup) -> Vec<(String, String)> {
    let st = status(s);
    let mut v: Vec<(String, String)> = st["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn status_lists_every_source_with_its_state_and_says_when_no_daemon_runs() {
    let ns = Netns::new();
    let s = Setup::new("");
    let absent = s.path("secure");
    s.write_config(&format!(
        "{TWO}\nrules:\n  sshd: {{ log_files: ['{}', '{}'] }}",
        s.log().display(),
        absent.display()
    ));
    let out = s.cli(None, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no daemon runs"), "{}", stderr(&out));
    append(&s.log(), "");
    let d = daemon(&s, &ns);
    let (log, secure) = (s.log().display().to_string(), absent.display().to_string());
    wait_for(BAN_WAIT, "both sources in status", || states(&s).len() == 2);
    assert_eq!(
        states(&s),
        [
            (log.clone(), "following".into()),
            (secure.clone(), "absent".into())
        ]
    );
    attack(&s.log(), "192.0.2.69");
    ban_recorded(&s, "192.0.2.69");
    let st = status(&s);
    let row = st["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == log.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (row["lines"].as_u64(), row["matches"].as_u64()),
        (Some(2), Some(2)),
        "{row}"
    );
    assert!(
        row["position"].as_u64().unwrap() > 0 && row["last_line"].is_string(),
        "{row}"
    );
    assert_eq!(
        (st["bans_active"].as_u64(), st["bans_made"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
    append(&absent, "");
    wait_for(BAN_WAIT, "the late log to be followed", || {
        states(&s)
            == [
                (log.clone(), "following".into()),
                (secure.clone(), "following".into()),
            ]
    });
    let text = stdout(&s.cli(None, &["status"]));
    assert!(
        text.contains("sources: 2 following, 0 polling, 0 absent, 0 failed"),
        "{text}"
    );
    drop(d);
}
