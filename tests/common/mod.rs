//! Test harness: network namespaces, a daemon running inside one, log writers.
//!
//! Every test that touches a firewall gets its own network namespace (a `sleep` process
//! started with `unshare --net`), so the machine's own firewall is never changed. The
//! daemon and every iptables command run inside it through `nsenter`.

#![allow(dead_code)]

mod redis_server;
mod sentinel;
#[allow(unused_imports)]
pub use redis_server::*;
#[allow(unused_imports)]
pub use sentinel::*;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pyfilter");

/// A network namespace that lives as long as this value.
pub struct Netns {
    holder: Child,
}

impl Netns {
    pub fn new() -> Netns {
        assert!(
            unsafe_is_root(),
            "these tests need root: they create network namespaces (run scripts/test with sudo)"
        );
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net (util-linux) must be installed");
        let ns = Netns { holder };
        // Wait until the holder is inside its new namespace.
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        wait_for(Duration::from_secs(5), "the namespace to exist", || {
            std::fs::read_link(ns.path()).is_ok_and(|l| l != mine)
        });
        ns
    }

    pub fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs a program inside the namespace and returns its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `iptables -S CHAIN` (or ip6tables), empty when the chain does not exist.
    pub fn rules(&self, tool: &str, chain: &str) -> String {
        String::from_utf8_lossy(&self.run(tool, &["-w", "-S", chain]).stdout).into_owned()
    }

    pub fn has_ban(&self, ip: &str) -> bool {
        let (tool, host) = if ip.contains(':') {
            ("ip6tables", "/128")
        } else {
            ("iptables", "/32")
        };
        let net = if ip.contains('/') {
            ip.to_string()
        } else {
            format!("{ip}{host}")
        };
        self.rules(tool, "PYFILTER")
            .lines()
            .any(|l| l.starts_with(&format!("-A PYFILTER -s {net} ")))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Polls `cond` until it holds; panics after `limit` naming what was awaited.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A test's directory: configuration, database, logs, rules.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// A directory with `pyfilter.yml` = `extra` plus the paths that keep the test inside
    /// its directory. `auth.log` is the sshd log.
    pub fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let s = Setup { dir };
        s.write_config(extra);
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("pyfilter.yml")
    }

    pub fn log(&self) -> PathBuf {
        self.path("auth.log")
    }

    /// Writes the configuration: the test's keys, then defaults for the ones it left out.
    pub fn write_config(&self, extra: &str) {
        let mut text = format!("{extra}\n");
        let has = |key: &str| extra.lines().any(|l| l.starts_with(&format!("{key}:")));
        if !has("server_name") {
            text.push_str("server_name: test-1\n");
        }
        if !has("sqlite") {
            text.push_str(&format!(
                "sqlite: {{ path: {} }}\n",
                self.path("db/pyfilter.db").display()
            ));
        }
        if !has("rules_dir") {
            text.push_str(&format!("rules_dir: {}\n", self.path("rules.d").display()));
        }
        // Only the rules a test names run: the shipped set would also follow the host's
        // own logs.
        if !has("enabled_rules") {
            text.push_str("enabled_rules: [sshd]\n");
        }
        if !has("rules") {
            text.push_str(&format!(
                "rules:\n  sshd: {{ log_files: [{}] }}\n",
                self.log().display()
            ));
        }
        std::fs::write(self.config(), text).unwrap();
    }

    /// Runs a CLI command inside `ns` (or outside any namespace when `None`).
    pub fn cli(&self, ns: Option<&Netns>, args: &[&str]) -> Output {
        let mut c = match ns {
            Some(ns) => ns.command(BIN),
            None => Command::new(BIN),
        };
        c.arg("-c")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Appends to a file the way a logger does.
pub fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A failed sshd password line for `ip`, stamped now (syslog format, local time).
pub fn failed(ip: &str) -> String {
    failed_at(ip, chrono::Local::now())
}

pub fn failed_at(ip: &str, at: chrono::DateTime<chrono::Local>) -> String {
    format!(
        "{} testhost sshd[4242]: Failed password for invalid user admin from {ip} port 50022 ssh2\n",
        at.format("%b %e %H:%M:%S")
    )
}

/// The same in RFC 3339 with sub-second precision.
pub fn failed_rfc3339(ip: &str, at: chrono::DateTime<chrono::Local>) -> String {
    format!(
        "{} testhost sshd[4242]: Failed password for root from {ip} port 50022 ssh2\n",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
    )
}

/// `pyfilter run` inside a namespace, its log captured.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(setup: &Setup, ns: &Netns) -> Daemon {
        Daemon::start_with(setup, ns, &[])
    }

    /// `pyfilter run` with more options (`--metrics ADDR`).
    pub fn start_with(setup: &Setup, ns: &Netns, run_args: &[&str]) -> Daemon {
        Daemon::start_by(setup, ns.command(BIN), run_args)
    }

