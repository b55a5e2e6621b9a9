//! The decision thread's state: counters, firewall and store, owned in one place.
//!
//! Watchers send attempts; the engine counts them, bans at the threshold, lifts bans when
//! their time is up (sleeping until the next expiry, not polling), and saves read
//! positions. With a Redis store it also applies the other servers' bans and unbans, and
//! reconciles the firewall with the fleet's active bans on start, on every reconnection
//! and every `redis.reconcile_every`. Nothing else in the daemon touches the firewall or
//! the store, so none of it needs a lock.
//!
//! The `Engine` holds the firewall and the store and hands each event to the part it
//! concerns: `decide` (counting attempts into bans), `retry` (bans the firewall refused),
//! `unrecorded` (bans in the kernel the store could not record yet), `reconcile` (what
//! this server's firewall holds, and the fleet), `bookkeeping` (read positions with the
//! failed-attempt counts, and the counters' snapshot), `requests` (the control socket's
//! bans, unbans, flush and status). Each part keeps its own timer (`timers`); `deadline`
//! is the earliest of them and `tick` does what is due.

pub mod apply;
mod bookkeeping;
pub mod counter;
mod decide;
mod feed;
mod held;
pub mod manual;
mod reconcile;
mod requests;
mod retry;
mod timers;
mod unrecorded;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::ban::{Change, NewBan, Recorded};
use crate::config::StoreKind;
use crate::event::{Attempt, Cursors, Event, Positions};
use crate::firewall::reopen::Reopening;
use crate::firewall::{Firewall, FirewallError};
use crate::metrics::Metrics;
use crate::net::display_net;
use crate::notifier::Notifier;
use crate::settings::Settings;
use crate::status::SourceTable;
use crate::store::{BanStore, SqliteStore, StoreError};
use apply::ActionError;
use bookkeeping::Bookkeeping;
use decide::Decider;
use reconcile::Applied;
use retry::Retry;
use timers::Expiry;
use unrecorded::Unrecorded;

/// Most events in one batch: the bans they decide are applied together, after them.
const BATCH: usize = 50_000;

/// Why restoring or reconciling the firewall with the store failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Engine {
    decider: Decider,
    firewall: Box<dyn Firewall>,
    store: Box<dyn BanStore>,
    /// Bans decided in this batch, applied together by `commit`.
    pending: Vec<NewBan>,
    retry: Retry,
    /// Bans in the kernel that the store has not taken yet.
    unrecorded: Unrecorded,
    applied: Applied,
    /// When the next ban in the store ends.
    expiry: Expiry,
    books: Bookkeeping,
    /// The daemon's counters; bans are counted here.
    metrics: Arc<Metrics>,
    /// Every log source and its state, as the sources report it.
    sources: SourceTable,
    /// The sync thread's link to Redis: up, down, or not heard of yet.
    link: Option<bool>,
    /// Whether the daemon's inotify instance exists (for `status`).
    pub inotify: bool,
    /// Bans this engine made from its logs.
    pub bans: u64,
    /// When the daemon started, for its status.
    started: requests::Started,
    /// Who is told of bans and unbans (`notify:`); offering never waits.
    notifier: Notifier,
    /// How far the store's change feed is applied (`None`: the store has none).
    feed: Option<i64>,
    /// Changes this daemon made itself, skipped when they come back by the feed or the
    /// ban channel.
    own: feed::Own,
    /// This server's changes heard on the ban channel (Redis), applied after the batch.
    heard: Vec<Change>,
}

impl Engine {
    pub fn new(
        settings: &Settings,
        firewall: Box<dyn Firewall>,
        store: Box<dyn BanStore>,
        local: SqliteStore,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let mut applied = Applied::new(Arc::clone(&metrics));
        applied.reconcile_every(reconcile_every(settings));
        let mut decider = Decider::new(settings);
        let mut books = Bookkeeping::new(local, Arc::clone(&metrics));
        // The previous run's partial counts go on: 2 of 3 attempts before a restart and 1
        // after is a ban. Without them the daemon still runs, counting from zero.
        let now = u32::try_from(Utc::now().timestamp().max(0)).unwrap_or(u32::MAX);
        match books.saved_counts(now) {
            Ok(saved) => {
                let restored = decider.restore_counts(saved);
                if restored > 0 {
                    log::info!("{restored} failed-attempt counts carried over from the last run");
                }
            }
            Err(e) => log::warn!("counting from zero: the last run's counts cannot be read: {e}"),
        }
        Engine {
            decider,
            firewall: Box::new(Reopening::new(firewall)),
            store,
            pending: Vec::new(),
            retry: Retry::default(),
            unrecorded: Unrecorded::default(),
            applied,
            expiry: Expiry::default(),
            books,
            metrics,
            sources: SourceTable::default(),
            link: None,
            inotify: true,
            bans: 0,
            started: requests::Started::now(),
            notifier: Notifier::default(),
            feed: None,
            own: feed::Own::default(),
            heard: Vec::new(),
        }
    }

