//! When something on the decision thread is next due. The decision loop sleeps until the
//! earliest of the engine's timers rather than polling, so each part of the engine keeps
//! its own timer, set only while it has work waiting: an idle daemon does not wake up.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::duration::instant_after;

/// A moment something is due; unset while nothing is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Timer(Option<Instant>);

impl Timer {
    /// Due at `at`, or never, whatever was set before.
    pub fn set(&mut self, at: Option<Instant>) {
        self.0 = at;
    }

    /// Due at `at` unless already set: the first change arms it, later ones join it.
    pub fn arm(&mut self, at: Instant) {
        self.0.get_or_insert(at);
    }

    /// Due at `at` unless due sooner already.
    pub fn no_later_than(&mut self, at: Instant) {
        self.0 = Some(self.0.map_or(at, |t| t.min(at)));
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.0.is_some_and(|t| t <= now)
    }

    pub fn when(&self) -> Option<Instant> {
        self.0
    }
}

/// When the next ban ends. Bans end at a time of day, not after a wait, so this one runs
/// on the wall clock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expiry(Option<DateTime<Utc>>);

impl Expiry {
    /// The next end, as the store says, or none.
    pub fn set(&mut self, at: Option<DateTime<Utc>>) {
        self.0 = at;
    }

    /// A ban that ends at `at` was added.
    pub fn no_later_than(&mut self, at: DateTime<Utc>) {
        if self.0.is_none_or(|t| at < t) {
            self.0 = Some(at);
        }
    }

    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.0.is_some_and(|t| t <= now)
    }

    /// When to wake up for it.
    pub fn when(&self) -> Option<Instant> {
        self.0.map(|t| {
            let wait = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            // Second-granular expiry times: wake just after the second turns.
            instant_after(
                Instant::now(),
                wait.saturating_add(Duration::from_millis(5)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arming_keeps_the_time_already_set_and_no_later_than_keeps_the_sooner() {
        let now = Instant::now();
        let mut t = Timer::default();
        assert!(!t.is_due(now));
        t.arm(now + Duration::from_secs(5));
        t.arm(now + Duration::from_secs(1));
        assert_eq!(t.when(), Some(now + Duration::from_secs(5)));
        t.no_later_than(now + Duration::from_secs(9));
        assert_eq!(t.when(), Some(now + Duration::from_secs(5)));
        t.no_later_than(now);
        assert!(t.is_due(now));
        t.clear();
        assert_eq!(t.when(), None);
    }

    #[test]
    fn the_next_expiry_is_the_soonest_ban_end_and_wakes_just_after_it() {
        let now = Utc::now();
        let mut e = Expiry::default();
        assert_eq!(e.when(), None);
        e.no_later_than(now + chrono::Duration::seconds(60));
        e.no_later_than(now + chrono::Duration::seconds(90));
        assert!(!e.is_due(now + chrono::Duration::seconds(59)));
        assert!(e.is_due(now + chrono::Duration::seconds(60)));
        let wait = e
            .when()
            .expect("set")
            .saturating_duration_since(Instant::now());
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(61));
        e.set(None);
        assert!(!e.is_due(now + chrono::Duration::days(1)));
    }
}
