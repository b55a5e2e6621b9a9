//! From fail2ban's layered jail configuration to a [`Plan`]: `[DEFAULT]`'s values become
//! pyfilter's top-level ones, each enabled jail becomes a rule entry (`jail.rs`), and the
//! jails' leftovers (addresses to ignore, `recidive`) come back to the top.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::actions::{firewall_of, split_options};
use super::addresses::{Ignored, parse_list};
use super::ini::{Location, Value};
use super::jail::{self, Outcome};
use super::layers::Layered;
use super::time::seconds;
use super::{Fail2banError, KnownRule, Note, Plan};
use crate::config::{Backend, Increment};
use crate::duration::{BanTime, format_duration};

/// fail2ban's own values when `[DEFAULT]` does not set them (its server's defaults).
const BUILTIN_MAXRETRY: i64 = 3;
const BUILTIN_FINDTIME: f64 = 600.0;
const BUILTIN_BANTIME: f64 = 600.0;
/// pyfilter needs a ceiling for longer bans where fail2ban may have none.
const DEFAULT_MAX: Duration = Duration::from_secs(30 * 86400);

/// `[DEFAULT]`'s values, read once, that every jail is compared with.
#[derive(Debug, Clone)]
pub struct Globals {
    pub maxretry: i64,
    pub findtime: f64,
    pub bantime: f64,
    pub ignore: Vec<IpNet>,
    pub ignoreself: bool,
    pub firewall: Option<Backend>,
    /// `bantime.*` as `[DEFAULT]` writes them, to tell a jail that has its own.
    pub increment_keys: Vec<(&'static str, Option<String>)>,
}

pub const INCREMENT_KEYS: &[&str] = &[
    "bantime.increment",
    "bantime.factor",
    "bantime.formula",
    "bantime.multipliers",
    "bantime.maxtime",
    "bantime.rndtime",
    "bantime.overalljails",
];

/// Reads the fail2ban configuration in `dir` and turns it into a plan; `known` are the
/// rules this pyfilter has.
pub fn plan(dir: &Path, known: &[KnownRule]) -> Result<Plan, Fail2banError> {
    let mut l = Layered::read(dir, "jail")?;
    if l.files.is_empty() {
        return Err(Fail2banError::NoJailFiles(dir.to_path_buf()));
    }
    // What fail2ban adds before reading the jails, for actions that name them.
    let here = Location {
        file: Arc::from(dir),
        line: 0,
    };
    for (key, text) in [
        ("fail2ban_version", "1.0".to_string()),
        ("fail2ban_confpath", dir.display().to_string()),
    ] {
        l.add_default(
            key,
            Value {
                text,
                at: here.clone(),
            },
        );
    }
    let purge_age = purge_age(dir)?;
    let mut plan = Plan {
        dir: dir.to_path_buf(),
        files: l.files.clone(),
        ..Plan::default()
    };
    let globals = globals(&l, &mut plan);
    increment(&globals, purge_age, &mut plan);

    let mut ignore = globals.ignore.clone();
    let mut recidive = None;
    let mut taken: Vec<(String, String)> = Vec::new();
    for name in l.jails().map(str::to_string).collect::<Vec<_>>() {
        if !enabled(&l, &name, &mut plan) {
            continue;
        }
        let Outcome {
            plan: mut jail_plan,
            extra_ignore,
            recidive: r,
        } = jail::convert(&jail::Context {
            l: &l,
            dir,
            known,
            globals: &globals,
            jail: &name,
        });
        for net in extra_ignore {
            if !ignore.contains(&net) {
                ignore.push(net);
            }
        }
        if let Some(r) = r {
            recidive.get_or_insert((name.clone(), r));
        }
        if let Some(entry) = &jail_plan.entry {
            if let Some((first, _)) = taken.iter().find(|(_, rule)| *rule == entry.rule) {
                jail_plan.notes.push(Note::jail(
                    &name,
                    format!(
                        "not carried over: its filter `{}` is also jail {first}'s, and pyfilter runs each rule once (with jail {first}'s settings)",
                        entry.rule
                    ),
                ));
                jail_plan.entry = None;
            } else {
                taken.push((name.clone(), entry.rule.clone()));
            }
        }
        plan.jails.push(jail_plan);
    }
    if let Some((name, (bantime, findtime))) = recidive {
        let note = recidive_increment(&name, bantime, findtime, &mut plan);
        if let Some(j) = plan.jails.iter_mut().find(|j| j.jail == name) {
            j.notes.extend(note);
        }
    }
    // Without ignoreip anywhere, pyfilter's default list (loopback) is fail2ban's
    // ignoreself already; with `ignoreself = false` the list is written, even empty.
    if ignore != globals.ignore || l.raw("DEFAULT", "ignoreip").is_some() || !globals.ignoreself {
        plan.ignore = Some(ignore);
    }
    plan.also_enabled = known
        .iter()
        .filter(|k| k.enabled && !taken.iter().any(|(_, r)| *r == k.name))
        .map(|k| k.name.clone())
        .collect();
    Ok(plan)
}

/// Whether a jail is enabled, as fail2ban reads `enabled` (a bad value is `false`).
fn enabled(l: &Layered, jail: &str, plan: &mut Plan) -> bool {
    match l.get(jail, "enabled", &mut BTreeSet::new()) {
        Ok(Some(v)) => match boolean(&v.text) {
            Some(b) => b,
            None => {
                plan.notes.push(Note::jail(
                    jail,
                    format!(
                        "enabled = {} is not true or false: the jail is off, as fail2ban reads it ({})",
                        v.text, v.at
                    ),
                ));
                false
            }
        },
        Ok(None) => false,
        Err(e) => {
            plan.notes
                .push(Note::jail(jail, format!("not carried over: {e}")));
            false
        }
    }
}

/// Python's `getboolean`.
pub fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Python's `int()` of a value.
pub fn whole(text: &str) -> Option<i64> {
    text.trim().replace('_', "").parse().ok()
}

/// A positive number of seconds as a pyfilter duration (whole seconds from one up).
pub fn duration(secs: f64) -> Duration {
    if secs >= 1.0 {
        Duration::from_secs(secs.round() as u64)
    } else {
        Duration::from_secs_f64(secs.max(0.001))
    }
}

/// A fail2ban `bantime` as pyfilter's: negative is forever, zero is no ban at all.
pub fn ban_time(secs: f64) -> Option<BanTime> {
    if secs < 0.0 {
        Some(BanTime::Forever)
    } else if secs == 0.0 {
        None
    } else {
        Some(BanTime::For(duration(secs)))
    }
}

/// A `[DEFAULT]` value, interpolated; a bad one becomes a note.
fn default_value(l: &Layered, key: &str, plan: &mut Plan) -> Option<Value> {
    match l.get("DEFAULT", key, &mut BTreeSet::new()) {
        Ok(v) => v,
        Err(e) => {
            plan.notes
                .push(Note::global(format!("not carried over: {e}")));
            None
        }
    }
}

fn globals(l: &Layered, plan: &mut Plan) -> Globals {
    let mut g = Globals {
        maxretry: BUILTIN_MAXRETRY,
        findtime: BUILTIN_FINDTIME,
        bantime: BUILTIN_BANTIME,
        ignore: Vec::new(),
        ignoreself: true,
        firewall: None,
        increment_keys: Vec::new(),
    };
    if let Some(v) = default_value(l, "maxretry", plan) {
        match whole(&v.text).filter(|n| (1..=i64::from(u32::MAX)).contains(n)) {
            Some(n) => g.maxretry = n,
            None => plan.notes.push(Note::global(format!(
                "maxretry = {} is not a whole number from 1 ({}): fail2ban's own {BUILTIN_MAXRETRY} used",
                v.text, v.at
            ))),
        }
    }
    for (key, slot) in [("findtime", &mut g.findtime), ("bantime", &mut g.bantime)] {
        if let Some(v) = default_value(l, key, plan) {
            match seconds(&v.text) {
                Ok(s) if s != 0.0 && (key == "bantime" || s > 0.0) => *slot = s,
                Ok(_) => plan.notes.push(Note::global(format!(
                    "{key} = {} is not a usable time ({}): fail2ban's own 10m used",
                    v.text, v.at
                ))),
                Err(e) => plan.notes.push(Note::global(format!(
                    "{key}: {e} ({}): fail2ban's own 10m used",
                    v.at
                ))),
            }
        }
    }
    plan.failed_attempts = u32::try_from(g.maxretry).ok();
    plan.request_time = Some(duration(g.findtime));
    plan.ban_time = ban_time(g.bantime);
    plan.origins.push((
        "failed_attempts",
        format!(
            "maxretry {}, findtime {}, bantime {}",
            g.maxretry,
            format_duration(duration(g.findtime)),
            plan.ban_time.map_or("?".into(), |b| b.to_string())
        ),
    ));

    if let Some(v) = default_value(l, "ignoreip", plan) {
        for item in parse_list(&v.text) {
            match item {
                Ignored::Net(n) if !g.ignore.contains(&n) => g.ignore.push(n),
                Ignored::Net(_) => {}
                Ignored::Not { word, why } => plan.notes.push(Note::global(format!(
                    "ignoreip {word} not carried over: {why}"
                ))),
            }
        }
        plan.origins
            .push(("ignore", format!("ignoreip {}", v.text)));
    }
    let ignoreself = default_value(l, "ignoreself", plan)
        .and_then(|v| boolean(&v.text))
        .unwrap_or(true);
    g.ignoreself = ignoreself;
    if ignoreself {
        // fail2ban ignores this machine's own addresses besides the list; a list in
        // pyfilter.yml replaces pyfilter's default (loopback), so loopback is kept in it.
        for lo in ["127.0.0.0/8", "::1/128"] {
            let lo: IpNet = lo.parse().expect("a valid network");
            if !g.ignore.iter().any(|n| n.contains(&lo.addr())) {
                g.ignore.push(lo);
            }
        }
        plan.notes.push(Note::global(
            "ignoreself: pyfilter ignores loopback (127.0.0.0/8, ::1), not this machine's other addresses; add them to `ignore` if it connects to itself through them",
        ));
    }

    if let Some(v) = default_value(l, "banaction", plan) {
        let name = split_options(&v.text).map_or(v.text.clone(), |(n, _)| n);
        match firewall_of(&name) {
            Some(b) => {
                g.firewall = Some(b);
                plan.firewall = Some(b);
                plan.origins.push(("firewall", format!("banaction {name}")));
            }
            None => plan.notes.push(Note::global(format!(
                "banaction {name} not carried over: pyfilter bans with its own firewall backend (firewall.backend: iptables, ipset or nftables; iptables unless set)"
            ))),
        }
    }
    plan.notes.push(Note::global(
        "pyfilter bans an address on every port and protocol, in its own chain, set or table: fail2ban's port, protocol and chain settings do not apply",
    ));
    if let Some(v) = default_value(l, "usedns", plan) {
        let word = v.text.trim().to_lowercase();
        if word != "warn" && word != "no" {
            plan.notes.push(Note::global(format!(
                "usedns = {} not carried over: pyfilter never resolves host names; a line that names a host rather than an address does not count",
                v.text
            )));
        }
    }
    if let Some(v) = default_value(l, "ignorecommand", plan)
        && !v.text.trim().is_empty()
    {
        plan.notes.push(Note::global(format!(
            "ignorecommand {} not carried over: pyfilter runs no command to decide; list the addresses in `ignore`",
            v.text
        )));
    }
    for key in INCREMENT_KEYS {
        let text = default_value(l, key, plan).map(|v| v.text);
        g.increment_keys.push((key, text));
    }
    g
}

/// `bantime.increment` and its settings in `[DEFAULT]`, as `ban_time_increment`.
fn increment(g: &Globals, purge_age: Option<Duration>, plan: &mut Plan) {
    let value = |key: &str| {
        g.increment_keys
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.clone())
    };
    let on = value("bantime.increment").is_some_and(|v| boolean(&v) == Some(true));
    if !on {
        return;
    }
    let base = plan.ban_time;
    let Some(BanTime::For(base)) = base else {
        plan.notes.push(Note::global(
            "bantime.increment not carried over: the ban time is forever already",
        ));
        return;
    };
    let f = match value("bantime.factor").map(|t| t.trim().parse::<f64>()) {
        None => 1.0,
        Some(Ok(f)) if f.is_finite() && f > 0.0 => f,
        Some(_) => {
            plan.notes.push(Note::global(
                "bantime.factor is not a positive number: 1 used, as fail2ban's default",
            ));
            1.0
        }
    };
    // fail2ban's default formula: ban time × factor × 2^n for an address banned n times
    // before. pyfilter's: ban time × factor^n. The same for factor 1; otherwise the first
    // repeat is the same and later ones grow faster.
    let factor = 2.0 * f;
    if factor <= 1.0 {
        plan.notes.push(Note::global(format!(
            "bantime.increment not carried over: bantime.factor {f} makes repeat bans shorter, which pyfilter's ban_time_increment cannot"
        )));
        return;
    }
    if f != 1.0 {
        plan.notes.push(Note::global(format!(
            "bantime.factor {f}: a repeat ban is × {factor}, then × {factor}^n (fail2ban: × {f} × 2^n); the same for the first repeat, longer after"
        )));
    }
    let max = match value("bantime.maxtime").map(|t| seconds(&t)) {
        Some(Ok(s)) if s > 0.0 => duration(s),
        Some(_) => {
            plan.notes.push(Note::global(format!(
                "bantime.maxtime is not a positive time: max {} used",
                format_duration(DEFAULT_MAX.max(base))
            )));
            DEFAULT_MAX.max(base)
        }
        None => {
            plan.notes.push(Note::global(format!(
                "no bantime.maxtime: fail2ban sets no ceiling, pyfilter needs one: max {} (change it at will)",
                format_duration(DEFAULT_MAX.max(base))
            )));
            DEFAULT_MAX.max(base)
        }
    };
    for key in ["bantime.formula", "bantime.multipliers", "bantime.rndtime"] {
        if let Some(v) = value(key).filter(|v| !v.trim().is_empty()) {
            plan.notes.push(Note::global(format!(
                "{key} = {v} not carried over: pyfilter's repeat bans are ban_time × factor^n, up to max"
            )));
        }
    }
    if value("bantime.overalljails").is_none_or(|v| boolean(&v) != Some(true)) {
        plan.notes.push(Note::global(
            "bantime.overalljails is off: fail2ban counted earlier bans of the same jail only, pyfilter counts earlier bans by any rule",
        ));
    }
    plan.ban_time_increment = Some(Increment {
        factor,
        max: max.max(base),
        window: purge_age.unwrap_or(Duration::from_secs(30 * 86400)),
    });
    plan.origins.push((
        "ban_time_increment",
        match purge_age {
            Some(_) => "bantime.increment; window: dbpurgeage of fail2ban.conf".to_string(),
            None => "bantime.increment".to_string(),
        },
    ));
}

