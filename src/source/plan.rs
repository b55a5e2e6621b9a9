//! What each enabled rule reads, said the same way by `check` and by `run`'s first
//! screen: the logs there now, the ones absent (followed when they appear), the journal.

use std::path::Path;

use crate::rule::Rule;
use crate::source::journal;
use crate::source::watchset::is_glob;

/// What one rule reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    pub rule: String,
    /// Logs there now (a glob's matching files).
    pub present: Vec<String>,
    /// Logs not there (a glob with no file yet): followed when they appear.
    pub absent: Vec<String>,
    /// The journal read now, described.
    pub journal: Option<String>,
}

impl RulePlan {
    pub fn of(rule: &Rule) -> RulePlan {
        let mut present = Vec::new();
        let mut absent = Vec::new();
        for file in &rule.log_files {
            if is_glob(file) {
                let found: Vec<String> = glob::glob(file)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|p| p.is_file())
                    .map(|p| p.display().to_string())
                    .collect();
                if found.is_empty() {
                    absent.push(file.clone());
                } else {
                    present.extend(found);
                }
            } else if Path::new(file).is_file() {
                present.push(file.clone());
            } else {
                absent.push(file.clone());
            }
        }
        let journal = journal::reads_journal(rule)
            .then(|| rule.journal.as_ref().map(journal::describe))
            .flatten();
        RulePlan {
            rule: rule.name.to_string(),
            present,
            absent,
            journal,
        }
    }

    /// Nothing to read now: no log there and no journal (see `nothing_to_read`).
    pub fn reads_nothing(&self) -> bool {
        self.present.is_empty() && self.journal.is_none()
    }

    /// One line: `sshd: following /var/log/auth.log; journal ...; absent (followed when
    /// they appear): /var/log/secure`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if !self.present.is_empty() {
            parts.push(format!("following {}", self.present.join(", ")));
        }
        if let Some(j) = &self.journal {
            parts.push(format!("journal ({j})"));
        }
        if parts.is_empty() {
            parts.push("nothing to read yet".into());
        }
        if !self.absent.is_empty() {
            parts.push(format!(
                "absent, followed when they appear: {}",
                self.absent.join(", ")
            ));
        }
        format!("{}: {}", self.rule, parts.join("; "))
    }
}

/// The one warning for the enabled rules with nothing to read now, if any.
pub fn nothing_to_read(rules: &[&Rule]) -> Option<String> {
    match rules {
        [] => None,
        [rule] => Some(format!(
            "rule {} has nothing to read yet: none of its logs exists{}; it starts reading when one appears",
            rule.name,
            if rule.journal.is_some() {
                " and its journal cannot be read here"
            } else {
                ""
            }
        )),
        _ => Some(format!(
            "{} enabled rules have nothing to read yet (none of their logs exists; each starts reading when one appears): {}",
            rules.len(),
            rules
                .iter()
                .map(|r| &*r.name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_says_what_is_followed_what_is_awaited_and_the_journal() {
        let plan = RulePlan {
            rule: "sshd".into(),
            present: vec!["/var/log/auth.log".into()],
            absent: vec!["/var/log/secure".into()],
            journal: None,
        };
        assert_eq!(
            plan.line(),
            "sshd: following /var/log/auth.log; absent, followed when they appear: /var/log/secure"
        );
        let nothing = RulePlan {
            present: vec![],
            ..plan
        };
        assert!(nothing.reads_nothing());
        assert!(
            nothing
                .line()
                .starts_with("sshd: nothing to read yet; absent")
        );
    }
}
