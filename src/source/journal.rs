//! The systemd journal as a log source: `journalctl --follow --output=json`, one child
//! process for every rule that reads the same journal (the system's, or a rule's own
//! file), its matches those of the rules joined by `+`; each entry is handed to the rules
//! whose matches it passes, checked here as journalctl checks them. Fifteen shipped rules
//! can fall back on the journal: one reader keeps that one process, not fifteen.
//!
//! Each entry's message is matched as it is, with the entry's own time (from
//! `__REALTIME_TIMESTAMP`): a rule's patterns describe the message, which syslog files
//! carry after a header and the journal carries alone, so they serve for both. The cursor of
//! the last entry handled is sent to the decision thread, which saves it: a restart resumes
//! exactly after it, neither replaying nor missing entries. A rule that names both log files
//! and a journal reads the journal when none of its files exists at start (the default
//! sshd rule on a machine that logs to the journal alone); its files are still waited for
//! and followed when they appear. When `journalctl` ends, it is started again after the
//! last cursor, later and later.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use chrono::{DateTime, FixedOffset, Local, Utc};
use crossbeam_channel::{bounded, select};

use crate::config::JournalSpec;
use crate::event::{Cursors, Event};
use crate::rule::Rule;
use crate::source::matcher::{Input, Matcher};
use crate::source::watch::{WatchContext, backoff};
use crate::status::{SourceCounters, SourceId, SourceState};

/// Whether a journal can be read here: journalctl is installed and the system journal (or
/// the rule's own journal file) exists.
pub fn available(spec: &JournalSpec) -> bool {
    crate::programs::installed("journalctl")
        && match &spec.file {
            Some(f) => f.exists(),
            None => {
                Path::new("/run/systemd/journal").exists() || Path::new("/var/log/journal").exists()
            }
        }
}

/// Whether `rule` reads the journal rather than its files.
pub fn reads_journal(rule: &Rule) -> bool {
    let Some(spec) = &rule.journal else {
        return false;
    };
    let any_file = rule.log_files.iter().any(|f| {
        if f.contains(['*', '?', '[']) {
            glob::glob(f)
                .map(|mut g| g.next().is_some())
                .unwrap_or(false)
        } else {
            Path::new(f).exists()
        }
    });
    !any_file && (rule.log_files.is_empty() || available(spec))
}

/// Starts one journal thread for every journal the rules read (compiling again a rule let
/// go at the load, when it had nothing to read).
pub fn spawn_all<'a>(
    rules: impl Iterator<Item = &'a Rule>,
    cursors: &Cursors,
    ctx: &WatchContext,
) -> Vec<JoinHandle<()>> {
    let mut groups: Vec<Vec<Arc<Rule>>> = Vec::new();
    for rule in rules.filter(|r| reads_journal(r)) {
        let rule = if rule.is_compiled() {
            Arc::new(rule.clone())
        } else {
            let compiled = ctx.compile.as_ref().map_or_else(
                || Err("no configuration to compile it from".to_string()),
                |compile| compile(std::slice::from_ref(&rule.name)),
            );
            match compiled.map(|mut c| c.pop()) {
                Ok(Some(rule)) => rule,
                Ok(None) => continue,
                Err(e) => {
                    log::error!(
                        "rule {}: cannot read the journal: it does not compile now: {e}",
                        rule.name
                    );
                    continue;
                }
            }
        };
        log::info!(
            "following the journal for {} ({})",
            rule.name,
            describe(rule.journal.as_ref().expect("reads_journal checked"))
        );
        let file = |r: &Rule| r.journal.as_ref().and_then(|j| j.file.clone());
        match groups.iter_mut().find(|g| file(&g[0]) == file(&rule)) {
            Some(group) => group.push(rule),
            None => groups.push(vec![rule]),
        }
    }
    groups
        .into_iter()
        .map(|group| {
            // The rules of one reader resume together: their cursors are the same one.
            let cursor = group.iter().find_map(|r| cursors.get(&*r.name).cloned());
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("journal {}", group[0].name))
                .spawn(move || supervise(&group, cursor, &ctx))
                .expect("spawning a thread")
        })
        .collect()
}

