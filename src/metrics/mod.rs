//! Prometheus metrics: the daemon's own counters, the rows their snapshot is saved as,
//! and the text exposition (format 0.0.4) served by `pyfilter run --metrics ADDR` and by
//! the admin.
//!
//! `Metrics` is shared by `Arc` between the threads that count: the watcher threads (lines
//! read, lines skipped and attempts found, per rule), the sync thread (events from the
//! fleet and how late they arrive) and the decision thread (bans made, reconciles). Each
//! number is an atomic with one writer in practice, updated with `Relaxed` ordering: a
//! scrape needs no consistency between numbers, and the hot path pays no more than an
//! uncontended add per batch of lines.
//!
//! The figures about bans come from the store instead (`BanStore::summary`), so they are
//! the same whichever process asks; the caller hands them in (a `Summary`, or for the
//! daemon's endpoint a closure that yields one), so this module never opens a store. The
//! admin (`pyfilter admin`, another process) cannot see the daemon's atomics: the decision
//! thread saves a snapshot of them (`to_rows`) in the local SQLite file (`daemon_stats`)
//! at start, at most every `SAVE_EVERY` while there is activity, and at stop;
//! `render_saved` renders the rows the admin read back beside the store's figures.
//!
//! A saved row's name is the sample as exposed, without the `pyfilter_` prefix:
//! `attempts_total{rule="sshd"}`. Reading it back checks it against the families this
//! program knows, so a row from another version (or a tampered file) is dropped rather
//! than sent to Prometheus malformed.

mod family;
mod serve;
mod text;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::status::SourceState;

pub use family::*;
pub use serve::serve;
pub use text::*;

/// How often, at most, the decision thread saves the snapshot while counters move.
pub const SAVE_EVERY: Duration = Duration::from_secs(10);

/// One rule's counters. A watcher thread takes its rules' handles once, at start, and
/// then counts without any lock.
#[derive(Debug, Default)]
pub struct RuleStats {
    pub attempts: AtomicU64,
    pub skipped: AtomicU64,
}

/// The daemon's counters.
#[derive(Debug)]
pub struct Metrics {
    lines_read: AtomicU64,
    lines_cut: AtomicU64,
    /// Sources in each state (`SourceState::ALL` order), set by the decision thread.
    sources: [AtomicU64; 4],
    bans: AtomicU64,
    remote_events: AtomicU64,
    /// Milliseconds; `i64::MIN` until the first event with a time.
    sync_lag_ms: AtomicI64,
    sync_lag_max_ms: AtomicI64,
    /// Unix seconds; 0 until the first reconcile.
    last_reconcile: AtomicI64,
    reconcile_banned: AtomicU64,
    reconcile_unbanned: AtomicU64,
    started: i64,
    /// Written when a watcher starts (a rule may appear at a reload), read by scrapes.
    rules: RwLock<BTreeMap<String, Arc<RuleStats>>>,
    /// (receiver, result) → count, written by the notification threads.
    notifications: RwLock<BTreeMap<(String, &'static str), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Utc::now())
    }
}

impl Metrics {
    pub fn new(started: DateTime<Utc>) -> Metrics {
        Metrics {
            lines_read: AtomicU64::new(0),
            lines_cut: AtomicU64::new(0),
            sources: Default::default(),
            bans: AtomicU64::new(0),
            remote_events: AtomicU64::new(0),
            sync_lag_ms: AtomicI64::new(i64::MIN),
            sync_lag_max_ms: AtomicI64::new(i64::MIN),
            last_reconcile: AtomicI64::new(0),
            reconcile_banned: AtomicU64::new(0),
            reconcile_unbanned: AtomicU64::new(0),
            started: started.timestamp(),
            rules: RwLock::new(BTreeMap::new()),
            notifications: RwLock::new(BTreeMap::new()),
        }
    }

