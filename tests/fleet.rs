//! Many servers as one: a real `redis-server` on a unix socket and several pyfilter
//! instances, each in its own network namespace with real iptables.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// One server of the fleet: its namespace, directory and daemon.
struct Member {
    name: &'static str,
    ns: Netns,
    setup: Setup,
    daemon: Option<Daemon>,
}

impl Member {
    fn new(name: &'static str, redis: &RedisServer) -> Member {
        let setup = Setup::new(&format!(
            "server_name: {name}\nfailed_attempts: 2\nstore: redis\nredis: {{ url: '{}', reconcile_every: 2s }}",
            redis.url()
        ));
        append(&setup.log(), "");
        Member {
            name,
            ns: Netns::new(),
            setup,
            daemon: None,
        }
    }

    fn start(mut self) -> Member {
        self.daemon = Some(Daemon::start(&self.setup, &self.ns));
        self
    }

    fn attack(&self, ip: &str) {
        append(&self.setup.log(), &format!("{}{}", failed(ip), failed(ip)));
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        self.setup.cli(Some(&self.ns), args)
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::output).unwrap_or_default()
    }
}

fn everywhere(fleet: &[&Member], ip: &str, banned: bool) {
    for m in fleet {
        let what = format!(
            "{ip} to be {} on {}",
            if banned { "banned" } else { "unbanned" },
            m.name
        );
        wait_for(WAIT, &what, || m.ns.has_ban(ip) == banned);
    }
}

