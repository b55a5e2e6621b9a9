//! Failed-attempt counters per (rule, address), with PyFilter's counting rule.
//!
//! An attempt counts when it comes within `request_time` of the same address's previous
//! attempt for the same rule; otherwise the count starts again at 1, so a user who mistypes
//! once a day is never banned. Reaching the threshold returns the count and clears the
//! counter. Times are the log's own (event time), so the same logic serves the daemon and
//! `scan`. Memory is bounded: counters that can no longer lead to a ban are evicted, and
//! past `max_tracked` the oldest go first. A counter is 8 bytes beside its address (IPv4
//! addresses are kept as `u32`), so a million tracked addresses take a few tens of MB.
//!
//! Counts outlive the process: each counter changed since the last look is remembered
//! (`take_changes`), and the decision thread saves those with the read positions, in one
//! transaction, so that a restart, even after SIGKILL, goes on counting from exactly the
//! lines it has not read yet (`restore`).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::rule::Limits;
use crate::store::SavedCount;

/// One address's count: attempts so far and the time of the latest, in whole seconds
/// since the epoch (request_time is never finer than a second in practice).
#[derive(Debug, Clone, Copy)]
struct Count {
    attempts: u32,
    last: u32,
}

/// What one attempt did to its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted; not enough yet.
    Counted(u32),
    /// The threshold (or an instant pattern) was reached: ban, with this many attempts.
    Ban(u32),
}

/// The counters of one rule.
#[derive(Debug, Default)]
struct RuleCounts {
    v4: HashMap<u32, Count>,
    v6: HashMap<u128, Count>,
    /// The rule's request_time in seconds (a counter older than this is stale).
    window: u32,
    /// Counters changed (or gone) since the last `take_changes`.
    changed_v4: HashSet<u32>,
    changed_v6: HashSet<u128>,
}