    /// `pyfilter run` in the machine's own namespace, for a configuration with
    /// `firewall: { backend: none }` (which never touches a firewall) whose test talks to
    /// the daemon over the machine's loopback.
    pub fn start_without_firewall(setup: &Setup, run_args: &[&str]) -> Daemon {
        let config = std::fs::read_to_string(setup.config()).unwrap();
        assert!(
            config.contains("backend: none"),
            "only a daemon without firewall runs outside a namespace"
        );
        Daemon::start_by(setup, Command::new(BIN), run_args)
    }

    /// `pyfilter run` started by `command` (the binary, through `nsenter` into the
    /// test's namespaces).
    pub fn start_by(setup: &Setup, mut command: Command, run_args: &[&str]) -> Daemon {
        let log = setup.path(&format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos() + rand_suffix()
        ));
        let err = File::create(&log).unwrap();
        let child = command
            .arg("-c")
            .arg(setup.config())
            .args(["-vv", "run"])
            .args(run_args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let d = Daemon { child, log };
        d.wait_log("pyfilter ready");
        d
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's log contains `text`.
    pub fn wait_log(&self, text: &str) {
        let start = Instant::now();
        loop {
            let out = self.output();
            if out.contains(text) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "daemon never logged {text:?}; its log:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a PID this test started.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, and the time it took to exit.
    pub fn stop(mut self) -> (Duration, std::process::ExitStatus, String) {
        let start = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        (start.elapsed(), status, self.output())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

impl Netns {
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Runs a command in the namespace and panics when it fails.
    pub fn ok(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Two namespaces joined by a veth pair: `a` gets `addr_a` (and `extra_a`), `b` gets `addr_b`
/// (all /24 in one subnet of the test's own).
pub fn veth(a: &Netns, addrs_a: &[&str], b: &Netns, addr_b: &str) {
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
    let out = Command::new("ip")
        .args([
            "link", "add", "pfa", "netns", &pa, "type", "veth", "peer", "name", "pfb", "netns", &pb,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip link add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for addr in addrs_a {
        a.ok("ip", &["addr", "add", &format!("{addr}/24"), "dev", "pfa"]);
    }
    b.ok(
        "ip",
        &["addr", "add", &format!("{addr_b}/24"), "dev", "pfb"],
    );
    for (ns, dev) in [(a, "pfa"), (b, "pfb")] {
        ns.ok("ip", &["link", "set", dev, "up"]);
        ns.ok("ip", &["link", "set", "lo", "up"]);
    }
}

/// A mount namespace of the test's own (a `sleep` started with `unshare --mount`), where
/// a small tmpfs can fill up without touching anything else.
pub struct MountNs {
    holder: Child,
}

impl MountNs {
    pub fn new() -> MountNs {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --mount (util-linux) must be installed");
        let ns = MountNs { holder };
        let mine = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        wait_for(
            Duration::from_secs(5),
            "the mount namespace to exist",
            || std::fs::read_link(ns.path()).is_ok_and(|l| l != mine),
        );
        ns
    }

    pub fn path(&self) -> String {
        format!("/proc/{}/ns/mnt", self.holder.id())
    }

    /// `program` inside this mount namespace and `net`'s network namespace.
    pub fn command(&self, net: &Netns, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount={}", self.path()))
            .arg(format!("--net={}", net.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `program args` inside this mount namespace; its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--mount={}", self.path()))
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Mounts a tmpfs of `size` (`4m`) on `dir`, inside this namespace only.
    pub fn tmpfs(&self, dir: &Path, size: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let out = self.run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fills the file system of `dir` with `dir/fill`.
    pub fn fill(&self, dir: &Path) {
        let of = format!("of={}", dir.join("fill").display());
        let _ = self.run("dd", &["if=/dev/zero", &of, "bs=4k"]);
    }

    /// Frees what `fill` took.
    pub fn free(&self, dir: &Path) {
        let out = self.run("rm", &["-f", dir.join("fill").to_str().unwrap()]);
        assert!(out.status.success());
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Appends one entry to a journal file, as journald would: systemd-journal-remote writes
/// real journal files from the export format. `comm` is the program (`_COMM` and
/// `SYSLOG_IDENTIFIER`).
pub fn journal_entry(file: &Path, host: &str, comm: &str, pid: u32, message: &str) {
    let export = file.with_extension("export");
    let micros = chrono::Utc::now().timestamp_micros();
    std::fs::write(
        &export,
        format!(
            "__REALTIME_TIMESTAMP={micros}\n_HOSTNAME={host}\nSYSLOG_IDENTIFIER={comm}\n\
             _PID={pid}\n_COMM={comm}\nMESSAGE={message}\n\n"
        ),
    )
    .unwrap();
    let out = Command::new("/lib/systemd/systemd-journal-remote")
        .arg(format!("--output={}", file.display()))
        .arg(&export)
        .stdin(Stdio::null())
        .output()
        .expect("systemd-journal-remote (scripts/test installs it)");
    assert!(out.status.success(), "{}", stderr(&out));
}
