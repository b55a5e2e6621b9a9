//! The rules pyfilter.yml asks for: every rule file (shipped or in the rules directory)
//! with the configuration's overrides applied, compiled.
//!
//! Precedence, per rule: `rules.NAME` in pyfilter.yml, then the rule file, then the
//! configuration's defaults. `enabled_rules`, when set, decides alone which rules run.

use std::path::Path;

use super::{Limits, Origin, Rule, load_sources};
use crate::config::{ADMIN_RULE, Config, ConfigError};

/// Compiles every known rule with `config`'s overrides. `name` and `text` are the
/// configuration's, for locating an override that names no rule.
pub fn compile_rules(name: &Path, text: &str, config: &Config) -> Result<Vec<Rule>, ConfigError> {
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
        let rule = Rule::compile(file, source.origin, limits).map_err(|e| match &origin {
            Origin::File(p) => ConfigError::at_key(
                p,
                &std::fs::read_to_string(p).unwrap_or_default(),
                "patterns",
                e,
            ),
            Origin::Embedded(n) => ConfigError::plain(
                Path::new("rules.d").join(n),
                format!("rule `{rule_name}`: {e}"),
            ),
        })?;
        rules.push(rule);
    }
    Ok(rules)
}
