//! The configuration: `pyfilter.yml` (or the embedded default) read, parsed and
//! checked, with errors that name the file, the line and the key.
//!
//! Only the file itself: the rules it enables are compiled by `rule`, and both are put
//! together in `settings`.

use std::fmt;
use std::path::{Path, PathBuf};

mod error;
pub mod notify;
mod schema;
mod validate;
pub mod yaml;

pub use error::ConfigError;
pub use notify::{NotifyConfig, NotifyOn, NotifySource};
pub use schema::{
    Action, AdminConfig, Backend, Config, FirewallConfig, Increment, JournalSpec, RedisConfig,
    RuleOverride, SqliteConfig, StoreKind, redacted,
};
pub use validate::sentinel_addr;
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

impl ConfigSource {
    /// The name messages give the configuration.
    pub fn name(&self) -> PathBuf {
        match self {
            ConfigSource::File(p) => p.clone(),
            ConfigSource::Embedded => PathBuf::from("pyfilter.yml (embedded)"),
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Embedded => write!(f, "embedded default (no {DEFAULT_PATH})"),
        }
    }
}

/// Reads the configuration's text from `path`, or the default path, or the embedded
/// default when the default path does not exist. An explicitly named file must exist.
pub fn read(path: Option<&Path>) -> Result<(ConfigSource, String), ConfigError> {
    match path {
        Some(p) => Ok((ConfigSource::File(p.to_path_buf()), read_file(p)?)),
        None => match std::fs::read_to_string(DEFAULT_PATH) {
            Ok(text) => Ok((ConfigSource::File(DEFAULT_PATH.into()), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((ConfigSource::Embedded, EMBEDDED_DEFAULT.to_string()))
            }
            Err(e) => Err(ConfigError::plain(
                DEFAULT_PATH,
                format!("cannot read: {e}"),
            )),
        },
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    yaml::read(path)
}

/// Parses and validates configuration text; `name` is used in messages.
pub fn parse(name: &Path, text: &str) -> Result<Config, ConfigError> {
    // An empty file is an empty map: every default.
    let source_text = if text.trim().is_empty() { "{}" } else { text };
    yaml::check(name, text)?;
    let config: Config =
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(source_text))
            .map_err(|e| ConfigError::located(name, text, e))?;
    validate(name, text, &config)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::error::in_words;
    use super::*;

    #[test]
    fn parser_messages_are_said_in_the_administrators_words() {
        for (parser, words) in [
            (
                "invalid value: integer `0`, expected a nonzero u32",
                "must be a whole number of 1 or more, not 0",
            ),
            (
                "invalid type: integer `-1`, expected a nonzero u32",
                "must be a whole number of 1 or more, not -1",
            ),
            (
                "invalid value: integer `300`, expected u8",
                "must be a whole number from 0 to 255, not 300",
            ),
            (
                "invalid type: string \"maybe\", expected a boolean",
                "must be true or false, not maybe",
            ),
            (
                "invalid type: integer `3`, expected a sequence",
                "must be a list, like [a, b], not 3",
            ),
            (
                "invalid type: string \"x\", expected f64",
                "must be a number, not x",
            ),
            (
                "invalid type: sequence, expected struct RuleOverride",
                "must be keys and values, like { key: value }, not a list",
            ),
            ("unknown variant `pf`", "unknown variant `pf`"),
        ] {
            assert_eq!(in_words(parser), words);
        }
    }

    #[test]
    fn no_rust_type_or_parser_path_reaches_the_administrator() {
        for (text, said) in [
            (
                "failed_attempts: 0\n",
                "failed_attempts: must be a whole number of 1 or more, not 0",
            ),
            (
                "rules:\n  sshd: { failed_attempts: 0 }\n",
                "rules.sshd.failed_attempts: must be a whole number of 1 or more, not 0",
            ),
            (
                "ignore: [127.0.0.1, nonsense]\n",
                "ignore (entry 2): `nonsense` is not an IP address",
            ),
            (
                "rules:\n  sshd: { log_files: [a, { b: c }] }\n",
                "rules.sshd.log_files (entry 2): must be text, not keys and values",
            ),
            (
                "ban_time: soon\n",
                "ban_time: `soon` is not a duration; write it like",
            ),
            (
                "admin: { listen: nowhere }\n",
                "admin.listen: must be an address and a port",
            ),
            (
                "firewall:\n  acton: DROP\n",
                ":2: firewall: unknown field `acton`, expected one of",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(said), "{text}: {e}");
            for leak in [
                "u32",
                "u8",
                "[0]",
                "[1]",
                ".?",
                "expected number at",
                "ignore: ignore",
            ] {
                assert!(!e.contains(leak), "{text}: {e}");
            }
        }
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/pyfilter/pyfilter.yml"), text)
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
    fn a_value_aliased_a_hundred_thousand_times_is_refused_in_moments() {
        let mut text = format!(
            "server_name: &big \"{}\"\nenabled_rules:\n",
            "x".repeat(100_000)
        );
        for _ in 0..100_000 {
            text.push_str("  - *big\n");
        }
        let start = Instant::now();
        let e = load(&text).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(e.message.contains("aliases expand"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn a_flow_collection_fifty_thousand_deep_is_refused_in_moments() {
        let text = format!("ignore: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
        let start = Instant::now();
        let e = load(&text).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        assert!(e.message.contains("nested deeper than"), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn a_ban_time_past_a_hundred_years_is_refused_with_its_line() {
        let e = load("server_name: a\nban_time: 100000000d\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.message.contains("ban_time") && e.message.contains("`forever`"),
            "{e}"
        );
        let e = load("rules:\n  sshd: { request_time: 200000000000d }\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn sentinel_and_tls_settings_are_checked_and_located() {
        let ok = load(
            "store: redis\nredis:\n  url: rediss://pyfilter:pw@any/0\n  sentinels: [10.0.0.5:26379, 'sentinel-2:26379', '[2001:db8::5]:26379']\n  master: fleet\n  tls_ca: /etc/pyfilter/ca.pem\n",
        )
        .unwrap();
        assert_eq!(ok.redis.sentinels.len(), 3);
        assert_eq!(
            sentinel_addr("[2001:db8::5]:26379"),
            Some(("2001:db8::5".into(), 26379))
        );
        for (text, line, says) in [
            (
                "store: redis\nredis:\n  sentinels: [10.0.0.5]\n  master: fleet\n",
                3,
                "`10.0.0.5` is not host:port",
            ),
            (
                "store: redis\nredis:\n  sentinels: [10.0.0.5:26379]\n",
                3,
                "need redis.master beside them",
            ),
            (
                "store: redis\nredis:\n  master: fleet\n",
                3,
                "needs redis.sentinels beside it",
            ),
            (
                "store: redis\nredis:\n  url: redis://h/0\n  tls_ca: /ca.pem\n",
                4,
                "needs a rediss:// URL",
            ),
            (
                "store: redis\nredis:\n  url: rediss://h/0\n  tls_cert: /c.pem\n",
                4,
                "needs redis.tls_key beside it",
            ),
        ] {
            let e = load(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }
}
