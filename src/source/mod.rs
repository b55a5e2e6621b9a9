//! Where attempts come from: log files followed as they are appended, rotated and
//! truncated, and the systemd journal. Each source runs on a thread of its own, splits
//! what it reads into lines, has `matcher` match them against the rules reading it (which
//! sends the `Attempt`s), and sends how far it has read to the decision thread. `batch` is
//! the same matching over a whole file at once, for `scan`.

pub mod batch;
pub mod follow;
pub mod journal;
pub mod lines;
pub mod matcher;
pub mod watch;
