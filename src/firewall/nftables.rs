//! nftables backend: pyfilter's own table with address sets, changed by `nft -f` batches.
//!
//! The table (`inet pyfilter` by default, named by `firewall.set`) holds four sets —
//! `v4`/`v6` for addresses, `net4`/`net6` (`flags interval`) for CIDR blocks, all with
//! `flags timeout` so the kernel expires bans — and one base chain per configured hook
//! (`input` by default; add `forward` for containers) whose rules drop or reject members.
//! Every change is one transaction: bans and unbans of single addresses go straight to
//! the kernel over netlink (`netlink`), everything else — the structure, restores,
//! blocks, and any change netlink could not make — is fed to `nft -f -`. Nothing outside
//! the table is touched, and `flush` deletes the table.

use std::time::Duration;

use ipnet::IpNet;

use super::iptables::Family;
use super::netlink::{Change, Direct, SetElements};
use super::{Entry, Firewall, FirewallError, output, run, run_script};
use crate::config::{Action, FirewallConfig};

pub struct Nftables {
    table: String,
    hooks: Vec<String>,
    priority: i32,
    action: Action,
    maxelem: u32,
    /// Where changes of single addresses go first.
    netlink: Direct<SetElements>,
}

/// (set, element type, flags, match keyword)
const SETS: [(&str, &str, &str, &str); 4] = [
    ("v4", "ipv4_addr", "timeout", "ip"),
    ("net4", "ipv4_addr", "interval, timeout", "ip"),
    ("v6", "ipv6_addr", "timeout", "ip6"),
    ("net6", "ipv6_addr", "interval, timeout", "ip6"),
];

fn set_of(net: &IpNet) -> &'static str {
    let host = net.prefix_len() == net.max_prefix_len();
    match (Family::of(net), host) {
        (Family::V4, true) => "v4",
        (Family::V4, false) => "net4",
        (Family::V6, true) => "v6",
        (Family::V6, false) => "net6",
    }
}

/// Whether a set holds single addresses (whose changes netlink makes) rather than
/// blocks (interval sets, left to `nft`, which turns a block into a range).
fn holds_addresses(set: &str) -> bool {
    set == "v4" || set == "v6"
}

/// Elements per `add element` statement, to keep lines reasonable in huge restores.
const CHUNK: usize = 2000;

impl Nftables {
    pub fn new(config: &FirewallConfig) -> Nftables {
        Nftables {
            table: config.set.clone(),
            hooks: config.hooks.clone(),
            priority: config.priority,
            action: config.action,
            maxelem: config.maxelem,
            netlink: Direct::new(SetElements::open, "nft"),
        }
    }

    /// The table, its sets and chains, declared (idempotent), and the chains' rules
    /// replaced.
    fn structure(&self) -> String {
        let verdict = match self.action {
            Action::Drop => "drop",
            Action::Reject => "reject",
        };
        let mut s = format!("table inet {} {{\n", self.table);
        for (name, ty, flags, _) in SETS {
            s.push_str(&format!(
                "  set {name} {{ type {ty}; flags {flags}; size {}; }}\n",
                self.maxelem
            ));
        }
        for hook in &self.hooks {
            s.push_str(&format!(
                "  chain {hook} {{ type filter hook {hook} priority {}; policy accept; }}\n",
                self.priority
            ));
        }
        s.push_str("}\n");
        for hook in &self.hooks {
            s.push_str(&format!("flush chain inet {} {hook}\n", self.table));
            for (name, _, _, keyword) in SETS {
                s.push_str(&format!(
                    "add rule inet {} {hook} {keyword} saddr @{name} {verdict}\n",
                    self.table
                ));
            }
        }
        s
    }

    fn element(e: &Entry) -> String {
        let member = if set_of(&e.net).starts_with("net") {
            e.net.to_string()
        } else {
            e.net.addr().to_string()
        };
        match e.timeout_secs() {
            Some(secs) => format!("{member} timeout {secs}s"),
            None => member,
        }
    }

