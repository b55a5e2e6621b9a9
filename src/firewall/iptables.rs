//! iptables / ip6tables backend: one rule per ban in pyfilter's own chain.
//!
//! pyfilter owns one chain (`PYFILTER` by default) in the `filter` table of both families
//! and one jump to it from each configured parent chain (`INPUT` by default). It never
//! touches any other rule. Start-up replaces the chain's contents in one
//! `iptables-restore --noflush` batch per family: declaring a chain in a restore file
//! flushes it, so the kernel ends up holding exactly the store's bans, atomically. The
//! chain management (`Chains`) is shared with the ipset backend, whose chain holds one
//! rule per set instead of one per address.

use std::collections::HashSet;

use ipnet::IpNet;

use super::{Entry, Firewall, FirewallError, output, run, run_script};
use crate::config::{Action, FirewallConfig};

/// One address family's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub(crate) fn of(net: &IpNet) -> Family {
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
    pub(crate) fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// pyfilter's chain and the jumps to it, in both families.
pub(crate) struct Chains {
    chain: String,
    parents: Vec<String>,
    /// Why a family could not be set up (e.g. a kernel without IPv6); its bans fail.
    unavailable: [Option<String>; 2],
}

impl Chains {
    pub(crate) fn new(config: &FirewallConfig) -> Chains {
        Chains {
            chain: config.chain.clone(),
            parents: config.parents.clone(),
            unavailable: [None, None],
        }
    }

    pub(crate) fn chain(&self) -> &str {
        &self.chain
    }

    fn ipt(&self, family: Family, args: &[&str], check: bool) -> Result<bool, FirewallError> {
        let mut all = vec!["-w"];
        all.extend_from_slice(args);
        run(family.tool(), &all, check)
    }

    fn init_family(&self, family: Family) -> Result<(), FirewallError> {
        let chain = self.chain.as_str();
        // Another process may create it at the same moment: check again before failing.
        if !self.ipt(family, &["-n", "-L", chain], true)?
            && !self.ipt(family, &["-N", chain], true)?
            && !self.ipt(family, &["-n", "-L", chain], true)?
        {
            self.ipt(family, &["-N", chain], false)?;
        }
        for parent in &self.parents {
            if !self.ipt(family, &["-C", parent, "-j", chain], true)? {
                self.ipt(family, &["-I", parent, "1", "-j", chain], false)?;
            }
        }
        Ok(())
    }

    /// Creates the chain and jumps in both families; a host without IPv6 (or without
    /// ip6tables) still gets IPv4 protection.
    pub(crate) fn init(&mut self) -> Result<(), FirewallError> {
        self.init_family(Family::V4)?;
        match self.init_family(Family::V6) {
            Ok(()) => self.unavailable[1] = None,
            Err(e) => {
                log::warn!("IPv6 bans disabled: {e}");
                self.unavailable[1] = Some(e.to_string());
            }
        }
        Ok(())
    }

