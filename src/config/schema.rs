//! `pyfilter.yml` as written: its sections, their types and their defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::{BanTime, de_duration, de_opt_duration};
use crate::net::Net;

/// `pyfilter.yml` as written. A key left out takes its value from `Config::default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server_name: String,
    pub failed_attempts: NonZeroU32,
    #[serde(deserialize_with = "de_duration")]
    pub request_time: Duration,
    pub ban_time: BanTime,
    /// Repeat offenders: longer bans for an address banned before.
    pub ban_time_increment: Option<Increment>,
    pub ignore: Vec<Net>,
    #[serde(deserialize_with = "de_duration")]
    pub history_retention: Duration,
    pub rules_dir: PathBuf,
    pub firewall: FirewallConfig,
    pub store: StoreKind,
    pub sqlite: SqliteConfig,
    pub redis: RedisConfig,
    /// Longest line matched, in bytes; a longer line is counted and never matched.
    pub max_line_bytes: usize,
    /// How often a log is read where inotify cannot serve it (no instance or watch left,
    /// a filesystem without events).
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// Count and ban IPv6 attackers by this prefix length (64: a whole /64 as one).
    pub ipv6_prefix: u8,
    /// Most (rule, address) counters held at once.
    pub max_tracked: usize,
    pub rules: BTreeMap<String, RuleOverride>,
    /// When set, exactly these rules run, whatever their files and `rules` say.
    pub enabled_rules: Option<Vec<String>>,
    /// `pyfilter admin`, the web interface.
    pub admin: AdminConfig,
    /// Who is told of bans and unbans (`notify.rs`).
    pub notify: Vec<super::NotifyConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: host_name(),
            failed_attempts: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            request_time: Duration::from_secs(600),
            ban_time: BanTime::For(Duration::from_secs(86400)),
            ban_time_increment: None,
            ignore: ["127.0.0.0/8", "::1"]
                .iter()
                .map(|n| Net(crate::net::parse_net(n).expect("valid default")))
                .collect(),
            history_retention: Duration::from_secs(90 * 86400),
            rules_dir: PathBuf::from("/etc/pyfilter/rules.d"),
            firewall: FirewallConfig::default(),
            store: StoreKind::default(),
            sqlite: SqliteConfig::default(),
            redis: RedisConfig::default(),
            max_line_bytes: 16 * 1024,
            poll_interval: Duration::from_secs(1),
            ipv6_prefix: 128,
            max_tracked: 1_000_000,
            rules: BTreeMap::new(),
            enabled_rules: None,
            admin: AdminConfig::default(),
            notify: Vec::new(),
        }
    }
}

/// This machine's host name, the default `server_name`.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or truncates, and we stop at the first NUL either way.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = ok.then(|| {
        String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())])
            .into_owned()
    });
    name.filter(|n| !n.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `ban_time_increment`: each earlier ban of the same address within `window` multiplies
/// the ban time by `factor`, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    #[serde(default = "Increment::default_factor")]
    pub factor: f64,
    #[serde(deserialize_with = "de_duration")]
    pub max: Duration,
    #[serde(
        default = "Increment::default_window",
        deserialize_with = "de_duration"
    )]
    pub window: Duration,
}

impl Increment {
    // `max` has no default, so the struct cannot take its defaults from a `Default`
    // impl as the other sections do: the two keys that have one get them here.
    fn default_factor() -> f64 {
        2.0
    }

    fn default_window() -> Duration {
        Duration::from_secs(30 * 86400)
    }

    /// The ban time for an address banned `earlier` times within the window.
    pub fn apply(&self, base: BanTime, earlier: usize) -> BanTime {
        match base {
            BanTime::Forever => BanTime::Forever,
            BanTime::For(d) => {
                let scaled =
                    d.as_secs_f64() * self.factor.powi(i32::try_from(earlier).unwrap_or(i32::MAX));
                BanTime::For(Duration::from_secs_f64(
                    scaled
                        .min(self.max.as_secs_f64())
                        .max(d.as_secs_f64().min(self.max.as_secs_f64())),
                ))
            }
        }
    }
}

/// Per-rule settings in `pyfilter.yml`, over those of the rule file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleOverride {
    pub enabled: Option<bool>,
    pub failed_attempts: Option<NonZeroU32>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub request_time: Option<Duration>,
    pub ban_time: Option<BanTime>,
    pub log_files: Option<Vec<String>>,
    /// Read this journal (matches, file) instead of the rule file's.
    pub journal: Option<JournalSpec>,
    /// For rules whose patterns use `<URL>`.
    pub urls: Option<Vec<String>>,
    /// For rules whose patterns use `<STATUS>`.
    pub statuses: Option<Vec<u16>>,
    /// Which of the rule's modes runs (`aggressive`, ...): its default mode when unset.
    pub mode: Option<String>,
}

