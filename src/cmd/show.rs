//! `pyfilter show ADDRESS|NETWORK [--json]`: why an address is banned, or is not. Every
//! ban of it in the store (here and, with Redis, in the fleet) with the log line that
//! tipped it; whether the firewall holds it now and its live counts per rule (asked of the
//! running daemon; without one, the counts its last run saved); whether the ignore list
//! covers it; and how long a next ban would last (`ban_time_increment`).
//!
//! Read-only: the store is opened for reading, nothing is changed anywhere.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;

use crate::ban::Ban;
use crate::cli::UsageError;
use crate::control::Paths;
use crate::control::client::ask;
use crate::control::protocol::{CountNow, Request};
use crate::duration::{BanTime, before, format_duration};
use crate::net::{aggregate, display_net, parse_net};
use crate::settings::Settings;
use crate::store::SqliteStore;
use crate::time::{human_time, rfc3339};

use super::list::{BanJson, mark_remote, to_json};

/// The whole answer, as `--json` prints it.
#[derive(Serialize)]
struct Shown<'a> {
    /// What was asked, as pyfilter writes it.
    query: String,
    /// The ignore list's entry covering (or overlapping) it: never banned by the logs.
    ignored_by: Option<String>,
    /// Whether a daemon answered: without one, `in_firewall` is unknown (`null`) and the
    /// counts are those its last run saved.
    daemon: bool,
    /// The bans the firewall holds that cover it (empty: none); `null` when unknown.
    in_firewall: Option<Vec<String>>,
    counts: Vec<Counted>,
    next_ban: Vec<NextBan>,
    bans: Vec<BanJson<'a>>,
}

/// One rule's count of the address.
#[derive(Serialize)]
struct Counted {
    rule: String,
    attempts: u32,
    /// The rule's `failed_attempts`: the count that bans.
    failed_attempts: u32,
    /// The rule's `request_time`, in seconds: the longest gap between attempts.
    request_time_secs: u64,
    last: String,
}

/// How long the next ban by a rule would last.
#[derive(Serialize)]
struct NextBan {
    rule: String,
    /// `forever` or a duration (`2h`).
    ban_time: String,
    /// Bans of it within `ban_time_increment.window` (0 without an increment).
    earlier_bans: usize,
}

