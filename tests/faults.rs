//! The daemon under faults: a firewall that refuses, a database locked by another process,
//! a log deleted and created again, a SIGKILL in the middle of a burst, a full disk, a
//! restart in the middle of a count, durations past any date, YAML bombs, and the admin
//! under a slow-connection attack.

#[path = "common/admin.rs"]
#[allow(dead_code)]
mod admin;
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
    d.wait_log("the firewall refused 1 ban (");
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
        log().contains("1 ban is in the firewall but was not recorded")
    });
    let status = stop(&mut child);
    assert!(banned, "no ban with a full disk:\n{}", log());
    assert!(said, "no clear error:\n{}", log());
    assert!(status.success(), "{}", log());
}

#[test]
fn a_ban_time_past_a_hundred_years_is_refused_by_check_run_and_ban() {
    let ns = Netns::new();
    let s = Setup::new("ban_time: 100000000d");
    append(&s.log(), "");
    // Once, `check` passed this and the daemon panicked at its first ban, then again at
    // every restart (the same lines read again): a crash loop.
    for args in [&["check"][..], &["run"][..]] {
        let out = s.cli(Some(&ns), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("pyfilter.yml:1:")
                && err.contains("ban_time")
                && err.contains("`forever`"),
            "{args:?}: {err}"
        );
    }
    s.write_config("ban_time: 1h");
    let out = s.cli(Some(&ns), &["ban", "192.0.2.180", "--for", "100000000d"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--for"), "{}", stderr(&out));
    assert!(!ns.has_ban("192.0.2.180"));
    // Within the limit, a long ban is made and its end is written.
    let out = s.cli(Some(&ns), &["ban", "192.0.2.181", "--for", "36500d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ns.has_ban("192.0.2.181"));
}

#[test]
fn a_yaml_bomb_in_a_rule_file_is_refused_in_moments_naming_the_file() {
    let s = Setup::new("");
    std::fs::create_dir_all(s.path("rules.d")).unwrap();
    let rule = s.path("rules.d/bomb.yml");
    let mut text = format!(
        "name: bomb\ndescription: &big \"{}\"\npatterns: ['x <IP>']\nurls:\n",
        "x".repeat(100_000)
    );
    for _ in 0..100_000 {
        text.push_str("  - *big\n");
    }
    std::fs::write(&rule, &text).unwrap();
    let start = Instant::now();
    let out = s.cli(None, &["check"]);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{}:", rule.display()))
            && stderr(&out).contains("aliases expand"),
        "{}",
        stderr(&out)
    );
    let deep = format!(
        "name: deep\npatterns: {}{}\n",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    std::fs::write(&rule, deep).unwrap();
    let start = Instant::now();
    let out = s.cli(None, &["check"]);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{}:2:", rule.display()))
            && stderr(&out).contains("nested deeper than"),
        "{}",
        stderr(&out)
    );
}

/// The nftables set's IPv4 bans.
fn nft_bans(ns: &Netns) -> usize {
    let out = ns.run("nft", &["list", "set", "inet", "pyfilter", "v4"]);
    String::from_utf8_lossy(&out.stdout)
        .matches(" timeout ")
        .count()
}

/// 3,000 attackers while the state's disk is full (and, with `redis`, Redis away too):
/// all banned in the kernel at once; after a restart with space (and Redis) again, all
/// are in the kernel and all in the store.
fn full_disk_loses_no_ban(extra: &str, mut redis: Option<&mut RedisServer>) {
    let ns = Netns::new();
    let mnt = MountNs::new();
    let s = Setup::new(&format!(
        "failed_attempts: 1\nfirewall: {{ backend: nftables }}\n{extra}"
    ));
    append(&s.log(), "");
    let db_dir = s.path("db");
    mnt.tmpfs(&db_dir, "4m");
    let d = Daemon::start_by(&s, mnt.command(&ns, BIN), &[]);
    if let Some(r) = redis.as_deref_mut() {
        r.stop();
    }
    mnt.fill(&db_dir);
    let text: String = (0..3000u32)
        .map(|i| failed(&std::net::Ipv4Addr::from(0xc613_0000 + i).to_string()))
        .collect();
    append(&s.log(), &text);
    wait_for(Duration::from_secs(20), "3000 bans in the kernel", || {
        nft_bans(&ns) == 3000
    });
    d.wait_log("were not recorded");
    let (_, status, out) = d.stop();
    assert!(status.success(), "{out}");
    mnt.free(&db_dir);
    if let Some(r) = redis {
        r.restart();
    }
    let d = Daemon::start_by(&s, mnt.command(&ns, BIN), &[]);
    assert_eq!(
        nft_bans(&ns),
        3000,
        "a restart keeps what the kernel holds\n{}",
        d.output()
    );
    let listed = || {
        let out = mnt
            .command(&ns, BIN)
            .arg("-c")
            .arg(s.config())
            .args(["list", "--json"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        stdout(&out).lines().count()
    };
    wait_for(Duration::from_secs(30), "3000 bans in the store", || {
        listed() == 3000
    });
    assert_eq!(nft_bans(&ns), 3000, "{}", d.output());
}

#[test]
fn a_full_disk_loses_no_ban_across_a_restart() {
    full_disk_loses_no_ban("", None);
}

#[test]
fn redis_away_and_a_full_outbox_disk_lose_no_ban_across_a_restart() {
    let mut redis = RedisServer::start();
    let extra = format!(
        "store: redis\nredis: {{ url: \"{}\", timeout: 200ms }}",
        redis.url()
    );
    full_disk_loses_no_ban(&extra, Some(&mut redis));
}

#[test]
fn a_partial_count_survives_a_restart_by_sigterm_and_by_sigkill() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "SIGKILL")] {
        let ns = Netns::new();
        let s = Setup::new("failed_attempts: 3");
        append(&s.log(), "");
        let ip = "192.0.2.182";
        let d = Daemon::start(&s, &ns);
        append(&s.log(), &format!("{}{}", failed(ip), failed(ip)));
        d.wait_log("attempt 2 of 3");
        if sig == libc::SIGKILL {
            // Counts are saved with the read positions, within a second.
            std::thread::sleep(Duration::from_millis(1500));
        }
        d.signal(sig);
        drop(d);
        let _d = Daemon::start(&s, &ns);
        append(&s.log(), &failed(ip));
        wait_for(
            Duration::from_secs(10),
            &format!("the ban after {name}"),
            || ns.has_ban(ip),
        );
    }
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.2 and so on: the
/// whole of 127.0.0.0/8 is this machine's), as a client at another address would open.
fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let sin = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let std::net::SocketAddr::V4(to) = to else {
        panic!("an IPv4 address")
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a socket of our own, given whole sockaddr_in values that live across the
    // calls; its descriptor is handed to a TcpStream that owns it from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let local = sin(from, 0);
        assert_eq!(
            libc::bind(fd, (&raw const local).cast(), len),
            0,
            "bind {from:?}"
        );
        let remote = sin(to.ip().octets(), to.port());
        assert_eq!(
            libc::connect(fd, (&raw const remote).cast(), len),
            0,
            "connect"
        );
        std::net::TcpStream::from_raw_fd(fd)
    }
}

/// Slow clients: each connection sends a request line, then one header line every two
/// seconds, never the end of its head (the attack sent one every nine seconds, under the
/// ten-second read timeout). Stops when `stop` is set.
fn slowloris(
    conns: Vec<std::net::TcpStream>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut conns = conns;
        for c in &mut conns {
            let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n");
        }
        let start = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::Relaxed)
            && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(200));
            if start.elapsed().as_millis() % 2000 < 200 {
                for c in &mut conns {
                    let _ = c.write_all(b"X-Slow: 1\r\n");
                }
            }
        }
    })
}

