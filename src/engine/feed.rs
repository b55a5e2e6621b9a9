//! Bans and lifts other processes of this server recorded: the admin, which has no
//! privilege and only writes the store, and any CLI that wrote it directly. The daemon
//! hears of them by the SQLite change feed (read from its last position when the
//! database changes) or, with Redis, by its own server's events on the ban channel; for
//! each network named it makes the firewall agree with the store's active ban now, so
//! the order in which changes are heard does not matter.

use chrono::Utc;
use ipnet::IpNet;

use super::{Engine, EngineError};
use crate::firewall::Entry;
use crate::net::display_net;

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
        let nets = match self.store.changed_nets(from, end) {
            Ok(nets) => nets,
            Err(e) => {
                log::warn!("cannot read the store's changes: {e}");
                return;
            }
        };
        for net in nets {
            if let Err(e) = self.agree(net) {
                // Read again at the next change or start.
                log::error!(
                    "cannot apply the recorded change of {}: {e}",
                    display_net(&net)
                );
                return;
            }
        }
        self.feed = Some(end);
        if let Err(e) = self.store.feed_read(end, Utc::now().timestamp()) {
            log::warn!("cannot note how far the store's changes are applied: {e}");
        }
    }

    /// Makes the firewall agree with the store's active ban of `net` now.
    pub(super) fn agree(&mut self, net: IpNet) -> Result<(), EngineError> {
        let now = Utc::now();
        let ignored = self.decider.ignore().overlapping(&net).is_some();
        let active = self
            .store
            .active_ban(&net)?
            .filter(|b| b.expires_at.is_none_or(|t| t > now) && !ignored);
        match (active, self.applied.contains(&net)) {
            (Some(ban), false) => {
                self.firewall
                    .ban(&[Entry::until(net, ban.expires_at, now)])?;
                log::info!(
                    "banned {} (recorded by another process: rule {}, {})",
                    display_net(&net),
                    ban.rule,
                    ban.source
                );
                if let Some(t) = ban.expires_at {
                    self.expiry.no_later_than(t);
                }
                self.applied.insert(ban.new);
            }
            (None, true) => {
                self.firewall.unban(&[net])?;
                log::info!("unbanned {} (lifted by another process)", display_net(&net));
                self.applied.remove(&net);
            }
            (Some(ban), true) => self.applied.insert(ban.new),
            (None, false) => {}
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
}
