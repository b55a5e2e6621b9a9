//! The decision thread's bookkeeping in the local SQLite file: how far each log file and
//! journal was read and the failed-attempt counts at that point, written together, so a
//! restart neither replays old lines nor misses new ones nor forgets a partial count; and
//! the snapshot of the daemon's counters, for the admin's `/metrics`.
//!
//! Bookkeeping never holds up bans: it is written by `tick`, after a batch's bans are
//! applied, on a connection that waits for a locked database only briefly, and what
//! cannot be written now is tried again later. While a ban is in the kernel but not yet
//! in the store, progress is held (`hold`): a read position saved past the line that
//! decided such a ban would let a restart forget it.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Cursors, Position, Positions};
use crate::metrics::{self, Metrics};
use crate::store::{CountChanges, SavedCount, SqliteStore, StoreError};

use super::timers::Timer;

/// How often changed read positions are written.
const POSITION_FLUSH: Duration = Duration::from_secs(1);

pub struct Bookkeeping {
    /// The local SQLite file (whatever the ban store is).
    local: SqliteStore,
    /// Read positions not yet saved, by file.
    positions: Positions,
    /// Files whose position is in the store already.
    saved_paths: HashSet<PathBuf>,
    /// Journal cursors not yet saved, by rule.
    cursors: Cursors,
    /// Counters changed since they were last saved.
    counts: CountChanges,
    /// Bans wait to be recorded: positions, cursors and counts are not written.
    held: bool,
    /// When positions and cursors are next written.
    flush_due: Timer,
    /// The counters saved for the admin.
    metrics: Arc<Metrics>,
    /// When the counters' snapshot is next saved: armed by activity, so an idle daemon
    /// does not wake up for it.
    stats_due: Timer,
}

impl Bookkeeping {
    pub fn new(local: SqliteStore, metrics: Arc<Metrics>) -> Bookkeeping {
        Bookkeeping {
            local,
            positions: Positions::new(),
            saved_paths: HashSet::new(),
            cursors: Cursors::new(),
            counts: CountChanges::new(),
            held: false,
            flush_due: Timer::default(),
            metrics,
            stats_due: Timer::default(),
        }
    }

    /// The read positions saved by earlier runs.
    pub fn saved_positions(&mut self) -> Result<Positions, StoreError> {
        let positions = self.local.positions()?;
        self.saved_paths.extend(positions.keys().cloned());
        Ok(positions)
    }

    /// The counters saved by earlier runs that can still lead to a ban at `now`.
    pub fn saved_counts(
        &mut self,
        now: u32,
    ) -> Result<Vec<(String, IpAddr, SavedCount)>, StoreError> {
        self.local.counters(now)
    }

    /// Counters changed: saved with the next positions.
    pub fn counts(&mut self, changes: Vec<(Arc<str>, IpAddr, Option<SavedCount>)>, now: Instant) {
        if changes.is_empty() {
            return;
        }
        for (rule, ip, count) in changes {
            self.counts.insert((rule, ip), count);
        }
        self.flush_due.arm(now + POSITION_FLUSH);
    }

    /// A ban is in the kernel but not in the store: progress is not written until
    /// `release`.
    pub fn hold(&mut self) {
        if !self.held {
            log::warn!(
                "read positions are held back until the bans are recorded: a restart reads those lines again"
            );
        }
        self.held = true;
    }

    /// Every ban is recorded: progress is written at once.
    pub fn release(&mut self, now: Instant) {
        if self.held {
            self.held = false;
            self.flush_due.no_later_than(now);
        }
    }

    /// Whether writing progress is due at `now` (the engine then hands over the counts).
    pub fn progress_due(&self, now: Instant) -> bool {
        self.flush_due.is_due(now)
    }

    /// The journal cursors saved by earlier runs.
    pub fn saved_cursors(&self) -> Result<Cursors, StoreError> {
        self.local.cursors()
    }

    /// Something happened that the counters show: their snapshot is saved within
    /// `metrics::SAVE_EVERY`.
    pub fn counted(&mut self, now: Instant) {
        self.stats_due.arm(now + metrics::SAVE_EVERY);
    }

    /// `path` has been handled up to `position`.
    pub fn position(&mut self, path: PathBuf, position: Position, now: Instant) {
        // A file's first position is saved at once: until it is, a crash would make the
        // next start begin at the file's end and skip what came since. It is written by
        // the `tick` that follows this batch's commit: the bans the batch decided reach
        // the firewall before any bookkeeping write.
        let first = self.saved_paths.insert(path.clone());
        self.positions.insert(path, position);
        let wait = if first {
            Duration::ZERO
        } else {
            POSITION_FLUSH
        };
        self.flush_due.no_later_than(now + wait);
    }

    /// The journal of `rule` has been handled up to `cursor`.
    pub fn cursor(&mut self, rule: String, cursor: String, now: Instant) {
        self.cursors.insert(rule, cursor);
        self.flush_due.arm(now + POSITION_FLUSH);
    }