/// The journal a rule reads, for people: `system journal, _COMM=sshd`.
pub fn describe(spec: &JournalSpec) -> String {
    let source = spec
        .file
        .as_ref()
        .map_or("system journal".to_string(), |f| f.display().to_string());
    if spec.matches.is_empty() {
        source
    } else {
        format!("{source}, {}", spec.matches.join(" "))
    }
}

fn command(specs: &[&JournalSpec], cursor: Option<&str>) -> Command {
    let mut c = Command::new("journalctl");
    // --merge: without it, --follow keeps to the current boot, and a journal file from
    // elsewhere (or entries from before a reboot) would be refused or skipped.
    c.args([
        "--follow",
        "--merge",
        "--output=json",
        "--no-pager",
        "--quiet",
    ]);
    match cursor {
        Some(cursor) => c.arg(format!("--after-cursor={cursor}")),
        // First start: only what is written from now on, as with files.
        None => c.arg("--lines=0"),
    };
    if let Some(file) = specs.first().and_then(|s| s.file.as_ref()) {
        if file.is_dir() {
            c.arg(format!("--directory={}", file.display()));
        } else {
            c.arg(format!("--file={}", file.display()));
        }
    }
    // `--` ends the options: a match can never be taken for one. The rules' matches are
    // alternatives (`+`); a rule without matches reads every entry, and so does the reader.
    c.arg("--");
    if specs.iter().all(|s| !s.matches.is_empty()) {
        for (i, spec) in specs.iter().enumerate() {
            if i > 0 {
                c.arg("+");
            }
            c.args(&spec.matches);
        }
    }
    c
}

/// Whether the entry `fields` passes `matches` as journalctl reads them: groups split by
/// `+` are alternatives; within a group, matches of one field are alternatives and
/// matches of different fields are all needed. No match passes everything.
fn accepts(matches: &[String], fields: &serde_json::Value) -> bool {
    if matches.is_empty() {
        return true;
    }
    matches.split(|m| m == "+").any(|group| {
        let mut wanted: Vec<(&str, Vec<&str>)> = Vec::new();
        for m in group {
            let Some((field, value)) = m.split_once('=') else {
                continue;
            };
            match wanted.iter_mut().find(|(f, _)| *f == field) {
                Some((_, values)) => values.push(value),
                None => wanted.push((field, vec![value])),
            }
        }
        wanted.iter().all(|(field, values)| {
            field_values(fields, field)
                .iter()
                .any(|v| values.contains(&v.as_str()))
        })
    })
}

