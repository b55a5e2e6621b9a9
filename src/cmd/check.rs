//! `pyfilter check`: the configuration is valid (or exit 2, from loading it); print what
//! would run, and warn about what will not work at run time.

use std::process::ExitCode;

use crate::cli::UsageError;
use crate::config::{Backend, StoreKind};
use crate::duration::format_duration;
use crate::net::display_net;
use crate::settings::Settings;
use crate::source::plan::{RulePlan, nothing_to_read};

pub fn run(settings: &Settings, show_regex: Option<&str>) -> anyhow::Result<ExitCode> {
    if let Some(name) = show_regex {
        let rule = settings
            .rule(name)
            .ok_or_else(|| UsageError(format!("--show-regex {name}: no such rule")))?;
        println!("{}", rule.combined_regex());
        return Ok(ExitCode::SUCCESS);
    }
    let c = &settings.config;
    let mut warnings = Vec::new();
    println!("configuration: {}", settings.source);
    println!("server_name: {}", c.server_name);
    println!(
        "defaults: failed_attempts {}, request_time {}, ban_time {}",
        c.failed_attempts,
        format_duration(c.request_time),
        c.ban_time
    );
    let ignore: Vec<String> = settings.ignore.nets().iter().map(display_net).collect();
    println!(
        "ignore: {}",
        if ignore.is_empty() {
            "(none)".into()
        } else {
            ignore.join(", ")
        }
    );
    match c.firewall.backend {
        Backend::Iptables => println!(
            "firewall: iptables, chain {} from {}, action {}",
            c.firewall.chain,
            c.firewall.parents.join(", "),
            c.firewall.action.target()
        ),
        Backend::Ipset => println!(
            "firewall: ipset, sets {set}-v4 {set}-net4 {set}-v6 {set}-net6 (maxelem {}) matched from chain {} (from {}), action {}",
            c.firewall.maxelem,
            c.firewall.chain,
            c.firewall.parents.join(", "),
            c.firewall.action.target(),
            set = c.firewall.set,
        ),
        Backend::Nftables => println!(
            "firewall: nftables, table inet {} on hooks {} (priority {}), sets of at most {}, action {}",
            c.firewall.set,
            c.firewall.hooks.join(", "),
            c.firewall.priority,
            c.firewall.maxelem,
            c.firewall.action.target()
        ),
        Backend::None => println!("firewall: none (bans are recorded, not enforced)"),
    }
    match c.store {
        StoreKind::Sqlite => println!("store: sqlite {}", c.sqlite.path.display()),
        StoreKind::Redis => {
            let tls = match (&c.redis.tls_ca, &c.redis.tls_cert) {
                (Some(ca), Some(cert)) => format!(
                    ", TLS checked against {}, client certificate {}",
                    ca.display(),
                    cert.display()
                ),
                (Some(ca), None) => format!(", TLS checked against {}", ca.display()),
                (None, Some(cert)) => format!(", client certificate {}", cert.display()),
                (None, None) => String::new(),
            };
            let sentinels = if c.redis.uses_sentinel() {
                format!(
                    ", primary `{}` from sentinels {}",
                    c.redis.master.as_deref().unwrap_or_default(),
                    c.redis.sentinels.join(", ")
                )
            } else {
                String::new()
            };
            println!(
                "store: redis {}{sentinels}{tls} (prefix {}, sync {}, channel {}, reconcile every {}); local positions and outbox in {}",
                crate::config::redacted(&c.redis.url),
                c.redis.prefix,
                if c.redis.sync { "on" } else { "off" },
                c.redis.channel(),
                format_duration(c.redis.reconcile_every),
                c.sqlite.path.display()
            );
            match redis_status(settings) {
                Ok(()) => println!("redis: reachable"),
                Err(e) => warnings.push(e),
            }
        }
    }
    println!(
        "history_retention: {}",
        format_duration(c.history_retention)
    );
    println!("rules_dir: {}", c.rules_dir.display());
    admin_status(settings, &mut warnings);
    notify_status(settings, &mut warnings);
    println!();
    println!("rules:");
    let mut idle = Vec::new();
    for rule in &settings.rules {
        let state = if rule.enabled { "enabled" } else { "disabled" };
        let mode = match &rule.mode {
            Some(m) => format!("mode {m} of {}, ", rule.modes.join(" ")),
            None => String::new(),
        };
        println!(
            "  {} ({state}, {mode}{}, {} within {} -> ban {}) from {}",
            rule.name,
            crate::words::counted(rule.pattern_count(), "pattern"),
            crate::words::counted(rule.limits.failed_attempts.get(), "attempt"),
            format_duration(rule.limits.request_time),
            rule.limits.ban_time,
            rule.origin
        );
        if !rule.description.is_empty() {
            println!("    {}", rule.description);
        }
        if !rule.enabled {
            continue;
        }
        // The same words as `run`'s first screen.
        let plan = RulePlan::of(rule);
        println!("    {}", plan.line());
        if plan.reads_nothing() {
            idle.push(rule);
        }
        if plan.journal.is_some() && !crate::programs::installed("journalctl") {
            warnings.push(format!("rule {} reads the journal, but journalctl is not installed (apt-get install systemd)", rule.name));
        }
        if rule.log_files.is_empty() && rule.journal.is_none() {
            warnings.push(format!(
                "rule {} is enabled but has no log_files",
                rule.name
            ));
        }
    }
    warnings.extend(nothing_to_read(&idle));
    let tools: &[(&str, &str)] = match c.firewall.backend {
        Backend::Iptables => &[("iptables", "iptables")],
        Backend::Ipset => &[("iptables", "iptables"), ("ipset", "ipset")],
        Backend::Nftables => &[("nft", "nftables")],
        Backend::None => &[],
    };
    for (tool, package) in tools.iter().filter(|(t, _)| !crate::programs::installed(t)) {
        warnings.push(format!(
            "{tool} is not installed (apt-get install {package}), or set firewall.backend: none"
        ));
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    println!("configuration OK");
    Ok(ExitCode::SUCCESS)
}

/// Connects to Redis once, as the daemon would, and says precisely what failed. With
/// sentinels, prints first what each of them says of the primary and its replicas.
fn redis_status(settings: &Settings) -> Result<(), String> {
    let c = &settings.config;
    let endpoint = crate::fleet::Endpoint::new(&c.redis).map_err(|e| format!("redis: {e}"))?;
    let url = endpoint.describe();
    let views = endpoint.sentinel_views();
    if !views.is_empty() {
        sentinel_report(&views, c.redis.master.as_deref().unwrap_or_default());
    }
    let mut conn = endpoint.connect().map_err(|e| {
        let text = e.to_string();
        let lower = text.to_lowercase();
        let why = if e.is_connection_refusal() {
            "connection refused (is redis-server running, and listening there?)".to_string()
        } else if e.is_timeout() {
            "timed out (firewall, wrong host?)".to_string()
        } else if lower.contains("auth") || text.contains("NOAUTH") || text.contains("WRONGPASS") {
            format!("authentication failed ({e}); check the user and password in the URL")
        } else if lower.contains("tls") || lower.contains("certificate") {
            format!("TLS failed ({e}); check redis.tls_ca, tls_cert and tls_key")
        } else if text.contains("DB index") || text.contains("invalid DB") {
            format!("wrong database number ({e})")
        } else {
            text
        };
        format!("redis {url}: {why}")
    })?;
    ::redis::cmd("PING")
        .query::<String>(&mut conn)
        .map_err(|e| format!("redis {url}: PING failed: {e}"))?;
    Ok(())
}

/// Each sentinel's answer, then whether they agree on the primary.
fn sentinel_report(views: &[crate::fleet::SentinelView], master: &str) {
    println!("redis sentinels for `{master}`:");
    let mut named: Vec<&str> = Vec::new();
    for v in views {
        match &v.primary {
            Ok(primary) => {
                named.push(primary);
                let replicas = if v.replicas.is_empty() {
                    "none".to_string()
                } else {
                    v.replicas.join(", ")
                };
                println!(
                    "  {}: primary {primary}, replicas {replicas}; {}",
                    v.sentinel, v.quorum
                );
            }
            Err(why) => println!("  {}: no answer ({why})", v.sentinel),
        }
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for p in &named {
        match counts.iter_mut().find(|(q, _)| q == p) {
            Some((_, n)) => *n += 1,
            None => counts.push((p, 1)),
        }
    }
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    match counts.first() {
        Some((primary, n)) => println!(
            "redis primary: {primary} ({n} of {} sentinels agree)",
            views.len()
        ),
        None => println!("redis primary: unknown (no sentinel answered)"),
    }
}

/// The admin's settings, and what would stop `pyfilter admin` from starting: no user,
/// TLS files or a GeoIP database that cannot be read.
fn admin_status(settings: &Settings, warnings: &mut Vec<String>) {
    let a = &settings.config.admin;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            if let Err(e) = crate::web::tls_config(cert, key) {
                warnings.push(format!("admin: {e}"));
            }
            "HTTPS"
        }
        (None, None) => "plain HTTP",
        _ => {
            warnings.push("admin: tls_cert and tls_key go together; set both or neither".into());
            "HTTPS"
        }
    };
    let users = crate::store::open_read_only(settings).and_then(|mut s| s.user_count());
    let users = match users {
        Ok(0) => "no user yet: `pyfilter admin passwd NAME` creates one".to_string(),
        Ok(n) => crate::words::counted(n, "user"),
        Err(e) => format!("users unknown ({e})"),
    };
    println!(
        "admin: {} ({tls}), log {}, {users}",
        a.listen,
        a.log.display()
    );
    if let Some(Err(e)) = a.geoip.as_deref().map(crate::admin::geo::Geo::open) {
        warnings.push(format!("admin: {e}"));
    }
}