#[test]
fn bans_and_unbans_travel_across_the_fleet() {
    let redis = RedisServer::start();
    let a = Member::new("a", &redis).start();
    let b = Member::new("b", &redis).start();
    let c = Member::new("c", &redis).start();

    // A ban from A's log appears on B and C.
    a.attack("192.0.2.10");
    everywhere(&[&a, &b, &c], "192.0.2.10", true);
    assert!(
        b.log().contains("banned 192.0.2.10 (from a, rule sshd)"),
        "{}",
        b.log()
    );

    // An unban on B disappears everywhere.
    let out = b.cli(&["unban", "192.0.2.10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    everywhere(&[&a, &b, &c], "192.0.2.10", false);

    // A manual ban on C appears everywhere, as remote elsewhere.
    assert!(
        c.cli(&["ban", "198.51.100.0/24", "--reason", "scanner"])
            .status
            .success()
    );
    everywhere(&[&a, &b, &c], "198.51.100.0/24", true);
    let list = stdout(&a.cli(&["list", "--json"]));
    assert!(
        list.contains(r#""ip":"198.51.100.0/24""#)
            && list.contains(r#""server":"c","source":"remote""#),
        "{list}"
    );

    // A late server gets every active ban on start.
    let d = Member::new("d", &redis).start();
    assert!(d.ns.has_ban("198.51.100.0/24"));
    assert!(d.log().contains("1 ban restored"), "{}", d.log());

    // One record per ban, whoever applied it.
    assert_eq!(redis.cli(&["ZCARD", "pyfilter:expiry"]).trim(), "1");
}

#[test]
fn with_redis_down_a_server_still_bans_and_the_fleet_catches_up() {
    let mut redis = RedisServer::start();
    let a = Member::new("a", &redis).start();
    let b = Member::new("b", &redis).start();
    let c = Member::new("c", &redis).start();
    a.attack("192.0.2.20");
    everywhere(&[&a, &b, &c], "192.0.2.20", true);

    redis.stop();
    // A keeps protecting itself.
    a.attack("192.0.2.21");
    wait_for(WAIT, "a local ban while Redis is down", || {
        a.ns.has_ban("192.0.2.21")
    });
    assert!(!b.ns.has_ban("192.0.2.21"));

    // Redis comes back empty (no persistence): nothing a server knew is lost, the queued
    // ban reaches the fleet, and nothing is recorded twice.
    redis.restart();
    everywhere(&[&a, &b, &c], "192.0.2.21", true);
    everywhere(&[&a, &b, &c], "192.0.2.20", true);
    wait_for(WAIT, "both bans back in Redis", || {
        redis.cli(&["ZCARD", "pyfilter:expiry"]).trim() == "2"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(redis.cli(&["ZCARD", "pyfilter:expiry"]).trim(), "2");
    let list = stdout(&b.cli(&["list", "--json"]));
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(a.log().contains("lost Redis"), "{}", a.log());
}

#[test]
fn forged_and_malformed_events_are_dropped() {
    let redis = RedisServer::start();
    let a = Member::new("a", &redis).start();
    wait_for(WAIT, "a to subscribe", || {
        a.log().contains("sync: connected")
    });
    for event in [
        r#"{"v":2,"kind":"ban","ip":"192.0.2.30","server":"evil"}"#,
        r#"{"v":1,"kind":"ban","ip":"192.0.2.30; iptables -F","server":"evil"}"#,
        r#"{"v":1,"kind":"ban","ip":"127.0.0.1","server":"evil"}"#,
        r#"not json at all"#,
    ] {
        redis.cli(&["PUBLISH", "pyfilter:events", event]);
    }
    wait_for(WAIT, "the events to be dropped", || {
        a.log().matches("event dropped").count() >= 3
    });
    assert!(
        a.log().contains("overlaps 127.0.0.0/8 in the ignore list"),
        "{}",
        a.log()
    );
    assert!(
        a.ns.rules("iptables", "PYFILTER")
            .lines()
            .all(|l| !l.contains("-s ")),
        "nothing was banned"
    );
}

#[test]
fn a_server_killed_and_restarted_converges() {
    let redis = RedisServer::start();
    let a = Member::new("a", &redis).start();
    let mut b = Member::new("b", &redis).start();
    // B dies without a chance to clean up.
    let victim = b.daemon.take().unwrap();
    victim.signal(libc::SIGKILL);
    drop(victim);
    a.attack("192.0.2.40");
    assert!(a.cli(&["ban", "198.51.100.40"]).status.success());
    wait_for(WAIT, "a's bans", || a.ns.has_ban("192.0.2.40"));
    assert!(a.cli(&["unban", "198.51.100.40"]).status.success());
    // B comes back: it gets what it missed, and not what was lifted meanwhile.
    let b = b.start();
    everywhere(&[&b], "192.0.2.40", true);
    assert!(!b.ns.has_ban("198.51.100.40"));
}

#[test]
fn check_and_the_cli_say_exactly_what_is_wrong_with_redis() {
    let redis = RedisServer::start();
    let s = Setup::new(&format!(
        "store: redis\nfirewall: {{ backend: none }}\nredis: {{ url: '{}&db=99' }}",
        redis.url()
    ));
    let out = s.cli(None, &["check"]);
    assert!(
        stdout(&out).contains("wrong database number"),
        "{}",
        stdout(&out)
    );
    // A refused database is a configuration error, not an outage: nothing is queued.
    let out = s.cli(None, &["ban", "192.0.2.50"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    s.write_config("store: redis\nfirewall: { backend: none }\nredis: { url: 'redis+unix:///nonexistent/redis.sock' }");
    let out = s.cli(None, &["check"]);
    assert!(
        stdout(&out).contains("warning: redis redis+unix:///nonexistent/redis.sock:"),
        "{}",
        stdout(&out)
    );
    // Away: the ban is kept locally and said to be.
    let out = s.cli(None, &["ban", "192.0.2.51"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("Redis is unreachable: kept in the outbox"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_readme_acl_line_is_the_one_every_redis_test_runs_as() {
    let readme = include_str!("../README.md");
    let line = format!("ACL SETUSER pyfilter on >LONG-RANDOM-PASSWORD {ACL_RULES}");
    assert!(readme.contains(&line), "the README must show: {line}");
    // And the fleet's tests do connect as that user.
    let redis = RedisServer::start();
    let a = Member::new("a", &redis).start();
    wait_for(WAIT, "a to subscribe", || {
        a.log().contains("sync: connected")
    });
    a.attack("192.0.2.60");
    wait_for(WAIT, "a's ban", || a.ns.has_ban("192.0.2.60"));
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert!(
        clients
            .lines()
            .filter(|l| l.contains(" user=pyfilter "))
            .count()
            >= 2,
        "the store and the subscriber: {clients}"
    );
}

#[test]
fn a_command_the_acl_user_may_not_run_is_named_not_taken_for_an_outage() {
    let redis = RedisServer::start();
    redis.cli(&["ACL", "SETUSER", "pyfilter", "-evalsha"]);
    let s = Setup::new(&format!(
        "store: redis\nfirewall: {{ backend: none }}\nredis: {{ url: '{}' }}",
        redis.url()
    ));
    let out = s.cli(None, &["ban", "192.0.2.61"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("refused the command EVALSHA to pyfilter's user"),
        "{said}"
    );
    assert!(
        !said.contains("outbox"),
        "not queued as if Redis were away: {said}"
    );
}

#[test]
fn a_ban_the_store_lost_is_recorded_again_not_lifted() {
    // As when a primary dies after taking a ban and before its replica had it: Redis
    // holds no trace of it, yet the server that made it did.
    let redis = RedisServer::start();
    let a = Member::new("a", &redis).start();
    let b = Member::new("b", &redis).start();
    a.attack("192.0.2.80");
    everywhere(&[&a, &b], "192.0.2.80", true);
    let words = redis.cli(&["HGET", "pyfilter:offences", "192.0.2.80/32"]);
    let id: i64 = words.trim().split(':').next().unwrap().parse().unwrap();
    redis.cli(&["ZREM", "pyfilter:expiry", "192.0.2.80/32"]);
    redis.cli(&[
        "ZREM",
        &format!("pyfilter:history:{}", id / 128),
        &id.to_string(),
    ]);
    redis.cli(&["HDEL", "pyfilter:records", &id.to_string()]);
    redis.cli(&["HDEL", "pyfilter:offences", "192.0.2.80/32"]);
    wait_for(WAIT, "a to record it again", || {
        a.log().contains("the store lost the ban of 192.0.2.80")
    });
    assert_ne!(
        redis
            .cli(&["ZSCORE", "pyfilter:expiry", "192.0.2.80/32"])
            .trim(),
        ""
    );
    // Neither server lifted it meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    everywhere(&[&a, &b], "192.0.2.80", true);
    assert!(!a.log().contains("unbanned 192.0.2.80"), "{}", a.log());
}

/// A fleet upgraded from a version before layout 2: its store goes on being written in
/// layout 1 while the daemons run, `prune --compact` rewrites it under them, and they go
/// on banning and unbanning across the fleet, now in layout 2.
#[test]
fn prune_compact_rewrites_a_running_fleets_store_into_layout_2() {
    let redis = RedisServer::start();
    redis.cli(&["SET", "pyfilter:layout", "1"]);
    let a = Member::new("a", &redis).start();
    let b = Member::new("b", &redis).start();
    a.attack("192.0.2.90");
    everywhere(&[&a, &b], "192.0.2.90", true);
    assert_eq!(redis.cli(&["EXISTS", "pyfilter:ban:1"]).trim(), "1");
    let before = stdout(&a.cli(&["list", "--json"]));
    let check = stdout(&a.cli(&["check"]));
    assert!(
        check.contains("redis: reachable; 1 active ban, layout 1, an earlier version's")
            && check.contains("`pyfilter prune --compact` rewrites it"),
        "{check}"
    );

    let out = a.cli(&["prune", "--compact"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("layout 2: 1 record rewritten"),
        "{}",
        stdout(&out)
    );
    for key in ["pyfilter:ban:*", "pyfilter:active", "pyfilter:history"] {
        assert_eq!(redis.cli(&["KEYS", key]).trim(), "", "{key}");
    }
    assert_eq!(stdout(&a.cli(&["list", "--json"])), before);
    let check = stdout(&a.cli(&["check", "--json"]));
    assert!(
        check.contains(r#""redis_layout":2"#) && check.contains(r#""redis_active":1"#),
        "{check}"
    );

    b.attack("192.0.2.91");
    everywhere(&[&a, &b], "192.0.2.91", true);
    assert_eq!(redis.cli(&["HLEN", "pyfilter:records"]).trim(), "2");
    assert!(b.cli(&["unban", "192.0.2.90"]).status.success());
    everywhere(&[&a, &b], "192.0.2.90", false);
    assert_eq!(redis.cli(&["KEYS", "pyfilter:ban*"]).trim(), "");
}

/// `prune --compact` is for a shared store: with SQLite it says so.
#[test]
fn prune_compact_without_redis_says_what_it_is_for() {
    let s = Setup::new("firewall: { backend: none }");
    let out = s.cli(None, &["prune", "--compact"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--compact is for a Redis store"),
        "{}",
        stderr(&out)
    );
}
