//! The ipset and nftables backends against the real kernel, each test in network
//! namespaces of its own: bans from logs and by hand (IPv4, IPv6, CIDR), expiry by the
//! kernel itself, a full set, a restart restoring 100,000 bans, `flush` leaving what is
//! not pyfilter's alone, and a veth pair proving a banned address really cannot connect.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BACKENDS: [&str; 2] = ["ipset", "nftables"];

/// The members pyfilter's sets hold, as text (`ipset list` / `nft list table`).
fn members(ns: &Netns, backend: &str) -> String {
    match backend {
        "ipset" => [
            "pyfilter-v4",
            "pyfilter-net4",
            "pyfilter-v6",
            "pyfilter-net6",
        ]
        .iter()
        .map(|s| String::from_utf8_lossy(&ns.run("ipset", &["list", s]).stdout).into_owned())
        .collect(),
        _ => String::from_utf8_lossy(&ns.run("nft", &["list", "table", "inet", "pyfilter"]).stdout)
            .into_owned(),
    }
}

/// Whether `member` (an address or CIDR block) is in pyfilter's sets.
fn holds(ns: &Netns, backend: &str, member: &str) -> bool {
    let text = members(ns, backend);
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
        .any(|w| w == member)
}

fn count(ns: &Netns, backend: &str) -> usize {
    match backend {
        "ipset" => [
            "pyfilter-v4",
            "pyfilter-net4",
            "pyfilter-v6",
            "pyfilter-net6",
        ]
        .iter()
        .map(|s| {
            let out =
                String::from_utf8_lossy(&ns.run("ipset", &["list", "-t", s]).stdout).into_owned();
            out.lines()
                .find_map(|l| l.strip_prefix("Number of entries: "))
                .map_or(0, |n| n.trim().parse().unwrap())
        })
        .sum(),
        _ => {
            // Every member in these tests has a timeout, printed once per element.
            members(ns, backend).matches(" timeout ").count()
        }
    }
}

#[test]
fn bans_from_logs_and_by_hand_land_in_the_sets() {
    for backend in BACKENDS {
        let ns = Netns::new();
        let s = Setup::new(&format!(
            "failed_attempts: 2\nfirewall: {{ backend: {backend} }}"
        ));
        append(&s.log(), "");
        let d = Daemon::start(&s, &ns);
        append(
            &s.log(),
            &format!("{}{}", failed("192.0.2.10"), failed("192.0.2.10")),
        );
        append(
            &s.log(),
            &format!("{}{}", failed("2001:db8::10"), failed("2001:db8::10")),
        );
        wait_for(Duration::from_secs(5), "log bans in the sets", || {
            holds(&ns, backend, "192.0.2.10") && holds(&ns, backend, "2001:db8::10")
        });
        for net in ["198.51.100.0/24", "2001:db8:bad::/48"] {
            let out = s.cli(Some(&ns), &["ban", net]);
            assert!(
                out.status.success(),
                "{backend} ban {net}: {}",
                stderr(&out)
            );
            assert!(
                holds(&ns, backend, net),
                "{backend}: {net} not in the sets:\n{}",
                members(&ns, backend)
            );
        }
        assert!(s.cli(Some(&ns), &["unban", "192.0.2.10"]).status.success());
        assert!(!holds(&ns, backend, "192.0.2.10"), "{backend}");
        // Unbanning what is not banned is not an error.
        assert!(s.cli(Some(&ns), &["unban", "192.0.2.10"]).status.success());
        drop(d);
    }
}

#[test]
fn the_kernel_expires_bans_by_itself() {
    for backend in BACKENDS {
        let ns = Netns::new();
        let s = Setup::new(&format!("firewall: {{ backend: {backend} }}"));
        // No daemon runs: only the kernel can lift this ban. The long one first, so the
        // short one is seen in the kernel before its time is up, even on a busy machine.
        assert!(
            s.cli(Some(&ns), &["ban", "192.0.2.21", "--for", "1h"])
                .status
                .success()
        );
        assert!(
            s.cli(Some(&ns), &["ban", "192.0.2.20", "--for", "5s"])
                .status
                .success()
        );
        assert!(holds(&ns, backend, "192.0.2.20"), "{backend}");
        wait_for(
            Duration::from_secs(15),
            "the kernel to expire the 5 s ban",
            || !holds(&ns, backend, "192.0.2.20"),
        );
        assert!(holds(&ns, backend, "192.0.2.21"), "{backend}");
    }
}

