//! Watcher threads: one per log file, woken by inotify (never a sleep-and-poll loop).
//!
//! Each thread owns a `Follower` and a `Matcher` for the rules that read its file. On every
//! change in the file's directory that concerns it, the thread reads the new lines, has
//! them matched (the matcher sends the `Attempt`s), and sends its read position down the
//! bounded channel to the decision thread.
//! A glob in `log_files` gets its own thread that watches the directory and starts a file
//! thread for each new match.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, select};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::event::{Event, Position, Positions};
use crate::metrics::Metrics;
use crate::rule::Rule;
use crate::source::follow::{Follower, Fresh};
use crate::source::matcher::{Input, Matcher};

/// What every watcher thread needs.
#[derive(Clone)]
pub struct WatchContext {
    pub events: Sender<Event>,
    /// Disconnected (its sender dropped) when the watchers must stop.
    pub stop: Receiver<()>,
    pub max_line: usize,
    /// Lines read, skipped and attempts found are counted here.
    pub metrics: Arc<Metrics>,
}

/// A log path and the rules that read it.
#[derive(Clone)]
pub struct LogSpec {
    pub path: String,
    pub rules: Vec<Arc<Rule>>,
}

/// Groups the enabled rules by log path (one thread per file, even when several rules
/// read it).
pub fn log_specs<'a>(rules: impl Iterator<Item = &'a Rule>) -> Vec<LogSpec> {
    let mut specs: Vec<LogSpec> = Vec::new();
    for rule in rules.filter(|r| !crate::source::journal::reads_journal(r)) {
        let rule = Arc::new(rule.clone());
        for path in &rule.log_files {
            match specs.iter_mut().find(|s| &s.path == path) {
                Some(spec) => spec.rules.push(Arc::clone(&rule)),
                None => specs.push(LogSpec {
                    path: path.clone(),
                    rules: vec![Arc::clone(&rule)],
                }),
            }
        }
    }
    specs
}

/// Starts a thread for every log spec. Files that exist now start at their saved position
/// or at their end; files that appear later are read from their start.
pub fn spawn_all(
    specs: Vec<LogSpec>,
    positions: &Positions,
    ctx: &WatchContext,
) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    for spec in specs {
        if is_glob(&spec.path) {
            // Files matching now are placed before the daemon says it is ready.
            let mut followed = HashSet::new();
            follow_new_matches(
                &spec,
                &positions.clone(),
                Fresh::AtEnd,
                &mut followed,
                &mut handles,
                ctx,
            );
            let positions = positions.clone();
            let ctx = ctx.clone();
            let name = format!("glob {}", spec.path);
            handles.push(spawn_named(name, move || {
                glob_thread(spec, positions, followed, ctx)
            }));
        } else {
            let path = PathBuf::from(&spec.path);
            let saved = positions.get(&path).copied();
            handles.push(spawn_file(
                path,
                spec.rules,
                saved,
                Fresh::AtEnd,
                ctx.clone(),
            ));
        }
    }
    handles
}

fn spawn_named(name: String, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("spawning a thread")
}

/// Places the file's read position and compiles its rules' automaton now, on the
/// caller's thread (so both are done when the daemon says it is ready), then follows it
/// on a thread of its own.
fn spawn_file(
    path: PathBuf,
    rules: Vec<Arc<Rule>>,
    saved: Option<Position>,
    fresh: Fresh,
    ctx: WatchContext,
) -> JoinHandle<()> {
    let mut follower = Follower::new(&path, ctx.max_line);
    let opened = follower.open(saved, fresh);
    let matcher = Matcher::new(
        Input::File(path.clone()),
        &rules,
        ctx.events.clone(),
        Arc::clone(&ctx.metrics),
    );
    spawn_named(format!("watch {}", path.display()), move || {
        if let Err(e) = opened
            .map_err(anyhow::Error::from)
            .and_then(|()| matcher.map_err(anyhow::Error::from))
            .and_then(|matcher| file_thread(&path, matcher, follower, &ctx))
        {
            log::error!("{}: no longer followed: {e}", path.display());
        }
    })
}

fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// The directory to watch for `path`: its parent, or the nearest ancestor that exists.
fn watch_dir(path: &Path) -> PathBuf {
    let mut dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    while !dir.is_dir() {
        match dir.parent() {
            Some(p) => dir = p.to_path_buf(),
            None => return PathBuf::from("/"),
        }
    }
    dir
}

fn new_watcher() -> notify::Result<(RecommendedWatcher, Receiver<notify::Result<notify::Event>>)> {
    let (tx, rx) = bounded(256);
    Ok((notify::recommended_watcher(tx)?, rx))
}

