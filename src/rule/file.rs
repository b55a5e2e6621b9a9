//! Rule files: what a rule file says, and where rule files come from.
//!
//! One YAML file per rule. The shipped set (`rules.d/`) is embedded in the binary; files in
//! the configured rules directory override a shipped rule of the same name or add new ones.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::{ConfigError, JournalSpec};
use crate::duration::{BanTime, de_opt_duration};

include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));

/// A rule file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub log_files: Vec<String>,
    /// The programs (syslog tags) whose messages the patterns describe, each a regular
    /// expression matched against the whole name (`sshd`, `postfix(-\w+)?/smtpd`).
    #[serde(default)]
    pub programs: Vec<String>,
    /// The patterns also read the message of a line whose syslog-style header names no
    /// program: what follows the time (a daemon's own log stamped like syslog).
    #[serde(default)]
    pub untagged: bool,
    /// The patterns also describe whole lines of the service's own log, whose time
    /// `time_format` reads. Implied when `programs` is empty.
    #[serde(default)]
    pub own_format: bool,
    #[serde(default)]
    pub time_format: Option<OneOrMany>,
    /// Put before every pattern: what all the rule's messages (or lines) start with.
    #[serde(default)]
    pub prefix: String,
    /// The rule's modes, the default first (`[normal, ddos, extra, aggressive]`); a
    /// pattern names the modes it belongs to, or belongs to all.
    #[serde(default)]
    pub modes: Vec<String>,
    pub patterns: Vec<PatternSpec>,
    #[serde(default)]
    pub failed_attempts: Option<NonZeroU32>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub request_time: Option<Duration>,
    #[serde(default)]
    pub ban_time: Option<BanTime>,
    /// Read the systemd journal instead of files (or when none of `log_files` exists).
    #[serde(default)]
    pub journal: Option<JournalSpec>,
    /// What `<URL>` in a pattern stands for: these paths, literally.
    #[serde(default)]
    pub urls: Vec<String>,
    /// What `<STATUS>` in a pattern stands for: these HTTP statuses.
    #[serde(default)]
    pub statuses: Vec<u16>,
}

fn yes() -> bool {
    true
}

/// A value written either alone or as a list (`time_format: auto` or
/// `time_format: [auto, "%y%m%d %H:%M:%S"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// One pattern: a plain string, or `{ regex: ..., instant: true, modes: [...], remember: true,
/// forget: true, session: pid }`.
#[derive(Debug, Clone)]
pub struct PatternSpec {
    pub regex: String,
    pub instant: bool,
    /// A line this pattern matches (before any other of the rule) is not an attempt,
    /// whatever later patterns say: fail2ban's `ignoreregex`, for lines that would
    /// be ambiguous. It needs no `<IP>`.
    pub ignore: bool,
    /// The modes the pattern belongs to; empty: every mode.
    pub modes: Vec<String>,
    /// The pattern records its line's session (a `session` group) instead of counting it:
    /// see `automaton.rs`.
    pub remember: bool,
    /// `session: pid`: the line's session is the process id of its syslog tag
    /// (`sshd[123]:`), not a `session` group.
    pub session: Option<SessionKey>,
    /// The pattern drops its line's session (the connection ended, or started anew)
    /// instead of counting the line: see `automaton.rs`.
    pub forget: bool,
}

/// What else than a `session` group can name a line's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKey {
    /// The process id in the line's syslog tag.
    Pid,
}

impl<'de> Deserialize<'de> for PatternSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            regex: String,
            #[serde(default)]
            instant: bool,
            #[serde(default)]
            ignore: bool,
            #[serde(default)]
            modes: Vec<String>,
            #[serde(default)]
            remember: bool,
            #[serde(default)]
            session: Option<SessionKey>,
            #[serde(default)]
            forget: bool,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PatternSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a regex string or a map { regex: ..., instant: true|false, ignore: true|false, modes: [...], remember: true|false, forget: true|false, session: pid }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PatternSpec, E> {
                Ok(PatternSpec {
                    regex: v.to_string(),
                    instant: false,
                    ignore: false,
                    modes: Vec::new(),
                    remember: false,
                    session: None,
                    forget: false,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<PatternSpec, A::Error> {
                let full = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(PatternSpec {
                    regex: full.regex,
                    instant: full.instant,
                    ignore: full.ignore,
                    modes: full.modes,
                    remember: full.remember,
                    session: full.session,
                    forget: full.forget,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Where a rule came from, for messages and `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Embedded(&'static str),
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Embedded(name) => write!(f, "rules.d/{name} (embedded)"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A rule file's text, within the limits every YAML file pyfilter reads is held to.
fn parse_rule_file(file: &Path, text: &str) -> Result<RuleFile, ConfigError> {
    crate::config::yaml::deserialize(file, text)
}

/// A rule file read from disk or from the binary, not yet compiled.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: RuleFile,
    pub origin: Origin,
}

/// Reads the embedded rules, then every `*.yml` of `dir` (when it exists), a file there
/// replacing an embedded rule of the same name.
pub fn load_sources(dir: &Path) -> Result<Vec<Source>, ConfigError> {
    let mut sources: Vec<Source> = Vec::new();
    for (name, text) in EMBEDDED_RULES {
        let file = parse_rule_file(&Path::new("rules.d").join(name), text)?;
        sources.push(Source {
            file,
            origin: Origin::Embedded(name),
        });
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sources),
        Err(e) => {
            return Err(ConfigError::plain(
                dir,
                format!("cannot read the rules directory: {e}"),
            ));
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = crate::config::yaml::read(&path)?;
        let file = parse_rule_file(&path, &text)?;
        if let Some(prev) = sources.iter().position(|s| s.file.name == file.name) {
            if let Origin::File(other) = &sources[prev].origin {
                return Err(ConfigError::plain(
                    &path,
                    format!(
                        "rule `{}` is already defined in {}",
                        file.name,
                        other.display()
                    ),
                ));
            }
            sources.remove(prev);
        }
        sources.push(Source {
            file,
            origin: Origin::File(path),
        });
    }
    sources.sort_by(|a, b| a.file.name.cmp(&b.file.name));
    Ok(sources)
}
