//! The decision thread's state: counters, firewall and store, owned in one place.
//!
//! Watchers send attempts; the engine counts them, bans at the threshold, lifts bans when
//! their time is up (sleeping until the next expiry, not polling), and saves read
//! positions. With a Redis store it also applies the other servers' bans and unbans, and
//! reconciles the firewall with the fleet's active bans on start, on every reconnection
//! and every `redis.reconcile_every`. Nothing else in the daemon touches the firewall or
//! the store, so none of it needs a lock.

pub mod apply;
mod bookkeeping;
pub mod counter;
mod decide;
pub mod manual;
mod retry;
mod timers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ipnet::IpNet;

use crate::ban::{NewBan, Origin, Recorded};
use crate::config::Settings;
use crate::event::{Attempt, Cursors, Event, Link, Positions, RemoteEvent};
use crate::firewall::{Entry, Firewall};
use crate::metrics::Metrics;
use crate::net::display_net;
use crate::store::{BanStore, SqliteStore, StoreError};
use apply::ActionError;
use bookkeeping::Bookkeeping;
use decide::Decider;
use retry::Retry;
use timers::Expiry;

/// Most events in one batch: the bans they decide are applied together, after them.
const BATCH: usize = 50_000;

pub struct Engine {
    decider: Decider,
    firewall: Box<dyn Firewall>,
    store: Box<dyn BanStore>,
    /// What this server has put in its firewall, and why: what reconciling compares with
    /// the store, and what it puts back if a shared store lost its data.
    applied: HashMap<IpNet, NewBan>,
    /// With a shared store: how often to reconcile, and when next.
    reconcile_every: Option<Duration>,
    reconcile_due: Option<Instant>,
    epoch: Option<String>,
    /// When `restore` began reading the store's active bans; the first subscription
    /// made before that needs no reconcile.
    restored_at: Option<Instant>,
    /// Bans decided in this batch, applied together by `commit`.
    pending: Vec<NewBan>,
    retry: Retry,
    /// When the next ban in the store ends.
    expiry: Expiry,
    books: Bookkeeping,
    pub bans: u64,
    /// The daemon's counters; bans and reconciles are counted here.
    metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(
        settings: &Settings,
        firewall: Box<dyn Firewall>,
        store: Box<dyn BanStore>,
        local: SqliteStore,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let mut engine = Engine {
            decider: Decider::new(settings),
            firewall,
            store,
            applied: HashMap::new(),
            reconcile_every: None,
            reconcile_due: None,
            epoch: None,
            restored_at: None,
            expiry: Expiry::default(),
            books: Bookkeeping::new(local, Arc::clone(&metrics)),
            pending: Vec::new(),
            retry: Retry::default(),
            bans: 0,
            metrics,
        };
        engine.configure(settings);
        engine
    }

