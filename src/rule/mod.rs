//! Rules compiled: the matcher that finds an attempt in a line.
//!
//! Each pattern is `prefix + pattern` with `<IP>` expanded (see `pattern`), matched against
//! one whole line as bytes, so invalid UTF-8 in a line never stops matching.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local};
use regex::bytes::{Regex, RegexBuilder};
use regex_automata::nfa::thompson::{
    self, WhichCaptures, backtrack, backtrack::BoundedBacktracker,
};
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input, meta, util::syntax};

use crate::config::JournalSpec;
use crate::duration::BanTime;
use crate::rule::timestamp::{TimeCache, TimeFormat, TimeFormats};
use pattern::IP_GROUP;

#[cfg(test)]
mod cases;
mod file;
pub mod pattern;
mod set;
pub mod timestamp;

pub use file::{Origin, RuleFile, load_sources};
pub use set::compile_rules;

/// When an IP is banned: the three numbers, after config overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub failed_attempts: NonZeroU32,
    pub request_time: Duration,
    pub ban_time: BanTime,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    /// For lines too long for the backtracker (rare: it takes lines of a few KiB).
    regex: Regex,
    /// Finds the groups inside a match already found, without searching again.
    backtrack: BoundedBacktracker,
    /// Capture group index of the address.
    ip_group: usize,
    /// Capture group index of the `time` group, if the pattern has one.
    time_group: Option<usize>,
    instant: bool,
}

/// A rule ready to match lines.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub description: String,
    pub enabled: bool,
    pub log_files: Vec<String>,
    pub journal: Option<JournalSpec>,
    pub time_format: TimeFormats,
    pub limits: Limits,
    pub origin: Origin,
    /// All patterns in one automaton without captures: one pass per line says whether
    /// any pattern matches and which. Only then does that one pattern's regex run for
    /// its captures, which costs far more per byte.
    which: meta::Regex,
    patterns: Vec<Pattern>,
}

/// Per-thread working memory for matching one rule.
#[derive(Debug, Clone)]
pub struct Scratch {
    cache: meta::Cache,
    backtrack: Vec<(backtrack::Cache, Captures)>,
    locs: Vec<regex::bytes::CaptureLocations>,
    times: TimeCache,
}

/// What a line yielded for a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The address, or `None` when the captured text is no valid address.
    pub ip: Option<IpAddr>,
    pub instant: bool,
    /// Where the time is written: the `time` group when the pattern has one, else the line.
    pub time_text: &'a [u8],
}

/// A matched line, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub ip: IpAddr,
    pub at: DateTime<FixedOffset>,
    pub instant: bool,
}

/// Why a matching line cannot be used; such lines are counted and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The captured text is not a valid address.
    BadAddress,
    /// The line's time cannot be read with the rule's format.
    BadTime,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Skip::BadAddress => "the captured address is not a valid IP address",
            Skip::BadTime => "the time on the line cannot be read",
        })
    }
}

/// Longest compiled regex accepted; protects against a pathological rule file.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

