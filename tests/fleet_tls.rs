//! The fleet over TLS: a real `redis-server` answering only on its `tls-port` inside a
//! network namespace, with certificates the test makes (openssl CLI); pyfilter checks
//! Redis's certificate against the fleet's own authority and shows a client certificate
//! when Redis asks for one. pyfilter connects as the README's ACL user.

mod common;

use std::time::Duration;

use common::*;

fn setup(name: &str, certs: &Certs, tls: &str) -> Setup {
    let s = Setup::new(&format!(
        "server_name: {name}\nfailed_attempts: 1\nstore: redis\nfirewall: {{ backend: iptables, chain: PF_{} }}\nredis: {{ url: '{}'{tls}, timeout: 1s }}",
        name.to_uppercase(),
        TlsRedis::url(),
    ));
    let _ = certs;
    append(&s.log(), "");
    s
}

fn with_ca(certs: &Certs, ca: &str) -> String {
    format!(", tls_ca: {}", certs.path(ca).display())
}

fn namespace() -> Netns {
    let ns = Netns::new();
    ns.ok("ip", &["link", "set", "lo", "up"]);
    ns
}

#[test]
fn bans_travel_over_tls_checked_against_the_fleets_own_authority() {
    let certs = Certs::make();
    let ns = namespace();
    let redis = TlsRedis::start(&ns, &certs, false);
    let a = setup("a", &certs, &with_ca(&certs, "ca.pem"));
    let b = setup("b", &certs, &with_ca(&certs, "ca.pem"));
    let out = stdout(&a.cli(Some(&ns), &["check"]));
    assert!(
        out.contains("redis: reachable") && out.contains("TLS checked against"),
        "{out}"
    );

    let da = Daemon::start(&a, &ns);
    let db = Daemon::start(&b, &ns);
    db.wait_log("sync: connected");
    append(&a.log(), &failed("192.0.2.71"));
    wait_for(
        Duration::from_secs(10),
        "the ban to reach b over TLS",
        || {
            ns.rules("iptables", "PF_B")
                .contains("-A PF_B -s 192.0.2.71/32 ")
        },
    );
    assert!(
        db.output()
            .contains("banned 192.0.2.71 (from a, rule sshd)")
    );
    assert_eq!(
        redis.cli(&ns, &certs, &["ZCARD", "pyfilter:expiry"]).trim(),
        "1"
    );
    drop(da);

    // Verification is on: with only the public authorities, or another one, Redis's
    // certificate is refused, and said to be.
    for tls in [String::new(), with_ca(&certs, "stranger-ca.pem")] {
        let s = setup("c", &certs, &tls);
        let out = stdout(&s.cli(Some(&ns), &["check"]));
        assert!(
            !out.contains("redis: reachable") && out.contains("TLS failed"),
            "{tls}: {out}"
        );
        let out = s.cli(Some(&ns), &["ban", "192.0.2.72"]);
        assert!(
            stdout(&out).contains("kept in the outbox"),
            "an unverified Redis is never written to: {}",
            stdout(&out)
        );
    }
    assert_eq!(
        redis
            .cli(
                &ns,
                &certs,
                &["HEXISTS", "pyfilter:offences", "192.0.2.72/32"]
            )
            .trim(),
        "0"
    );
}

#[test]
fn a_redis_that_asks_for_a_client_certificate_gets_the_configured_one() {
    let certs = Certs::make();
    let ns = namespace();
    let redis = TlsRedis::start(&ns, &certs, true);
    let without = setup("a", &certs, &with_ca(&certs, "ca.pem"));
    let out = stdout(&without.cli(Some(&ns), &["check"]));
    assert!(!out.contains("redis: reachable"), "{out}");

    let client = format!(
        "{}, tls_cert: {}, tls_key: {}",
        with_ca(&certs, "ca.pem"),
        certs.path("client.pem").display(),
        certs.path("client.key").display()
    );
    let with = setup("b", &certs, &client);
    let out = stdout(&with.cli(Some(&ns), &["check"]));
    assert!(
        out.contains("redis: reachable") && out.contains("client certificate"),
        "{out}"
    );
    let out = with.cli(Some(&ns), &["ban", "192.0.2.73"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        redis
            .cli(
                &ns,
                &certs,
                &["HEXISTS", "pyfilter:offences", "192.0.2.73/32"]
            )
            .trim(),
        "1",
        "{}",
        redis.log()
    );
}
