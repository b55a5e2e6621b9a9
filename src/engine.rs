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
use crate::firewall::Firewall;
use crate::net::{IgnoreList, display_net};
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
        let active: Vec<IpNet> = self.store.active_bans()?.iter().map(|b| b.net).collect();
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
        match self
            .counters
            .record(&a.rule, a.ip, a.at, &limits, a.instant)
        {
            Outcome::Counted(n) => log::debug!(
                "{} rule {}: attempt {n} of {}",
                a.ip,
                a.rule,
                limits.failed_attempts
            ),
            Outcome::Ban(attempts) => self.ban(&a, attempts, &limits),
        }
    }

    fn ban(&mut self, a: &Attempt, attempts: u32, limits: &Limits) {
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
        let new = NewBan {
            net: IpNet::from(a.ip),
            rule: a.rule.to_string(),
            reason: a.line.clone(),
            attempts,
            server: self.server.clone(),
            source: Origin::Log,
            banned_at: now,
            expires_at,
        };
        match actions::ban(&mut self.store, self.firewall.as_mut(), &new) {
            Ok(Recorded::New(_)) => {
                self.bans += 1;
                if let Some(t) = expires_at
                    && self.next_expiry.is_none_or(|n| t < n)
                {
                    self.next_expiry = Some(t);
                }
            }
            Ok(Recorded::AlreadyBanned(_)) => {
                log::debug!("{} is already banned", display_net(&new.net))
            }
            Err(e) => log::error!("cannot ban {}: {e}", a.ip),
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
