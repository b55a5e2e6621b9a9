//! What this server has put in its firewall, and keeping it in agreement with the store.
//!
//! At start the store's active bans are restored into the firewall in one batch. With a
//! shared store (Redis) the firewall also follows the fleet: other servers' bans and
//! unbans arrive as events and only change the kernel here (their records are the
//! fleet's already), and a reconcile (on every reconnection and every
//! `redis.reconcile_every`) bans what is missing and unbans what is gone, in case events
//! were missed while the link was down. If the shared store lost its data, the bans this
//! server knows are put back first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::ban::NewBan;
use crate::duration::instant_after;
use crate::event::{Link, RemoteEvent};
use crate::firewall::{Entry, Firewall};
use crate::metrics::Metrics;
use crate::net::{IgnoreList, display_net};
use crate::store::{Active, BanStore, StoreError};

use super::EngineError;
use super::held::Held;
use super::timers::Timer;

/// Bans handed to the firewall at once while restoring or reconciling: a page of the
/// store is ten thousand, the firewall's tools take larger batches well.
const FIREWALL_BATCH: usize = 100_000;
/// Bans put back at once in a store that lost its data.
const PUT_BACK_BATCH: usize = 1000;

pub struct Applied {
    /// What this server has put in its firewall, and why: what reconciling compares
    /// with the store, and what it puts back if a shared store lost its data.
    bans: Held,
    /// With a shared store: how often to reconcile, and when next.
    every: Option<Duration>,
    due: Timer,
    /// The shared store's token; a new one means it lost its data.
    epoch: Option<String>,
    /// When `restore` began reading the store's active bans; the first subscription
    /// made before that needs no reconcile.
    restored_at: Option<Instant>,
    /// Reconciles are counted here.
    metrics: Arc<Metrics>,
    /// Other servers' bans and unbans heard in this batch, not applied yet.
    queued: Vec<RemoteEvent>,
}

impl Applied {
    pub fn new(metrics: Arc<Metrics>) -> Applied {
        Applied {
            bans: Held::default(),
            every: None,
            due: Timer::default(),
            epoch: None,
            restored_at: None,
            metrics,
            queued: Vec::new(),
        }
    }

    /// Reconciles every `every` from now on (with a shared store), or only when asked.
    pub fn reconcile_every(&mut self, every: Option<Duration>) {
        self.every = every;
        self.schedule();
    }

    fn schedule(&mut self) {
        self.due
            .set(self.every.map(|d| instant_after(Instant::now(), d)));
    }

    /// When the next reconcile is due.
    pub fn due(&self) -> Option<Instant> {
        self.due.when()
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_due(now)
    }

    /// `ban` is in the firewall now.
    pub fn insert(&mut self, ban: NewBan) {
        self.bans.insert_full(ban);
    }

    /// The ban of `net` this server's firewall holds, as far as it knows it.
    pub fn get(&self, net: &IpNet) -> Option<NewBan> {
        self.bans.get(net)
    }

    /// The ban of `net` is out of the firewall now.
    pub fn remove(&mut self, net: &IpNet) {
        self.bans.remove(net);
    }

    /// The firewall holds none of pyfilter's bans now (it was flushed).
    pub fn clear(&mut self) {
        self.bans.clear();
    }

    /// Whether the firewall holds a ban of exactly `net`.
    pub fn contains(&self, net: &IpNet) -> bool {
        self.bans.contains(net)
    }

    /// The bans the firewall holds that cover `ip`, narrowest first.
    pub fn covering(&self, ip: std::net::IpAddr) -> Vec<IpNet> {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (0..=max)
            .rev()
            .filter_map(|len| IpNet::new(ip, len).ok().map(|n| n.trunc()))
            .filter(|n| self.bans.contains(n))
            .collect()
    }

