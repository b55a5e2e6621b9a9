//! One inotify instance for the whole daemon, and where its events go.
//!
//! Linux allows a user 128 inotify instances by default, shared with everything else that
//! user runs; one per followed file ran out. Here one instance and one thread serve every
//! watcher: a directory is watched once, however many files, globs and rules look into
//! it, and each event is routed by the name it carries to the subscriptions interested
//! in that name. A subscriber is only woken (a coalescing `()` on its channel): it reads
//! what changed itself, so a lost or merged wake-up loses nothing.
//!
//! Where inotify cannot be had — no instance or no watch left for this user, or a
//! filesystem that sends no events for changes made elsewhere (NFS, CIFS, FUSE, ...) —
//! `watch` says so (`Blind`), the caller polls instead, and the cause with its fix is
//! logged once.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

/// Events that may mean new data, a new file or a directory gone.
const MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// How long after failing to get an instance one is asked for again.
const INSTANCE_RETRY: Duration = Duration::from_secs(60);

/// Why a directory cannot be left to inotify alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Blind {
    #[error(
        "no inotify instance left for this user (fs.inotify.max_user_instances); raise it: sysctl -w fs.inotify.max_user_instances=1024 (and in /etc/sysctl.d/ to keep it)"
    )]
    NoInstance,
    #[error(
        "no inotify watch left for this user (fs.inotify.max_user_watches); raise it: sysctl -w fs.inotify.max_user_watches=524288 (and in /etc/sysctl.d/ to keep it)"
    )]
    NoWatch,
    #[error("on {0}, which sends no inotify events for changes made by other hosts")]
    Filesystem(&'static str),
    #[error("inotify refused: {0}")]
    Refused(String),
}

/// Which names in a watched directory wake a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    /// This entry (a log, or the next directory on the way to one).
    Name(OsString),
    /// Entries whose names start so (the database and its `-wal`, `-shm`).
    Prefix(OsString),
    /// Entries whose names match a glob component.
    Matching(glob::Pattern),
    /// Directories whose names match a glob component (on the way to a glob's files).
    Dirs(glob::Pattern),
}

impl Interest {
    fn wants(&self, name: &OsStr, is_dir: bool) -> bool {
        match self {
            Interest::Name(n) => n == name,
            Interest::Prefix(p) => name.as_bytes().starts_with(p.as_bytes()),
            Interest::Matching(p) => p.matches(&name.to_string_lossy()),
            Interest::Dirs(p) => is_dir && p.matches(&name.to_string_lossy()),
        }
    }
}

struct Sub {
    id: u64,
    interest: Interest,
    /// Set while any change in the directory matters (a rotated file is drained).
    any: Arc<AtomicBool>,
    wake: Sender<()>,
}

struct Dir {
    /// `None` once the kernel dropped the watch (the directory is gone).
    wd: Option<WatchDescriptor>,
    subs: Vec<Sub>,
}

/// The instance's watches and who listens to each; locked by `watch`, by dropping a
/// subscription, and by the routing thread for each batch of events.
struct Routes {
    watches: Option<Watches>,
    /// Why there is no instance, and when it was last asked for.
    missing: Option<(Blind, Instant)>,
    next_id: u64,
    dirs: HashMap<PathBuf, Dir>,
    by_wd: HashMap<WatchDescriptor, Vec<PathBuf>>,
}

struct Inner {
    routes: Mutex<Routes>,
    /// Causes already logged: each once.
    warned: Mutex<HashSet<Blind>>,
}

/// The daemon's inotify instance; clones share it.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A subscription to a directory: wakes its channel while it lives.
pub struct Subscription {
    inner: Arc<Inner>,
    dir: PathBuf,
    id: u64,
    any: Arc<AtomicBool>,
}

