//! pyfilter as a library: every part of the daemon and the CLI, so that the binary,
//! the fuzz targets and the benchmarks share one implementation. The binary
//! (`src/main.rs`) only parses the command line and dispatches.

pub mod actions;
pub mod admin;
pub mod ban;
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
pub mod programs;
pub mod rule;
pub mod store;
pub mod sync;
pub mod time;
pub mod timestamp;
pub mod watch;
