//! Rules compiled: each rule's patterns for the mode in force, ready for the automaton
//! that reads a file for all its rules (`automaton.rs`).
//!
//! A rule's patterns describe a program's message, after the header that `header.rs`
//! reads for every rule, or (`own_format`) the whole lines of a service's own log. Each is
//! matched anchored at the start of what it describes, `<IP>` expanded (`pattern.rs`), as
//! bytes, so invalid UTF-8 in a line never stops matching.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use regex::bytes::{Regex, RegexBuilder};
use regex_automata::nfa::thompson::{self, backtrack::BoundedBacktracker};
use regex_automata::util::syntax;

use crate::config::JournalSpec;
use crate::duration::BanTime;
use crate::rule::timestamp::{TimeFormat, TimeFormats};
use pattern::IP_GROUP;

pub mod automaton;
#[cfg(test)]
mod cases;
mod error;
mod file;
pub mod header;
pub mod pattern;
mod set;
pub mod timestamp;

pub use automaton::{Automaton, Scratch};
pub use error::RuleError;
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
    /// The expanded source, for the automaton.
    source: String,
    /// For texts too long for the backtracker (rare: it takes lines of a few KiB),
    /// anchored at the start: built from `source` when first needed (`long_text_regex`),
    /// since most patterns never meet such a text and a built regex is most of a
    /// compiled pattern's memory.
    regex: OnceLock<Regex>,
    /// Finds the groups inside a text the automaton said matches.
    backtrack: BoundedBacktracker,
    /// Capture group index of the address; `None` for an `ignore` pattern, or a pattern
    /// of a session whose address an earlier line gave (`automaton.rs`).
    ip_group: Option<usize>,
    /// Capture group index of the `time` group, if the pattern has one.
    time_group: Option<usize>,
    /// Capture group index of the `session` group: the pattern joins the lines of one
    /// session (a connection, a message), see `automaton.rs`.
    session_group: Option<usize>,
    /// The session is the process id of the line's syslog tag (`session: pid`).
    session_pid: bool,
    /// Records its line's session instead of reporting it.
    remember: bool,
    /// Drops its line's session instead of reporting it.
    forget: bool,
    instant: bool,
    /// A match means "not an attempt".
    ignore: bool,
}

/// Name of the capture group that joins the lines of one session.
pub const SESSION_GROUP: &str = "session";

