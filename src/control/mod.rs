//! The control socket and the state lock: how the one owner of the firewall is found.
//!
//! While `pyfilter run` runs it holds the state lock (`lock`) and listens on a unix
//! socket beside the database (`<state dir>/pyfilter.sock`, mode 0600); `ban`, `unban`,
//! `flush` and `status` ask it there (`client`) and its decision thread answers
//! (`server` hands each request over a channel). With no daemon, a command takes the
//! lock and changes the firewall itself, so two commands never interleave either. The
//! requests and answers are JSON lines (`protocol`).

pub mod client;
pub mod lock;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};

pub use client::{Applier, Route, applier, route};
pub use lock::StateLock;
pub use protocol::{Answer, Request};
pub use server::{Asked, ControlSocket, listen};

/// Where a state's socket and lock are: beside its database, so daemons with their own
/// state on one host never meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub socket: PathBuf,
    pub lock: PathBuf,
}

impl Paths {
    /// The paths of the state whose database is `db` (`sqlite.path`).
    pub fn beside(db: &Path) -> Paths {
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Paths {
            socket: dir.join("pyfilter.sock"),
            lock: lock::path_in(dir),
        }
    }
}

/// Why the socket or the lock failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "another pyfilter daemon{} runs on this state (it holds {}); stop it first, or give this one its own sqlite.path",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        lock.display()
    )]
    Running { pid: Option<u32>, lock: PathBuf },
    #[error(
        "{} holds {} and does not let go; is a daemon stuck? (its socket does not answer)",
        pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "another process".into()),
        lock.display()
    )]
    Busy { pid: Option<u32>, lock: PathBuf },
    #[error("cannot take the state lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on the control socket {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot ask the daemon on {path}: {source}")]
    Ask {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the daemon on {path} closed the connection without answering (did it stop?); see `pyfilter list` for what was done"
    )]
    NoAnswer { path: PathBuf },
    #[error("the daemon on {path} answered something unreadable: {message}")]
    BadAnswer { path: PathBuf, message: String },
}
