//! What the decision thread answers on the control socket: bans and unbans by hand,
//! flushing the firewall, and the daemon's status. Carried out here, between batches of
//! attempts, so the firewall has one owner and `applied` always knows what it holds.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::Engine;
use super::apply::{self, ActionError};
use super::manual::{self, ManualError};
use crate::ban::Recorded;
use crate::config::{StoreKind, redacted};
use crate::control::protocol::{
    Answer, BanAnswer, BanOutcome, CountNow, FlushAnswer, RefusalKind, Request, ShowAnswer, Status,
    UnbanAnswer,
};
use crate::net::{display_net, parse_net};
use crate::settings::Settings;
use crate::time::rfc3339;

/// When the daemon started, for its status.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub at: DateTime<Utc>,
    pub instant: Instant,
}

impl Started {
    pub fn now() -> Started {
        Started {
            at: Utc::now(),
            instant: Instant::now(),
        }
    }
}

impl Engine {
    /// Carries out one request from the control socket and says how it went.
    pub fn answer(&mut self, settings: &Settings, request: Request) -> Answer {
        match request {
            Request::Ban {
                ip,
                duration,
                reason,
            } => self.ban_by_hand(settings, &ip, duration.as_deref(), reason.as_deref()),
            Request::Unban { ip } => self.unban_by_hand(&ip),
            Request::Flush => self.flush_firewall(),
            Request::Status => Answer::status(self.status(settings)),
            Request::Show { ip } => self.show(&ip),
        }
    }

