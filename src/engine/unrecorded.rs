//! Bans in the kernel that the store has not recorded: its disk is full, or a shared
//! store is away and so is the disk of its outbox. The firewall goes first (see `apply`),
//! so these protect the server already; they are recorded again, later and later (from
//! `FIRST` to `MAX`), until the store takes them or their time is up. Meanwhile the
//! read positions stay before the lines that decided them (`Bookkeeping::hold`), so a
//! restart reads those lines again and decides the same bans rather than forget them.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::ban::NewBan;
use crate::duration::format_duration;

use super::timers::Timer;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Unrecorded {
    bans: Vec<NewBan>,
    due: Timer,
    /// The last wait; `None` once nothing is left waiting.
    delay: Option<Duration>,
}

impl Unrecorded {
    /// The store refused `bans` at `now`: they wait, longer than last time.
    pub fn refused(&mut self, bans: Vec<NewBan>, now: Instant) {
        let delay = self.delay.map_or(FIRST, |d| (d * 2).min(MAX));
        log::warn!(
            "{} to be recorded; trying again in {}",
            crate::words::count(
                bans.len() + self.bans.len(),
                "ban in the firewall waits",
                "bans in the firewall wait"
            ),
            format_duration(delay)
        );
        self.delay = Some(delay);
        self.due.set(Some(now + delay));
        self.bans.extend(bans);
    }

    /// Every ban waiting, taken out to be recorded again: the ones still running at
    /// `now`, and the ones whose time is up (to be taken out of the kernel).
    pub fn take(&mut self, now: DateTime<Utc>) -> (Vec<NewBan>, Vec<NewBan>) {
        self.due.clear();
        std::mem::take(&mut self.bans)
            .into_iter()
            .partition(|b| b.expires_at.is_none_or(|t| t > now))
    }

    /// Everything waiting was recorded: the next refusal waits `FIRST` again.
    pub fn settled(&mut self) {
        if self.bans.is_empty() {
            self.delay = None;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// The bans waiting, to be put in a new firewall with the recorded ones.
    pub fn bans(&self) -> &[NewBan] {
        &self.bans
    }

    pub fn due(&self) -> Option<Instant> {
        self.due.when()
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_due(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use crate::engine::testing::*;
    use crate::event::{Event, Position};

    /// A store that refuses writes: another process holds its write lock, as a full
    /// disk refuses them (the daemon tests fill a real tmpfs).
    fn lock(f: &Fixture) -> rusqlite::Connection {
        let other = rusqlite::Connection::open(f.db()).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        other
    }

    #[test]
    fn a_ban_the_store_refused_stays_in_the_kernel_and_is_recorded_once_it_can_be() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel_fast_store("", &kernel);
        let path = std::path::PathBuf::from("/var/log/test.log");
        let at = |offset| Event::Position {
            path: path.clone(),
            position: Position { inode: 7, offset },
        };
        f.engine.receive([at(10)]);
        f.engine.tick();
        let other = lock(&f);
        f.engine.receive([instant("192.0.2.1"), at(20)]);
        assert!(kernel.holds("192.0.2.1"), "the kernel first");
        f.engine.tick();
        other.execute_batch("ROLLBACK").unwrap();
        assert!(!f.banned("192.0.2.1"));
        assert_eq!(
            f.store().positions().unwrap()[&path].offset,
            10,
            "the position stays before the line whose ban is not recorded"
        );
        let wait = f
            .engine
            .deadline()
            .expect("a retry")
            .saturating_duration_since(std::time::Instant::now());
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        wait_and_tick(&mut f.engine);
        assert!(f.banned("192.0.2.1"), "recorded once the store takes it");
        f.engine.tick();
        assert_eq!(
            f.store().positions().unwrap()[&path].offset,
            20,
            "then the position moves on"
        );
        assert_eq!(f.engine.bans, 1, "counted once");
    }

    #[test]
    fn an_unrecorded_ban_whose_time_is_up_leaves_the_kernel() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel_fast_store("ban_time: 1s\n", &kernel);
        let other = lock(&f);
        f.engine.receive([instant("192.0.2.2")]);
        assert!(kernel.holds("192.0.2.2"));
        std::thread::sleep(Duration::from_millis(1100));
        let _ = Utc::now();
        wait_and_tick(&mut f.engine);
        assert!(!kernel.holds("192.0.2.2"), "its time is up");
        other.execute_batch("ROLLBACK").unwrap();
        assert!(f.active().is_empty());
    }
}
