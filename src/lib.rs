//! pyfilter as a library: every part of the daemon and the CLI, so that the binary,
//! the fuzz targets and the benchmarks share one implementation. The binary
//! (`src/main.rs`) only parses the command line and dispatches.

pub mod actions;
pub mod admin;
pub mod batch;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod counter;
pub mod daemon;
pub mod duration;
pub mod engine;
pub mod event;
pub mod firewall;
pub mod follow;
pub mod http;
pub mod journal;
pub mod lines;
pub mod metrics;
pub mod net;
pub mod pattern;
pub mod rule;
pub mod store;
pub mod sync;
pub mod timestamp;
pub mod watch;

/// Whether an external program pyfilter runs (a firewall tool, journalctl) is installed:
/// on the PATH or in the system directories, which a root cron job's PATH may lack.
pub fn installed(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(std::path::PathBuf::from))
        .any(|d| d.join(program).is_file())
}
