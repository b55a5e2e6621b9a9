//! Banning, unbanning and expiring: the store and the firewall changed together.
//!
//! The daemon's decision thread and the short-lived CLI commands both go through these
//! functions, so a ban means the same thing whoever makes it. The store is written first
//! (it is the truth); when the firewall then refuses, the record is rolled back so the
//! store never claims a ban the kernel does not hold.

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::firewall::{Firewall, FirewallError};
use crate::net::display_net;
use crate::store::{Ban, NewBan, Recorded, SqliteStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("firewall: {0}")]
    Firewall(#[from] FirewallError),
}

/// Records and enforces a ban. An address already banned is left as it is.
pub fn ban(
    store: &mut SqliteStore,
    firewall: &mut dyn Firewall,
    new: &NewBan,
) -> Result<Recorded, ActionError> {
    let recorded = store.record(new)?;
    if let Recorded::New(ban) = &recorded {
        if let Err(e) = firewall.ban(&ban.net) {
            store.lift(&ban.net, Utc::now(), &format!("firewall refused: {e}"))?;
            return Err(e.into());
        }
        log::info!(
            "banned {} (rule {}, {} attempts, {}, until {})",
            display_net(&ban.net),
            ban.rule,
            ban.attempts,
            ban.source,
            ban.expires_at
                .map_or("forever".to_string(), |t| t.to_rfc3339())
        );
    } else {
        // Already recorded: make sure the kernel agrees (idempotent).
        firewall.ban(&new.net)?;
    }
    Ok(recorded)
}

/// Lifts the ban of `net` in the store and the firewall. Returns the ban, or `None` when
/// it was not banned (the firewall is cleaned all the same).
pub fn unban(
    store: &mut SqliteStore,
    firewall: &mut dyn Firewall,
    net: &IpNet,
    why: &str,
) -> Result<Option<Ban>, ActionError> {
    let lifted = store.lift(net, Utc::now(), why)?;
    firewall.unban(net)?;
    if lifted.is_some() {
        log::info!("unbanned {} ({why})", display_net(net));
    }
    Ok(lifted)
}

/// Lifts every ban whose time is up at `now`.
pub fn expire_due(
    store: &mut SqliteStore,
    firewall: &mut dyn Firewall,
    now: DateTime<Utc>,
) -> Result<Vec<Ban>, ActionError> {
    let due = store.due(now)?;
    let mut lifted = Vec::with_capacity(due.len());
    for ban in due {
        if let Some(ban) = unban(store, firewall, &ban.net, "expired")? {
            lifted.push(ban);
        }
    }
    Ok(lifted)
}