    pub(crate) fn available(&self, family: Family) -> Result<(), FirewallError> {
        match &self.unavailable[family as usize] {
            Some(why) => Err(FirewallError::FamilyUnavailable {
                family: family.label(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Replaces the chain's rules by `rules` (each the part after `-A CHAIN`), atomically.
    pub(crate) fn replace(&self, family: Family, rules: &[String]) -> Result<(), FirewallError> {
        let chain = &self.chain;
        let mut script = format!("*filter\n:{chain} - [0:0]\n-F {chain}\n");
        for rule in rules {
            script.push_str(&format!("-A {chain} {rule}\n"));
        }
        script.push_str("COMMIT\n");
        run_script(
            family.restore_tool(),
            &["-w", "--noflush"],
            &script,
            &crate::words::counted(rules.len(), "rule"),
        )
    }

    /// Runs `lines` (full `-A`/`-D` commands) in one restore batch.
    fn batch(&self, family: Family, lines: &[String]) -> Result<(), FirewallError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut script = String::from("*filter\n");
        for line in lines {
            script.push_str(line);
            script.push('\n');
        }
        script.push_str("COMMIT\n");
        run_script(
            family.restore_tool(),
            &["-w", "--noflush"],
            &script,
            &crate::words::counted(lines.len(), "change"),
        )
    }

    /// The chain's rules as `iptables -S` prints them (`-A CHAIN ...`).
    fn list(&self, family: Family) -> Result<Vec<String>, FirewallError> {
        let text = output(family.tool(), &["-w", "-S", &self.chain])?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect())
    }

    /// Removes the jumps, then the chain, in both families.
    pub(crate) fn flush(&mut self) -> Result<(), FirewallError> {
        for family in Family::BOTH {
            let result = (|| {
                for parent in &self.parents {
                    while self.ipt(family, &["-D", parent, "-j", &self.chain], true)? {}
                }
                if self.ipt(family, &["-n", "-L", &self.chain], true)? {
                    self.ipt(family, &["-F", &self.chain], false)?;
                    self.ipt(family, &["-X", &self.chain], false)?;
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

/// Small batches go rule by rule (two quick processes); larger ones list the chain once
/// and send one restore batch.
const RULE_BY_RULE: usize = 2;

pub struct Iptables {
    chains: Chains,
    action: Action,
}

impl Iptables {
    pub fn new(config: &FirewallConfig) -> Iptables {
        Iptables {
            chains: Chains::new(config),
            action: config.action,
        }
    }

    fn spec(&self, net: &IpNet) -> String {
        format!("-s {net} -j {}", self.action.target())
    }

    /// `-A CHAIN -s NET ` as `iptables -S` starts the rule of `net`.
    fn listed_prefix(&self, net: &IpNet) -> String {
        format!("-A {} -s {net} ", self.chains.chain())
    }

    fn by_family<T>(items: &[T], net: impl Fn(&T) -> &IpNet) -> [(Family, Vec<&T>); 2] {
        Family::BOTH.map(|f| {
            (
                f,
                items.iter().filter(|i| Family::of(net(i)) == f).collect(),
            )
        })
    }
}

impl Firewall for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        self.chains.init()
    }

    fn restore(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        for (family, mine) in Self::by_family(bans, |e| &e.net) {
            if self.chains.available(family).is_err() {
                if !mine.is_empty() {
                    log::warn!(
                        "{} {} {} not restored: the family is unavailable",
                        mine.len(),
                        family.label(),
                        if mine.len() == 1 { "ban" } else { "bans" }
                    );
                }
                continue;
            }
            let rules: Vec<String> = mine.iter().map(|e| self.spec(&e.net)).collect();
            self.chains.replace(family, &rules)?;
        }
        Ok(())
    }

    fn ban(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        for (family, mine) in Self::by_family(bans, |e| &e.net) {
            if mine.is_empty() {
                continue;
            }
            self.chains.available(family)?;
            let chain = self.chains.chain().to_string();
            if mine.len() <= RULE_BY_RULE {
                for e in mine {
                    let net = e.net.to_string();
                    let target = self.action.target();
                    if !self
                        .chains
                        .ipt(family, &["-C", &chain, "-s", &net, "-j", target], true)?
                    {
                        self.chains.ipt(
                            family,
                            &["-A", &chain, "-s", &net, "-j", target],
                            false,
                        )?;
                    }
                }
                continue;
            }
            // The networks the chain holds, read once: a start adds every active ban
            // to what the kernel holds, so this must not be a scan per ban.
            let listed: HashSet<String> = self
                .chains
                .list(family)?
                .iter()
                .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
                .collect();
            let mut seen = HashSet::new();
            let lines: Vec<String> = mine
                .iter()
                .filter(|e| seen.insert(e.net))
                .filter(|e| !listed.contains(&e.net.to_string()))
                .map(|e| format!("-A {chain} {}", self.spec(&e.net)))
                .collect();
            self.chains.batch(family, &lines)?;
        }
        Ok(())
    }

    fn unban(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        for (family, mine) in Self::by_family(nets, |n| n) {
            if mine.is_empty() {
                continue;
            }
            self.chains.available(family)?;
            let chain = self.chains.chain().to_string();
            if mine.len() <= RULE_BY_RULE {
                for net in mine {
                    let net = net.to_string();
                    let target = self.action.target();
                    // Every copy goes: a rule added by hand or by an older run may be doubled.
                    while self.chains.ipt(
                        family,
                        &["-D", &chain, "-s", &net, "-j", target],
                        true,
                    )? {}
                }
                continue;
            }
            let prefixes: HashSet<String> = mine.iter().map(|n| self.listed_prefix(n)).collect();
            let lines: Vec<String> = self
                .chains
                .list(family)?
                .into_iter()
                .filter(|l| prefixes.iter().any(|p| l.starts_with(p.as_str())))
                .map(|l| format!("-D{}", &l[2..]))
                .collect();
            self.chains.batch(family, &lines)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FirewallError> {
        self.chains.flush()
    }
}
