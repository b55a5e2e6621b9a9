//! Why a rule file cannot be compiled: each error names the key or the pattern at fault.

use crate::rule::pattern::PatternError;
use crate::rule::timestamp::TimeFormatError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule name `{0}` must be letters, digits, `-` or `_`")]
    BadName(String),
    #[error("a rule needs at least one pattern")]
    NoPattern,
    #[error("patterns[{index}] `{regex}`: {reason}")]
    Pattern {
        index: usize,
        regex: String,
        reason: String,
    },
    #[error("patterns[{index}] `{regex}`: {source}")]
    Placeholder {
        index: usize,
        regex: String,
        source: PatternError,
    },
    #[error("programs[{index}] `{program}`: {reason}")]
    Program {
        index: usize,
        program: String,
        reason: String,
    },
    #[error(
        "journal.match `{0}` is not FIELD=value (an upper-case journal field, like _SYSTEMD_UNIT=ssh.service) or `+`"
    )]
    JournalMatch(String),
    #[error("journal.match: `+` goes between two matches")]
    JournalPlus,
    #[error("time_format: {0}")]
    TimeFormat(#[from] TimeFormatError),
    #[error(
        "time_format reads the time of the service's own lines or of a `time` group: set own_format: true, or drop it (messages after a syslog header take the header's time)"
    )]
    TimeFormatWithoutOwnFormat,
    #[error("untagged: true reads messages after a syslog header: list the rule's programs too")]
    UntaggedWithoutPrograms,
    #[error("`{mode}` is not a mode of rule {rule} ({})", known_modes(.known))]
    UnknownMode {
        rule: String,
        mode: String,
        known: Vec<String>,
    },
    #[error("patterns[{index}] names mode `{mode}`, which `modes` does not list ({})", known_modes(.known))]
    PatternMode {
        index: usize,
        mode: String,
        known: Vec<String>,
    },
    #[error("mode `{0}` has no pattern")]
    EmptyMode(String),
    #[error("modes: `{0}` is listed twice")]
    DuplicateMode(String),
    #[error(
        "patterns[{index}] `{regex}`: {what} a session: the pattern needs a `(?P<session>...)` group or `session: pid`"
    )]
    RememberWithoutSession {
        index: usize,
        regex: String,
        what: &'static str,
    },
    #[error(
        "patterns[{index}] `{regex}`: remember: true and forget: true together: a pattern records its line's session or drops it"
    )]
    RememberAndForget { index: usize, regex: String },
    #[error(
        "patterns[{index}] `{regex}`: `session: pid` names the session by the syslog tag's process id: the pattern may not also have a `session` group, and the rule needs `programs`"
    )]
    SessionPid { index: usize, regex: String },
    #[error("rule `{0}` was let go (it had nothing to read) and is not compiled again")]
    Released(String),
    #[error("patterns combined: {0}")]
    Combined(String),
}

fn known_modes(known: &[String]) -> String {
    if known.is_empty() {
        "it has none: leave `mode` out".into()
    } else {
        format!("its modes: {}", known.join(", "))
    }
}
