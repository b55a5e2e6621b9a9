//! The state lock: `flock` on `<state dir>/pyfilter.lock`, so that one process at a time
//! changes the kernel for one state. The daemon holds it for its whole life; with no
//! daemon, `ban`, `unban` and `flush` hold it for their one change. The kernel releases
//! it when its holder dies, however it dies, so a SIGKILLed daemon never blocks the next
//! start. The holder writes `PID ROLE` into the file, which is how a refusal names it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ControlError;

/// Who holds the lock, as written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `pyfilter run`, for its whole life.
    Daemon,
    /// A command changing the firewall itself, for one change.
    Command,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Daemon => "run",
            Role::Command => "command",
        }
    }
}

/// What the lock file says of its holder (the last one to write it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub role: Role,
}

/// The lock, held as long as this value lives.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// How long a starting daemon waits for a command holding the lock for one change.
const DAEMON_WAIT: Duration = Duration::from_secs(10);

impl StateLock {
    /// The daemon's lock. Refuses at once when another live daemon holds it; waits a
    /// little when a command holds it for one change.
    pub fn for_daemon(path: &Path) -> Result<StateLock, ControlError> {
        let start = Instant::now();
        loop {
            if let Some(lock) = Self::try_take(path, Role::Daemon)? {
                return Ok(lock);
            }
            let holder = holder(path);
            let daemon = holder.filter(|h| h.role == Role::Daemon && alive(h.pid));
            if daemon.is_some() || start.elapsed() > DAEMON_WAIT {
                return Err(ControlError::Running {
                    pid: holder.map(|h| h.pid),
                    lock: path.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command's lock, or `None` when someone else holds it now.
    pub fn try_for_command(path: &Path) -> Result<Option<StateLock>, ControlError> {
        Self::try_take(path, Role::Command)
    }

    fn try_take(path: &Path, role: Role) -> Result<Option<StateLock>, ControlError> {
        let io = |source| ControlError::Lock {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The state directory's mode is chosen in one place, whoever creates it first.
            crate::store::sqlite::private::create_dir(dir).map_err(io)?;
        }
        // Readable by the group: the admin reads who holds it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(path)
            .map_err(io)?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB).map_err(io)? {
            return Ok(None);
        }
        // Ours now: say who we are (a failure here only makes a refusal less precise).
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{} {}", std::process::id(), role.as_str()));
        Ok(Some(StateLock { _file: file }))
    }
}

/// Whether a daemon holds the lock of this state now: readable by anyone who may read
/// the lock file (the admin), since it takes only a shared lock for a moment.
pub fn daemon_running(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        // Nobody holds it; ours goes with `file`.
        Ok(true) => false,
        Ok(false) => holder(path).is_some_and(|h| h.role == Role::Daemon),
        Err(_) => false,
    }
}

/// What the lock file says of its last holder.
pub fn holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    let mut words = text.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let role = match words.next()? {
        "run" => Role::Daemon,
        _ => Role::Command,
    };
    Some(Holder { pid, role })
}

/// `true` when taken, `false` when someone else holds it.
fn flock(file: &File, op: libc::c_int) -> std::io::Result<bool> {
    loop {
        // SAFETY: flock on a file descriptor `file` owns.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Whether a process of this PID exists (it may be another user's).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The lock file of a state directory.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("pyfilter.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let first = StateLock::try_for_command(&path).unwrap().unwrap();
        assert!(StateLock::try_for_command(&path).unwrap().is_none());
        assert_eq!(
            holder(&path),
            Some(Holder {
                pid: std::process::id(),
                role: Role::Command
            })
        );
        assert!(!daemon_running(&path), "a command is no daemon");
        drop(first);
        assert!(StateLock::try_for_command(&path).unwrap().is_some());
    }

    #[test]
    fn a_live_daemon_is_refused_at_once_naming_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let _daemon = StateLock::for_daemon(&path).unwrap();
        assert!(daemon_running(&path));
        let start = Instant::now();
        match StateLock::for_daemon(&path) {
            Err(ControlError::Running { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_dead_holders_words_do_not_block_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        std::fs::write(&path, "999999999 run\n").unwrap();
        assert!(!daemon_running(&path));
        assert!(StateLock::for_daemon(&path).is_ok());
    }
}
