//! The daemon under faults: a firewall that refuses, a database locked by another process,
//! a log deleted and created again, a SIGKILL in the middle of a burst.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_refusing_firewall_is_retried_until_the_ban_lands() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    // Someone removes pyfilter's chain: every ban now fails.
    ns.ok("iptables", &["-w", "-D", "INPUT", "-j", "PYFILTER"]);
    ns.ok("iptables", &["-w", "-X", "PYFILTER"]);
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.170"), failed("192.0.2.170")),
    );
    d.wait_log("the firewall refused 1 bans");
    // Nothing recorded while the kernel refuses.
    assert!(!stdout(&s.cli(None, &["list", "--json"])).contains("192.0.2.170"));
    ns.ok("iptables", &["-w", "-N", "PYFILTER"]);
    wait_for(Duration::from_secs(10), "the retried ban", || {
        ns.has_ban("192.0.2.170")
    });
    assert!(stdout(&s.cli(None, &["list", "--json"])).contains("192.0.2.170"));
}

#[test]
fn a_database_locked_for_seconds_delays_nothing_in_the_firewall() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    // Another process holds the write lock for six seconds (the store waits up to ten).
    let db = rusqlite::Connection::open(s.path("db/pyfilter.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let start = Instant::now();
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.171"), failed("192.0.2.171")),
    );
    // The firewall goes first: the ban lands while the database is still locked.
    wait_for(
        Duration::from_secs(5),
        "the ban while the database is locked",
        || ns.has_ban("192.0.2.171"),
    );
    assert!(start.elapsed() < Duration::from_secs(6), "{}", d.output());
    std::thread::sleep(Duration::from_secs(6).saturating_sub(start.elapsed()));
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    // Recorded once the lock is gone (busy timeout), not lost.
    wait_for(Duration::from_secs(10), "the ban recorded", || {
        stdout(&s.cli(None, &["list", "--json"])).contains("192.0.2.171")
    });
}

#[test]
fn a_log_deleted_and_created_again_is_followed() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    append(&s.log(), "");
    let _d = Daemon::start(&s, &ns);
    append(&s.log(), &failed("192.0.2.172"));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(s.log()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append(&s.log(), &failed("192.0.2.172"));
    wait_for(Duration::from_secs(5), "the ban from the new file", || {
        ns.has_ban("192.0.2.172")
    });
}

#[test]
fn sigkill_in_the_middle_of_a_burst_converges_after_restart() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 1\nfirewall: { backend: nftables }");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    let ips: Vec<String> = (0..3000u32)
        .map(|i| std::net::Ipv4Addr::from(0xc612_0000 + i).to_string())
        .collect();
    let text: String = ips.iter().map(|ip| failed(ip)).collect();
    append(&s.log(), &text);
    std::thread::sleep(Duration::from_millis(150));
    d.signal(libc::SIGKILL);
    drop(d);
    // After a restart every decided ban is in the kernel and the store, once each.
    let d = Daemon::start(&s, &ns);
    let count = || -> usize {
        let out = ns.run("nft", &["list", "set", "inet", "pyfilter", "v4"]);
        String::from_utf8_lossy(&out.stdout)
            .matches(" timeout ")
            .count()
    };
    wait_for(
        Duration::from_secs(20),
        "all 3000 bans after the restart",
        || count() == 3000,
    );
    let all = stdout(&s.cli(Some(&ns), &["list", "--all", "--json"]));
    assert_eq!(
        all.lines().count(),
        3000,
        "no ban recorded twice\n{}",
        d.output()
    );
}

#[test]
fn a_full_disk_still_bans_and_says_so() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2");
    append(&s.log(), "");
    let db_dir = s.path("db");
    std::fs::create_dir_all(&db_dir).unwrap();
    let db_dir = db_dir.to_str().unwrap().to_string();
    // The daemon gets a mount namespace of its own with a small file system for its state,
    // so that it can fill up without touching anything else.
    let err = std::fs::File::create(s.path("daemon.log")).unwrap();
    let script = format!("mount -t tmpfs -o size=2m tmpfs '{db_dir}' && exec \"$0\" -c \"$1\" run");
    let mut child = ns
        .command("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            BIN,
        ])
        .arg(s.config())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(s.path("daemon.log")).unwrap_or_default();
    let stop = |child: &mut std::process::Child| {
        // SAFETY: a PID this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    };
    let started = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        log().contains("pyfilter ready")
    });
    if !started {
        stop(&mut child);
        panic!("the daemon did not start: {}", log());
    }
    // Fill the state file system.
    let mnt = format!("--mount=/proc/{}/ns/mnt", child.id());
    let _ = std::process::Command::new("nsenter")
        .args([
            &mnt,
            "--",
            "dd",
            "if=/dev/zero",
            &format!("of={db_dir}/fill"),
            "bs=64k",
        ])
        .output()
        .unwrap();
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.173"), failed("192.0.2.173")),
    );
    let banned = (0..250).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        ns.has_ban("192.0.2.173")
    });
    let said = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        log().contains("are in the firewall but were not recorded")
    });
    let status = stop(&mut child);
    assert!(banned, "no ban with a full disk:\n{}", log());
    assert!(said, "no clear error:\n{}", log());
    assert!(status.success(), "{}", log());
}