    /// Tells these receivers of the bans and unbans from now on; the ones before finish
    /// what they hold on their own threads.
    pub fn notify(&mut self, notifier: Notifier) -> Notifier {
        std::mem::replace(&mut self.notifier, notifier)
    }

    /// Takes the numbers, ignore list and server name of new settings; counters are kept.
    pub fn configure(&mut self, settings: &Settings) {
        self.decider.configure(settings);
        self.applied.reconcile_every(reconcile_every(settings));
    }

    /// Replaces the firewall (after a reload changed its settings).
    pub fn replace_firewall(&mut self, firewall: Box<dyn Firewall>) -> Result<usize, EngineError> {
        self.firewall = Box::new(Reopening::new(firewall));
        self.restore()
    }

    /// Lifts bans that expired while pyfilter was stopped, then puts every active ban in
    /// the kernel in one batch, with the bans still waiting to be recorded. What the kernel
    /// holds already stays: a ban the last run could not record (a full disk) protects
    /// until its lines, read again, record it. Returns how many were restored.
    pub fn restore(&mut self) -> Result<usize, EngineError> {
        // Read before the active bans: a change made meanwhile is read again, harmlessly.
        let feed = self.store.feed_end()?;
        let restored = self.applied.restore(
            self.firewall.as_mut(),
            self.store.as_mut(),
            self.decider.ignore(),
            self.unrecorded.bans(),
        )?;
        self.feed = feed;
        self.own.clear();
        if let Some(end) = feed
            && let Err(e) = self.store.feed_read(end, Utc::now().timestamp())
        {
            log::warn!("cannot note how far the store's changes are applied: {e}");
        }
        self.refresh_expiry();
        Ok(restored)
    }

