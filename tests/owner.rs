//! One owner for the firewall: the daemon's control socket, the state lock, and what they
//! guarantee. Real iptables inside a network namespace of the test's own, a real SQLite
//! file, real `pyfilter` processes racing each other.

#[allow(dead_code)]
#[path = "common/admin.rs"]
mod admin;
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Rounds of racing commands, each over addresses of its own.
const ROUNDS: u8 = 2;

/// Bans (and as many unbans) of one address started at once in a round.
const RACERS: usize = 3;

/// The addresses raced over in `round`: one of each family.
fn raced(round: u8) -> [String; 2] {
    [
        format!("192.0.2.{}", 40 + round),
        format!("2001:db8::{}", 40 + round),
    ]
}

/// How many rules of pyfilter's chain drop `ip` (more than one is a duplicate).
fn kernel_rules(ns: &Netns, ip: &str) -> usize {
    let (tool, net) = if ip.contains(':') {
        ("ip6tables", format!("{ip}/128"))
    } else {
        ("iptables", format!("{ip}/32"))
    };
    ns.rules(tool, "PYFILTER")
        .lines()
        .filter(|l| l.starts_with(&format!("-A PYFILTER -s {net} ")))
        .count()
}

/// How many active bans of `ip` the store holds.
fn store_bans(s: &Setup, ns: &Netns, ip: &str) -> usize {
    let out = s.cli(Some(ns), &["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| l.contains(&format!(r#""ip":"{ip}""#)))
        .count()
}

/// A `PATH` whose `iptables` and `ip6tables` take 50 ms more to start, as on a busy
/// host: the gap between a command's firewall change and its record widens, so racing
/// commands that do not take turns interleave there almost every time.
fn slow_firewall_path(s: &Setup) -> String {
    let dir = s.path("slowbin");
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["iptables", "ip6tables"] {
        let real = ["/usr/sbin", "/sbin", "/usr/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} must be installed"));
        let wrapper = dir.join(tool);
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nsleep 0.05\nexec {} \"$@\"\n", real.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A CLI command started inside `ns` with `path`, not waited for.
fn spawn_cli(s: &Setup, ns: &Netns, path: &str, args: &[&str]) -> Child {
    ns.command(BIN)
        .arg("-c")
        .arg(s.config())
        .args(args)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `RACERS` bans and as many unbans of each address of `round`, all started at once,
/// interleaved; every one must succeed.
fn race_bans_and_unbans(s: &Setup, ns: &Netns, path: &str, round: u8) {
    let mut children = Vec::new();
    for _ in 0..RACERS {
        for ip in &raced(round) {
            children.push(spawn_cli(s, ns, path, &["ban", ip, "--for", "1h"]));
            children.push(spawn_cli(s, ns, path, &["unban", ip]));
        }
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a raced command failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

/// Store and kernel agree on every address of `round`: one rule for an active ban, none
/// without, never a duplicate.
fn assert_agreement(s: &Setup, ns: &Netns, round: u8) {
    for ip in &raced(round) {
        let (kernel, store) = (kernel_rules(ns, ip), store_bans(s, ns, ip));
        assert!(store <= 1, "{ip}: {store} active bans in the store");
        assert_eq!(
            kernel, store,
            "{ip}: {kernel} rules in the kernel, {store} active bans in the store"
        );
    }
}

#[test]
fn concurrent_bans_and_unbans_with_the_daemon_running_leave_store_and_kernel_agreeing() {
    let ns = Netns::new();
    let s = Setup::new("firewall: { backend: iptables }");
    append(&s.log(), "");
    let path = slow_firewall_path(&s);
    let mut run = ns.command(BIN);
    run.env("PATH", &path);
    let d = Daemon::start_by(&s, run, &[]);
    for round in 0..ROUNDS {
        race_bans_and_unbans(&s, &ns, &path, round);
        assert_agreement(&s, &ns, round);
    }
    // And the daemon still agrees with itself after a restart.
    let (_, status, _) = d.stop();
    assert!(status.success());
    let _d = Daemon::start(&s, &ns);
    for round in 0..ROUNDS {
        assert_agreement(&s, &ns, round);
    }
}

#[test]
fn concurrent_bans_and_unbans_without_a_daemon_take_turns_under_the_lock() {
    let ns = Netns::new();
    let s = Setup::new("firewall: { backend: iptables }");
    // The database exists before the race, as on any server that ever ran pyfilter.
    assert!(s.cli(Some(&ns), &["list"]).status.success());
    let path = slow_firewall_path(&s);
    for round in 0..ROUNDS {
        race_bans_and_unbans(&s, &ns, &path, round);
        assert_agreement(&s, &ns, round);
    }
}

/// `pyfilter run` on `s`, its stderr captured, not waited for.
fn spawn_run(s: &Setup, ns: &Netns) -> Child {
    ns.command(BIN)
        .arg("-c")
        .arg(s.config())
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit within `limit`; kills it and fails when it does not.
fn exits_within(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} still runs after {limit:?}: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_daemon_on_the_same_state_refuses_to_start_naming_the_first() {
    let ns = Netns::new();
    let s = Setup::new("failed_attempts: 2\nfirewall: { backend: iptables }");
    append(&s.log(), "");
    let first = Daemon::start(&s, &ns);
    assert!(s.cli(Some(&ns), &["ban", "192.0.2.51"]).status.success());

    let second = exits_within(
        spawn_run(&s, &ns),
        Duration::from_secs(10),
        "the second daemon",
    );
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains(&format!("pid {}", first.pid())),
        "the refusal names the first daemon's PID: {err}"
    );
    // The second touched nothing: one rule per ban, the first still at work.
    assert_eq!(kernel_rules(&ns, "192.0.2.51"), 1);
    append(
        &s.log(),
        &format!("{}{}", failed("192.0.2.52"), failed("192.0.2.52")),
    );
    wait_for(Duration::from_secs(5), "the first daemon's ban", || {
        ns.has_ban("192.0.2.52")
    });
    assert_eq!(kernel_rules(&ns, "192.0.2.52"), 1);
    assert!(first.output().contains("pyfilter ready"));
}

#[test]
fn a_daemon_killed_with_sigkill_leaves_no_lock_behind() {
    let ns = Netns::new();
    let s = Setup::new("firewall: { backend: iptables }");
    append(&s.log(), "");
    let mut first = Daemon::start(&s, &ns);
    first.signal(libc::SIGKILL);
    wait_for(Duration::from_secs(5), "the daemon to die", || {
        !first.is_running()
    });
    // The kernel released the lock with the process: the next start is not refused, and
    // the socket the dead daemon left is replaced.
    let second = Daemon::start(&s, &ns);
    let out = s.cli(Some(&ns), &["ban", "192.0.2.61"]);
    assert!(out.status.success(), "{}", stderr(&out));
    second.wait_log("banned 192.0.2.61");
}

/// One request on the control socket, its answer as JSON.
fn ask(socket: &std::path::Path, request: &str) -> serde_json::Value {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn the_control_socket_is_private_and_answers_one_json_line_per_request() {
    use std::os::unix::fs::PermissionsExt;
    let ns = Netns::new();
    let s = Setup::new("firewall: { backend: iptables }");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    let socket = s.path("db/pyfilter.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the socket is the daemon's user's alone"
    );

    let status = ask(&socket, r#"{"request":"status"}"#);
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(status["status"]["pid"], d.pid());
    assert_eq!(status["status"]["firewall"], "iptables");
    assert_eq!(status["status"]["bans_active"], 0);

    let ban = ask(
        &socket,
        r#"{"request":"ban","ip":"192.0.2.71","for":"1h","reason":"by socket"}"#,
    );
    assert_eq!(ban["ok"], true, "{ban}");
    assert!(ns.has_ban("192.0.2.71"));
    let status = ask(&socket, r#"{"request":"status"}"#);
    assert_eq!(status["status"]["bans_active"], 1, "{status}");

    // A request it cannot read is answered, not dropped; the daemon goes on.
    let bad = ask(&socket, r#"{"request":"reboot"}"#);
    assert_eq!(bad["ok"], false, "{bad}");
    let bad = ask(&socket, "not json");
    assert_eq!(bad["ok"], false, "{bad}");
    let unban = ask(&socket, r#"{"request":"unban","ip":"192.0.2.71"}"#);
    assert_eq!(unban["ok"], true, "{unban}");
    assert!(!ns.has_ban("192.0.2.71"));

    // Stopping removes the socket.
    let (_, status, _) = d.stop();
    assert!(status.success());
    assert!(!socket.exists());
}

#[test]
fn ban_unban_and_flush_go_through_the_running_daemon() {
    let ns = Netns::new();
    let s = Setup::new("firewall: { backend: iptables }");
    append(&s.log(), "");
    let d = Daemon::start(&s, &ns);
    let out = s.cli(Some(&ns), &["ban", "192.0.2.81", "--for", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("banned 192.0.2.81 until"));
    // The daemon did it, and says so in its log.
    d.wait_log("banned 192.0.2.81 (rule manual");
    let out = s.cli(Some(&ns), &["ban", "192.0.2.81"]);
    assert!(stdout(&out).starts_with("192.0.2.81 is already banned"));
    // The ignore list is the daemon's: refused, exit 2, nothing changed.
    let out = s.cli(Some(&ns), &["ban", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = s.cli(Some(&ns), &["flush"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // No ban left in the kernel; the daemon keeps its chain, empty, for the next ones.
    assert!(
        !ns.has_ban("192.0.2.81"),
        "{}",
        ns.rules("iptables", "PYFILTER")
    );
    assert!(
        !ns.rules("iptables", "PYFILTER").contains(" -s "),
        "{}",
        ns.rules("iptables", "PYFILTER")
    );
    // The store keeps the ban.
    assert!(stdout(&s.cli(Some(&ns), &["list"])).contains("192.0.2.81"));
    let out = s.cli(Some(&ns), &["ban", "192.0.2.82"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ns.has_ban("192.0.2.82"));
    let out = s.cli(Some(&ns), &["unban", "192.0.2.82"]);
    assert_eq!(stdout(&out).trim(), "unbanned 192.0.2.82");
    d.wait_log("unbanned 192.0.2.82 (unbanned by hand)");
    assert!(!ns.has_ban("192.0.2.82"));
}

/// A group of the test's own, by number (nothing is added to the system's users), and
/// `nobody`: the admin's user in these tests, as `pyfilter` is in production.
const GROUP: u32 = 64_999;
const NOBODY: u32 = 65_534;

/// Lays out `s` as scripts/install.sh does /var/lib/pyfilter: the state directory
/// root:GROUP 2770, so what the daemon (umask 0007) creates there is the group's to
/// write; the test's directory is opened for the group to reach the configuration.
fn shared_state(s: &Setup) -> std::path::PathBuf {
    use std::os::unix::fs::{PermissionsExt, chown};
    let state = s.path("db");
    std::fs::create_dir_all(&state).unwrap();
    chown(&state, Some(0), Some(GROUP)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o2770)).unwrap();
    chown(s.dir.path(), Some(0), Some(GROUP)).unwrap();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    state
}

/// `program` run as the daemon's unit runs it: root, umask 0007.
fn with_umask_0007(ns: &Netns, program: &str) -> std::process::Command {
    let mut c = ns.command("sh");
    c.args(["-c", "umask 0007 && exec \"$0\" \"$@\"", program]);
    c
}

/// `program` run as `nobody` in GROUP, with no capability, outside the namespace (the
/// admin never touches a firewall).
fn unprivileged(program: &str) -> std::process::Command {
    let mut c = std::process::Command::new("setpriv");
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg(format!("--groups={GROUP}"))
        .args(["--inh-caps=-all", "--", "sh", "-c"])
        .arg("umask 0007 && exec \"$0\" \"$@\"")
        .arg(program);
    c
}

#[test]
fn the_admin_as_an_unprivileged_user_records_and_the_root_daemon_applies() {
    let ns = Netns::new();
    let s = Setup::new("");
    let state = shared_state(&s);
    s.write_config(&format!(
        "firewall: {{ backend: iptables }}\nadmin:\n  log: {}",
        state.join("admin.log").display()
    ));
    append(&s.log(), "");
    let d = Daemon::start_by(&s, with_umask_0007(&ns, BIN), &[]);
    admin::add_user(&s, "alice", admin::PASSWORD);
    let a = admin::Admin::start_by(&s, unprivileged(BIN), &[]);
    let cookie = a.sign_in("alice", admin::PASSWORD).unwrap();
    let csrf = a.csrf(&cookie);

    // A ban from the admin: recorded by nobody, put in the kernel by the daemon.
    let r = a.post(
        "/ban",
        &cookie,
        &[("csrf", &csrf), ("ip", "192.0.2.91"), ("duration", "1h")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    d.wait_log("banned 192.0.2.91 (recorded by another process");
    assert!(ns.has_ban("192.0.2.91"));
    let details = a.get(r.header("location"), Some(&cookie));
    assert!(
        details.body.contains("in force in this server's firewall"),
        "{}",
        details.body
    );

    // And its unban.
    let r = a.post(
        "/unban",
        &cookie,
        &[("csrf", &csrf), ("ip", "192.0.2.91"), ("reason", "mistake")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    d.wait_log("unbanned 192.0.2.91 (lifted by another process)");
    assert!(!ns.has_ban("192.0.2.91"));

    // `prune` by the same user beside the running daemon: it lifts in the store only,
    // and the daemon takes the ban out of the kernel. The daemon is paused meanwhile,
    // so that the expiry is prune's and the kernel is seen untouched by it.
    let r = a.post(
        "/ban",
        &cookie,
        &[("csrf", &csrf), ("ip", "192.0.2.92"), ("duration", "1s")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    d.wait_log("banned 192.0.2.92 (recorded by another process");
    d.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2100));
    let out = unprivileged(BIN)
        .arg("-c")
        .arg(s.config())
        .arg("prune")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = stdout(&out);
    d.signal(libc::SIGCONT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(printed.starts_with("1 expired ban lifted"), "{printed}");
    d.wait_log("unbanned 192.0.2.92 (lifted by another process)");
    assert!(!ns.has_ban("192.0.2.92"));
}

#[test]
fn an_import_beside_a_running_daemon_is_applied_by_the_daemon_in_one_batch() {
    const N: u32 = 12_000;
    let ns = Netns::new();
    let s = Setup::new("firewall: { backend: iptables }");
    append(&s.log(), "");
    let legacy = s.path("pyfilter-legacy.db");
    let db = rusqlite::Connection::open(&legacy).unwrap();
    db.execute_batch(
        "CREATE TABLE banned_ip (ip TEXT, time_banned REAL, server_name TEXT, log_msg TEXT); BEGIN",
    )
    .unwrap();
    for i in 0..N {
        let ip = std::net::Ipv4Addr::from(0x0a10_0000 + i);
        db.execute(
            "INSERT INTO banned_ip VALUES (?1, 1700000000, 'old-1', 'Failed password')",
            [ip.to_string()],
        )
        .unwrap();
    }
    db.execute_batch("COMMIT").unwrap();
    let d = Daemon::start(&s, &ns);
    // Paused: whatever reaches the kernel before it goes on, the import put there.
    d.signal(libc::SIGSTOP);
    let out = s.cli(
        Some(&ns),
        &["import", "--pyfilter-sqlite", legacy.to_str().unwrap()],
    );
    let rules = ns.rules("iptables", "PYFILTER").lines().count();
    d.signal(libc::SIGCONT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("{N} bans imported")),
        "{}",
        stdout(&out)
    );
    assert!(rules <= 1, "the import changed the kernel: {rules} rules");
    d.wait_log(&format!(
        "{N} networks changed by other processes: {N} bans"
    ));
    let held = ns
        .rules("iptables", "PYFILTER")
        .lines()
        .filter(|l| l.contains(" -s 10.16."))
        .count();
    assert_eq!(held, N as usize);
}
