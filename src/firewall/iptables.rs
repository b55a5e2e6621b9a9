//! iptables / ip6tables backend: one rule per ban in pyfilter's own chain.
//!
//! pyfilter owns one chain (`PYFILTER` by default) in the `filter` table of both families
//! and one jump to it from each configured parent chain (`INPUT` by default). It never
//! touches any other rule. Start-up replaces the chain's contents in one
//! `iptables-restore --noflush` batch per family: declaring a chain in a restore file
//! flushes it, so the kernel ends up holding exactly the store's bans, atomically.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::IpNet;

use super::{Firewall, FirewallError};
use crate::config::{Action, FirewallConfig};

/// One address family's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
    fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
    fn restore_tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

pub struct Iptables {
    chain: String,
    parents: Vec<String>,
    action: Action,
    /// Why a family could not be set up (e.g. a kernel without IPv6); its bans fail.
    unavailable: [Option<String>; 2],
}

impl Iptables {
    pub fn new(config: &FirewallConfig) -> Iptables {
        Iptables {
            chain: config.chain.clone(),
            parents: config.parents.clone(),
            action: config.action,
            unavailable: [None, None],
        }
    }

    fn idx(family: Family) -> usize {
        family as usize
    }

    /// Runs the family's tool; `Ok(false)` when it exits non-zero and `check` is set.
    fn run(&self, family: Family, args: &[&str], check: bool) -> Result<bool, FirewallError> {
        let program = family.tool();
        let out = Command::new(program)
            .arg("-w")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| FirewallError::Spawn {
                program: program.into(),
                source,
            })?;
        if out.status.success() {
            return Ok(true);
        }
        if check {
            return Ok(false);
        }
        Err(FirewallError::Command {
            command: format!("{program} -w {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    fn rule_args<'a>(&'a self, op: &'a str, source: &'a str) -> [&'a str; 6] {
        [op, &self.chain, "-s", source, "-j", self.action.target()]
    }

    fn init_family(&self, family: Family) -> Result<(), FirewallError> {
        if !self.run(family, &["-n", "-L", &self.chain], true)? {
            // Another process may have created it meanwhile; check again before failing.
            if !self.run(family, &["-N", &self.chain], true)?
                && !self.run(family, &["-n", "-L", &self.chain], true)?
            {
                self.run(family, &["-N", &self.chain], false)?;
            }
        }
        for parent in &self.parents {
            if !self.run(family, &["-C", parent, "-j", &self.chain], true)? {
                self.run(family, &["-I", parent, "1", "-j", &self.chain], false)?;
            }
        }
        Ok(())
    }

    fn available(&self, family: Family) -> Result<(), FirewallError> {
        match &self.unavailable[Self::idx(family)] {
            Some(why) => Err(FirewallError::FamilyUnavailable {
                family: family.label(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }

    fn restore_family(&self, family: Family, bans: &[&IpNet]) -> Result<(), FirewallError> {
        let mut script = format!(
            "*filter\n:{chain} - [0:0]\n-F {chain}\n",
            chain = self.chain
        );
        for net in bans {
            script.push_str(&format!(
                "-A {} -s {} -j {}\n",
                self.chain,
                net,
                self.action.target()
            ));
        }
        script.push_str("COMMIT\n");
        let program = family.restore_tool();
        let mut child = Command::new(program)
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FirewallError::Spawn {
                program: program.into(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|source| FirewallError::Spawn {
                    program: program.into(),
                    source,
                })?;
        }
        let out = child
            .wait_with_output()
            .map_err(|source| FirewallError::Spawn {
                program: program.into(),
                source,
            })?;
        if !out.status.success() {
            return Err(FirewallError::Command {
                command: format!("{program} -w --noflush ({} bans)", bans.len()),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

impl Firewall for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        self.init_family(Family::V4)?;
        // A host without IPv6 (or without ip6tables) still gets IPv4 protection.
        match self.init_family(Family::V6) {
            Ok(()) => self.unavailable[Self::idx(Family::V6)] = None,
            Err(e) => {
                log::warn!("IPv6 bans disabled: {e}");
                self.unavailable[Self::idx(Family::V6)] = Some(e.to_string());
            }
        }
        Ok(())
    }

    fn restore(&mut self, bans: &[IpNet]) -> Result<(), FirewallError> {
        for family in [Family::V4, Family::V6] {
            let mine: Vec<&IpNet> = bans.iter().filter(|n| Family::of(n) == family).collect();
            if self.available(family).is_err() {
                if !mine.is_empty() {
                    log::warn!(
                        "{} {} bans not restored: IPv6 is unavailable",
                        mine.len(),
                        family.label()
                    );
                }
                continue;
            }
            self.restore_family(family, &mine)?;
        }
        Ok(())
    }

    fn ban(&mut self, net: &IpNet) -> Result<(), FirewallError> {
        let family = Family::of(net);
        self.available(family)?;
        let source = net.to_string();
        if !self.run(family, &self.rule_args("-C", &source), true)? {
            self.run(family, &self.rule_args("-A", &source), false)?;
        }
        Ok(())
    }

    fn unban(&mut self, net: &IpNet) -> Result<(), FirewallError> {
        let family = Family::of(net);
        self.available(family)?;
        let source = net.to_string();
        // Delete every copy: a rule added by hand or by an older run may be doubled.
        while self.run(family, &self.rule_args("-D", &source), true)? {}
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FirewallError> {
        for family in [Family::V4, Family::V6] {
            let result = (|| {
                for parent in &self.parents {
                    while self.run(family, &["-D", parent, "-j", &self.chain], true)? {}
                }
                if self.run(family, &["-n", "-L", &self.chain], true)? {
                    self.run(family, &["-F", &self.chain], false)?;
                    self.run(family, &["-X", &self.chain], false)?;
                }
                Ok(())
            })();
            match (family, result) {
                (_, Ok(())) => {}
                (Family::V6, Err(e)) => log::warn!("IPv6 firewall not flushed: {e}"),
                (Family::V4, Err(e)) => return Err(e),
            }
        }
        Ok(())
    }
}
