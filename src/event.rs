//! What the decision thread hears, over its one bounded channel: attempts found by the
//! log and journal watchers, how far each source was read and how it stands, and the
//! sync thread's news of other servers' bans, of this server's bans recorded by other
//! processes, and of its link to Redis.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Instant;

use chrono::{DateTime, FixedOffset, Utc};
use ipnet::IpNet;

use crate::ban::Change;
use crate::status::SourceNews;

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
    /// A source's state changed (for `status`).
    Source(SourceNews),
    /// Another server's ban or unban (from the sync thread).
    Remote(RemoteEvent),
    /// The sync thread's link to Redis went up or down.
    Link(Link),
    /// A ban of this server was recorded or lifted in the shared store (by the daemon
    /// itself, or by another process: the admin): this server's own event on the ban
    /// channel.
    Changed(Change),
}

/// Where reading a log file stopped: the file's identity and the offset just past the
/// last whole line handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
}

/// A log file and its position.
pub type Positions = HashMap<PathBuf, Position>;

/// Where each rule's journal was left: rule name → journald cursor.
pub type Cursors = HashMap<String, String>;

/// Another server's ban or unban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteEvent {
    Ban {
        net: IpNet,
        rule: String,
        server: String,
        reason: String,
        until: Option<DateTime<Utc>>,
    },
    Unban {
        net: IpNet,
        server: String,
    },
}

/// The link to Redis went up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Subscribed at this instant: every event published since will arrive.
    Up(Instant),
    Down,
}