    /// How many bans the firewall holds.
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// Lifts bans that expired while pyfilter was stopped, then puts every active ban in
    /// the kernel, reading the store a page at a time, with `unrecorded` (bans the store
    /// has not taken yet). Bans the kernel holds already are kept, not flushed: one the
    /// store does not know may be one the last run could not record, and protects until
    /// its lines, read again, record it. Returns how many were restored.
    pub fn restore(
        &mut self,
        firewall: &mut dyn Firewall,
        store: &mut dyn BanStore,
        ignore: &IgnoreList,
        unrecorded: &[NewBan],
    ) -> Result<usize, EngineError> {
        firewall.init()?;
        let now = Utc::now();
        if let Err(e) = store.flush_outbox() {
            log::warn!("changes queued while the store was away are not delivered yet: {e}");
        }
        let reading = Instant::now();
        self.bans.clear();
        self.bans.begin_pass();
        let mut expired = Vec::new();
        let mut batch = Vec::new();
        let mut restored = 0;
        let mut cursor = 0;
        loop {
            let page = match store.active_page(cursor) {
                Ok(page) => page,
                // A fleet server starts (and protects itself) even while Redis is away;
                // the first reconcile once it is back brings what is missing.
                Err(e @ StoreError::Unreachable { .. }) => {
                    log::warn!("starting without the fleet's bans: {e}");
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(total) = page.total {
                self.bans.reserve(total);
            }
            for Active { net, expires_at } in page.bans {
                if expires_at.is_some_and(|t| t <= now) {
                    expired.push(net);
                } else if ignore.overlapping(&net).is_none() && !self.bans.contains(&net) {
                    self.bans.insert_brief(net, expires_at, None);
                    batch.push(Entry::until(net, expires_at, now));
                }
            }
            if batch.len() >= FIREWALL_BATCH {
                restored += batch.len();
                firewall.ban(&batch)?;
                batch.clear();
            }
            match page.next {
                Some(next) => cursor = next,
                None => {
                    self.restored_at = Some(reading);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            restored += batch.len();
            firewall.ban(&batch)?;
        }
        store.lift_many(&expired, now, "expired")?;
        let mut waiting = Vec::new();
        for ban in unrecorded {
            if ban.expires_at.is_none_or(|t| t > now) && !self.bans.contains(&ban.net) {
                waiting.push(Entry::until(ban.net, ban.expires_at, now));
                self.bans.insert_full(ban.clone());
            }
        }
        if !waiting.is_empty() {
            firewall.ban(&waiting)?;
        }
        if self.restored_at.is_some() && self.every.is_some() {
            // With a shared store the restore is the first reconcile: the firewall now
            // holds exactly the fleet's active bans.
            self.metrics.reconciled(now, restored, 0);
        }
        self.epoch = store.epoch().ok().flatten();
        Ok(restored)
    }

    /// Makes the firewall agree with the store's active bans: delivers the outbox, puts
    /// back what this server knows if the shared store lost its data (or lost one of the
    /// bans this server made), then bans what is missing and unbans what is gone, reading
    /// the store a page at a time. Returns (banned, unbanned).
    pub fn reconcile(
        &mut self,
        firewall: &mut dyn Firewall,
        store: &mut dyn BanStore,
        ignore: &IgnoreList,
        unrecorded: &[NewBan],
    ) -> Result<(usize, usize), EngineError> {
        self.schedule();
        let delivered = store.flush_outbox()?;
        if delivered > 0 {
            log::info!(
                "delivered {} queued while the store was away",
                crate::words::counted(delivered, "change")
            );
        }
        let epoch = store.epoch()?;
        if self.epoch.is_some() && epoch != self.epoch {
            log::warn!(
                "the shared store lost its data; putting back the {} this server knows",
                crate::words::counted(self.bans.len(), "ban")
            );
            let mut back = self.bans.to_put_back();
            loop {
                let chunk: Vec<NewBan> = back.by_ref().take(PUT_BACK_BATCH).collect();
                if chunk.is_empty() {
                    break;
                }
                store.record_many(&chunk)?;
            }
        }
        self.epoch = epoch;
        let now = Utc::now();
        self.bans.begin_pass();
        let (mut missing, mut banned) = (Vec::new(), 0);
        let mut cursor = 0;
        loop {
            let page = store.active_page(cursor)?;
            for Active { net, expires_at } in page.bans {
                if expires_at.is_some_and(|t| t <= now) || ignore.overlapping(&net).is_some() {
                    continue;
                }
                if !self.bans.mark(&net) {
                    self.bans.insert_brief(net, expires_at, None);
                    missing.push(Entry::until(net, expires_at, now));
                }
            }
            if missing.len() >= FIREWALL_BATCH {
                banned += missing.len();
                firewall.ban(&missing)?;
                missing.clear();
            }
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        // A ban the store has not taken yet stays: it is being recorded.
        for ban in unrecorded {
            if ban.expires_at.is_none_or(|t| t > now) && !self.bans.mark(&ban.net) {
                missing.push(Entry::until(ban.net, ban.expires_at, now));
                self.bans.insert_full(ban.clone());
            }
        }
        if !missing.is_empty() {
            banned += missing.len();
            firewall.ban(&missing)?;
        }
        // Not seen in the pages: gone, unless the pages skipped it (see `active_page`).
        let unseen = self.bans.unmarked_nets();
        if !unseen.is_empty() {
            for (net, active) in unseen.iter().zip(store.still_active(&unseen)?) {
                if active {
                    self.bans.mark(net);
                }
            }
        }
        let (full, mut gone) = self.bans.unmarked();
        for ban in full {
            if ban.expires_at.is_none_or(|t| t > now)
                && ignore.overlapping(&ban.net).is_none()
                && !store.holds(&ban)?
            {
                log::warn!(
                    "the store lost the ban of {} (a failover before it reached a replica?); recording it again",
                    display_net(&ban.net)
                );
                let net = ban.net;
                store.record_many(&[ban])?;
                self.bans.mark(&net);
            } else {
                gone.push(ban.net);
            }
        }
        if !gone.is_empty() {
            firewall.unban(&gone)?;
            for net in &gone {
                self.bans.remove(net);
            }
        }
        self.metrics.reconciled(Utc::now(), banned, gone.len());
        Ok((banned, gone.len()))
    }

    /// Whether news of the link to the fleet calls for a reconcile.
    pub fn link(&mut self, link: Link) -> bool {
        match link {
            // Subscribed before restore read the active bans: that read holds all that
            // was published before, and the channel holds all that came since, so a
            // second read of every ban (seconds, with a large fleet) would add nothing.
            Link::Up(subscribed)
                if self
                    .restored_at
                    .take()
                    .is_some_and(|read| subscribed <= read) =>
            {
                log::info!(
                    "caught up with the fleet: subscribed before the bans were read, nothing more to apply"
                );
                false
            }
            Link::Up(_) => true,
            Link::Down => {
                self.restored_at = None;
                false
            }
        }
    }

    /// Another server's ban or unban, applied with the rest of the batch by
    /// `apply_remote`.
    pub fn queue_remote(&mut self, event: RemoteEvent) {
        self.queued.push(event);
    }

    /// Applies the other servers' bans and unbans queued in this batch to this server's
    /// firewall, in one firewall call for the bans and one for the unbans (a burst of ten
    /// thousand bans elsewhere is not ten thousand `nft` runs here); the last word on a
    /// network wins. The fleet's records are already in the shared store; only the kernel
    /// changes here, and a remote ban keeps the end its origin gave it. Returns the
    /// earliest end of the bans applied, for the next expiry.
    pub fn apply_remote(
        &mut self,
        firewall: &mut dyn Firewall,
        ignore: &IgnoreList,
    ) -> Option<DateTime<Utc>> {
        if self.queued.is_empty() {
            return None;
        }
        let now = Utc::now();
        let mut last: HashMap<IpNet, RemoteEvent> = HashMap::new();
        for event in std::mem::take(&mut self.queued) {
            let net = match &event {
                RemoteEvent::Ban { net, .. } | RemoteEvent::Unban { net, .. } => *net,
            };
            last.insert(net, event);
        }
        let (mut bans, mut unbans) = (Vec::new(), Vec::new());
        for event in last.into_values() {
            match event {
                RemoteEvent::Ban {
                    net,
                    rule,
                    server,
                    until,
                    ..
                } => {
                    if let Some(ignored) = ignore.overlapping(&net) {
                        log::warn!(
                            "{server} banned {}, which overlaps {ignored} in the ignore list: not applied here",
                            display_net(&net)
                        );
                    } else if until.is_none_or(|t| t > now) {
                        bans.push((net, rule, server, until));
                    }
                }
                RemoteEvent::Unban { net, server } => unbans.push((net, server)),
            }
        }
        let mut earliest: Option<DateTime<Utc>> = None;
        if !bans.is_empty() {
            let entries: Vec<Entry> = bans
                .iter()
                .map(|(net, _, _, until)| Entry::until(*net, *until, now))
                .collect();
            match firewall.ban(&entries) {
                Ok(()) => {
                    for (net, rule, server, until) in bans {
                        log::info!("banned {} (from {server}, rule {rule})", display_net(&net));
                        // The reason stays in the fleet's record: a million of them
                        // would not fit in memory here.
                        self.bans.insert_brief(net, until, Some((&rule, &server)));
                        if let Some(t) = until {
                            earliest = Some(earliest.map_or(t, |e| e.min(t)));
                        }
                    }
                }
                Err(e) => log::error!(
                    "cannot apply {} bans from the fleet (the next reconcile tries again): {e}",
                    entries.len()
                ),
            }
        }
        if !unbans.is_empty() {
            let nets: Vec<IpNet> = unbans.iter().map(|(n, _)| *n).collect();
            match firewall.unban(&nets) {
                Ok(()) => {
                    for (net, server) in unbans {
                        if self.bans.remove(&net) {
                            log::info!("unbanned {} (by {server})", display_net(&net));
                        }
                    }
                }
                Err(e) => log::error!(
                    "cannot apply {} unbans from the fleet (the next reconcile tries again): {e}",
                    nets.len()
                ),
            }
        }
        earliest
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use ipnet::IpNet;

    use super::*;
    use crate::engine::testing::*;
    use crate::event::Event;

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
    fn reconcile_keeps_a_ban_the_store_has_not_taken_yet() {
        let kernel = Kernel::default();
        let mut applied = Applied::new(Arc::new(Metrics::default()));
        let f = Fixture::new("");
        let mut store = f.store();
        let waiting = ban_by_others("192.0.2.7", None);
        let mut fw = kernel.clone();
        fw.ban(&[Entry::until(waiting.net, None, Utc::now())])
            .unwrap();
        applied.insert(waiting.clone());
        let ignore = IgnoreList::default();
        let done = applied
            .reconcile(&mut fw, &mut store, &ignore, std::slice::from_ref(&waiting))
            .unwrap();
        assert_eq!(done, (0, 0));
        assert!(
            kernel.holds("192.0.2.7"),
            "not unbanned for being unrecorded"
        );
        // Without it waiting, the store's word goes.
        assert_eq!(
            applied
                .reconcile(&mut fw, &mut store, &ignore, &[])
                .unwrap(),
            (0, 1)
        );
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

    #[test]
    fn the_fleets_bans_of_one_batch_go_to_the_firewall_in_one_call() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        let ban = |ip: String| {
            Event::Remote(RemoteEvent::Ban {
                net: net(&ip),
                rule: RULE.into(),
                server: "web-2".into(),
                reason: "failed".into(),
                until: None,
            })
        };
        let mut burst: Vec<Event> = (1..=200)
            .map(|i| ban(format!("10.0.{}.{}", i / 250, i % 250 + 1)))
            .collect();
        // The last word on a network wins: banned, then unbanned in the same batch.
        burst.push(ban("192.0.2.77".into()));
        burst.push(Event::Remote(RemoteEvent::Unban {
            net: net("192.0.2.77"),
            server: "web-3".into(),
        }));
        f.engine.receive(burst);
        assert_eq!(kernel.ban_calls(), [200]);
        assert_eq!(kernel.nets().len(), 200);
        assert!(!kernel.holds("192.0.2.77"));
    }
}
