//! Deciding bans from attempts: an address in the ignore list is never counted, the
//! others are counted per (rule, address) (an IPv6 attacker by its `ipv6_prefix`), and
//! the attempt that reaches the rule's `failed_attempts`, or matches an instant pattern,
//! decides a ban. The ban lasts the rule's `ban_time`, longer with `ban_time_increment`
//! for an address banned before, counted from the line's own time.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::ban::{NewBan, Origin};
use crate::config::Increment;
use crate::duration::{BanTime, before, format_duration};
use crate::event::Attempt;
use crate::net::{IgnoreList, aggregate, display_net};
use crate::rule::Limits;
use crate::settings::Settings;
use crate::store::{BanStore, SavedCount};

use super::counter::{Counters, Outcome};

pub struct Decider {
    /// Each rule's numbers, by name.
    limits: HashMap<Arc<str>, Limits>,
    ignore: IgnoreList,
    /// This server's name, written on its bans.
    server: String,
    ipv6_prefix: u8,
    increment: Option<Increment>,
    counters: Counters,
}

impl Decider {
    pub fn new(settings: &Settings) -> Decider {
        let mut decider = Decider {
            limits: HashMap::new(),
            ignore: IgnoreList::default(),
            server: String::new(),
            ipv6_prefix: 128,
            increment: None,
            counters: Counters::new(settings.config.max_tracked),
        };
        decider.configure(settings);
        decider
    }

    /// Takes the numbers, ignore list and server name of new settings; counters are kept.
    pub fn configure(&mut self, settings: &Settings) {
        self.limits = settings
            .rules
            .iter()
            .map(|r| (Arc::clone(&r.name), r.limits))
            .collect();
        self.ignore = settings.ignore.clone();
        self.server = settings.config.server_name.clone();
        self.ipv6_prefix = settings.config.ipv6_prefix;
        self.increment = settings.config.ban_time_increment;
    }

    /// The addresses and blocks never banned.
    pub fn ignore(&self) -> &IgnoreList {
        &self.ignore
    }

    /// The live counts of `ip` per rule, as `show` tells them: counted as the decider
    /// counts it (with `ipv6_prefix`, its prefix).
    pub fn counts_of(&self, ip: std::net::IpAddr) -> Vec<(Arc<str>, u32, u32)> {
        let target = aggregate(ip, self.ipv6_prefix);
        self.counters.of(target.addr(), Utc::now().fixed_offset())
    }

    /// How many (rule, address) counters are held.
    pub fn tracked(&self) -> usize {
        self.counters.tracked()
    }

    /// The counters changed since the last call, to be saved.
    pub fn take_changes(&mut self) -> Vec<(Arc<str>, std::net::IpAddr, Option<SavedCount>)> {
        self.counters.take_changes()
    }

    /// Puts back the counters an earlier run saved, for the rules still configured.
    /// Returns how many.
    pub fn restore_counts(&mut self, saved: Vec<(String, std::net::IpAddr, SavedCount)>) -> usize {
        let mut restored = 0;
        for (rule, ip, count) in saved {
            if let Some((name, limits)) = self.limits.get_key_value(rule.as_str()) {
                let name = Arc::clone(name);
                self.counters.restore(&name, ip, count, limits.request_time);
                restored += 1;
            }
        }
        restored
    }

    /// Counts an attempt seen at `now`; returns the ban it decides, if any. `store`
    /// tells how often the address was banned before, for `ban_time_increment`.
    pub fn attempt(
        &mut self,
        a: Attempt,
        now: DateTime<Utc>,
        store: &mut dyn BanStore,
    ) -> Option<NewBan> {
        if let Some(net) = self.ignore.covering(a.ip) {
            log::debug!(
                "{} matched rule {} but is in the ignore list ({net})",
                a.ip,
                a.rule
            );
            return None;
        }
        let limits = self.limits.get(&a.rule).copied()?;
        // With ipv6_prefix, an IPv6 attacker is its whole prefix: counted and banned as one.
        let target = aggregate(a.ip, self.ipv6_prefix);
        match self
            .counters
            .record(&a.rule, target.addr(), a.at, &limits, a.instant)
        {
            Outcome::Counted(n) => {
                log::debug!(
                    "{} rule {}: attempt {n} of {}",
                    a.ip,
                    a.rule,
                    limits.failed_attempts
                );
                None
            }
            Outcome::Ban(attempts) => self.ban(a, target, attempts, &limits, now, store),
        }
    }

    /// The ban of `net` that `a` tipped, unless it would already have ended.
    fn ban(
        &self,
        a: Attempt,
        net: IpNet,
        attempts: u32,
        limits: &Limits,
        now: DateTime<Utc>,
        store: &mut dyn BanStore,
    ) -> Option<NewBan> {
        // The ban runs from the deciding line's time (never later than now), so lines
        // caught up after a restart do not ban for longer than they would have live.
        let from = a.at.with_timezone(&Utc).min(now);
        let expires_at = self
            .ban_time(&net, limits.ban_time, now, store)
            .expiry(from);
        if expires_at.is_some_and(|t| t <= now) {
            log::info!(
                "{} reached {} for rule {} at {}, but that ban would already have ended",
                a.ip,
                crate::words::counted(attempts, "attempt"),
                a.rule,
                a.at
            );
            return None;
        }
        Some(NewBan {
            net,
            rule: a.rule.to_string(),
            reason: a.line,
            attempts,
            server: self.server.clone(),
            source: Origin::Log,
            banned_at: crate::time::start_second(now),
            expires_at,
        })
    }

