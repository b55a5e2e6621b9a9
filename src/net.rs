//! Addresses and networks as users write them, and the ignore list.
//!
//! A ban targets an `IpNet`: a single address is a host network (`/32`, `/128`). Users
//! write plain addresses or CIDR blocks; output shows a host network as a plain address.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// Why a text is not an address or a block pyfilter accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("`{text}` has host bits set; did you mean {network}?")]
    HostBits { text: String, network: IpNet },
    #[error("`{0}` is not an IP address or CIDR block (like 192.0.2.1 or 198.51.100.0/24)")]
    NotANetwork(String),
}

/// Parses `192.0.2.1`, `2001:db8::1`, `198.51.100.0/24` or `2001:db8::/32`. Host bits
/// set in a CIDR block are refused: `10.0.0.1/8` is almost always a typo.
pub fn parse_net(text: &str) -> Result<IpNet, NetError> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(normalize(ip)));
    }
    match text.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(NetError::HostBits {
            text: text.to_string(),
            network: net.trunc(),
        }),
        Err(_) => Err(NetError::NotANetwork(text.to_string())),
    }
}

/// Shows a host network as its address, anything wider in CIDR notation.
pub fn display_net(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// The network an attempt from `ip` counts against: the address itself, or with
/// `ipv6_prefix` below 128 the IPv6 prefix it belongs to.
pub fn aggregate(ip: IpAddr, ipv6_prefix: u8) -> IpNet {
    match ip {
        IpAddr::V6(v6) if ipv6_prefix < 128 => IpNet::V6(
            ipnet::Ipv6Net::new(v6, ipv6_prefix)
                .expect("prefix validated at load")
                .trunc(),
        ),
        ip => IpNet::from(ip),
    }
}

/// A network that deserializes from the forms `parse_net` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net(pub IpNet);

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_net(&text).map(Net).map_err(serde::de::Error::custom)
    }
}

/// Addresses and networks that are never banned.
#[derive(Debug, Clone, Default)]
pub struct IgnoreList {
    nets: Vec<IpNet>,
}

impl IgnoreList {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> IgnoreList {
        IgnoreList {
            nets: nets.into_iter().collect(),
        }
    }

    /// The ignored network that holds `ip`, if any.
    pub fn covering(&self, ip: IpAddr) -> Option<&IpNet> {
        self.nets.iter().find(|n| n.contains(&ip))
    }

    /// The ignored network that a ban of `net` would hit (either contains the other).
    pub fn overlapping(&self, net: &IpNet) -> Option<&IpNet> {
        self.nets
            .iter()
            .find(|n| n.contains(net) || net.contains(*n))
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// Folds IPv4-mapped IPv6 (`::ffff:a.b.c.d`) to plain IPv4.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_blocks() {
        assert_eq!(display_net(&parse_net("192.0.2.1").unwrap()), "192.0.2.1");
        assert_eq!(
            display_net(&parse_net("::ffff:192.0.2.1").unwrap()),
            "192.0.2.1"
        );
        assert_eq!(
            display_net(&parse_net("198.51.100.0/24").unwrap()),
            "198.51.100.0/24"
        );
        assert_eq!(
            display_net(&parse_net("2001:db8::/32").unwrap()),
            "2001:db8::/32"
        );
    }

    #[test]
    fn refuses_host_bits_and_names() {
        assert!(
            parse_net("10.0.0.1/8")
                .unwrap_err()
                .to_string()
                .contains("did you mean 10.0.0.0/8")
        );
        assert!(
            parse_net("example.com")
                .unwrap_err()
                .to_string()
                .contains("not an IP address")
        );
        assert!(parse_net("1.2.3.4/33").is_err());
    }

    #[test]
    fn ipv6_addresses_aggregate_to_their_prefix() {
        let ip = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(aggregate(ip, 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(aggregate(ip, 128).to_string(), "2001:db8:1:2:3:4:5:6/128");
        assert_eq!(
            aggregate("192.0.2.1".parse().unwrap(), 64).to_string(),
            "192.0.2.1/32"
        );
    }

    #[test]
    fn ignore_list_covers_and_overlaps() {
        let list = IgnoreList::new([parse_net("127.0.0.0/8").unwrap(), parse_net("::1").unwrap()]);
        assert!(list.covering("127.1.2.3".parse().unwrap()).is_some());
        assert!(list.covering("::1".parse().unwrap()).is_some());
        assert!(list.covering("192.0.2.1".parse().unwrap()).is_none());
        assert!(list.overlapping(&parse_net("0.0.0.0/0").unwrap()).is_some());
        assert!(
            list.overlapping(&parse_net("192.0.2.0/24").unwrap())
                .is_none()
        );
    }
}