    /// The counters of one rule, created at first use.
    pub fn rule(&self, name: &str) -> Arc<RuleStats> {
        // A panic elsewhere while holding the lock leaves the map itself intact.
        if let Some(s) = self
            .rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Arc::clone(s);
        }
        let mut rules = self.rules.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(rules.entry(name.to_string()).or_default())
    }

    /// Adds a batch of lines read.
    pub fn lines_read(&self, n: u64) {
        if n > 0 {
            self.lines_read.fetch_add(n, Relaxed);
        }
    }

    /// Lines longer than `max_line_bytes` were read (and not matched).
    pub fn lines_cut(&self, n: u64) {
        self.lines_cut.fetch_add(n, Relaxed);
    }

    /// How many sources are in each state now.
    pub fn sources(&self, by_state: [(SourceState, usize); 4]) {
        for (slot, (_, n)) in self.sources.iter().zip(by_state) {
            slot.store(n as u64, Relaxed);
        }
    }

    /// A ban decided by this daemon was recorded.
    pub fn banned(&self) {
        self.bans.fetch_add(1, Relaxed);
    }

    /// An event from another server arrived; `sent` is the time its server wrote on it.
    pub fn remote_event(&self, sent: Option<DateTime<Utc>>, received: DateTime<Utc>) {
        self.remote_events.fetch_add(1, Relaxed);
        if let Some(sent) = sent {
            let lag = (received - sent).num_milliseconds();
            self.sync_lag_ms.store(lag, Relaxed);
            self.sync_lag_max_ms.fetch_max(lag, Relaxed);
        }
    }

    /// A reconcile with the shared store ended at `at`, applying these bans and unbans.
    pub fn reconciled(&self, at: DateTime<Utc>, banned: usize, unbanned: usize) {
        self.reconcile_banned.store(banned as u64, Relaxed);
        self.reconcile_unbanned.store(unbanned as u64, Relaxed);
        self.last_reconcile.store(at.timestamp(), Relaxed);
    }

    /// A notification to `notifier` ended with `result` (`notifier::Outcome`).
    pub fn notified(&self, notifier: &str, result: &'static str) {
        *self
            .notifications
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((notifier.to_string(), result))
            .or_default() += 1;
    }

    /// How many notifications to `notifier` ended with `result`.
    pub fn notifications(&self, notifier: &str, result: &str) -> u64 {
        self.notifications
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|((n, r), _)| n == notifier && *r == result)
            .map_or(0, |(_, count)| *count)
    }

    /// The counters now. A number not known yet (no sync event, no reconcile) is left
    /// out rather than shown as a misleading 0.
    pub fn snapshot(&self) -> Vec<Sample> {
        let mut out = vec![
            Sample::new(&DAEMON_BANS, &[], self.bans.load(Relaxed) as f64),
            Sample::new(&LINES_READ, &[], self.lines_read.load(Relaxed) as f64),
            Sample::new(&LINES_CUT, &[], self.lines_cut.load(Relaxed) as f64),
            Sample::new(&REMOTE_EVENTS, &[], self.remote_events.load(Relaxed) as f64),
            Sample::new(&START_TIME, &[], self.started as f64),
        ];
        for (name, stats) in self
            .rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            out.push(Sample::new(
                &ATTEMPTS,
                &[name],
                stats.attempts.load(Relaxed) as f64,
            ));
            out.push(Sample::new(
                &LINES_SKIPPED,
                &[name],
                stats.skipped.load(Relaxed) as f64,
            ));
        }
        for (state, n) in SourceState::ALL.iter().zip(&self.sources) {
            out.push(Sample::new(
                &SOURCES,
                &[state.as_str()],
                n.load(Relaxed) as f64,
            ));
        }
        for ((notifier, result), count) in self
            .notifications
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            out.push(Sample::new(
                &NOTIFICATIONS,
                &[notifier, result],
                *count as f64,
            ));
        }
        let lag = self.sync_lag_ms.load(Relaxed);
        if lag != i64::MIN {
            out.push(Sample::new(&SYNC_LAG, &[], lag as f64 / 1000.0));
            let max = self.sync_lag_max_ms.load(Relaxed);
            out.push(Sample::new(&SYNC_LAG_MAX, &[], max as f64 / 1000.0));
        }
        let reconciled = self.last_reconcile.load(Relaxed);
        if reconciled != 0 {
            out.push(Sample::new(&LAST_RECONCILE, &[], reconciled as f64));
            let changes = [
                ("ban", &self.reconcile_banned),
                ("unban", &self.reconcile_unbanned),
            ];
            for (change, n) in changes {
                out.push(Sample::new(
                    &LAST_RECONCILE_CHANGES,
                    &[change],
                    n.load(Relaxed) as f64,
                ));
            }
        }
        out
    }
}

/// The rows saved in `daemon_stats` for a snapshot.
pub fn to_rows(samples: &[Sample]) -> Vec<(String, f64)> {
    samples.iter().map(|s| (s.key(), s.value)).collect()
}