impl Rule {
    /// Compiles a rule file. `limits` are the effective numbers for it.
    pub fn compile(file: RuleFile, origin: Origin, limits: Limits) -> Result<Rule, String> {
        if file.name.is_empty()
            || !file
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "rule name `{}` must be letters, digits, `-` or `_`",
                file.name
            ));
        }
        if file.patterns.is_empty() {
            return Err("a rule needs at least one pattern".into());
        }
        if let Some(journal) = &file.journal {
            check_journal_matches(&journal.matches)?;
        }
        let time_format = match &file.time_format {
            None => TimeFormats::new(vec![TimeFormat::Auto])?,
            Some(t) => TimeFormats::new(
                t.items()
                    .into_iter()
                    .map(TimeFormat::parse)
                    .collect::<Result<_, _>>()?,
            )?,
        };
        let mut sources = Vec::with_capacity(file.patterns.len());
        let mut patterns = Vec::with_capacity(file.patterns.len());
        for (i, spec) in file.patterns.iter().enumerate() {
            let source = expand_lists(
                &format!("{}{}", file.prefix, spec.regex),
                &file.urls,
                &file.statuses,
            )
            .map_err(|e| format!("patterns[{i}] `{}`: {e}", spec.regex))?;
            let expanded = pattern::expand(&source)
                .map_err(|e| format!("patterns[{i}] `{}`: {e}", spec.regex))?;
            let regex =
                build(&expanded).map_err(|e| format!("patterns[{i}] `{}`: {e}", spec.regex))?;
            let group = |name: &str| regex.capture_names().position(|n| n == Some(name));
            let ip_group = group(IP_GROUP).expect("expand adds the address group");
            let time_group = group("time");
            let backtrack = BoundedBacktracker::builder()
                .syntax(syntax_config())
                .thompson(
                    thompson::Config::new()
                        .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                        .utf8(false),
                )
                .build(&expanded)
                .map_err(|e| format!("patterns[{i}] `{}`: {e}", spec.regex))?;
            sources.push(expanded);
            patterns.push(Pattern {
                regex,
                backtrack,
                ip_group,
                time_group,
                instant: spec.instant,
            });
        }
        let which = meta::Regex::builder()
            .syntax(syntax_config())
            .configure(
                meta::Config::new()
                    .which_captures(WhichCaptures::Implicit)
                    .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                    .utf8_empty(false),
            )
            .build_many(&sources)
            .map_err(|e| format!("patterns combined: {e}"))?;
        Ok(Rule {
            name: Arc::from(file.name.as_str()),
            description: file.description,
            enabled: file.enabled,
            log_files: file.log_files,
            journal: file.journal,
            time_format,
            limits,
            origin,
            which,
            patterns,
        })
    }

    /// How many patterns the rule has.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Scratch space for `find`, one per thread that matches.
    pub fn scratch(&self) -> Scratch {
        Scratch {
            cache: self.which.create_cache(),
            backtrack: self
                .patterns
                .iter()
                .map(|p| (p.backtrack.create_cache(), p.backtrack.create_captures()))
                .collect(),
            locs: self
                .patterns
                .iter()
                .map(|p| p.regex.capture_locations())
                .collect(),
            times: TimeCache::default(),
        }
    }

    /// The pattern that matches `line`, if any.
    pub fn find<'a>(&self, line: &'a [u8], scratch: &mut Scratch) -> Option<Hit<'a>> {
        let m = self
            .which
            .search_with(&mut scratch.cache, &Input::new(line))?;
        let index = m.pattern().as_usize();
        let pattern = &self.patterns[index];
        // Which pattern matched, and where, is known: only its groups are left to find,
        // anchored on that span.
        let (ip, time) = if m.range().len() <= pattern.backtrack.max_haystack_len() {
            let (cache, caps) = &mut scratch.backtrack[index];
            let input = Input::new(line).range(m.range()).anchored(Anchored::Yes);
            pattern.backtrack.try_search(cache, &input, caps).ok()?;
            let span =
                |g: Option<usize>| g.and_then(|g| caps.get_group(g)).map(|s| (s.start, s.end));
            (span(Some(pattern.ip_group)), span(pattern.time_group))
        } else {
            let locs = &mut scratch.locs[index];
            pattern
                .regex
                .captures_read_at(locs, &line[..m.end()], m.start())?;
            (
                locs.get(pattern.ip_group),
                pattern.time_group.and_then(|g| locs.get(g)),
            )
        };
        let ip = ip.and_then(|(start, end)| pattern::parse_ip(&line[start..end]));
        let time_text = match time {
            Some((start, end)) => &line[start..end],
            None => line,
        };
        Some(Hit {
            ip,
            instant: pattern.instant,
            time_text,
        })
    }

    /// Everything a line says for this rule: `None` when no pattern matches.
    pub fn examine(
        &self,
        line: &[u8],
        reference: DateTime<Local>,
        scratch: &mut Scratch,
    ) -> Option<Result<Found, Skip>> {
        let hit = self.find(line, scratch)?;
        let Some(ip) = hit.ip else {
            return Some(Err(Skip::BadAddress));
        };
        let Some(at) = self
            .time_format
            .read_cached(hit.time_text, reference, &mut scratch.times)
        else {
            return Some(Err(Skip::BadTime));
        };
        Some(Ok(Found {
            ip,
            at,
            instant: hit.instant,
        }))
    }

    /// One regex equivalent to the rule (for comparing with grep-like tools).
    pub fn combined_regex(&self) -> String {
        let alternatives: Vec<String> = self
            .patterns
            .iter()
            .map(|p| format!("(?:{})", strip_groups(&p.regex)))
            .collect();
        alternatives.join("|")
    }
}

