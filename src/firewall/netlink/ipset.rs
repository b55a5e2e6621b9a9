//! ipset: adding and deleting the members of pyfilter's `hash:ip` sets, one message per
//! address (`IPSET_CMD_ADD` / `IPSET_CMD_DEL`), as `ipset add -exist` and `ipset del
//! -exist` send it.

use std::io;

use super::{
    Change, NLA_F_NET_BYTEORDER, NLM_F_ACK, NLM_F_REQUEST, Socket, attr, c_string, end_nest,
    finish, header, nest, nfgenmsg,
};

const NFNL_SUBSYS_IPSET: u16 = 6;
const IPSET_CMD_ADD: u16 = 9;
const IPSET_CMD_DEL: u16 = 10;
/// The oldest protocol still spoken: kernels before 4.20 take only 6, later ones 6 and 7.
const IPSET_PROTOCOL: u8 = 6;
const IPSET_ATTR_PROTOCOL: u16 = 1;
const IPSET_ATTR_SETNAME: u16 = 2;
const IPSET_ATTR_DATA: u16 = 7;
const IPSET_ATTR_IP: u16 = 1;
const IPSET_ATTR_TIMEOUT: u16 = 6;
const IPSET_ATTR_IPADDR_IPV4: u16 = 1;
const IPSET_ATTR_IPADDR_IPV6: u16 = 2;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// Messages per `sendmsg`: the kernel answers each, and the answers must fit in the
/// socket's receive buffer.
const PER_SEND: usize = 64;

/// Changes the members of ipset sets of single addresses.
pub struct IpsetMembers {
    socket: Socket,
}

impl IpsetMembers {
    pub fn open() -> io::Result<IpsetMembers> {
        Ok(IpsetMembers {
            socket: Socket::open()?,
        })
    }

    /// Applies `changes` to the set `set`, each address on its own (ipset has no
    /// transactions). As with `-exist`, adding a present address sets its timeout anew
    /// (no timeout: for ever), and deleting a missing one is no error. The first error
    /// is returned once every answer of its send has been read; changes before it stay
    /// made, which is harmless since each is idempotent.
    pub fn apply(&mut self, set: &str, changes: &[Change]) -> io::Result<()> {
        for chunk in changes.chunks(PER_SEND) {
            let mut out = Vec::new();
            let awaited: Vec<u32> = chunk
                .iter()
                .map(|change| self.message(&mut out, set, change))
                .collect();
            self.socket.send(&out)?;
            self.socket.answers(awaited[0], awaited)?;
        }
        Ok(())
    }

    /// One ADD or DEL message; returns its sequence number. Without `NLM_F_EXCL` the
    /// kernel applies `-exist`.
    fn message(&mut self, out: &mut Vec<u8>, set: &str, change: &Change) -> u32 {
        let seq = self.socket.next_seq();
        let (command, ip, timeout) = match *change {
            Change::Add(ip, timeout) => (IPSET_CMD_ADD, ip, Some(timeout)),
            Change::Delete(ip) => (IPSET_CMD_DEL, ip, None),
        };
        let at = header(
            out,
            (NFNL_SUBSYS_IPSET << 8) | command,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
        );
        let family = if ip.is_ipv4() {
            NFPROTO_IPV4
        } else {
            NFPROTO_IPV6
        };
        nfgenmsg(out, family, 0);
        attr(out, IPSET_ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
        attr(out, IPSET_ATTR_SETNAME, &c_string(set));
        let data = nest(out, IPSET_ATTR_DATA);
        let address = nest(out, IPSET_ATTR_IP);
        match ip {
            std::net::IpAddr::V4(v4) => attr(
                out,
                IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER,
                &v4.octets(),
            ),
            std::net::IpAddr::V6(v6) => attr(
                out,
                IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER,
                &v6.octets(),
            ),
        }
        end_nest(out, address);
        if let Some(timeout) = timeout {
            // 0 is for ever, as in `ipset add SET IP timeout 0`; at least 1 otherwise.
            let secs = timeout.map_or(0, |t| {
                u32::try_from(t.as_secs() + u64::from(t.subsec_nanos() > 0))
                    .unwrap_or(u32::MAX)
                    .max(1)
            });
            attr(
                out,
                IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
                &secs.to_be_bytes(),
            );
        }
        end_nest(out, data);
        finish(out, at);
        seq
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{messages, socketless};
    use super::*;

    #[test]
    fn each_address_is_a_message_with_its_timeout_in_seconds() {
        let mut m = IpsetMembers {
            socket: socketless(),
        };
        let mut out = Vec::new();
        let v4 = "192.0.2.1".parse().unwrap();
        let v6 = "2001:db8::1".parse().unwrap();
        m.message(
            &mut out,
            "pyfilter-v4",
            &Change::Add(v4, Some(Duration::from_secs(600))),
        );
        m.message(&mut out, "pyfilter-v6", &Change::Add(v6, None));
        m.message(&mut out, "pyfilter-v4", &Change::Delete(v4));
        let kinds: Vec<u16> = messages(&out).iter().map(|m| m.0).collect();
        assert_eq!(
            kinds,
            [
                (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_ADD,
                (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_ADD,
                (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_DEL
            ]
        );
        assert!(out.windows(4).any(|w| w == 600u32.to_be_bytes()));
        assert!(out.windows(4).any(|w| w == [192, 0, 2, 1]));
    }
}
