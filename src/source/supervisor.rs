//! The file threads' supervisor: starts a thread for every log that exists, waits (on a
//! directory watch, not a thread) for the logs that do not yet, follows every new file a
//! glob matches, and restarts a file thread that died, later and later.
//!
//! A configured log is never dropped while the daemon runs: absent, it is waited for;
//! its thread dead, it is restarted at the position it had reached. The supervisor runs
//! on one thread ("sources"), woken by the hub for the directories it watches, by a file
//! thread's end, every `poll_interval` when inotify cannot serve a waited-for log, and
//! at a restart's time.
//!
//! Compiled rules are most of the daemon's memory: a rule that reads none of the logs
//! there at start is not kept compiled for the logs waited for; it is compiled again
//! (`WatchContext::compile`) when one of them appears.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, bounded, never, select, unbounded};

use crate::event::{Position, Positions};
use crate::rule::Rule;
use crate::source::follow::{Follower, Fresh};
use crate::source::hub::Blind;
use crate::source::watch::{FileWatch, WatchContext, backoff};
use crate::source::watchset::{WatchSet, is_glob};
use crate::status::SourceNews;
use crate::status::{SourceCounters, SourceId, SourceState};

/// Stack of a file thread: matching works on the heap, and a thread's untouched stack
/// costs address space, not memory, but a small one keeps the count honest.
const FILE_STACK: usize = 512 * 1024;

/// A log path (or glob) and the rules that read it.
#[derive(Clone)]
pub struct LogSpec {
    pub path: String,
    /// The rules reading it, compiled (those kept; see `names`).
    pub rules: Vec<Arc<Rule>>,
    /// Every rule reading it, by name.
    pub names: Vec<Arc<str>>,
    /// Rules of this spec reading their journal now, since none of their files existed
    /// at start: when the file appears it is followed too.
    pub journal_rules: Vec<String>,
}

/// Groups the enabled rules by log path (one thread per file, however many rules read
/// it). A rule reading its journal keeps its files here: they are followed when they
/// appear. A rule let go (`Rule::release`) is there by name, compiled when a log of its
/// appears.
pub fn log_specs<'a>(rules: impl Iterator<Item = &'a Rule>) -> Vec<LogSpec> {
    let mut specs: Vec<LogSpec> = Vec::new();
    for rule in rules {
        let on_journal = crate::source::journal::reads_journal(rule);
        let rule = Arc::new(rule.clone());
        for path in &rule.log_files {
            let spec = match specs.iter_mut().position(|s| &s.path == path) {
                Some(i) => &mut specs[i],
                None => {
                    specs.push(LogSpec {
                        path: path.clone(),
                        rules: Vec::new(),
                        names: Vec::new(),
                        journal_rules: Vec::new(),
                    });
                    specs.last_mut().expect("pushed")
                }
            };
            if rule.is_compiled() {
                spec.rules.push(Arc::clone(&rule));
            }
            spec.names.push(Arc::clone(&rule.name));
            if on_journal {
                spec.journal_rules.push(rule.name.to_string());
            }
        }
    }
    specs
}

/// A log absent at start, waited for.
struct Waiting {
    path: PathBuf,
    spec: LogSpec,
    counters: Arc<SourceCounters>,
    watches: WatchSet,
    blind: bool,
}

/// A glob, for the files it will match.
struct Glob {
    spec: LogSpec,
    watches: WatchSet,
    blind: bool,
}

/// A file thread that ended without being asked to: restarted at `at`.
struct Restart {
    at: Instant,
    path: PathBuf,
    rules: Vec<Arc<Rule>>,
    counters: Arc<SourceCounters>,
    position: Option<Position>,
    failures: u32,
}

/// What a file thread leaves when it ends on its own (a panic included).
struct Ended {
    path: PathBuf,
    rules: Vec<Arc<Rule>>,
    counters: Arc<SourceCounters>,
    position: Option<Position>,
}