pub fn run(settings: &Settings, query: &str, json: bool) -> anyhow::Result<ExitCode> {
    let net = parse_net(query).map_err(|e| UsageError(format!("{query}: {e}")))?;
    let single = net.prefix_len() == net.max_prefix_len();
    let c = &settings.config;
    // As the decider counts and bans it: with ipv6_prefix, an IPv6 address is its prefix.
    let target = if single {
        aggregate(net.addr(), c.ipv6_prefix)
    } else {
        net
    };

    let mut store = crate::store::open_read_only(settings)?;
    let mut bans: Vec<Ban> = store
        .all_bans()?
        .into_iter()
        .filter(|b| overlaps(&b.net, &net))
        .collect();
    mark_remote(settings, &mut bans);
    bans.sort_by_key(|b| std::cmp::Reverse((b.banned_at, b.id)));

    let paths = Paths::beside(&c.sqlite.path);
    let answer = ask(&paths.socket, &Request::Show { ip: query.into() })
        .with_context(|| format!("asking the daemon on {}", paths.socket.display()))?;
    let (daemon, in_firewall, live) = match answer {
        Some(answer) => {
            let show = super::accepted(Box::new(answer))?
                .show
                .context("the daemon answered without what it knows of the address")?;
            (true, Some(show.in_firewall), show.counts)
        }
        None => (false, None, saved_counts(settings, target.addr(), single)),
    };
    let counts: Vec<Counted> = live
        .into_iter()
        .map(|n| {
            let limits = settings.rule(&n.rule).map(|r| r.limits);
            Counted {
                failed_attempts: limits.map_or(0, |l| l.failed_attempts.get()),
                request_time_secs: limits.map_or(0, |l| l.request_time.as_secs()),
                rule: n.rule,
                attempts: n.attempts,
                last: n.last,
            }
        })
        .collect();

    let now = Utc::now();
    let earlier = match c.ban_time_increment {
        Some(inc) => store.bans_since(&target, before(now, inc.window))?,
        None => 0,
    };
    // The rules counting it now and those that banned it before; else what any rule with
    // the default ban time would do.
    let mut rules: Vec<&str> = counts.iter().map(|n| n.rule.as_str()).collect();
    rules.extend(bans.iter().map(|b| b.rule.as_str()));
    let mut seen = std::collections::HashSet::new();
    rules.retain(|r| seen.insert(*r));
    let mut next_ban: Vec<NextBan> = rules
        .into_iter()
        .filter_map(|name| settings.rule(name))
        .map(|r| next(c, &r.name, r.limits.ban_time, earlier))
        .collect();
    if next_ban.is_empty() {
        next_ban.push(next(
            c,
            "any rule with the default ban_time",
            c.ban_time,
            earlier,
        ));
    }

    let shown = Shown {
        query: display_net(&net),
        ignored_by: if single {
            settings.ignore.covering(net.addr())
        } else {
            settings.ignore.overlapping(&net)
        }
        .map(display_net),
        daemon,
        in_firewall,
        counts,
        next_ban,
        bans: bans.iter().map(to_json).collect(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        serde_json::to_writer(&mut out, &shown)?;
        out.write_all(b"\n")?;
    } else {
        write_text(&mut out, &shown, &bans, &paths.socket.display().to_string())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Whether a ban of `ban` concerns the query `net`: it covers it, or lies inside it.
fn overlaps(ban: &IpNet, net: &IpNet) -> bool {
    ban.contains(net) || net.contains(ban)
}

fn next(c: &crate::config::Config, rule: &str, base: BanTime, earlier: usize) -> NextBan {
    let ban_time = match c.ban_time_increment {
        Some(inc) => inc.apply(base, earlier),
        None => base,
    };
    NextBan {
        rule: rule.to_string(),
        ban_time: ban_time.to_string(),
        earlier_bans: earlier,
    }
}

/// The counts the daemon saved at its last stop or save, when none runs to ask.
fn saved_counts(settings: &Settings, ip: IpAddr, single: bool) -> Vec<CountNow> {
    if !single {
        return Vec::new();
    }
    let now = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
    let saved =
        SqliteStore::open_read_only(&settings.config.sqlite.path).and_then(|mut s| s.counters(now));
    match saved {
        Ok(rows) => {
            let mut counts: Vec<CountNow> = rows
                .into_iter()
                .filter(|(_, addr, _)| *addr == ip)
                .map(|(rule, _, count)| CountNow {
                    rule,
                    attempts: count.attempts,
                    last: DateTime::from_timestamp(i64::from(count.last), 0)
                        .map(rfc3339)
                        .unwrap_or_default(),
                })
                .collect();
            counts.sort_by(|a, b| a.rule.cmp(&b.rule));
            counts
        }
        Err(e) => {
            log::warn!("cannot read the saved counts: {e}");
            Vec::new()
        }
    }
}

fn write_text(out: &mut impl Write, s: &Shown, bans: &[Ban], socket: &str) -> std::io::Result<()> {
    writeln!(out, "{}", s.query)?;
    match &s.ignored_by {
        Some(n) => writeln!(
            out,
            "  ignore list: covered by {n}: the logs never ban it (a ban by hand still can)"
        )?,
        None => writeln!(out, "  ignore list: not covered")?,
    }
    match &s.in_firewall {
        Some(nets) if nets.is_empty() => writeln!(out, "  firewall now: not banned")?,
        Some(nets) => writeln!(out, "  firewall now: banned, as {}", nets.join(", "))?,
        None => writeln!(
            out,
            "  firewall now: unknown, no daemon answers on {socket} (counts below: as its last run saved them)"
        )?,
    }
    if s.counts.is_empty() {
        writeln!(out, "  counting now: no rule")?;
    }
    for n in &s.counts {
        let last = DateTime::parse_from_rfc3339(&n.last)
            .map(|t| human_time(t.to_utc()))
            .unwrap_or_else(|_| n.last.clone());
        writeln!(
            out,
            "  counting now: {} {} of {} (gaps of {} at most; latest {last})",
            n.rule,
            n.attempts,
            n.failed_attempts,
            format_duration(std::time::Duration::from_secs(n.request_time_secs)),
        )?;
    }
    for b in &s.next_ban {
        let why = if b.earlier_bans > 0 {
            format!(
                " ({} within ban_time_increment's window)",
                crate::words::counted(b.earlier_bans, "earlier ban")
            )
        } else {
            String::new()
        };
        writeln!(out, "  next ban: {} for {}{why}", b.rule, b.ban_time)?;
    }
    if bans.is_empty() {
        return writeln!(out, "bans: none recorded");
    }
    writeln!(out, "bans: {}, newest first", bans.len())?;
    for ban in bans {
        let until = match (ban.lifted_at, ban.expires_at) {
            (Some(t), _) => format!(
                "lifted {}{}",
                human_time(t),
                ban.lift_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            (None, Some(t)) => format!("active until {}", human_time(t)),
            (None, None) => "active, forever".into(),
        };
        writeln!(
            out,
            "  {} {} by rule {} on {} ({}, {}), {until}",
            display_net(&ban.net),
            human_time(ban.banned_at),
            ban.rule,
            ban.server,
            ban.source.as_str(),
            crate::words::counted(ban.attempts as usize, "attempt"),
        )?;
        if !ban.reason.is_empty() {
            // Reasons are log lines: control characters are shown escaped.
            writeln!(out, "    {}", ban.reason.escape_debug())?;
        }
    }
    Ok(())
}
