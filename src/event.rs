//! What the decision thread hears, over its one bounded channel: attempts found by the
//! log and journal watchers, how far each source was read, and the sync thread's news
//! of other servers' bans and of its link to Redis.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

use crate::store::Position;

/// A failed attempt found in a log.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub rule: Arc<str>,
    pub ip: IpAddr,
    /// The time written on the line.
    pub at: DateTime<FixedOffset>,
    /// Matched an `instant: true` pattern: ban now.
    pub instant: bool,
    /// The line, verbatim (lossy UTF-8): the reason recorded with a ban.
    pub line: String,
}

/// What watchers tell the decision thread.
#[derive(Debug)]
pub enum Event {
    Attempt(Attempt),
    /// How far a file has been handled (sent after the attempts it covers).
    Position {
        path: PathBuf,
        position: Position,
    },
    /// How far a rule's journal has been handled.
    Cursor {
        rule: String,
        cursor: String,
    },
    /// Another server's ban or unban (from the sync thread).
    Remote(crate::sync::RemoteEvent),
    /// The sync thread's link to Redis went up or down.
    Link(crate::sync::Link),
}
