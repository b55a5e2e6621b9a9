//! `pyfilter import --pyfilter-sqlite PATH | --pyfilter-redis URL`: the bans of an existing
//! PyFilter installation, brought into pyfilter's store. (`--fail2ban` is
//! `import_fail2ban.rs`.)
//!
//! PyFilter kept one row per banned address in SQLite (address, time banned, server,
//! the log line, country) and, with Redis, one hash per banned address (reason, server,
//! time banned) plus a `latest_10_keys` list for its admin. Column and field names
//! differ between PyFilter versions, so each is looked up among its known spellings.
//! Addresses are parsed, never trusted: a row that names no valid address is reported
//! and skipped. Importing twice changes nothing: an address already banned is kept.
//!
//! While the daemon runs, the import only records the bans and the daemon puts them in
//! the firewall (one owner for the kernel); with none, the import does both under the
//! state lock.

use std::collections::HashMap;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::ban::{NewBan, Origin, Recorded};
use crate::cli::ImportArgs;
use crate::cli::UsageError;
use crate::cmd::progress::{self, Progress, Unit};
use crate::control::{self, Applier, Paths};
use crate::duration::BanTime;
use crate::engine::apply;
use crate::net::parse_net;
use crate::settings::Settings;

/// One ban as PyFilter recorded it.
#[derive(Debug, Clone, PartialEq)]
struct Legacy {
    net: IpNet,
    banned_at: Option<DateTime<Utc>>,
    server: Option<String>,
    reason: Option<String>,
}

/// Bans recorded per store transaction and firewall batch.
const IMPORT_SLICE: usize = 2000;

const IP_NAMES: &[&str] = &["ip", "ip_address", "address", "banned_ip"];
const TIME_NAMES: &[&str] = &["time_banned", "banned_at", "time", "timestamp", "date"];
const SERVER_NAMES: &[&str] = &["server_name", "banned_server", "server", "name"];
const REASON_NAMES: &[&str] = &["log_msg", "reason", "log_message", "message", "log"];

pub fn run(settings: &Settings, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.fail2ban {
        return super::import_fail2ban::run(settings, dir);
    }
    let ban_time = match &args.duration {
        Some(d) => BanTime::parse(d).map_err(|e| UsageError(format!("--for: {e}")))?,
        None => BanTime::Forever,
    };
    let mut legacy = Vec::new();
    let mut skipped = Vec::new();
    if let Some(path) = &args.pyfilter_sqlite {
        read_sqlite(path, &mut legacy, &mut skipped)?;
    }
    if let Some(url) = &args.pyfilter_redis {
        read_redis(url, &mut legacy, &mut skipped)?;
    }
    for why in &skipped {
        eprintln!("pyfilter: skipped: {why}");
    }
    let now = Utc::now();
    let mut bans = Vec::new();
    let mut ignored = 0;
    for l in legacy {
        if let Some(net) = settings.ignore.overlapping(&l.net) {
            eprintln!("pyfilter: skipped {}: in the ignore list ({net})", l.net);
            ignored += 1;
            continue;
        }
        bans.push(NewBan {
            net: l.net,
            rule: "pyfilter-import".into(),
            reason: l.reason.unwrap_or_else(|| "imported from PyFilter".into()),
            attempts: 0,
            server: l
                .server
                .unwrap_or_else(|| settings.config.server_name.clone()),
            source: Origin::Manual,
            banned_at: l.banned_at.unwrap_or(now),
            expires_at: ban_time.expiry(now),
        });
    }
    let mut store = crate::store::open(settings)?;
    let mut firewall = if args.no_firewall {
        None
    } else {
        let paths = Paths::beside(&settings.config.sqlite.path);
        if !control::lock::daemon_running(&paths.lock) {
            crate::firewall::check_privilege(&settings.config.firewall)?;
        }
        match control::applier(&paths)? {
            // The daemon puts them in the firewall as it hears of them, in batches.
            Applier::Daemon => None,
            Applier::Here(lock) => {
                let mut firewall = crate::firewall::open(&settings.config.firewall)?;
                firewall.init()?;
                Some((firewall, lock))
            }
        }
    };
    let mut progress = Progress::new(
        "import",
        Unit::Items("ban", "bans"),
        Some(bans.len() as u64),
        progress::wanted(false),
    );
    let mut recorded = Vec::with_capacity(bans.len());
    // In slices, so that a large import shows its progress; each is still one store
    // transaction and one firewall batch.
    for slice in bans.chunks(IMPORT_SLICE) {
        recorded.extend(match firewall.as_mut() {
            None => store.record_many(slice)?,
            Some((firewall, _lock)) => apply::ban_many(store.as_mut(), firewall.as_mut(), slice)?,
        });
        progress.add(slice.len() as u64);
    }
    progress.finish();
    let new = recorded
        .iter()
        .filter(|r| matches!(r, Recorded::New(_)))
        .count();
    println!(
        "{} imported, {} already there, {} skipped ({} not an address, {ignored} ignored)",
        crate::words::counted(new, "ban"),
        recorded.len() - new,
        skipped.len() + ignored,
        skipped.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// A PyFilter time: seconds since the epoch (possibly fractional), or a date text.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return DateTime::from_timestamp(secs as i64, 0);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%d/%m/%Y %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
    .map(|n| n.and_utc())
}

fn pick<'a>(fields: &'a HashMap<String, String>, names: &[&str]) -> Option<&'a String> {
    names
        .iter()
        .find_map(|n| fields.get(*n))
        .filter(|v| !v.is_empty())
}

