//! A decision thread for the engine's unit tests: an `Engine` over a temporary SQLite
//! file, as the daemon opens it (the ban store and the bookkeeping on one file), with
//! either the `none` firewall or `Kernel`, a firewall double that remembers what it holds
//! and can refuse.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use tempfile::TempDir;

use super::Engine;
use crate::ban::{Ban, NewBan, Origin};
use crate::config::ConfigSource;
use crate::event::{Attempt, Event};
use crate::firewall::{Entry, Firewall, FirewallError, NoFirewall};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::SqliteStore;

/// The rule attempts are counted for. Its numbers are the configuration's below.
pub const RULE: &str = "test";

/// An address the configuration ignores.
pub const IGNORED: &str = "192.0.2.200";

/// What the firewall double holds, shared with the test that gave it away.
#[derive(Debug, Default)]
struct Held {
    nets: BTreeSet<IpNet>,
    /// Calls to `ban` still to refuse.
    refuse: usize,
    /// Calls to `ban`, refused or not, and how many entries each carried.
    ban_calls: Vec<usize>,
}

/// A firewall double: holds bans in memory, refuses the first `refuse` calls to `ban`.
#[derive(Debug, Clone, Default)]
pub struct Kernel(Arc<Mutex<Held>>);

impl Kernel {
    pub fn refusing(calls: usize) -> Kernel {
        let kernel = Kernel::default();
        kernel.held().refuse = calls;
        kernel
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The networks the firewall holds now.
    pub fn nets(&self) -> Vec<IpNet> {
        self.held().nets.iter().copied().collect()
    }

    pub fn holds(&self, ip: &str) -> bool {
        self.held().nets.contains(&net(ip))
    }

    /// How many entries each call to `ban` carried.
    pub fn ban_calls(&self) -> Vec<usize> {
        self.held().ban_calls.clone()
    }
}

impl Firewall for Kernel {
    fn name(&self) -> &'static str {
        "test"
    }
    fn init(&mut self) -> Result<(), FirewallError> {
        Ok(())
    }
    fn restore(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        self.held().nets = bans.iter().map(|e| e.net).collect();
        Ok(())
    }
    fn ban(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        let mut held = self.held();
        held.ban_calls.push(bans.len());
        if held.refuse > 0 {
            held.refuse -= 1;
            return Err(FirewallError::Command {
                command: "test ban".into(),
                status: "exit status: 4".into(),
                stderr: "resource temporarily unavailable".into(),
            });
        }
        held.nets.extend(bans.iter().map(|e| e.net));
        Ok(())
    }
    fn unban(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        let mut held = self.held();
        for net in nets {
            held.nets.remove(net);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), FirewallError> {
        self.held().nets.clear();
        Ok(())
    }
}

/// An engine, restored as the daemon restores it at start, and where its state lives.
pub struct Fixture {
    pub engine: Engine,
    /// The configuration the engine was made with.
    pub settings: Settings,
    db: PathBuf,
    /// Holds the rules and the database until the test ends.
    _dir: TempDir,
}

/// `failed_attempts: 3`, `request_time: 1m`, `ban_time: 1h`, and `IGNORED` ignored;
/// `extra` is added to the configuration (a key given there wins).
pub fn settings(dir: &Path, extra: &str) -> Settings {
    let rules = dir.join("rules.d");
    std::fs::create_dir_all(&rules).expect("a rules directory");
    std::fs::write(
        rules.join("test.yml"),
        format!("name: {RULE}\npatterns: ['failed from <IP>$']\n"),
    )
    .expect("a rule file");
    let base = [
        ("server_name", "test".to_string()),
        ("rules_dir", rules.display().to_string()),
        (
            "sqlite",
            format!("{{ path: {} }}", dir.join("db").display()),
        ),
        ("firewall", "{ backend: none }".into()),
        ("failed_attempts", "3".into()),
        ("request_time", "1m".into()),
        ("ban_time", "1h".into()),
        ("ignore", format!("[127.0.0.0/8, '::1', {IGNORED}]")),
    ];
    let mut text: String = base
        .iter()
        .filter(|(key, _)| !extra.lines().any(|l| l.starts_with(&format!("{key}:"))))
        .map(|(key, value)| format!("{key}: {value}\n"))
        .collect();
    text.push_str(extra);
    Settings::from_text(Path::new("test.yml"), &text, ConfigSource::Embedded)
        .expect("a valid configuration")
}

impl Fixture {
    /// An engine with the `none` firewall.
    pub fn new(extra: &str) -> Fixture {
        Fixture::with_firewall(extra, Box::new(NoFirewall))
    }

