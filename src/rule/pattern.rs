//! Rule patterns: the `<IP>` placeholder and turning a captured address into an `IpAddr`.
//!
//! A pattern marks where the attacker's address stands with `<IP>`. It expands to a strict
//! IPv4 / IPv6 expression in a named group; the captured text is then parsed with
//! `std::net::IpAddr` (never resolved through DNS) and IPv4-mapped IPv6 is folded back to
//! IPv4, so `::ffff:192.0.2.1` and `192.0.2.1` are one attacker.

use std::net::IpAddr;

/// The placeholder a pattern uses for the address.
pub const IP_PLACEHOLDER: &str = "<IP>";

/// Name of the capture group `<IP>` expands to.
pub const IP_GROUP: &str = "ip";

const V4: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}";

/// The regular expression `<IP>` stands for (without the group around it).
pub fn ip_regex() -> String {
    // IPv6: groups of up to four hex digits separated by colons, optionally ending in an
    // embedded IPv4 address. The regex is deliberately a little loose on `::` placement;
    // `IpAddr::from_str` is the final judge.
    format!(r"{V4}|(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:{V4}|[0-9A-Fa-f]{{0,4}})")
}

/// Why a pattern cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("the pattern has no <IP> placeholder")]
    NoPlaceholder,
    #[error("the pattern has more than one <IP> placeholder")]
    ManyPlaceholders,
    #[error("the pattern must not define its own group named `ip`; use <IP>")]
    ReservedGroup,
}

/// Replaces the single `<IP>` of `pattern` by the named address group.
pub fn expand(pattern: &str) -> Result<String, PatternError> {
    match pattern.matches(IP_PLACEHOLDER).count() {
        0 => return Err(PatternError::NoPlaceholder),
        1 => {}
        _ => return Err(PatternError::ManyPlaceholders),
    }
    if pattern.contains("(?P<ip>") || pattern.contains("(?<ip>") {
        return Err(PatternError::ReservedGroup);
    }
    Ok(pattern.replace(IP_PLACEHOLDER, &format!("(?P<{IP_GROUP}>{})", ip_regex())))
}

/// Parses captured address text; IPv4-mapped IPv6 becomes IPv4.
pub fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let ip: IpAddr = text.parse().ok()?;
    Some(crate::net::normalize(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::bytes::Regex;

    fn capture(pattern: &str, line: &str) -> Option<IpAddr> {
        let re = Regex::new(&expand(pattern).unwrap()).unwrap();
        let caps = re.captures(line.as_bytes())?;
        parse_ip(caps.name(IP_GROUP)?.as_bytes())
    }

    #[test]
    fn expands_to_ipv4_and_ipv6() {
        let p = r"^from <IP> port \d+$";
        assert_eq!(
            capture(p, "from 192.0.2.7 port 22"),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            capture(p, "from 2001:db8::1 port 22"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(capture(p, "from ::1 port 22"), Some("::1".parse().unwrap()));
    }

    #[test]
    fn mapped_ipv6_is_folded_to_ipv4() {
        let p = r"^from <IP>$";
        assert_eq!(
            capture(p, "from ::ffff:198.51.100.3"),
            Some("198.51.100.3".parse().unwrap())
        );
    }

    #[test]
    fn host_names_and_bad_octets_never_match() {
        let p = r"^from <IP> port";
        assert_eq!(capture(p, "from example.com port"), None);
        assert_eq!(capture(p, "from 256.1.1.1 port"), None);
        assert_eq!(capture(p, "from 1.2.3 port"), None);
    }

    #[test]
    fn placeholder_count_is_checked() {
        assert_eq!(expand("no address"), Err(PatternError::NoPlaceholder));
        assert_eq!(expand("<IP> and <IP>"), Err(PatternError::ManyPlaceholders));
        assert_eq!(expand("(?P<ip>x) <IP>"), Err(PatternError::ReservedGroup));
    }

    #[test]
    fn loose_ipv6_text_is_rejected_by_the_parser() {
        assert_eq!(parse_ip(b"1:2:3:4:5:6:7:8:9"), None);
        assert_eq!(
            parse_ip(b"::ffff:1.2.3.4"),
            Some("1.2.3.4".parse().unwrap())
        );
    }
}
