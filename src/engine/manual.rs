//! Bans made by hand (`pyfilter ban`, the admin's ban form), checked the same way
//! whichever way they come: the address or block parses, the duration parses, the ignore
//! list is respected.

use chrono::{DateTime, Utc};

use crate::ban::{NewBan, Origin};
use crate::duration::{BanTime, DurationError};
use crate::net::{display_net, parse_net};
use crate::settings::Settings;

/// Why a ban by hand is refused; each way of banning by hand names the field its own way.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error(transparent)]
    Address(#[from] crate::net::NetError),
    #[error("{0}")]
    Duration(#[from] DurationError),
    #[error("{0}")]
    Ignored(String),
}

/// A ban made by hand, checked as every way of banning by hand checks it (the CLI and
/// the admin): the address or block parses, the duration parses, the ignore list is
/// respected.
pub fn check(
    settings: &Settings,
    ip: &str,
    duration: Option<&str>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<NewBan, ManualError> {
    let net = parse_net(ip.trim())?;
    let ban_time = match duration.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => BanTime::parse(d)?,
        None => settings.config.ban_time,
    };
    if let Some(ignored) = settings.ignore.overlapping(&net) {
        return Err(ManualError::Ignored(format!(
            "{} overlaps {ignored} in the ignore list; pyfilter never bans ignored addresses (remove it from `ignore` first)",
            display_net(&net)
        )));
    }
    Ok(NewBan {
        net,
        rule: "manual".into(),
        reason: reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or("banned by hand")
            .to_string(),
        attempts: 0,
        server: settings.config.server_name.clone(),
        source: Origin::Manual,
        // Begins on its whole second; ends no sooner than asked (the store rounds up).
        banned_at: crate::time::start_second(now),
        expires_at: ban_time.expiry(now),
    })
}
