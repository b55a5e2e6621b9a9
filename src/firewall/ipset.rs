//! ipset backend: bans are members of kernel sets, matched by one rule per set.
//!
//! Four sets, named from `firewall.set` (default `pyfilter`): `-v4` and `-v6` (`hash:ip`)
//! for addresses, `-net4` and `-net6` (`hash:net`) for CIDR blocks, all created with
//! `timeout` so the kernel itself expires a ban, and with `maxelem` so a full set is an
//! error pyfilter reports rather than a ban silently lost. pyfilter's iptables chain holds
//! one `-m set --match-set` rule per set: a packet costs one hash lookup per set, however
//! many bans there are. Every batch is one `ipset restore`.

use ipnet::IpNet;

use super::iptables::{Chains, Family};
use super::netlink::{Change, Direct, IpsetMembers};
use super::{Entry, Firewall, FirewallError, output, run, run_script};
use crate::config::{Action, FirewallConfig};

pub struct Ipset {
    chains: Chains,
    action: Action,
    base: String,
    maxelem: u32,
    /// Where changes of single addresses go first; blocks and whatever it could not do
    /// go to `ipset restore`.
    netlink: Direct<IpsetMembers>,
}

/// Which of the four sets a network belongs in.
fn kind(net: &IpNet) -> (&'static str, &'static str, &'static str) {
    let host = net.prefix_len() == net.max_prefix_len();
    match (Family::of(net), host) {
        (Family::V4, true) => ("-v4", "hash:ip", "inet"),
        (Family::V6, true) => ("-v6", "hash:ip", "inet6"),
        (Family::V4, false) => ("-net4", "hash:net", "inet"),
        (Family::V6, false) => ("-net6", "hash:net", "inet6"),
    }
}

const SETS: [(&str, &str, &str); 4] = [
    ("-v4", "hash:ip", "inet"),
    ("-net4", "hash:net", "inet"),
    ("-v6", "hash:ip", "inet6"),
    ("-net6", "hash:net", "inet6"),
];

impl Ipset {
    pub fn new(config: &FirewallConfig) -> Ipset {
        Ipset {
            chains: Chains::new(config),
            action: config.action,
            base: config.set.clone(),
            maxelem: config.maxelem,
            netlink: Direct::new(IpsetMembers::open, "ipset"),
        }
    }

    fn set(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.base)
    }

    fn create_line(&self, name: &str, kind: &str, family: &str) -> String {
        format!(
            "create {name} {kind} family {family} timeout 0 maxelem {} -exist\n",
            self.maxelem
        )
    }

    fn member(e: &Entry) -> String {
        // A host is added as its address: hash:ip takes no prefix length.
        if e.net.prefix_len() == e.net.max_prefix_len() {
            e.net.addr().to_string()
        } else {
            e.net.to_string()
        }
    }

    fn add_line(&self, e: &Entry, set: &str) -> String {
        format!(
            "add {set} {} timeout {} -exist\n",
            Self::member(e),
            e.timeout_secs().unwrap_or(0)
        )
    }

    fn restore_script(&self, script: &str, what: &str) -> Result<(), FirewallError> {
        run_script("ipset", &["restore", "-exist"], script, what).map_err(|e| match e {
            FirewallError::Command { stderr, .. } if stderr.contains("is full") => {
                let set = stderr
                    .split_whitespace()
                    .find(|w| w.starts_with(&self.base))
                    .unwrap_or(&self.base)
                    .to_string();
                FirewallError::SetFull {
                    set,
                    maxelem: self.maxelem,
                    detail: stderr,
                }
            }
            other => other,
        })
    }

    /// Makes the changes of single addresses among `items` over netlink, a set at a
    /// time; returns what is left for `ipset restore`: the blocks, and the addresses of a
    /// set whose change netlink could not make.
    fn direct<'a, T>(
        &mut self,
        items: &'a [T],
        net: impl Fn(&T) -> IpNet,
        change: impl Fn(&T) -> Change,
    ) -> Vec<&'a T> {
        let mut rest = Vec::new();
        for suffix in ["-v4", "-v6"] {
            let mine: Vec<&T> = items.iter().filter(|i| kind(&net(i)).0 == suffix).collect();
            let changes: Vec<Change> = mine.iter().map(|i| change(i)).collect();
            let set = self.set(suffix);
            if !changes.is_empty() && !self.netlink.apply(&set, |m| m.apply(&set, &changes)) {
                rest.extend(mine);
            }
        }
        rest.extend(items.iter().filter(|i| kind(&net(i)).1 == "hash:net"));
        rest
    }

    fn rules(&self, family: Family) -> Vec<String> {
        SETS.iter()
            .filter(|(_, _, f)| (*f == "inet") == (family == Family::V4))
            .map(|(suffix, _, _)| {
                format!(
                    "-m set --match-set {} src -j {}",
                    self.set(suffix),
                    self.action.target()
                )
            })
            .collect()
    }
}

