//! fail2ban's `ignoreip`: addresses, CIDR blocks (host bits allowed, as in `127.0.0.1/8`),
//! IPv4 netmasks (`192.0.2.0/255.255.255.0`), and what pyfilter cannot take: host names
//! (pyfilter never resolves names) and `file:` lists.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// One word of an `ignoreip` list, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    Net(IpNet),
    /// Not an address: a host name, or anything else, with why it is not carried over.
    Not {
        word: String,
        why: &'static str,
    },
}

/// The words of an `ignoreip` value (split on blanks and commas, as fail2ban does).
pub fn parse_list(value: &str) -> Vec<Ignored> {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(parse_one)
        .collect()
}

fn parse_one(word: &str) -> Ignored {
    if word.starts_with("file:") {
        return Ignored::Not {
            word: word.to_string(),
            why: "a file of addresses: copy its addresses into `ignore`",
        };
    }
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Ignored::Net(IpNet::from(plain(ip)));
    }
    if let Some((addr, mask)) = word.split_once('/')
        && let Ok(ip) = addr.parse::<IpAddr>()
    {
        let prefix = match (mask.parse::<u8>(), mask.parse::<Ipv4Addr>(), ip) {
            (Ok(p), _, _) => Some(p),
            (_, Ok(m), IpAddr::V4(_)) => netmask_prefix(m),
            _ => None,
        };
        // fail2ban masks the host bits away (`127.0.0.1/8` is 127.0.0.0/8).
        if let Some(net) = prefix.and_then(|p| IpNet::new(ip, p).ok()) {
            return Ignored::Net(net.trunc());
        }
        return Ignored::Not {
            word: word.to_string(),
            why: "not an address or CIDR block",
        };
    }
    let hostname = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    Ignored::Not {
        word: word.to_string(),
        why: if hostname {
            "a host name: pyfilter never resolves names; write its addresses in `ignore`"
        } else {
            "not an address, CIDR block or host name"
        },
    }
}

/// `::ffff:192.0.2.1` is 192.0.2.1, as pyfilter counts it.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The prefix length of a contiguous IPv4 netmask.
fn netmask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(value: &str) -> Vec<String> {
        parse_list(value)
            .into_iter()
            .map(|i| match i {
                Ignored::Net(n) => n.to_string(),
                Ignored::Not { word, .. } => format!("not {word}"),
            })
            .collect()
    }

    #[test]
    fn addresses_blocks_and_masks_as_fail2ban_reads_them() {
        assert_eq!(
            nets(
                "127.0.0.1/8 ::1, 192.0.2.7\n  198.51.100.0/255.255.255.0 2001:db8::1/64 ::ffff:203.0.113.5"
            ),
            [
                "127.0.0.0/8",
                "::1/128",
                "192.0.2.7/32",
                "198.51.100.0/24",
                "2001:db8::/64",
                "203.0.113.5/32"
            ]
        );
    }

    #[test]
    fn host_names_files_and_garbage_are_not_carried() {
        assert_eq!(
            nets("office.example.org file:/etc/fail2ban/ignore.txt 192.0.2.1/40 #"),
            [
                "not office.example.org",
                "not file:/etc/fail2ban/ignore.txt",
                "not 192.0.2.1/40",
                "not #"
            ]
        );
        assert!(matches!(
            &parse_list("192.0.2.0/255.0.255.0")[0],
            Ignored::Not { .. }
        ));
    }
}