fn file_thread(
    path: &Path,
    mut matcher: Matcher,
    mut follower: Follower,
    ctx: &WatchContext,
) -> anyhow::Result<()> {
    let (mut watcher, notes) = new_watcher()?;
    let mut watched = watch_dir(path);
    watcher.watch(&watched, RecursiveMode::NonRecursive)?;
    // Whatever was written since the file was placed, before the watch was armed.
    follower.poll(&mut |l| matcher.line(l))?;
    matcher.count_lines();
    let mut sent = None;
    send_position(&follower, &mut sent, ctx);
    log::debug!(
        "{}: following (watching {})",
        path.display(),
        watched.display()
    );
    loop {
        select! {
            recv(notes) -> note => {
                let Ok(first) = note else { return Ok(()) };
                let mut relevant = concerns(&first, path, &watched, &follower);
                for note in notes.try_iter() {
                    relevant |= concerns(&note, path, &watched, &follower);
                }
                if !relevant {
                    continue;
                }
                let dir = watch_dir(path);
                if dir != watched {
                    let _ = watcher.unwatch(&watched);
                    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
                    log::debug!("{}: now watching {}", path.display(), dir.display());
                    watched = dir;
                }
                if let Err(e) = follower.poll(&mut |l| matcher.line(l)) {
                    log::warn!("{}: read failed: {e}", path.display());
                }
                matcher.count_lines();
                send_position(&follower, &mut sent, ctx);
            }
            recv(ctx.stop) -> _ => return Ok(()),
        }
    }
}

/// Whether a notification may mean new data for `path`.
fn concerns(
    note: &notify::Result<notify::Event>,
    path: &Path,
    watched: &Path,
    follower: &Follower,
) -> bool {
    let Ok(event) = note else { return true };
    if event.need_rescan() || follower.draining_rotated() || path.parent() != Some(watched) {
        return true;
    }
    event.paths.iter().any(|p| p == path)
}

fn send_position(follower: &Follower, sent: &mut Option<Position>, ctx: &WatchContext) {
    if let Some(position) = follower.position()
        && Some(position) != *sent
    {
        *sent = Some(position);
        let _ = ctx.events.send(Event::Position {
            path: follower.path().to_path_buf(),
            position,
        });
    }
}

/// The deepest directory of a glob pattern that has no wildcard, and whether the
/// wildcards reach into directories (then it is watched recursively).
fn glob_base(pattern: &str) -> (PathBuf, bool) {
    let path = Path::new(pattern);
    let mut base = PathBuf::new();
    let mut components = path.components().peekable();
    while let Some(c) = components.next() {
        if is_glob(&c.as_os_str().to_string_lossy()) {
            return (base, components.peek().is_some());
        }
        base.push(c);
    }
    (base, false)
}

/// Starts a file thread for every file matching the spec's glob not followed yet.
fn follow_new_matches(
    spec: &LogSpec,
    positions: &Positions,
    fresh: Fresh,
    followed: &mut HashSet<PathBuf>,
    children: &mut Vec<JoinHandle<()>>,
    ctx: &WatchContext,
) {
    for path in glob::glob(&spec.path).into_iter().flatten().flatten() {
        if path.is_file() && followed.insert(path.clone()) {
            log::info!("{}: matches {}; following it", path.display(), spec.path);
            let saved = positions.get(&path).copied();
            children.push(spawn_file(
                path,
                spec.rules.clone(),
                saved,
                fresh,
                ctx.clone(),
            ));
        }
    }
}

fn glob_thread(
    spec: LogSpec,
    positions: Positions,
    mut followed: HashSet<PathBuf>,
    ctx: WatchContext,
) {
    let pattern = match glob::Pattern::new(&spec.path) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{}: not a valid glob: {e}", spec.path);
            return;
        }
    };
    let (base, recursive) = glob_base(&spec.path);
    let mut children = Vec::new();
    let start_new = |followed: &mut HashSet<PathBuf>, children: &mut Vec<JoinHandle<()>>| {
        follow_new_matches(&spec, &positions, Fresh::AtStart, followed, children, &ctx)
    };
    let mode = if recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    let (mut watcher, notes) = match new_watcher() {
        Ok(w) => w,
        Err(e) => {
            log::error!("{}: cannot watch for new files: {e}", spec.path);
            return;
        }
    };
    // Until the base directory exists, its nearest ancestor is watched (not recursively:
    // that could be the whole file system) and the watch moves down as directories appear.
    let mut watched: Option<PathBuf> = None;
    loop {
        let dir = watch_dir(&base.join("x"));
        if watched.as_ref() != Some(&dir) {
            if let Some(old) = watched.take() {
                let _ = watcher.unwatch(&old);
            }
            let dir_mode = if dir == base {
                mode
            } else {
                RecursiveMode::NonRecursive
            };
            if let Err(e) = watcher.watch(&dir, dir_mode) {
                log::error!("{}: cannot watch {}: {e}", spec.path, dir.display());
                break;
            }
            watched = Some(dir);
            start_new(&mut followed, &mut children);
        }
        select! {
            recv(notes) -> note => {
                if note.is_err() { break; }
                let changed = notes.try_iter().chain(note.ok()).any(|n| match n {
                    Ok(e) => e.need_rescan() || e.paths.iter().any(|p| pattern.matches_path(p) || base.starts_with(p)),
                    Err(_) => true,
                });
                if changed {
                    start_new(&mut followed, &mut children);
                }
            }
            recv(ctx.stop) -> _ => break,
        }
    }
    for child in children {
        let _ = child.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_base_stops_at_the_first_wildcard() {
        assert_eq!(
            glob_base("/var/log/nginx/*.log"),
            (PathBuf::from("/var/log/nginx"), false)
        );
        assert_eq!(
            glob_base("/var/log/*/access.log"),
            (PathBuf::from("/var/log"), true)
        );
    }

    #[test]
    fn watch_dir_climbs_to_an_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(watch_dir(&dir.path().join("a.log")), dir.path());
        assert_eq!(watch_dir(&dir.path().join("x/y/a.log")), dir.path());
    }
}