/// Which journal entries a rule reads: `journalctl` matches (`FIELD=value`; one field
/// given twice means either value; `+` between matches means either side), and optionally a journal file or directory instead
/// of the system journal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSpec {
    #[serde(rename = "match", default)]
    pub matches: Vec<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// The `firewall` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct FirewallConfig {
    pub backend: Backend,
    pub action: Action,
    /// pyfilter's own chain.
    pub chain: String,
    /// Chains that jump to pyfilter's chain (e.g. `INPUT`, `DOCKER-USER`).
    pub parents: Vec<String>,
    /// Base name of the ipset sets, or the nftables table.
    pub set: String,
    /// Most members of one set (ipset `maxelem`, nftables set `size`).
    pub maxelem: u32,
    /// nftables: the hooks pyfilter's table filters (`input`; `forward` for containers).
    pub hooks: Vec<String>,
    /// nftables: the priority of pyfilter's base chains (lower runs earlier).
    pub priority: i32,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            backend: Backend::default(),
            action: Action::default(),
            chain: "PYFILTER".into(),
            parents: vec!["INPUT".into()],
            set: "pyfilter".into(),
            maxelem: 1 << 20,
            hooks: vec!["input".into()],
            priority: -10,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Iptables,
    Ipset,
    Nftables,
    /// Record bans without touching the firewall.
    None,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Iptables => "iptables",
            Backend::Ipset => "ipset",
            Backend::Nftables => "nftables",
            Backend::None => "none",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Action {
    #[default]
    #[serde(rename = "DROP", alias = "drop")]
    Drop,
    #[serde(rename = "REJECT", alias = "reject")]
    Reject,
}

impl Action {
    pub fn target(self) -> &'static str {
        match self {
            Action::Drop => "DROP",
            Action::Reject => "REJECT",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Sqlite,
    Redis,
}

/// The `sqlite` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    pub path: PathBuf,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("/var/lib/pyfilter/pyfilter.db"),
        }
    }
}

/// The `redis` section: the fleet's shared store and ban channel.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://...` (TLS) or
    /// `redis+unix:///path/to/socket?db=N`.
    pub url: String,
    /// Publish this server's bans and apply the others'.
    pub sync: bool,
    /// Prefix of every key pyfilter writes.
    pub prefix: String,
    /// The pub/sub channel of ban events (default: the prefix + `events`).
    pub channel: Option<String>,
    /// How often the firewall is reconciled with the active bans in Redis.
    #[serde(deserialize_with = "de_duration")]
    pub reconcile_every: Duration,
    /// How long connecting may take before Redis counts as unreachable.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Redis Sentinel: the sentinels to ask where the primary is (`host:port` each). With
    /// them, `url` gives only the scheme, user, password and database.
    pub sentinels: Vec<String>,
    /// The name the sentinels know the primary by (`sentinel monitor NAME ...`).
    pub master: Option<String>,
    /// The sentinels' own password (their `requirepass`), and user when they use ACLs.
    pub sentinel_user: Option<String>,
    pub sentinel_password: Option<String>,
    /// TLS (`rediss://`): the certificate authority (PEM) that signed Redis's certificate,
    /// instead of the public authorities built in.
    pub tls_ca: Option<PathBuf>,
    /// TLS: a client certificate and its key (PEM), for a Redis with `tls-auth-clients`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl RedisConfig {
    /// Whether the primary is found through Redis Sentinel.
    pub fn uses_sentinel(&self) -> bool {
        !self.sentinels.is_empty()
    }

    pub fn channel(&self) -> String {
        self.channel
            .clone()
            .unwrap_or_else(|| format!("{}events", self.prefix))
    }
}

/// A URL with its password replaced by `***`, fit for logs and messages.
pub fn redacted(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    // redis+unix URLs carry the password as `?pass=`.
    if u.query_pairs().any(|(k, _)| k == "pass") {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "pass" {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            sync: true,
            prefix: "pyfilter:".into(),
            channel: None,
            reconcile_every: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
            sentinels: Vec::new(),
            master: None,
            sentinel_user: None,
            sentinel_password: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The `admin` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `pyfilter admin` listens (`--listen` overrides).
    pub listen: SocketAddr,
    /// Sign-ins, sign-outs and the bans made in the admin are written here; failed
    /// sign-ins are what the `pyfilter-admin` rule reads.
    pub log: PathBuf,
    /// A session unused this long is over.
    #[serde(deserialize_with = "de_duration")]
    pub session_idle: Duration,
    /// Failed sign-ins allowed per client address within `sign_in_window`.
    pub sign_in_attempts: NonZeroU32,
    #[serde(deserialize_with = "de_duration")]
    pub sign_in_window: Duration,
    /// PEM certificate chain and key: serve HTTPS (`--tls-cert`/`--tls-key` override).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<Net>,
    /// A MaxMind GeoLite2/GeoIP2 Country or City database: country per ban (read
    /// locally, never looked up over the network).
    pub geoip: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log: "/var/log/pyfilter/admin.log".into(),
            session_idle: Duration::from_secs(30 * 60),
            sign_in_attempts: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            sign_in_window: Duration::from_secs(15 * 60),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            geoip: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{ConfigError, parse};
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/pyfilter/pyfilter.yml"), text)
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redacted("redis://user:secret@10.0.0.1:6379/0"),
            "redis://user:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis+unix:///run/redis.sock?pass=secret&db=2"),
            "redis+unix:///run/redis.sock?pass=***&db=2"
        );
        assert_eq!(redacted("redis://127.0.0.1/0"), "redis://127.0.0.1/0");
    }

    #[test]
    fn repeat_offenders_get_longer_bans_up_to_the_maximum() {
        let s = load("ban_time: 1h\nban_time_increment: { factor: 3, max: 1d }\n").unwrap();
        let inc = s.ban_time_increment.unwrap();
        let base = s.ban_time;
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
}
