//! End to end with a real OpenSSH server: `sshd` runs inside a network namespace of the
//! test's own (listening only on 10.232.0.1 there), a client namespace guesses passwords
//! with `sshpass ssh`, and pyfilter, reading sshd's real log lines, bans the client in the
//! server namespace's firewall.
//!
//! sshd's `-e` / `-E` log lines carry no syslog prefix (no timestamp, host or
//! `sshd[pid]:`) and end with "\r\n", so the test reads sshd's standard error and writes
//! each line on "as syslog would": stamped and tagged into a log file, or as a journal
//! entry (through systemd-journal-remote) as journald would.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

const SERVER: &str = "10.232.0.1";
const CLIENT: &str = "10.232.0.2";

/// Where the adapter puts sshd's log lines.
#[derive(Clone)]
enum Sink {
    /// A syslog-style text file: `Mon DD HH:MM:SS host sshd[PID]: line`.
    Syslog(PathBuf),
    /// A journal file (written by systemd-journal-remote from the export format).
    Journal(PathBuf),
}

/// A real `sshd -D -e` inside a namespace, its standard error turned into log lines.
struct Sshd {
    child: Child,
    _dir: tempfile::TempDir,
    /// Every line sshd wrote (without the "\r"), for the test's own checks and messages.
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Sshd {
    fn start(ns: &Netns, sink: Sink) -> Sshd {
        // The privilege separation directory sshd insists on (root-owned, not writable by
        // others). Created when the machine has none (no sshd service installed/started).
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() {
            std::fs::create_dir_all(privsep).unwrap();
            std::fs::set_permissions(privsep, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("hostkey");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "pyfilter-test", "-f"])
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .expect("ssh-keygen (openssh-client) must be installed");
        assert!(out.status.success(), "ssh-keygen: {}", stderr(&out));
        let config = dir.path().join("sshd_config");
        // Nothing from /etc/ssh: only this file. Password authentication, no PAM (no
        // systemd/PAM session needed); root may never log in with a password, so no guess
        // can ever succeed.
        std::fs::write(
            &config,
            format!(
                "ListenAddress {SERVER}\nPort 22\nHostKey {}\nPidFile {}\nUsePAM no\n\
                 PasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication no\nPermitRootLogin prohibit-password\n\
                 UseDNS no\nLogLevel INFO\n",
                key.display(),
                dir.path().join("sshd.pid").display()
            ),
        )
        .unwrap();
        let out = Command::new("/usr/sbin/sshd")
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .expect("/usr/sbin/sshd (openssh-server) must be installed");
        assert!(out.status.success(), "sshd -t: {}", stderr(&out));

        // nsenter execs sshd in place (no fork for a network namespace), so the child's PID
        // is sshd's own.
        let mut child = ns
            .command("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let err = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let reader = std::thread::spawn(move || {
            // Per-connection children share this standard error, so every line arrives here.
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let line = line.trim_end_matches('\r').to_string();
                match &sink {
                    Sink::Syslog(path) => append(
                        path,
                        &format!(
                            "{} {host} sshd[{pid}]: {line}\n",
                            chrono::Local::now().format("%b %e %H:%M:%S")
                        ),
                    ),
                    Sink::Journal(path) => journal_entry(path, &host, "sshd", pid, &line),
                }
                seen.lock().unwrap().push(line);
            }
        });
        let mut s = Sshd {
            child,
            _dir: dir,
            lines,
            reader: Some(reader),
        };
        let start = Instant::now();
        while !s.saw(&format!("Server listening on {SERVER} port 22.")) {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("sshd exited ({status}): {:?}", s.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd never listened: {:?}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Listening, so nsenter has long exec'd: the PID is sshd's own.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "sshd", "PID {pid}");
        s
    }

    fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn saw(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        if self.child.try_wait().ok().flatten().is_none() {
            // First sshd's per-connection children (a connection cut by a ban mid-login would
            // otherwise wait out LoginGraceTime), while sshd is alive and they stay its own
            // (so their PIDs cannot be reused); then sshd itself. Only PIDs this test
            // started, one by one.
            for child in descendants(pid) {
                // SAFETY: kill with a PID started by the sshd this test started.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
            // SAFETY: kill with a PID this test started (and has not reaped).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let start = Instant::now();
            while self.child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(3) {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The reader ends once nothing holds sshd's standard error any more.
        if let Some(r) = self.reader.take() {
            let start = Instant::now();
            while !r.is_finished() && start.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        // `dir` (config, host key, pid file) is removed when dropped, after sshd is gone.
    }
}

/// The PIDs descending from `pid` (children first found, then theirs), from /proc.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parents.push((p, ppid));
        }
    }
    let mut found = vec![];
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == parent && !found.contains(&p) {
                found.push(p);
                frontier.push(p);
            }
        }
    }
    found
}

