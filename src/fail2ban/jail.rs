//! One enabled jail turned into a rule entry: its filter and mode, where it reads
//! (`reads.rs`), its limits where they differ from the defaults, and a note for everything
//! else it sets that pyfilter will not do.
//!
//! A value fail2ban cannot interpolate makes fail2ban skip the jail; so does this.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use super::actions::{Kind, firewall_of, kind, split_options};
use super::addresses::{Ignored, parse_list};
use super::convert::{Globals, INCREMENT_KEYS, ban_time, duration, whole};
use super::ini::Value;
use super::interpolate::InterpolationError;
use super::layers::Layered;
use super::time::seconds;
use super::{JailPlan, KnownRule, Note, RuleEntry, one_line};
use crate::config::Backend;
use crate::duration::BanTime;

/// What a jail is read against.
pub struct Context<'a> {
    pub l: &'a Layered,
    /// fail2ban's directory (for `filter.d`).
    pub dir: &'a Path,
    pub known: &'a [KnownRule],
    pub globals: &'a Globals,
    pub jail: &'a str,
}

/// A jail's entry and notes, and what it gives back to the top level.
pub struct Outcome {
    pub plan: JailPlan,
    /// Addresses its own `ignoreip` adds (pyfilter has one list for every rule).
    pub extra_ignore: Vec<IpNet>,
    /// A `recidive` jail: its ban time and find time.
    pub recidive: Option<(BanTime, Duration)>,
}

/// Keys read below, never reported as left over.
const READ: &[&str] = &[
    "enabled",
    "filter",
    "backend",
    "logpath",
    "journalmatch",
    "maxretry",
    "findtime",
    "bantime",
    "ignoreip",
    "action",
    "banaction",
    "banaction_allports",
    "port",
    "protocol",
    "chain",
    "usedns",
];

/// Parameters of fail2ban's actions: covered by the notes on the actions themselves.
const ACTION_PARAMETERS: &[&str] = &[
    "destemail",
    "sender",
    "sendername",
    "mta",
    "fail2ban_agent",
    "blocklist_de_apikey",
    "abuseipdb_apikey",
    "cfemail",
    "cfapikey",
    "cftoken",
];

pub fn convert(cx: &Context) -> Outcome {
    let mut r = Reader {
        cx,
        refs: BTreeSet::new(),
        notes: Vec::new(),
    };
    match r.run() {
        Ok((entry, extra_ignore, recidive)) => Outcome {
            plan: JailPlan {
                jail: cx.jail.to_string(),
                entry,
                notes: r.notes,
            },
            extra_ignore,
            recidive,
        },
        Err(e) => {
            r.note(format!(
                "not carried over: fail2ban cannot read it either: {e}"
            ));
            Outcome {
                plan: JailPlan {
                    jail: cx.jail.to_string(),
                    entry: None,
                    notes: r.notes,
                },
                extra_ignore: Vec::new(),
                recidive: None,
            }
        }
    }
}

type Read = (Option<RuleEntry>, Vec<IpNet>, Option<(BanTime, Duration)>);

pub(super) struct Reader<'a> {
    pub(super) cx: &'a Context<'a>,
    /// Options the values read referred to: not left over, whatever their names.
    refs: BTreeSet<String>,
    notes: Vec<Note>,
}

/// A value shown in a note: on one line, and not too long to read.
pub(super) fn shown(text: &str) -> String {
    let line = one_line(text);
    if line.chars().count() > 100 {
        format!("{}...", line.chars().take(100).collect::<String>())
    } else {
        line
    }
}

