//! `pyfilter.yml` as written: its sections, their types and their defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::{BanTime, de_duration, de_opt_duration};
use crate::net::Net;

/// `pyfilter.yml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "host_name")]
    pub server_name: String,
    #[serde(default = "default_failed_attempts")]
    pub failed_attempts: NonZeroU32,
    #[serde(default = "default_request_time", deserialize_with = "de_duration")]
    pub request_time: Duration,
    #[serde(default = "default_ban_time")]
    pub ban_time: BanTime,
    /// Repeat offenders: longer bans for an address banned before.
    #[serde(default)]
    pub ban_time_increment: Option<Increment>,
    #[serde(default = "default_ignore")]
    pub ignore: Vec<Net>,
    #[serde(default = "default_retention", deserialize_with = "de_duration")]
    pub history_retention: Duration,
    #[serde(default = "default_rules_dir")]
    pub rules_dir: PathBuf,
    #[serde(default)]
    pub firewall: FirewallConfig,
    #[serde(default)]
    pub store: StoreKind,
    #[serde(default)]
    pub sqlite: SqliteConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    /// Longest line kept, in bytes; the rest of a longer line is dropped.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
    /// Count and ban IPv6 attackers by this prefix length (64: a whole /64 as one).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Most (rule, address) counters held at once.
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
    #[serde(default)]
    pub rules: BTreeMap<String, RuleOverride>,
    /// When set, exactly these rules run, whatever their files and `rules` say.
    #[serde(default)]
    pub enabled_rules: Option<Vec<String>>,
    /// `pyfilter admin`, the web interface.
    #[serde(default)]
    pub admin: AdminConfig,
}

/// `ban_time_increment`: each earlier ban of the same address within `window` multiplies
/// the ban time by `factor`, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    #[serde(default = "default_factor")]
    pub factor: f64,
    #[serde(deserialize_with = "de_duration")]
    pub max: Duration,
    #[serde(default = "default_increment_window", deserialize_with = "de_duration")]
    pub window: Duration,
}