/// Expands `<URL>` and `<STATUS>` to alternations of the rule's `urls` (matched
/// literally, so a URL's dots and question marks mean themselves) and `statuses`.
/// Matches become journalctl arguments: a field name, `=`, a value, never an option; or
/// `+` between two of them, journalctl's "or" (fail2ban's `journalmatch` uses it).
fn check_journal_matches(matches: &[String]) -> Result<(), String> {
    if let Some(bad) = matches.iter().find(|m| {
        *m != "+"
            && m.split_once('=').is_none_or(|(field, _)| {
                field.is_empty()
                    || !field
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
    }) {
        return Err(format!(
            "journal.match `{bad}` is not FIELD=value (an upper-case journal field, like _SYSTEMD_UNIT=ssh.service) or `+`"
        ));
    }
    let plus = |m: Option<&String>| m.is_some_and(|m| m == "+");
    if plus(matches.first())
        || plus(matches.last())
        || matches.windows(2).any(|w| w[0] == "+" && w[1] == "+")
    {
        return Err("journal.match: `+` goes between two matches".into());
    }
    Ok(())
}

fn expand_lists(pattern: &str, urls: &[String], statuses: &[u16]) -> Result<String, String> {
    let mut out = pattern.to_string();
    if out.contains("<URL>") {
        if urls.is_empty() {
            return Err("uses <URL> but the rule lists no `urls`".into());
        }
        let alts: Vec<String> = urls.iter().map(|u| regex::escape(u)).collect();
        out = out.replace("<URL>", &format!("(?:{})", alts.join("|")));
    }
    if out.contains("<STATUS>") {
        if statuses.is_empty() {
            return Err("uses <STATUS> but the rule lists no `statuses`".into());
        }
        let alts: Vec<String> = statuses.iter().map(u16::to_string).collect();
        out = out.replace("<STATUS>", &format!("(?:{})", alts.join("|")));
    }
    Ok(out)
}

/// Byte semantics, as in `build`.
fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

fn build(pattern: &str) -> Result<Regex, regex::Error> {
    // Byte semantics: `.` and `\S` also match bytes that are not UTF-8, so an attacker
    // cannot dodge a pattern with one invalid byte in a user name.
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// The regex source with named groups made anonymous, so alternatives can be joined
/// without duplicate group names.
fn strip_groups(regex: &Regex) -> String {
    rename_groups(regex, |_| "(".into())
}

fn rename_groups(regex: &Regex, to: impl Fn(&str) -> String) -> String {
    let mut src = regex.as_str().to_string();
    for name in regex.capture_names().flatten() {
        let new = to(name);
        src = src
            .replace(&format!("(?P<{name}>"), &new)
            .replace(&format!("(?<{name}>"), &new);
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            failed_attempts: NonZeroU32::new(3).unwrap(),
            request_time: Duration::from_secs(600),
            ban_time: BanTime::Forever,
        }
    }

    fn rule(yaml: &str) -> Result<Rule, String> {
        let file: RuleFile = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        Rule::compile(file, Origin::Embedded("test.yml"), limits())
    }

    #[test]
    fn finds_the_address_and_instant_flag() {
        let r = rule(
            "name: t\nprefix: '^\\S+ '\npatterns:\n  - 'bad from <IP>$'\n  - { regex: 'evil <IP>$', instant: true }\n",
        )
        .unwrap();
        let mut sc = r.scratch();
        let hit = r.find(b"host bad from 192.0.2.9", &mut sc).unwrap();
        assert_eq!(hit.ip, Some("192.0.2.9".parse().unwrap()));
        assert!(!hit.instant);
        assert!(r.find(b"host evil 2001:db8::2", &mut sc).unwrap().instant);
        assert!(r.find(b"host good from 192.0.2.9", &mut sc).is_none());
    }

    #[test]
    fn invalid_utf8_lines_still_match() {
        let r = rule("name: t\npatterns: ['user \\S* from <IP>$']\n").unwrap();
        let hit = r
            .find(b"user \xff\xfe from 192.0.2.1", &mut r.scratch())
            .unwrap();
        assert_eq!(hit.ip, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn time_group_selects_the_time_text() {
        let r = rule("name: t\npatterns: ['^<IP> \\[(?P<time>[^\\]]+)\\]']\n").unwrap();
        let hit = r
            .find(
                b"192.0.2.1 [10/Oct/2000:13:55:36 -0700] GET",
                &mut r.scratch(),
            )
            .unwrap();
        assert_eq!(hit.time_text, b"10/Oct/2000:13:55:36 -0700");
    }

    #[test]
    fn bad_rules_say_which_pattern() {
        assert!(
            rule("name: t\npatterns: ['no address']\n")
                .unwrap_err()
                .contains("patterns[0]")
        );
        assert!(
            rule("name: t\npatterns: ['(<IP>']\n")
                .unwrap_err()
                .contains("patterns[0]")
        );
        assert!(
            rule("name: 'a b'\npatterns: ['<IP>']\n")
                .unwrap_err()
                .contains("rule name")
        );
        assert!(
            rule("name: t\npatterns: []\n")
                .unwrap_err()
                .contains("at least one")
        );
        assert!(
            rule("name: t\nbogus: 1\npatterns: ['<IP>']\n")
                .unwrap_err()
                .contains("unknown field `bogus`")
        );
        assert!(
            rule("name: t\npatterns: [{regex: '<IP>', instnt: true}]\n")
                .unwrap_err()
                .contains("unknown field `instnt`")
        );
    }

    #[test]
    fn journal_matches_are_fields_or_a_plus_between_them() {
        let with = |m: &str| {
            rule(&format!(
                "name: t\njournal: {{ match: {m} }}\npatterns: ['x <IP>$']\n"
            ))
        };
        assert!(with("[_SYSTEMD_UNIT=sshd.service, '+', _COMM=sshd]").is_ok());
        assert!(with("[_COMM=sshd, _COMM=sshd-session]").is_ok());
        for bad in [
            "['--since=now']",
            "[_comm=sshd]",
            "['+', _COMM=a]",
            "[_COMM=a, '+']",
            "[_COMM=a, '+', '+', _COMM=b]",
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn embedded_rules_all_compile() {
        let sources = load_sources(std::path::Path::new("/nonexistent")).unwrap();
        assert!(sources.iter().any(|s| s.file.name == "sshd"));
        for s in sources {
            Rule::compile(s.file, s.origin, limits()).unwrap();
        }
    }
}