    /// Makes the firewall agree with the store's active bans. Returns (banned, unbanned).
    pub fn reconcile(&mut self) -> Result<(usize, usize), EngineError> {
        let done = self.applied.reconcile(
            self.firewall.as_mut(),
            self.store.as_mut(),
            self.decider.ignore(),
            self.unrecorded.bans(),
        )?;
        self.refresh_expiry();
        self.books.counted(Instant::now());
        // The firewall agrees with the store: what is still to be heard of is harmless.
        self.own.clear();
        Ok(done)
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
        if !self.heard.is_empty() {
            self.apply_heard();
        }
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
            Event::Position { path, position } => {
                self.sources.position(&path, position.offset);
                self.books.position(path, position, now);
            }
            Event::Changed(change) => self.heard.push(change),
            Event::Source(news) => {
                self.sources.news(news);
                self.metrics.sources(self.sources.by_state());
            }
            Event::Cursor { rule, cursor } => self.books.cursor(rule, cursor, now),
            Event::Remote(event) => {
                let known = match &event {
                    crate::event::RemoteEvent::Unban { net, .. } => self.applied.get(net),
                    crate::event::RemoteEvent::Ban { .. } => None,
                };
                self.notifier.remote(&event, known.as_ref());
                self.applied.queue_remote(event);
            }
            Event::Link(link) => {
                self.link = Some(matches!(link, crate::event::Link::Up(_)));
                if self.applied.link(link) {
                    match self.reconcile() {
                        Ok((banned, unbanned)) => log::info!(
                            "caught up with the fleet: {} and {} applied",
                            crate::words::counted(banned, "ban"),
                            crate::words::counted(unbanned, "unban")
                        ),
                        Err(e) => log::warn!("cannot reconcile with the store yet: {e}"),
                    }
                }
            }
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
        let fleet = self
            .applied
            .apply_remote(self.firewall.as_mut(), self.decider.ignore());
        if let Some(until) = fleet {
            self.expiry.no_later_than(until);
        }
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
                            self.own.made(ban.id, false);
                            self.bans += 1;
                            self.metrics.banned();
                            self.notifier.banned(&ban);
                            if let Some(t) = ban.expires_at {
                                self.expiry.no_later_than(t);
                            }
                            self.applied.insert(ban.new);
                        }
                        Recorded::AlreadyBanned(ban) => {
                            log::debug!("{} is already banned", display_net(&ban.net));
                            self.applied.insert(ban.new);
                        }
                    }
                }
            }
            Err(ActionError::Firewall(e)) => {
                // Nothing was recorded: the same bans are tried again, later and later.
                self.retry.refused(batch, &e, now);
                self.books.hold();
                return;
            }
            Err(e @ ActionError::NotRecorded { .. }) => {
                log::error!("{e}; recording them is tried again until it works");
                for ban in &batch {
                    self.bans += 1;
                    self.metrics.banned();
                    self.applied.insert(ban.clone());
                }
                self.unrecorded.refused(batch, now);
                self.books.hold();
            }
            Err(e) => log::error!(
                "cannot ban {}: {e}",
                crate::words::count(batch.len(), "address", "addresses")
            ),
        }
        self.retry.settled();
        self.release_if_settled();
    }

    /// Once no ban waits for the firewall or the store, the read positions move on.
    fn release_if_settled(&mut self) {
        if self.retry.is_empty() && self.unrecorded.is_empty() {
            self.books.release(Instant::now());
        }
    }

    /// Records again the bans in the kernel that the store refused; the ones whose time
    /// is up meanwhile leave the kernel instead. Once none is left, the read positions
    /// move on.
    fn record_unrecorded(&mut self) {
        let (running, ended) = self.unrecorded.take(Utc::now());
        if !ended.is_empty() {
            let nets: Vec<_> = ended.iter().map(|b| b.net).collect();
            match self.firewall.unban(&nets) {
                Ok(()) => {
                    for net in &nets {
                        self.applied.remove(net);
                    }
                    log::info!("{} unrecorded bans ended and left the firewall", nets.len());
                }
                // Still in the kernel: kept, so that their end is tried again.
                Err(e) => {
                    log::error!("cannot lift {} ended bans: {e}", nets.len());
                    self.unrecorded.refused(ended, Instant::now());
                    return;
                }
            }
        }
        if !running.is_empty() {
            match self.store.record_many(&running) {
                Ok(recorded) => {
                    log::info!(
                        "recorded {} in the firewall only until now",
                        crate::words::counted(recorded.len(), "ban")
                    );
                    for r in &recorded {
                        if let Recorded::New(ban) = r {
                            self.own.made(ban.id, false);
                        }
                    }
                    for ban in &running {
                        if let Some(t) = ban.expires_at {
                            self.expiry.no_later_than(t);
                        }
                    }
                }
                Err(e) => {
                    log::warn!("the bans in the firewall still cannot be recorded: {e}");
                    self.unrecorded.refused(running, Instant::now());
                    return;
                }
            }
        }
        self.unrecorded.settled();
        self.release_if_settled();
    }

    /// Lifts bans whose time is up.
    fn expire(&mut self) {
        match apply::expire_due(self.store.as_mut(), self.firewall.as_mut(), Utc::now()) {
            Ok(lifted) => {
                for ban in lifted {
                    self.own.made(ban.id, true);
                    self.notifier.unbanned(&ban);
                    self.applied.remove(&ban.net);
                }
            }
            Err(e) => log::error!("cannot lift expired bans: {e}"),
        }
        self.refresh_expiry();
    }

    /// The database changed: another process (the admin, a CLI) may have banned or
    /// unbanned. Applies what it recorded and reads the next expiry again.
    pub fn store_changed(&mut self) {
        self.follow_feed();
        self.refresh_expiry();
    }

    /// Re-reads the next expiry (the CLI may have banned or unbanned meanwhile).
    pub fn refresh_expiry(&mut self) {
        match self.store.next_expiry() {
            Ok(t) => self.expiry.set(t),
            Err(e) => log::error!("cannot read the next expiry: {e}"),
        }
    }

    /// Writes changed read positions and counts now (unless bans wait to be recorded:
    /// they are tried once more first).
    pub fn flush_positions(&mut self) {
        if !self.unrecorded.is_empty() {
            self.record_unrecorded();
        }
        self.books
            .counts(self.decider.take_changes(), Instant::now());
        self.books.flush_positions();
    }

    /// Saves the counters' snapshot in the local SQLite file, for the admin's `/metrics`.
    pub fn save_stats(&mut self) {
        self.books.save_stats();
    }

    /// The earliest moment something is due: a ban to lift, a refused ban to try again,
    /// a reconcile, positions or counters to save.
    pub fn deadline(&self) -> Option<Instant> {
        [
            self.expiry.when(),
            self.books.due(),
            self.applied.due(),
            self.retry.due(),
            self.unrecorded.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does whatever is due now.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if self.unrecorded.is_due(now) {
            self.record_unrecorded();
        }
        if self.expiry.is_due(Utc::now()) {
            self.expire();
        }
        if self.retry.is_due(now) {
            self.commit();
        }
        if self.applied.is_due(now) {
            match self.reconcile() {
                Ok((0, 0)) => {}
                Ok((banned, unbanned)) => log::info!(
                    "reconciled with the store: {} and {} applied",
                    crate::words::counted(banned, "ban"),
                    crate::words::counted(unbanned, "unban")
                ),
                Err(e) => log::warn!("cannot reconcile with the store: {e}"),
            }
        }
        // Bookkeeping last, after the bans above, and as of now: a ban recorded above
        // releases the positions held for it at once.
        let now = Instant::now();
        if self.books.progress_due(now) {
            self.books.counts(self.decider.take_changes(), now);
        }
        self.books.tick(now);
    }

    /// Every log source and its state.
    pub fn sources(&self) -> &SourceTable {
        &self.sources
    }

    /// Forgets the sources (the watchers start again, at a reload).
    pub fn forget_sources(&mut self) {
        self.sources.clear();
    }

    /// How many (rule, address) counters are held.
    pub fn tracked(&self) -> usize {
        self.decider.tracked()
    }
}

/// How often to reconcile with the store: only a shared one changes behind our back.
fn reconcile_every(settings: &Settings) -> Option<Duration> {
    (settings.config.store == StoreKind::Redis).then_some(settings.config.redis.reconcile_every)
}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

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
}
