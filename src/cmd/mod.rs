//! The short-lived CLI commands. Each opens the same store and firewall modules the
//! daemon uses, does its one job and exits.

pub mod admin;
pub mod ban;
pub mod check;
pub mod flush;
pub mod import;
pub mod list;
pub mod prune;
pub mod scan;
pub mod unban;

use chrono::{DateTime, Local, SecondsFormat, Utc};

/// A mistake in what the user typed: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A time for people: local, to the second.
pub fn human_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A time for programs: RFC 3339 in local time with its offset.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}
