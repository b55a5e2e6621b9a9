//! Bans and lifts recorded by other processes of this server: the admin, which has no
//! privilege and only writes the store, and `prune` or `import` while the daemon runs.
//! The daemon hears of them by the SQLite change feed (read from its last position when
//! the database changes) or, with Redis, by its own server's events on the ban channel.
//!
//! Its own changes come back the same way; they are known by ban id and kind (`Own`) and
//! skipped, so a burst of bans is not looked up again. For every other network named, the
//! firewall is made to agree with the store's active ban now, so the order in which
//! changes are heard does not matter; the bans to add go to the firewall as one batch,
//! the lifts as another, and past `FULL_READ` networks at once (an import) the firewall
//! is reconciled with every active ban instead.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use ipnet::IpNet;

use super::{Engine, EngineError};
use crate::ban::{Ban, Change};
use crate::firewall::Entry;
use crate::net::display_net;

/// Networks past which one read of every active ban is cheaper than a look-up each.
const FULL_READ: usize = 10_000;

/// Own changes remembered at most; past it the next ones are looked up like any other
/// (harmless: the firewall already agrees).
const OWN_MAX: usize = 100_000;

/// The changes this daemon made itself and will hear of again: (ban id, lifted).
#[derive(Debug, Default)]
pub struct Own(HashSet<(i64, bool)>);

impl Own {
    /// The daemon recorded (or lifted) ban `id`. Id 0: not in the store yet (Redis's
    /// outbox), so no change will name it.
    pub fn made(&mut self, id: i64, lifted: bool) {
        if id != 0 && self.0.len() < OWN_MAX {
            self.0.insert((id, lifted));
        }
    }

