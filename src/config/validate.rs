//! The checks a parsed configuration must pass beyond its types, each refusing it with a
//! message located at the key concerned.

use std::path::Path;

use super::{Config, ConfigError, RedisConfig, StoreKind, redacted};

/// A check: what is wrong with the configuration at its key, or `None` when nothing is.
type Check = fn(&Config) -> Option<String>;

/// The checks, in the order they run: the first that fails is the one reported.
const CHECKS: &[(&str, Check)] = &[
    ("server_name", |c| {
        c.server_name
            .trim()
            .is_empty()
            .then(|| "must not be empty".into())
    }),
    ("firewall.chain", |c| {
        (!valid_name(&c.firewall.chain, 28)).then(|| {
            format!(
                "`{}` is not a valid chain name (letters, digits, - and _, at most 28)",
                c.firewall.chain
            )
        })
    }),
    ("firewall.parents", |c| {
        c.firewall
            .parents
            .iter()
            .find(|p| !valid_name(p, 28))
            .map(|bad| format!("`{bad}` is not a valid chain name"))
    }),
    ("firewall.parents", |c| {
        c.firewall
            .parents
            .contains(&c.firewall.chain)
            .then(|| "must not contain pyfilter's own chain".into())
    }),
    ("firewall.set", |c| {
        (!valid_name(&c.firewall.set, 22)).then(|| {
            format!(
                "`{}` is not a valid set/table name (letters, digits, - and _, at most 22)",
                c.firewall.set
            )
        })
    }),
    ("firewall.maxelem", |c| at_least(c.firewall.maxelem, 1)),
    ("firewall.hooks", |c| {
        c.firewall
            .hooks
            .is_empty()
            .then(|| "needs at least one hook".into())
    }),
    ("firewall.hooks", |c| {
        c.firewall
            .hooks
            .iter()
            .find(|h| !HOOKS.contains(&h.as_str()))
            .map(|bad| {
                format!("`{bad}` is not a hook pyfilter filters (input, forward, prerouting)")
            })
    }),
    ("redis.url", |c| {
        let url = &redis_in_use(c)?.url;
        let e = redis::Client::open(url.as_str()).err()?;
        Some(format!(
            "`{}` is not a Redis URL ({e}); write it like redis://127.0.0.1:6379/0, rediss://host:6380/0 or redis+unix:///run/redis.sock",
            redacted(url)
        ))
    }),
    ("redis.prefix", |c| {
        redis_in_use(c)?
            .prefix
            .is_empty()
            .then(|| "must not be empty".into())
    }),
    ("ban_time_increment.factor", |c| {
        c.ban_time_increment
            .is_some_and(|inc| !(inc.factor > 1.0 && inc.factor <= 100.0))
            .then(|| "must be above 1 and at most 100".into())
    }),
    ("ipv6_prefix", |c| {
        (!(16..=128).contains(&c.ipv6_prefix)).then(|| "must be between 16 and 128".into())
    }),
    ("max_line_bytes", |c| at_least(c.max_line_bytes, 256)),
    ("poll_interval", |c| {
        let ms = c.poll_interval.as_millis();
        (!(100..=600_000).contains(&ms)).then(|| "must be between 100ms and 10m".into())
    }),
    ("max_tracked", |c| at_least(c.max_tracked, 1000)),
];

/// The nftables hooks pyfilter's table can filter.
const HOOKS: [&str; 3] = ["input", "forward", "prerouting"];

/// Refuses `config` with the first check it fails, located in `text` (read from `name`).
pub fn validate(name: &Path, text: &str, config: &Config) -> Result<(), ConfigError> {
    CHECKS
        .iter()
        .try_for_each(|(key, check)| match check(config) {
            Some(message) => Err(ConfigError::at_key(name, text, key, message)),
            None => Ok(()),
        })
}

/// A chain, set or table name the firewall tools accept, at most `max` bytes long.
fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn at_least<T: PartialOrd + std::fmt::Display>(value: T, least: T) -> Option<String> {
    (value < least).then(|| format!("must be at least {least}"))
}

/// The `redis` section, when it matters: the store is Redis.
fn redis_in_use(config: &Config) -> Option<&RedisConfig> {
    (config.store == StoreKind::Redis).then_some(&config.redis)
}
