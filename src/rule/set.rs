//! The rules pyfilter.yml asks for: every rule file (shipped or in the rules directory)
//! with the configuration's overrides applied, compiled.
//!
//! Precedence, per rule: `rules.NAME` in pyfilter.yml, then the rule file, then the
//! configuration's defaults. `enabled_rules`, when set, decides alone which rules run.

use std::path::Path;

use super::{Limits, Origin, Rule, RuleError, load_sources};
use crate::config::{ADMIN_RULE, Config, ConfigError};

/// Compiles every known rule with `config`'s overrides. `name` and `text` are the
/// configuration's, for locating an override that names no rule. A rule `keep` turns
/// down is checked (compiled) and let go at once (`Rule::release`), before the next one
/// is compiled: the daemon never holds every rule compiled at the same time.
pub fn compile_rules(
    name: &Path,
    text: &str,
    config: &Config,
    keep: &dyn Fn(&Rule) -> bool,
) -> Result<Vec<Rule>, ConfigError> {
    let sources = load_sources(&config.rules_dir)?;
    for key in config.rules.keys() {
        if !sources.iter().any(|s| &s.file.name == key) {
            let known: Vec<&str> = sources.iter().map(|s| s.file.name.as_str()).collect();
            return Err(ConfigError::at_key(
                name,
                text,
                &format!("rules.{key}"),
                format!("no such rule (known: {})", known.join(", ")),
            ));
        }
    }
    for key in config.enabled_rules.iter().flatten() {
        if !sources.iter().any(|s| &s.file.name == key) {
            let known: Vec<&str> = sources.iter().map(|s| s.file.name.as_str()).collect();
            return Err(ConfigError::at_key(
                name,
                text,
                "enabled_rules",
                format!("`{key}`: no such rule (known: {})", known.join(", ")),
            ));
        }
    }
    let mut rules = Vec::with_capacity(sources.len());
    for source in sources {
        let over = config
            .rules
            .get(&source.file.name)
            .cloned()
            .unwrap_or_default();
        let limits = Limits {
            failed_attempts: over
                .failed_attempts
                .or(source.file.failed_attempts)
                .unwrap_or(config.failed_attempts),
            request_time: over
                .request_time
                .or(source.file.request_time)
                .unwrap_or(config.request_time),
            ban_time: over
                .ban_time
                .or(source.file.ban_time)
                .unwrap_or(config.ban_time),
        };
        let mut file = source.file;
        if let Some(enabled) = over.enabled {
            file.enabled = enabled;
        }
        if let Some(list) = &config.enabled_rules {
            file.enabled = list.contains(&file.name);
        }
        if let Some(files) = over.log_files {
            // Files named in the configuration are what the user wants read (followed when
            // they appear), not a reason to fall back to the journal.
            file.log_files = files;
            file.journal = None;
        } else if file.name == ADMIN_RULE && matches!(source.origin, Origin::Embedded(_)) {
            // The shipped rule reads wherever this configuration tells the admin to write.
            file.log_files = vec![config.admin.log.display().to_string()];
        }
        if let Some(journal) = over.journal {
            file.journal = Some(journal);
        }
        if let Some(urls) = over.urls {
            file.urls = urls;
        }
        if let Some(statuses) = over.statuses {
            file.statuses = statuses;
        }
        let origin = source.origin.clone();
        let rule_name = file.name.clone();
        let rule =
            Rule::compile(file, source.origin, limits, over.mode.as_deref()).map_err(|e| {
                match (&e, &origin) {
                    // The mode is pyfilter.yml's choice: the error is there.
                    (RuleError::UnknownMode { .. }, _) => ConfigError::at_path(
                        name,
                        text,
                        &["rules", &rule_name, "mode"],
                        e.to_string(),
                    ),
                    (_, Origin::File(p)) => ConfigError::at_key(
                        p,
                        &std::fs::read_to_string(p).unwrap_or_default(),
                        error_key(&e),
                        e.to_string(),
                    ),
                    (_, Origin::Embedded(n)) => ConfigError::plain(
                        Path::new("rules.d").join(n),
                        format!("rule `{rule_name}`: {e}"),
                    ),
                }
            })?;
        let mut rule = rule;
        if !keep(&rule) {
            rule.release();
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// The key of a rule file an error is about, to point at its line.
fn error_key(e: &RuleError) -> &'static str {
    match e {
        RuleError::BadName(_) | RuleError::Released(_) => "name",
        RuleError::Program { .. } | RuleError::UntaggedWithoutPrograms => "programs",
        RuleError::JournalMatch(_) | RuleError::JournalPlus => "journal",
        RuleError::TimeFormat(_) | RuleError::TimeFormatWithoutOwnFormat => "time_format",
        RuleError::DuplicateMode(_) | RuleError::EmptyMode(_) => "modes",
        RuleError::NoPattern
        | RuleError::Pattern { .. }
        | RuleError::Placeholder { .. }
        | RuleError::PatternMode { .. }
        | RuleError::RememberWithoutSession { .. }
        | RuleError::SessionPid { .. }
        | RuleError::RememberAndForget { .. }
        | RuleError::UnknownMode { .. }
        | RuleError::Combined(_) => "patterns",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::parse;
    use crate::duration::BanTime;

    /// What the tests look at: the configuration and the rules compiled from it (what
    /// `Settings` holds, which rule cannot reach).
    #[derive(Debug)]
    struct Loaded {
        config: Config,
        rules: Vec<Rule>,
    }

    impl Loaded {
        fn enabled_rules(&self) -> impl Iterator<Item = &Rule> {
            self.rules.iter().filter(|r| r.enabled)
        }

        fn rule(&self, name: &str) -> Option<&Rule> {
            self.rules.iter().find(|r| &*r.name == name)
        }
    }

    fn load(text: &str) -> Result<Loaded, ConfigError> {
        let name = Path::new("/etc/pyfilter/pyfilter.yml");
        let config = parse(name, text)?;
        let rules = compile_rules(name, text, &config, &|_| true)?;
        Ok(Loaded { config, rules })
    }

    #[test]
    fn the_admin_rule_reads_the_log_the_admin_writes() {
        let rule = |text: &str| {
            let s = load(text).unwrap();
            s.rule(ADMIN_RULE).unwrap().log_files.clone()
        };
        assert_eq!(rule(""), ["/var/log/pyfilter/admin.log"]);
        assert_eq!(rule("admin: { log: /srv/admin.log }\n"), ["/srv/admin.log"]);
        assert_eq!(
            rule(
                "admin: { log: /srv/admin.log }\nrules:\n  pyfilter-admin: { log_files: [/x.log] }\n"
            ),
            ["/x.log"],
            "an explicit override wins"
        );
        let s = load("admin: { log: /srv/admin.log, session_idle: 5m, sign_in_attempts: 3 }\n")
            .unwrap();
        assert_eq!(s.config.admin.session_idle, Duration::from_secs(300));
        assert_eq!(s.config.admin.sign_in_attempts.get(), 3);
        assert!(load("admin: { sign_in_attempts: 0 }\n").is_err());
        assert!(load("admin: { listen: 'not an address' }\n").is_err());
    }

    #[test]
    fn overrides_apply_and_unknown_rules_are_refused() {
        let s =
            load("failed_attempts: 7\nrules:\n  sshd: { failed_attempts: 3, ban_time: forever }\n")
                .unwrap();
        let sshd = s.rule("sshd").unwrap();
        assert_eq!(sshd.limits.failed_attempts.get(), 3);
        assert_eq!(sshd.limits.ban_time, BanTime::Forever);
        let e = load("rules:\n  nosuch: { enabled: true }\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("rules.nosuch: no such rule"), "{e}");
    }

    #[test]
    fn a_mode_is_chosen_per_rule_and_an_unknown_one_is_located() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("moded.yml"),
            "name: moded\nprograms: [p]\nmodes: [normal, aggressive]\npatterns:\n  - 'a <IP>'\n  - { regex: 'b <IP>', modes: [aggressive] }\n",
        )
        .unwrap();
        let base = format!("rules_dir: {}\n", dir.path().display());
        let s = load(&base).unwrap();
        assert_eq!(s.rule("moded").unwrap().mode.as_deref(), Some("normal"));
        let s = load(&format!("{base}rules:\n  moded: {{ mode: aggressive }}\n")).unwrap();
        let rule = s.rule("moded").unwrap();
        assert_eq!(rule.mode.as_deref(), Some("aggressive"));
        assert_eq!(rule.pattern_count(), 2);
        let e = load(&format!(
            "{base}rules:\n  moded:\n    enabled: true\n    mode: loud\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(
            e.message
                .contains("rules.moded.mode: `loud` is not a mode of rule moded (its modes: normal, aggressive)"),
            "{e}"
        );
        let e = load(&format!(
            "{base}rules:\n  pyfilter-admin: {{ mode: aggressive }}\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("it has none"), "{e}");
    }

    #[test]
    fn enabled_rules_runs_exactly_the_rules_named() {
        let s = load("enabled_rules: [sshd]\n").unwrap();
        assert_eq!(
            s.enabled_rules()
                .map(|r| r.name.to_string())
                .collect::<Vec<_>>(),
            ["sshd"]
        );
        let e = load("enabled_rules: [sshd, nope]\n").unwrap_err();
        assert!(e.message.contains("`nope`: no such rule"), "{e}");
    }

    #[test]
    fn rule_files_in_rules_dir_override_embedded_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sshd.yml"),
            "name: sshd\nenabled: false\npatterns: ['x <IP>$']\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("web.yml"),
            "name: web\nlog_files: [/tmp/x.log]\npatterns: ['y <IP>$']\n",
        )
        .unwrap();
        let s = load(&format!("rules_dir: {}\n", dir.path().display())).unwrap();
        assert!(!s.rule("sshd").unwrap().enabled);
        assert!(s.rule("web").unwrap().enabled);
        std::fs::write(
            dir.path().join("bad.yml"),
            "name: bad\npatterns:\n  - 'no ip here'\n",
        )
        .unwrap();
        let e = load(&format!("rules_dir: {}\n", dir.path().display())).unwrap_err();
        assert!(
            e.to_string().contains("bad.yml:2:") && e.message.contains("no <IP>"),
            "{e}"
        );
    }

    #[test]
    fn rules_turned_down_are_checked_then_let_go() {
        let name = Path::new("/etc/pyfilter/pyfilter.yml");
        let sshd = |r: &Rule| &*r.name == "sshd";
        let rules = compile_rules(name, "", &parse(name, "").unwrap(), &sshd).unwrap();
        let kept: Vec<&Rule> = rules.iter().filter(|r| r.is_compiled()).collect();
        assert_eq!(kept.len(), 1);
        assert!(sshd(kept[0]) && kept[0].pattern_count() > 0);
        let other = rules.iter().find(|r| !sshd(r)).unwrap();
        assert_eq!(other.pattern_count(), 0, "its patterns are gone");
        assert!(other.limits.failed_attempts.get() > 0 && !other.log_files.is_empty());
        let refused = crate::rule::Automaton::new(vec![std::sync::Arc::new(other.clone())]);
        assert!(matches!(refused, Err(RuleError::Released(n)) if n == *other.name));
        // A rule turned down is checked all the same.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yml"),
            "name: bad\npatterns:\n  - 'no ip here'\n",
        )
        .unwrap();
        let text = format!("rules_dir: {}\n", dir.path().display());
        let e = compile_rules(name, &text, &parse(name, &text).unwrap(), &|_| false).unwrap_err();
        assert!(e.message.contains("no <IP>"), "{e}");
    }
}
