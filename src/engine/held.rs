//! What this server holds in its firewall, compact enough for a million bans: bans it
//! knows in full (its own, and records it read) to put back should the shared store lose
//! them, and the fleet's others as their end and, when an event told, their rule and
//! server. A reconcile marks what the store still has; what is left unmarked is gone.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::ban::{self, NewBan};

#[derive(Default)]
pub struct Held {
    bans: HashMap<IpNet, Slot>,
    /// (rule, server) pairs of the fleet's bans, each kept once.
    origins: Vec<(String, String)>,
    origin_ids: HashMap<(String, String), u32>,
    /// The reconcile under way; a slot marked with it is still in the store.
    pass: u32,
}

/// 24 bytes, 48 with its network in the map: a million bans take about 100 MB.
struct Slot {
    ban: Known,
    pass: u32,
}

enum Known {
    Full(Box<NewBan>),
    /// Another server's ban: its end and, when an event said, its (rule, server).
    Brief {
        until: Until,
        origin: Origin,
    },
}

/// When a ban ends, in Unix seconds: 0 for forever, clamped to what 32 bits hold (2106).
#[derive(Clone, Copy)]
struct Until(u32);

impl Until {
    fn of(t: Option<DateTime<Utc>>) -> Until {
        Until(t.map_or(0, |t| {
            u32::try_from(t.timestamp().max(1)).unwrap_or(u32::MAX)
        }))
    }

    fn get(self) -> Option<DateTime<Utc>> {
        (self.0 != 0)
            .then(|| DateTime::from_timestamp(i64::from(self.0), 0))
            .flatten()
    }
}

/// The index of a (rule, server) pair in `Held::origins`; `UNKNOWN` when no event told.
#[derive(Clone, Copy)]
struct Origin(u32);

impl Origin {
    const UNKNOWN: Origin = Origin(u32::MAX);
}

impl Held {
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    pub fn contains(&self, net: &IpNet) -> bool {
        self.bans.contains_key(net)
    }

    /// A ban known in full.
    pub fn insert_full(&mut self, ban: NewBan) {
        let slot = Slot {
            ban: Known::Full(Box::new(ban.clone())),
            pass: self.pass,
        };
        self.bans.insert(ban.net, slot);
    }

    /// Another server's ban, as an event or a scan of the store tells it.
    pub fn insert_brief(
        &mut self,
        net: IpNet,
        until: Option<DateTime<Utc>>,
        origin: Option<(&str, &str)>,
    ) {
        let origin = origin.map_or(Origin::UNKNOWN, |(rule, server)| self.origin(rule, server));
        let slot = Slot {
            ban: Known::Brief {
                until: Until::of(until),
                origin,
            },
            pass: self.pass,
        };
        self.bans.insert(net, slot);
    }

    /// The ban of `net`: in full when known, else what an event told of it.
    pub fn get(&self, net: &IpNet) -> Option<NewBan> {
        let slot = self.bans.get(net)?;
        Some(self.as_new_ban(net, &slot.ban, Utc::now(), ""))
    }

    fn as_new_ban(&self, net: &IpNet, ban: &Known, now: DateTime<Utc>, reason: &str) -> NewBan {
        match ban {
            Known::Full(ban) => (**ban).clone(),
            Known::Brief { until, origin } => {
                let (rule, server) = self
                    .origins
                    .get(origin.0 as usize)
                    .map(|(r, s)| (r.clone(), s.clone()))
                    .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
                NewBan {
                    net: *net,
                    rule,
                    reason: reason.into(),
                    attempts: 0,
                    server,
                    source: ban::Origin::Remote,
                    banned_at: now,
                    expires_at: until.get(),
                }
            }
        }
    }

    pub fn remove(&mut self, net: &IpNet) -> bool {
        self.bans.remove(net).is_some()
    }

    pub fn clear(&mut self) {
        self.bans.clear();
    }

    fn origin(&mut self, rule: &str, server: &str) -> Origin {
        let key = (rule.to_string(), server.to_string());
        if let Some(id) = self.origin_ids.get(&key) {
            return Origin(*id);
        }
        let id = u32::try_from(self.origins.len()).unwrap_or(u32::MAX);
        if id == u32::MAX {
            return Origin::UNKNOWN;
        }
        self.origins.push(key.clone());
        self.origin_ids.insert(key, id);
        Origin(id)
    }

    /// Room for `n` more bans at once: growing a map of a million doubles it while both
    /// copies exist.
    pub fn reserve(&mut self, n: usize) {
        self.bans.reserve(n);
    }

    /// Starts a reconcile: nothing is marked yet.
    pub fn begin_pass(&mut self) {
        self.pass = self.pass.wrapping_add(1);
    }

    /// The store still has `net`: marks it. `false` when it is not held.
    pub fn mark(&mut self, net: &IpNet) -> bool {
        match self.bans.get_mut(net) {
            Some(slot) => {
                slot.pass = self.pass;
                true
            }
            None => false,
        }
    }

    /// The networks held but not marked in this pass.
    pub fn unmarked_nets(&self) -> Vec<IpNet> {
        self.bans
            .iter()
            .filter(|(_, slot)| slot.pass != self.pass)
            .map(|(net, _)| *net)
            .collect()
    }

    /// Held but not marked in this pass: the bans known in full (for the caller to ask
    /// whether the store lost them), and the others.
    pub fn unmarked(&self) -> (Vec<NewBan>, Vec<IpNet>) {
        let mut full = Vec::new();
        let mut brief = Vec::new();
        for (net, slot) in &self.bans {
            if slot.pass == self.pass {
                continue;
            }
            match &slot.ban {
                Known::Full(ban) => full.push((**ban).clone()),
                Known::Brief { .. } => brief.push(*net),
            }
        }
        (full, brief)
    }

    /// Every ban held, as it would be put back in a store that lost its data: in full
    /// when known; otherwise with its rule and server when an event told them, or rule
    /// and server `unknown` (the server that made it, if it is still up, puts it back in
    /// full itself).
    pub fn to_put_back(&self) -> impl Iterator<Item = NewBan> + '_ {
        let now = Utc::now();
        self.bans.iter().map(move |(net, slot)| {
            self.as_new_ban(net, &slot.ban, now, "put back after Redis lost its data")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn what_a_pass_does_not_mark_is_left_over() {
        let mut held = Held::default();
        held.insert_brief(net("192.0.2.1/32"), None, Some(("sshd", "web-2")));
        held.insert_brief(net("192.0.2.2/32"), None, None);
        held.begin_pass();
        assert!(held.mark(&net("192.0.2.1/32")));
        assert!(!held.mark(&net("192.0.2.9/32")));
        let (full, brief) = held.unmarked();
        assert!(full.is_empty());
        assert_eq!(brief, [net("192.0.2.2/32")]);
    }

    #[test]
    fn a_brief_ban_is_put_back_with_the_origin_an_event_told() {
        let mut held = Held::default();
        held.insert_brief(net("192.0.2.1/32"), None, Some(("sshd", "web-2")));
        let back: Vec<NewBan> = held.to_put_back().collect();
        assert_eq!(
            (back[0].rule.as_str(), back[0].server.as_str()),
            ("sshd", "web-2")
        );
        assert_eq!(back[0].reason, "put back after Redis lost its data");
    }
}
