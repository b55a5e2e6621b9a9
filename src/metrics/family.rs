//! What is exposed: the metric families (name, kind, help, labels), the order they are
//! written in, and a sample of one with its label values.

use super::text::{parse_labels, write_labels};

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A metric family: its name without the `pyfilter_` prefix, kind, help and label names.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        kind,
        help,
        labels,
    }
}

pub static BUILD_INFO: Family = family(
    "build_info",
    Kind::Gauge,
    "Always 1; the version of the pyfilter that answers.",
    &["version"],
);
pub static STORE_UP: Family = family(
    "store_up",
    Kind::Gauge,
    "1 when the ban store answered this scrape; 0 when it did not, and the ban figures are missing.",
    &[],
);
pub static BANS: Family = family(
    "bans_total",
    Kind::Counter,
    "Bans in the store's history, by rule and server. Only the history kept within history_retention is counted, so this can go down when old bans are pruned.",
    &["rule", "server"],
);
pub static ACTIVE_BANS: Family = family(
    "active_bans",
    Kind::Gauge,
    "Bans in force now, in the store.",
    &[],
);
pub static DAEMON_BANS: Family = family(
    "daemon_bans_total",
    Kind::Counter,
    "Bans this daemon decided from its logs since it started.",
    &[],
);
pub static ATTEMPTS: Family = family(
    "attempts_total",
    Kind::Counter,
    "Failed attempts found in the logs since the daemon started, by rule (ignored addresses included).",
    &["rule"],
);
pub static LINES_READ: Family = family(
    "lines_read_total",
    Kind::Counter,
    "Log lines and journal entries read since the daemon started.",
    &[],
);
pub static LINES_SKIPPED: Family = family(
    "lines_skipped_total",
    Kind::Counter,
    "Lines a rule matched but could not use (no valid address, unreadable time, not a journal entry), by rule.",
    &["rule"],
);
pub static LINES_CUT: Family = family(
    "lines_cut_total",
    Kind::Counter,
    "Lines longer than max_line_bytes, read and never matched (cut, a line loses the end that keeps an attacker from choosing the address).",
    &[],
);
pub static SOURCES: Family = family(
    "sources",
    Kind::Gauge,
    "Log sources (files and journals) by state: following (inotify), polling (inotify cannot serve them), absent (followed when they appear), failed (tried again).",
    &["state"],
);
pub static REMOTE_EVENTS: Family = family(
    "remote_events_total",
    Kind::Counter,
    "Bans and unbans received from the other servers of the fleet since the daemon started.",
    &[],
);
pub static SYNC_LAG: Family = family(
    "sync_lag_seconds",
    Kind::Gauge,
    "Seconds between another server's ban or unban and its arrival here, for the latest event (whole-second event times; negative when clocks disagree).",
    &[],
);
pub static SYNC_LAG_MAX: Family = family(
    "sync_lag_max_seconds",
    Kind::Gauge,
    "The largest sync_lag_seconds since the daemon started.",
    &[],
);
pub static LAST_RECONCILE: Family = family(
    "last_reconcile_timestamp_seconds",
    Kind::Gauge,
    "Unix time of the daemon's last reconcile of its firewall with the shared store.",
    &[],
);
pub static LAST_RECONCILE_CHANGES: Family = family(
    "last_reconcile_changes",
    Kind::Gauge,
    "Bans and unbans the last reconcile applied to the firewall.",
    &["change"],
);
pub static NOTIFICATIONS: Family = family(
    "notifications_total",
    Kind::Counter,
    "Notifications of bans and unbans since the daemon started, by receiver and result: sent; retried (a try failed, another follows); failed (every try failed); dropped (the receiver's queue was full).",
    &["notifier", "result"],
);
pub static START_TIME: Family = family(
    "start_time_seconds",
    Kind::Gauge,
    "Unix time the daemon started: its counters count from then.",
    &[],
);
pub static SAVED_AT: Family = family(
    "daemon_stats_timestamp_seconds",
    Kind::Gauge,
    "Unix time the daemon last saved the counters shown here.",
    &[],
);

/// Every family, in the order they are written.
pub(super) static FAMILIES: [&Family; 18] = [
    &BUILD_INFO,
    &STORE_UP,
    &BANS,
    &ACTIVE_BANS,
    &DAEMON_BANS,
    &ATTEMPTS,
    &LINES_READ,
    &LINES_SKIPPED,
    &LINES_CUT,
    &SOURCES,
    &REMOTE_EVENTS,
    &SYNC_LAG,
    &SYNC_LAG_MAX,
    &LAST_RECONCILE,
    &LAST_RECONCILE_CHANGES,
    &NOTIFICATIONS,
    &START_TIME,
    &SAVED_AT,
];

/// The families the daemon counts itself (and saves for the admin).
pub(super) const DAEMON_FAMILIES: [&Family; 13] = [
    &DAEMON_BANS,
    &ATTEMPTS,
    &LINES_READ,
    &LINES_SKIPPED,
    &LINES_CUT,
    &SOURCES,
    &REMOTE_EVENTS,
    &SYNC_LAG,
    &SYNC_LAG_MAX,
    &LAST_RECONCILE,
    &LAST_RECONCILE_CHANGES,
    &NOTIFICATIONS,
    &START_TIME,
];

/// One sample: a family, its label values (in the family's label order) and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub family: &'static Family,
    pub labels: Vec<String>,
    pub value: f64,
}

impl Sample {
    pub fn new(family: &'static Family, labels: &[&str], value: f64) -> Sample {
        debug_assert_eq!(family.labels.len(), labels.len(), "{}", family.name);
        Sample {
            family,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            value,
        }
    }

    /// The sample as exposed, without the prefix and value: `attempts_total{rule="sshd"}`.
    /// It is also the row's name in `daemon_stats`.
    pub fn key(&self) -> String {
        let mut key = self.family.name.to_string();
        write_labels(&mut key, self.family.labels, &self.labels);
        key
    }

    /// Reads a key written by `key`: `None` unless it names a family the daemon saves,
    /// with exactly its labels, correctly quoted.
    pub fn from_key(key: &str, value: f64) -> Option<Sample> {
        let (name, labels) = match key.find('{') {
            Some(i) => (&key[..i], parse_labels(&key[i..])?),
            None => (key, Vec::new()),
        };
        let family = DAEMON_FAMILIES.iter().find(|f| f.name == name)?;
        if labels.len() != family.labels.len()
            || labels.iter().zip(family.labels).any(|((k, _), n)| k != n)
        {
            return None;
        }
        Some(Sample {
            family,
            labels: labels.into_iter().map(|(_, v)| v).collect(),
            value,
        })
    }
}