/// The values of one field of an entry (journalctl writes a field set several times as
/// an array of its values, and one that is not UTF-8 as an array of bytes).
fn field_values(fields: &serde_json::Value, name: &str) -> Vec<String> {
    let bytes = |items: &[serde_json::Value]| -> Option<String> {
        let bytes: Option<Vec<u8>> = items
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect();
        bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    match fields.get(name) {
        None => Vec::new(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => match bytes(items) {
            Some(one) if !items.is_empty() => vec![one],
            _ => items
                .iter()
                .filter_map(|v| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Array(b) => bytes(b),
                    _ => None,
                })
                .collect(),
        },
        Some(other) => vec![other.to_string()],
    }
}

/// Kills the child when the thread ends, however it ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Follows the rules' journal until the watchers stop, starting `journalctl` again after
/// the last cursor whenever it ends.
fn supervise(rules: &[Arc<Rule>], mut cursor: Option<String>, ctx: &WatchContext) {
    let counters: Vec<Arc<SourceCounters>> = rules.iter().map(|_| Arc::default()).collect();
    let report = |state: SourceState, why: Option<String>| {
        for (rule, counters) in rules.iter().zip(&counters) {
            ctx.report(
                SourceId::Journal(rule.name.to_string()),
                state,
                why.clone(),
                std::slice::from_ref(rule),
                counters,
            );
        }
    };
    let names: Vec<&str> = rules.iter().map(|r| &*r.name).collect();
    let mut failures = 0;
    loop {
        report(SourceState::Following, None);
        let why = match follow(rules, &mut cursor, ctx, &counters) {
            Ok(Ended::Stopped) => return,
            Ok(Ended::Exited) => "journalctl exited".to_string(),
            Err(e) => e.to_string(),
        };
        failures += 1;
        let wait = backoff(failures);
        log::error!(
            "the journal is not followed for {}: {why}; tried again in {}s",
            names.join(", "),
            wait.as_secs()
        );
        report(SourceState::Failed, Some(why));
        if ctx.stop.recv_timeout(wait) != Err(crossbeam_channel::RecvTimeoutError::Timeout) {
            return;
        }
    }
}

/// Why `follow` returned.
enum Ended {
    Stopped,
    Exited,
}

fn follow(
    rules: &[Arc<Rule>],
    cursor: &mut Option<String>,
    ctx: &WatchContext,
    counters: &[Arc<SourceCounters>],
) -> std::io::Result<Ended> {
    let specs: Vec<&JournalSpec> = rules
        .iter()
        .map(|r| r.journal.as_ref().expect("spawned for journal rules only"))
        .collect();
    let mut child = Reaper(
        command(&specs, cursor.as_deref())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().expect("piped");
    // The pipe is read on a thread of its own, so that this one can wait for a stop too.
    let (lines_tx, lines) = bounded::<std::io::Result<Vec<u8>>>(1024);
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if lines_tx.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = lines_tx.send(Err(e));
                    return;
                }
            }
        }
    });
    // One matcher a rule: each rule is a source of its own, with its own counts.
    let mut matchers = rules
        .iter()
        .zip(counters)
        .map(|(rule, counters)| {
            Matcher::new(
                Input::Journal,
                std::slice::from_ref(rule),
                ctx.events.clone(),
                Arc::clone(&ctx.metrics),
                Arc::clone(counters),
            )
        })
        .collect::<Result<Vec<Matcher>, _>>()
        .map_err(std::io::Error::other)?;
    let mut unsent: Option<String> = None;
    let mut ended = Ended::Exited;
    loop {
        // Entries read are added to the metrics, and the cursor is handed on, when the
        // pipe has nothing more queued: a burst costs one atomic add and one event a rule.
        if lines.is_empty() {
            for m in &mut matchers {
                m.count_lines();
            }
            send_cursor(rules, &mut unsent, ctx);
        }
        select! {
            recv(lines) -> line => {
                let Ok(line) = line else { break };
                let line = line?;
                let fields = serde_json::from_slice::<serde_json::Value>(&line).ok();
                let Some((entry, fields)) = fields.and_then(|f| Some((Entry::from_fields(&f)?, f))) else {
                    for m in &mut matchers {
                        m.unreadable();
                    }
                    log::debug!("not a journal entry: {}", String::from_utf8_lossy(&line));
                    continue;
                };
                // The process id joins a connection's entries (`session: pid`), as the
                // syslog tag's does in a file.
                let pid = (!entry.pid.is_empty()).then_some(entry.pid.as_bytes());
                let message = entry.message();
                for (m, spec) in matchers.iter_mut().zip(&specs) {
                    if accepts(&spec.matches, &fields) {
                        m.entry(message.as_bytes(), pid, entry.time());
                    }
                }
                if let Some(c) = entry.cursor {
                    *cursor = Some(c.clone());
                    unsent = Some(c);
                }
            }
            recv(ctx.stop) -> _ => {
                ended = Ended::Stopped;
                break;
            }
        }
    }
    for m in &mut matchers {
        m.count_lines();
    }
    send_cursor(rules, &mut unsent, ctx);
    drop(child);
    let _ = reader.join();
    Ok(ended)
}