impl Subscription {
    /// Wakes on any change in the directory (`true`), or only on the interest's names.
    pub fn wake_on_any(&self, on: bool) {
        self.any.store(on, Relaxed);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut routes = lock(&self.inner.routes);
        let routes = &mut *routes;
        let Some(dir) = routes.dirs.get_mut(&self.dir) else {
            return;
        };
        dir.subs.retain(|s| s.id != self.id);
        if !dir.subs.is_empty() {
            return;
        }
        let wd = routes.dirs.remove(&self.dir).and_then(|d| d.wd);
        if let Some(wd) = wd {
            let shared = routes.by_wd.get_mut(&wd).is_some_and(|paths| {
                paths.retain(|p| p != &self.dir);
                !paths.is_empty()
            });
            if !shared {
                routes.by_wd.remove(&wd);
                if let Some(w) = routes.watches.as_mut() {
                    let _ = w.remove(wd);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The routing state stays consistent between statements; a panic elsewhere leaves it
    // usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// Asks for the instance and starts its routing thread. Without an instance the hub
    /// still works: every `watch` says `Blind::NoInstance` (and one is asked for again
    /// now and then).
    pub fn new() -> Hub {
        let inner = Arc::new(Inner {
            routes: Mutex::new(Routes {
                watches: None,
                missing: None,
                next_id: 0,
                dirs: HashMap::new(),
                by_wd: HashMap::new(),
            }),
            warned: Mutex::new(HashSet::new()),
        });
        start_instance(&inner, &mut lock(&inner.routes));
        Hub { inner }
    }

    /// A hub that never gets an instance: everything is polled.
    #[cfg(test)]
    pub fn blind() -> Hub {
        Hub {
            inner: Arc::new(Inner {
                routes: Mutex::new(Routes {
                    watches: None,
                    missing: Some((Blind::NoInstance, Instant::now() + INSTANCE_RETRY * 100)),
                    next_id: 0,
                    dirs: HashMap::new(),
                    by_wd: HashMap::new(),
                }),
                warned: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Subscribes `wake` to changes of `interest` in `dir`. Returns the subscription
    /// (unless inotify cannot watch `dir`), and the reason to poll as well, if any.
    pub fn watch(
        &self,
        dir: &Path,
        interest: Interest,
        wake: &Sender<()>,
    ) -> (Option<Subscription>, Option<Blind>) {
        let fs_blind = silent_filesystem(dir).map(Blind::Filesystem);
        let mut guard = lock(&self.inner.routes);
        let routes = &mut *guard;
        if routes.watches.is_none()
            && routes
                .missing
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() >= INSTANCE_RETRY)
        {
            start_instance(&self.inner, routes);
        }
        let Some(watches) = routes.watches.as_mut() else {
            let why = routes
                .missing
                .as_ref()
                .map_or(Blind::NoInstance, |m| m.0.clone());
            return (None, Some(why));
        };
        let live = routes.dirs.get(dir).is_some_and(|d| d.wd.is_some());
        if !live {
            match watches.add(dir, MASK) {
                Ok(wd) => {
                    let paths = routes.by_wd.entry(wd.clone()).or_default();
                    if !paths.iter().any(|p| p == dir) {
                        paths.push(dir.to_path_buf());
                    }
                    routes
                        .dirs
                        .entry(dir.to_path_buf())
                        .or_insert_with(|| Dir {
                            wd: None,
                            subs: Vec::new(),
                        })
                        .wd = Some(wd);
                }
                Err(e) => return (None, Some(refused(e))),
            }
        }
        routes.next_id += 1;
        let id = routes.next_id;
        let any = Arc::new(AtomicBool::new(false));
        if let Some(d) = routes.dirs.get_mut(dir) {
            d.subs.push(Sub {
                id,
                interest,
                any: Arc::clone(&any),
                wake: wake.clone(),
            });
        }
        let sub = Subscription {
            inner: Arc::clone(&self.inner),
            dir: dir.to_path_buf(),
            id,
            any,
        };
        (Some(sub), fs_blind)
    }

    /// Logs `why` for `what` once per cause for the life of the daemon: with a thousand
    /// logs on NFS, one warning, not a thousand.
    pub fn warn_once(&self, why: &Blind, what: &str, every: Duration) {
        if lock(&self.inner.warned).insert(why.clone()) {
            log::warn!(
                "{what}: polled every {} instead: {why}",
                crate::duration::format_duration(every)
            );
        }
    }

    /// Whether the instance exists (for `status`).
    pub fn has_instance(&self) -> bool {
        lock(&self.inner.routes).watches.is_some()
    }
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new()
    }
}

fn refused(e: io::Error) -> Blind {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Blind::NoWatch,
        Some(libc::EMFILE) => Blind::NoInstance,
        _ => Blind::Refused(e.to_string()),
    }
}

/// Asks the kernel for the instance and starts the thread routing its events.
fn start_instance(inner: &Arc<Inner>, routes: &mut Routes) {
    let started = Inotify::init().and_then(|inotify| {
        let watches = inotify.watches();
        let weak = Arc::downgrade(inner);
        std::thread::Builder::new()
            .name("inotify".into())
            .stack_size(crate::source::SMALL_STACK)
            .spawn(move || route(inotify, &weak))?;
        Ok(watches)
    });
    match started {
        Ok(w) => {
            routes.watches = Some(w);
            routes.missing = None;
        }
        Err(e) => routes.missing = Some((refused(e), Instant::now())),
    }
}

/// The routing thread: reads events and wakes whoever they concern. Ends when the hub is
/// gone.
fn route(mut inotify: Inotify, inner: &std::sync::Weak<Inner>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let events = match inotify.read_events_blocking(&mut buf) {
            Ok(events) => events,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("inotify: reading events failed: {e}; every log is polled");
                if let Some(inner) = inner.upgrade() {
                    let mut routes = lock(&inner.routes);
                    routes.watches = None;
                    routes.missing = Some((Blind::Refused(e.to_string()), Instant::now()));
                    wake_all(&routes);
                }
                return;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let mut routes = lock(&inner.routes);
        for event in events {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                // Events were lost: everyone looks again.
                wake_all(&routes);
                continue;
            }
            let Some(paths) = routes.by_wd.get(&event.wd) else {
                continue;
            };
            for path in paths {
                let Some(dir) = routes.dirs.get(path) else {
                    continue;
                };
                for sub in &dir.subs {
                    let wanted = match event.name {
                        // The directory itself moved, went or lost its watch.
                        None => true,
                        Some(name) => {
                            sub.any.load(Relaxed)
                                || sub
                                    .interest
                                    .wants(name, event.mask.contains(EventMask::ISDIR))
                        }
                    };
                    if wanted {
                        let _ = sub.wake.try_send(());
                    }
                }
            }
            if event.mask.contains(EventMask::IGNORED) {
                let routes = &mut *routes;
                for path in routes.by_wd.remove(&event.wd).unwrap_or_default() {
                    if let Some(dir) = routes.dirs.get_mut(&path) {
                        dir.wd = None;
                    }
                }
            }
        }
    }
}

fn wake_all(routes: &Routes) {
    for sub in routes.dirs.values().flat_map(|d| &d.subs) {
        let _ = sub.wake.try_send(());
    }
}

/// The filesystem under `dir` when it is one whose inotify misses changes made elsewhere.
pub fn silent_filesystem(dir: &Path) -> Option<&'static str> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `fs` is written by statfs before it is read.
    if unsafe { libc::statfs(c.as_ptr(), fs.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statfs returned 0, so it filled the struct.
    let magic = unsafe { fs.assume_init() }.f_type as u64 & 0xffff_ffff;
    Some(match magic {
        0x6969 => "NFS",
        0x517b => "SMB",
        0xff53_4d42 => "CIFS",
        0xfe53_4d42 => "SMB2",
        0x6573_5546 => "FUSE",
        0x00c3_6400 => "CephFS",
        0x0102_1997 => "9P",
        0x5346_414f | 0x6b41_4653 => "AFS",
        0x0116_1970 => "GFS2",
        0x7461_636f => "OCFS2",
        0x0bd0_0bd0 => "Lustre",
        0x794c_7630 => "overlayfs",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crossbeam_channel::bounded;

    use super::*;

    fn woken(rx: &crossbeam_channel::Receiver<()>) -> bool {
        rx.recv_timeout(Duration::from_secs(2)).is_ok()
    }

    fn quiet(rx: &crossbeam_channel::Receiver<()>) -> bool {
        rx.recv_timeout(Duration::from_millis(200)).is_err()
    }

    #[test]
    fn one_directory_watch_serves_every_subscriber_by_the_name_it_wants() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new();
        let (a_tx, a) = bounded(1);
        let (b_tx, b) = bounded(1);
        let (sa, _) = hub.watch(dir.path(), Interest::Name("a.log".into()), &a_tx);
        let (sb, _) = hub.watch(dir.path(), Interest::Name("b.log".into()), &b_tx);
        assert!(sa.is_some() && sb.is_some());
        assert_eq!(lock(&hub.inner.routes).by_wd.len(), 1, "one kernel watch");
        std::fs::write(dir.path().join("a.log"), "x\n").unwrap();
        assert!(woken(&a));
        assert!(quiet(&b), "b.log did not change");
        sb.as_ref().unwrap().wake_on_any(true);
        std::fs::write(dir.path().join("c.log"), "x\n").unwrap();
        assert!(woken(&b), "wakes on any name while asked to");
        drop(sa);
        drop(sb);
        assert!(
            lock(&hub.inner.routes).dirs.is_empty(),
            "the watch goes with its last subscriber"
        );
    }

    #[test]
    fn a_directory_removed_wakes_its_subscribers_and_can_be_watched_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let hub = Hub::new();
        let (tx, rx) = bounded(1);
        let (sub, _) = hub.watch(&dir, Interest::Name("x.log".into()), &tx);
        std::fs::remove_dir(&dir).unwrap();
        assert!(woken(&rx));
        drop(sub);
        std::fs::create_dir(&dir).unwrap();
        let (sub, _) = hub.watch(&dir, Interest::Name("x.log".into()), &tx);
        assert!(sub.is_some());
        while rx.try_recv().is_ok() {}
        std::fs::write(dir.join("x.log"), "x\n").unwrap();
        assert!(woken(&rx));
    }

    #[test]
    fn a_missing_directory_is_refused_not_fatal() {
        let hub = Hub::new();
        let (tx, _rx) = bounded(1);
        let (sub, why) = hub.watch(
            Path::new("/nonexistent/dir"),
            Interest::Name("x".into()),
            &tx,
        );
        assert!(sub.is_none());
        assert!(matches!(why, Some(Blind::Refused(_))), "{why:?}");
    }

    #[test]
    fn prefix_and_glob_interests_match_names() {
        assert!(Interest::Prefix("pyfilter.db".into()).wants(OsStr::new("pyfilter.db-wal"), false));
        let glob = Interest::Matching(glob::Pattern::new("*.log").unwrap());
        assert!(
            glob.wants(OsStr::new("access.log"), false) && !glob.wants(OsStr::new("x.gz"), false)
        );
        let dirs = Interest::Dirs(glob::Pattern::new("*").unwrap());
        assert!(dirs.wants(OsStr::new("nginx"), true) && !dirs.wants(OsStr::new("syslog"), false));
    }
}
