//! `pyfilter list [--json] [--all]`: active bans, or the whole history.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use crate::ban::{Ban, Origin};
use crate::config::StoreKind;
use crate::net::display_net;
use crate::settings::Settings;
use crate::time::{human_time, rfc3339};

/// One ban in `list --json` and the admin's `/api/bans`.
#[derive(Serialize)]
pub struct BanJson<'a> {
    ip: String,
    rule: &'a str,
    reason: &'a str,
    server: &'a str,
    source: &'a str,
    attempts: u32,
    banned_at: String,
    expires_at: Option<String>,
    active: bool,
    lifted_at: Option<String>,
    lift_reason: Option<&'a str>,
}

pub fn run(settings: &Settings, json: bool, all: bool) -> anyhow::Result<ExitCode> {
    let mut store = crate::store::open_read_only(settings)?;
    let mut bans = if all {
        store.all_bans()?
    } else {
        store.active_bans()?
    };
    mark_remote(settings, &mut bans);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        for ban in &bans {
            serde_json::to_writer(&mut out, &to_json(ban))?;
            out.write_all(b"\n")?;
        }
    } else {
        write_table(&mut out, &bans, all)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// In a fleet's shared store, a ban another server made is remote from here.
pub fn mark_remote(settings: &Settings, bans: &mut [Ban]) {
    if settings.config.store == StoreKind::Redis {
        for ban in bans {
            if ban.server != settings.config.server_name {
                ban.new.source = Origin::Remote;
            }
        }
    }
}

pub fn to_json(ban: &Ban) -> BanJson<'_> {
    BanJson {
        ip: display_net(&ban.net),
        rule: &ban.rule,
        reason: &ban.reason,
        server: &ban.server,
        source: ban.source.as_str(),
        attempts: ban.attempts,
        banned_at: rfc3339(ban.banned_at),
        expires_at: ban.expires_at.map(rfc3339),
        active: ban.lifted_at.is_none(),
        lifted_at: ban.lifted_at.map(rfc3339),
        lift_reason: ban.lift_reason.as_deref(),
    }
}

const REASON_WIDTH: usize = 60;

fn write_table(out: &mut impl Write, bans: &[Ban], all: bool) -> std::io::Result<()> {
    if bans.is_empty() {
        return writeln!(
            out,
            "{}",
            if all {
                "no bans recorded"
            } else {
                "no active bans"
            }
        );
    }
    let mut rows: Vec<[String; 6]> =
        vec![["IP", "RULE", "SERVER", "SINCE", "UNTIL", "REASON"].map(String::from)];
    for ban in bans {
        let until = match (ban.lifted_at, ban.expires_at) {
            (Some(t), _) => format!("lifted {}", human_time(t)),
            (None, Some(t)) => human_time(t),
            (None, None) => "forever".into(),
        };
        // Reasons are log lines: control characters are shown escaped, never sent to
        // the terminal.
        let reason: String = ban.reason.escape_debug().collect();
        let reason = if reason.chars().count() > REASON_WIDTH {
            format!(
                "{}…",
                reason.chars().take(REASON_WIDTH - 1).collect::<String>()
            )
        } else {
            reason
        };
        rows.push([
            display_net(&ban.net),
            ban.rule.clone(),
            ban.server.clone(),
            human_time(ban.banned_at),
            until,
            reason,
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        for (cell, w) in row.iter().zip(widths) {
            write!(out, "{cell:<w$}  ")?;
        }
        writeln!(out, "{}", row[5])?;
    }
    let noun = if all {
        crate::words::count(bans.len(), "ban in history", "bans in history")
    } else {
        crate::words::count(bans.len(), "active ban", "active bans")
    };
    writeln!(out, "{noun}")
}
