//! `pyfilter scan [--rule NAME] [--json] FILE...|-`: the whole pipeline over files, as a
//! dry run. Bans are decided on the lines' own times, so a scan of yesterday's log shows
//! what the daemon would have done yesterday. The firewall and the store are untouched.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local, SecondsFormat, Utc};

use crate::cli::ScanArgs;
use crate::cli::UsageError;
use crate::cmd::progress::{self, Progress, Unit};
use crate::engine::counter::{Counters, Outcome};
use crate::net::{IgnoreList, aggregate, display_net};
use crate::rule::{Automaton, Rule};
use crate::settings::Settings;
use crate::source::batch::{self, LineMatch};

/// The state of a scan across all its files.
struct Scan<'a, W: Write> {
    automaton: Automaton,
    ignore: &'a IgnoreList,
    ipv6_prefix: u8,
    counters: Counters,
    /// Event-time end of each address's ban: while banned, the daemon would not have
    /// seen (or counted) it.
    banned_until: HashMap<(Arc<str>, IpAddr), Option<DateTime<Utc>>>,
    json: bool,
    out: W,
    /// The current file's name as a JSON string.
    file_json: String,
    times: TimeText,
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
    let automaton = Automaton::new(rules.into_iter().map(|r| Arc::new(r.clone())).collect())?;
    let mut scan = Scan {
        automaton,
        ignore: &settings.ignore,
        ipv6_prefix: settings.config.ipv6_prefix,
        counters: Counters::new(settings.config.max_tracked),
        banned_until: HashMap::new(),
        json: args.json,
        out: io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
        file_json: String::new(),
        times: TimeText::default(),
        lines: 0,
        matched: 0,
        bans: 0,
        skipped: 0,
    };
    let max_line = settings.config.max_line_bytes;
    for file in &args.files {
        let result = if file.as_os_str() == "-" {
            let shown = progress::wanted(args.json);
            let input = Progress::new("scan -", Unit::Bytes, None, shown).reader(io::stdin());
            scan.read("-", input, Local::now(), max_line)
        } else {
            let f = std::fs::File::open(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            // The file's modification time stands for "now" when a line has no year.
            let reference = f
                .metadata()
                .and_then(|m| m.modified())
                .map(DateTime::<Local>::from)
                .unwrap_or_else(|_| Local::now());
            let name = file.to_string_lossy();
            let size = f.metadata().map(|m| m.len()).ok();
            let shown = progress::wanted(args.json);
            let f = Progress::new(format!("scan {name}"), Unit::Bytes, size, shown).reader(f);
            scan.read(&name, f, reference, max_line)
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
        input: impl Read + Send,
        reference: DateTime<Local>,
        max_line: usize,
    ) -> io::Result<()> {
        self.file_json = json_str(name);
        let automaton = self.automaton.clone();
        let totals = batch::match_stream(input, &automaton, reference, max_line, |m| {
            self.found(name, m)
        })?;
        self.lines += totals.lines;
        if totals.capped > 0 {
            log::warn!(
                "{name}: {} longer than max_line_bytes not matched (cut, a line could name any address)",
                crate::words::count(totals.capped, "line", "lines")
            );
        }
        Ok(())
    }

    /// Reports one match and counts it, in line order.
    fn found(&mut self, file: &str, m: LineMatch) -> io::Result<()> {
        let rule = Arc::clone(&self.automaton.rules()[m.rule]);
        let line_no = m.line;
        let found = match m.result {
            Err(skip) => {
                self.skipped += 1;
                log::info!("{file}:{line_no}: rule {}: skipped, {skip}", rule.name);
                return Ok(());
            }
            Ok(found) => found,
        };
        self.matched += 1;
        let ignored = self.ignore.covering(found.ip).is_some();
        let time = self.times.format(found.at);
        if self.json {
            // Written by hand: this is the hot path of a large scan. Rule names are
            // plain words and the file name is escaped once per file.
            // `ignored` only when true: the other matches keep the contract's exact shape.
            writeln!(
                self.out,
                r#"{{"type":"match","file":{},"line":{line_no},"rule":"{}","ip":"{}","time":"{time}","instant":{}{}}}"#,
                self.file_json,
                rule.name,
                found.ip,
                found.instant,
                if ignored { r#","ignored":true"# } else { "" }
            )?;
        } else {
            let note = if ignored { " (ignored)" } else { "" };
            writeln!(
                self.out,
                "{file}:{line_no}: {} {} {time}{note}",
                rule.name, found.ip
            )?;
        }
        if ignored {
            return Ok(());
        }
        // The same aggregation as the daemon: with ipv6_prefix, a prefix is one attacker.
        let target = aggregate(found.ip, self.ipv6_prefix);
        let key = (Arc::clone(&rule.name), target.addr());
        let at_utc = found.at.with_timezone(&Utc);
        if let Some(until) = self.banned_until.get(&key) {
            if until.is_none_or(|u| at_utc < u) {
                return Ok(());
            }
            self.banned_until.remove(&key);
        }
        let outcome = self.counters.record(
            &rule.name,
            target.addr(),
            found.at,
            &rule.limits,
            found.instant,
        );
        if let Outcome::Ban(attempts) = outcome {
            self.bans += 1;
            self.banned_until
                .insert(key, rule.limits.ban_time.expiry(at_utc));
            if self.json {
                writeln!(
                    self.out,
                    r#"{{"type":"ban","rule":"{}","ip":"{}","time":"{time}","attempts":{attempts}}}"#,
                    rule.name,
                    display_net(&target)
                )?;
            } else {
                writeln!(
                    self.out,
                    "BAN {} rule {} at {time} after {}",
                    display_net(&target),
                    rule.name,
                    crate::words::counted(attempts, "attempt")
                )?;
            }
        }
        Ok(())
    }

    fn summary(&mut self) -> io::Result<()> {
        if self.json {
            writeln!(
                self.out,
                r#"{{"type":"summary","lines":{},"matched":{},"bans":{}}}"#,
                self.lines, self.matched, self.bans
            )?;
        } else {
            writeln!(
                self.out,
                "{}, {} matched, {}, {} skipped",
                crate::words::counted(self.lines, "line"),
                self.matched,
                crate::words::counted(self.bans, "ban"),
                self.skipped
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

fn json_str(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// RFC 3339 text of the last time formatted: consecutive matches mostly share a second.
#[derive(Default)]
struct TimeText {
    last: Option<DateTime<FixedOffset>>,
    text: String,
}

impl TimeText {
    fn format(&mut self, at: DateTime<FixedOffset>) -> String {
        // Equal instants in different offsets compare equal but print differently.
        if self
            .last
            .is_none_or(|l| l != at || l.offset() != at.offset())
        {
            self.text = at.to_rfc3339_opts(SecondsFormat::Secs, false);
            self.last = Some(at);
        }
        self.text.clone()
    }
}
