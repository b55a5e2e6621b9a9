//! The short-lived CLI commands. Each opens the same store and firewall modules the
//! daemon uses, does its one job and exits.

pub mod admin;
pub mod ban;
pub mod check;
pub mod flush;
pub mod import;
pub mod list;
pub mod prune;
pub mod scan;
pub mod unban;
