//! The store: the truth about bans (active and past) and about how far each log was read.
//!
//! Only SQLite exists today (`sqlite`); the record types here are what any store keeps.

pub mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

pub use sqlite::SqliteStore;

/// Who decided a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Counted from log lines.
    Log,
    /// `pyfilter ban` or the admin.
    Manual,
    /// Another server.
    Remote,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Log => "log",
            Origin::Manual => "manual",
            Origin::Remote => "remote",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Origin, String> {
        match s {
            "log" => Ok(Origin::Log),
            "manual" => Ok(Origin::Manual),
            "remote" => Ok(Origin::Remote),
            other => Err(format!("unknown ban source `{other}`")),
        }
    }
}

/// A ban about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBan {
    pub net: IpNet,
    pub rule: String,
    /// The log line that tipped it, verbatim, or the reason given by hand.
    pub reason: String,
    pub attempts: u32,
    pub server: String,
    pub source: Origin,
    pub banned_at: DateTime<Utc>,
    /// `None`: forever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A recorded ban, active or lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub id: i64,
    pub new: NewBan,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lift_reason: Option<String>,
}

impl std::ops::Deref for Ban {
    type Target = NewBan;
    fn deref(&self) -> &NewBan {
        &self.new
    }
}

/// Where reading a log file stopped: the file's identity and the offset just past the
/// last whole line handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
}

/// A log file and its position.
pub type Positions = std::collections::HashMap<PathBuf, Position>;

/// What recording a ban did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new active ban.
    New(Ban),
    /// The address was already banned; nothing changed.
    AlreadyBanned(Ban),
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
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
    #[error("SQLite database {path}: corrupt row: {message}")]
    Corrupt { path: PathBuf, message: String },
}
