//! `pyfilter check`: the configuration is valid (or exit 2, from loading it); print what
//! would run, and warn about what will not work at run time.

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::UsageError;
use crate::config::{Backend, StoreKind};
use crate::duration::format_duration;
use crate::net::display_net;
use crate::settings::Settings;
use crate::source::plan::{RulePlan, nothing_to_read};

/// What `check` found, in the order it prints it; `--json` prints it as one object.
#[derive(Serialize, Default)]
struct Report {
    configuration: String,
    server_name: String,
    defaults: Defaults,
    ignore: Vec<String>,
    firewall: Described,
    store: Described,
    /// Each sentinel's view of the primary, as `check` prints it (with sentinels only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sentinels: Vec<String>,
    /// `Some(true)`: Redis answered PING; `Some(false)`: it did not (see `warnings`).
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_reachable: Option<bool>,
    /// The store's layout (1 or 2) once Redis answered; absent for an empty store.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_layout: Option<u8>,
    /// Active bans in the store, once Redis answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_active: Option<u64>,
    history_retention: String,
    rules_dir: String,
    admin: String,
    notify: Vec<String>,
    rules: Vec<RuleReport>,
    warnings: Vec<String>,
    ok: bool,
}

#[derive(Serialize, Default)]
struct Defaults {
    failed_attempts: u32,
    request_time: String,
    ban_time: String,
}

/// A part of the set-up: its kind and the line that describes it.
#[derive(Serialize, Default)]
struct Described {
    kind: String,
    description: String,
}

#[derive(Serialize)]
struct RuleReport {
    name: String,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    modes: Vec<String>,
    patterns: usize,
    failed_attempts: u32,
    request_time: String,
    ban_time: String,
    origin: String,
    description: String,
    /// What an enabled rule reads now (the first screen's words); `None` when disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    reads: Option<Reads>,
}

#[derive(Serialize)]
struct Reads {
    present: Vec<String>,
    absent: Vec<String>,
    journal: Option<String>,
    line: String,
}

