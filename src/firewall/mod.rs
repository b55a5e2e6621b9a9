//! Firewall backends: putting bans into the kernel and taking them out.
//!
//! Every operation is idempotent (banning a banned address or unbanning an unbanned one
//! is a no-op) and runs external tools with argument vectors, never through a shell.

pub mod iptables;

use ipnet::IpNet;

use crate::config::{Backend, FirewallConfig};

/// Why a firewall operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(
        "the {backend} firewall backend needs root (it changes the kernel's firewall): run pyfilter as root, e.g. with sudo, or set `firewall.backend: none` to only record bans"
    )]
    NotRoot { backend: &'static str },
    #[error(
        "cannot run `{program}`: {source}; install it (apt-get install iptables) or set `firewall.backend: none`"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{family} bans are unavailable: {why}")]
    FamilyUnavailable { family: &'static str, why: String },
}

/// A place bans are enforced.
pub trait Firewall: Send {
    /// Backend name for messages.
    fn name(&self) -> &'static str;
    /// Makes pyfilter's own structures exist (chain, jump). Idempotent.
    fn init(&mut self) -> Result<(), FirewallError>;
    /// Replaces pyfilter's bans in the kernel by exactly `bans`, in one batch per family.
    fn restore(&mut self, bans: &[IpNet]) -> Result<(), FirewallError>;
    fn ban(&mut self, net: &IpNet) -> Result<(), FirewallError>;
    fn unban(&mut self, net: &IpNet) -> Result<(), FirewallError>;
    /// Removes everything pyfilter put in the firewall, and nothing else.
    fn flush(&mut self) -> Result<(), FirewallError>;
}

/// Bans are recorded, the kernel is not touched (`firewall.backend: none`).
pub struct NoFirewall;

impl Firewall for NoFirewall {
    fn name(&self) -> &'static str {
        "none"
    }
    fn init(&mut self) -> Result<(), FirewallError> {
        Ok(())
    }
    fn restore(&mut self, _: &[IpNet]) -> Result<(), FirewallError> {
        Ok(())
    }
    fn ban(&mut self, _: &IpNet) -> Result<(), FirewallError> {
        Ok(())
    }
    fn unban(&mut self, _: &IpNet) -> Result<(), FirewallError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), FirewallError> {
        Ok(())
    }
}

/// The backend the configuration names. Refuses a real backend when not root.
pub fn open(config: &FirewallConfig) -> Result<Box<dyn Firewall>, FirewallError> {
    match config.backend {
        Backend::None => Ok(Box::new(NoFirewall)),
        Backend::Iptables => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                return Err(FirewallError::NotRoot {
                    backend: "iptables",
                });
            }
            Ok(Box::new(iptables::Iptables::new(config)))
        }
    }
}
