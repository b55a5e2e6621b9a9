//! The configuration: `pyfilter.yml` (or the embedded default), the rules it enables,
//! and errors that name the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::{BanTime, de_duration, de_opt_duration};
use crate::net::{IgnoreList, Net};
use crate::rule::{self, Limits, Rule};

/// Where pyfilter looks for its configuration unless `-c` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/pyfilter/pyfilter.yml";

/// The shipped rule that reads the admin's failed sign-ins from `admin.log`.
pub const ADMIN_RULE: &str = "pyfilter-admin";

/// The configuration used when no file exists at the default path.
pub const EMBEDDED_DEFAULT: &str = include_str!("../pyfilter.yml");

/// A configuration or rule error, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn plain(file: impl AsRef<Path>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.as_ref().to_path_buf(),
            line: None,
            message: message.into(),
        }
    }

    /// A YAML error, its position moved to the front where people and editors look for it.
    pub fn yaml(file: impl AsRef<Path>, err: &serde_yaml::Error) -> ConfigError {
        let mut message = err.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        ConfigError {
            file: file.as_ref().to_path_buf(),
            line: err.location().map(|l| l.line()),
            message,
        }
    }

    /// A deserialization error with the path of the key it concerns. serde_yaml locates
    /// syntax errors and unknown keys itself, but a bad value (a duration, an address)
    /// only by the path, which is looked up in the text.
    pub fn located(
        file: impl AsRef<Path>,
        text: &str,
        err: serde_path_to_error::Error<serde_yaml::Error>,
    ) -> ConfigError {
        let path = err.path().to_string();
        let mut located = ConfigError::yaml(file, err.inner());
        let keys: Vec<&str> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        let unknown_field = located.message.contains("unknown field");
        if !unknown_field && let Some(line) = locate(text, &keys) {
            located.line = Some(line);
        }
        if !unknown_field && path != "." && !located.message.starts_with(&path) {
            located.message = format!("{path}: {}", located.message);
        }
        located
    }

    /// An error about `key`, located at the first line of `text` that defines it.
    pub fn at_key(
        file: impl AsRef<Path>,
        text: &str,
        key: &str,
        message: impl fmt::Display,
    ) -> ConfigError {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let line = text.lines().position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.starts_with(&format!("{leaf}:")) || l.starts_with(&format!("\"{leaf}\":"))
        });
        ConfigError {
            file: file.as_ref().to_path_buf(),
            line: line.map(|l| l + 1),
            message: format!("{key}: {message}"),
        }
    }
}

/// The 1-based line where the nested `keys` are defined, following them down the text.
fn locate(text: &str, keys: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    for key in keys {
        let found = (from..lines.len()).find(|&i| {
            let l = lines[i];
            l.match_indices(&format!("{key}:")).any(|(at, _)| {
                at == 0
                    || l.as_bytes()[at - 1].is_ascii_whitespace()
                    || matches!(l.as_bytes()[at - 1], b'{' | b',' | b'"' | b'\'')
            })
        })?;
        from = found;
    }
    (!keys.is_empty()).then_some(from + 1)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

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
        let rules = compile_rules(name, text, &config)?;
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

fn valid_chain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 28
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn validate(name: &Path, text: &str, config: &Config) -> Result<(), ConfigError> {
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

fn compile_rules(name: &Path, text: &str, config: &Config) -> Result<Vec<Rule>, ConfigError> {
    let sources = rule::load_sources(&config.rules_dir)?;
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
        } else if file.name == ADMIN_RULE && matches!(source.origin, rule::Origin::Embedded(_)) {
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
            rule::Origin::File(p) => ConfigError::at_key(
                p,
                &std::fs::read_to_string(p).unwrap_or_default(),
                "patterns",
                e,
            ),
            rule::Origin::Embedded(n) => ConfigError::plain(
                Path::new("rules.d").join(n),
                format!("rule `{rule_name}`: {e}"),
            ),
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

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
