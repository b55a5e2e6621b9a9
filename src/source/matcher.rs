//! The path of one line: the rules reading a source examine it, all at once (one
//! automaton, `rule::Automaton`), and what they find goes to the decision thread as
//! `Attempt`s. Log files and the journal share it, so a line means the same, and is counted
//! the same, wherever it was read.
//!
//! A line that matches but cannot be used (no valid address, no readable time) is skipped
//! and counted; a source's first skip is logged as a warning, since it usually means a
//! rule does not fit its log, and the rest at debug level, so a flood of them cannot fill
//! the log.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use chrono::{DateTime, FixedOffset, Local};

use crate::event::{Attempt, Event, EventSender};
use crate::metrics::{Metrics, RuleStats};
use crate::rule::{Automaton, Found, Rule, RuleError, Scratch, Skip};
use crate::status::SourceCounters;

/// What a matcher reads, as its messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A log file: messages start with its path and speak of lines.
    File(PathBuf),
    /// The systemd journal: messages speak of journal entries.
    Journal,
}

/// Matches the lines of one source against the rules reading it and sends the attempts
/// found. Owned by the source's thread.
pub struct Matcher {
    input: Input,
    automaton: Automaton,
    scratch: Scratch,
    /// Each rule's counters, beside the automaton's rules: taken once, so counting needs
    /// no lock.
    stats: Vec<Arc<RuleStats>>,
    events: EventSender,
    metrics: Arc<Metrics>,
    /// The source's own counts, which `status` shows.
    counters: Arc<SourceCounters>,
    /// Lines skipped so far by any rule: the first is the loud one.
    skipped: u64,
    /// Lines read since they were last added to the metrics: one atomic add per read,
    /// not per line.
    lines: u64,
}

impl Matcher {
    pub fn new(
        input: Input,
        rules: &[Arc<Rule>],
        events: EventSender,
        metrics: Arc<Metrics>,
        counters: Arc<SourceCounters>,
    ) -> Result<Matcher, RuleError> {
        let automaton = Automaton::new(rules.to_vec())?;
        Ok(Matcher {
            input,
            scratch: automaton.scratch(),
            automaton,
            stats: rules.iter().map(|r| metrics.rule(&r.name)).collect(),
            events,
            metrics,
            counters,
            skipped: 0,
            lines: 0,
        })
    }

    /// Examines one line with every rule and sends each attempt found.
    pub fn line(&mut self, line: &[u8]) {
        self.lines += 1;
        let mut found = Vec::new();
        self.automaton
            .examine(line, Local::now(), &mut self.scratch, |r, f| {
                found.push((r, f))
            });
        self.send(found, line);
    }

    /// Examines one journal entry's message, written at `at` by process `pid` (the
    /// session of `session: pid` patterns).
    pub fn entry(&mut self, message: &[u8], pid: Option<&[u8]>, at: DateTime<FixedOffset>) {
        self.lines += 1;
        let mut found = Vec::new();
        self.automaton
            .examine_entry(message, pid, at, &mut self.scratch, |r, f| {
                found.push((r, f))
            });
        self.send(found, message);
    }

    fn send(&mut self, found: Vec<(usize, Result<Found, Skip>)>, line: &[u8]) {
        for (r, result) in found {
            let rule = &self.automaton.rules()[r];
            let stats = &self.stats[r];
            match result {
                Ok(found) => {
                    stats.attempts.fetch_add(1, Relaxed);
                    self.counters.matches.fetch_add(1, Relaxed);
                    let attempt = Attempt {
                        rule: Arc::clone(&rule.name),
                        ip: found.ip,
                        at: found.at,
                        instant: found.instant,
                        line: String::from_utf8_lossy(line).into_owned(),
                    };
                    // Blocks when the decision thread is behind: back-pressure, not memory.
                    let _ = self.events.send(Event::Attempt(attempt));
                }
                Err(skip) => {
                    stats.skipped.fetch_add(1, Relaxed);
                    self.skipped += 1;
                    log_skip(&self.input, self.skipped, rule, skip, line);
                }
            }
        }
    }

    /// A line read that is not one the rules can examine (a journal entry that is not
    /// JSON): counted as read, and as skipped by every rule. The caller says why.
    pub fn unreadable(&mut self) {
        self.lines += 1;
        for stats in &self.stats {
            stats.skipped.fetch_add(1, Relaxed);
        }
    }

    /// Adds the lines read since the last call to the metrics.
    pub fn count_lines(&mut self) {
        let n = std::mem::take(&mut self.lines);
        self.metrics.lines_read(n);
        self.counters.read(n);
    }
}