impl Firewall for Ipset {
    fn name(&self) -> &'static str {
        "ipset"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        let mut script = String::new();
        for (suffix, kind, family) in SETS {
            script.push_str(&self.create_line(&self.set(suffix), kind, family));
        }
        self.restore_script(&script, "creating sets")?;
        self.chains.init()?;
        for family in Family::BOTH {
            if self.chains.available(family).is_ok() {
                self.chains.replace(family, &self.rules(family))?;
            }
        }
        Ok(())
    }

    /// Fills fresh sets and swaps them in: the kernel never sees a half-filled set.
    fn restore(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        let mut script = String::with_capacity(64 * bans.len() + 512);
        for (suffix, kind, family) in SETS {
            let tmp = self.set(&format!("{suffix}-new"));
            script.push_str(&self.create_line(&self.set(suffix), kind, family));
            script.push_str(&self.create_line(&tmp, kind, family));
            script.push_str(&format!("flush {tmp}\n"));
        }
        for e in bans {
            let (suffix, _, _) = kind(&e.net);
            script.push_str(&self.add_line(e, &self.set(&format!("{suffix}-new"))));
        }
        for (suffix, _, _) in SETS {
            let (set, tmp) = (self.set(suffix), self.set(&format!("{suffix}-new")));
            script.push_str(&format!("swap {tmp} {set}\ndestroy {tmp}\n"));
        }
        self.restore_script(
            &script,
            &format!("restoring {}", crate::words::counted(bans.len(), "ban")),
        )
    }

    fn ban(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        let rest = self.direct(bans, |e| e.net, |e| Change::Add(e.net.addr(), e.timeout));
        if rest.is_empty() {
            return Ok(());
        }
        let script: String = rest
            .iter()
            .map(|e| self.add_line(e, &self.set(kind(&e.net).0)))
            .collect();
        self.restore_script(&script, &crate::words::counted(rest.len(), "ban"))
    }

    fn unban(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        let rest = self.direct(nets, |n| *n, |n| Change::Delete(n.addr()));
        if rest.is_empty() {
            return Ok(());
        }
        let script: String = rest
            .iter()
            .map(|n| {
                format!(
                    "del {} {} -exist\n",
                    self.set(kind(n).0),
                    Self::member(&Entry {
                        net: **n,
                        timeout: None
                    })
                )
            })
            .collect();
        self.restore_script(&script, &crate::words::counted(rest.len(), "unban"))
    }

    fn flush(&mut self) -> Result<(), FirewallError> {
        self.chains.flush()?;
        let existing = output("ipset", &["list", "-n"])?;
        for (suffix, _, _) in SETS {
            for name in [self.set(suffix), self.set(&format!("{suffix}-new"))] {
                if existing.lines().any(|l| l.trim() == name) {
                    run("ipset", &["destroy", &name], false)?;
                }
            }
        }
        Ok(())
    }
}