pub fn run(settings: &Settings, show_regex: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(name) = show_regex {
        let rule = settings
            .rule(name)
            .ok_or_else(|| UsageError(format!("--show-regex {name}: no such rule")))?;
        println!("{}", rule.combined_regex());
        return Ok(ExitCode::SUCCESS);
    }
    let report = report(settings);
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn report(settings: &Settings) -> Report {
    let c = &settings.config;
    let mut r = Report {
        configuration: settings.source.to_string(),
        server_name: c.server_name.clone(),
        defaults: Defaults {
            failed_attempts: c.failed_attempts.get(),
            request_time: format_duration(c.request_time),
            ban_time: c.ban_time.to_string(),
        },
        ignore: settings.ignore.nets().iter().map(display_net).collect(),
        history_retention: format_duration(c.history_retention),
        rules_dir: c.rules_dir.display().to_string(),
        ok: true,
        ..Report::default()
    };
    let firewall = match c.firewall.backend {
        Backend::Iptables => format!(
            "iptables, chain {} from {}, action {}",
            c.firewall.chain,
            c.firewall.parents.join(", "),
            c.firewall.action.target()
        ),
        Backend::Ipset => format!(
            "ipset, sets {set}-v4 {set}-net4 {set}-v6 {set}-net6 (maxelem {}) matched from chain {} (from {}), action {}",
            c.firewall.maxelem,
            c.firewall.chain,
            c.firewall.parents.join(", "),
            c.firewall.action.target(),
            set = c.firewall.set,
        ),
        Backend::Nftables => format!(
            "nftables, table inet {} on hooks {} (priority {}), sets of at most {}, action {}",
            c.firewall.set,
            c.firewall.hooks.join(", "),
            c.firewall.priority,
            c.firewall.maxelem,
            c.firewall.action.target()
        ),
        Backend::None => "none (bans are recorded, not enforced)".to_string(),
    };
    r.firewall = Described {
        kind: c.firewall.backend.to_string(),
        description: firewall,
    };
    r.store = match c.store {
        StoreKind::Sqlite => Described {
            kind: "sqlite".into(),
            description: format!("sqlite {}", c.sqlite.path.display()),
        },
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
            Described {
                kind: "redis".into(),
                description: format!(
                    "redis {}{sentinels}{tls} (prefix {}, sync {}, channel {}, reconcile every {}); local positions and outbox in {}",
                    crate::config::redacted(&c.redis.url),
                    c.redis.prefix,
                    if c.redis.sync { "on" } else { "off" },
                    c.redis.channel(),
                    format_duration(c.redis.reconcile_every),
                    c.sqlite.path.display()
                ),
            }
        }
    };
    if c.store == StoreKind::Redis {
        match redis_status(settings, &mut r.sentinels) {
            Ok(shape) => {
                r.redis_reachable = Some(true);
                r.redis_layout = shape.and_then(|s| s.layout);
                r.redis_active = shape.map(|s| s.active);
            }
            Err(e) => {
                r.redis_reachable = Some(false);
                r.warnings.push(e);
            }
        }
    }
    r.admin = admin_status(settings, &mut r.warnings);
    r.notify = notify_status(settings, &mut r.warnings);
    let mut idle = Vec::new();
    for rule in &settings.rules {
        let reads = rule.enabled.then(|| {
            // The same words as `run`'s first screen.
            let plan = RulePlan::of(rule);
            if plan.reads_nothing() {
                idle.push(rule);
            }
            if plan.journal.is_some() && !crate::programs::installed("journalctl") {
                r.warnings.push(format!("rule {} reads the journal, but journalctl is not installed (apt-get install systemd)", rule.name));
            }
            if rule.log_files.is_empty() && rule.journal.is_none() {
                r.warnings.push(format!(
                    "rule {} is enabled but has no log_files",
                    rule.name
                ));
            }
            Reads {
                line: plan.line(),
                present: plan.present,
                absent: plan.absent,
                journal: plan.journal,
            }
        });
        r.rules.push(RuleReport {
            name: rule.name.to_string(),
            enabled: rule.enabled,
            mode: rule.mode.clone(),
            modes: rule.modes.clone(),
            patterns: rule.pattern_count(),
            failed_attempts: rule.limits.failed_attempts.get(),
            request_time: format_duration(rule.limits.request_time),
            ban_time: rule.limits.ban_time.to_string(),
            origin: rule.origin.to_string(),
            description: rule.description.clone(),
            reads,
        });
    }
    r.warnings.extend(nothing_to_read(&idle));
    let tools: &[(&str, &str)] = match c.firewall.backend {
        Backend::Iptables => &[("iptables", "iptables")],
        Backend::Ipset => &[("iptables", "iptables"), ("ipset", "ipset")],
        Backend::Nftables => &[("nft", "nftables")],
        Backend::None => &[],
    };
    for (tool, package) in tools.iter().filter(|(t, _)| !crate::programs::installed(t)) {
        r.warnings.push(format!(
            "{tool} is not installed (apt-get install {package}), or set firewall.backend: none"
        ));
    }
    r
}

/// `check`'s output for people.
fn text(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!("configuration: {}", r.configuration));
    line(format!("server_name: {}", r.server_name));
    line(format!(
        "defaults: failed_attempts {}, request_time {}, ban_time {}",
        r.defaults.failed_attempts, r.defaults.request_time, r.defaults.ban_time
    ));
    line(format!(
        "ignore: {}",
        if r.ignore.is_empty() {
            "(none)".into()
        } else {
            r.ignore.join(", ")
        }
    ));
    line(format!("firewall: {}", r.firewall.description));
    line(format!("store: {}", r.store.description));
    for s in &r.sentinels {
        line(s.clone());
    }
    if r.redis_reachable == Some(true) {
        line(format!("redis: reachable{}", store_shape(r)));
    }
    line(format!("history_retention: {}", r.history_retention));
    line(format!("rules_dir: {}", r.rules_dir));
    line(format!("admin: {}", r.admin));
    if r.notify.is_empty() {
        line("notify: none".into());
    } else {
        line("notify:".into());
        for n in &r.notify {
            line(format!("  {n}"));
        }
    }
    line(String::new());
    line("rules:".into());
    for rule in &r.rules {
        let state = if rule.enabled { "enabled" } else { "disabled" };
        let mode = match &rule.mode {
            Some(m) => format!("mode {m} of {}, ", rule.modes.join(" ")),
            None => String::new(),
        };
        line(format!(
            "  {} ({state}, {mode}{}, {} within {} -> ban {}) from {}",
            rule.name,
            crate::words::counted(rule.patterns, "pattern"),
            crate::words::counted(rule.failed_attempts, "attempt"),
            rule.request_time,
            rule.ban_time,
            rule.origin
        ));
        if !rule.description.is_empty() {
            line(format!("    {}", rule.description));
        }
        if let Some(reads) = &rule.reads {
            line(format!("    {}", reads.line));
        }
    }
    for w in &r.warnings {
        line(format!("warning: {w}"));
    }
    line("configuration OK".into());
    out
}

