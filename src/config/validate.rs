//! The checks a parsed configuration must pass beyond its types, each refusing it with a
//! message located at the key concerned.

use std::path::Path;

use super::{Config, ConfigError, StoreKind};

fn valid_chain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 28
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn validate(name: &Path, text: &str, config: &Config) -> Result<(), ConfigError> {
    if config.server_name.trim().is_empty() {
        return Err(ConfigError::at_key(
            name,
            text,
            "server_name",
            "must not be empty",
        ));
    }
    if !valid_chain_name(&config.firewall.chain) {
        return Err(ConfigError::at_key(
            name,
            text,
            "firewall.chain",
            format!(
                "`{}` is not a valid chain name (letters, digits, - and _, at most 28)",
                config.firewall.chain
            ),
        ));
    }
    if let Some(bad) = config
        .firewall
        .parents
        .iter()
        .find(|p| !valid_chain_name(p))
    {
        return Err(ConfigError::at_key(
            name,
            text,
            "firewall.parents",
            format!("`{bad}` is not a valid chain name"),
        ));
    }
    if config.firewall.parents.contains(&config.firewall.chain) {
        return Err(ConfigError::at_key(
            name,
            text,
            "firewall.parents",
            "must not contain pyfilter's own chain",
        ));
    }
    let fw = &config.firewall;
    if fw.set.is_empty()
        || fw.set.len() > 22
        || !fw
            .set
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::at_key(
            name,
            text,
            "firewall.set",
            format!(
                "`{}` is not a valid set/table name (letters, digits, - and _, at most 22)",
                fw.set
            ),
        ));
    }
    if fw.maxelem == 0 {
        return Err(ConfigError::at_key(
            name,
            text,
            "firewall.maxelem",
            "must be at least 1",
        ));
    }
    if fw.hooks.is_empty() {
        return Err(ConfigError::at_key(
            name,
            text,
            "firewall.hooks",
            "needs at least one hook",
        ));
    }
    if let Some(bad) = fw
        .hooks
        .iter()
        .find(|h| !["input", "forward", "prerouting"].contains(&h.as_str()))
    {
        return Err(ConfigError::at_key(
            name,
            text,
            "firewall.hooks",
            format!("`{bad}` is not a hook pyfilter filters (input, forward, prerouting)"),
        ));
    }
    if config.store == StoreKind::Redis {
        let url = &config.redis.url;
        if let Err(e) = redis::Client::open(url.as_str()) {
            return Err(ConfigError::at_key(
                name,
                text,
                "redis.url",
                format!(
                    "`{}` is not a Redis URL ({e}); write it like redis://127.0.0.1:6379/0, rediss://host:6380/0 or redis+unix:///run/redis.sock",
                    crate::store::redacted(url)
                ),
            ));
        }
        if config.redis.prefix.is_empty() {
            return Err(ConfigError::at_key(
                name,
                text,
                "redis.prefix",
                "must not be empty",
            ));
        }
    }
    if let Some(inc) = &config.ban_time_increment
        && !(inc.factor > 1.0 && inc.factor <= 100.0)
    {
        return Err(ConfigError::at_key(
            name,
            text,
            "ban_time_increment.factor",
            "must be above 1 and at most 100",
        ));
    }
    if !(16..=128).contains(&config.ipv6_prefix) {
        return Err(ConfigError::at_key(
            name,
            text,
            "ipv6_prefix",
            "must be between 16 and 128",
        ));
    }
    if config.max_line_bytes < 256 {
        return Err(ConfigError::at_key(
            name,
            text,
            "max_line_bytes",
            "must be at least 256",
        ));
    }
    if config.max_tracked < 1000 {
        return Err(ConfigError::at_key(
            name,
            text,
            "max_tracked",
            "must be at least 1000",
        ));
    }
    Ok(())
}
