//! Firewall backends: putting bans into the kernel and taking them out.
//!
//! Every operation is idempotent (banning a banned address or unbanning an unbanned one
//! is a no-op), takes a whole batch at once (a burst of thousands of bans is one or two
//! processes, not thousands), and runs external tools with argument vectors and scripts
//! on standard input, never through a shell. ipset and nftables change single addresses
//! over netlink themselves (`netlink`), without a process at all.

pub mod ipset;
pub mod iptables;
mod netlink;
pub mod nftables;
pub mod reopen;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
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
        "cannot run `{program}`: {source}; install it (apt-get install {package}) or set `firewall.backend: none`"
    )]
    Spawn {
        program: String,
        package: &'static str,
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
    #[error(
        "the set {set} is full (maxelem {maxelem}); raise firewall.maxelem or shorten ban_time: {detail}"
    )]
    SetFull {
        set: String,
        maxelem: u32,
        detail: String,
    },
}

/// One ban as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub net: IpNet,
    /// Time left; `None` for forever. Backends with kernel-side expiry use it.
    pub timeout: Option<Duration>,
}

impl Entry {
    /// The entry for a ban that ends at `expires_at`, as seen at `now`.
    pub fn until(net: IpNet, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Entry {
        let timeout = expires_at.map(|t| {
            (t - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_secs(1))
        });
        Entry { net, timeout }
    }

    /// Whole seconds, rounded up, at least 1 (0 means "forever" to ipset).
    pub fn timeout_secs(&self) -> Option<u64> {
        self.timeout
            .map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1))
    }
}

/// A place bans are enforced.
pub trait Firewall: Send {
    /// Backend name for messages.
    fn name(&self) -> &'static str;
    /// Makes pyfilter's own structures exist (chain, jump, sets, table). Idempotent.
    fn init(&mut self) -> Result<(), FirewallError>;
    /// Replaces pyfilter's bans in the kernel by exactly `bans`, in one batch per family.
    fn restore(&mut self, bans: &[Entry]) -> Result<(), FirewallError>;
    fn ban(&mut self, bans: &[Entry]) -> Result<(), FirewallError>;
    fn unban(&mut self, nets: &[IpNet]) -> Result<(), FirewallError>;
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
    fn restore(&mut self, _: &[Entry]) -> Result<(), FirewallError> {
        Ok(())
    }
    fn ban(&mut self, _: &[Entry]) -> Result<(), FirewallError> {
        Ok(())
    }
    fn unban(&mut self, _: &[IpNet]) -> Result<(), FirewallError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), FirewallError> {
        Ok(())
    }
}

/// Whether this process may change the firewall the configuration names: a real
/// backend needs root. Checked before anything else is touched, so a user without it is
/// told what to do rather than refused by a lock or a socket on the way.
pub fn check_privilege(config: &FirewallConfig) -> Result<(), FirewallError> {
    let backend: &'static str = match config.backend {
        Backend::None => return Ok(()),
        Backend::Iptables => "iptables",
        Backend::Ipset => "ipset",
        Backend::Nftables => "nftables",
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(FirewallError::NotRoot { backend });
    }
    Ok(())
}

/// The backend the configuration names. Refuses a real backend when not root.
pub fn open(config: &FirewallConfig) -> Result<Box<dyn Firewall>, FirewallError> {
    check_privilege(config)?;
    Ok(match config.backend {
        Backend::Iptables => Box::new(iptables::Iptables::new(config)),
        Backend::Ipset => Box::new(ipset::Ipset::new(config)),
        Backend::Nftables => Box::new(nftables::Nftables::new(config)),
        Backend::None => Box::new(NoFirewall),
    })
}

/// The Debian package a firewall program comes in, for error messages.
fn package_of(program: &str) -> &'static str {
    match program {
        p if p.starts_with("ipset") => "ipset",
        p if p.starts_with("nft") => "nftables",
        _ => "iptables",
    }
}

/// Runs `program args` to completion, its output captured.
fn exec(program: &str, args: &[&str]) -> Result<std::process::Output, FirewallError> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| FirewallError::Spawn {
            program: program.into(),
            package: package_of(program),
            source,
        })
}

fn failed(program: &str, args: &[&str], out: &std::process::Output) -> FirewallError {
    FirewallError::Command {
        command: format!("{program} {}", args.join(" ")),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// Runs `program args`; `Ok(false)` when it exits non-zero and `check` is set.
pub(crate) fn run(program: &str, args: &[&str], check: bool) -> Result<bool, FirewallError> {
    let out = exec(program, args)?;
    match (out.status.success(), check) {
        (true, _) => Ok(true),
        (false, true) => Ok(false),
        (false, false) => Err(failed(program, args, &out)),
    }
}

/// Runs `program args` and returns its standard output (failing when it fails).
pub(crate) fn output(program: &str, args: &[&str]) -> Result<String, FirewallError> {
    let out = exec(program, args)?;
    if !out.status.success() {
        return Err(failed(program, args, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Feeds `script` to `program args` on standard input: how every batch reaches the
/// kernel in one process. `what` describes the batch in an error.
pub(crate) fn run_script(
    program: &str,
    args: &[&str],
    script: &str,
    what: &str,
) -> Result<(), FirewallError> {
    let spawn_err = |source| FirewallError::Spawn {
        program: program.into(),
        package: package_of(program),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means the program exited early; its status says why.
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(FirewallError::Command {
            command: format!("{program} {} ({what})", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