/// The samples of saved rows; rows this program does not know are dropped.
pub fn from_rows<'a>(rows: impl IntoIterator<Item = (&'a str, f64)>) -> Vec<Sample> {
    rows.into_iter()
        .filter_map(|(key, value)| {
            let sample = Sample::from_key(key, value);
            if sample.is_none() {
                log::debug!("daemon_stats: row {key:?} not understood; left out");
            }
            sample
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::{Ban, NewBan, Origin, Summary};

    #[test]
    fn label_values_escape_backslash_quote_and_line_feed() {
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), r"x\ny");
        let s = Sample::new(&ATTEMPTS, &["we\"ird\\\nrule"], 1.0);
        assert_eq!(s.key(), r#"attempts_total{rule="we\"ird\\\nrule"}"#);
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(-1.5), "-1.5");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn keys_round_trip_and_foreign_ones_are_dropped() {
        for s in [
            Sample::new(&ATTEMPTS, &["a\"b\\c\nd,}e"], 7.0),
            Sample::new(&LINES_READ, &[], 3.0),
            Sample::new(&LAST_RECONCILE_CHANGES, &["unban"], 2.0),
        ] {
            assert_eq!(Sample::from_key(&s.key(), s.value), Some(s.clone()));
        }
        for bad in [
            "nope_total",
            "bans_total{rule=\"a\",server=\"b\"}", // the store's, never saved
            "attempts_total",
            "attempts_total{}",
            "attempts_total{server=\"a\"}",
            "attempts_total{rule=\"a\",rule=\"b\"}",
            "attempts_total{rule=\"a\"} 1",
            "attempts_total{rule=\"a\"",
            "attempts_total{rule=a}",
            "attempts_total{rule=\"a\\x\"}",
            "attempts_total{rule=\"a\nb\"}",
            "lines_read_total{x=\"1\"}",
        ] {
            assert_eq!(Sample::from_key(bad, 1.0), None, "{bad}");
        }
    }

    fn known_state() -> (Metrics, Summary) {
        let started = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let m = Metrics::new(started);
        m.lines_read(120);
        m.lines_read(0);
        m.lines_cut(2);
        m.sources([
            (SourceState::Following, 1),
            (SourceState::Polling, 2),
            (SourceState::Absent, 3),
            (SourceState::Failed, 0),
        ]);
        m.rule("sshd").attempts.fetch_add(6, Relaxed);
        m.rule("sshd").skipped.fetch_add(1, Relaxed);
        m.rule("nginx-auth").attempts.fetch_add(2, Relaxed);
        m.banned();
        let sent = started + chrono::Duration::seconds(10);
        m.remote_event(Some(sent), sent + chrono::Duration::milliseconds(1500));
        m.remote_event(Some(sent), sent + chrono::Duration::milliseconds(250));
        m.remote_event(None, sent);
        m.reconciled(started + chrono::Duration::seconds(60), 3, 1);
        let ban = |rule: &str, server: &str, lifted: bool| Ban {
            id: 1,
            new: NewBan {
                net: "192.0.2.1/32".parse().unwrap(),
                rule: rule.into(),
                reason: String::new(),
                attempts: 5,
                server: server.into(),
                source: Origin::Log,
                banned_at: started,
                expires_at: None,
            },
            lifted_at: lifted.then_some(started),
            lift_reason: None,
        };
        let summary = Summary::of(
            &[
                ban("sshd", "web-1", true),
                ban("sshd", "web-1", false),
                ban("manual", "we\"b-2", false),
            ],
            started,
        );
        (m, summary)
    }

    const EXPECTED: &str = r#"# HELP pyfilter_build_info Always 1; the version of the pyfilter that answers.
# TYPE pyfilter_build_info gauge
pyfilter_build_info{version="VERSION"} 1
# HELP pyfilter_store_up 1 when the ban store answered this scrape; 0 when it did not, and the ban figures are missing.
# TYPE pyfilter_store_up gauge
pyfilter_store_up 1
# HELP pyfilter_bans_total Bans in the store's history, by rule and server. Only the history kept within history_retention is counted, so this can go down when old bans are pruned.
# TYPE pyfilter_bans_total counter
pyfilter_bans_total{rule="manual",server="we\"b-2"} 1
pyfilter_bans_total{rule="sshd",server="web-1"} 2
# HELP pyfilter_active_bans Bans in force now, in the store.
# TYPE pyfilter_active_bans gauge
pyfilter_active_bans 2
# HELP pyfilter_daemon_bans_total Bans this daemon decided from its logs since it started.
# TYPE pyfilter_daemon_bans_total counter
pyfilter_daemon_bans_total 1
# HELP pyfilter_attempts_total Failed attempts found in the logs since the daemon started, by rule (ignored addresses included).
# TYPE pyfilter_attempts_total counter
pyfilter_attempts_total{rule="nginx-auth"} 2
pyfilter_attempts_total{rule="sshd"} 6
# HELP pyfilter_lines_read_total Log lines and journal entries read since the daemon started.
# TYPE pyfilter_lines_read_total counter
pyfilter_lines_read_total 120
# HELP pyfilter_lines_skipped_total Lines a rule matched but could not use (no valid address, unreadable time, not a journal entry), by rule.
# TYPE pyfilter_lines_skipped_total counter
pyfilter_lines_skipped_total{rule="nginx-auth"} 0
pyfilter_lines_skipped_total{rule="sshd"} 1
# HELP pyfilter_lines_cut_total Lines longer than max_line_bytes, read and never matched (cut, a line loses the end that keeps an attacker from choosing the address).
# TYPE pyfilter_lines_cut_total counter
pyfilter_lines_cut_total 2
# HELP pyfilter_sources Log sources (files and journals) by state: following (inotify), polling (inotify cannot serve them), absent (followed when they appear), failed (tried again).
# TYPE pyfilter_sources gauge
pyfilter_sources{state="absent"} 3
pyfilter_sources{state="failed"} 0
pyfilter_sources{state="following"} 1
pyfilter_sources{state="polling"} 2
# HELP pyfilter_remote_events_total Bans and unbans received from the other servers of the fleet since the daemon started.
# TYPE pyfilter_remote_events_total counter
pyfilter_remote_events_total 3
# HELP pyfilter_sync_lag_seconds Seconds between another server's ban or unban and its arrival here, for the latest event (whole-second event times; negative when clocks disagree).
# TYPE pyfilter_sync_lag_seconds gauge
pyfilter_sync_lag_seconds 0.25
# HELP pyfilter_sync_lag_max_seconds The largest sync_lag_seconds since the daemon started.
# TYPE pyfilter_sync_lag_max_seconds gauge
pyfilter_sync_lag_max_seconds 1.5
# HELP pyfilter_last_reconcile_timestamp_seconds Unix time of the daemon's last reconcile of its firewall with the shared store.
# TYPE pyfilter_last_reconcile_timestamp_seconds gauge
pyfilter_last_reconcile_timestamp_seconds 1800000060
# HELP pyfilter_last_reconcile_changes Bans and unbans the last reconcile applied to the firewall.
# TYPE pyfilter_last_reconcile_changes gauge
pyfilter_last_reconcile_changes{change="ban"} 3
pyfilter_last_reconcile_changes{change="unban"} 1
# HELP pyfilter_start_time_seconds Unix time the daemon started: its counters count from then.
# TYPE pyfilter_start_time_seconds gauge
pyfilter_start_time_seconds 1800000000
"#;

    #[test]
    fn a_known_state_renders_to_the_expected_exposition() {
        let (m, summary) = known_state();
        let mut out = String::new();
        render(&mut out, &m.snapshot(), Some(&summary));
        assert_eq!(out, EXPECTED.replace("VERSION", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn an_unreachable_store_leaves_the_daemon_counters_and_says_store_up_0() {
        let (m, _) = known_state();
        let mut out = String::new();
        render(&mut out, &m.snapshot(), None);
        assert!(out.contains("\npyfilter_store_up 0\n"), "{out}");
        assert!(!out.contains("pyfilter_bans_total"), "{out}");
        assert!(!out.contains("pyfilter_active_bans"), "{out}");
        assert!(out.contains("\npyfilter_lines_read_total 120\n"), "{out}");
    }

    #[test]
    fn numbers_not_known_yet_are_left_out() {
        let m = Metrics::new(Utc::now());
        let mut out = String::new();
        render(&mut out, &m.snapshot(), None);
        for absent in ["sync_lag", "last_reconcile", "attempts_total"] {
            assert!(!out.contains(absent), "{absent}: {out}");
        }
        assert!(out.contains("\npyfilter_lines_read_total 0\n"), "{out}");
    }

    #[test]
    fn a_saved_snapshot_renders_like_the_live_counters() {
        let (m, _) = known_state();
        let saved_at = DateTime::from_timestamp(1_800_000_120, 0).unwrap();
        let mut rows: Vec<(String, f64, DateTime<Utc>)> = to_rows(&m.snapshot())
            .into_iter()
            .map(|(name, value)| (name, value, saved_at))
            .collect();
        rows.push(("written_by_a_newer_pyfilter".into(), 1.0, saved_at));
        let summary = Summary::of(&[], saved_at);
        let mut saved = String::new();
        render_saved(&mut saved, &rows, Some(&summary));
        let mut live = String::new();
        render(&mut live, &m.snapshot(), Some(&summary));
        let (head, tail) = saved
            .split_once("# HELP pyfilter_daemon_stats_timestamp_seconds")
            .unwrap();
        assert_eq!(head, live);
        assert_eq!(
            tail.lines().last(),
            Some("pyfilter_daemon_stats_timestamp_seconds 1800000120")
        );
        assert!(!saved.contains("newer"), "{saved}");
    }

    #[test]
    fn every_family_has_one_place_in_the_order() {
        for f in DAEMON_FAMILIES {
            assert_eq!(
                FAMILIES.iter().filter(|g| **g == f).count(),
                1,
                "{}",
                f.name
            );
        }
        for (i, f) in FAMILIES.iter().enumerate() {
            assert!(!FAMILIES[i + 1..].contains(f), "{} twice", f.name);
        }
    }
}
