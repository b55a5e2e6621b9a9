//! The decision thread's state: counters, firewall and store, owned in one place.
//!
//! Watchers send attempts; the engine counts them, bans at the threshold, lifts bans when
//! their time is up (sleeping until the next expiry, not polling), and saves read
//! positions. Nothing else in the daemon touches the firewall or the store, so none of it
//! needs a lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ipnet::IpNet;

use crate::actions;
use crate::config::Settings;
use crate::counter::{Counters, Outcome};
use crate::firewall::{Entry, Firewall};
use crate::net::{IgnoreList, aggregate, display_net};
use crate::rule::Limits;
use crate::store::{NewBan, Origin, Positions, Recorded, SqliteStore};
use crate::watch::{Attempt, Event};

/// How often changed read positions are written.
const POSITION_FLUSH: Duration = Duration::from_secs(1);

pub struct Engine {
    limits: HashMap<Arc<str>, Limits>,
    ignore: IgnoreList,
    server: String,
    counters: Counters,
    firewall: Box<dyn Firewall>,
    store: SqliteStore,
    positions: Positions,
    positions_due: Option<Instant>,
    /// Bans decided but not yet applied (see `commit`).
    pending: Vec<NewBan>,
    ipv6_prefix: u8,
    next_expiry: Option<chrono::DateTime<Utc>>,
    pub bans: u64,
}

impl Engine {
    pub fn new(settings: &Settings, firewall: Box<dyn Firewall>, store: SqliteStore) -> Engine {
        let mut engine = Engine {
            limits: HashMap::new(),
            ignore: IgnoreList::default(),
            server: String::new(),
            counters: Counters::new(settings.config.max_tracked),
            firewall,
            store,
            positions: Positions::new(),
            positions_due: None,
            next_expiry: None,
            pending: Vec::new(),
            ipv6_prefix: 128,
            bans: 0,
        };
        engine.configure(settings);
        engine
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
    }

    /// Replaces the firewall (after a reload changed its settings).
    pub fn replace_firewall(&mut self, firewall: Box<dyn Firewall>) -> anyhow::Result<usize> {
        self.firewall = firewall;
        self.restore()
    }

    /// Lifts bans that expired while pyfilter was stopped, then puts every active ban in
    /// the kernel in one batch. Returns how many were restored.
    pub fn restore(&mut self) -> anyhow::Result<usize> {
        self.firewall.init()?;
        let now = Utc::now();
        let expired = self.store.due(now)?;
        for ban in &expired {
            self.store.lift(&ban.net, now, "expired")?;
        }
        let active: Vec<Entry> = self
            .store
            .active_bans()?
            .iter()
            .map(|b| Entry::until(b.net, b.expires_at, now))
            .collect();
        self.firewall.restore(&active)?;
        self.refresh_expiry();
        Ok(active.len())
    }

    pub fn saved_positions(&self) -> anyhow::Result<Positions> {
        Ok(self.store.positions()?)
    }

    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Attempt(a) => self.attempt(a),
            Event::Position { path, position } => {
                self.positions.insert(path, position);
                self.positions_due
                    .get_or_insert_with(|| Instant::now() + POSITION_FLUSH);
            }
        }
    }

    fn attempt(&mut self, a: Attempt) {
        if let Some(net) = self.ignore.covering(a.ip) {
            log::debug!(
                "{} matched rule {} but is in the ignore list ({net})",
                a.ip,
                a.rule
            );
            return;
        }
        let Some(limits) = self.limits.get(&a.rule).copied() else {
            return;
        };
        // With ipv6_prefix, an IPv6 attacker is its whole prefix: counted and banned as one.
        let target = aggregate(a.ip, self.ipv6_prefix);
        match self
            .counters
            .record(&a.rule, target.addr(), a.at, &limits, a.instant)
        {
            Outcome::Counted(n) => log::debug!(
                "{} rule {}: attempt {n} of {}",
                a.ip,
                a.rule,
                limits.failed_attempts
            ),
            Outcome::Ban(attempts) => self.decide_ban(&a, target, attempts, &limits),
        }
    }

    /// Queues a ban; `commit` applies the queue, so a burst becomes one batch.
    fn decide_ban(&mut self, a: &Attempt, net: IpNet, attempts: u32, limits: &Limits) {
        let now = Utc::now();
        // The ban runs from the deciding line's time (never later than now), so lines
        // caught up after a restart do not ban for longer than they would have live.
        let from = a.at.with_timezone(&Utc).min(now);
        let expires_at = limits.ban_time.expiry(from);
        if expires_at.is_some_and(|t| t <= now) {
            log::info!(
                "{} reached {attempts} attempts for rule {} at {}, but that ban would already have ended",
                a.ip,
                a.rule,
                a.at
            );
            return;
        }
        self.pending.push(NewBan {
            net,
            rule: a.rule.to_string(),
            reason: a.line.clone(),
            attempts,
            server: self.server.clone(),
            source: Origin::Log,
            banned_at: now,
            expires_at,
        });
    }

    /// Applies the queued bans: one store transaction and one firewall batch.
    pub fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        match actions::ban_many(&mut self.store, self.firewall.as_mut(), &pending) {
            Ok(recorded) => {
                for r in recorded {
                    match r {
                        Recorded::New(ban) => {
                            self.bans += 1;
                            if let Some(t) = ban.expires_at
                                && self.next_expiry.is_none_or(|n| t < n)
                            {
                                self.next_expiry = Some(t);
                            }
                        }
                        Recorded::AlreadyBanned(ban) => {
                            log::debug!("{} is already banned", display_net(&ban.net))
                        }
                    }
                }
            }
            Err(e) => log::error!("cannot ban {} addresses: {e}", pending.len()),
        }
    }

    /// Lifts bans whose time is up.
    pub fn expire(&mut self) {
        match actions::expire_due(&mut self.store, self.firewall.as_mut(), Utc::now()) {
            Ok(_) => {}
            Err(e) => log::error!("cannot lift expired bans: {e}"),
        }
        self.refresh_expiry();
    }

    /// Re-reads the next expiry (the CLI may have banned or unbanned meanwhile).
    pub fn refresh_expiry(&mut self) {
        match self.store.next_expiry() {
            Ok(t) => self.next_expiry = t,
            Err(e) => log::error!("cannot read the next expiry: {e}"),
        }
    }

    /// Writes changed read positions.
    pub fn flush_positions(&mut self) {
        self.positions_due = None;
        if self.positions.is_empty() {
            return;
        }
        match self.store.save_positions(&self.positions) {
            Ok(()) => self.positions.clear(),
            Err(e) => log::error!("cannot save log positions: {e}"),
        }
    }

    /// The earliest moment something is due: a ban to lift or positions to save.
    pub fn deadline(&self) -> Option<Instant> {
        let expiry = self.next_expiry.map(|t| {
            let wait = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            // Second-granular expiry times: wake just after the second turns.
            Instant::now() + wait + Duration::from_millis(5)
        });
        [expiry, self.positions_due].into_iter().flatten().min()
    }

    /// Does whatever is due now.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if self.positions_due.is_some_and(|t| t <= now) {
            self.flush_positions();
        }
        if self.next_expiry.is_some_and(|t| t <= Utc::now()) {
            self.expire();
        }
    }

    pub fn tracked(&self) -> usize {
        self.counters.tracked()
    }
}
