//! Where attempts come from: log files followed as they are appended, rotated and
//! truncated, and the systemd journal. One inotify instance (`hub`) serves every file
//! thread (`watch`), which a supervisor starts, restarts and waits for (`supervisor`); the
//! directories each path needs are `watchset`'s. Each source splits what it reads into
//! lines, has `matcher` match them against the rules reading it (which sends the
//! `Attempt`s), and sends how far it has read and its state to the decision thread.
//! `plan` says what each rule reads; `batch` is the same matching over a whole file at
//! once, for `scan`.

pub mod batch;
pub mod follow;
pub mod hub;
pub mod journal;
pub mod lines;
pub mod matcher;
pub mod plan;
pub mod supervisor;
pub mod watch;
pub mod watchset;

/// Stack of the small helper threads (the inotify router): they hold a buffer and a map.
pub const SMALL_STACK: usize = 256 * 1024;