impl Increment {
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

fn default_factor() -> f64 {
    2.0
}
fn default_increment_window() -> Duration {
    Duration::from_secs(30 * 86400)
}

/// Per-rule settings in `pyfilter.yml`, over those of the rule file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    pub enabled: Option<bool>,
    pub failed_attempts: Option<NonZeroU32>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub request_time: Option<Duration>,
    pub ban_time: Option<BanTime>,
    pub log_files: Option<Vec<String>>,
    /// Read this journal (matches, file) instead of the rule file's.
    pub journal: Option<crate::rule::JournalSpec>,
    /// For rules whose patterns use `<URL>`.
    pub urls: Option<Vec<String>>,
    /// For rules whose patterns use `<STATUS>`.
    pub statuses: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FirewallConfig {
    #[serde(default)]
    pub backend: Backend,
    #[serde(default)]
    pub action: Action,
    /// pyfilter's own chain.
    #[serde(default = "default_chain")]
    pub chain: String,
    /// Chains that jump to pyfilter's chain (e.g. `INPUT`, `DOCKER-USER`).
    #[serde(default = "default_parents")]
    pub parents: Vec<String>,
    /// Base name of the ipset sets, or the nftables table.
    #[serde(default = "default_set")]
    pub set: String,
    /// Most members of one set (ipset `maxelem`, nftables set `size`).
    #[serde(default = "default_maxelem")]
    pub maxelem: u32,
    /// nftables: the hooks pyfilter's table filters (`input`; `forward` for containers).
    #[serde(default = "default_hooks")]
    pub hooks: Vec<String>,
    /// nftables: the priority of pyfilter's base chains (lower runs earlier).
    #[serde(default = "default_priority")]
    pub priority: i32,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            backend: Backend::default(),
            action: Action::default(),
            chain: default_chain(),
            parents: default_parents(),
            set: default_set(),
            maxelem: default_maxelem(),
            hooks: default_hooks(),
            priority: default_priority(),
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

/// The `redis` section: the fleet's shared store and ban channel.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://...` (TLS) or
    /// `redis+unix:///path/to/socket?db=N`.
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// Publish this server's bans and apply the others'.
    #[serde(default = "yes")]
    pub sync: bool,
    /// Prefix of every key pyfilter writes.
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    /// The pub/sub channel of ban events (default: the prefix + `events`).
    #[serde(default)]
    pub channel: Option<String>,
    /// How often the firewall is reconciled with the active bans in Redis.
    #[serde(default = "default_reconcile", deserialize_with = "de_duration")]
    pub reconcile_every: Duration,
    /// How long connecting may take before Redis counts as unreachable.
    #[serde(default = "default_redis_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

impl RedisConfig {
    pub fn channel(&self) -> String {
        self.channel
            .clone()
            .unwrap_or_else(|| format!("{}events", self.prefix))
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: default_redis_url(),
            sync: true,
            prefix: default_redis_prefix(),
            channel: None,
            reconcile_every: default_reconcile(),
            timeout: default_redis_timeout(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_redis_url() -> String {
    "redis://127.0.0.1:6379/0".into()
}
fn default_redis_prefix() -> String {
    "pyfilter:".into()
}
fn default_reconcile() -> Duration {
    Duration::from_secs(60)
}
fn default_redis_timeout() -> Duration {
    Duration::from_secs(2)
}

/// The `admin` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `pyfilter admin` listens (`--listen` overrides).
    #[serde(default = "default_admin_listen")]
    pub listen: std::net::SocketAddr,
    /// Sign-ins, sign-outs and the bans made in the admin are written here; failed
    /// sign-ins are what the `pyfilter-admin` rule reads.
    #[serde(default = "default_admin_log")]
    pub log: PathBuf,
    /// A session unused this long is over.
    #[serde(default = "default_session_idle", deserialize_with = "de_duration")]
    pub session_idle: Duration,
    /// Failed sign-ins allowed per client address within `sign_in_window`.
    #[serde(default = "default_sign_in_attempts")]
    pub sign_in_attempts: NonZeroU32,
    #[serde(default = "default_sign_in_window", deserialize_with = "de_duration")]
    pub sign_in_window: Duration,
    /// PEM certificate chain and key: serve HTTPS (`--tls-cert`/`--tls-key` override).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Net>,
    /// A MaxMind GeoLite2/GeoIP2 Country or City database: country per ban (read
    /// locally, never looked up over the network).
    #[serde(default)]
    pub geoip: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            log: default_admin_log(),
            session_idle: default_session_idle(),
            sign_in_attempts: default_sign_in_attempts(),
            sign_in_window: default_sign_in_window(),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            geoip: None,
        }
    }
}

fn default_admin_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_log() -> PathBuf {
    "/var/log/pyfilter/admin.log".into()
}
fn default_session_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_sign_in_attempts() -> NonZeroU32 {
    NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN)
}
fn default_sign_in_window() -> Duration {
    Duration::from_secs(15 * 60)
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    #[serde(default = "default_db")]
    pub path: PathBuf,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig { path: default_db() }
    }
}

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
fn default_failed_attempts() -> NonZeroU32 {
    NonZeroU32::new(5).expect("nonzero")
}
fn default_request_time() -> Duration {
    Duration::from_secs(600)
}
fn default_ban_time() -> BanTime {
    BanTime::For(Duration::from_secs(86400))
}
fn default_ignore() -> Vec<Net> {
    ["127.0.0.0/8", "::1"]
        .iter()
        .map(|n| Net(crate::net::parse_net(n).expect("valid default")))
        .collect()
}
fn default_retention() -> Duration {
    Duration::from_secs(90 * 86400)
}
fn default_rules_dir() -> PathBuf {
    PathBuf::from("/etc/pyfilter/rules.d")
}
fn default_chain() -> String {
    "PYFILTER".into()
}
fn default_parents() -> Vec<String> {
    vec!["INPUT".into()]
}
fn default_ipv6_prefix() -> u8 {
    128
}
fn default_set() -> String {
    "pyfilter".into()
}
fn default_maxelem() -> u32 {
    1 << 20
}
fn default_hooks() -> Vec<String> {
    vec!["input".into()]
}
fn default_priority() -> i32 {
    -10
}
fn default_db() -> PathBuf {
    PathBuf::from("/var/lib/pyfilter/pyfilter.db")
}
fn default_max_line() -> usize {
    16 * 1024
}
fn default_max_tracked() -> usize {
    1_000_000
}
