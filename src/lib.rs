//! pyfilter as a library: every part of the daemon and the CLI, so that the binary,
//! the fuzz targets and the benchmarks share one implementation. The binary
//! (`src/main.rs`) only parses the command line and dispatches.

pub mod admin;
pub mod ban;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod control;
pub mod duration;
pub mod engine;
pub mod event;
pub mod fail2ban;
pub mod firewall;
pub mod fleet;
pub mod metrics;
pub mod net;
pub mod notifier;
pub mod programs;
pub mod resident;
pub mod rule;
pub mod settings;
pub mod source;
pub mod status;
pub mod store;
pub mod time;
pub mod web;
pub mod words;