#[test]
fn a_full_set_is_reported_not_ignored() {
    for backend in BACKENDS {
        let ns = Netns::new();
        let s = Setup::new(&format!("firewall: {{ backend: {backend}, maxelem: 2 }}"));
        for ip in ["192.0.2.30", "192.0.2.31"] {
            assert!(s.cli(Some(&ns), &["ban", ip]).status.success());
        }
        let out = s.cli(Some(&ns), &["ban", "192.0.2.32"]);
        assert_eq!(out.status.code(), Some(1), "{backend}");
        assert!(
            stderr(&out).contains("is full"),
            "{backend}: {}",
            stderr(&out)
        );
        // The store does not claim a ban the kernel refused.
        let list = stdout(&s.cli(Some(&ns), &["list", "--json"]));
        assert!(!list.contains("192.0.2.32"), "{backend}: {list}");
    }
}

/// A ban or an unban of one address reaches nftables or ipset over netlink, without a
/// process: on a fleet every server paid one (`nft`: about 2.5 ms of CPU) for every ban
/// at the same moment. The `nft` or `ipset` the daemon finds first records what it is
/// given, then runs the real one: only the structure and blocks may go through it.
#[test]
fn single_bans_and_unbans_reach_the_kernel_without_starting_the_tool() {
    // (backend, its tool, what the structure's script holds, what a changed member's does)
    let cases = [
        ("nftables", "nft", "table inet pyfilter", "192.0.2.1"),
        ("ipset", "ipset", "create pyfilter-v4", "192.0.2.1"),
    ];
    for (backend, tool, structure, member) in cases {
        let ns = Netns::new();
        let s = Setup::new(&format!(
            "failed_attempts: 2\nfirewall: {{ backend: {backend} }}"
        ));
        let real = String::from_utf8(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool} || ls /usr/sbin/{tool}")])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let bin = s.path("bin");
        std::fs::create_dir(&bin).unwrap();
        let given = s.path("given");
        let wrapper = bin.join(tool);
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"# {tool} $*\" >> {0}\ntee -a {0} | {1} \"$@\"\n",
                given.display(),
                real.trim()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        append(&s.log(), "");
        let mut command = ns.command(BIN);
        command.env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        let d = Daemon::start_by(&s, command, &[]);
        append(
            &s.log(),
            &format!(
                "{}{}{}{}",
                failed("192.0.2.10"),
                failed("192.0.2.10"),
                failed("2001:db8::10"),
                failed("2001:db8::10")
            ),
        );
        wait_for(Duration::from_secs(5), "log bans in the sets", || {
            holds(&ns, backend, "192.0.2.10") && holds(&ns, backend, "2001:db8::10")
        });
        for net in ["192.0.2.11", "198.51.100.0/24"] {
            assert!(
                s.cli(Some(&ns), &["ban", net]).status.success(),
                "{backend}"
            );
            assert!(holds(&ns, backend, net), "{backend}: {net}");
        }
        assert!(
            members(&ns, backend).contains("192.0.2.11 timeout "),
            "{backend}: a ban has its time in the kernel:\n{}",
            members(&ns, backend)
        );
        for ip in ["192.0.2.10", "2001:db8::10", "192.0.2.99"] {
            assert!(
                s.cli(Some(&ns), &["unban", ip]).status.success(),
                "{backend}: unban {ip}"
            );
        }
        assert!(!holds(&ns, backend, "192.0.2.10"), "{backend}");
        assert!(!holds(&ns, backend, "2001:db8::10"), "{backend}");
        assert!(holds(&ns, backend, "192.0.2.11"), "{backend}");
        let given = std::fs::read_to_string(&given).unwrap();
        assert!(
            given.contains(structure) && given.contains("198.51.100.0/24"),
            "{backend}: the structure and the block go through the recording {tool}:\n{given}"
        );
        assert!(
            !given.contains(member) && !given.contains("2001:db8::10"),
            "{backend}: single addresses went through {tool}:\n{given}"
        );
        assert!(
            !d.output().contains("handing it to"),
            "{backend}: {}",
            d.output()
        );
        drop(d);
    }
}