    /// An engine with the firewall double.
    pub fn with_kernel(extra: &str, kernel: &Kernel) -> Fixture {
        Fixture::with_firewall(extra, Box::new(kernel.clone()))
    }

    /// An engine with the firewall double, whose store gives up on a locked database
    /// at once (a full disk refuses as fast).
    pub fn with_kernel_fast_store(extra: &str, kernel: &Kernel) -> Fixture {
        Fixture::build(
            extra,
            Box::new(kernel.clone()),
            Some(Duration::from_millis(20)),
        )
    }

    fn with_firewall(extra: &str, firewall: Box<dyn Firewall>) -> Fixture {
        Fixture::build(extra, firewall, None)
    }

    fn build(extra: &str, firewall: Box<dyn Firewall>, busy: Option<Duration>) -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let settings = settings(dir.path(), extra);
        let db = settings.config.sqlite.path.clone();
        let mut store = SqliteStore::open(&db).expect("the ban store");
        let mut local = SqliteStore::open(&db).expect("the bookkeeping store");
        if let Some(busy) = busy {
            store.set_busy_timeout(busy).expect("a busy timeout");
            local.set_busy_timeout(busy).expect("a busy timeout");
        }
        let mut engine = Engine::new(
            &settings,
            firewall,
            Box::new(store),
            local,
            Arc::new(Metrics::default()),
        );
        engine.restore().expect("a restore of an empty store");
        Fixture {
            engine,
            settings,
            db,
            _dir: dir,
        }
    }

    /// The engine's database file.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// Another connection to the engine's database, as the CLI or another process has.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.db).expect("the database")
    }

    /// The active bans, as the store holds them.
    pub fn active(&self) -> Vec<Ban> {
        self.store().active_bans().expect("the active bans")
    }

    /// Whether the store holds an active ban of `ip`.
    pub fn banned(&self, ip: &str) -> bool {
        self.active().iter().any(|b| b.net == net(ip))
    }
}

/// `ip` as the single-address network a ban of it holds.
pub fn net(ip: &str) -> IpNet {
    IpNet::from(ip.parse::<IpAddr>().expect("an address"))
}

/// An attempt of `ip` against the test rule, written on the log at `at`.
pub fn attempt_at(ip: &str, at: DateTime<Utc>) -> Event {
    Event::Attempt(Attempt {
        rule: Arc::from(RULE),
        ip: ip.parse().expect("an address"),
        at: at.fixed_offset(),
        instant: false,
        line: format!("failed from {ip}"),
    })
}

/// An attempt of `ip` written on the log now.
pub fn attempt(ip: &str) -> Event {
    attempt_at(ip, Utc::now())
}

/// An attempt of `ip` that matched an instant pattern.
pub fn instant(ip: &str) -> Event {
    match attempt(ip) {
        Event::Attempt(a) => Event::Attempt(Attempt { instant: true, ..a }),
        _ => unreachable!("attempt makes attempts"),
    }
}

/// A ban of `ip` as another server or the CLI records it, ending at `until`.
pub fn ban_by_others(ip: &str, until: Option<DateTime<Utc>>) -> NewBan {
    NewBan {
        net: net(ip),
        rule: RULE.into(),
        reason: "banned elsewhere".into(),
        attempts: 0,
        server: "web-2".into(),
        source: Origin::Manual,
        banned_at: Utc::now(),
        expires_at: until,
    }
}

/// Sleeps until the engine's next deadline, then does what is due.
pub fn wait_and_tick(engine: &mut Engine) {
    let deadline = engine.deadline().expect("something is due");
    std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
    engine.tick();
}