/// The notifications, one line each; a webhook is named by its host alone (its path is
/// often the secret), a command by its program, which must be there.
fn notify_status(settings: &Settings, warnings: &mut Vec<String>) {
    if settings.config.notify.is_empty() {
        println!("notify: none");
        return;
    }
    println!("notify:");
    for n in &settings.config.notify {
        let what = match (&n.command, &n.url) {
            (Some(argv), _) => {
                let program = argv.first().map_or("", String::as_str);
                let found = if program.contains('/') {
                    std::path::Path::new(program).is_file()
                } else {
                    crate::programs::installed(program)
                };
                if !found {
                    warnings.push(format!(
                        "notify {}: {program} is not there (or not on PATH)",
                        n.display_name()
                    ));
                }
                format!("runs {program}")
            }
            (None, Some(url)) => {
                let host = url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default();
                format!("POSTs to {host}")
            }
            (None, None) => String::new(),
        };
        let on: Vec<&str> =
            n.on.iter()
                .map(|o| match o {
                    crate::config::NotifyOn::Ban => "bans",
                    crate::config::NotifyOn::Unban => "unbans",
                })
                .collect();
        let sources: Vec<&str> = n
            .sources
            .iter()
            .map(|s| match s {
                crate::config::NotifySource::Log => "log",
                crate::config::NotifySource::Manual => "manual",
                crate::config::NotifySource::Remote => "remote",
            })
            .collect();
        let rules = if n.rules.is_empty() {
            "every rule".to_string()
        } else {
            format!("rules {}", n.rules.join(", "))
        };
        println!(
            "  {}: {what}, on {} from {} ({rules}), timeout {}, {}",
            n.display_name(),
            on.join(" and "),
            sources.join(", "),
            format_duration(n.timeout),
            crate::words::count(n.retries, "retry", "retries")
        );
    }
}
