//! The directories to watch for one configured path or glob, kept right as directories
//! come and go.
//!
//! A log's directory is watched for the log's name. While that directory does not exist,
//! the nearest one that does is watched for the next name on the way, so a log whose
//! directories are created later is seen at once. A glob watches every directory its
//! wildcards can reach, for the names they match. Nothing is watched recursively: the
//! nearest ancestor of a missing log may be `/`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crossbeam_channel::Sender;

use crate::source::hub::{Blind, Hub, Interest, Subscription};

/// Whether a configured log path is a glob.
pub fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// The subscriptions for one path or glob.
pub struct WatchSet {
    pattern: String,
    subs: HashMap<PathBuf, Subscription>,
    any: bool,
}

impl WatchSet {
    pub fn new(pattern: impl Into<String>) -> WatchSet {
        WatchSet {
            pattern: pattern.into(),
            subs: HashMap::new(),
            any: false,
        }
    }

    /// Watches what the path needs now, dropping what it no longer needs. Returns why it
    /// must (also) be polled, if it must.
    pub fn update(&mut self, hub: &Hub, wake: &Sender<()>) -> Option<Blind> {
        let mut blind = None;
        let mut wanted = wanted_dirs(&self.pattern);
        // A directory created while the watch was being armed sent its event to no one:
        // look again until what is wanted holds still.
        for _ in 0..8 {
            blind = self.subscribe(&wanted, hub, wake);
            let now = wanted_dirs(&self.pattern);
            if now == wanted {
                break;
            }
            wanted = now;
        }
        if blind.is_none() {
            // Still on a filesystem without events, though subscribed long ago.
            blind = self
                .subs
                .keys()
                .find_map(|d| crate::source::hub::silent_filesystem(d))
                .map(Blind::Filesystem);
        }
        blind
    }

    fn subscribe(
        &mut self,
        wanted: &[(PathBuf, Interest)],
        hub: &Hub,
        wake: &Sender<()>,
    ) -> Option<Blind> {
        self.subs
            .retain(|dir, _| wanted.iter().any(|(d, _)| d == dir));
        let mut blind = None;
        for (dir, interest) in wanted {
            if self.subs.contains_key(dir) {
                continue;
            }
            let (sub, why) = hub.watch(dir, interest.clone(), wake);
            if let Some(sub) = sub {
                sub.wake_on_any(self.any);
                self.subs.insert(dir.clone(), sub);
            }
            blind = blind.or(why);
        }
        blind
    }

    /// Wakes on any change in the watched directories (while a rotated file, which has
    /// another name, is drained).
    pub fn wake_on_any(&mut self, on: bool) {
        if self.any != on {
            self.any = on;
            for sub in self.subs.values() {
                sub.wake_on_any(on);
            }
        }
    }
}

/// The existing directories to watch for `pattern`, each with the names that matter in
/// it: the log's own directory for its name; a missing directory's nearest existing
/// ancestor for the next name on the way; for a glob, every directory its wildcards
/// reach.
pub fn wanted_dirs(pattern: &str) -> Vec<(PathBuf, Interest)> {
    let path = Path::new(pattern);
    let mut level = vec![if path.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::from(".")
    }];
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let text = name.to_string_lossy();
        let glob = if is_glob(&text) {
            glob::Pattern::new(&text).ok()
        } else {
            None
        };
        let mut next = Vec::new();
        for dir in &level {
            match &glob {
                Some(p) => {
                    out.push((
                        dir.clone(),
                        if last {
                            Interest::Matching(p.clone())
                        } else {
                            Interest::Dirs(p.clone())
                        },
                    ));
                    if !last {
                        let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
                        next.extend(
                            entries
                                .filter(|e| p.matches(&e.file_name().to_string_lossy()))
                                .map(|e| e.path())
                                .filter(|p| p.is_dir()),
                        );
                    }
                }
                None => {
                    let child = dir.join(name);
                    if !last && child.is_dir() {
                        next.push(child);
                    } else {
                        out.push((dir.clone(), Interest::Name(name.clone())));
                    }
                }
            }
        }
        if last {
            break;
        }
        level = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(pattern: &str) -> Vec<PathBuf> {
        wanted_dirs(pattern).into_iter().map(|(d, _)| d).collect()
    }

    #[test]
    fn a_log_is_watched_in_its_directory_or_the_nearest_that_exists() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let log = r.join("a/b/x.log");
        assert_eq!(dirs(log.to_str().unwrap()), [r.to_path_buf()]);
        assert_eq!(
            wanted_dirs(log.to_str().unwrap())[0].1,
            Interest::Name("a".into())
        );
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        assert_eq!(dirs(log.to_str().unwrap()), [r.join("a/b")]);
        assert_eq!(
            wanted_dirs(log.to_str().unwrap())[0].1,
            Interest::Name("x.log".into())
        );
    }

    #[test]
    fn a_glob_watches_every_directory_its_wildcards_reach() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("one")).unwrap();
        std::fs::create_dir_all(r.join("two")).unwrap();
        std::fs::write(r.join("file"), "").unwrap();
        let mut found = dirs(&format!("{}/*/access.log", r.display()));
        found.sort();
        assert_eq!(found, [r.to_path_buf(), r.join("one"), r.join("two")]);
        assert_eq!(dirs(&format!("{}/*.log", r.display())), [r.to_path_buf()]);
    }
}