    /// Makes the changes `changes` gives to the set `name` over netlink, when it holds
    /// single addresses; whether they were made (otherwise they go to `nft`).
    fn direct(&mut self, name: &str, changes: impl FnOnce() -> Vec<Change>) -> bool {
        if !holds_addresses(name) {
            return false;
        }
        let changes = changes();
        let Nftables { netlink, table, .. } = self;
        netlink.apply(name, |s| s.apply(table, name, &changes))
    }

    fn add_elements(&self, script: &mut String, bans: &[&Entry], set: &str) {
        for chunk in bans.chunks(CHUNK) {
            let elements: Vec<String> = chunk.iter().map(|e| Self::element(e)).collect();
            script.push_str(&format!(
                "add element inet {} {set} {{ {} }}\n",
                self.table,
                elements.join(", ")
            ));
        }
    }

    fn apply(&self, script: &str, what: &str) -> Result<(), FirewallError> {
        run_script("nft", &["-f", "-"], script, what).map_err(|e| match e {
            // The kernel says ENOSPC or ENFILE, depending on the version.
            FirewallError::Command { stderr, .. }
                if stderr.contains("No space left on device")
                    || stderr.contains("Too many open files") =>
            {
                FirewallError::SetFull {
                    set: format!("inet {}", self.table),
                    maxelem: self.maxelem,
                    detail: stderr,
                }
            }
            other => other,
        })
    }
}

impl Firewall for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        self.apply(&self.structure(), "creating the table")
    }

    fn restore(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        let mut script = self.structure();
        for (name, _, _, _) in SETS {
            script.push_str(&format!("flush set inet {} {name}\n", self.table));
            let mine: Vec<&Entry> = bans.iter().filter(|e| set_of(&e.net) == name).collect();
            self.add_elements(&mut script, &mine, name);
        }
        self.apply(
            &script,
            &format!("restoring {}", crate::words::counted(bans.len(), "ban")),
        )
    }

    fn ban(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        let mut script = String::new();
        for (name, _, _, _) in SETS {
            let mine: Vec<&Entry> = bans.iter().filter(|e| set_of(&e.net) == name).collect();
            if mine.is_empty() {
                continue;
            }
            let add =
                |e: &&Entry| Change::Add(e.net.addr(), e.timeout_secs().map(Duration::from_secs));
            if self.direct(name, || mine.iter().map(add).collect()) {
                continue;
            }
            self.add_elements(&mut script, &mine, name);
        }
        if script.is_empty() {
            return Ok(());
        }
        self.apply(&script, &crate::words::counted(bans.len(), "ban"))
    }

    /// Deleting a missing element fails the whole transaction, so each is added first
    /// (a no-op when present): unbanning stays idempotent.
    fn unban(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        let mut script = String::new();
        for (name, _, _, _) in SETS {
            let theirs: Vec<&IpNet> = nets.iter().filter(|n| set_of(n) == name).collect();
            if theirs.is_empty() {
                continue;
            }
            if self.direct(name, || {
                theirs.iter().map(|n| Change::Delete(n.addr())).collect()
            }) {
                continue;
            }
            let mine: Vec<String> = theirs
                .iter()
                .map(|n| {
                    Self::element(&Entry {
                        net: **n,
                        timeout: None,
                    })
                })
                .collect();
            for chunk in mine.chunks(CHUNK) {
                let list = chunk.join(", ");
                script.push_str(&format!(
                    "add element inet {} {name} {{ {list} }}\n",
                    self.table
                ));
                script.push_str(&format!(
                    "delete element inet {} {name} {{ {list} }}\n",
                    self.table
                ));
            }
        }
        if script.is_empty() {
            return Ok(());
        }
        self.apply(&script, &crate::words::counted(nets.len(), "unban"))
    }

    fn flush(&mut self) -> Result<(), FirewallError> {
        let tables = output("nft", &["list", "tables"])?;
        if tables
            .lines()
            .any(|l| l.trim() == format!("table inet {}", self.table))
        {
            run("nft", &["delete", "table", "inet", &self.table], false)?;
        }
        Ok(())
    }
}
