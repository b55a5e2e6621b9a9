//! Who is signed in, and who may try again: server-side sessions (so signing out, or a
//! new password, ends them for good) and the per-address limit on failed sign-ins.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    /// Every form of this session carries it.
    pub csrf: String,
    /// The user's `changed_at` at sign-in: a password set since voids the session.
    pub stamp: DateTime<Utc>,
    last_seen: Instant,
}

/// Sessions by id; ids are random tokens (`auth::token`).
pub struct Sessions {
    map: HashMap<String, Session>,
    idle: Duration,
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            map: HashMap::new(),
            idle,
        }
    }

    pub fn create(
        &mut self,
        id: String,
        user: &str,
        csrf: String,
        stamp: DateTime<Utc>,
        now: Instant,
    ) {
        self.sweep(now);
        self.map.insert(
            id,
            Session {
                user: user.to_string(),
                csrf,
                stamp,
                last_seen: now,
            },
        );
    }

    /// The live session of `id`, marked as used now; an idle one is ended.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<&Session> {
        let idle = self.idle;
        let fresh = self
            .map
            .get(id)
            .is_some_and(|s| now.saturating_duration_since(s.last_seen) < idle);
        if !fresh {
            self.map.remove(id);
            return None;
        }
        let session = self.map.get_mut(id)?;
        session.last_seen = now;
        Some(session)
    }

    pub fn end(&mut self, id: &str) {
        self.map.remove(id);
    }

    /// Ends every session of `user` (a new password).
    pub fn end_user(&mut self, user: &str) {
        self.map.retain(|_, s| s.user != user);
    }

    fn sweep(&mut self, now: Instant) {
        let idle = self.idle;
        self.map
            .retain(|_, s| now.saturating_duration_since(s.last_seen) < idle);
    }
}

/// Failed sign-ins per client address within a sliding window.
pub struct Limiter {
    max: usize,
    window: Duration,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

/// Addresses remembered at most: a flood from many addresses must not grow the map
/// without end (the oldest entries go first).
const MAX_ADDRESSES: usize = 100_000;

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Limiter {
        Limiter {
            max: max as usize,
            window,
            failures: HashMap::new(),
        }
    }

    /// `Some(wait)` when `ip` has used up its attempts.
    pub fn blocked(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let window = self.window;
        let times = self.failures.get_mut(&ip)?;
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.failures.remove(&ip);
            return None;
        }
        (times.len() >= self.max)
            .then(|| {
                times
                    .front()
                    .map(|t| window.saturating_sub(now.saturating_duration_since(*t)))
            })
            .flatten()
    }

    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.failures.len() >= MAX_ADDRESSES && !self.failures.contains_key(&ip) {
            let window = self.window;
            self.failures.retain(|_, t| {
                t.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            if self.failures.len() >= MAX_ADDRESSES {
                self.failures.clear();
            }
        }
        self.failures.entry(ip).or_default().push_back(now);
    }

    pub fn succeeded(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_sessions_end_and_a_user_s_sessions_end_together() {
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        let mut s = Sessions::new(min * 30);
        s.create("a".into(), "alice", "c1".into(), Utc::now(), t0);
        s.create("b".into(), "alice", "c2".into(), Utc::now(), t0);
        s.create("c".into(), "bob", "c3".into(), Utc::now(), t0);
        assert_eq!(s.get("a", t0 + min * 29).unwrap().csrf, "c1");
        // Used at 29 min: still alive at 58.
        assert!(s.get("a", t0 + min * 58).is_some());
        assert!(s.get("b", t0 + min * 31).is_none(), "idle for 31 min");
        s.end_user("alice");
        assert!(s.get("a", t0 + min * 59).is_none());
        assert!(s.get("c", t0 + min * 10).is_some());
        s.end("c");
        assert!(s.get("c", t0 + min * 10).is_none());
    }

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_passes() {
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let mut l = Limiter::new(3, min * 15);
        for i in 0..3 {
            assert_eq!(l.blocked(ip, t0 + min * i), None);
            l.failed(ip, t0 + min * i);
        }
        assert_eq!(l.blocked(ip, t0 + min * 5), Some(min * 10));
        assert_eq!(l.blocked(other, t0 + min * 5), None);
        // The first failure leaves the window at 15 min.
        assert_eq!(l.blocked(ip, t0 + min * 15), None);
        l.failed(ip, t0 + min * 15);
        assert_eq!(l.blocked(ip, t0 + min * 15), Some(min));
        l.succeeded(ip);
        assert_eq!(l.blocked(ip, t0 + min * 15), None);
    }
}
