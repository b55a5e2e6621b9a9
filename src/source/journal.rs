//! The systemd journal as a log source: `journalctl --follow --output=json`, one child
//! process per rule that reads the journal.
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

/// Starts a journal thread for every rule that reads the journal (compiling again a rule
/// let go at the load, when it had nothing to read).
pub fn spawn_all<'a>(
    rules: impl Iterator<Item = &'a Rule>,
    cursors: &Cursors,
    ctx: &WatchContext,
) -> Vec<JoinHandle<()>> {
    rules
        .filter(|r| reads_journal(r))
        .filter_map(|rule| {
            let rule = if rule.is_compiled() {
                Arc::new(rule.clone())
            } else {
                let compiled = ctx.compile.as_ref().map_or_else(
                    || Err("no configuration to compile it from".to_string()),
                    |compile| compile(std::slice::from_ref(&rule.name)),
                );
                match compiled.map(|mut c| c.pop()) {
                    Ok(Some(rule)) => rule,
                    Ok(None) => return None,
                    Err(e) => {
                        log::error!(
                            "rule {}: cannot read the journal: it does not compile now: {e}",
                            rule.name
                        );
                        return None;
                    }
                }
            };
            let cursor = cursors.get(&*rule.name).cloned();
            let ctx = ctx.clone();
            log::info!(
                "following the journal for {} ({})",
                rule.name,
                describe(rule.journal.as_ref().expect("reads_journal checked"))
            );
            Some(
                std::thread::Builder::new()
                    .name(format!("journal {}", rule.name))
                    .spawn(move || supervise(&rule, cursor, &ctx))
                    .expect("spawning a thread"),
            )
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

fn command(spec: &JournalSpec, cursor: Option<&str>) -> Command {
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
    if let Some(file) = &spec.file {
        if file.is_dir() {
            c.arg(format!("--directory={}", file.display()));
        } else {
            c.arg(format!("--file={}", file.display()));
        }
    }
    // `--` ends the options: a match can never be taken for one.
    c.arg("--").args(&spec.matches);
    c
}

/// Kills the child when the thread ends, however it ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Follows the rule's journal until the watchers stop, starting `journalctl` again after
/// the last cursor whenever it ends.
fn supervise(rule: &Arc<Rule>, mut cursor: Option<String>, ctx: &WatchContext) {
    let counters = Arc::<SourceCounters>::default();
    let id = SourceId::Journal(rule.name.to_string());
    let rules = std::slice::from_ref(rule);
    let mut failures = 0;
    loop {
        ctx.report(id.clone(), SourceState::Following, None, rules, &counters);
        let why = match follow(rule, &mut cursor, ctx, &counters) {
            Ok(Ended::Stopped) => return,
            Ok(Ended::Exited) => "journalctl exited".to_string(),
            Err(e) => e.to_string(),
        };
        failures += 1;
        let wait = backoff(failures);
        log::error!(
            "rule {}: the journal is not followed: {why}; tried again in {}s",
            rule.name,
            wait.as_secs()
        );
        ctx.report(id.clone(), SourceState::Failed, Some(why), rules, &counters);
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
    rule: &Arc<Rule>,
    cursor: &mut Option<String>,
    ctx: &WatchContext,
    counters: &Arc<SourceCounters>,
) -> std::io::Result<Ended> {
    let spec = rule
        .journal
        .as_ref()
        .expect("spawned for journal rules only");
    let mut child = Reaper(
        command(spec, cursor.as_deref())
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
    let mut matcher = Matcher::new(
        Input::Journal,
        std::slice::from_ref(rule),
        ctx.events.clone(),
        Arc::clone(&ctx.metrics),
        Arc::clone(counters),
    )
    .map_err(std::io::Error::other)?;
    let mut ended = Ended::Exited;
    loop {
        // Entries read are added to the metrics when the pipe has nothing more queued,
        // so a burst costs one atomic add.
        if lines.is_empty() {
            matcher.count_lines();
        }
        select! {
            recv(lines) -> line => {
                let Ok(line) = line else { break };
                let line = line?;
                let Some(entry) = Entry::parse(&line) else {
                    matcher.unreadable();
                    log::debug!("rule {}: not a journal entry: {}", rule.name, String::from_utf8_lossy(&line));
                    continue;
                };
                // The process id joins a connection's entries (`session: pid`), as the
                // syslog tag's does in a file.
                let pid = (!entry.pid.is_empty()).then_some(entry.pid.as_bytes());
                matcher.entry(entry.message().as_bytes(), pid, entry.time());
                if let Some(c) = entry.cursor {
                    *cursor = Some(c.clone());
                    let _ = ctx.events.send(Event::Cursor { rule: rule.name.to_string(), cursor: c });
                }
            }
            recv(ctx.stop) -> _ => {
                ended = Ended::Stopped;
                break;
            }
        }
    }
    matcher.count_lines();
    drop(child);
    let _ = reader.join();
    Ok(ended)
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
    fn parse(json: &[u8]) -> Option<Entry> {
        let v: serde_json::Value = serde_json::from_slice(json).ok()?;
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
        let c = command(&spec, Some("s=1"));
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args.last().map(String::as_str), Some("_COMM=sshd"));
        assert!(
            args.contains(&"--".to_string()) && args.contains(&"--after-cursor=s=1".to_string())
        );
    }
}
