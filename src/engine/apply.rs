//! Banning, unbanning and expiring: the store and the firewall changed together.
//!
//! The daemon's decision thread and the short-lived CLI commands both go through these
//! functions, so a ban means the same thing whoever makes it. A batch is one firewall call
//! and one store transaction. The firewall goes first: protection must not depend on the
//! disk (a full disk or a read-only state directory still bans, and says it could not
//! record), and when the firewall refuses nothing is recorded, so the store never claims
//! a ban the kernel does not hold and a retry starts clean.

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::ban::{Ban, NewBan, Recorded};
use crate::firewall::{Entry, Firewall, FirewallError};
use crate::net::display_net;
use crate::store::{BanStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("firewall: {0}")]
    Firewall(#[from] FirewallError),
    #[error(
        "{} in the firewall but {} not recorded: {source}",
        crate::words::count(*banned, "ban is", "bans are"),
        if *banned == 1 { "was" } else { "were" }
    )]
    NotRecorded { banned: usize, source: StoreError },
}

/// Enforces and records bans. Addresses already banned are left as they are (the kernel
/// is made to agree, idempotently).
pub fn ban_many(
    store: &mut dyn BanStore,
    firewall: &mut dyn Firewall,
    bans: &[NewBan],
) -> Result<Vec<Recorded>, ActionError> {
    if bans.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let entries: Vec<Entry> = bans
        .iter()
        .map(|b| Entry::until(b.net, b.expires_at, now))
        .collect();
    firewall.ban(&entries)?;
    let recorded = store
        .record_many(bans)
        .map_err(|source| ActionError::NotRecorded {
            banned: bans.len(),
            source,
        })?;
    for r in &recorded {
        if let Recorded::New(ban) = r {
            log::info!(
                "banned {} (rule {}, {}, {}, until {})",
                display_net(&ban.net),
                ban.rule,
                crate::words::counted(ban.attempts, "attempt"),
                ban.source,
                ban.expires_at
                    .map_or("forever".to_string(), crate::time::rfc3339)
            );
        }
    }
    Ok(recorded)
}

/// Records and enforces one ban.
pub fn ban(
    store: &mut dyn BanStore,
    firewall: &mut dyn Firewall,
    new: &NewBan,
) -> Result<Recorded, ActionError> {
    let mut recorded = ban_many(store, firewall, std::slice::from_ref(new))?;
    Ok(recorded.remove(0))
}

/// Lifts the bans of `nets` in the store and the firewall. Returns the bans that were
/// active (the firewall is cleaned of all `nets` all the same).
pub fn unban_many(
    store: &mut dyn BanStore,
    firewall: &mut dyn Firewall,
    nets: &[IpNet],
    why: &str,
) -> Result<Vec<Ban>, ActionError> {
    if nets.is_empty() {
        return Ok(Vec::new());
    }
    let lifted = store.lift_many(nets, Utc::now(), why)?;
    firewall.unban(nets)?;
    for ban in &lifted {
        log::info!("unbanned {} ({why})", display_net(&ban.net));
    }
    Ok(lifted)
}

/// Lifts the ban of one network; `None` when it was not banned.
pub fn unban(
    store: &mut dyn BanStore,
    firewall: &mut dyn Firewall,
    net: &IpNet,
    why: &str,
) -> Result<Option<Ban>, ActionError> {
    Ok(unban_many(store, firewall, std::slice::from_ref(net), why)?.pop())
}

/// Lifts every ban whose time is up at `now`.
pub fn expire_due(
    store: &mut dyn BanStore,
    firewall: &mut dyn Firewall,
    now: DateTime<Utc>,
) -> Result<Vec<Ban>, ActionError> {
    let due: Vec<IpNet> = store.due(now)?.iter().map(|b| b.net).collect();
    unban_many(store, firewall, &due, "expired")
}