    /// Writes changed read positions, cursors and counts in one transaction; what cannot
    /// be written now (the database locked by another process, a full disk) is tried again
    /// after `POSITION_FLUSH`. Nothing is written while held.
    pub fn flush_positions(&mut self) {
        self.flush_due.clear();
        if self.held {
            return;
        }
        if self.positions.is_empty() && self.cursors.is_empty() && self.counts.is_empty() {
            return;
        }
        match self
            .local
            .save_progress(&self.positions, &self.cursors, &self.counts)
        {
            Ok(()) => {
                self.positions.clear();
                self.cursors.clear();
                // A flood of a million addresses leaves a map of a million changes: let
                // its room go with it, not only its entries.
                self.counts = CountChanges::new();
            }
            Err(e) => {
                log::warn!("cannot save log positions and counts yet: {e}");
                self.flush_due.set(Some(Instant::now() + POSITION_FLUSH));
            }
        }
    }

    /// Saves the counters' snapshot, for the admin's `/metrics`.
    pub fn save_stats(&mut self) {
        self.stats_due.clear();
        let rows = metrics::to_rows(&self.metrics.snapshot());
        if let Err(e) = self.local.save_stats(&rows) {
            log::warn!("cannot save the counters for the admin: {e}");
        }
    }

    /// When a write is next due.
    pub fn due(&self) -> Option<Instant> {
        [self.flush_due.when(), self.stats_due.when()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Writes what is due at `now`.
    pub fn tick(&mut self, now: Instant) {
        if self.flush_due.is_due(now) {
            self.flush_positions();
        }
        if self.stats_due.is_due(now) {
            self.save_stats();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::testing::*;
    use crate::event::Event;

    #[test]
    fn positions_and_cursors_are_saved() {
        let mut f = Fixture::new("");
        let path = std::path::PathBuf::from("/var/log/test.log");
        let at = |offset| Event::Position {
            path: path.clone(),
            position: Position { inode: 7, offset },
        };
        let cursor = Event::Cursor {
            rule: RULE.into(),
            cursor: "s=1;i=2".into(),
        };
        // A file's first position is written at the next tick, with what came with it.
        f.engine.receive([at(10), cursor]);
        f.engine.tick();
        let store = f.store();
        assert_eq!(store.positions().unwrap()[&path].offset, 10);
        assert_eq!(store.cursors().unwrap()[RULE], "s=1;i=2");
        // Later ones are written together, within a second.
        f.engine.receive([at(20)]);
        f.engine.tick();
        assert_eq!(store.positions().unwrap()[&path].offset, 10);
        wait_and_tick(&mut f.engine);
        assert_eq!(store.positions().unwrap()[&path].offset, 20);
    }

    #[test]
    fn positions_saved_before_are_known_at_start() {
        let mut f = Fixture::new("");
        let path = std::path::PathBuf::from("/var/log/test.log");
        let position = Position {
            inode: 7,
            offset: 10,
        };
        let mut store = f.store();
        store
            .save_positions(&[(path.clone(), position)].into_iter().collect())
            .unwrap();
        assert_eq!(f.engine.saved_positions().unwrap()[&path], position);
        // Known as saved: the next position of that file waits for the next flush.
        f.engine.receive([Event::Position {
            path: path.clone(),
            position: Position {
                inode: 7,
                offset: 20,
            },
        }]);
        f.engine.tick();
        assert_eq!(store.positions().unwrap()[&path].offset, 10);
    }

    #[test]
    fn the_counters_are_saved_for_the_admin_after_activity() {
        let mut f = Fixture::new("");
        f.engine.receive([instant("192.0.2.1")]);
        let wait = f
            .engine
            .deadline()
            .expect("a save is due")
            .saturating_duration_since(Instant::now());
        assert!(
            wait > metrics::SAVE_EVERY - Duration::from_secs(1),
            "{wait:?}"
        );
        f.engine.save_stats();
        let stats = f.store().stats().unwrap();
        let bans = stats
            .iter()
            .find(|(key, _, _)| key == "daemon_bans_total")
            .map(|(_, v, _)| *v);
        assert_eq!(bans, Some(1.0), "{stats:?}");
        let next = f.engine.deadline().expect("the ban's end");
        assert!(
            next > Instant::now() + Duration::from_secs(3000),
            "only the ban's end is left"
        );
    }

    #[test]
    fn positions_that_cannot_be_written_now_are_written_a_second_later() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let mut local = SqliteStore::open(&db).unwrap();
        local.set_busy_timeout(Duration::from_millis(10)).unwrap();
        let mut books = Bookkeeping::new(local, Arc::new(Metrics::default()));
        // Another process holds the database.
        let other = rusqlite::Connection::open(&db).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let path = PathBuf::from("/var/log/test.log");
        let now = Instant::now();
        books.position(
            path.clone(),
            Position {
                inode: 7,
                offset: 10,
            },
            now,
        );
        assert_eq!(books.due(), Some(now), "a first position is due at once");
        books.tick(now);
        let again = books.due().expect("tried again");
        assert!(
            again >= now + Duration::from_millis(900),
            "{:?}",
            again - now
        );
        other.execute_batch("COMMIT").unwrap();
        books.tick(again);
        let saved = SqliteStore::open(&db).unwrap().positions().unwrap();
        assert_eq!(saved[&path].offset, 10);
        assert_eq!(books.due(), None);
    }
}
