//! Bans the firewall refused, tried again later and later. Nothing of a refused batch
//! was recorded (the firewall goes first, see `apply`), so trying the same bans again
//! starts clean; the wait doubles from `FIRST` up to `MAX` while the firewall keeps
//! refusing, and starts again from `FIRST` once nothing is left waiting. While any
//! waits, read positions are held before their lines, as for `unrecorded` bans.

use std::time::{Duration, Instant};

use crate::ban::NewBan;
use crate::duration::format_duration;
use crate::firewall::FirewallError;

use super::timers::Timer;

/// First wait before bans the firewall refused are tried again, and the longest.
const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Retry {
    bans: Vec<NewBan>,
    due: Timer,
    /// The last wait; `None` once nothing is left waiting.
    delay: Option<Duration>,
}

impl Retry {
    /// The bans whose next try is due at `now`, taken out of the queue.
    pub fn take_due(&mut self, now: Instant) -> Vec<NewBan> {
        if !self.due.is_due(now) {
            return Vec::new();
        }
        self.due.clear();
        std::mem::take(&mut self.bans)
    }

    /// The firewall refused `bans` at `now`: they wait, longer than last time.
    pub fn refused(&mut self, bans: Vec<NewBan>, why: &FirewallError, now: Instant) {
        let delay = self.delay.map_or(FIRST, |d| (d * 2).min(MAX));
        log::error!(
            "the firewall refused {} ({why}); trying again in {}",
            crate::words::counted(bans.len(), "ban"),
            format_duration(delay)
        );
        self.delay = Some(delay);
        self.due.set(Some(now + delay));
        self.bans.extend(bans);
    }

    /// A batch went through (or failed for another reason than the firewall): once
    /// nothing waits, the next refusal waits `FIRST` again.
    pub fn settled(&mut self) {
        if self.bans.is_empty() {
            self.delay = None;
        }
    }

    /// Whether no ban waits.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// When the next try is due.
    pub fn due(&self) -> Option<Instant> {
        self.due.when()
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_due(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::testing::*;

    #[test]
    fn a_ban_the_firewall_refused_is_tried_again_and_recorded_once_it_holds() {
        let kernel = Kernel::refusing(1);
        let mut f = Fixture::with_kernel("", &kernel);
        f.engine.receive([instant("192.0.2.1")]);
        assert!(!kernel.holds("192.0.2.1"));
        assert!(
            f.active().is_empty(),
            "nothing is recorded that the kernel does not hold"
        );
        let wait = f
            .engine
            .deadline()
            .expect("a retry is due")
            .saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_secs(1), "the first retry: {wait:?}");
        wait_and_tick(&mut f.engine);
        assert!(kernel.holds("192.0.2.1") && f.banned("192.0.2.1"));
        assert_eq!(kernel.ban_calls(), [1, 1]);
        let next = f.engine.deadline().expect("the counters' save");
        assert!(
            next > Instant::now() + Duration::from_secs(5),
            "nothing left to try again"
        );
    }

    #[test]
    fn the_read_position_waits_for_a_refused_ban_to_land() {
        let kernel = Kernel::refusing(1);
        let mut f = Fixture::with_kernel("", &kernel);
        let path = std::path::PathBuf::from("/var/log/test.log");
        let at = |offset| crate::event::Event::Position {
            path: path.clone(),
            position: crate::event::Position { inode: 7, offset },
        };
        f.engine.receive([instant("192.0.2.1"), at(20)]);
        f.engine.tick();
        assert!(f.store().positions().unwrap().is_empty(), "held");
        wait_and_tick(&mut f.engine);
        assert!(kernel.holds("192.0.2.1"));
        f.engine.tick();
        assert_eq!(f.store().positions().unwrap()[&path].offset, 20);
    }

    #[test]
    fn a_refused_ban_joins_the_next_batch_once_its_retry_is_due() {
        let kernel = Kernel::refusing(1);
        let mut f = Fixture::with_kernel("", &kernel);
        f.engine.receive([instant("192.0.2.1")]);
        f.engine.receive([instant("192.0.2.2")]);
        assert_eq!(kernel.nets(), [net("192.0.2.2")], "not due yet: waits");
        std::thread::sleep(Duration::from_secs(1));
        f.engine.receive([instant("192.0.2.3")]);
        assert_eq!(kernel.ban_calls(), [1, 1, 2]);
        assert_eq!(f.active().len(), 3);
    }

    fn refusal() -> FirewallError {
        FirewallError::Command {
            command: "iptables-restore --noflush".into(),
            status: "exit status: 4".into(),
            stderr: "Another app is currently holding the xtables lock".into(),
        }
    }

    #[test]
    fn the_wait_doubles_while_the_firewall_refuses_up_to_a_minute() {
        let mut retry = Retry::default();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..8 {
            retry.refused(vec![ban_by_others("192.0.2.1", None)], &refusal(), now);
            let due = retry.due().expect("a retry is due");
            waits.push((due - now).as_secs());
            assert!(retry.take_due(due - Duration::from_millis(1)).is_empty());
            assert_eq!(
                retry.take_due(due).len(),
                1,
                "due: taken for the next batch"
            );
            now = due;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn the_wait_starts_again_from_a_second_once_nothing_is_left_waiting() {
        let mut retry = Retry::default();
        let now = Instant::now();
        retry.refused(vec![ban_by_others("192.0.2.1", None)], &refusal(), now);
        // Another batch went through while that one waits: the wait is kept.
        retry.settled();
        retry.refused(vec![ban_by_others("192.0.2.2", None)], &refusal(), now);
        assert_eq!(retry.due(), Some(now + Duration::from_secs(2)));
        assert_eq!(retry.take_due(now + Duration::from_secs(2)).len(), 2);
        retry.settled();
        retry.refused(vec![ban_by_others("192.0.2.3", None)], &refusal(), now);
        assert_eq!(retry.due(), Some(now + Duration::from_secs(1)));
    }
}
