//! A fleet that outlives its Redis primary: a primary, a replica and three sentinels on
//! the loopback of a network namespace, three pyfilter servers in it (each with its own
//! iptables chain) banning in a stream, and the primary killed mid-stream.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Bans in the stream, one every `STEP`, each server in turn; the primary dies after
/// `KILL_AFTER` of them, and the stream goes on for `AFTER_FAILOVER` after the failover.
const STEP: Duration = Duration::from_millis(100);
const KILL_AFTER: usize = 15;
const AFTER_FAILOVER: Duration = Duration::from_secs(1);
const MAX_BANS: usize = 250;
const SERVERS: [&str; 3] = ["a", "b", "c"];

fn chain(name: &str) -> String {
    format!("PF_{}", name.to_uppercase())
}

fn ip(i: usize) -> String {
    format!("198.51.100.{}", i + 1)
}

fn has_ban(ns: &Netns, chain: &str, ip: &str) -> bool {
    ns.rules("iptables", chain)
        .lines()
        .any(|l| l.starts_with(&format!("-A {chain} -s {ip}/32 ")))
}

#[test]
fn bans_made_across_a_failover_reach_every_server_once() {
    let mut group = SentinelGroup::start();
    let setups: Vec<Setup> = SERVERS
        .iter()
        .map(|name| {
            let s = Setup::new(&format!(
                "server_name: {name}\nfailed_attempts: 1\nstore: redis\nfirewall: {{ backend: iptables, chain: {} }}\nredis: {}",
                chain(name),
                group.redis_settings(", reconcile_every: 2s, timeout: 500ms")
            ));
            append(&s.log(), "");
            s
        })
        .collect();

    // check shows the sentinels' view.
    let out = stdout(&setups[0].cli(Some(&group.ns), &["check"]));
    eprintln!("{out}");
    assert!(
        out.contains(&format!(
            "redis primary: 127.0.0.1:{PRIMARY_PORT} (3 of 3 sentinels agree)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("replicas 127.0.0.1:{REPLICA_PORT}"))
            && out.contains("redis: reachable"),
        "{out}"
    );

    let daemons: Vec<Daemon> = setups
        .iter()
        .map(|s| {
            let d = Daemon::start(s, &group.ns);
            d.wait_log("sync: connected");
            d
        })
        .collect();

    // The stream: each server in turn sees one more attacker; the primary dies on the
    // way, and the stream goes on until a second after the sentinels promoted the replica.
    let started = Instant::now();
    let mut killed = None;
    let mut failover = None;
    let mut bans = 0;
    while failover.is_none_or(|f: Instant| f.elapsed() < AFTER_FAILOVER) {
        assert!(bans < MAX_BANS, "no failover after {bans} bans");
        append(&setups[bans % SERVERS.len()].log(), &failed(&ip(bans)));
        bans += 1;
        if bans == KILL_AFTER {
            killed = Some((group.kill_primary(), Instant::now()));
        }
        if let Some((old, _)) = killed
            && failover.is_none()
            && group.primary().is_some_and(|p| p != old)
        {
            failover = Some(Instant::now());
        }
        std::thread::sleep((STEP * bans as u32).saturating_sub(started.elapsed()));
    }
    let (_, killed_at) = killed.expect("killed mid-stream");
    let failover = failover.expect("a failover");
    let new = group.primary().expect("a new primary");
    assert_eq!(new, REPLICA_PORT);

    // Within 5 s of the failover every server has every ban.
    let from = failover;
    let logs = || {
        daemons
            .iter()
            .zip(SERVERS)
            .map(|(d, n)| format!("--- {n}:\n{}", d.output()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let missing = || -> Vec<String> {
        let mut missing = Vec::new();
        for name in SERVERS {
            let rules = group.ns.rules("iptables", &chain(name));
            for i in 0..bans {
                let c = chain(name);
                if !rules
                    .lines()
                    .any(|l| l.starts_with(&format!("-A {c} -s {}/32 ", ip(i))))
                {
                    missing.push(format!("{} on {name}", ip(i)));
                }
            }
        }
        missing
    };
    while !missing().is_empty() {
        assert!(
            from.elapsed() < Duration::from_secs(5),
            "5 s after the failover, still missing: {:?}\n{}",
            missing(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{bans} bans; failover {:.1} s after the kill; every ban on every server {:.2} s after the failover",
        failover.duration_since(killed_at).as_secs_f64(),
        from.elapsed().as_secs_f64()
    );
    assert!(has_ban(&group.ns, &chain("a"), &ip(bans - 1)));

    // The new primary holds each ban once: none lost, none recorded twice.
    let count = |args: &[&str]| group.cli(new, args).trim().to_string();
    wait_for(Duration::from_secs(5), "every ban recorded", || {
        count(&["ZCARD", "pyfilter:expiry"]) == bans.to_string()
    });
    assert_eq!(
        count(&["HLEN", "pyfilter:records"]),
        bans.to_string(),
        "{}",
        logs()
    );
    for i in 0..bans {
        let past = count(&["HGET", "pyfilter:offences", &format!("{}/32", ip(i))]);
        assert_eq!(
            past.split_whitespace().count(),
            1,
            "{} recorded more than once: {past}",
            ip(i)
        );
    }
    // And the servers said what happened.
    let all = logs();
    assert!(all.contains("sync: connected to Redis"), "{all}");
    assert!(
        all.contains(&format!("127.0.0.1:{REPLICA_PORT}, listening on")),
        "the subscription moved to the new primary: {all}"
    );
}