/// A rule ready to match lines, in the mode the configuration chose.
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
    /// The rule's modes, the default first; empty when it has none.
    pub modes: Vec<String>,
    /// The mode in force (`None` when the rule has no modes).
    pub mode: Option<String>,
    /// Full-match expressions of the programs whose messages the patterns describe.
    programs: Vec<String>,
    untagged: bool,
    own_format: bool,
    patterns: Vec<Pattern>,
    /// Let go (`release`): the patterns are gone.
    released: bool,
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
    /// Compiles a rule file in `mode` (its default mode when `None`). `limits` are the
    /// effective numbers for it.
    pub fn compile(
        file: RuleFile,
        origin: Origin,
        limits: Limits,
        mode: Option<&str>,
    ) -> Result<Rule, RuleError> {
        if file.name.is_empty()
            || !file
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(RuleError::BadName(file.name));
        }
        if file.patterns.is_empty() {
            return Err(RuleError::NoPattern);
        }
        if let Some(journal) = &file.journal {
            check_journal_matches(&journal.matches)?;
        }
        let own_format = file.own_format || file.programs.is_empty();
        if file.untagged && file.programs.is_empty() {
            return Err(RuleError::UntaggedWithoutPrograms);
        }
        let time_groups = file
            .patterns
            .iter()
            .any(|p| p.regex.contains("(?P<time>") || p.regex.contains("(?<time>"))
            || file.prefix.contains("(?P<time>")
            || file.prefix.contains("(?<time>");
        if file.time_format.is_some() && !own_format && !time_groups {
            return Err(RuleError::TimeFormatWithoutOwnFormat);
        }
        let time_format = match &file.time_format {
            None => TimeFormats::auto(),
            Some(t) => TimeFormats::new(
                t.items()
                    .into_iter()
                    .map(TimeFormat::parse)
                    .collect::<Result<_, _>>()?,
            )?,
        };
        for (index, program) in file.programs.iter().enumerate() {
            syntax::parse(program).map_err(|e| RuleError::Program {
                index,
                program: program.clone(),
                reason: e.to_string(),
            })?;
        }
        let mode = select_mode(&file, mode)?;
        let mut patterns = Vec::with_capacity(file.patterns.len());
        for (index, spec) in file.patterns.iter().enumerate() {
            let in_mode =
                spec.modes.is_empty() || mode.as_ref().is_some_and(|m| spec.modes.contains(m));
            if !in_mode {
                continue;
            }
            patterns.push(compile_pattern(&file, index, spec)?);
        }
        Ok(Rule {
            name: Arc::from(file.name.as_str()),
            description: file.description,
            enabled: file.enabled,
            log_files: file.log_files,
            journal: file.journal,
            time_format,
            limits,
            origin,
            modes: file.modes,
            mode,
            programs: file.programs,
            untagged: file.untagged,
            own_format,
            patterns,
            released: false,
        })
    }

    /// Lets go of the compiled patterns, most of a rule's memory, keeping what the rule
    /// is (name, files, journal, numbers): for a rule the daemon does not run now. It is
    /// compiled again from its file when it must run; an automaton refuses it meanwhile.
    pub fn release(&mut self) {
        self.patterns = Vec::new();
        self.released = true;
    }

    /// Whether the patterns are there (not `release`d).
    pub fn is_compiled(&self) -> bool {
        !self.released
    }

    /// How many patterns the rule has in its mode.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Whether the patterns read programs' messages after a syslog header.
    pub fn reads_messages(&self) -> bool {
        !self.programs.is_empty()
    }

    /// The programs whose messages the rule reads (full-match expressions).
    pub fn programs(&self) -> &[String] {
        &self.programs
    }

    /// One regex for the lines of its files that can count, header included (for
    /// comparing with grep-like tools): the patterns that report, not those that only
    /// say a line is no attempt (`ignore`) or keep or drop a session (`remember`,
    /// `forget`). A line a session's pattern reports counts only when its session was
    /// marked before, which no single regex can say.
    pub fn combined_regex(&self) -> String {
        let alternatives: Vec<String> = self
            .patterns
            .iter()
            .filter(|p| !p.ignore && !p.remember && !p.forget)
            .map(|p| format!("(?:{})", strip_groups(&p.source).trim_start_matches('^')))
            .collect();
        let body = alternatives.join("|");
        let mut forms = Vec::new();
        if self.reads_messages() {
            let programs: Vec<String> = self.programs.iter().map(|p| format!("(?:{p})")).collect();
            forms.push(format!(
                r"^(?:<\d{{1,3}}>)?(?:[A-Z][a-z]{{2}} +\d{{1,2}} (?:\d{{4}} )?\d{{2}}:\d{{2}}:\d{{2}}(?:[.,]\d+)?|\d{{4}}-\d{{2}}-\d{{2}}[T ]\d{{2}}:\d{{2}}:\d{{2}}(?:[.,]\d+)?(?:Z|[+-]\d{{2}}(?::?\d{{2}})?)?|@[0-9a-f]{{24}}) +(?:\S+ +)?(?:{})(?:\([^()\s]*\))?(?:\[\d+\])?: *(?:\[ID \d+ [\w.]+\] *)?(?:message repeated \d+ times: \[ *)?(?:{body})",
                programs.join("|")
            ));
        }
        if self.own_format {
            forms.push(format!("^(?:{body})"));
        }
        forms.join("|")
    }
}