#[test]
fn the_admin_answers_promptly_under_a_slow_connection_attack() {
    use std::io::Read;
    let (_s, a) = admin::admin_with_user("");
    let addr: std::net::SocketAddr = a.addr.parse().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 70 slow connections from one address: more than the whole server's 64.
    let one: Vec<_> = (0..70)
        .map(|_| connect_from([127, 0, 0, 2], addr))
        .collect();
    let first = one[69].try_clone().unwrap();
    let attack = slowloris(one, std::sync::Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    let prompt = |what: &str| {
        let t = Instant::now();
        let cookie = a.sign_in("alice", admin::PASSWORD).expect("signed in");
        let page = a.get("/", Some(&cookie));
        assert_eq!(page.status, 200, "{what}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{what}: {:?}",
            t.elapsed()
        );
    };
    prompt("70 slow connections from one address");
    // Then 8 more from each of ten other addresses: the whole server's cap is full.
    let many: Vec<_> = (3..13u8)
        .flat_map(|last| (0..8).map(move |_| connect_from([127, 0, 0, last], addr)))
        .collect();
    let attack2 = slowloris(many, std::sync::Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    prompt("150 slow connections from eleven addresses");
    // A slow head is cut at the whole request's deadline, though no single read waits
    // longer than two seconds.
    let t = Instant::now();
    let mut first = first;
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = first.read_to_end(&mut rest);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "held for {:?}",
        t.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    attack.join().unwrap();
    attack2.join().unwrap();
}