    /// How long `net` is banned for: the rule's ban time, made longer by
    /// `ban_time_increment` for each time it was banned within its window.
    fn ban_time(
        &self,
        net: &IpNet,
        base: BanTime,
        now: DateTime<Utc>,
        store: &mut dyn BanStore,
    ) -> BanTime {
        let Some(inc) = self.increment else {
            return base;
        };
        let since = before(now, inc.window);
        let earlier = store.bans_since(net, since).unwrap_or_else(|e| {
            log::warn!("cannot count earlier bans of {}: {e}", display_net(net));
            0
        });
        let longer = inc.apply(base, earlier);
        if earlier > 0 {
            log::info!(
                "{} was banned {} within {}: banned for {longer}",
                display_net(net),
                crate::words::counted(earlier, "time"),
                format_duration(inc.window)
            );
        }
        longer
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use ipnet::IpNet;

    use crate::ban::Origin;
    use crate::engine::testing::*;

    #[test]
    fn the_nth_attempt_bans_and_one_fewer_does_not() {
        let mut f = Fixture::new("");
        f.engine
            .receive([attempt("192.0.2.1"), attempt("192.0.2.1")]);
        assert!(f.active().is_empty(), "2 of 3 attempts ban nobody");
        f.engine.receive([attempt("192.0.2.1")]);
        let active = f.active();
        assert_eq!(active.len(), 1);
        let ban = &active[0];
        assert_eq!(ban.net, net("192.0.2.1"));
        assert_eq!((ban.attempts, ban.rule.as_str()), (3, RULE));
        assert_eq!(
            ban.reason, "failed from 192.0.2.1",
            "the line is the reason"
        );
        assert_eq!((ban.source, ban.server.as_str()), (Origin::Log, "test"));
        let lasts = ban.expires_at.expect("1h, not forever") - ban.banned_at;
        assert!((3599..=3601).contains(&lasts.num_seconds()), "{lasts}");
        assert_eq!(f.engine.bans, 1);
    }

    #[test]
    fn attempts_further_apart_than_request_time_start_the_count_again() {
        let mut f = Fixture::new("");
        let now = Utc::now();
        let ago = |s| now - chrono::Duration::seconds(s);
        // 70 s apart with a request_time of 1m: each one is the first again.
        f.engine.receive([
            attempt_at("192.0.2.1", ago(210)),
            attempt_at("192.0.2.1", ago(140)),
            attempt_at("192.0.2.1", ago(70)),
        ]);
        assert!(f.active().is_empty());
        // The last of those and two within a minute of each other: three in a row.
        f.engine.receive([
            attempt_at("192.0.2.1", ago(20)),
            attempt_at("192.0.2.1", ago(0)),
        ]);
        assert!(f.banned("192.0.2.1"));
    }

    #[test]
    fn an_instant_pattern_bans_on_its_first_match() {
        let mut f = Fixture::new("");
        f.engine.receive([instant("2001:db8::7")]);
        let active = f.active();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].attempts, 1);
    }

    #[test]
    fn an_address_in_the_ignore_list_is_never_banned() {
        let mut f = Fixture::new("");
        let many: Vec<_> = (0..10).map(|_| attempt(IGNORED)).collect();
        f.engine.receive(many);
        f.engine.receive([instant(IGNORED), instant("127.0.0.1")]);
        assert!(f.active().is_empty());
        assert_eq!(
            f.engine.tracked(),
            0,
            "ignored addresses are not even counted"
        );
    }

    #[test]
    fn with_ipv6_prefix_an_ipv6_attacker_is_counted_and_banned_by_its_prefix() {
        let mut f = Fixture::new("ipv6_prefix: 64\n");
        f.engine.receive([
            attempt("2001:db8::1"),
            attempt("2001:db8::2"),
            attempt("2001:db8::3"),
        ]);
        let nets: Vec<IpNet> = f.active().iter().map(|b| b.net).collect();
        assert_eq!(nets, ["2001:db8::/64".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn ban_time_increment_lengthens_the_ban_of_an_address_banned_before() {
        let mut f = Fixture::new("ban_time_increment: { factor: 2, max: 1d }\n");
        f.engine.receive([instant("192.0.2.1")]);
        let mut store = f.store();
        store
            .lift_many(&[net("192.0.2.1")], Utc::now(), "by hand")
            .unwrap();
        f.engine.receive([instant("192.0.2.1")]);
        let active = f.active();
        let lasts = active[0].expires_at.unwrap() - active[0].banned_at;
        assert!((7199..=7201).contains(&lasts.num_seconds()), "{lasts}");
    }

    #[test]
    fn a_ban_that_would_already_have_ended_is_not_made() {
        let mut f = Fixture::new("ban_time: 1m\n");
        f.engine.receive([attempt_at(
            "192.0.2.1",
            Utc::now() - chrono::Duration::hours(2),
        )]);
        f.engine.receive([instant("192.0.2.2")]);
        let nets: Vec<IpNet> = f.active().iter().map(|b| b.net).collect();
        assert_eq!(nets, [net("192.0.2.2")]);
    }
}