impl Reader<'_> {
    pub(super) fn get(&mut self, key: &str) -> Result<Option<Value>, InterpolationError> {
        self.cx.l.get(self.cx.jail, key, &mut self.refs)
    }

    pub(super) fn text(&mut self, key: &str) -> Result<Option<String>, InterpolationError> {
        Ok(self.get(key)?.map(|v| v.text))
    }

    /// Whether the jail's own section sets `key` (not only `[DEFAULT]`).
    fn own(&self, key: &str) -> bool {
        self.cx
            .l
            .section(self.cx.jail)
            .is_some_and(|o| o.get(key).is_some())
    }

    pub(super) fn note(&mut self, text: impl Into<String>) {
        self.notes.push(Note::jail(self.cx.jail, text));
    }

    fn run(&mut self) -> Result<Read, InterpolationError> {
        let filter = self.text("filter")?.unwrap_or_default();
        if filter.trim().is_empty() {
            self.note("not carried over: it has no filter, so nothing is read for it");
            return Ok((None, Vec::new(), None));
        }
        let (name, options) = match split_options(&filter) {
            Ok(f) => f,
            Err(e) => {
                self.note(format!("not carried over: filter {e}"));
                return Ok((None, Vec::new(), None));
            }
        };
        let mut mode = None;
        for (k, v) in options {
            if k == "mode" {
                mode = Some(v).filter(|m| !m.is_empty() && m != "normal");
            } else {
                self.note(format!(
                    "filter option {k}={} not carried over: pyfilter's rule {name} has its own patterns",
                    shown(&v)
                ));
            }
        }
        let Some(rule) = self.cx.known.iter().find(|k| k.name == name) else {
            if name == "recidive" {
                return self.recidive();
            }
            self.note(format!(
                "filter {name} not carried over: pyfilter has no rule of that name (`pyfilter check` lists its rules); write one in its rules_dir, see pyfilter-rules(5)"
            ));
            // The rest still matters to whoever writes that rule.
            let extra = self.ignore()?;
            self.actions(None)?;
            self.firewall_keys()?;
            self.refs
                .extend(["logpath", "maxretry", "findtime", "bantime"].map(String::from));
            self.leftovers(&filter);
            return Ok((None, extra, None));
        };
        let mut entry = RuleEntry {
            rule: name,
            mode,
            ..RuleEntry::default()
        };
        self.source(rule, &mut entry)?;
        self.limits(rule, &mut entry)?;
        self.increment()?;
        let extra = self.ignore()?;
        let bans = self.actions(Some(&entry.rule))?;
        self.firewall_keys()?;
        self.leftovers(&filter);
        Ok((bans.then_some(entry), extra, None))
    }

    /// `maxretry`, `findtime`, `bantime`: written when they differ from the defaults, or
    /// when the rule's file sets its own (which would win over the defaults).
    fn limits(
        &mut self,
        rule: &KnownRule,
        entry: &mut RuleEntry,
    ) -> Result<(), InterpolationError> {
        let g = self.cx.globals;
        match self.get("maxretry")? {
            Some(v) => match whole(&v.text).filter(|n| (1..=i64::from(u32::MAX)).contains(n)) {
                Some(n) if n != g.maxretry || rule.failed_attempts.is_some() => {
                    entry.failed_attempts = u32::try_from(n).ok();
                }
                Some(_) => {}
                None => self.note(format!(
                    "maxretry = {} is not a whole number from 1 ({}): left out",
                    shown(&v.text),
                    v.at
                )),
            },
            None if rule.failed_attempts.is_some() => {
                entry.failed_attempts = u32::try_from(g.maxretry).ok();
            }
            None => {}
        }
        match self.time("findtime", g.findtime)? {
            Some(s) if s != g.findtime || rule.request_time.is_some() => {
                entry.request_time = Some(duration(s));
            }
            _ => {}
        }
        if let Some(s) = self.time("bantime", g.bantime)? {
            match ban_time(s) {
                Some(b) if s != g.bantime || rule.ban_time.is_some() => entry.ban_time = Some(b),
                Some(_) => {}
                None => {
                    self.note("bantime 0 not carried over: pyfilter bans need a time (or forever)")
                }
            }
        }
        Ok(())
    }

    /// A time key in seconds: `fallback` when not set, `None` (with a note) when bad.
    fn time(&mut self, key: &str, fallback: f64) -> Result<Option<f64>, InterpolationError> {
        let Some(v) = self.get(key)? else {
            return Ok(Some(fallback));
        };
        match seconds(&v.text) {
            Ok(s) if key == "findtime" && s <= 0.0 => {
                self.note(format!(
                    "findtime = {} is not positive ({}): left out",
                    shown(&v.text),
                    v.at
                ));
                Ok(None)
            }
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                self.note(format!("{key}: {e} ({}): left out", v.at));
                Ok(None)
            }
        }
    }

    fn increment(&mut self) -> Result<(), InterpolationError> {
        let mut differs = Vec::new();
        for key in INCREMENT_KEYS {
            if !self.own(key) {
                continue;
            }
            let mine = self.text(key)?;
            let global = self
                .cx
                .globals
                .increment_keys
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.clone());
            if mine != global {
                differs.push(format!("{key} = {}", shown(&mine.unwrap_or_default())));
            }
        }
        if !differs.is_empty() {
            self.note(format!(
                "{} not carried over: pyfilter's ban_time_increment is one for every rule (from [DEFAULT])",
                differs.join(", ")
            ));
        }
        Ok(())
    }

    /// The jail's own `ignoreip`: what it adds goes to the one list pyfilter has.
    fn ignore(&mut self) -> Result<Vec<IpNet>, InterpolationError> {
        if !self.own("ignoreip") {
            return Ok(Vec::new());
        }
        let text = self.text("ignoreip")?.unwrap_or_default();
        let mut extra = Vec::new();
        for item in parse_list(&text) {
            match item {
                Ignored::Net(n)
                    if !self.cx.globals.ignore.iter().any(|g| g.contains(&n))
                        && !extra.contains(&n) =>
                {
                    extra.push(n)
                }
                Ignored::Net(_) => {}
                Ignored::Not { word, why } => {
                    self.note(format!("ignoreip {} not carried over: {why}", shown(&word)))
                }
            }
        }
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(crate::net::display_net).collect();
            self.note(format!(
                "ignoreip {} added to `ignore`, which pyfilter has one of for every rule",
                list.join(" ")
            ));
        }
        Ok(extra)
    }

    /// The jail's actions: whether one of them bans, and a note for each that does
    /// something else.
    fn actions(&mut self, rule: Option<&str>) -> Result<bool, InterpolationError> {
        let action = self.text("action")?.unwrap_or_default();
        let mut ban_actions = Vec::new();
        for key in ["banaction", "banaction_allports"] {
            if let Some(t) = self.text(key)? {
                ban_actions.push(split_options(&t).map_or(t, |(n, _)| n));
            }
        }
        let backend = self.cx.globals.firewall.unwrap_or(Backend::Iptables);
        let mut bans = false;
        let mut names = Vec::new();
        for line in action.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let name = split_options(line).map_or(line.to_string(), |(n, _)| n);
            match kind(&name, &ban_actions) {
                Kind::Ban => {
                    bans = true;
                    if firewall_of(&name) != Some(backend) {
                        self.note(format!(
                            "action {} not carried over as such: pyfilter bans with firewall.backend {backend}, for every rule",
                            shown(&name)
                        ));
                    }
                }
                Kind::Other(why) => {
                    self.note(format!("action {} not carried over: {why}", shown(&name)))
                }
            }
            names.push(name);
        }
        if !bans {
            let what = if names.is_empty() {
                "it has no action".to_string()
            } else {
                format!("none of its actions bans ({})", shown(&names.join(", ")))
            };
            match rule {
                Some(_) => self.note(format!(
                    "not carried over: {what}, so fail2ban banned nobody for this jail"
                )),
                None => self.note(format!("{what}: fail2ban banned nobody for this jail")),
            }
        }
        Ok(bans)
    }

    /// `port`, `protocol`, `chain`, `usedns`: what the firewall and the lines would have
    /// done differently.
    fn firewall_keys(&mut self) -> Result<(), InterpolationError> {
        let action = self.text("action")?.unwrap_or_default();
        // An all-ports ban action ignores `port`.
        let allports = action.contains("type=allports")
            || action
                .lines()
                .any(|l| split_options(l).is_ok_and(|(n, _)| n.ends_with("allports")));
        if let Some(port) = self.text("port")? {
            let port = port.trim().to_string();
            if !allports && !["", "0:65535", "1:65535", "all", "any"].contains(&port.as_str()) {
                self.note(format!(
                    "port {} not carried over: pyfilter bans an address on every port",
                    shown(&port)
                ));
            }
        }
        if self.own("protocol")
            && let Some(p) = self.text("protocol")?
        {
            self.note(format!(
                "protocol {} not carried over: pyfilter bans an address for every protocol",
                shown(&p)
            ));
        }
        if self.own("chain")
            && let Some(c) = self.text("chain")?
        {
            self.note(format!(
                "chain {} not carried over: pyfilter bans in its own chain, jumped to from firewall.parents (add it there)",
                shown(&c)
            ));
        }
        if let Some(u) = self.text("usedns")? {
            let word = u.trim().to_lowercase();
            // `warn` is fail2ban's default; say so when the jail chose it itself.
            if word != "no" && (self.own("usedns") || word != "warn") {
                self.note(format!(
                    "usedns = {} not carried over: pyfilter never resolves host names; a line that names a host rather than an address does not count",
                    shown(&u)
                ));
            }
        }
        Ok(())
    }

    /// The jail's own keys nothing above read nor any value referred to.
    fn leftovers(&mut self, filter: &str) {
        let Some(own) = self.cx.l.section(self.cx.jail) else {
            return;
        };
        let mut notes = Vec::new();
        for (key, value) in own.iter() {
            if READ.contains(&key)
                || INCREMENT_KEYS.contains(&key)
                || ACTION_PARAMETERS.contains(&key)
                || key.starts_with("action_")
                || self.refs.contains(key)
            {
                continue;
            }
            let v = shown(&value.text);
            let why = match key {
                "mode" => format!(
                    "its filter (`{}`) does not pass it on, so fail2ban ignores it too",
                    shown(filter)
                ),
                "failregex" | "ignoreregex" | "prefregex" | "datepattern" | "maxlines" => {
                    "pyfilter's rule has its own patterns and time formats; put a rule file of that name in rules_dir to change them (pyfilter-rules(5))".into()
                }
                "logencoding" => "pyfilter reads lines as bytes, whatever their encoding".into(),
                "logtimezone" => "pyfilter reads a time without an offset as local time".into(),
                "ignorecommand" | "ignorecache" => {
                    "pyfilter runs no command to decide; list the addresses in `ignore`".into()
                }
                "ignoreself" => "pyfilter ignores what `ignore` lists, loopback by default".into(),
                "maxmatches" => "pyfilter keeps no such count".into(),
                "skip_if_nologs" | "systemd_if_nologs" => {
                    "pyfilter follows log files that do not exist yet, and a rule with a journal reads it when none of its files exists".into()
                }
                _ => "not a jail setting pyfilter knows".into(),
            };
            notes.push(format!("{key} = {v} not carried over: {why}"));
        }
        for n in notes {
            self.note(n);
        }
    }

    /// A `recidive` jail: repeat offenders, which pyfilter handles with
    /// `ban_time_increment` rather than a rule reading its own log.
    fn recidive(&mut self) -> Result<Read, InterpolationError> {
        let bantime = self
            .time("bantime", 7.0 * 86400.0)?
            .and_then(ban_time)
            .unwrap_or(BanTime::For(Duration::from_secs(7 * 86400)));
        let findtime = self
            .time("findtime", 86400.0)?
            .filter(|s| *s > 0.0)
            .map_or(Duration::from_secs(86400), duration);
        Ok((None, Vec::new(), Some((bantime, findtime))))
    }
}
