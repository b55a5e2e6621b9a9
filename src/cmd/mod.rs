//! One file per subcommand. `run` wires the daemon's threads to the decision thread; the
//! others are short-lived: each opens the same store and firewall modules the daemon
//! uses, does its one job and exits.

pub mod admin;
pub mod ban;
pub mod check;
pub mod flush;
pub mod import;
pub mod list;
pub mod prune;
pub mod run;
pub mod scan;
pub mod unban;
