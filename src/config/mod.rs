//! The configuration: `pyfilter.yml` (or the embedded default), the rules it enables,
//! and errors that name the file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::net::IgnoreList;
use crate::rule::{self, Rule};

mod error;
mod schema;
mod validate;

pub use error::ConfigError;
pub use schema::{
    Action, AdminConfig, Backend, Config, FirewallConfig, Increment, JournalSpec, RedisConfig,
    RuleOverride, SqliteConfig, StoreKind, redacted,
};
use validate::validate;

/// Where pyfilter looks for its configuration unless `-c` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/pyfilter/pyfilter.yml";

/// The shipped rule that reads the admin's failed sign-ins from `admin.log`.
pub const ADMIN_RULE: &str = "pyfilter-admin";

/// The configuration used when no file exists at the default path.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../pyfilter.yml");

/// Where the configuration was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// The default path does not exist: the configuration built into the binary.
    Embedded,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Embedded => write!(f, "embedded default (no {DEFAULT_PATH})"),
        }
    }
}

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
        let (source, text) = match path {
            Some(p) => (ConfigSource::File(p.to_path_buf()), read(p)?),
            None => match std::fs::read_to_string(DEFAULT_PATH) {
                Ok(text) => (ConfigSource::File(DEFAULT_PATH.into()), text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    (ConfigSource::Embedded, EMBEDDED_DEFAULT.to_string())
                }
                Err(e) => {
                    return Err(ConfigError::plain(
                        DEFAULT_PATH,
                        format!("cannot read: {e}"),
                    ));
                }
            },
        };
        let name = match &source {
            ConfigSource::File(p) => p.clone(),
            ConfigSource::Embedded => PathBuf::from("pyfilter.yml (embedded)"),
        };
        Settings::from_text(&name, &text, source)
    }

    /// Parses and validates configuration text; `name` is used in messages.
    pub fn from_text(
        name: &Path,
        text: &str,
        source: ConfigSource,
    ) -> Result<Settings, ConfigError> {
        // An empty file is an empty map: every default.
        let source_text = if text.trim().is_empty() { "{}" } else { text };
        let config: Config =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(source_text))
                .map_err(|e| ConfigError::located(name, text, e))?;
        validate(name, text, &config)?;
        let rules = rule::compile_rules(name, text, &config)?;
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

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::plain(path, format!("cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::duration::BanTime;

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
    fn empty_file_means_defaults() {
        let s = load("").unwrap();
        assert_eq!(s.config.failed_attempts.get(), 5);
        assert_eq!(s.config.request_time, Duration::from_secs(600));
        assert!(s.ignore.covering("127.0.0.1".parse().unwrap()).is_some());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = load("server_name: a\nfirewal: {}\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.to_string().starts_with("/etc/pyfilter/pyfilter.yml:2: "),
            "{e}"
        );
        assert!(e.message.contains("unknown field `firewal`"), "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let e = load("ban_time: 1h\nrequest_time: soon\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.message.contains("request_time") && e.message.contains("not a duration"),
            "{e}"
        );
        let e = load("ignore: [10.0.0.0/8, nonsense]\n").unwrap_err();
        assert!(e.message.contains("nonsense"), "{e}");
        let e = load("firewall: { backend: pf }\n").unwrap_err();
        assert!(e.message.contains("unknown variant `pf`"), "{e}");
        let e = load("failed_attempts: 0\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
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
    fn repeat_offenders_get_longer_bans_up_to_the_maximum() {
        let s = load("ban_time: 1h\nban_time_increment: { factor: 3, max: 1d }\n").unwrap();
        let inc = s.config.ban_time_increment.unwrap();
        let base = s.config.ban_time;
        assert_eq!(inc.apply(base, 0), BanTime::For(Duration::from_secs(3600)));
        assert_eq!(
            inc.apply(base, 2),
            BanTime::For(Duration::from_secs(9 * 3600))
        );
        assert_eq!(
            inc.apply(base, 10),
            BanTime::For(Duration::from_secs(86400))
        );
        assert_eq!(inc.apply(BanTime::Forever, 3), BanTime::Forever);
        assert!(load("ban_time_increment: { factor: 1, max: 1d }\n").is_err());
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
}