/// Writes `n` active bans straight into a new store, as a long-running server would have.
fn seed_store(s: &Setup, n: u32) {
    // The schema comes from pyfilter itself: a CLI call that writes creates the database
    // (`list` only reads).
    assert!(s.cli(None, &["prune"]).status.success());
    let db = rusqlite::Connection::open(s.path("db/pyfilter.db")).unwrap();
    let now = chrono::Utc::now().timestamp();
    db.execute_batch("BEGIN").unwrap();
    let mut stmt = db
        .prepare("INSERT INTO bans (net, rule, reason, attempts, server, source, banned_at, expires_at) VALUES (?1, 'sshd', 'seed', 5, 'test-1', 'log', ?2, ?3)")
        .unwrap();
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        stmt.execute(rusqlite::params![format!("{ip}/32"), now, now + 86400])
            .unwrap();
    }
    drop(stmt);
    db.execute_batch("COMMIT").unwrap();
}

#[test]
fn a_restart_restores_100000_bans_in_one_batch() {
    for backend in BACKENDS {
        let ns = Netns::new();
        let s = Setup::new(&format!("firewall: {{ backend: {backend} }}"));
        seed_store(&s, 100_000);
        append(&s.log(), "");
        let start = Instant::now();
        let d = Daemon::start(&s, &ns);
        let took = start.elapsed();
        assert!(
            d.output().contains("100000 bans restored"),
            "{}",
            d.output()
        );
        let n = count(&ns, backend);
        assert_eq!(n, 100_000, "{backend}: {n} members after restore");
        eprintln!("{backend}: started with 100000 bans restored in {took:?}");
        // Restarting again replaces, never duplicates.
        drop(d.stop());
        let _d = Daemon::start(&s, &ns);
        assert_eq!(count(&ns, backend), 100_000, "{backend}");
    }
}