/// Hands the last cursor read to the decision thread, once for each rule of the reader.
fn send_cursor(rules: &[Arc<Rule>], unsent: &mut Option<String>, ctx: &WatchContext) {
    if let Some(cursor) = unsent.take() {
        for rule in rules {
            let _ = ctx.events.send(Event::Cursor {
                rule: rule.name.to_string(),
                cursor: cursor.clone(),
            });
        }
    }
}

/// The fields of one journal entry that make its line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Entry {
    at: Option<DateTime<Utc>>,
    host: String,
    ident: String,
    pid: String,
    message: String,
    cursor: Option<String>,
}

impl Entry {
    #[cfg(test)]
    fn parse(json: &[u8]) -> Option<Entry> {
        Entry::from_fields(&serde_json::from_slice(json).ok()?)
    }

    fn from_fields(v: &serde_json::Value) -> Option<Entry> {
        let field = |k: &str| -> Option<String> {
            match v.get(k)? {
                serde_json::Value::String(s) => Some(s.clone()),
                // journalctl writes a field that is not valid UTF-8 as an array of bytes.
                serde_json::Value::Array(bytes) => {
                    let bytes: Vec<u8> = bytes
                        .iter()
                        .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect();
                    Some(String::from_utf8_lossy(&bytes).into_owned())
                }
                other => Some(other.to_string()),
            }
        };
        let micros: Option<i64> = field("__REALTIME_TIMESTAMP").and_then(|t| t.parse().ok());
        Some(Entry {
            at: micros.and_then(|m| {
                DateTime::from_timestamp(
                    m.div_euclid(1_000_000),
                    (m.rem_euclid(1_000_000) * 1000) as u32,
                )
            }),
            host: field("_HOSTNAME").unwrap_or_else(|| "localhost".into()),
            ident: field("SYSLOG_IDENTIFIER")
                .or_else(|| field("_COMM"))
                .unwrap_or_else(|| "unknown".into()),
            pid: field("SYSLOG_PID")
                .or_else(|| field("_PID"))
                .unwrap_or_default(),
            message: field("MESSAGE")?,
            cursor: field("__CURSOR"),
        })
    }

    /// When the entry was written (now, for an entry that does not say).
    fn time(&self) -> DateTime<FixedOffset> {
        self.at
            .unwrap_or_else(Utc::now)
            .with_timezone(&Local)
            .fixed_offset()
    }

    /// The message, on one line: a message spanning lines would let its own text pose
    /// as the start of a line.
    fn message(&self) -> String {
        self.message.replace(['\n', '\r'], " ")
    }

