//! `pyfilter scan [--rule NAME] [--json] FILE...|-`: the whole pipeline over files, as a
//! dry run. Bans are decided on the lines' own times, so a scan of yesterday's log shows
//! what the daemon would have done yesterday. The firewall and the store are untouched.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local, SecondsFormat, Utc};
use serde::Serialize;

use super::UsageError;
use crate::cli::ScanArgs;
use crate::config::Settings;
use crate::counter::{Counters, Outcome};
use crate::lines::LineSplitter;
use crate::net::IgnoreList;
use crate::rule::Rule;

const READ_BLOCK: usize = 256 * 1024;

#[derive(Serialize)]
struct MatchJson<'a> {
    r#type: &'static str,
    file: &'a str,
    line: u64,
    rule: &'a str,
    ip: String,
    time: String,
    instant: bool,
}

#[derive(Serialize)]
struct BanJson<'a> {
    r#type: &'static str,
    rule: &'a str,
    ip: String,
    time: String,
    attempts: u32,
}

#[derive(Serialize)]
struct SummaryJson {
    r#type: &'static str,
    lines: u64,
    matched: u64,
    bans: u64,
}

/// The state of a scan across all its files.
struct Scan<'a, W: Write> {
    rules: Vec<&'a Rule>,
    ignore: &'a IgnoreList,
    counters: Counters,
    /// Event-time end of each address's ban: while banned, the daemon would not have
    /// seen (or counted) it.
    banned_until: HashMap<(Arc<str>, IpAddr), Option<DateTime<Utc>>>,
    json: bool,
    out: W,
    lines: u64,
    matched: u64,
    bans: u64,
    skipped: u64,
}

pub fn run(settings: &Settings, args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let rules: Vec<&Rule> = match &args.rule {
        Some(name) => vec![settings.rule(name).ok_or_else(|| {
            let known: Vec<&str> = settings.rules.iter().map(|r| &*r.name).collect();
            UsageError(format!(
                "--rule {name}: no such rule (known: {})",
                known.join(", ")
            ))
        })?],
        None => settings.enabled_rules().collect(),
    };
    if rules.is_empty() {
        return Err(UsageError("no rule is enabled; name one with --rule".into()).into());
    }
    let stdout = io::stdout().lock();
    let mut scan = Scan {
        rules,
        ignore: &settings.ignore,
        counters: Counters::new(settings.config.max_tracked),
        banned_until: HashMap::new(),
        json: args.json,
        out: io::BufWriter::with_capacity(64 * 1024, stdout),
        lines: 0,
        matched: 0,
        bans: 0,
        skipped: 0,
    };
    for file in &args.files {
        let result = if file.as_os_str() == "-" {
            scan.read(
                "-",
                io::stdin().lock(),
                Local::now(),
                settings.config.max_line_bytes,
            )
        } else {
            let f = std::fs::File::open(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            // The file's modification time stands for "now" when a line has no year.
            let reference = f
                .metadata()
                .and_then(|m| m.modified())
                .map(DateTime::<Local>::from)
                .unwrap_or_else(|_| Local::now());
            scan.read(
                &file.to_string_lossy(),
                f,
                reference,
                settings.config.max_line_bytes,
            )
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            other => other.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
        }
    }
    scan.summary()?;
    Ok(ExitCode::SUCCESS)
}

impl<W: Write> Scan<'_, W> {
    fn read(
        &mut self,
        name: &str,
        mut input: impl Read,
        reference: DateTime<Local>,
        max_line: usize,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; READ_BLOCK];
        let mut splitter = LineSplitter::new(max_line);
        let mut line_no = 0u64;
        let mut error = Ok(());
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            splitter.feed(&buf[..n], &mut |line| {
                line_no += 1;
                if error.is_ok() {
                    error = self.line(name, line_no, line, reference);
                }
            });
            error
                .as_ref()
                .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
        }
        splitter.finish(&mut |line| {
            line_no += 1;
            if error.is_ok() {
                error = self.line(name, line_no, line, reference);
            }
        });
        self.lines += line_no;
        if splitter.capped_lines > 0 {
            log::warn!(
                "{name}: {} lines longer than max_line_bytes were cut",
                splitter.capped_lines
            );
        }
        error
    }

    fn line(
        &mut self,
        file: &str,
        line_no: u64,
        line: &[u8],
        reference: DateTime<Local>,
    ) -> io::Result<()> {
        for i in 0..self.rules.len() {
            let rule = self.rules[i];
            let found = match rule.examine(line, reference) {
                None => continue,
                Some(Err(skip)) => {
                    self.skipped += 1;
                    log::info!("{file}:{line_no}: rule {}: skipped, {skip}", rule.name);
                    continue;
                }
                Some(Ok(found)) => found,
            };
            self.matched += 1;
            let ignored = self.ignore.covering(found.ip).is_some();
            if self.json {
                let m = MatchJson {
                    r#type: "match",
                    file,
                    line: line_no,
                    rule: &rule.name,
                    ip: found.ip.to_string(),
                    time: time(found.at),
                    instant: found.instant,
                };
                serde_json::to_writer(&mut self.out, &m)?;
                self.out.write_all(b"\n")?;
            } else {
                writeln!(
                    self.out,
                    "{file}:{line_no}: {} {} {}{}",
                    rule.name,
                    found.ip,
                    time(found.at),
                    if ignored { " (ignored)" } else { "" }
                )?;
            }
            if ignored {
                continue;
            }
            let key = (Arc::clone(&rule.name), found.ip);
            let at_utc = found.at.with_timezone(&Utc);
            if let Some(until) = self.banned_until.get(&key) {
                if until.is_none_or(|u| at_utc < u) {
                    continue;
                }
                self.banned_until.remove(&key);
            }
            if let Outcome::Ban(attempts) =
                self.counters
                    .record(&rule.name, found.ip, found.at, &rule.limits, found.instant)
            {
                self.bans += 1;
                self.banned_until
                    .insert(key, rule.limits.ban_time.expiry(at_utc));
                if self.json {
                    let b = BanJson {
                        r#type: "ban",
                        rule: &rule.name,
                        ip: found.ip.to_string(),
                        time: time(found.at),
                        attempts,
                    };
                    serde_json::to_writer(&mut self.out, &b)?;
                    self.out.write_all(b"\n")?;
                } else {
                    writeln!(
                        self.out,
                        "BAN {} rule {} at {} after {attempts} attempts",
                        found.ip,
                        rule.name,
                        time(found.at)
                    )?;
                }
            }
        }
        Ok(())
    }

    fn summary(&mut self) -> io::Result<()> {
        if self.json {
            let s = SummaryJson {
                r#type: "summary",
                lines: self.lines,
                matched: self.matched,
                bans: self.bans,
            };
            serde_json::to_writer(&mut self.out, &s)?;
            self.out.write_all(b"\n")?;
        } else {
            writeln!(
                self.out,
                "{} lines, {} matched, {} bans, {} skipped",
                self.lines, self.matched, self.bans, self.skipped
            )?;
        }
        if self.json && self.skipped > 0 {
            eprintln!(
                "pyfilter: {} matching lines skipped (unreadable time or address; -v shows them)",
                self.skipped
            );
        }
        self.out.flush()
    }
}

fn time(at: DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}