    /// Takes the numbers, ignore list and server name of new settings; counters are kept.
    pub fn configure(&mut self, settings: &Settings) {
        self.decider.configure(settings);
        self.reconcile_every = (settings.config.store == crate::config::StoreKind::Redis)
            .then_some(settings.config.redis.reconcile_every);
        self.reconcile_due = self.reconcile_every.map(|d| Instant::now() + d);
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
        if let Err(e) = self.store.flush_outbox() {
            log::warn!("changes queued while the store was away are not delivered yet: {e}");
        }
        let reading = Instant::now();
        let active = match self.store.active_bans() {
            Ok(active) => {
                self.restored_at = Some(reading);
                active
            }
            // A fleet server starts (and protects itself) even while Redis is away.
            Err(e @ crate::store::StoreError::Unreachable { .. }) => {
                log::warn!("starting without the fleet's bans: {e}");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        let (expired, active): (Vec<_>, Vec<_>) = active
            .into_iter()
            .partition(|b| b.expires_at.is_some_and(|t| t <= now));
        let expired: Vec<IpNet> = expired.iter().map(|b| b.net).collect();
        self.store.lift_many(&expired, now, "expired")?;
        let active: Vec<_> = active
            .into_iter()
            .filter(|b| self.decider.ignore().overlapping(&b.net).is_none())
            .collect();
        let entries: Vec<Entry> = active
            .iter()
            .map(|b| Entry::until(b.net, b.expires_at, now))
            .collect();
        self.firewall.restore(&entries)?;
        if self.restored_at.is_some() && self.reconcile_every.is_some() {
            // With a shared store the restore is the first reconcile: the firewall now
            // holds exactly the fleet's active bans.
            self.metrics.reconciled(now, entries.len(), 0);
        }
        self.applied = active.into_iter().map(|b| (b.net, b.new)).collect();
        self.epoch = self.store.epoch().ok().flatten();
        self.refresh_expiry();
        Ok(entries.len())
    }

    /// Makes the firewall agree with the store's active bans: delivers the outbox, puts
    /// back this server's bans if the shared store lost its data, then bans what is
    /// missing and unbans what is gone. Returns (banned, unbanned).
    pub fn reconcile(&mut self) -> anyhow::Result<(usize, usize)> {
        self.reconcile_due = self.reconcile_every.map(|d| Instant::now() + d);
        let delivered = self.store.flush_outbox()?;
        if delivered > 0 {
            log::info!("delivered {delivered} changes queued while the store was away");
        }
        let epoch = self.store.epoch()?;
        if self.epoch.is_some() && epoch != self.epoch {
            let known: Vec<NewBan> = self.applied.values().cloned().collect();
            log::warn!(
                "the shared store lost its data; putting back the {} bans this server knows",
                known.len()
            );
            self.store.record_many(&known)?;
        }
        self.epoch = epoch;
        let now = Utc::now();
        let active = self.store.active_bans()?;
        let desired: HashMap<IpNet, NewBan> = active
            .into_iter()
            .filter(|b| {
                b.expires_at.is_none_or(|t| t > now)
                    && self.decider.ignore().overlapping(&b.net).is_none()
            })
            .map(|b| (b.net, b.new))
            .collect();
        let missing: Vec<Entry> = desired
            .iter()
            .filter(|(n, _)| !self.applied.contains_key(*n))
            .map(|(n, b)| Entry::until(*n, b.expires_at, now))
            .collect();
        let gone: Vec<IpNet> = self
            .applied
            .keys()
            .filter(|n| !desired.contains_key(*n))
            .copied()
            .collect();
        if !missing.is_empty() {
            self.firewall.ban(&missing)?;
        }
        if !gone.is_empty() {
            self.firewall.unban(&gone)?;
        }
        self.applied = desired;
        self.refresh_expiry();
        self.metrics
            .reconciled(Utc::now(), missing.len(), gone.len());
        self.books.counted(Instant::now());
        Ok((missing.len(), gone.len()))
    }

    /// Applies another server's ban or unban to this server's firewall. The fleet's
    /// record is already in the shared store; only the kernel changes here, and a remote
    /// ban keeps the end its origin gave it.
    fn remote(&mut self, event: RemoteEvent) {
        let now = Utc::now();
        match event {
            RemoteEvent::Ban {
                net,
                rule,
                server,
                reason,
                until,
            } => {
                if let Some(ignored) = self.decider.ignore().overlapping(&net) {
                    log::warn!(
                        "{server} banned {}, which overlaps {ignored} in the ignore list: not applied here",
                        display_net(&net)
                    );
                    return;
                }
                if until.is_some_and(|t| t <= now) {
                    return;
                }
                match self.firewall.ban(&[Entry::until(net, until, now)]) {
                    Ok(()) => {
                        log::info!("banned {} (from {server}, rule {rule})", display_net(&net));
                        let ban = NewBan {
                            net,
                            rule,
                            reason,
                            attempts: 0,
                            server,
                            source: Origin::Remote,
                            banned_at: now,
                            expires_at: until,
                        };
                        self.applied.insert(net, ban);
                        if let Some(t) = until {
                            self.expiry.no_later_than(t);
                        }
                    }
                    Err(e) => {
                        log::error!("cannot apply {server}'s ban of {}: {e}", display_net(&net))
                    }
                }
            }
            RemoteEvent::Unban { net, server } => match self.firewall.unban(&[net]) {
                Ok(()) => {
                    if self.applied.remove(&net).is_some() {
                        log::info!("unbanned {} (by {server})", display_net(&net));
                    }
                }
                Err(e) => log::error!(
                    "cannot apply {server}'s unban of {}: {e}",
                    display_net(&net)
                ),
            },
        }
    }

    pub fn saved_positions(&mut self) -> Result<Positions, StoreError> {
        self.books.saved_positions()
    }

    pub fn saved_cursors(&self) -> Result<Cursors, StoreError> {
        self.books.saved_cursors()
    }

    /// Handles what arrived, then applies the bans it decided as one batch. `arrived` is
    /// the event that woke the decision loop followed by what is already queued: that
    /// joins the batch, and nothing waits for more, so a lone ban goes out at once and a
    /// burst goes out as one batch. At most `BATCH` events are taken; the rest stay where
    /// they are for the next call.
    pub fn receive(&mut self, arrived: impl IntoIterator<Item = Event>) {
        for event in arrived.into_iter().take(BATCH) {
            self.handle(event);
        }
        self.commit();
    }

    /// Handles all of `arrived`, batch after batch (what the watchers sent before they
    /// stopped).
    pub fn drain(&mut self, arrived: impl IntoIterator<Item = Event>) {
        let mut arrived = arrived.into_iter().peekable();
        loop {
            self.receive(arrived.by_ref());
            if arrived.peek().is_none() {
                break;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let now = Instant::now();
        // Every count moves with an event: lines read end in a position or cursor, a
        // fleet event arrives as one.
        self.books.counted(now);
        match event {
            Event::Attempt(a) => self.attempt(a),
            Event::Position { path, position } => self.books.position(path, position, now),
            Event::Cursor { rule, cursor } => self.books.cursor(rule, cursor, now),
            Event::Remote(event) => self.remote(event),
            // Subscribed before restore read the active bans: that read holds all that
            // was published before, and the channel holds all that came since, so a
            // second read of every ban (seconds, with a large fleet) would add nothing.
            Event::Link(Link::Up(subscribed))
                if self
                    .restored_at
                    .take()
                    .is_some_and(|read| subscribed <= read) =>
            {
                log::info!(
                    "caught up with the fleet: subscribed before the bans were read, nothing more to apply"
                );
            }
            Event::Link(Link::Up(_)) => match self.reconcile() {
                Ok((banned, unbanned)) => log::info!(
                    "caught up with the fleet: {banned} bans and {unbanned} unbans applied"
                ),
                Err(e) => log::warn!("cannot reconcile with the store yet: {e}"),
            },
            Event::Link(Link::Down) => self.restored_at = None,
        }
    }

    /// Counts an attempt; a ban it decides joins the batch.
    fn attempt(&mut self, a: Attempt) {
        if let Some(ban) = self.decider.attempt(a, Utc::now(), self.store.as_mut()) {
            self.pending.push(ban);
        }
    }

    /// Applies the batch's bans, with the refused ones whose retry is due: one store
    /// transaction and one firewall batch.
    fn commit(&mut self) {
        let now = Instant::now();
        let mut batch = std::mem::take(&mut self.pending);
        // Bans the firewall refused earlier go with this batch.
        batch.extend(self.retry.take_due(now));
        if batch.is_empty() {
            return;
        }
        match apply::ban_many(self.store.as_mut(), self.firewall.as_mut(), &batch) {
            Ok(recorded) => {
                for r in recorded {
                    match r {
                        Recorded::New(ban) => {
                            self.bans += 1;
                            self.metrics.banned();
                            if let Some(t) = ban.expires_at {
                                self.expiry.no_later_than(t);
                            }
                            self.applied.insert(ban.net, ban.new);
                        }
                        Recorded::AlreadyBanned(ban) => {
                            log::debug!("{} is already banned", display_net(&ban.net));
                            self.applied.insert(ban.net, ban.new);
                        }
                    }
                }
            }
            Err(ActionError::Firewall(e)) => {
                // Nothing was recorded: the same bans are tried again, later and later.
                self.retry.refused(batch, &e, now);
                return;
            }
            Err(e @ ActionError::NotRecorded { .. }) => {
                log::error!("{e}; they protect this server until it restarts");
                for ban in batch {
                    self.applied.insert(ban.net, ban);
                }
            }
            Err(e) => log::error!("cannot ban {} addresses: {e}", batch.len()),
        }
        self.retry.settled();
    }

    /// Lifts bans whose time is up.
    pub fn expire(&mut self) {
        match apply::expire_due(self.store.as_mut(), self.firewall.as_mut(), Utc::now()) {
            Ok(lifted) => {
                for ban in lifted {
                    self.applied.remove(&ban.net);
                }
            }
            Err(e) => log::error!("cannot lift expired bans: {e}"),
        }
        self.refresh_expiry();
    }

    /// Re-reads the next expiry (the CLI may have banned or unbanned meanwhile).
    pub fn refresh_expiry(&mut self) {
        match self.store.next_expiry() {
            Ok(t) => self.expiry.set(t),
            Err(e) => log::error!("cannot read the next expiry: {e}"),
        }
    }

    /// Writes changed read positions now.
    pub fn flush_positions(&mut self) {
        self.books.flush_positions();
    }

    /// Saves the counters' snapshot in the local SQLite file, for the admin's `/metrics`.
    pub fn save_stats(&mut self) {
        self.books.save_stats();
    }

    /// The earliest moment something is due: a ban to lift, positions or counters to save.
    pub fn deadline(&self) -> Option<Instant> {
        [
            self.expiry.when(),
            self.books.due(),
            self.reconcile_due,
            self.retry.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does whatever is due now.
    pub fn tick(&mut self) {
        let now = Instant::now();
        self.books.tick(now);
        if self.expiry.is_due(Utc::now()) {
            self.expire();
        }
        if self.retry.is_due(now) {
            self.commit();
        }
        if self.reconcile_due.is_some_and(|t| t <= now) {
            match self.reconcile() {
                Ok((0, 0)) => {}
                Ok((banned, unbanned)) => log::info!(
                    "reconciled with the store: {banned} bans and {unbanned} unbans applied"
                ),
                Err(e) => log::warn!("cannot reconcile with the store: {e}"),
            }
        }
    }

    /// How many (rule, address) counters are held.
    pub fn tracked(&self) -> usize {
        self.decider.tracked()
    }
}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chrono::Utc;

    use super::testing::*;
    use super::*;

    #[test]
    fn a_burst_goes_to_the_firewall_as_one_batch() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        f.engine.receive([
            instant("192.0.2.1"),
            instant("192.0.2.2"),
            instant("192.0.2.3"),
        ]);
        assert_eq!(kernel.ban_calls(), [3]);
        assert_eq!(f.active().len(), 3);
    }

    #[test]
    fn a_batch_takes_at_most_batch_events_and_leaves_the_rest_queued() {
        let mut f = Fixture::new("");
        let cursor = |i: usize| Event::Cursor {
            rule: RULE.into(),
            cursor: format!("s=1;i={i}"),
        };
        let mut queued = (0..BATCH + 5).map(cursor);
        f.engine.receive(queued.by_ref());
        assert_eq!(queued.len(), 5);
        let mut queued = (0..2 * BATCH + 5).map(cursor);
        f.engine.drain(queued.by_ref());
        assert_eq!(queued.len(), 0, "a drain takes everything");
    }

    #[test]
    fn expiry_lifts_a_ban_at_its_time() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("ban_time: 1s\n", &kernel);
        f.engine.receive([instant("192.0.2.1")]);
        let banned = Instant::now();
        assert!(kernel.holds("192.0.2.1") && f.banned("192.0.2.1"));
        f.engine.tick();
        assert!(f.banned("192.0.2.1"), "not before its time");
        // The store keeps whole seconds: the end is read again at the first wake-up
        // and the ban lifted within the second after it.
        while f.banned("192.0.2.1") {
            assert!(
                banned.elapsed() < Duration::from_millis(2100),
                "still banned"
            );
            wait_and_tick(&mut f.engine);
        }
        assert!(
            banned.elapsed() >= Duration::from_millis(900),
            "lifted early"
        );
        assert!(!kernel.holds("192.0.2.1"));
        let lifted = f.store().all_bans().unwrap();
        assert_eq!(lifted[0].lift_reason.as_deref(), Some("expired"));
    }

    #[test]
    fn restore_puts_active_bans_in_the_firewall_and_lifts_expired_ones() {
        let kernel = Kernel::default();
        let f = Fixture::new("");
        let mut store = f.store();
        let hour = chrono::Duration::hours(1);
        store
            .record_many(&[
                ban_by_others("192.0.2.1", Some(Utc::now() + hour)),
                ban_by_others("192.0.2.2", Some(Utc::now() - hour)),
                ban_by_others("192.0.2.3", None),
                ban_by_others(IGNORED, None),
            ])
            .unwrap();
        let mut engine = f.engine;
        assert_eq!(
            engine.replace_firewall(Box::new(kernel.clone())).unwrap(),
            2
        );
        assert_eq!(kernel.nets(), [net("192.0.2.1"), net("192.0.2.3")]);
        let active: Vec<IpNet> = store.active_bans().unwrap().iter().map(|b| b.net).collect();
        assert!(!active.contains(&net("192.0.2.2")), "{active:?}");
    }

    #[test]
    fn reconcile_applies_missing_bans_and_lifts_gone_ones() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        f.engine.receive([instant("192.0.2.1")]);
        // Meanwhile, elsewhere: one more ban, and ours lifted.
        let mut store = f.store();
        store
            .record_many(&[ban_by_others("192.0.2.9", None)])
            .unwrap();
        store
            .lift_many(&[net("192.0.2.1")], Utc::now(), "by hand")
            .unwrap();
        assert_eq!(f.engine.reconcile().unwrap(), (1, 1));
        assert_eq!(kernel.nets(), [net("192.0.2.9")]);
        assert_eq!(f.engine.reconcile().unwrap(), (0, 0), "nothing left to do");
    }

    #[test]
    fn reconcile_leaves_ignored_and_ended_bans_out_of_the_firewall() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        let mut store = f.store();
        store
            .record_many(&[
                ban_by_others(IGNORED, None),
                ban_by_others("192.0.2.5", Some(Utc::now() - chrono::Duration::seconds(1))),
            ])
            .unwrap();
        assert_eq!(f.engine.reconcile().unwrap(), (0, 0));
        assert!(kernel.nets().is_empty());
    }

    #[test]
    fn a_remote_ban_reaches_the_firewall_and_its_unban_lifts_it() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        let ban = |ip: &str| {
            Event::Remote(RemoteEvent::Ban {
                net: net(ip),
                rule: RULE.into(),
                server: "web-2".into(),
                reason: "failed".into(),
                until: None,
            })
        };
        f.engine.receive([ban("192.0.2.1"), ban(IGNORED)]);
        assert_eq!(kernel.nets(), [net("192.0.2.1")], "never an ignored one");
        assert!(f.active().is_empty(), "the fleet's record is its own");
        f.engine.receive([Event::Remote(RemoteEvent::Unban {
            net: net("192.0.2.1"),
            server: "web-2".into(),
        })]);
        assert!(kernel.nets().is_empty());
    }
}