/// One `ssh` login with a wrong password from the client namespace; its output.
fn wrong_password(client: &Netns, n: usize) -> (bool, String) {
    // A hard limit on the whole login: a ban that lands in the middle of it drops sshd's
    // packets, and ssh would wait for them for minutes. Killing sshpass closes the pty,
    // which hangs up ssh too.
    let out = client
        .command("timeout")
        .args(["-s", "KILL", "8", "sshpass", "-p", &format!("wrong{n}")])
        .args([
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "NumberOfPasswordPrompts=1",
            &format!("root@{SERVER}"),
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// A plain TCP connect from the client namespace to sshd: what it answered (its banner's
/// first bytes), or "no ..." when the connection failed or timed out.
fn connect(client: &Netns) -> String {
    let code = format!(
        "import socket\ns=socket.socket()\ns.settimeout(2)\ns.bind(('{CLIENT}', 0))\ntry:\n  s.connect(('{SERVER}', 22)); print(s.recv(7).decode())\nexcept OSError as e:\n  print('no', e)\n"
    );
    let out = client
        .command("python3")
        .args(["-c", &code])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    stdout(&out).trim().to_string()
}

/// Guesses passwords until pyfilter bans the client (at most `tries` guesses), then checks
/// the ban, that sshd's port is closed to the client, and that `unban` opens it again.
fn brute_force_is_banned_then_unbanned(
    s: &Setup,
    server: &Netns,
    client: &Netns,
    sshd: &Sshd,
    d: &Daemon,
) {
    assert_eq!(connect(client), "SSH-2.0", "sshd answers before any ban");
    let mut guesses = 0;
    for n in 1..=4 {
        let (ok, out) = wrong_password(client, n);
        assert!(!ok, "a wrong password logged in?! {out}");
        assert!(
            out.contains("Permission denied"),
            "guess {n} reaches sshd and is refused: {out}"
        );
        guesses += 1;
        // Let sshd's lines about this guess reach pyfilter before the next one, so a ban
        // does not land in the middle of a login.
        let failed = format!("Failed password for root from {CLIENT} port ");
        wait_for(Duration::from_secs(5), "sshd to log the guess", || {
            sshd.log().iter().filter(|l| l.contains(&failed)).count() >= n
        });
        let start = Instant::now();
        while !server.has_ban(CLIENT) && start.elapsed() < Duration::from_millis(1500) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if server.has_ban(CLIENT) {
            break;
        }
    }
    wait_for(
        Duration::from_secs(5),
        "the client to be banned after real sshd failures",
        || server.has_ban(CLIENT),
    );
    assert!(
        sshd.saw(&format!("Failed password for root from {CLIENT} port ")),
        "{:?}",
        sshd.log()
    );
    let answer = connect(client);
    assert!(
        answer.starts_with("no"),
        "a banned client still reaches sshd: {answer}\nsshd: {:?}\ndaemon:\n{}",
        sshd.log(),
        d.output()
    );
    let out = s.cli(Some(server), &["unban", CLIENT]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!server.has_ban(CLIENT));
    wait_for(
        Duration::from_secs(5),
        "sshd to answer the unbanned client",
        || connect(client) == "SSH-2.0",
    );
    eprintln!(
        "banned after {guesses} wrong password(s); sshd wrote: {:#?}",
        sshd.log()
    );
}

#[test]
fn a_real_sshd_brute_force_is_banned_and_unbanned() {
    let (server, client) = (Netns::new(), Netns::new());
    veth(&client, &[CLIENT], &server, SERVER);
    let s = Setup::new("failed_attempts: 3\nfirewall: { backend: iptables }");
    let sshd = Sshd::start(&server, Sink::Syslog(s.log()));
    let d = Daemon::start(&s, &server);
    brute_force_is_banned_then_unbanned(&s, &server, &client, &sshd, &d);
    // The lines pyfilter read are the ones sshd wrote, stamped as syslog would.
    let log = std::fs::read_to_string(s.log()).unwrap();
    assert!(
        log.lines().any(|l| l.contains(" sshd[")
            && l.ends_with(" ssh2")
            && l.contains("Failed password for root")),
        "{log}"
    );
    drop(d);
    drop(sshd);
}

#[test]
fn a_real_sshd_logging_to_the_journal_is_banned() {
    let (server, client) = (Netns::new(), Netns::new());
    veth(&client, &[CLIENT], &server, SERVER);
    let s = Setup::new("");
    let journal = s.path("sshd.journal");
    s.write_config(&format!(
        "failed_attempts: 3\nfirewall: {{ backend: iptables }}\nrules:\n  sshd: {{ log_files: [], journal: {{ file: '{}', match: [_COMM=sshd] }} }}",
        journal.display()
    ));
    // sshd's "Server listening" entry creates the journal file before pyfilter starts.
    let sshd = Sshd::start(&server, Sink::Journal(journal.clone()));
    let d = Daemon::start(&s, &server);
    d.wait_log("following the journal for sshd");
    brute_force_is_banned_then_unbanned(&s, &server, &client, &sshd, &d);
    drop(d);
    drop(sshd);
}