#[test]
fn flush_removes_pyfilters_firewall_and_nothing_else() {
    for backend in BACKENDS {
        let ns = Netns::new();
        let s = Setup::new(&format!("firewall: {{ backend: {backend} }}"));
        // Someone else's rules, sets and tables.
        ns.ok(
            "iptables",
            &["-w", "-A", "INPUT", "-s", "198.51.100.99", "-j", "ACCEPT"],
        );
        ns.ok("ipset", &["create", "theirs", "hash:ip"]);
        ns.ok("nft", &["add", "table", "inet", "theirs"]);
        assert!(s.cli(Some(&ns), &["ban", "192.0.2.40"]).status.success());
        assert!(holds(&ns, backend, "192.0.2.40"));
        let out = s.cli(Some(&ns), &["flush"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!holds(&ns, backend, "192.0.2.40"));
        let sets = String::from_utf8_lossy(&ns.run("ipset", &["list", "-n"]).stdout).into_owned();
        assert_eq!(sets.trim(), "theirs", "{backend}");
        let tables =
            String::from_utf8_lossy(&ns.run("nft", &["list", "tables"]).stdout).into_owned();
        assert!(
            tables.contains("table inet theirs") && !tables.contains("pyfilter"),
            "{backend}: {tables}"
        );
        let input = ns.rules("iptables", "INPUT");
        assert!(
            input.contains("-A INPUT -s 198.51.100.99/32 -j ACCEPT") && !input.contains("PYFILTER"),
            "{input}"
        );
        // And the store still has the ban: the next start puts it back.
        assert!(stdout(&s.cli(Some(&ns), &["list"])).contains("192.0.2.40"));
    }
}

/// A TCP server inside `ns` on `addr:port`, answering every connection with "hi".
fn serve(ns: &Netns, addr: &str, port: u16) -> Child {
    let code = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{addr}', {port}))\ns.listen(16)\nwhile True:\n  c,_=s.accept(); c.sendall(b'hi'); c.close()\n"
    );
    ns.command("python3")
        .args(["-c", &code])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Whether a connection from `from` (inside `ns`) to `to:port` gets the server's answer.
fn connects(ns: &Netns, from: &str, to: &str, port: u16) -> bool {
    let code = format!(
        "import socket\ns=socket.socket()\ns.settimeout(1.5)\ns.bind(('{from}', 0))\ntry:\n  s.connect(('{to}', {port})); print(s.recv(2).decode())\nexcept OSError as e:\n  print('no', e)\n"
    );
    let out = ns
        .command("python3")
        .args(["-c", &code])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "hi"
}

#[test]
fn a_banned_address_cannot_connect_and_an_unbanned_one_can() {
    for backend in ["iptables", "ipset", "nftables"] {
        let (server, client) = (Netns::new(), Netns::new());
        veth(
            &client,
            &["10.231.0.2", "10.231.0.3"],
            &server,
            "10.231.0.1",
        );
        let mut srv = serve(&server, "10.231.0.1", 8022);
        wait_for(Duration::from_secs(5), "the server to listen", || {
            connects(&client, "10.231.0.3", "10.231.0.1", 8022)
        });
        let s = Setup::new(&format!(
            "firewall: {{ backend: {backend} }}\nignore: ['127.0.0.0/8']"
        ));
        assert!(
            s.cli(Some(&server), &["ban", "10.231.0.2"])
                .status
                .success()
        );
        assert!(
            !connects(&client, "10.231.0.2", "10.231.0.1", 8022),
            "{backend}: the banned address got through"
        );
        assert!(
            connects(&client, "10.231.0.3", "10.231.0.1", 8022),
            "{backend}: an innocent address was blocked"
        );
        assert!(
            s.cli(Some(&server), &["unban", "10.231.0.2"])
                .status
                .success()
        );
        assert!(
            connects(&client, "10.231.0.2", "10.231.0.1", 8022),
            "{backend}: still blocked after unban"
        );
        let _ = srv.kill();
        let _ = srv.wait();
    }
}

#[test]
fn a_burst_of_distinct_attackers_is_banned_in_batches() {
    for backend in BACKENDS {
        let ns = Netns::new();
        let s = Setup::new(&format!(
            "failed_attempts: 1\nfirewall: {{ backend: {backend} }}"
        ));
        append(&s.log(), "");
        let d = Daemon::start(&s, &ns);
        let mut text = String::new();
        for i in 0..2000u32 {
            text.push_str(&failed(
                &std::net::Ipv4Addr::from(0xc633_0000 + i).to_string(),
            ));
        }
        append(&s.log(), &text);
        wait_for(Duration::from_secs(20), "2000 bans in the kernel", || {
            count(&ns, backend) == 2000
        });
        let list = stdout(&s.cli(Some(&ns), &["list", "--json"]));
        assert_eq!(list.lines().count(), 2000);
        drop(d);
    }
}

#[test]
fn with_ipv6_prefix_64_a_whole_prefix_is_counted_and_banned_as_one() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 3\nipv6_prefix: 64\nfirewall: { backend: nftables }");
    append(&s.log(), "");
    let _d = Daemon::start(&s, &ns);
    // Three addresses of one /64, one attempt each.
    for host in ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:abcd::3"] {
        append(&s.log(), &failed(host));
    }
    wait_for(Duration::from_secs(5), "the /64 to be banned", || {
        holds(&ns, "nftables", "2001:db8:7:7::/64")
    });
    let list = stdout(&s.cli(Some(&ns), &["list", "--json"]));
    assert!(list.contains(r#""ip":"2001:db8:7:7::/64""#), "{list}");
}