    /// What the decision thread knows of `ip` (an address or a block) now.
    fn show(&self, ip: &str) -> Answer {
        let net = match parse_net(ip) {
            Ok(net) => net,
            Err(e) => return Answer::refused(RefusalKind::Usage, e.to_string()),
        };
        let single = net.prefix_len() == net.max_prefix_len();
        let in_firewall = if single {
            self.applied.covering(net.addr())
        } else {
            self.applied
                .contains(&net)
                .then_some(net)
                .into_iter()
                .collect()
        };
        let counts = if single {
            self.decider
                .counts_of(net.addr())
                .into_iter()
                .map(|(rule, attempts, last)| CountNow {
                    rule: rule.to_string(),
                    attempts,
                    last: chrono::DateTime::from_timestamp(i64::from(last), 0)
                        .map(rfc3339)
                        .unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Answer::show(ShowAnswer {
            in_firewall: in_firewall.iter().map(display_net).collect(),
            counts,
        })
    }

    fn ban_by_hand(
        &mut self,
        settings: &Settings,
        ip: &str,
        duration: Option<&str>,
        reason: Option<&str>,
    ) -> Answer {
        let new = match manual::check(settings, ip, duration, reason, Utc::now()) {
            Ok(new) => new,
            Err(ManualError::Duration(e)) => {
                return Answer::refused(RefusalKind::Usage, format!("--for: {e}"));
            }
            Err(e) => return Answer::refused(RefusalKind::Usage, e.to_string()),
        };
        match apply::ban(self.store.as_mut(), self.firewall.as_mut(), &new) {
            Ok(Recorded::New(ban)) => {
                self.own.made(ban.id, false);
                if let Some(t) = ban.expires_at {
                    self.expiry.no_later_than(t);
                }
                self.applied.insert(ban.new.clone());
                self.notifier.banned(&ban);
                // Id 0: Redis was unreachable; the ban waits in the outbox.
                let queued = ban.id == 0 && settings.config.store == StoreKind::Redis;
                Answer::ban(BanAnswer::of(BanOutcome::Banned, &ban, queued))
            }
            Ok(Recorded::AlreadyBanned(ban)) => {
                // The firewall was made to agree with the ban in force.
                self.applied.insert(ban.new.clone());
                Answer::ban(BanAnswer::of(BanOutcome::AlreadyBanned, &ban, false))
            }
            Err(e @ ActionError::NotRecorded { .. }) => {
                self.applied.insert(new);
                Answer::refused(
                    RefusalKind::Failure,
                    format!("{e}; it protects this server until the daemon restarts"),
                )
            }
            Err(e) => Answer::refused(RefusalKind::Failure, e.to_string()),
        }
    }

    fn unban_by_hand(&mut self, ip: &str) -> Answer {
        let net = match parse_net(ip.trim()) {
            Ok(net) => net,
            Err(e) => return Answer::refused(RefusalKind::Usage, e.to_string()),
        };
        match apply::unban(
            self.store.as_mut(),
            self.firewall.as_mut(),
            &net,
            "unbanned by hand",
        ) {
            Ok(lifted) => {
                if let Some(ban) = &lifted {
                    self.own.made(ban.id, true);
                }
                self.applied.remove(&net);
                if let Some(ban) = &lifted {
                    self.notifier.unbanned(ban);
                }
                Answer::unban(UnbanAnswer {
                    ip: display_net(&net),
                    was_banned: lifted.is_some(),
                })
            }
            Err(e) => Answer::refused(RefusalKind::Failure, e.to_string()),
        }
    }

    /// Takes everything pyfilter put in the firewall out, as `pyfilter flush` promises;
    /// the daemon's firewall sets its structures up again at the next ban
    /// (`firewall::reopen`). The store keeps the bans: a restart (or, with Redis, the
    /// next reconcile) puts them back.
    fn flush_firewall(&mut self) -> Answer {
        match self.firewall.flush() {
            Ok(()) => {
                log::info!(
                    "flushed the {} firewall by request: {} taken out of the kernel, still recorded",
                    self.firewall.name(),
                    crate::words::counted(self.applied.len(), "ban")
                );
                self.applied.clear();
                Answer::flush(FlushAnswer {
                    firewall: self.firewall.name().to_string(),
                })
            }
            Err(e) => Answer::refused(RefusalKind::Failure, format!("firewall: {e}")),
        }
    }

    fn status(&self, settings: &Settings) -> Status {
        let c = &settings.config;
        let (store, location) = match c.store {
            StoreKind::Sqlite => ("sqlite", c.sqlite.path.display().to_string()),
            StoreKind::Redis => ("redis", redacted(&c.redis.url)),
        };
        Status {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: rfc3339(self.started.at),
            uptime_secs: self.started.instant.elapsed().as_secs(),
            bans_active: self.applied.len(),
            addresses_counted: self.tracked(),
            bans_made: self.bans,
            firewall: self.firewall.name().to_string(),
            store: store.to_string(),
            store_location: location,
            fleet: (c.store == StoreKind::Redis && c.redis.sync).then(|| {
                match self.link {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "connecting",
                }
                .to_string()
            }),
            inotify: self.inotify,
            sources: self.sources().snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn ban(ip: &str) -> Request {
        Request::Ban {
            ip: ip.into(),
            duration: Some("1h".into()),
            reason: None,
        }
    }

    #[test]
    fn a_ban_by_request_reaches_the_firewall_the_store_and_the_status() {
        let kernel = Kernel::default();
        let mut f = Fixture::with_kernel("", &kernel);
        let settings = f.settings.clone();
        let a = f.engine.answer(&settings, ban("192.0.2.1"));
        assert_eq!(a.ban.unwrap().outcome, BanOutcome::Banned);
        assert!(kernel.holds("192.0.2.1") && f.banned("192.0.2.1"));
        let a = f.engine.answer(&settings, ban("192.0.2.1"));
        assert_eq!(a.ban.unwrap().outcome, BanOutcome::AlreadyBanned);
        let status = f.engine.answer(&settings, Request::Status).status.unwrap();
        assert_eq!(status.bans_active, 1);
        assert_eq!(status.pid, std::process::id());
        let a = f.engine.answer(
            &settings,
            Request::Unban {
                ip: "192.0.2.1".into(),
            },
        );
        assert!(a.unban.unwrap().was_banned);
        assert!(!kernel.holds("192.0.2.1") && !f.banned("192.0.2.1"));
        let status = f.engine.answer(&settings, Request::Status).status.unwrap();
        assert_eq!(status.bans_active, 0);
    }

    #[test]
    fn refusals_say_whose_fault_they_are() {
        let mut f = Fixture::new("");
        let settings = f.settings.clone();
        for bad in [ban("not-an-ip"), ban(IGNORED)] {
            let a = f.engine.answer(&settings, bad);
            assert_eq!(a.error.unwrap().kind, RefusalKind::Usage);
        }
        let a = f.engine.answer(
            &settings,
            Request::Ban {
                ip: "192.0.2.1".into(),
                duration: Some("soon".into()),
                reason: None,
            },
        );
        assert!(a.error.unwrap().message.starts_with("--for: "));
        assert!(f.active().is_empty());
    }
}