    /// Whether `change` is one of ours; it is forgotten as it is heard.
    fn heard(&mut self, change: &Change) -> bool {
        change
            .ban
            .is_some_and(|id| self.0.remove(&(id, change.lifted)))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl Engine {
    /// Reads the change feed from where it stopped and applies what changed.
    pub(super) fn follow_feed(&mut self) {
        let Some(from) = self.feed else { return };
        let end = match self.store.feed_end() {
            Ok(Some(end)) if end > from => end,
            Ok(_) => return,
            Err(e) => {
                log::warn!("cannot read the store's changes: {e}");
                return;
            }
        };
        let changes = match self.store.changes(from, end) {
            Ok(changes) => changes,
            Err(e) => {
                log::warn!("cannot read the store's changes: {e}");
                return;
            }
        };
        if let Err(e) = self.apply_changes(changes) {
            // Read again at the next change.
            log::error!("cannot apply the changes other processes recorded: {e}");
            return;
        }
        // Everything this daemon wrote so far lies before `end`, and was heard.
        self.own.clear();
        self.feed = Some(end);
        if let Err(e) = self.store.feed_read(end, Utc::now().timestamp()) {
            log::warn!("cannot note how far the store's changes are applied: {e}");
        }
    }

    /// Applies the changes heard (the ban channel's, with Redis) since the last batch.
    pub(super) fn apply_heard(&mut self) {
        let changes = std::mem::take(&mut self.heard);
        if let Err(e) = self.apply_changes(changes) {
            log::error!("cannot apply the changes other processes recorded: {e}");
        }
    }

    /// Makes the firewall agree with the store for every network these changes name,
    /// but this daemon's own.
    fn apply_changes(&mut self, changes: Vec<Change>) -> Result<(), EngineError> {
        let mut nets = Vec::new();
        let mut seen = HashSet::new();
        for change in changes {
            if !self.own.heard(&change) && seen.insert(change.net) {
                nets.push(change.net);
            }
        }
        if nets.len() > FULL_READ {
            let (banned, unbanned) = self.reconcile()?;
            log::info!(
                "{} networks changed by other processes: {banned} bans and {unbanned} unbans applied",
                nets.len()
            );
            return Ok(());
        }
        self.agree(&nets)
    }

    /// Makes the firewall agree with the store's active bans of `nets` now.
    pub(super) fn agree(&mut self, nets: &[IpNet]) -> Result<(), EngineError> {
        if nets.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let active: HashMap<IpNet, Ban> = self
            .store
            .active_bans_of(nets)?
            .into_iter()
            .filter(|b| b.expires_at.is_none_or(|t| t > now))
            .map(|b| (b.net, b))
            .collect();
        // Bans the store has not taken yet stay in the kernel until it does.
        let unrecorded: HashSet<IpNet> = self.unrecorded.bans().iter().map(|b| b.net).collect();
        let mut add = Vec::new();
        let mut lift = Vec::new();
        for net in nets {
            let wanted = active
                .get(net)
                .filter(|_| self.decider.ignore().overlapping(net).is_none());
            match (wanted, self.applied.contains(net)) {
                (Some(ban), false) => add.push(ban.clone()),
                (Some(ban), true) => self.applied.insert(ban.new.clone()),
                (None, true) if !unrecorded.contains(net) => lift.push(*net),
                (None, _) => {}
            }
        }
        if !add.is_empty() {
            let entries: Vec<Entry> = add
                .iter()
                .map(|b| Entry::until(b.net, b.expires_at, now))
                .collect();
            self.firewall.ban(&entries)?;
            for ban in add {
                log::info!(
                    "banned {} (recorded by another process: rule {}, {})",
                    display_net(&ban.net),
                    ban.rule,
                    ban.source
                );
                if let Some(t) = ban.expires_at {
                    self.expiry.no_later_than(t);
                }
                self.applied.insert(ban.new);
            }
        }
        if !lift.is_empty() {
            self.firewall.unban(&lift)?;
            for net in &lift {
                log::info!("unbanned {} (lifted by another process)", display_net(net));
                self.applied.remove(net);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::super::testing::*;

    #[test]
    fn bans_and_lifts_recorded_by_others_reach_the_firewall_in_any_order() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        let mut admin = f.store();
        admin
            .record_many(&[
                ban_by_others("192.0.2.1", None),
                ban_by_others("192.0.2.2", None),
                ban_by_others(IGNORED, None),
            ])
            .unwrap();
        admin
            .lift_many(&[net("192.0.2.2")], Utc::now(), "by hand")
            .unwrap();
        f.engine.store_changed();
        assert_eq!(kernel.nets(), [net("192.0.2.1")]);
        // Lifted, banned again, lifted again: the last word counts.
        f.engine.receive([instant("192.0.2.3")]);
        for _ in 0..2 {
            admin
                .lift_many(&[net("192.0.2.3")], Utc::now(), "by hand")
                .unwrap();
            admin
                .record_many(&[ban_by_others("192.0.2.3", None)])
                .unwrap();
        }
        admin
            .lift_many(&[net("192.0.2.1")], Utc::now(), "by hand")
            .unwrap();
        f.engine.store_changed();
        assert_eq!(kernel.nets(), [net("192.0.2.3")]);
        // Its own changes it already applied: nothing more happens.
        let calls = kernel.ban_calls().len();
        f.engine.store_changed();
        assert_eq!(kernel.ban_calls().len(), calls);
    }

    #[test]
    fn bans_recorded_while_it_was_stopped_are_restored_at_start() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        f.store()
            .record_many(&[ban_by_others("192.0.2.7", None)])
            .unwrap();
        f.engine.restore().unwrap();
        assert_eq!(kernel.nets(), [net("192.0.2.7")]);
        let calls = kernel.ban_calls().len();
        f.engine.store_changed();
        assert_eq!(kernel.ban_calls().len(), calls, "not applied twice");
    }

    #[test]
    fn a_lift_by_another_process_of_a_ban_the_daemon_made_reaches_the_firewall() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        f.engine.receive([instant("192.0.2.4")]);
        f.engine.store_changed();
        assert!(kernel.holds("192.0.2.4"));
        f.store()
            .lift_many(&[net("192.0.2.4")], Utc::now(), "by hand")
            .unwrap();
        f.engine.store_changed();
        assert!(!kernel.holds("192.0.2.4"), "its own ban, lifted by another");
    }

    #[test]
    fn many_bans_recorded_by_others_reach_the_firewall_as_one_batch() {
        for n in [500, super::FULL_READ + 100] {
            let kernel = Kernel::default();
            let mut f = Fixture::with_kernel("", &kernel);
            let bans: Vec<_> = (0..n)
                .map(|i| ban_by_others(&format!("10.1.{}.{}", i / 250, i % 250 + 1), None))
                .collect();
            f.store().record_many(&bans).unwrap();
            let calls = kernel.ban_calls().len();
            f.engine.store_changed();
            assert_eq!(kernel.ban_calls()[calls..], [n], "{n}: one batch");
            assert_eq!(kernel.nets().len(), n);
        }
    }

    #[test]
    fn its_own_changes_heard_again_are_skipped_and_others_applied_together() {
        use crate::ban::{Change, Recorded};
        use crate::event::Event;
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        f.engine.receive([instant("192.0.2.5")]);
        let id = f.active()[0].id;
        // As with Redis, the daemon hears its own ban on the channel, after the store
        // lost it: skipped, not looked up (the lift's own event would follow).
        rusqlite::Connection::open(f.db())
            .unwrap()
            .execute("DELETE FROM bans", [])
            .unwrap();
        let mut others = Vec::new();
        for ip in ["192.0.2.6", "192.0.2.7"] {
            match f.store().record(&ban_by_others(ip, None)).unwrap() {
                Recorded::New(ban) => others.push(Event::Changed(Change {
                    net: ban.net,
                    ban: Some(ban.id),
                    lifted: false,
                })),
                r => panic!("{r:?}"),
            }
        }
        let own = Event::Changed(Change {
            net: net("192.0.2.5"),
            ban: Some(id),
            lifted: false,
        });
        let calls = kernel.ban_calls().len();
        f.engine.receive(std::iter::once(own).chain(others));
        assert!(kernel.holds("192.0.2.5"), "its own change was skipped");
        assert_eq!(kernel.ban_calls()[calls..], [2], "the others in one batch");
    }
}