/// Connects to Redis once, as the daemon would, and says precisely what failed. With
/// sentinels, prints first what each of them says of the primary and its replicas.
/// What `check` says of the store after "redis: reachable": its active bans and layout,
/// and what to run when it is an earlier version's.
fn store_shape(r: &Report) -> String {
    let Some(active) = r.redis_active else {
        return String::new();
    };
    let bans = crate::words::counted(active as usize, "active ban");
    match r.redis_layout {
        None => "; an empty store (layout 2 from its first ban)".into(),
        Some(1) => format!(
            "; {bans}, layout 1, an earlier version's: once every server runs this version, \
             `pyfilter prune --compact` rewrites it in layout 2 (a third of the memory)"
        ),
        Some(n) => format!("; {bans}, layout {n}"),
    }
}

/// Connects as the daemon would and asks PING; then the store's shape, when the user may
/// read it (`None` otherwise: reachable is what matters here).
fn redis_status(
    settings: &Settings,
    sentinels: &mut Vec<String>,
) -> Result<Option<crate::store::redis::Shape>, String> {
    let c = &settings.config;
    let endpoint = crate::fleet::Endpoint::new(&c.redis).map_err(|e| format!("redis: {e}"))?;
    let url = endpoint.describe();
    let views = endpoint.sentinel_views();
    if !views.is_empty() {
        *sentinels = sentinel_report(&views, c.redis.master.as_deref().unwrap_or_default());
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
    Ok(crate::store::redis::shape(&mut conn, &c.redis.prefix).ok())
}

/// Each sentinel's answer, then whether they agree on the primary: lines to print.
fn sentinel_report(views: &[crate::fleet::SentinelView], master: &str) -> Vec<String> {
    let mut lines = vec![format!("redis sentinels for `{master}`:")];
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
                lines.push(format!(
                    "  {}: primary {primary}, replicas {replicas}; {}",
                    v.sentinel, v.quorum
                ));
            }
            Err(why) => lines.push(format!("  {}: no answer ({why})", v.sentinel)),
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
    lines.push(match counts.first() {
        Some((primary, n)) => format!(
            "redis primary: {primary} ({n} of {} sentinels agree)",
            views.len()
        ),
        None => "redis primary: unknown (no sentinel answered)".to_string(),
    });
    lines
}

/// The admin's settings, and what would stop `pyfilter admin` from starting: no user,
/// TLS files or a GeoIP database that cannot be read.
fn admin_status(settings: &Settings, warnings: &mut Vec<String>) -> String {
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
    if let Some(Err(e)) = a.geoip.as_deref().map(crate::admin::geo::Geo::open) {
        warnings.push(format!("admin: {e}"));
    }
    format!("{} ({tls}), log {}, {users}", a.listen, a.log.display())
}

/// The notifications, one line each; a webhook is named by its host alone (its path is
/// often the secret), a command by its program, which must be there.
fn notify_status(settings: &Settings, warnings: &mut Vec<String>) -> Vec<String> {
    let mut lines = Vec::new();
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
        lines.push(format!(
            "{}: {what}, on {} from {} ({rules}), timeout {}, {}",
            n.display_name(),
            on.join(" and "),
            sources.join(", "),
            format_duration(n.timeout),
            crate::words::count(n.retries, "retry", "retries")
        ));
    }
    lines
}
