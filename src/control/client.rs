//! The CLI's side of the control socket: send one request to the running daemon and
//! wait for its answer; or, when no daemon runs, take the state lock and let the caller
//! change the firewall itself. Commands that write many records (`prune`, `import`) need
//! no answer: with a daemon running they only write the store and the daemon applies
//! what they recorded by the store's change path (`applier`).

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::lock::{self, StateLock};
use super::protocol::{Answer, Request};
use super::{ControlError, Paths};

/// How long the daemon may take to answer (it answers between batches of attempts).
const ANSWER_WAIT: Duration = Duration::from_secs(90);
/// How long a command waits for another command's change before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Who carries out a change.
#[derive(Debug)]
pub enum Route {
    /// The running daemon did, and answered.
    Daemon(Box<Answer>),
    /// No daemon runs: the caller does it, holding the lock.
    Here(StateLock),
}

/// Asks the running daemon; with none, waits for the state lock.
pub fn route(paths: &Paths, request: &Request) -> Result<Route, ControlError> {
    let start = Instant::now();
    loop {
        if let Some(answer) = ask(&paths.socket, request)? {
            return Ok(Route::Daemon(Box::new(answer)));
        }
        if let Some(lock) = StateLock::try_for_command(&paths.lock)? {
            // A daemon that started between the question and the lock took the lock
            // first; with the lock ours, none runs.
            return Ok(Route::Here(lock));
        }
        if start.elapsed() > LOCK_WAIT {
            return Err(ControlError::Busy {
                pid: lock::holder(&paths.lock).map(|h| h.pid),
                lock: paths.lock.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Who puts in the kernel what a command records.
#[derive(Debug)]
pub enum Applier {
    /// The running daemon, as it hears of the records (the change feed, or with Redis
    /// this server's events): the command only writes the store.
    Daemon,
    /// No daemon runs: the caller, holding the lock.
    Here(StateLock),
}

/// Whether a daemon runs on this state, and with none the state lock, waited for while
/// another command holds it. Needs only read access to the lock file while a daemon
/// runs, so a command run by the admin's user writes the store for the daemon to apply.
pub fn applier(paths: &Paths) -> Result<Applier, ControlError> {
    let start = Instant::now();
    loop {
        if lock::daemon_running(&paths.lock) {
            return Ok(Applier::Daemon);
        }
        if let Some(lock) = StateLock::try_for_command(&paths.lock)? {
            return Ok(Applier::Here(lock));
        }
        if start.elapsed() > LOCK_WAIT {
            return Err(ControlError::Busy {
                pid: lock::holder(&paths.lock).map(|h| h.pid),
                lock: paths.lock.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one request to the daemon listening on `socket`. `None`: no daemon listens.
pub fn ask(socket: &Path, request: &Request) -> Result<Option<Answer>, ControlError> {
    let err = |source| ControlError::Ask {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        // No socket, or one a dead daemon left behind.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(err(e)),
    };
    stream.set_read_timeout(Some(ANSWER_WAIT)).map_err(err)?;
    let mut text = serde_json::to_string(request).map_err(|e| err(std::io::Error::other(e)))?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(err)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(err)?;
    if line.is_empty() {
        return Err(ControlError::NoAnswer {
            path: socket.to_path_buf(),
        });
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| ControlError::BadAnswer {
            path: socket.to_path_buf(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths::beside(&dir.join("pyfilter.db"))
    }

    #[test]
    fn a_running_daemon_applies_and_without_one_the_command_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        let daemon = StateLock::for_daemon(&paths.lock).unwrap();
        assert!(matches!(applier(&paths).unwrap(), Applier::Daemon));
        drop(daemon);
        let Applier::Here(held) = applier(&paths).unwrap() else {
            panic!("no daemon runs: the command applies")
        };
        // Another command waits for it.
        let waiting = std::thread::spawn({
            let paths = paths.clone();
            move || matches!(applier(&paths), Ok(Applier::Here(_)))
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiting.is_finished(), "it waits while the lock is held");
        drop(held);
        assert!(waiting.join().unwrap());
    }
}
