//! fail2ban's configuration turned into a `pyfilter.yml` (`pyfilter import --fail2ban`).
//!
//! `layers.rs` reads the jail files in fail2ban's order with their includes (each file
//! through the INI reader of `ini.rs`), `interpolate.rs` resolves `%(name)s` the way
//! fail2ban does, `time.rs` reads its times, `convert.rs` turns `[DEFAULT]` and the enabled
//! jails (each one in `jail.rs`, where it reads in `reads.rs`) into a [`Plan`] (with `actions.rs` for actions and ban
//! actions, `addresses.rs` for `ignoreip`)
//! and `emit.rs` writes the plan as YAML. What cannot be carried over becomes a [`Note`],
//! never silence.
//!
//! The rules pyfilter knows are given by the caller ([`KnownRule`]), so this module reads
//! files and writes text and knows nothing else of pyfilter.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Backend, Increment, JournalSpec};
use crate::duration::BanTime;

mod actions;
mod addresses;
mod convert;
mod emit;
mod ini;
mod interpolate;
mod jail;
mod layers;
mod reads;
#[cfg(test)]
mod tests;
mod time;

pub use convert::plan;
pub use emit::yaml;

/// A fail2ban configuration that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum Fail2banError {
    #[error("{}: no such directory; name fail2ban's configuration directory: --fail2ban DIR", .0.display())]
    NoDirectory(PathBuf),
    #[error(
        "{}: no jail.conf, jail.local or jail.d/*.conf|*.local: is this fail2ban's configuration directory?",
        .0.display()
    )]
    NoJailFiles(PathBuf),
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Syntax(#[from] ini::SyntaxError),
}

/// A rule this pyfilter has (shipped or in its rules directory), as the import needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownRule {
    pub name: String,
    /// On by default (its file's `enabled`).
    pub enabled: bool,
    pub log_files: Vec<String>,
    pub journal: Option<JournalSpec>,
    /// The limits its file sets itself, which would win over the top-level ones.
    pub failed_attempts: Option<u32>,
    pub request_time: Option<Duration>,
    pub ban_time: Option<BanTime>,
}

/// What a fail2ban configuration becomes: pyfilter's defaults, one entry per enabled jail,
/// and notes on what did not carry over.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The directory read, and the files in the order they were read.
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub failed_attempts: Option<u32>,
    pub request_time: Option<Duration>,
    pub ban_time: Option<BanTime>,
    /// `None`: pyfilter's default list.
    pub ignore: Option<Vec<ipnet::IpNet>>,
    pub ban_time_increment: Option<Increment>,
    pub firewall: Option<Backend>,
    /// Where each top-level value came from, shown above it: `key → fail2ban's words`.
    pub origins: Vec<(&'static str, String)>,
    /// Notes on `[DEFAULT]` and the configuration as a whole.
    pub notes: Vec<Note>,
    pub jails: Vec<JailPlan>,
    /// Rules on by default in pyfilter that no jail names.
    pub also_enabled: Vec<String>,
}

/// One enabled jail: the rule entry it becomes (if any) and its notes.
#[derive(Debug, Clone, PartialEq)]
pub struct JailPlan {
    pub jail: String,
    pub entry: Option<RuleEntry>,
    pub notes: Vec<Note>,
}

/// `rules.NAME` in the printed configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleEntry {
    pub rule: String,
    pub failed_attempts: Option<u32>,
    pub request_time: Option<Duration>,
    pub ban_time: Option<BanTime>,
    pub mode: Option<String>,
    pub log_files: Option<Vec<String>>,
    pub journal: Option<JournalSpec>,
}

/// Something fail2ban did that pyfilter will not, or does otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `None`: `[DEFAULT]` or the configuration as a whole.
    pub jail: Option<String>,
    pub text: String,
}

impl Note {
    pub fn global(text: impl Into<String>) -> Note {
        Note {
            jail: None,
            text: text.into(),
        }
    }

    pub fn jail(jail: &str, text: impl Into<String>) -> Note {
        Note {
            jail: Some(jail.to_string()),
            text: text.into(),
        }
    }

    /// The note as one YAML comment line: `# jail sshd: ...` or `# [DEFAULT]: ...`.
    pub fn comment(&self) -> String {
        let text = one_line(&self.text);
        match &self.jail {
            Some(j) => format!("# jail {}: {text}", one_line(j)),
            None => format!("# [DEFAULT]: {text}"),
        }
    }
}

impl Plan {
    /// Every note, jail notes after the global ones, in jail order.
    pub fn all_notes(&self) -> impl Iterator<Item = &Note> {
        self.notes
            .iter()
            .chain(self.jails.iter().flat_map(|j| j.notes.iter()))
    }
}

/// Text from the configuration made safe for one comment line: a value written on several
/// lines, or holding control characters, must not end the comment and become YAML.
pub fn one_line(text: &str) -> String {
    let joined: Vec<&str> = text.split_whitespace().collect();
    joined
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
