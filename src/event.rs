//! What the decision thread hears, over its one bounded channel: attempts found by the
//! log and journal watchers, how far each source was read and how it stands, and the
//! sync thread's news of other servers' bans, of this server's bans recorded by other
//! processes, and of its link to Redis.
//!
//! The channel (`queue`) is bounded, yet holds memory only for what is queued: the events
//! wait in a list that grows and shrinks with them, and the bound is a second channel of
//! empty tokens, one taken by each event sent and given back when it is received. (An
//! array channel of 16 Ki events would keep 1.8 MiB resident in the idle daemon, its
//! slots all written when it is made.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Instant;

use chrono::{DateTime, FixedOffset, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError, SendError, Sender, TryRecvError};
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

/// The decision thread's channel: at most `capacity` events queued (a sender blocks
/// while it is full: back-pressure), its memory following what is queued.
pub fn queue(capacity: usize) -> (EventSender, EventReceiver) {
    let (events_tx, events) = crossbeam_channel::unbounded();
    let (room_tx, room) = crossbeam_channel::bounded(capacity);
    (
        EventSender {
            events: events_tx,
            room: room_tx,
        },
        EventReceiver { events, room },
    )
}

/// Sends events to the decision thread; cloned for each thread that does.
#[derive(Debug, Clone)]
pub struct EventSender {
    events: Sender<Event>,
    /// One token per queued event: blocks while the queue is full.
    room: Sender<()>,
}

impl EventSender {
    /// Sends `event`, waiting while the queue is full; fails when the receiver is gone.
    pub fn send(&self, event: Event) -> Result<(), SendError<Event>> {
        if self.room.send(()).is_err() {
            return Err(SendError(event));
        }
        self.events.send(event)
    }
}

/// The decision thread's end of `queue`. Every event received gives its token back:
/// through these methods, or `took` after receiving from `ready` in a `select!`.
#[derive(Debug)]
pub struct EventReceiver {
    events: Receiver<Event>,
    room: Receiver<()>,
}

impl EventReceiver {
    /// The events, for `select!`; call `took` for each event received from it.
    pub fn ready(&self) -> &Receiver<Event> {
        &self.events
    }

    /// An event received from `ready` frees its place.
    pub fn took(&self) {
        // Each sender puts its token before its event: one is there.
        let _ = self.room.try_recv();
    }

    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Result<Event, RecvTimeoutError> {
        let event = self.events.recv_timeout(timeout)?;
        self.took();
        Ok(event)
    }

    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        let event = self.events.try_recv()?;
        self.took();
        Ok(event)
    }

    /// The events queued now, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn link() -> Event {
        Event::Link(Link::Down)
    }

    #[test]
    fn the_queue_is_bounded_and_frees_a_place_per_event_received() {
        let (tx, rx) = queue(2);
        tx.send(link()).unwrap();
        tx.send(link()).unwrap();
        let sender = std::thread::spawn(move || {
            tx.send(link()).unwrap();
            tx
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!sender.is_finished(), "a full queue holds the sender back");
        assert_eq!(rx.try_iter().take(1).count(), 1);
        let tx = sender.join().unwrap();
        assert_eq!(rx.try_iter().count(), 2);
        assert!(rx.try_recv().is_err());
        drop(rx);
        assert!(
            tx.send(link()).is_err(),
            "no receiver: the send fails, never blocks"
        );
    }

    #[test]
    fn a_select_on_ready_gives_the_place_back_with_took() {
        let (tx, rx) = queue(1);
        tx.send(link()).unwrap();
        crossbeam_channel::select! {
            recv(rx.ready()) -> e => { assert!(e.is_ok()); rx.took(); }
        }
        tx.send(link()).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(1)).is_ok());
    }
}