impl RuleCounts {
    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// All counters. Owned by one thread.
#[derive(Debug)]
pub struct Counters {
    rules: HashMap<Arc<str>, RuleCounts>,
    len: usize,
    max_tracked: usize,
    /// Size after the last sweep: the next sweep waits until the count has doubled.
    swept_at_len: usize,
}

const MIN_SWEEP_LEN: usize = 4096;

fn seconds(at: DateTime<FixedOffset>) -> u32 {
    at.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

/// Counts one attempt in `map`; `Some(attempts)` when the threshold is reached (the
/// counter is then removed).
fn bump<K: Hash + Eq>(
    map: &mut HashMap<K, Count>,
    key: K,
    now: u32,
    window: u32,
    threshold: u32,
    instant: bool,
) -> (u32, bool) {
    let count = map.entry(key).or_insert(Count {
        attempts: 0,
        last: now,
    });
    // Lines from several files can arrive slightly out of order: the gap is measured
    // either way, and the latest time is kept.
    if count.attempts > 0 && now.abs_diff(count.last) > window {
        count.attempts = 0;
    }
    count.attempts += 1;
    count.last = count.last.max(now);
    let attempts = count.attempts;
    (attempts, instant || attempts >= threshold)
}

/// `map.retain(keep)`, remembering in `changed` the keys that went.
fn retain_marking<K: Hash + Eq + Copy>(
    map: &mut HashMap<K, Count>,
    changed: &mut HashSet<K>,
    mut keep: impl FnMut(&Count) -> bool,
) {
    map.retain(|k, c| {
        let kept = keep(c);
        if !kept {
            changed.insert(*k);
        }
        kept
    });
}

impl Counters {
    pub fn new(max_tracked: usize) -> Counters {
        Counters {
            rules: HashMap::new(),
            len: 0,
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
        let now = seconds(at);
        let window = u32::try_from(limits.request_time.as_secs()).unwrap_or(u32::MAX);
        let threshold = limits.failed_attempts.get();
        if !self.rules.contains_key(rule) {
            self.rules.insert(Arc::clone(rule), RuleCounts::default());
        }
        let counts = self.rules.get_mut(rule).expect("inserted above");
        counts.window = window;
        let before = counts.len();
        let (attempts, ban) = match ip {
            IpAddr::V4(v4) => {
                let key = u32::from(v4);
                let r = bump(&mut counts.v4, key, now, window, threshold, instant);
                counts.changed_v4.insert(key);
                if r.1 {
                    counts.v4.remove(&key);
                }
                r
            }
            IpAddr::V6(v6) => {
                let key = u128::from(v6);
                let r = bump(&mut counts.v6, key, now, window, threshold, instant);
                counts.changed_v6.insert(key);
                if r.1 {
                    counts.v6.remove(&key);
                }
                r
            }
        };
        self.len = self.len + counts.len() - before;
        if ban {
            return Outcome::Ban(attempts);
        }
        if self.len > self.swept_at_len.max(MIN_SWEEP_LEN) * 2 || self.len > self.max_tracked {
            self.sweep(now);
        }
        Outcome::Counted(attempts)
    }

    /// The live counts of `ip` (an address as counted: aggregated already), per rule:
    /// (rule, attempts, Unix seconds of the latest), those not stale at `now`.
    pub fn of(&self, ip: IpAddr, now: DateTime<FixedOffset>) -> Vec<(Arc<str>, u32, u32)> {
        let now = seconds(now);
        let mut out: Vec<(Arc<str>, u32, u32)> = self
            .rules
            .iter()
            .filter_map(|(rule, counts)| {
                let count = match ip {
                    IpAddr::V4(v4) => counts.v4.get(&u32::from(v4)),
                    IpAddr::V6(v6) => counts.v6.get(&u128::from(v6)),
                }?;
                (count.attempts > 0 && now.saturating_sub(count.last) <= counts.window)
                    .then(|| (Arc::clone(rule), count.attempts, count.last))
            })
            .collect();
        out.sort();
        out
    }

    /// How many (rule, address) counters are held.
    pub fn tracked(&self) -> usize {
        self.len
    }

    /// The counters changed since the last call: each one's count now, `None` for one
    /// that is gone (a ban cleared it, or it went stale or over `max_tracked`).
    pub fn take_changes(&mut self) -> Vec<(Arc<str>, IpAddr, Option<SavedCount>)> {
        let mut out = Vec::new();
        for (rule, counts) in &mut self.rules {
            let window = counts.window;
            let saved = |c: &Count| SavedCount {
                attempts: c.attempts,
                last: c.last,
                stale_after: c.last.saturating_add(window),
            };
            for key in counts.changed_v4.drain() {
                let ip = IpAddr::from(std::net::Ipv4Addr::from(key));
                out.push((Arc::clone(rule), ip, counts.v4.get(&key).map(saved)));
            }
            for key in counts.changed_v6.drain() {
                let ip = IpAddr::from(std::net::Ipv6Addr::from(key));
                out.push((Arc::clone(rule), ip, counts.v6.get(&key).map(saved)));
            }
            counts.changed_v4.shrink_to(1024);
            counts.changed_v6.shrink_to(1024);
        }
        out
    }

    /// Puts back a counter saved by an earlier run of `rule` (whose request_time is
    /// `window`). It is already saved, so it is not a change.
    pub fn restore(&mut self, rule: &Arc<str>, ip: IpAddr, count: SavedCount, window: Duration) {
        let counts = self.rules.entry(Arc::clone(rule)).or_default();
        counts.window = u32::try_from(window.as_secs()).unwrap_or(u32::MAX);
        let value = Count {
            attempts: count.attempts,
            last: count.last,
        };
        let added = match ip {
            IpAddr::V4(v4) => counts.v4.insert(u32::from(v4), value).is_none(),
            IpAddr::V6(v6) => counts.v6.insert(u128::from(v6), value).is_none(),
        };
        if added {
            self.len += 1;
        }
        if self.len > self.max_tracked {
            self.sweep(count.last);
        }
    }

    /// Drops counters whose window has passed at `now`; if still over the cap, drops the
    /// oldest until at 90% of it.
    fn sweep(&mut self, now: u32) {
        for counts in self.rules.values_mut() {
            let window = counts.window;
            let fresh = |c: &Count| now.saturating_sub(c.last) <= window;
            retain_marking(&mut counts.v4, &mut counts.changed_v4, |c| fresh(c));
            retain_marking(&mut counts.v6, &mut counts.changed_v6, |c| fresh(c));
        }
        self.len = self.rules.values().map(RuleCounts::len).sum();
        if self.len > self.max_tracked {
            // Exactly the oldest go, even when many share one second: find the cut-off
            // time, then drop everything older and as many at the cut-off as needed.
            let target = self.max_tracked / 10 * 9;
            let mut lasts: Vec<u32> = self
                .rules
                .values()
                .flat_map(|c| c.v4.values().chain(c.v6.values()).map(|c| c.last))
                .collect();
            let cut = lasts.len() - target;
            let (_, &mut cutoff, _) = lasts.select_nth_unstable(cut - 1);
            let mut at_cutoff = cut - lasts.iter().filter(|&&l| l < cutoff).count();
            for counts in self.rules.values_mut() {
                let mut keep = |c: &Count| {
                    if c.last < cutoff {
                        return false;
                    }
                    if c.last == cutoff && at_cutoff > 0 {
                        at_cutoff -= 1;
                        return false;
                    }
                    true
                };
                retain_marking(&mut counts.v4, &mut counts.changed_v4, &mut keep);
                retain_marking(&mut counts.v6, &mut counts.changed_v6, &mut keep);
            }
            self.len = self.rules.values().map(RuleCounts::len).sum();
            log::warn!(
                "more than {} addresses are being counted at once; the oldest counters were dropped (raise max_tracked if this is expected)",
                self.max_tracked
            );
        }
        self.swept_at_len = self.len;
    }
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
    fn the_counts_of_one_address_are_told_per_rule_until_they_go_stale() {
        let mut c = Counters::new(1000);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        c.record(&a, ip, t(100), &limits(5, 60), false);
        c.record(&a, ip, t(110), &limits(5, 60), false);
        c.record(&b, ip, t(120), &limits(5, 600), false);
        let of = |at| c.of(ip, t(at));
        let last = |secs| seconds(t(secs));
        assert_eq!(
            of(130),
            vec![(a.clone(), 2, last(110)), (b.clone(), 1, last(120))]
        );
        assert_eq!(
            of(200),
            vec![(b.clone(), 1, last(120))],
            "a's window of 60 s is over"
        );
        assert!(c.of("192.0.2.8".parse().unwrap(), t(130)).is_empty());
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
        assert_eq!(c.tracked(), 3);
        assert_eq!(c.record(&a, ip1, t(3), &l, false), Outcome::Ban(2));
        assert_eq!(c.record(&a, ip2, t(4), &l, false), Outcome::Ban(2));
        assert_eq!(c.tracked(), 1);
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
            // All inside one window, most in the same second: nothing is stale, so the
            // cap must do the work.
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

    #[test]
    fn changes_are_handed_over_once_and_a_restored_count_goes_on() {
        let mut c = Counters::new(1000);
        let rule: Arc<str> = Arc::from("sshd");
        let (a, b): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let l = limits(3, 60);
        c.record(&rule, a, t(0), &l, false);
        c.record(&rule, a, t(10), &l, false);
        c.record(&rule, b, t(10), &l, false);
        let mut changes = c.take_changes();
        changes.sort_by_key(|(_, ip, _)| *ip);
        let base = seconds(t(0));
        assert_eq!(
            changes,
            [
                (
                    Arc::clone(&rule),
                    a,
                    Some(SavedCount {
                        attempts: 2,
                        last: base + 10,
                        stale_after: base + 70
                    })
                ),
                (
                    Arc::clone(&rule),
                    b,
                    Some(SavedCount {
                        attempts: 1,
                        last: base + 10,
                        stale_after: base + 70
                    })
                ),
            ]
        );
        assert!(c.take_changes().is_empty(), "handed over once");
        // A ban clears the counter: its change is that it is gone.
        c.record(&rule, b, t(11), &l, false);
        assert_eq!(c.record(&rule, b, t(12), &l, false), Outcome::Ban(3));
        assert_eq!(c.take_changes(), [(Arc::clone(&rule), b, None)]);
        // Another run goes on from the saved count.
        let mut next = Counters::new(1000);
        let saved = SavedCount {
            attempts: 2,
            last: base + 10,
            stale_after: base + 70,
        };
        next.restore(&rule, a, saved, Duration::from_secs(60));
        assert!(next.take_changes().is_empty(), "already saved");
        assert_eq!(next.record(&rule, a, t(20), &l, false), Outcome::Ban(3));
    }
}
