//! Neutral: what each log source says of itself, and the table of them the decision
//! thread keeps, which `pyfilter status` shows.
//!
//! A source (a log file or a rule's journal) reports its state when it changes (an
//! `Event::Source` on the one channel), so the decision thread owns the table and nothing
//! is locked. What moves with every line (lines read, matches, lines cut, when the last
//! line came) is counted by the source's thread in its `SourceCounters`, shared by `Arc`
//! and read when the table is shown: a busy log costs an atomic add per batch, not a
//! message per line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A log source: a file (by the path configured or matched by a glob) or a rule's journal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    File(PathBuf),
    Journal(String),
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceId::File(p) => write!(f, "{}", p.display()),
            SourceId::Journal(rule) => write!(f, "journal of rule {rule}"),
        }
    }
}

/// Where a source stands.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// Read as it changes, woken by inotify.
    Following,
    /// Read every `poll_interval`: inotify cannot be had for it (see `why`).
    Polling,
    /// Not there (yet): read from its start when it appears.
    #[default]
    Absent,
    /// Reading failed (see `why`); tried again, later and later.
    Failed,
}

impl SourceState {
    pub const ALL: [SourceState; 4] = [
        SourceState::Following,
        SourceState::Polling,
        SourceState::Absent,
        SourceState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Following => "following",
            SourceState::Polling => "polling",
            SourceState::Absent => "absent",
            SourceState::Failed => "failed",
        }
    }
}

impl fmt::Display for SourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a source's thread counts as it reads, without a lock.
#[derive(Debug, Default)]
pub struct SourceCounters {
    pub lines: AtomicU64,
    pub matches: AtomicU64,
    /// Lines longer than `max_line_bytes`: read, never matched.
    pub cut: AtomicU64,
    /// When the last line was read, in Unix milliseconds; 0 before the first.
    last_line_ms: AtomicI64,
}

impl SourceCounters {
    /// `n` more lines were read just now.
    pub fn read(&self, n: u64) {
        if n > 0 {
            self.lines.fetch_add(n, Relaxed);
            self.last_line_ms
                .store(Utc::now().timestamp_millis(), Relaxed);
        }
    }

    pub fn last_line(&self) -> Option<DateTime<Utc>> {
        match self.last_line_ms.load(Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }
}

/// A source's news: its state changed.
#[derive(Debug, Clone)]
pub struct SourceNews {
    pub id: SourceId,
    pub state: SourceState,
    /// Why it polls or failed, when it does.
    pub why: Option<String>,
    pub rules: Vec<String>,
    pub counters: Arc<SourceCounters>,
}

#[derive(Debug)]
struct Row {
    state: SourceState,
    why: Option<String>,
    rules: Vec<String>,
    counters: Arc<SourceCounters>,
    since: DateTime<Utc>,
    /// Bytes handled, for files (the position the store saves).
    position: Option<u64>,
}

/// Every source and its state, kept by the decision thread.
#[derive(Debug, Default)]
pub struct SourceTable {
    rows: BTreeMap<SourceId, Row>,
}

impl SourceTable {
    pub fn news(&mut self, news: SourceNews) {
        let position = self.rows.get(&news.id).and_then(|r| r.position);
        let since = match self.rows.get(&news.id) {
            Some(r) if r.state == news.state => r.since,
            _ => Utc::now(),
        };
        self.rows.insert(
            news.id,
            Row {
                state: news.state,
                why: news.why,
                rules: news.rules,
                counters: news.counters,
                since,
                position,
            },
        );
    }

    /// How far a file was read (from its `Position` event).
    pub fn position(&mut self, path: &Path, offset: u64) {
        if let Some(row) = self.rows.get_mut(&SourceId::File(path.to_path_buf())) {
            row.position = Some(offset);
        }
    }

    /// Forgets every source (before the watchers start again, at a reload).
    pub fn clear(&mut self) {
        self.rows.clear();
    }

    /// How many sources are in each state, every state listed.
    pub fn by_state(&self) -> [(SourceState, usize); 4] {
        SourceState::ALL.map(|s| (s, self.rows.values().filter(|r| r.state == s).count()))
    }

