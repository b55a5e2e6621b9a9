//! Redis with Sentinel inside a network namespace of the test's own: a primary, a replica
//! and three sentinels on its loopback, every Redis with pyfilter's ACL user; and the
//! means to kill the primary and see where the sentinels moved it.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use super::{
    ADMIN_PASSWORD, Netns, PYFILTER_PASSWORD, PYFILTER_USER, acl_lines, spawn_redis, wait_for,
};

pub const MASTER: &str = "fleet";
pub const PRIMARY_PORT: u16 = 6379;
pub const REPLICA_PORT: u16 = 6380;
pub const SENTINEL_PORTS: [u16; 3] = [26379, 26380, 26381];

pub struct SentinelGroup {
    pub ns: Netns,
    pub dir: tempfile::TempDir,
    /// By port; a killed one is `None`.
    redis: Vec<(u16, Option<Child>)>,
    sentinels: Vec<Child>,
}

impl SentinelGroup {
    /// Starts them all and waits until the replica is in sync and every sentinel knows
    /// the replica and the two other sentinels.
    pub fn start() -> SentinelGroup {
        let ns = Netns::new();
        ns.ok("ip", &["link", "set", "lo", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let mut g = SentinelGroup {
            ns,
            dir,
            redis: Vec::new(),
            sentinels: Vec::new(),
        };
        for port in [PRIMARY_PORT, REPLICA_PORT] {
            let replicaof = if port == REPLICA_PORT {
                format!("replicaof 127.0.0.1 {PRIMARY_PORT}\n")
            } else {
                String::new()
            };
            let conf = g.path(&format!("redis-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\ndbfilename dump-{port}.rdb\nmasteruser default\nmasterauth {ADMIN_PASSWORD}\n{replicaof}{}",
                    g.dir.path().display(),
                    acl_lines()
                ),
            )
            .unwrap();
            let child = spawn_redis(
                Some(&g.ns),
                &conf,
                &[],
                &g.path(&format!("redis-{port}.log")),
            );
            g.redis.push((port, Some(child)));
        }
        for port in SENTINEL_PORTS {
            let conf = g.path(&format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER} 127.0.0.1 {PRIMARY_PORT} 2\nsentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 10000\nsentinel parallel-syncs {MASTER} 1\nsentinel auth-user {MASTER} default\nsentinel auth-pass {MASTER} {ADMIN_PASSWORD}\n",
                    g.dir.path().display()
                ),
            )
            .unwrap();
            let child = spawn_redis(
                Some(&g.ns),
                &conf,
                &["--sentinel"],
                &g.path(&format!("sentinel-{port}.log")),
            );
            g.sentinels.push(child);
        }
        wait_for(Duration::from_secs(20), "the replica to be in sync", || {
            g.cli(REPLICA_PORT, &["INFO", "replication"])
                .contains("master_link_status:up")
        });
        wait_for(
            Duration::from_secs(30),
            "every sentinel to know the replica and the two others",
            || {
                SENTINEL_PORTS.iter().all(|&p| {
                    let info = g.cli(p, &["SENTINEL", "master", MASTER]);
                    field(&info, "num-slaves") == Some("1")
                        && field(&info, "num-other-sentinels") == Some("2")
                })
            },
        );
        g
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// pyfilter's `redis:` settings: its ACL user, the sentinels, the master's name, and
    /// `extra` (`, key: value...`).
    pub fn redis_settings(&self, extra: &str) -> String {
        let sentinels: Vec<String> = SENTINEL_PORTS
            .iter()
            .map(|p| format!("'127.0.0.1:{p}'"))
            .collect();
        format!(
            "{{ url: 'redis://{PYFILTER_USER}:{PYFILTER_PASSWORD}@sentinel-named/0', sentinels: [{}], master: {MASTER}{extra} }}",
            sentinels.join(", ")
        )
    }

    /// `redis-cli -p PORT` inside the namespace (as `default` on a Redis); its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let port = port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port];
        if !SENTINEL_PORTS.iter().any(|p| p.to_string() == port) {
            all.extend(["--no-auth-warning", "-a", ADMIN_PASSWORD]);
        }
        all.extend(args);
        String::from_utf8_lossy(&self.ns.run("redis-cli", &all).stdout).into_owned()
    }

    /// The port of the primary the first sentinel names.
    pub fn primary(&self) -> Option<u16> {
        let out = self.cli(
            SENTINEL_PORTS[0],
            &["SENTINEL", "get-master-addr-by-name", MASTER],
        );
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// SIGKILL to the primary of now; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary().expect("a primary");
        let (_, child) = self
            .redis
            .iter_mut()
            .find(|(p, _)| *p == port)
            .expect("one of ours");
        let mut child = child.take().expect("still running");
        child.kill().unwrap();
        child.wait().unwrap();
        port
    }

    /// Waits until every sentinel names a primary other than `old`; returns when that was.
    pub fn wait_failover(&self, old: u16, limit: Duration) -> Instant {
        wait_for(limit, "the sentinels to promote the replica", || {
            SENTINEL_PORTS.iter().all(|&s| {
                self.cli(s, &["SENTINEL", "get-master-addr-by-name", MASTER])
                    .lines()
                    .nth(1)
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    .is_some_and(|p| p != old)
            })
        });
        Instant::now()
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for child in self
            .sentinels
            .iter_mut()
            .chain(self.redis.iter_mut().filter_map(|(_, c)| c.as_mut()))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A field of `SENTINEL master`'s reply (name and value on alternate lines).
fn field<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let lines: Vec<&str> = reply.lines().map(str::trim).collect();
    lines
        .iter()
        .position(|l| *l == name)
        .and_then(|i| lines.get(i + 1).copied())
}
