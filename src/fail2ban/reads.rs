//! Where a jail reads: its `logpath` files, or with `backend = systemd` the journal (the
//! jail's `journalmatch`, else the rule's own journal, else the fail2ban filter's
//! `journalmatch`), as the rule entry's `log_files` and `journal`.

use std::collections::BTreeSet;
use std::path::Path;

use super::KnownRule;
use super::RuleEntry;
use super::actions::split_options;
use super::interpolate::InterpolationError;
use super::jail::{Reader, shown};
use super::layers::Layered;
use crate::config::JournalSpec;

impl Reader<'_> {
    /// `backend`, `logpath`, `journalmatch`: the files or the journal.
    pub(super) fn source(
        &mut self,
        rule: &KnownRule,
        entry: &mut RuleEntry,
    ) -> Result<(), InterpolationError> {
        let backend = self.text("backend")?.unwrap_or_else(|| "auto".into());
        let (kind, options) = split_options(&backend).unwrap_or((backend.clone(), Vec::new()));
        match kind.to_lowercase().as_str() {
            "systemd" => {
                if self.journal(rule, &options, entry)? {
                    return Ok(());
                }
            }
            "auto" | "polling" | "pyinotify" | "gamin" | "" => {}
            other => self.note(format!(
                "backend {other} not carried over: pyfilter follows files with inotify, polling where it cannot"
            )),
        }
        self.log_files(rule, entry)
    }

    /// The journal for `backend = systemd`: the jail's `journalmatch`, else the rule's own
    /// journal, else the fail2ban filter's `journalmatch`. False when there is none.
    fn journal(
        &mut self,
        rule: &KnownRule,
        options: &[(String, String)],
        entry: &mut RuleEntry,
    ) -> Result<bool, InterpolationError> {
        let mut file = None;
        for (k, v) in options {
            match k.as_str() {
                "journalpath" => file = Some(v.into()),
                "journalfiles" if !v.contains([',', ' ']) => file = Some(v.into()),
                _ => self.note(format!(
                    "backend option {k}={} not carried over: pyfilter reads the system journal, or one journal file or directory (journal.file)",
                    shown(v)
                )),
            }
        }
        let mut matches = None;
        if let Some(text) = self.text("journalmatch")?.filter(|t| !t.trim().is_empty()) {
            matches = journal_matches(&text);
            if matches.is_none() {
                self.note(format!(
                    "journalmatch {} not carried over: pyfilter reads FIELD=value matches joined by `+`",
                    shown(&text)
                ));
            }
        }
        let from_rule = rule.journal.clone();
        let spec = match (matches, from_rule) {
            (Some(m), _) => Some(JournalSpec { matches: m, file }),
            (None, Some(own)) => Some(JournalSpec {
                matches: own.matches,
                file: file.or(own.file),
            }),
            (None, None) => filter_journalmatch(self.cx.dir, &rule.name)
                .map(|m| JournalSpec { matches: m, file }),
        };
        match spec {
            Some(spec) => {
                entry.log_files = Some(Vec::new());
                entry.journal = Some(spec);
                Ok(true)
            }
            None => {
                self.note(format!(
                    "backend systemd not carried over: neither the jail nor its filter has a journalmatch and rule {} reads no journal of its own; it reads log files",
                    rule.name
                ));
                Ok(false)
            }
        }
    }

    fn log_files(
        &mut self,
        rule: &KnownRule,
        entry: &mut RuleEntry,
    ) -> Result<(), InterpolationError> {
        let mut paths = Vec::new();
        for line in self.text("logpath")?.unwrap_or_default().lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let path = match line.rsplit_once(char::is_whitespace) {
                Some((p, "tail")) => p.trim(),
                Some((p, "head")) => {
                    self.note(format!(
                        "logpath {p} head (read from its start) not carried over: pyfilter starts a file it has never read at its end, then remembers its place"
                    ));
                    p.trim()
                }
                _ => line,
            };
            paths.push(path.to_string());
        }
        if paths.is_empty() {
            self.note(format!(
                "no logpath: rule {} reads its own log files ({})",
                rule.name,
                rule.log_files.join(", ")
            ));
        } else {
            entry.log_files = Some(paths);
        }
        Ok(())
    }
}

/// `journalmatch` as pyfilter's matches: `FIELD=value` words and `+`, or `None`.
fn journal_matches(text: &str) -> Option<Vec<String>> {
    let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let valid = |w: &String| {
        w == "+"
            || w.split_once('=').is_some_and(|(field, _)| {
                !field.is_empty()
                    && field
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
    };
    let plus = |w: Option<&String>| w.is_some_and(|w| w == "+");
    let placed = !plus(words.first())
        && !plus(words.last())
        && !words.windows(2).any(|w| w[0] == "+" && w[1] == "+");
    (!words.is_empty() && placed && words.iter().all(valid)).then_some(words)
}

/// The `journalmatch` of fail2ban's own filter `name` (`filter.d/NAME.conf` and its
/// `.local`), from its `[Init]` or `[Definition]`.
fn filter_journalmatch(dir: &Path, name: &str) -> Option<Vec<String>> {
    let l = Layered::read(&dir.join("filter.d"), name).ok()?;
    ["Init", "Definition"].iter().find_map(|section| {
        l.section(section)?.get("journalmatch")?;
        let v = l
            .get(section, "journalmatch", &mut BTreeSet::new())
            .ok()??;
        journal_matches(&v.text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_matches_are_fields_and_plus() {
        assert_eq!(
            journal_matches("_SYSTEMD_UNIT=sshd.service + _COMM=sshd").unwrap(),
            ["_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"]
        );
        assert!(journal_matches("_comm=sshd").is_none());
        assert!(journal_matches("--since=yesterday").is_none());
        assert!(journal_matches("").is_none());
        assert!(journal_matches("+ _COMM=sshd").is_none());
    }
}