    /// The table as `status` shows it.
    pub fn snapshot(&self) -> Vec<SourceStatus> {
        self.rows
            .iter()
            .map(|(id, row)| {
                let (kind, name) = match id {
                    SourceId::File(p) => ("file", p.display().to_string()),
                    SourceId::Journal(rule) => ("journal", rule.clone()),
                };
                SourceStatus {
                    kind: kind.into(),
                    name,
                    state: row.state,
                    why: row.why.clone(),
                    rules: row.rules.clone(),
                    since: rfc3339(row.since),
                    position: row.position,
                    last_line: row.counters.last_line().map(rfc3339),
                    lines: row.counters.lines.load(Relaxed),
                    matches: row.counters.matches.load(Relaxed),
                    cut: row.counters.cut.load(Relaxed),
                }
            })
            .collect()
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One source as `status --json` shows it. A reader defaults what it does not find, as
/// the rest of the status does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceStatus {
    /// `file` or `journal`.
    pub kind: String,
    /// The file's path, or the rule whose journal it is.
    pub name: String,
    pub state: SourceState,
    pub why: Option<String>,
    pub rules: Vec<String>,
    /// When it entered its state.
    pub since: String,
    /// Bytes of the file handled.
    pub position: Option<u64>,
    /// When its last line was read.
    pub last_line: Option<String>,
    pub lines: u64,
    pub matches: u64,
    /// Lines longer than `max_line_bytes`, read and never matched.
    pub cut: u64,
}

/// The sources as `status` prints them for people: one line each, then why it polls or
/// failed, when it does.
pub fn render_sources(rows: &[SourceStatus]) -> String {
    let mut out = String::new();
    let width = rows.iter().map(|r| r.label().len()).max().unwrap_or(0);
    for r in rows {
        let mut facts = vec![format!("rules {}", r.rules.join(", "))];
        match r.state {
            SourceState::Absent => facts.push("followed when it appears".into()),
            _ => {
                if let Some(p) = r.position {
                    facts.push(format!("at byte {p}"));
                }
                facts.push(format!("{} lines, {} matches", r.lines, r.matches));
                if let Some(t) = &r.last_line {
                    facts.push(format!("last line {t}"));
                }
            }
        }
        if r.cut > 0 {
            facts.push(format!("{} too long, not matched", r.cut));
        }
        out.push_str(&format!(
            "  {:<9} {:<width$}  {}\n",
            r.state.as_str(),
            r.label(),
            facts.join("; ")
        ));
        if let Some(why) = &r.why {
            out.push_str(&format!("  {:<9} {:<width$}  {why}\n", "", ""));
        }
    }
    out
}

impl SourceStatus {
    /// The path, or `journal (rule)`.
    pub fn label(&self) -> String {
        match self.kind.as_str() {
            "journal" => format!("journal ({})", self.name),
            _ => self.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn news(id: SourceId, state: SourceState, counters: &Arc<SourceCounters>) -> SourceNews {
        SourceNews {
            id,
            state,
            why: None,
            rules: vec!["sshd".into()],
            counters: Arc::clone(counters),
        }
    }

    #[test]
    fn the_table_keeps_the_latest_state_of_each_source_with_its_counts_and_position() {
        let mut t = SourceTable::default();
        let c = Arc::new(SourceCounters::default());
        let log = SourceId::File("/var/log/auth.log".into());
        t.news(news(log.clone(), SourceState::Absent, &c));
        t.news(news(
            SourceId::Journal("sshd".into()),
            SourceState::Following,
            &Arc::default(),
        ));
        t.news(news(log.clone(), SourceState::Following, &c));
        t.position(Path::new("/var/log/auth.log"), 120);
        c.read(3);
        c.matches.fetch_add(2, Relaxed);
        let rows = t.snapshot();
        assert_eq!(rows.len(), 2);
        let file = rows.iter().find(|r| r.kind == "file").unwrap();
        assert_eq!(
            (file.state, file.position, file.lines, file.matches),
            (SourceState::Following, Some(120), 3, 2)
        );
        assert!(file.last_line.is_some());
        assert_eq!(
            t.by_state(),
            [
                (SourceState::Following, 2),
                (SourceState::Polling, 0),
                (SourceState::Absent, 0),
                (SourceState::Failed, 0)
            ]
        );
        let json = serde_json::to_string(&rows[0]).unwrap();
        assert!(json.contains(r#""state":"following""#), "{json}");
        let text = render_sources(&rows);
        assert!(
            text.contains("  following /var/log/auth.log  rules sshd; at byte 120; 3 lines, 2 matches; last line "),
            "{text}"
        );
        assert!(text.contains("following journal (sshd)"), "{text}");
    }
}
