//! The store: the truth about bans (active and past) and about how far each log was read.
//!
//! Bans live in SQLite on one server (`sqlite`) or in Redis across a fleet (`redis`), both
//! behind `BanStore`; read positions (and Redis's outbox) always stay in the local SQLite
//! file, since they belong to one machine. The admin's users and tokens live beside the
//! bans (`accounts`); `figures` asks a store for the ban figures the metrics show. Redis
//! publishes each change as the fleet's wire event (`fleet::wire`).

pub mod accounts;
pub mod figures;
pub mod redis;
pub mod sqlite;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

pub use self::redis::RedisStore;
pub use accounts::{Accounts, User};
pub use sqlite::{CountChanges, SavedCount, SqliteStore};

use crate::ban::{Ban, BanQuery, Change, NewBan, Page, Recorded, Summary};
use crate::config::StoreKind;
use crate::settings::Settings;

/// Where bans are kept. Every method may fail when the store cannot be reached.
pub trait BanStore: Send {
    /// Records bans; an address already banned is left as it is.
    fn record_many(&mut self, bans: &[NewBan]) -> Result<Vec<Recorded>, StoreError>;
    /// Lifts the bans of `nets`; returns those that were active.
    fn lift_many(
        &mut self,
        nets: &[IpNet],
        at: DateTime<Utc>,
        why: &str,
    ) -> Result<Vec<Ban>, StoreError>;
    /// Active bans, oldest first.
    fn active_bans(&mut self) -> Result<Vec<Ban>, StoreError>;
    /// Every ban, active and lifted, oldest first.
    fn all_bans(&mut self) -> Result<Vec<Ban>, StoreError>;
    /// Active bans whose time is up at `now`.
    fn due(&mut self, now: DateTime<Utc>) -> Result<Vec<Ban>, StoreError>;
    /// When the next active ban expires.
    fn next_expiry(&mut self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Drops lifted bans lifted before `before`; returns how many.
    fn purge_history(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError>;
    /// How many bans of exactly `net` began at or after `since` (active or lifted).
    fn bans_since(&mut self, net: &IpNet, since: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Delivers changes queued while the store was unreachable; returns how many.
    fn flush_outbox(&mut self) -> Result<usize, StoreError> {
        Ok(0)
    }
    /// Rewrites a shared store kept in an older, larger layout into the current one;
    /// how many records were rewritten (`None`: not a shared store).
    fn compact(&mut self) -> Result<Option<usize>, StoreError> {
        Ok(None)
    }
    /// A token that changes when a shared store lost its data (`None`: not shared).
    fn epoch(&mut self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    /// The active bans of exactly these networks (those that have one).
    fn active_bans_of(&mut self, nets: &[IpNet]) -> Result<Vec<Ban>, StoreError> {
        let nets: std::collections::HashSet<&IpNet> = nets.iter().collect();
        Ok(self
            .active_bans()?
            .into_iter()
            .filter(|b| nets.contains(&b.net))
            .collect())
    }
    /// Where the change feed ends now; `None` for a store without one (Redis publishes
    /// its changes instead).
    fn feed_end(&mut self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    /// The changes after feed position `after`, up to and with `to`, in order.
    fn changes(&mut self, _after: i64, _to: i64) -> Result<Vec<Change>, StoreError> {
        Ok(Vec::new())
    }
    /// The daemon applied the feed up to `seq` (at `at`, Unix seconds); rows it read
    /// long ago are trimmed, a step at a time.
    fn feed_read(&mut self, _seq: i64, _at: i64) -> Result<(), StoreError> {
        Ok(())
    }
    /// A page of the active bans as the firewall needs them, from `cursor` (0 first).
    /// Read a page at a time, a million bans take little memory. A ban may come twice;
    /// one that began or ended meanwhile may or may not be there; one missed otherwise
    /// is rare (Redis: more bans lifted during one page than pages overlap), which is why
    /// a ban not seen is checked with `still_active` before it is taken for gone.
    fn active_page(&mut self, cursor: u64) -> Result<ActivePage, StoreError> {
        let _ = cursor;
        Ok(ActivePage {
            bans: self
                .active_bans()?
                .iter()
                .map(|b| Active {
                    net: b.net,
                    expires_at: b.expires_at,
                })
                .collect(),
            next: None,
            total: None,
        })
    }
    /// Whether each of `nets` has an active ban now.
    fn still_active(&mut self, nets: &[IpNet]) -> Result<Vec<bool>, StoreError> {
        let active: std::collections::HashSet<IpNet> =
            self.active_bans()?.iter().map(|b| b.net).collect();
        Ok(nets.iter().map(|n| active.contains(n)).collect())
    }
    /// Whether the store holds a record of `ban`, active or lifted. A ban this server
    /// made that the store neither holds nor lifted was lost by it (a failover that
    /// came before the ban reached the replica).
    fn holds(&mut self, ban: &NewBan) -> Result<bool, StoreError> {
        let _ = ban;
        Ok(true)
    }
    /// One ban by its id.
    fn ban(&mut self, id: i64) -> Result<Option<Ban>, StoreError> {
        Ok(self.all_bans()?.into_iter().find(|b| b.id == id))
    }
    /// The dashboard's figures at `now`.
    fn summary(&mut self, now: DateTime<Utc>) -> Result<Summary, StoreError> {
        Ok(Summary::of(&self.all_bans()?, now))
    }
    /// A page of the history.
    fn search(&mut self, query: &BanQuery) -> Result<Page, StoreError> {
        Ok(query.page(self.all_bans()?))
    }
}

/// An active ban as the firewall needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    pub net: IpNet,
    /// `None`: forever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A page of the active bans, and the cursor of the next (`None`: this was the last).
#[derive(Debug, Default)]
pub struct ActivePage {
    pub bans: Vec<Active>,
    pub next: Option<u64>,
    /// On the first page, when the store can tell: how many active bans there are.
    pub total: Option<usize>,
}

/// The store the configuration names, before it is seen as bans or as accounts.
enum Configured {
    Sqlite(SqliteStore),
    Redis(Box<RedisStore>),
}

fn open_configured(settings: &Settings) -> Result<Configured, StoreError> {
    let c = &settings.config;
    Ok(match c.store {
        StoreKind::Sqlite => Configured::Sqlite(SqliteStore::open(&c.sqlite.path)?),
        StoreKind::Redis => Configured::Redis(Box::new(RedisStore::open(
            &c.redis,
            &c.sqlite.path,
            c.history_retention,
            &c.server_name,
        )?)),
    })
}

/// Opens the store the configuration names for reading only (`list`, `check`, `admin
/// users`): nothing is created or written, so it works for anyone who may read the state.
pub fn open_read_only(settings: &Settings) -> Result<Box<dyn AdminStore>, StoreError> {
    let c = &settings.config;
    Ok(match c.store {
        StoreKind::Sqlite => Box::new(SqliteStore::open_read_only(&c.sqlite.path)?),
        StoreKind::Redis => Box::new(RedisStore::read_only(
            &c.redis,
            c.history_retention,
            &c.server_name,
        )?),
    })
}

/// Opens the store the configuration names.
pub fn open(settings: &Settings) -> Result<Box<dyn BanStore>, StoreError> {
    Ok(match open_configured(settings)? {
        Configured::Sqlite(s) => Box::new(s),
        Configured::Redis(r) => r,
    })
}

/// Opens where the admin's users and tokens live: the same store as the bans, so a
/// fleet shares its admin accounts through Redis.
pub fn open_accounts(settings: &Settings) -> Result<Box<dyn Accounts>, StoreError> {
    Ok(match open_configured(settings)? {
        Configured::Sqlite(s) => Box::new(s),
        Configured::Redis(r) => r,
    })
}

/// Bans and the admin's accounts over one connection, for the admin.
pub trait AdminStore: BanStore + Accounts {}

impl<T: BanStore + Accounts> AdminStore for T {}

/// Opens the store the configuration names, with its accounts.
pub fn open_admin(settings: &Settings) -> Result<Box<dyn AdminStore>, StoreError> {
    Ok(match open_configured(settings)? {
        Configured::Sqlite(s) => Box::new(s),
        Configured::Redis(r) => r,
    })
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis {url}: {message}")]
    Redis { url: String, message: String },
    #[error("Redis {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "Redis {url} refused {what} to pyfilter's user: grant it (the README's ACL line lists what pyfilter runs): {message}"
    )]
    Denied {
        url: String,
        what: String,
        message: String,
    },
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the database {path} private to its owner: {source}")]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SQLite database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "SQLite database {path} has schema version {found}, newer than this pyfilter knows ({known}); upgrade pyfilter"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "SQLite database {path} has schema version {found}, older than this pyfilter's ({known}); run `pyfilter prune` as root once to upgrade it"
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "cannot read {path}: permission denied; run this as root (sudo), or as a member of the group that may read the state directory"
    )]
    NotPermitted { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SQLite database {path}: corrupt row: {message}")]
    Corrupt { path: PathBuf, message: String },
}