/// Logs a skipped line: a source's first one loudly, the rest at debug level.
fn log_skip(input: &Input, count: u64, rule: &Rule, skip: Skip, line: &[u8]) {
    let level = if count == 1 {
        log::Level::Warn
    } else {
        log::Level::Debug
    };
    let line = String::from_utf8_lossy(line);
    match input {
        Input::File(path) => log::log!(
            level,
            "{}: rule {}: line skipped, {skip}: {line}",
            path.display(),
            rule.name,
        ),
        Input::Journal => log::log!(
            level,
            "rule {}: journal entry skipped, {skip}: {line}",
            rule.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::duration::BanTime;
    use crate::event::EventReceiver;
    use crate::metrics::LINES_READ;
    use crate::rule::{Limits, Origin, RuleFile};

    fn rule(yaml: &str) -> Arc<Rule> {
        let file: RuleFile = serde_yaml::from_str(yaml).expect("a valid rule file");
        let limits = Limits {
            failed_attempts: NonZeroU32::new(3).expect("not zero"),
            request_time: Duration::from_secs(600),
            ban_time: BanTime::Forever,
        };
        Arc::new(Rule::compile(file, Origin::Embedded("test.yml"), limits, None).expect("compiles"))
    }

    /// A rule reading `<time> failed from <IP>`, with an instant pattern `<time> evil <IP>`.
    fn failed() -> Arc<Rule> {
        rule(
            "name: failed\npatterns:\n  - '(?P<time>\\S+) failed from <IP>$'\n  - { regex: '(?P<time>\\S+) evil <IP>$', instant: true }\n",
        )
    }

    fn matcher(rules: &[Arc<Rule>]) -> (Matcher, EventReceiver, Arc<Metrics>) {
        let (tx, rx) = crate::event::queue(1 << 16);
        let metrics = Arc::new(Metrics::default());
        let m = Matcher::new(
            Input::File("/var/log/test.log".into()),
            rules,
            tx,
            Arc::clone(&metrics),
            Arc::default(),
        )
        .expect("the rules combine");
        (m, rx, metrics)
    }

    fn attempts(rx: &EventReceiver) -> Vec<Attempt> {
        rx.try_iter()
            .map(|e| match e {
                Event::Attempt(a) => a,
                other => panic!("not an attempt: {other:?}"),
            })
            .collect()
    }

    /// Lines read, as the metrics hold them.
    fn lines_read(metrics: &Metrics) -> f64 {
        metrics
            .snapshot()
            .iter()
            .find(|s| std::ptr::eq(s.family, &LINES_READ))
            .map_or(0.0, |s| s.value)
    }

    #[test]
    fn a_matching_line_becomes_an_attempt_with_its_rule_address_time_and_text() {
        let (mut m, rx, _) = matcher(&[failed()]);
        m.line(b"2024-07-20T14:42:11+00:00 failed from 192.0.2.1");
        m.line(b"2024-07-20T14:42:12+00:00 evil 2001:db8::7");
        m.line(b"2024-07-20T14:42:13+00:00 all is well");
        let found = attempts(&rx);
        assert_eq!(found.len(), 2);
        assert_eq!(&*found[0].rule, "failed");
        assert_eq!(
            found[0].ip,
            "192.0.2.1".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(found[0].at.to_rfc3339(), "2024-07-20T14:42:11+00:00");
        assert!(!found[0].instant);
        assert_eq!(
            found[0].line,
            "2024-07-20T14:42:11+00:00 failed from 192.0.2.1"
        );
        assert!(found[1].instant, "an instant pattern says so");
    }

    #[test]
    fn every_rule_reading_the_source_examines_every_line() {
        let other = rule("name: other\npatterns: ['(?P<time>\\S+) .* from <IP>$']\n");
        let (mut m, rx, _) = matcher(&[failed(), other]);
        m.line(b"2024-07-20T14:42:11+00:00 failed from 192.0.2.1");
        let rules: Vec<String> = attempts(&rx).iter().map(|a| a.rule.to_string()).collect();
        assert_eq!(rules, ["failed", "other"]);
    }

    #[test]
    fn a_matching_line_without_a_readable_time_is_skipped_and_counted() {
        let (mut m, rx, metrics) = matcher(&[failed()]);
        m.line(b"yesterday failed from 192.0.2.1");
        m.line(b"tomorrow failed from 192.0.2.1");
        m.line(b"2024-07-20T14:42:11+00:00 failed from 192.0.2.1");
        assert_eq!(attempts(&rx).len(), 1);
        let stats = metrics.rule("failed");
        assert_eq!(stats.skipped.load(Relaxed), 2);
        assert_eq!(stats.attempts.load(Relaxed), 1);
    }

    #[test]
    fn lines_read_reach_the_metrics_when_counted_unreadable_ones_included() {
        let (mut m, _rx, metrics) = matcher(&[failed()]);
        m.line(b"one");
        m.line(b"two");
        m.unreadable();
        assert_eq!(lines_read(&metrics), 0.0, "not counted yet");
        m.count_lines();
        m.count_lines();
        assert_eq!(lines_read(&metrics), 3.0);
        assert_eq!(metrics.rule("failed").skipped.load(Relaxed), 1);
    }
}
