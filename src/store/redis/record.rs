//! A ban's record as Redis holds it, in either layout: a hash of named fields per ban
//! (`ban:<id>`, layout 1), or one packed line per ban in the `records` hash (layout 2),
//! which costs Redis a third of the memory (a hash per ban whose log line is longer than
//! Redis's 64-byte listpack values is a full hash table of ten entries).
//!
//! A packed record is its fields in a fixed order, separated by tabs:
//!
//! ```text
//! net  rule  attempts  server  source  banned_at  expires_at  reason [ lifted_at  lift_reason ]
//! ```
//!
//! Times are Unix seconds (`expires_at` empty for forever). The two texts a log or a
//! person wrote — `reason` and `lift_reason` — have `\` written `\\`, a tab `\t` and a
//! newline `\n`, so no text can add or move a field. The other fields cannot hold a tab
//! (networks, numbers, names from the configuration). The LIFT script appends the last
//! two fields to the line it finds, without reading it.

use std::collections::HashMap;

use chrono::DateTime;
use ipnet::IpNet;

use crate::ban::{Ban, NewBan, Origin};

/// The fields of a new ban, packed (without the lift).
pub fn pack(ban: &NewBan) -> String {
    let time = |t: DateTime<chrono::Utc>| crate::time::to_second(t).timestamp().to_string();
    [
        ban.net.to_string(),
        ban.rule.clone(),
        ban.attempts.to_string(),
        ban.server.clone(),
        ban.source.as_str().to_string(),
        time(ban.banned_at),
        ban.expires_at.map(time).unwrap_or_default(),
        escape(&ban.reason),
    ]
    .join("\t")
}

/// Text for a packed field: `\`, tab and newline escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn time(field: &str) -> Option<DateTime<chrono::Utc>> {
    field
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
}

/// A packed record (layout 2); `None` when it is not one.
pub fn unpack(id: i64, line: &str) -> Option<Ban> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != 8 && f.len() != 10 {
        return None;
    }
    Some(Ban {
        id,
        new: NewBan {
            net: f[0].parse().ok()?,
            rule: f[1].to_string(),
            attempts: f[2].parse().unwrap_or(0),
            server: f[3].to_string(),
            source: f[4].parse().ok()?,
            banned_at: time(f[5])?,
            expires_at: time(f[6]),
            reason: unescape(f[7]),
        },
        lifted_at: f.get(8).and_then(|t| time(t)),
        lift_reason: f.get(9).map(|r| unescape(r)),
    })
}

/// A record's hash (layout 1); `None` when a field it needs is missing or wrong.
pub fn decode(id: i64, m: &HashMap<String, String>) -> Option<Ban> {
    let get = |k: &str| m.get(k).map(String::as_str);
    let time = |k: &str| get(k).filter(|v| !v.is_empty()).and_then(time);
    let net: IpNet = get("net")?.parse().ok()?;
    let source: Origin = get("source")?.parse().ok()?;
    Some(Ban {
        id,
        new: NewBan {
            net,
            rule: get("rule")?.to_string(),
            reason: get("reason").unwrap_or_default().to_string(),
            attempts: get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
            server: get("server").unwrap_or_default().to_string(),
            source,
            banned_at: time("banned_at")?,
            expires_at: time("expires_at"),
        },
        lifted_at: time("lifted_at"),
        lift_reason: get("lift_reason").map(str::to_string),
    })
}

/// The fields the admin's filters test, by their layout-1 names, of a ban.
pub fn field(ban: &Ban, name: &str) -> String {
    match name {
        "net" => ban.net.to_string(),
        "rule" => ban.rule.clone(),
        "server" => ban.server.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(reason: &str) -> NewBan {
        NewBan {
            net: "192.0.2.7/32".parse().unwrap(),
            rule: "sshd".into(),
            reason: reason.into(),
            attempts: 5,
            server: "web-1".into(),
            source: Origin::Log,
            banned_at: DateTime::from_timestamp(1_796_000_000, 0).unwrap(),
            expires_at: DateTime::from_timestamp(1_796_086_400, 0),
        }
    }

    #[test]
    fn a_packed_record_reads_back_whole() {
        let new = ban("Dec  7 11:01:35 web-1 sshd[1]: Failed password for root");
        let back = unpack(3, &pack(&new)).unwrap();
        assert_eq!(back.id, 3);
        assert_eq!(back.new, new);
        assert_eq!((back.lifted_at, back.lift_reason), (None, None));
    }

    #[test]
    fn tabs_and_backslashes_in_a_log_line_cannot_add_or_move_a_field() {
        let forged = "user\t1\tx\tlog\t0\t\tfake\\t\\\\ end\\";
        let new = ban(forged);
        let line = format!("{}\t1796003600\t{}", pack(&new), escape("by\thand\n"));
        let back = unpack(1, &line).unwrap();
        assert_eq!(back.new.reason, forged);
        assert_eq!(back.new.net, new.net);
        assert_eq!(back.lift_reason.as_deref(), Some("by\thand\n"));
        assert_eq!(back.lifted_at.unwrap().timestamp(), 1_796_003_600);
    }

    #[test]
    fn a_ban_for_ever_has_no_end() {
        let mut new = ban("x");
        new.expires_at = None;
        assert_eq!(unpack(1, &pack(&new)).unwrap().new.expires_at, None);
    }

    #[test]
    fn a_line_that_is_no_record_is_refused() {
        assert!(unpack(1, "").is_none());
        assert!(unpack(1, "192.0.2.7/32\tsshd").is_none());
        assert!(unpack(1, "nonsense\tsshd\t5\tweb-1\tlog\t1\t\tx").is_none());
    }
}
