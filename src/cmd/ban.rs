//! `pyfilter ban IP [--for DURATION] [--reason TEXT]`.

use std::process::ExitCode;

use chrono::Utc;

use crate::ban::Recorded;
use crate::cli::BanArgs;
use crate::cli::UsageError;
use crate::config::StoreKind;
use crate::engine::apply;
use crate::engine::manual::{self, ManualError};
use crate::net::display_net;
use crate::settings::Settings;
use crate::time::human_time;

pub fn run(settings: &Settings, args: &BanArgs) -> anyhow::Result<ExitCode> {
    let new = manual::check(
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
