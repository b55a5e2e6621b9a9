//! File threads: one per log file that exists, woken by the daemon's one inotify instance
//! (`hub`), or every `poll_interval` where inotify cannot be had.
//!
//! Each thread owns a `Follower` and a `Matcher` for the rules that read its file. On
//! every wake-up it reads the new lines, has them matched (the matcher sends the
//! `Attempt`s), and sends its read position down the bounded channel to the decision
//! thread. It reports its state (following, polling, absent, failed) when that changes.
//! The file may go, be rotated, be replaced by a directory or lose its directories: the
//! thread keeps following its path, watching whatever directory leads to it. A read that
//! fails is tried again, later and later; a thread that dies is restarted by the
//! supervisor (`supervisor.rs`), which also waits for the logs absent at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, bounded, never, select};

use crate::event::{Event, EventSender, Position};
use crate::metrics::Metrics;
use crate::rule::{Rule, RuleError};
use crate::source::follow::Follower;
use crate::source::hub::{Blind, Hub};
use crate::source::matcher::{Input, Matcher};
use crate::source::watchset::WatchSet;
use crate::status::{SourceCounters, SourceId, SourceNews, SourceState};

/// Longest wait between two tries of a read that keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How often the lines cut at `max_line_bytes` are logged per file, at most.
const CUT_LOG_EVERY: Duration = Duration::from_secs(60);

/// What every source thread needs.
#[derive(Clone)]
pub struct WatchContext {
    pub events: EventSender,
    /// Disconnected (its sender dropped) when the watchers must stop.
    pub stop: Receiver<()>,
    pub max_line: usize,
    /// Lines read, skipped and attempts found are counted here.
    pub metrics: Arc<Metrics>,
    /// The daemon's inotify instance.
    pub hub: Hub,
    /// How often a file inotify cannot serve is read.
    pub poll_interval: Duration,
    /// Compiles rules by name, for a log that appears: compiled rules are most of the
    /// daemon's memory, so those with nothing to read are not kept. `None`: every rule
    /// is kept compiled.
    pub compile: Option<Compile>,
}

/// Compiles the named rules (from the configuration the daemon runs), or says why not.
pub type Compile = Arc<dyn Fn(&[Arc<str>]) -> Result<Vec<Arc<Rule>>, String> + Send + Sync>;

impl WatchContext {
    /// Tells the decision thread a source's state.
    pub fn report(
        &self,
        id: SourceId,
        state: SourceState,
        why: Option<String>,
        rules: &[Arc<Rule>],
        counters: &Arc<SourceCounters>,
    ) {
        let _ = self.events.send(Event::Source(SourceNews {
            id,
            state,
            why,
            rules: rules.iter().map(|r| r.name.to_string()).collect(),
            counters: Arc::clone(counters),
        }));
    }
}

/// The wait before the `failures`-th retry: 1 s, doubling, at most `MAX_BACKOFF`.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

/// One followed file, on its own thread.
pub struct FileWatch {
    path: PathBuf,
    rules: Vec<Arc<Rule>>,
    follower: Follower,
    matcher: Matcher,
    ctx: WatchContext,
    counters: Arc<SourceCounters>,
    watches: WatchSet,
    wake_tx: Sender<()>,
    wake: Receiver<()>,
    /// Why inotify alone cannot serve the file, while it cannot.
    blind: Option<Blind>,
    reported: Option<(SourceState, Option<String>)>,
    /// The last position sent (shared with the supervisor when the thread dies).
    pub sent: Option<Position>,
    failures: u32,
    retry_at: Option<Instant>,
    cut_logged: u64,
    cut_logged_at: Option<Instant>,
}

impl FileWatch {
    pub fn new(
        path: PathBuf,
        rules: Vec<Arc<Rule>>,
        follower: Follower,
        counters: Arc<SourceCounters>,
        ctx: WatchContext,
    ) -> Result<FileWatch, RuleError> {
        let matcher = Matcher::new(
            Input::File(path.clone()),
            &rules,
            ctx.events.clone(),
            Arc::clone(&ctx.metrics),
            Arc::clone(&counters),
        )?;
        let (wake_tx, wake) = bounded(1);
        let cut_logged = follower.cut_lines();
        Ok(FileWatch {
            watches: WatchSet::new(path.to_string_lossy()),
            path,
            rules,
            follower,
            matcher,
            ctx,
            counters,
            wake_tx,
            wake,
            blind: None,
            reported: None,
            sent: None,
            failures: 0,
            retry_at: None,
            cut_logged,
            cut_logged_at: None,
        })
    }

    /// Follows the file until the watchers stop.
    pub fn run(&mut self) {
        self.arm();
        // Whatever was written since the file was placed, before the watch was armed.
        self.read();
        log::debug!("{}: following", self.path.display());
        loop {
            let tick = self.next_look().map_or_else(never, after);
            select! {
                recv(self.wake) -> _ => {}
                recv(tick) -> _ => {}
                recv(self.ctx.stop) -> _ => return,
            }
            self.arm();
            if self.retry_at.is_none_or(|at| Instant::now() >= at) {
                self.read();
            }
        }
    }

    /// When to look without being woken: every `poll_interval` while inotify cannot
    /// serve the file or a rotated file is drained (it may have been moved elsewhere,
    /// and must be let go after its grace), at the retry after a failed read.
    fn next_look(&self) -> Option<Duration> {
        let poll = (self.blind.is_some() || self.follower.draining_rotated())
            .then_some(self.ctx.poll_interval);
        let retry = self
            .retry_at
            .map(|at| at.saturating_duration_since(Instant::now()));
        poll.into_iter().chain(retry).min()
    }

