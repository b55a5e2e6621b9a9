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
    ("redis.sentinels", |c| {
        let r = redis_in_use(c)?;
        r.sentinels
            .iter()
            .find(|s| sentinel_addr(s).is_none())
            .map(|bad| format!("`{bad}` is not host:port (write it like 10.0.0.5:26379)"))
    }),
    ("redis.sentinels", |c| {
        let r = redis_in_use(c)?;
        (r.uses_sentinel() && r.master.as_deref().is_none_or(|m| m.trim().is_empty())).then(|| {
            "need redis.master beside them: the name of `sentinel monitor NAME ...`".into()
        })
    }),
    ("redis.master", |c| {
        let r = redis_in_use(c)?;
        (r.master.is_some() && !r.uses_sentinel())
            .then(|| "needs redis.sentinels beside it: list at least one, as host:port".into())
    }),
    ("redis.url", |c| {
        let r = redis_in_use(c)?;
        (r.uses_sentinel() && r.url.starts_with("redis+unix:")).then(|| {
            "cannot be a unix socket with redis.sentinels: write redis://[user:password@]any/DB (or rediss://); the sentinels name the host".into()
        })
    }),
    ("redis.tls_ca", |c| {
        let r = redis_in_use(c)?;
        (r.tls_ca.is_some() && !r.url.starts_with("rediss://"))
            .then(|| "needs a rediss:// URL in redis.url (TLS)".into())
    }),
    ("redis.tls_cert", |c| {
        let r = redis_in_use(c)?;
        (r.tls_cert.is_some() && r.tls_key.is_none()).then(|| {
            "needs redis.tls_key beside it: the certificate and its key go together".into()
        })
    }),
    ("redis.tls_key", |c| {
        let r = redis_in_use(c)?;
        (r.tls_key.is_some() && r.tls_cert.is_none()).then(|| {
            "needs redis.tls_cert beside it: the certificate and its key go together".into()
        })
    }),
    ("redis.tls_cert", |c| {
        let r = redis_in_use(c)?;
        (r.tls_cert.is_some() && !r.url.starts_with("rediss://"))
            .then(|| "needs a rediss:// URL in redis.url (TLS)".into())
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
    ("notify", |c| {
        c.notify.iter().enumerate().find_map(|(i, n)| {
            super::notify::check(n).map(|m| format!("entry {} ({}): {m}", i + 1, n.display_name()))
        })
    }),
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

/// `host:port` of a sentinel, the host a name or an address (IPv6 in brackets).
pub fn sentinel_addr(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| (host.to_string(), port))
}

/// The `redis` section, when it matters: the store is Redis.
fn redis_in_use(config: &Config) -> Option<&RedisConfig> {
    (config.store == StoreKind::Redis).then_some(&config.redis)
}
