//! Failed-attempt counters per (rule, address), with PyFilter's counting rule.
//!
//! An attempt counts when it comes within `request_time` of the same address's previous
//! attempt for the same rule; otherwise the count starts again at 1, so a user who mistypes
//! once a day is never banned. Reaching the threshold returns the count and clears the
//! counter. Times are the log's own (event time), so the same logic serves the daemon and
//! `scan`. Memory is bounded: counters that can no longer lead to a ban are evicted, and
//! past `max_tracked` the oldest go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::rule::Limits;

#[derive(Debug, Clone, Copy)]
struct Count {
    attempts: u32,
    /// Latest attempt time, as seconds and nanoseconds since the epoch.
    last_ns: i64,
    /// How long this counter stays meaningful (the rule's request_time).
    window_ns: i64,
}

/// What one attempt did to its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted; not enough yet.
    Counted(u32),
    /// The threshold (or an instant pattern) was reached: ban, with this many attempts.
    Ban(u32),
}

/// All counters. Owned by one thread.
#[derive(Debug)]
pub struct Counters {
    map: HashMap<(Arc<str>, IpAddr), Count>,
    max_tracked: usize,
    /// Size after the last sweep: the next sweep waits until the map has doubled.
    swept_at_len: usize,
}

const MIN_SWEEP_LEN: usize = 4096;

impl Counters {
    pub fn new(max_tracked: usize) -> Counters {
        Counters {
            map: HashMap::new(),
            max_tracked,
            swept_at_len: 0,
        }
    }

    /// Counts one attempt of `ip` against `rule` at `at`.
    pub fn record(
        &mut self,
        rule: &Arc<str>,
        ip: IpAddr,
        at: DateTime<FixedOffset>,
        limits: &Limits,
        instant: bool,
    ) -> Outcome {
        let now_ns = nanos(at);
        let window_ns = nanos_of(limits.request_time);
        let key = (Arc::clone(rule), ip);
        let count = self.map.entry(key).or_insert(Count {
            attempts: 0,
            last_ns: now_ns,
            window_ns,
        });
        // Lines from several files can arrive slightly out of order: the gap is measured
        // either way, and the latest time is kept.
        if count.attempts > 0 && (now_ns - count.last_ns).abs() > window_ns {
            count.attempts = 0;
        }
        count.attempts += 1;
        count.last_ns = count.last_ns.max(now_ns);
        count.window_ns = window_ns;
        let attempts = count.attempts;
        if instant || attempts >= limits.failed_attempts.get() {
            self.map.remove(&(Arc::clone(rule), ip));
            return Outcome::Ban(attempts);
        }
        if self.map.len() > self.swept_at_len.max(MIN_SWEEP_LEN) * 2
            || self.map.len() > self.max_tracked
        {
            self.sweep(now_ns);
        }
        Outcome::Counted(attempts)
    }

    /// How many (rule, address) counters are held.
    pub fn tracked(&self) -> usize {
        self.map.len()
    }

    /// Drops counters whose window has passed at `now_ns`; if still over the cap, drops the
    /// oldest until at 90% of it.
    fn sweep(&mut self, now_ns: i64) {
        self.map.retain(|_, c| now_ns - c.last_ns <= c.window_ns);
        if self.map.len() > self.max_tracked {
            let target = self.max_tracked / 10 * 9;
            // Exactly the oldest go, even when many share one second.
            let mut by_age: Vec<(i64, (Arc<str>, IpAddr))> = self
                .map
                .iter()
                .map(|(k, c)| (c.last_ns, k.clone()))
                .collect();
            let cut = by_age.len() - target;
            by_age.select_nth_unstable_by_key(cut, |(last, _)| *last);
            for (_, key) in &by_age[..cut] {
                self.map.remove(key);
            }
            log::warn!(
                "more than {} addresses are being counted at once; the oldest counters were dropped (raise max_tracked if this is expected)",
                self.max_tracked
            );
        }
        self.swept_at_len = self.map.len();
    }
}

fn nanos(at: DateTime<FixedOffset>) -> i64 {
    at.timestamp()
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(at.timestamp_subsec_nanos()))
}

fn nanos_of(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::BanTime;
    use std::num::NonZeroU32;

    fn limits(n: u32, secs: u64) -> Limits {
        Limits {
            failed_attempts: NonZeroU32::new(n).unwrap(),
            request_time: Duration::from_secs(secs),
            ban_time: BanTime::Forever,
        }
    }

    fn t(secs: i64) -> DateTime<FixedOffset> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0)
            .unwrap()
            .fixed_offset()
    }

    #[test]
    fn bans_at_the_threshold_within_the_window() {
        let mut c = Counters::new(1000);
        let rule: Arc<str> = Arc::from("sshd");
        let ip = "192.0.2.1".parse().unwrap();
        let l = limits(3, 60);
        assert_eq!(c.record(&rule, ip, t(0), &l, false), Outcome::Counted(1));
        assert_eq!(c.record(&rule, ip, t(50), &l, false), Outcome::Counted(2));
        assert_eq!(c.record(&rule, ip, t(100), &l, false), Outcome::Ban(3));
        assert_eq!(c.tracked(), 0, "the counter is cleared after a ban");
    }

    #[test]
    fn a_gap_longer_than_request_time_starts_again() {
        let mut c = Counters::new(1000);
        let rule: Arc<str> = Arc::from("sshd");
        let ip = "192.0.2.1".parse().unwrap();
        let l = limits(3, 60);
        c.record(&rule, ip, t(0), &l, false);
        c.record(&rule, ip, t(30), &l, false);
        assert_eq!(c.record(&rule, ip, t(91), &l, false), Outcome::Counted(1));
        // Once a day for a week: never banned.
        for day in 1..8 {
            assert_eq!(
                c.record(&rule, ip, t(day * 86400), &l, false),
                Outcome::Counted(1)
            );
        }
    }

    #[test]
    fn rules_and_addresses_count_separately() {
        let mut c = Counters::new(1000);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let l = limits(2, 60);
        let ip1 = "192.0.2.1".parse().unwrap();
        let ip2 = "2001:db8::1".parse().unwrap();
        assert_eq!(c.record(&a, ip1, t(0), &l, false), Outcome::Counted(1));
        assert_eq!(c.record(&b, ip1, t(1), &l, false), Outcome::Counted(1));
        assert_eq!(c.record(&a, ip2, t(2), &l, false), Outcome::Counted(1));
        assert_eq!(c.record(&a, ip1, t(3), &l, false), Outcome::Ban(2));
    }

    #[test]
    fn instant_bans_on_the_first_match() {
        let mut c = Counters::new(1000);
        let rule: Arc<str> = Arc::from("x");
        assert_eq!(
            c.record(
                &rule,
                "192.0.2.1".parse().unwrap(),
                t(0),
                &limits(5, 60),
                true
            ),
            Outcome::Ban(1)
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let mut c = Counters::new(10_000);
        let rule: Arc<str> = Arc::from("sshd");
        let l = limits(5, 600);
        for i in 0..200_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            // All inside one window: nothing is stale, so the cap must do the work.
            c.record(&rule, ip, t(i64::from(i / 50_000)), &l, false);
            assert!(c.tracked() <= 10_001);
        }
        // Later, everything has gone stale and is swept.
        for i in 0..(MIN_SWEEP_LEN as u32 * 3) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            c.record(&rule, ip, t(100_000 + i64::from(i)), &l, false);
        }
        assert!(c.tracked() < 10_000);
    }
}