struct Supervisor {
    ctx: WatchContext,
    positions: Positions,
    wake_tx: Sender<()>,
    wake: Receiver<()>,
    waiting: Vec<Waiting>,
    globs: Vec<Glob>,
    /// The rules the running file threads read.
    running_rules: HashSet<Arc<str>>,
    /// Every file with a thread, by path; joined at stop.
    files: HashMap<PathBuf, JoinHandle<()>>,
    /// How many times each file's thread died lately.
    failures: HashMap<PathBuf, u32>,
    ended_tx: Sender<Ended>,
    ended: Receiver<Ended>,
    restarts: Vec<Restart>,
}

/// Places every log that exists now (at its saved position, or its end) and starts its
/// thread, registers the others to wait for, then supervises them all on a thread of its
/// own. Returns that thread; it ends, having joined every file thread, when the watchers
/// stop.
pub fn spawn_all(specs: Vec<LogSpec>, positions: &Positions, ctx: &WatchContext) -> JoinHandle<()> {
    let (wake_tx, wake) = bounded(1);
    let (ended_tx, ended) = unbounded();
    let mut sup = Supervisor {
        ctx: ctx.clone(),
        positions: positions.clone(),
        wake_tx,
        wake,
        waiting: Vec::new(),
        globs: Vec::new(),
        running_rules: HashSet::new(),
        files: HashMap::new(),
        failures: HashMap::new(),
        ended_tx,
        ended,
        restarts: Vec::new(),
    };
    for mut spec in specs {
        if is_glob(&spec.path) {
            sup.globs.push(Glob {
                watches: WatchSet::new(spec.path.clone()),
                spec,
                blind: false,
            });
        } else {
            let path = PathBuf::from(&spec.path);
            let counters = Arc::default();
            // A rule let go at the load, its log there since, is compiled now.
            let rules = path.is_file().then(|| sup.compiled(&mut spec));
            if let Some(Err(e)) = &rules {
                log::error!(
                    "{}: its rules do not compile now: {e}; tried again at its next change, followed after a reload",
                    path.display()
                );
            }
            if let Some(Ok(rules)) = rules {
                sup.start(path, rules, counters, Fresh::AtEnd);
            } else {
                report_absent(ctx, &path, &spec, &counters);
                sup.waiting.push(Waiting {
                    watches: WatchSet::new(spec.path.clone()),
                    path,
                    spec,
                    counters,
                    blind: false,
                });
            }
        }
    }
    // Files matching a glob now are placed before the daemon says it is ready.
    sup.look(Fresh::AtEnd);
    sup.release_unused();
    std::thread::Builder::new()
        .name("sources".into())
        .stack_size(FILE_STACK)
        .spawn(move || sup.run())
        .expect("spawning a thread")
}

/// Says a waited-for log is absent.
fn report_absent(
    ctx: &WatchContext,
    path: &std::path::Path,
    spec: &LogSpec,
    counters: &Arc<SourceCounters>,
) {
    let _ = ctx.events.send(crate::event::Event::Source(SourceNews {
        id: SourceId::File(path.to_path_buf()),
        state: SourceState::Absent,
        why: None,
        rules: spec.names.iter().map(|n| n.to_string()).collect(),
        counters: Arc::clone(counters),
    }));
}

impl Supervisor {
    /// Lets go of the compiled rules no running file reads (compiled again when a log
    /// of theirs appears).
    fn release_unused(&mut self) {
        if self.ctx.compile.is_none() {
            return;
        }
        let in_use = &self.running_rules;
        let keep = |spec: &mut LogSpec| spec.rules.retain(|r| in_use.contains(&r.name));
        self.waiting.iter_mut().for_each(|w| keep(&mut w.spec));
        self.globs.iter_mut().for_each(|g| keep(&mut g.spec));
    }

    /// The compiled rules of `spec`, compiling those let go.
    fn compiled(&self, spec: &mut LogSpec) -> Result<Vec<Arc<Rule>>, String> {
        let missing: Vec<Arc<str>> = spec
            .names
            .iter()
            .filter(|n| !spec.rules.iter().any(|r| &r.name == *n))
            .cloned()
            .collect();
        if let (false, Some(compile)) = (missing.is_empty(), &self.ctx.compile) {
            spec.rules.extend(compile(&missing)?);
        }
        Ok(spec.rules.clone())
    }

