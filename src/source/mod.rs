//! Where attempts come from: log files followed as they are appended, rotated and
//! truncated, and the systemd journal. Each source runs on a thread of its own, splits
//! what it reads into lines, matches them against the rules reading it and sends
//! `Attempt`s, with how far it has read, to the decision thread. `batch` is the same
//! matching over a whole file at once, for `scan`.

pub mod batch;
pub mod follow;
pub mod journal;
pub mod lines;
pub mod watch;
