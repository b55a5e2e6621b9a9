//! `pyfilter ban IP [--for DURATION] [--reason TEXT]`.

use std::process::ExitCode;

use chrono::Utc;

use super::{UsageError, human_time};
use crate::actions;
use crate::cli::BanArgs;
use crate::config::{Settings, StoreKind};
use crate::duration::BanTime;
use crate::net::{display_net, parse_net};
use crate::store::{NewBan, Origin, Recorded};

pub fn run(settings: &Settings, args: &BanArgs) -> anyhow::Result<ExitCode> {
    let net = parse_net(&args.ip).map_err(UsageError)?;
    let ban_time = match &args.duration {
        Some(d) => BanTime::parse(d).map_err(|e| UsageError(format!("--for: {e}")))?,
        None => settings.config.ban_time,
    };
    if let Some(ignored) = settings.ignore.overlapping(&net) {
        return Err(UsageError(format!(
            "{} overlaps {ignored} in the ignore list; pyfilter never bans ignored addresses (remove it from `ignore` first)",
            display_net(&net)
        ))
        .into());
    }
    let mut firewall = crate::firewall::open(&settings.config.firewall)?;
    firewall.init()?;
    let mut store = crate::store::open(settings)?;
    let now = Utc::now();
    let new = NewBan {
        net,
        rule: "manual".into(),
        reason: args
            .reason
            .clone()
            .unwrap_or_else(|| "banned by hand".into()),
        attempts: 0,
        server: settings.config.server_name.clone(),
        source: Origin::Manual,
        banned_at: now,
        expires_at: ban_time.expiry(now),
    };
    match actions::ban(store.as_mut(), firewall.as_mut(), &new)? {
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
