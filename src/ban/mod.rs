//! Bans as every stage sees them: who decided one (`Origin`), a ban about to be recorded
//! (`NewBan`), a recorded one (`Ban`), what recording it did (`Recorded`), one change of
//! a recorded ban as the daemon hears of it (`Change`), and the JSON
//! form programs read (`list --json`, the admin's `/api/bans`). The questions asked of
//! the bans as a whole (`query`) sit beside them, so the admin and the metrics need no
//! store to name them.

pub mod query;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;

use crate::config::{Config, StoreKind};
use crate::net::display_net;
use crate::time::rfc3339;

pub use query::{BanQuery, Page, Summary};

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

/// A ban source this pyfilter does not know (a record from a newer version, or tampered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ban source `{0}`")]
pub struct UnknownOrigin(pub String);

impl FromStr for Origin {
    type Err = UnknownOrigin;
    fn from_str(s: &str) -> Result<Origin, UnknownOrigin> {
        match s {
            "log" => Ok(Origin::Log),
            "manual" => Ok(Origin::Manual),
            "remote" => Ok(Origin::Remote),
            other => Err(UnknownOrigin(other.to_string())),
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

/// What recording a ban did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new active ban.
    New(Ban),
    /// The address was already banned; nothing changed.
    AlreadyBanned(Ban),
}

/// One change of a recorded ban, as the daemon hears of it: from the store's change feed
/// (SQLite) or from this server's own events on the ban channel (Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Change {
    pub net: IpNet,
    /// The ban's id in the store (`None` when the event did not carry it).
    pub ban: Option<i64>,
    /// Lifted, or (`false`) recorded.
    pub lifted: bool,
}

/// One ban in `list --json` and the admin's `/api/bans`.
#[derive(Serialize)]
pub struct BanJson<'a> {
    ip: String,
    rule: &'a str,
    reason: &'a str,
    server: &'a str,
    source: &'a str,
    attempts: u32,
    banned_at: String,
    expires_at: Option<String>,
    active: bool,
    lifted_at: Option<String>,
    lift_reason: Option<&'a str>,
}

impl Ban {
    /// The ban as programs read it.
    pub fn to_json(&self) -> BanJson<'_> {
        BanJson {
            ip: display_net(&self.net),
            rule: &self.rule,
            reason: &self.reason,
            server: &self.server,
            source: self.source.as_str(),
            attempts: self.attempts,
            banned_at: rfc3339(self.banned_at),
            expires_at: self.expires_at.map(rfc3339),
            active: self.lifted_at.is_none(),
            lifted_at: self.lifted_at.map(rfc3339),
            lift_reason: self.lift_reason.as_deref(),
        }
    }
}

/// In a fleet's shared store, a ban another server made is remote from this one.
pub fn mark_remote(config: &Config, bans: &mut [Ban]) {
    if config.store == StoreKind::Redis {
        for ban in bans {
            if ban.server != config.server_name {
                ban.new.source = Origin::Remote;
            }
        }
    }
}
