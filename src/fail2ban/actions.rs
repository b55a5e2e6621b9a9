//! fail2ban's actions: which of a jail's actions ban (pyfilter does that in its own
//! firewall backend) and which do something else it will not do (mail, reports to outside
//! services, Cloudflare), and the `name[key=value, ...]` form filters, backends and actions
//! share.

use crate::config::Backend;

/// `name[key=value, key="value", ...]` (fail2ban's `extractOptions`): the name and the
/// options, in order.
pub fn split_options(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let text = text.trim();
    let Some(open) = text.find('[') else {
        return Ok((text.to_string(), Vec::new()));
    };
    let name = text[..open].trim().to_string();
    let inner = text[open + 1..]
        .trim_end()
        .strip_suffix(']')
        .ok_or_else(|| format!("`{text}`: `[` without its closing `]`"))?;
    let mut options = Vec::new();
    let mut rest = inner;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok((name, options));
        }
        let key_end = rest
            .find(|c: char| !(c.is_alphanumeric() || "_-.".contains(c)))
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after = rest[key_end..].trim_start();
        let Some(after) = after.strip_prefix('=').filter(|_| !key.is_empty()) else {
            return Err(format!("`{text}`: options are written key=value"));
        };
        let after = after.trim_start();
        let (value, next) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = &after[1..];
                let end = body
                    .find(q)
                    .ok_or_else(|| format!("`{text}`: a quote is not closed"))?;
                (&body[..end], &body[end + 1..])
            }
            _ => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim(), &after[end..])
            }
        };
        options.push((key.to_lowercase(), value.to_string()));
        rest = next;
    }
}

/// The pyfilter firewall backend closest to a fail2ban ban action.
pub fn firewall_of(action: &str) -> Option<Backend> {
    if action.starts_with("nftables") {
        Some(Backend::Nftables)
    } else if action.starts_with("iptables-ipset") {
        Some(Backend::Ipset)
    } else if action.starts_with("iptables") {
        Some(Backend::Iptables)
    } else {
        None
    }
}

/// fail2ban's own actions that ban an address in some firewall (or `hosts.deny`).
const BANNING: &[&str] = &[
    "iptables",
    "nftables",
    "firewallcmd",
    "ufw",
    "shorewall",
    "route",
    "pf",
    "ipfw",
    "bsd-ipfw",
    "osx-ipfw",
    "osx-afctl",
    "ipfilter",
    "npf",
    "apf",
    "hostsdeny",
    "nginx-block-map",
    "netscaler",
    "symbiosis-blacklist-allports",
];

/// What an action of a jail is, for pyfilter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// It bans: pyfilter bans in its own firewall backend instead.
    Ban,
    /// Something else, with why pyfilter does not do it.
    Other(&'static str),
}

/// Whether `name` bans (one of the jail's ban actions, or a fail2ban action that bans) or
/// does something else.
pub fn kind(name: &str, ban_actions: &[String]) -> Kind {
    let banning = ban_actions.iter().any(|b| b == name)
        || BANNING
            .iter()
            .any(|b| name == *b || name.starts_with(&format!("{b}-")));
    if banning {
        return Kind::Ban;
    }
    Kind::Other(
        if name.contains("mail") || name.starts_with("smtp") || name == "complain" {
            "pyfilter sends no mail (`pyfilter list` and the admin show its bans)"
        } else if name.starts_with("cloudflare") {
            "pyfilter bans in this server's firewall, not at Cloudflare"
        } else if [
            "abuseipdb",
            "blocklist_de",
            "dshield",
            "mynetwatchman",
            "xarf-login-attack",
            "ipthreat",
            "badips",
        ]
        .iter()
        .any(|s| name.starts_with(s))
        {
            "pyfilter reports bans to no outside service"
        } else if name == "dummy" {
            "a placeholder that bans nothing"
        } else {
            "pyfilter's only action is its own firewall ban"
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_options_as_fail2ban_writes_them() {
        assert_eq!(
            split_options("sshd[mode=aggressive]").unwrap(),
            ("sshd".into(), vec![("mode".into(), "aggressive".into())])
        );
        assert_eq!(
            split_options(
                r#"iptables-multiport[name=sshd, port="ssh,2222", protocol=tcp, chain='INPUT']"#
            )
            .unwrap()
            .1,
            [
                ("name".to_string(), "sshd".to_string()),
                ("port".into(), "ssh,2222".into()),
                ("protocol".into(), "tcp".into()),
                ("chain".into(), "INPUT".into())
            ]
        );
        assert_eq!(
            split_options("  postfix ").unwrap(),
            ("postfix".into(), vec![])
        );
        assert_eq!(
            split_options("systemd[journalpath=/var/log/journal/remote]")
                .unwrap()
                .1,
            [(
                "journalpath".to_string(),
                "/var/log/journal/remote".to_string()
            )]
        );
        assert!(split_options("sshd[mode=aggressive").is_err());
        assert!(split_options("sshd[aggressive]").is_err());
        assert!(split_options(r#"x[a="open]"#).is_err());
    }

    #[test]
    fn ban_actions_and_the_others() {
        let bans = vec!["iptables-multiport".to_string(), "my-ban".to_string()];
        assert_eq!(kind("iptables-multiport", &bans), Kind::Ban);
        assert_eq!(kind("my-ban", &bans), Kind::Ban, "the jail's own banaction");
        assert_eq!(kind("nftables-allports", &bans), Kind::Ban);
        assert_eq!(kind("ufw", &bans), Kind::Ban);
        assert!(
            matches!(kind("sendmail-whois-lines", &bans), Kind::Other(w) if w.contains("mail"))
        );
        assert!(matches!(kind("mail-whois", &bans), Kind::Other(w) if w.contains("mail")));
        assert!(matches!(kind("abuseipdb", &bans), Kind::Other(w) if w.contains("outside")));
        assert!(matches!(kind("cloudflare", &bans), Kind::Other(w) if w.contains("Cloudflare")));
        assert_eq!(firewall_of("iptables-ipset-proto6"), Some(Backend::Ipset));
        assert_eq!(firewall_of("nftables-multiport"), Some(Backend::Nftables));
        assert_eq!(firewall_of("iptables-multiport"), Some(Backend::Iptables));
        assert_eq!(firewall_of("ufw"), None);
    }
}