/// The `recidive` jail, as `ban_time_increment` when `bantime.increment` did not set it;
/// the note that says so.
fn recidive_increment(
    jail: &str,
    bantime: BanTime,
    findtime: Duration,
    plan: &mut Plan,
) -> Option<Note> {
    if plan.ban_time_increment.is_some() {
        return Some(Note::jail(
            jail,
            "not carried over: repeat offenders are pyfilter's ban_time_increment, already set from bantime.increment",
        ));
    }
    let Some(BanTime::For(base)) = plan.ban_time else {
        return Some(Note::jail(
            jail,
            "not carried over: the ban time is forever already",
        ));
    };
    let max = match bantime {
        BanTime::For(d) => d,
        BanTime::Forever => Duration::from_secs(365 * 86400),
    }
    .max(base);
    plan.ban_time_increment = Some(Increment {
        factor: 2.0,
        max,
        window: findtime,
    });
    plan.origins
        .push(("ban_time_increment", format!("jail {jail}")));
    Some(Note::jail(
        jail,
        format!(
            "carried over as ban_time_increment, not as a rule: an address banned again within {} gets twice the ban time for each earlier ban, up to {}",
            format_duration(findtime),
            format_duration(max)
        ),
    ))
}

/// `dbpurgeage` of `fail2ban.conf` (how long fail2ban remembers bans, so how far back it
/// counts repeat offenders).
fn purge_age(dir: &Path) -> Result<Option<Duration>, Fail2banError> {
    let l = Layered::read(dir, "fail2ban")?;
    let v = l
        .get("Definition", "dbpurgeage", &mut BTreeSet::new())
        .ok()
        .flatten();
    Ok(v.and_then(|v| seconds(&v.text).ok())
        .filter(|s| *s > 0.0)
        .map(duration))
}