/// The mode in force: the one asked for, which must be one of the rule's, else the first.
/// Also checks that every pattern's modes are declared and that no mode is empty.
fn select_mode(file: &RuleFile, asked: Option<&str>) -> Result<Option<String>, RuleError> {
    for (i, m) in file.modes.iter().enumerate() {
        if file.modes[..i].contains(m) {
            return Err(RuleError::DuplicateMode(m.clone()));
        }
    }
    for (index, spec) in file.patterns.iter().enumerate() {
        if let Some(bad) = spec.modes.iter().find(|m| !file.modes.contains(m)) {
            return Err(RuleError::PatternMode {
                index,
                mode: bad.clone(),
                known: file.modes.clone(),
            });
        }
    }
    for m in &file.modes {
        if !file
            .patterns
            .iter()
            .any(|p| p.modes.is_empty() || p.modes.contains(m))
        {
            return Err(RuleError::EmptyMode(m.clone()));
        }
    }
    match asked {
        None => Ok(file.modes.first().cloned()),
        Some(m) if file.modes.iter().any(|k| k == m) => Ok(Some(m.to_string())),
        Some(m) => Err(RuleError::UnknownMode {
            rule: file.name.clone(),
            mode: m.to_string(),
            known: file.modes.clone(),
        }),
    }
}

fn compile_pattern(
    file: &RuleFile,
    index: usize,
    spec: &file::PatternSpec,
) -> Result<Pattern, RuleError> {
    let regex = spec.regex.as_str();
    let bad = |reason: String| RuleError::Pattern {
        index,
        regex: regex.to_string(),
        reason,
    };
    let source = expand_lists(
        &format!("{}{regex}", file.prefix),
        &file.urls,
        &file.statuses,
    )
    .map_err(bad)?;
    let placeholder = |source| RuleError::Placeholder {
        index,
        regex: regex.to_string(),
        source,
    };
    // A pattern of a session may leave the address to the line that opened it.
    let session_pid = spec.session == Some(file::SessionKey::Pid);
    let session = session_pid
        || source.contains(&format!("(?P<{SESSION_GROUP}>"))
        || source.contains(&format!("(?<{SESSION_GROUP}>"));
    let expanded = match pattern::expand(&source) {
        // An ignore pattern names no address.
        Err(pattern::PatternError::NoPlaceholder) if spec.ignore => source.clone(),
        Err(pattern::PatternError::NoPlaceholder) if session => {
            if source.contains("(?P<ip>") || source.contains("(?<ip>") {
                return Err(placeholder(pattern::PatternError::ReservedGroup));
            }
            source.clone()
        }
        other => other.map_err(placeholder)?,
    };
    let checked = build(&anchored(&expanded)).map_err(|e| bad(e.to_string()))?;
    let group = |name: &str| checked.capture_names().position(|n| n == Some(name));
    let ip_group = group(IP_GROUP);
    let time_group = group("time");
    let session_group = group(SESSION_GROUP);
    if session_pid && (session_group.is_some() || file.programs.is_empty()) {
        return Err(RuleError::SessionPid {
            index,
            regex: regex.to_string(),
        });
    }
    if (spec.remember || spec.forget) && session_group.is_none() && !session_pid {
        return Err(RuleError::RememberWithoutSession {
            index,
            regex: regex.to_string(),
            what: if spec.remember {
                "remember: true records"
            } else {
                "forget: true drops"
            },
        });
    }
    if spec.remember && spec.forget {
        return Err(RuleError::RememberAndForget {
            index,
            regex: regex.to_string(),
        });
    }
    let backtrack = BoundedBacktracker::builder()
        .syntax(syntax_config())
        .thompson(
            thompson::Config::new()
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .utf8(false),
        )
        .build(&expanded)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Pattern {
        source: expanded,
        // Built above to check the pattern and find its groups; built again, the same,
        // if a text too long for the backtracker comes.
        regex: OnceLock::new(),
        backtrack,
        ip_group,
        time_group,
        session_group,
        session_pid,
        remember: spec.remember,
        forget: spec.forget,
        instant: spec.instant,
        ignore: spec.ignore,
    })
}