fn legacy_from(
    fields: &HashMap<String, String>,
    fallback_ip: Option<&str>,
) -> Result<Legacy, String> {
    let ip = pick(fields, IP_NAMES)
        .map(String::as_str)
        .or(fallback_ip)
        .ok_or("no address column")?;
    Ok(Legacy {
        net: parse_net(ip).map_err(|e| e.to_string())?,
        banned_at: pick(fields, TIME_NAMES).and_then(|t| parse_time(t)),
        server: pick(fields, SERVER_NAMES).cloned(),
        reason: pick(fields, REASON_NAMES).cloned(),
    })
}

fn read_sqlite(
    path: &std::path::Path,
    out: &mut Vec<Legacy>,
    skipped: &mut Vec<String>,
) -> anyhow::Result<()> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut found = false;
    for table in tables {
        // Table names come from the file itself: quoted, never spliced raw.
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let mut stmt = conn.prepare(&format!("SELECT * FROM {quoted}"))?;
        let columns: Vec<String> = stmt.column_names().map(|c| c.to_lowercase()).collect();
        if !columns.iter().any(|c| IP_NAMES.contains(&c.as_str())) {
            continue;
        }
        found = true;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let mut fields = HashMap::new();
            for (i, name) in columns.iter().enumerate() {
                let value = match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => continue,
                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                    rusqlite::types::ValueRef::Real(f) => f.to_string(),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                };
                fields.insert(name.clone(), value);
            }
            match legacy_from(&fields, None) {
                Ok(l) => out.push(l),
                Err(why) => skipped.push(format!("{}: table {table}: {why}", path.display())),
            }
        }
    }
    if !found {
        return Err(UsageError(format!(
            "{}: no table with an address column ({}) — is this PyFilter's database?",
            path.display(),
            IP_NAMES.join(", ")
        ))
        .into());
    }
    Ok(())
}

fn read_redis(url: &str, out: &mut Vec<Legacy>, skipped: &mut Vec<String>) -> anyhow::Result<()> {
    let client =
        ::redis::Client::open(url).map_err(|e| UsageError(format!("--pyfilter-redis: {e}")))?;
    let shown = crate::config::redacted(url);
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| anyhow::anyhow!("PyFilter's Redis {shown}: {e}"))?;
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query(&mut conn)?;
    // latest_10_keys names recent bans; the hashes hold them all.
    let mut names: Vec<String> = keys.into_iter().filter(|k| k != "latest_10_keys").collect();
    let latest: Vec<String> = ::redis::cmd("LRANGE")
        .arg("latest_10_keys")
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap_or_default();
    for k in latest {
        if !names.contains(&k) {
            names.push(k);
        }
    }
    for key in names {
        let kind: String = ::redis::cmd("TYPE").arg(&key).query(&mut conn)?;
        if kind != "hash" {
            continue;
        }
        let fields: HashMap<String, String> = ::redis::cmd("HGETALL").arg(&key).query(&mut conn)?;
        let fields: HashMap<String, String> = fields
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        // PyFilter names each hash after the address it bans.
        let fallback = key
            .rsplit(':')
            .next()
            .filter(|k| k.parse::<std::net::IpAddr>().is_ok())
            .or(Some(key.as_str()));
        match legacy_from(&fields, fallback) {
            Ok(l) => out.push(l),
            Err(why) => skipped.push(format!("Redis key {key:?}: {why}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_pyfilter_spellings() {
        assert_eq!(
            parse_time("1700000000.25").unwrap().timestamp(),
            1_700_000_000
        );
        assert_eq!(
            parse_time("2024-07-20 14:42:11").unwrap().timestamp(),
            1_721_486_531
        );
        assert!(parse_time("soon").is_none());
    }

    #[test]
    fn fields_are_found_by_any_known_name_and_addresses_are_parsed() {
        let f: HashMap<String, String> = [
            ("ip", "192.0.2.1"),
            ("time_banned", "1700000000"),
            ("server_name", "web-1"),
            ("log_msg", "Failed password"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let l = legacy_from(&f, None).unwrap();
        assert_eq!(l.net.to_string(), "192.0.2.1/32");
        assert_eq!(l.server.as_deref(), Some("web-1"));
        let bad: HashMap<String, String> = [("ip".to_string(), "1.2.3.4; DROP TABLE".to_string())]
            .into_iter()
            .collect();
        assert!(legacy_from(&bad, None).is_err());
        assert!(legacy_from(&HashMap::new(), Some("2001:db8::5")).is_ok());
    }
}