    fn run(mut self) {
        loop {
            let tick = self.next_look().map_or_else(never, after);
            select! {
                recv(self.wake) -> _ => {}
                recv(self.ended) -> ended => {
                    if let Ok(ended) = ended {
                        self.died(ended);
                    }
                }
                recv(tick) -> _ => {}
                recv(self.ctx.stop) -> _ => break,
            }
            self.look(Fresh::AtStart);
            self.restart_due();
        }
        for (_, handle) in self.files.drain() {
            let _ = handle.join();
        }
    }

    fn next_look(&self) -> Option<Duration> {
        let polling = self.waiting.iter().any(|w| w.blind) || self.globs.iter().any(|g| g.blind);
        let poll = polling.then_some(self.ctx.poll_interval);
        let restart = self
            .restarts
            .iter()
            .map(|r| r.at.saturating_duration_since(Instant::now()))
            .min();
        poll.into_iter().chain(restart).min()
    }

    /// Starts the logs that appeared and the new files of globs; watches what leads to
    /// the others.
    fn look(&mut self, fresh: Fresh) {
        let mut appeared = Vec::new();
        let mut again = Vec::new();
        for (i, w) in self.waiting.iter_mut().enumerate() {
            // Watched first, looked at after: a file created in between is not missed.
            let why = w.watches.update(&self.ctx.hub, &self.wake_tx);
            w.blind = why.is_some();
            warn(&self.ctx, why, &w.spec.path);
            if w.path.is_file() {
                appeared.push(i);
            }
        }
        for i in appeared.into_iter().rev() {
            let mut w = self.waiting.remove(i);
            let rules = match self.compiled(&mut w.spec) {
                Ok(rules) => rules,
                Err(e) => {
                    log::error!(
                        "{}: appeared, but its rules do not compile now: {e}; tried again at its next change, followed after a reload",
                        w.path.display()
                    );
                    again.push(w);
                    continue;
                }
            };
            log::info!("{}: appeared; following it", w.path.display());
            if !w.spec.journal_rules.is_empty() {
                log::warn!(
                    "{}: followed beside the journal of {} (read since none of its files existed); if both carry the same messages (rsyslog), attempts count twice: reload (SIGHUP) to read the file alone",
                    w.path.display(),
                    w.spec.journal_rules.join(", ")
                );
            }
            self.start(w.path, rules, w.counters, Fresh::AtStart);
        }
        // Never dropped: waited for still.
        self.waiting.extend(again);
        let mut new = Vec::new();
        let mut globs = std::mem::take(&mut self.globs);
        for g in &mut globs {
            let why = g.watches.update(&self.ctx.hub, &self.wake_tx);
            g.blind = why.is_some();
            warn(&self.ctx, why, &g.spec.path);
            let matches = glob::glob(&g.spec.path).into_iter().flatten().flatten();
            for path in matches {
                if path.is_file()
                    && !self.files.contains_key(&path)
                    && !new.iter().any(|(p, _)| p == &path)
                {
                    match self.compiled(&mut g.spec) {
                        Ok(rules) => new.push((path, rules)),
                        Err(e) => log::error!(
                            "{}: matches {}, but its rules do not compile now: {e}",
                            path.display(),
                            g.spec.path
                        ),
                    }
                }
            }
        }
        self.globs = globs;
        for (path, rules) in new {
            if fresh == Fresh::AtStart {
                log::info!("{}: matches a log glob; following it", path.display());
            }
            self.start(path, rules, Arc::default(), fresh);
        }
    }

    /// Places the file's read position now, on this thread, then follows it on a thread
    /// of its own.
    fn start(
        &mut self,
        path: PathBuf,
        rules: Vec<Arc<Rule>>,
        counters: Arc<SourceCounters>,
        fresh: Fresh,
    ) {
        self.running_rules
            .extend(rules.iter().map(|r| Arc::clone(&r.name)));
        let saved = self.positions.get(&path).copied();
        self.launch(path, rules, counters, saved, fresh);
    }