    /// `2025-11-26T01:02:03.123456+00:00 host sshd[123]: message`, for people.
    #[cfg(test)]
    fn as_line(&self) -> String {
        use chrono::SecondsFormat;
        let at = self
            .at
            .unwrap_or_else(Utc::now)
            .with_timezone(&Local)
            .to_rfc3339_opts(SecondsFormat::Micros, false);
        // A message spanning lines would let its own text pose as the start of a line.
        let message = self.message.replace(['\n', '\r'], " ");
        if self.pid.is_empty() {
            format!("{at} {} {}: {message}", self.host, self.ident)
        } else {
            format!("{at} {} {}[{}]: {message}", self.host, self.ident, self.pid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_becomes_a_syslog_shaped_line_with_its_own_time() {
        let json = br#"{"MESSAGE":"Failed password for root from 192.0.2.5 port 22 ssh2","SYSLOG_IDENTIFIER":"sshd-session","_HOSTNAME":"web1","_PID":"123","__REALTIME_TIMESTAMP":"1764118923123456","__CURSOR":"s=abc;i=1"}"#;
        let e = Entry::parse(json).unwrap();
        assert_eq!(e.cursor.as_deref(), Some("s=abc;i=1"));
        let line = e.as_line();
        assert!(
            line.ends_with(
                " web1 sshd-session[123]: Failed password for root from 192.0.2.5 port 22 ssh2"
            ),
            "{line}"
        );
        let at = DateTime::parse_from_rfc3339(line.split(' ').next().unwrap()).unwrap();
        assert_eq!(at.timestamp_micros(), 1_764_118_923_123_456);
    }

    #[test]
    fn binary_and_multi_line_messages_are_tamed() {
        let json = br#"{"MESSAGE":[70,97,105,108,255,10,49],"__REALTIME_TIMESTAMP":"0"}"#;
        let line = Entry::parse(json).unwrap().as_line();
        assert!(!line.contains('\n') && line.contains("Fail"), "{line}");
        assert!(Entry::parse(br#"{"NO_MESSAGE":"x"}"#).is_none());
        assert!(Entry::parse(b"not json").is_none());
    }

    #[test]
    fn matches_go_after_a_double_dash() {
        let spec = JournalSpec {
            matches: vec!["_COMM=sshd".into()],
            file: None,
        };
        let c = command(&[&spec], Some("s=1"));
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args.last().map(String::as_str), Some("_COMM=sshd"));
        assert!(
            args.contains(&"--".to_string()) && args.contains(&"--after-cursor=s=1".to_string())
        );
    }

    #[test]
    fn the_rules_of_one_journal_share_one_journalctl_their_matches_joined_by_plus() {
        let sshd = JournalSpec {
            matches: vec!["_COMM=sshd".into(), "_COMM=sshd-session".into()],
            file: None,
        };
        let vpn = JournalSpec {
            matches: vec![
                "_SYSTEMD_UNIT=openvpn.service".into(),
                "+".into(),
                "_COMM=openvpn".into(),
            ],
            file: None,
        };
        let args = |specs: &[&JournalSpec]| -> Vec<String> {
            let c = command(specs, None);
            let args: Vec<String> = c
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let dash = args.iter().position(|a| a == "--").unwrap();
            args[dash + 1..].to_vec()
        };
        assert_eq!(
            args(&[&sshd, &vpn]),
            [
                "_COMM=sshd",
                "_COMM=sshd-session",
                "+",
                "_SYSTEMD_UNIT=openvpn.service",
                "+",
                "_COMM=openvpn"
            ]
        );
        let every = JournalSpec {
            matches: Vec::new(),
            file: None,
        };
        assert!(
            args(&[&sshd, &every]).is_empty(),
            "a rule without matches reads everything"
        );
    }

    #[test]
    fn an_entry_passes_the_matches_as_journalctl_reads_them() {
        let entry = serde_json::json!({
            "_COMM": "sshd", "_SYSTEMD_UNIT": "ssh.service", "MESSAGE": "x",
            "_TRANSPORT": ["journal", "syslog"], "SYSLOG_IDENTIFIER": [115, 115, 104, 100],
        });
        let m = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(accepts(&[], &entry));
        assert!(accepts(&m(&["_COMM=sshd"]), &entry));
        assert!(
            accepts(&m(&["_COMM=dropbear", "_COMM=sshd"]), &entry),
            "one field: either"
        );
        assert!(
            !accepts(&m(&["_COMM=sshd", "_SYSTEMD_UNIT=x.service"]), &entry),
            "two fields: both"
        );
        assert!(accepts(
            &m(&["_COMM=sshd", "_SYSTEMD_UNIT=ssh.service"]),
            &entry
        ));
        assert!(accepts(
            &m(&["_COMM=dropbear", "+", "_SYSTEMD_UNIT=ssh.service"]),
            &entry
        ));
        assert!(!accepts(
            &m(&["_COMM=dropbear", "+", "_COMM=slapd"]),
            &entry
        ));
        assert!(
            accepts(&m(&["_TRANSPORT=syslog"]), &entry),
            "a field set twice"
        );
        assert!(
            accepts(&m(&["SYSLOG_IDENTIFIER=sshd"]), &entry),
            "a field written as bytes"
        );
        assert!(!accepts(&m(&["_PID=1"]), &entry), "a field the entry lacks");
    }
}
