//! Settings: the validated configuration with the rules it compiles to and its ignore
//! list, everything a command needs. `config` reads and checks the file, `rule` compiles
//! the rules; this is where the two meet.

use std::path::Path;

use crate::config::{self, Config, ConfigError, ConfigSource};
use crate::net::IgnoreList;
use crate::rule::{self, Rule};

/// A validated configuration and its compiled rules: everything a command needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub source: ConfigSource,
    pub rules: Vec<Rule>,
    pub ignore: IgnoreList,
}

impl Settings {
    /// Loads `path`, or the default path, or the embedded default when the default path
    /// does not exist. An explicitly named file must exist.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let (source, text) = config::read(path)?;
        Settings::from_text(&source.name(), &text, source)
    }

    /// Parses and validates configuration text and compiles its rules; `name` is used in
    /// messages.
    pub fn from_text(
        name: &Path,
        text: &str,
        source: ConfigSource,
    ) -> Result<Settings, ConfigError> {
        Settings::from_text_keeping(name, text, source, &|_| true)
    }

    /// `from_text`, keeping compiled only the rules `keep` accepts: the others are
    /// checked as well, then let go (`Rule::release`).
    pub fn from_text_keeping(
        name: &Path,
        text: &str,
        source: ConfigSource,
        keep: &dyn Fn(&Rule) -> bool,
    ) -> Result<Settings, ConfigError> {
        let config = config::parse(name, text)?;
        let rules = rule::compile_rules(name, text, &config, keep)?;
        let ignore = IgnoreList::new(config.ignore.iter().map(|n| n.0));
        Ok(Settings {
            config,
            source,
            rules,
            ignore,
        })
    }

    /// The rules that run (enabled ones).
    pub fn enabled_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Backend, EMBEDDED_DEFAULT};

    fn load(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_text(
            Path::new("/etc/pyfilter/pyfilter.yml"),
            text,
            ConfigSource::Embedded,
        )
    }

    #[test]
    fn embedded_default_is_valid() {
        let s = load(EMBEDDED_DEFAULT).unwrap();
        assert!(s.enabled_rules().any(|r| &*r.name == "sshd"));
        assert_eq!(s.config.firewall.backend, Backend::Iptables);
    }

    #[test]
    fn empty_file_means_defaults() {
        let s = load("").unwrap();
        assert_eq!(s.config.failed_attempts.get(), 5);
        assert_eq!(s.config.request_time, Duration::from_secs(600));
        assert!(s.ignore.covering("127.0.0.1".parse().unwrap()).is_some());
    }
}