    fn launch(
        &mut self,
        path: PathBuf,
        rules: Vec<Arc<Rule>>,
        counters: Arc<SourceCounters>,
        saved: Option<Position>,
        fresh: Fresh,
    ) {
        let mut follower = Follower::new(&path, self.ctx.max_line);
        if let Err(e) = follower.open(saved, fresh) {
            // Read again at the first look: `poll` opens what `open` could not.
            log::warn!("{}: cannot open yet: {e}", path.display());
        }
        let mut watch = match FileWatch::new(
            path.clone(),
            rules.clone(),
            follower,
            Arc::clone(&counters),
            self.ctx.clone(),
        ) {
            Ok(watch) => watch,
            Err(e) => {
                // The rules reading this file cannot share one automaton: no thread
                // would ever match, so say so once instead of restarting it.
                log::error!("{}: not followed: {e}", path.display());
                self.ctx.report(
                    SourceId::File(path.clone()),
                    SourceState::Failed,
                    Some(e.to_string()),
                    &rules,
                    &counters,
                );
                return;
            }
        };
        watch.sent = saved;
        let mut guard = Guard {
            ended: Some(Ended {
                path: path.clone(),
                rules,
                counters,
                position: saved,
            }),
            tx: self.ended_tx.clone(),
        };
        let name = format!("watch {}", path.display());
        let spawned = std::thread::Builder::new()
            .name(name)
            .stack_size(FILE_STACK)
            .spawn(move || {
                run_guarded(&mut watch, &mut guard);
            });
        match spawned {
            Ok(handle) => {
                self.files.insert(path, handle);
            }
            // The closure, and its guard, dropped: the supervisor hears of it as a death.
            Err(e) => log::error!("{}: cannot start its thread: {e}", path.display()),
        }
    }

    /// A file thread ended without being asked to (it panicked): restart it, later and
    /// later.
    fn died(&mut self, ended: Ended) {
        if let Some(handle) = self.files.remove(&ended.path) {
            let _ = handle.join();
        }
        let failures = self.failures.entry(ended.path.clone()).or_default();
        *failures += 1;
        let wait = backoff(*failures);
        log::error!(
            "{}: its thread died; restarted in {}s",
            ended.path.display(),
            wait.as_secs()
        );
        self.ctx.report(
            SourceId::File(ended.path.clone()),
            SourceState::Failed,
            Some("its thread died; restarted".into()),
            &ended.rules,
            &ended.counters,
        );
        self.restarts.push(Restart {
            at: Instant::now() + wait,
            path: ended.path,
            rules: ended.rules,
            counters: ended.counters,
            position: ended.position,
            failures: *failures,
        });
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.restarts)
            .into_iter()
            .partition(|r| r.at <= now);
        self.restarts = later;
        let mut seen = HashSet::new();
        for r in due {
            if !seen.insert(r.path.clone()) {
                continue;
            }
            log::info!(
                "{}: restarting its thread (failure {})",
                r.path.display(),
                r.failures
            );
            // Where it had reached: the lines after it are read, none twice.
            self.launch(r.path, r.rules, r.counters, r.position, Fresh::AtStart);
        }
    }
}

fn warn(ctx: &WatchContext, why: Option<Blind>, what: &str) {
    if let Some(why) = why {
        ctx.hub.warn_once(&why, what, ctx.poll_interval);
    }
}

/// Tells the supervisor when its file thread ends without being asked to, however it
/// ends (a panic unwinds through it).
struct Guard {
    ended: Option<Ended>,
    tx: Sender<Ended>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(ended) = self.ended.take() {
            let _ = self.tx.send(ended);
        }
    }
}

fn run_guarded(watch: &mut FileWatch, guard: &mut Guard) {
    // The position reached goes with the news of a death, so a restart repeats nothing.
    struct Track<'a>(&'a mut FileWatch, &'a mut Guard);
    impl Drop for Track<'_> {
        fn drop(&mut self) {
            if let Some(e) = self.1.ended.as_mut() {
                e.position = self.0.sent.or(e.position);
            }
        }
    }
    let track = Track(watch, guard);
    track.0.run();
    // Asked to stop: nothing to restart.
    track.1.ended = None;
}
