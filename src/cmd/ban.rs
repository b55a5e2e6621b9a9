//! `pyfilter ban IP [--for DURATION] [--reason TEXT]`: asks the running daemon, or, with
//! none, bans here under the state lock.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::ban::Recorded;
use crate::cli::BanArgs;
use crate::cli::UsageError;
use crate::config::StoreKind;
use crate::control::protocol::{BanAnswer, BanOutcome, Request};
use crate::control::{self, Paths, Route};
use crate::engine::apply;
use crate::engine::manual::{self, ManualError};
use crate::settings::Settings;
use crate::time::human_time;

pub fn run(settings: &Settings, args: &BanArgs) -> anyhow::Result<ExitCode> {
    // Checked here first: a mistake is told at once, whoever would carry the ban out.
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
    crate::firewall::check_privilege(&settings.config.firewall)?;
    let request = Request::Ban {
        ip: args.ip.clone(),
        duration: args.duration.clone(),
        reason: args.reason.clone(),
    };
    let answer = match control::route(&Paths::beside(&settings.config.sqlite.path), &request)? {
        Route::Daemon(answer) => super::accepted(answer)?
            .ban
            .ok_or_else(|| anyhow::anyhow!("the daemon answered a ban without its outcome"))?,
        Route::Here(_lock) => {
            let mut firewall = crate::firewall::open(&settings.config.firewall)?;
            firewall.init()?;
            let mut store = crate::store::open(settings)?;
            match apply::ban(store.as_mut(), firewall.as_mut(), &new)? {
                Recorded::New(ban) => {
                    // Id 0: Redis was unreachable; the ban waits in the outbox.
                    let queued = ban.id == 0 && settings.config.store == StoreKind::Redis;
                    BanAnswer::of(BanOutcome::Banned, &ban, queued)
                }
                Recorded::AlreadyBanned(ban) => {
                    BanAnswer::of(BanOutcome::AlreadyBanned, &ban, false)
                }
            }
        }
    };
    println!("{}", said(&answer));
    Ok(ExitCode::SUCCESS)
}

/// What `pyfilter ban` prints.
fn said(ban: &BanAnswer) -> String {
    let until = ban
        .expires_at
        .as_deref()
        .map_or("forever".to_string(), |t| format!("until {}", human(t)));
    match ban.outcome {
        BanOutcome::Banned => {
            let queued = if ban.queued {
                " (Redis is unreachable: kept in the outbox, published when it returns)"
            } else {
                ""
            };
            format!("banned {} {until}{queued}", ban.ip)
        }
        BanOutcome::AlreadyBanned => format!(
            "{} is already banned {until} (rule {}, since {}); unban it first to change the ban",
            ban.ip,
            ban.rule,
            human(&ban.banned_at)
        ),
    }
}

/// An RFC 3339 time of the answer, for people (as written when it does not parse).
fn human(t: &str) -> String {
    DateTime::parse_from_rfc3339(t)
        .map_or_else(|_| t.to_string(), |t| human_time(t.with_timezone(&Utc)))
}