    /// Watches the directories that lead to the file now (they may have come or gone).
    fn arm(&mut self) {
        self.blind = self.watches.update(&self.ctx.hub, &self.wake_tx);
        self.watches.wake_on_any(self.follower.draining_rotated());
        if let Some(why) = &self.blind {
            self.ctx.hub.warn_once(
                why,
                &self.path.display().to_string(),
                self.ctx.poll_interval,
            );
        }
    }

    /// Reads what is new, and says how it went.
    fn read(&mut self) {
        let matcher = &mut self.matcher;
        let result = self.follower.poll(&mut |l| matcher.line(l));
        self.matcher.count_lines();
        self.count_cut();
        self.send_position();
        let news = match result {
            Ok(()) => {
                if self.failures > 0 {
                    log::info!("{}: read again", self.path.display());
                }
                self.failures = 0;
                self.retry_at = None;
                if !self.follower.is_open() {
                    (SourceState::Absent, None)
                } else if let Some(why) = &self.blind {
                    (SourceState::Polling, Some(why.to_string()))
                } else {
                    (SourceState::Following, None)
                }
            }
            Err(e) => {
                self.failures += 1;
                let wait = backoff(self.failures);
                self.retry_at = Some(Instant::now() + wait);
                let why = format!("read failed: {e}");
                if self.reported.as_ref().and_then(|r| r.1.as_ref()) != Some(&why) {
                    log::warn!(
                        "{}: {why}; tried again in {}s, then later and later",
                        self.path.display(),
                        wait.as_secs()
                    );
                }
                (SourceState::Failed, Some(why))
            }
        };
        if self.reported.as_ref() != Some(&news) {
            self.ctx.report(
                SourceId::File(self.path.clone()),
                news.0,
                news.1.clone(),
                &self.rules,
                &self.counters,
            );
            self.reported = Some(news);
        }
    }

    /// Counts the lines longer than `max_line_bytes`, logged at most once a minute.
    fn count_cut(&mut self) {
        let cut = self.follower.cut_lines();
        let new = cut.saturating_sub(self.counters.cut.load(Relaxed));
        if new == 0 {
            return;
        }
        self.counters.cut.store(cut, Relaxed);
        self.ctx.metrics.lines_cut(new);
        if self
            .cut_logged_at
            .is_none_or(|at| at.elapsed() >= CUT_LOG_EVERY)
        {
            log::warn!(
                "{}: {} line(s) longer than max_line_bytes ({}) read and not matched: a cut line could name any address",
                self.path.display(),
                cut - self.cut_logged,
                self.ctx.max_line
            );
            self.cut_logged = cut;
            self.cut_logged_at = Some(Instant::now());
        }
    }

    fn send_position(&mut self) {
        if let Some(position) = self.follower.position()
            && Some(position) != self.sent
        {
            self.sent = Some(position);
            let _ = self.ctx.events.send(Event::Position {
                path: self.path.clone(),
                position,
            });
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use crate::source::follow::tests::append;

    use super::*;
    use crate::event::EventReceiver;

    fn ctx(events: EventSender, stop: Receiver<()>, hub: Hub) -> WatchContext {
        WatchContext {
            events,
            stop,
            max_line: 1024,
            metrics: Arc::default(),
            hub,
            poll_interval: Duration::from_millis(50),
            compile: None,
        }
    }

    /// The next state reported.
    fn next_state(events: &EventReceiver) -> SourceState {
        loop {
            match events.recv_timeout(Duration::from_secs(3)) {
                Ok(Event::Source(news)) => return news.state,
                Ok(_) => {}
                Err(_) => panic!("no state reported"),
            }
        }
    }

    /// Offsets sent, in order, until `want` is reached, and the states reported.
    fn offsets_until(events: &EventReceiver, want: u64) -> (Vec<u64>, Vec<SourceState>) {
        let mut seen = Vec::new();
        let mut states = Vec::new();
        while seen.last() != Some(&want) {
            match events.recv_timeout(Duration::from_secs(3)) {
                Ok(Event::Position { position, .. }) => seen.push(position.offset),
                Ok(Event::Source(news)) => states.push(news.state),
                Ok(_) => {}
                Err(_) => panic!("no position {want}; saw {seen:?}"),
            }
        }
        (seen, states)
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn switching_between_inotify_and_polling_reads_every_byte_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "");
        let (tx, events) = crate::event::queue(1 << 16);
        let (stop_tx, stop) = bounded::<()>(0);
        let mut follower = Follower::new(&log, 1024);
        follower
            .open(None, crate::source::follow::Fresh::AtEnd)
            .unwrap();
        let mut w = FileWatch::new(
            log.clone(),
            Vec::new(),
            follower,
            Arc::default(),
            ctx(tx, stop, Hub::new()),
        )
        .expect("no rules combine");
        let thread = std::thread::spawn(move || {
            w.run();
            w
        });
        assert_eq!(next_state(&events), SourceState::Following);
        append(&log, "one\n");
        assert_eq!(offsets_until(&events, 4), (vec![4], vec![]));
        drop(stop_tx);
        let mut w = thread.join().unwrap();
        // The same follower goes on with polling alone: no instance to be had.
        let (stop_tx, stop) = bounded::<()>(0);
        w.ctx.stop = stop;
        w.ctx.hub = Hub::blind();
        w.watches = WatchSet::new(log.to_string_lossy());
        w.reported = None;
        let thread = std::thread::spawn(move || {
            w.run();
            w
        });
        assert_eq!(next_state(&events), SourceState::Polling);
        append(&log, "two\n");
        let (offsets, _) = offsets_until(&events, 8);
        assert_eq!(offsets, [8], "read once, by polling");
        drop(stop_tx);
        let w = thread.join().unwrap();
        assert_eq!(w.counters.lines.load(Relaxed), 2);
    }
}