impl Pattern {
    /// The regex for texts too long for the backtracker, built at its first use. The
    /// same source built when the rule was compiled, so it builds; `None` if it does not.
    fn long_text_regex(&self) -> Option<&Regex> {
        if let Some(regex) = self.regex.get() {
            return Some(regex);
        }
        match build(&anchored(&self.source)) {
            Ok(regex) => Some(self.regex.get_or_init(|| regex)),
            Err(e) => {
                log::error!("pattern `{}`: {e}", self.source);
                None
            }
        }
    }
}

/// The pattern anchored at the start of the text.
fn anchored(expanded: &str) -> String {
    format!("^(?:{expanded})")
}

/// Matches become journalctl arguments: a field name, `=`, a value, never an option; or
/// `+` between two of them, journalctl's "or" (fail2ban's `journalmatch` uses it).
fn check_journal_matches(matches: &[String]) -> Result<(), RuleError> {
    if let Some(bad) = matches.iter().find(|m| {
        *m != "+"
            && m.split_once('=').is_none_or(|(field, _)| {
                field.is_empty()
                    || !field
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
    }) {
        return Err(RuleError::JournalMatch(bad.clone()));
    }
    let plus = |m: Option<&String>| m.is_some_and(|m| m == "+");
    if plus(matches.first())
        || plus(matches.last())
        || matches.windows(2).any(|w| w[0] == "+" && w[1] == "+")
    {
        return Err(RuleError::JournalPlus);
    }
    Ok(())
}

/// Expands `<URL>` and `<STATUS>` to alternations of the rule's `urls` (matched
/// literally, so a URL's dots and question marks mean themselves) and `statuses`.
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
fn strip_groups(source: &str) -> String {
    let Ok(regex) = build(source) else {
        return source.to_string();
    };
    let mut src = source.to_string();
    for name in regex.capture_names().flatten() {
        src = src
            .replace(&format!("(?P<{name}>"), "(")
            .replace(&format!("(?<{name}>"), "(");
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

    fn rule_in(yaml: &str, mode: Option<&str>) -> Result<Rule, RuleError> {
        let file: RuleFile =
            serde_yaml::from_str(yaml).map_err(|e| RuleError::Combined(e.to_string()))?;
        Rule::compile(file, Origin::Embedded("test.yml"), limits(), mode)
    }

    fn rule(yaml: &str) -> Result<Rule, RuleError> {
        rule_in(yaml, None)
    }

    /// What the rule finds on `line`, as (address, instant).
    fn find(rule: &Rule, line: &[u8]) -> Option<(Option<IpAddr>, bool)> {
        let automaton = Automaton::new(vec![Arc::new(rule.clone())]).unwrap();
        let mut scratch = automaton.scratch();
        let mut out = None;
        let reference = chrono::Local::now();
        automaton.examine(line, reference, &mut scratch, |_, f| {
            out = Some(match f {
                Ok(f) => (Some(f.ip), f.instant),
                Err(_) => (None, false),
            })
        });
        out
    }

    #[test]
    fn a_text_too_long_for_the_backtracker_is_matched_by_the_regex_built_then() {
        let r =
            rule("name: t\nprograms: [prog]\npatterns:\n  - 'bad (?:\\S+ )*from <IP>$'\n").unwrap();
        let pattern = &r.patterns[0];
        assert!(pattern.regex.get().is_none(), "not built with the rule");
        let words = "w ".repeat(pattern.backtrack.max_haystack_len());
        let line = format!("Nov 26 01:02:03 host prog[1]: bad {words}from 192.0.2.9");
        assert!(line.len() > pattern.backtrack.max_haystack_len());
        let hit = find(&r, line.as_bytes()).unwrap();
        assert_eq!(hit, (Some("192.0.2.9".parse().unwrap()), false));
        let short = find(&r, b"Nov 26 01:02:03 host prog[1]: bad w from 192.0.2.7").unwrap();
        assert_eq!(short.0, Some("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn finds_the_address_and_instant_flag_in_a_programs_message() {
        let r = rule(
            "name: t\nprograms: [prog]\npatterns:\n  - 'bad from <IP>$'\n  - { regex: 'evil <IP>$', instant: true }\n",
        )
        .unwrap();
        let hit = find(&r, b"Nov 26 01:02:03 host prog[1]: bad from 192.0.2.9").unwrap();
        assert_eq!(hit, (Some("192.0.2.9".parse().unwrap()), false));
        assert!(
            find(&r, b"Nov 26 01:02:03 host prog: evil 2001:db8::2")
                .unwrap()
                .1
        );
        assert_eq!(
            find(&r, b"Nov 26 01:02:03 host prog[1]: good from 192.0.2.9"),
            None
        );
        assert_eq!(
            find(&r, b"Nov 26 01:02:03 host other[1]: bad from 192.0.2.9"),
            None,
            "another program"
        );
        assert_eq!(
            find(&r, b"Nov 26 01:02:03 host prog[1]: x bad from 192.0.2.9"),
            None,
            "anchored"
        );
    }

    #[test]
    fn invalid_utf8_lines_still_match() {
        let r = rule("name: t\nprograms: [p]\npatterns: ['user \\S* from <IP>$']\n").unwrap();
        let hit = find(&r, b"Nov 26 01:02:03 h p: user \xff\xfe from 192.0.2.1").unwrap();
        assert_eq!(hit.0, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn modes_choose_the_patterns() {
        let yaml = "name: t\nprograms: [p]\nmodes: [normal, aggressive]\npatterns:\n  - 'a <IP>$'\n  - { regex: 'b <IP>$', modes: [aggressive] }\n";
        let normal = rule(yaml).unwrap();
        assert_eq!(normal.mode.as_deref(), Some("normal"));
        assert_eq!(normal.pattern_count(), 1);
        assert_eq!(find(&normal, b"Nov 26 01:02:03 h p: b 192.0.2.1"), None);
        let aggressive = rule_in(yaml, Some("aggressive")).unwrap();
        assert_eq!(aggressive.pattern_count(), 2);
        assert!(find(&aggressive, b"Nov 26 01:02:03 h p: b 192.0.2.1").is_some());
        let e = rule_in(yaml, Some("loud")).unwrap_err().to_string();
        assert!(
            e.contains("`loud` is not a mode of rule t (its modes: normal, aggressive)"),
            "{e}"
        );
        let e = rule_in("name: t\npatterns: ['a <IP>']\n", Some("loud"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("it has none"), "{e}");
        let e = rule("name: t\nprograms: [p]\nmodes: [normal]\npatterns: [{regex: 'a <IP>', modes: [ddos]}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("patterns[0] names mode `ddos`"), "{e}");
        let e = rule("name: t\nprograms: [p]\nmodes: [normal, ddos]\npatterns: [{regex: 'a <IP>', modes: [normal]}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode `ddos` has no pattern"), "{e}");
    }

    #[test]
    fn sessions_join_an_address_and_a_failure_on_different_lines() {
        // The address first, the failure later (slapd), and the failure first, the address
        // later (a service that writes the address when the connection ends).
        let r = rule(
            "name: t\nprograms: [p]\npatterns:\n  - { regex: 'conn=(?P<session>\\d+) from <IP>$', remember: true }\n  - 'conn=(?P<session>\\d+) bad$'\n  - { regex: 'conn=(?P<session>\\d+) failed$', remember: true }\n  - 'conn=(?P<session>\\d+) end <IP>$'\n  - 'plain <IP>$'\n",
        )
        .unwrap();
        let automaton = Automaton::new(vec![Arc::new(r)]).unwrap();
        let mut scratch = automaton.scratch();
        let reference = chrono::Local::now();
        let mut read = |line: &str| {
            let mut out = None;
            let line = format!("Nov 26 01:02:03 h p[1]: {line}");
            automaton.examine(line.as_bytes(), reference, &mut scratch, |_, f| {
                out = Some(f.map(|f| f.ip.to_string()).map_err(|_| ()))
            });
            out
        };
        assert_eq!(read("conn=1 from 192.0.2.1"), None, "recorded, not counted");
        assert_eq!(read("conn=2 bad"), None, "a session never recorded");
        assert_eq!(read("conn=1 bad"), Some(Ok("192.0.2.1".into())));
        assert_eq!(
            read("conn=1 bad"),
            Some(Ok("192.0.2.1".into())),
            "every failure"
        );
        assert_eq!(read("conn=1 from 192.0.2.9"), None);
        assert_eq!(
            read("conn=1 bad"),
            Some(Ok("192.0.2.9".into())),
            "a new address"
        );
        assert_eq!(read("conn=3 end 192.0.2.3"), None, "no failure before");
        assert_eq!(
            read("conn=1 end 192.0.2.1"),
            None,
            "an address recorded is no failure waiting"
        );
        assert_eq!(read("conn=4 failed"), None);
        assert_eq!(read("conn=4 bad"), None, "a mark gives no address");
        assert_eq!(read("conn=4 end 192.0.2.4"), Some(Ok("192.0.2.4".into())));
        assert_eq!(read("conn=4 end 192.0.2.4"), None, "the mark is used up");
        assert_eq!(read("plain 192.0.2.5"), Some(Ok("192.0.2.5".into())));
        for n in 0..automaton::MAX_SESSIONS + 1 {
            read(&format!("conn={} from 192.0.2.6", 100 + n));
        }
        assert_eq!(read("conn=100 bad"), None, "the oldest is forgotten");
        assert_eq!(read("conn=101 bad"), Some(Ok("192.0.2.6".into())));

        // A log that writes the time on a line of its own: the line after takes it.
        let r = rule(
            "name: t\npatterns:\n  - { regex: '== (?P<time>\\S+ \\S+) ==(?P<session>)$', remember: true }\n  - 'failed from <IP>(?P<session>)$'\ntime_format: '%Y-%m-%d %H:%M:%S'\n",
        )
        .unwrap();
        let automaton = Automaton::new(vec![Arc::new(r)]).unwrap();
        let mut scratch = automaton.scratch();
        let mut read = |line: &str| {
            let mut out = None;
            automaton.examine(line.as_bytes(), reference, &mut scratch, |_, f| {
                out = Some(f.map(|f| (f.ip.to_string(), f.at.naive_local().to_string())))
            });
            out
        };
        assert_eq!(read("failed from 192.0.2.7"), None, "no time recorded yet");
        assert_eq!(read("== 2013-07-14 17:53:40 =="), None);
        assert_eq!(
            read("failed from 192.0.2.7"),
            Some(Ok(("192.0.2.7".into(), "2013-07-14 17:53:40".into())))
        );

        // The session of the syslog tag's process id; a remembering line is still
        // examined by the later patterns.
        let r = rule(
            "name: t\nprograms: [p]\npatterns:\n  - { regex: 'from <IP>(?: bad)?$', remember: true, session: pid }\n  - 'from <IP> bad$'\n  - { regex: 'too many$', session: pid }\n  - { regex: 'too many$', remember: true, session: pid }\n  - { regex: 'closed by <IP>$', session: pid }\n  - { regex: 'gone$', session: pid, forget: true }\n",
        )
        .unwrap();
        let automaton = Automaton::new(vec![Arc::new(r)]).unwrap();
        let mut scratch = automaton.scratch();
        let mut read = |pid: &str, message: &str| {
            let mut out = None;
            let line = format!("Nov 26 01:02:03 h p{pid}: {message}");
            automaton.examine(line.as_bytes(), reference, &mut scratch, |_, f| {
                out = Some(f.map(|f| f.ip.to_string()).map_err(|_| ()))
            });
            out
        };
        assert_eq!(
            read("[7]", "from 192.0.2.1 bad"),
            Some(Ok("192.0.2.1".into()))
        );
        assert_eq!(read("[7]", "too many"), Some(Ok("192.0.2.1".into())));
        assert_eq!(read("[7]", "closed by 192.0.2.1"), None, "counted already");
        assert_eq!(read("[8]", "too many"), None, "marked");
        assert_eq!(read("[9]", "closed by 192.0.2.9"), None, "another process");
        assert_eq!(
            read("[8]", "closed by 192.0.2.8"),
            Some(Ok("192.0.2.8".into()))
        );
        assert_eq!(read("[8]", "closed by 192.0.2.8"), None, "used up");
        assert_eq!(read("[7]", "too many"), Some(Ok("192.0.2.1".into())));
        assert_eq!(read("[7]", "gone"), None, "forgotten, not counted");
        assert_eq!(read("[7]", "too many"), None, "the address is forgotten");
        assert_eq!(read("", "too many"), None, "no process id");
        assert_eq!(read("", "closed by 192.0.2.8"), None);

        // The journal's entries carry their process id apart from the message: the
        // same sessions.
        let mut entry = |pid: Option<&str>, message: &str| {
            let mut out = None;
            let at = reference.fixed_offset();
            automaton.examine_entry(
                message.as_bytes(),
                pid.map(str::as_bytes),
                at,
                &mut scratch,
                |_, f| out = Some(f.map(|f| f.ip.to_string()).map_err(|_| ())),
            );
            out
        };
        assert_eq!(entry(Some("21"), "from 192.0.2.21"), None, "remembered");
        assert_eq!(entry(Some("21"), "too many"), Some(Ok("192.0.2.21".into())));
        assert_eq!(entry(Some("22"), "too many"), None, "another process");
        assert_eq!(entry(None, "too many"), None, "no process id");
        for bad in [
            "name: t\npatterns: [{regex: 'x <IP>', session: pid}]\n",
            "name: t\nprograms: [p]\npatterns: [{regex: 'x(?P<session>\\d) <IP>', session: pid}]\n",
        ] {
            let e = rule(bad).unwrap_err().to_string();
            assert!(e.contains("`session: pid`"), "{e}");
        }
        let e = rule("name: t\nprograms: [p]\npatterns: [{regex: 'x <IP>', forget: true}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forget: true drops a session"), "{e}");
        let e = rule("name: t\nprograms: [p]\npatterns: [{regex: 'x <IP>', forget: true, remember: true, session: pid}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("together"), "{e}");

        let e = rule("name: t\nprograms: [p]\npatterns: [{regex: 'x <IP>', remember: true}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a `(?P<session>...)` group"), "{e}");
        let e = rule("name: t\nprograms: [p]\npatterns: ['x (?P<s>\\d+)']\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no <IP>"), "{e}");
    }

    #[test]
    fn bad_rules_say_which_key() {
        let err = |yaml: &str| rule(yaml).unwrap_err().to_string();
        assert!(err("name: t\npatterns: ['no address']\n").contains("patterns[0]"));
        assert!(err("name: t\npatterns: ['(<IP>']\n").contains("patterns[0]"));
        assert!(err("name: 'a b'\npatterns: ['<IP>']\n").contains("rule name"));
        assert!(err("name: t\npatterns: []\n").contains("at least one"));
        assert!(err("name: t\nbogus: 1\npatterns: ['<IP>']\n").contains("unknown field `bogus`"));
        assert!(
            err("name: t\npatterns: [{regex: '<IP>', instnt: true}]\n")
                .contains("unknown field `instnt`")
        );
        assert!(err("name: t\nprograms: ['(']\npatterns: ['<IP>']\n").contains("programs[0]"));
        assert!(
            err("name: t\nprograms: [p]\ntime_format: auto\npatterns: ['<IP>']\n")
                .contains("own_format")
        );
        assert!(err("name: t\nuntagged: true\npatterns: ['<IP>']\n").contains("programs"));
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
    fn embedded_rules_all_compile_in_every_mode() {
        let sources = load_sources(std::path::Path::new("/nonexistent")).unwrap();
        assert!(sources.iter().any(|s| s.file.name == "sshd"));
        for s in sources {
            Rule::compile(s.file.clone(), s.origin.clone(), limits(), None).unwrap();
            for mode in &s.file.modes {
                Rule::compile(s.file.clone(), s.origin.clone(), limits(), Some(mode)).unwrap();
            }
        }
    }
}
