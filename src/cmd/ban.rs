//! `pyfilter ban IP [--for DURATION] [--reason TEXT]`.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::ban::{NewBan, Origin, Recorded};
use crate::cli::BanArgs;
use crate::cli::UsageError;
use crate::config::{Settings, StoreKind};
use crate::duration::BanTime;
use crate::engine::apply;
use crate::net::{display_net, parse_net};
use crate::time::human_time;

/// Why a ban by hand is refused; each way of banning by hand names the field its own way.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("{0}")]
    Address(String),
    #[error("{0}")]
    Duration(String),
    #[error("{0}")]
    Ignored(String),
}

/// A ban made by hand, checked as every way of banning by hand checks it (the CLI and
/// the admin): the address or block parses, the duration parses, the ignore list is
/// respected.
pub fn manual(
    settings: &Settings,
    ip: &str,
    duration: Option<&str>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<NewBan, ManualError> {
    let net = parse_net(ip.trim()).map_err(ManualError::Address)?;
    let ban_time = match duration.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => BanTime::parse(d).map_err(|e| ManualError::Duration(e.to_string()))?,
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
        banned_at: now,
        expires_at: ban_time.expiry(now),
    })
}

pub fn run(settings: &Settings, args: &BanArgs) -> anyhow::Result<ExitCode> {
    let new = manual(
        settings,
        &args.ip,
        args.duration.as_deref(),
        args.reason.as_deref(),
        Utc::now(),
    )
    .map_err(|e| match e {
        ManualError::Duration(e) => UsageError(format!("--for: {e}")),
        e => UsageError(e.to_string()),
    })?;
    let mut firewall = crate::firewall::open(&settings.config.firewall)?;
    firewall.init()?;
    let mut store = crate::store::open(settings)?;
    match apply::ban(store.as_mut(), firewall.as_mut(), &new)? {
        Recorded::New(ban) => {
            let until = ban.expires_at.map_or("forever".to_string(), |t| {
                format!("until {}", human_time(t))
            });
            // Id 0: Redis was unreachable; the ban waits in the outbox.
            let queued = if ban.id == 0 && settings.config.store == StoreKind::Redis {
                " (Redis is unreachable: kept in the outbox, published when it returns)"
            } else {
                ""
            };
            println!("banned {} {until}{queued}", display_net(&ban.net));
        }
        Recorded::AlreadyBanned(ban) => {
            let until = ban.expires_at.map_or("forever".to_string(), |t| {
                format!("until {}", human_time(t))
            });
            println!(
                "{} is already banned {until} (rule {}, since {}); unban it first to change the ban",
                display_net(&ban.net),
                ban.rule,
                human_time(ban.banned_at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
