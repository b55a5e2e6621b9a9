//! nf_tables: adding and deleting the elements of pyfilter's address sets, each batch of
//! changes one kernel transaction (`NFNL_MSG_BATCH_BEGIN`, `NFT_MSG_NEWSETELEM` /
//! `NFT_MSG_DELSETELEM`, `NFNL_MSG_BATCH_END`), as `nft add element` and `nft delete
//! element` send it.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use super::{
    Change, NLM_F_ACK, NLM_F_REQUEST, Socket, attr, c_string, end_nest, finish, header, nest,
    nfgenmsg,
};

const NLM_F_CREATE: u16 = 0x400;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_INET: u8 = 1;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;

/// Elements per message: an attribute's length is 16 bits, and an IPv6 element with its
/// timeout takes 40 bytes.
const PER_MESSAGE: usize = 1000;
/// Messages per batch, so one `sendmsg` stays well inside the socket's send buffer.
const PER_BATCH: usize = 4;

/// Changes the elements of sets of single addresses in `inet` tables.
pub struct SetElements {
    socket: Socket,
}

impl SetElements {
    pub fn open() -> io::Result<SetElements> {
        Ok(SetElements {
            socket: Socket::open()?,
        })
    }

    /// Applies `changes` to the set `set` of the `inet` table `table`. Each batch of up
    /// to a few thousand changes is one transaction, applied whole or not at all; an
    /// error is the kernel's (`ENOENT` for a missing table or set, `ENOSPC` for a full
    /// set...) or a timeout. Batches before a failing one stay applied, which is
    /// harmless: every change is idempotent. Adding a present address is a no-op, and a
    /// deletion is sent as an add and a delete in one transaction, since the kernel
    /// refuses deleting a missing element.
    pub fn apply(&mut self, table: &str, set: &str, changes: &[Change]) -> io::Result<()> {
        let chunks: Vec<&[Change]> = changes.chunks(PER_MESSAGE).collect();
        for batch in chunks.chunks(PER_BATCH) {
            let mut out = Vec::new();
            let mut awaited = Vec::new();
            let first = self.begin(&mut out);
            for chunk in batch {
                let adds: Vec<(IpAddr, Option<Duration>)> = chunk
                    .iter()
                    .map(|c| match *c {
                        Change::Add(ip, t) => (ip, t),
                        Change::Delete(ip) => (ip, None),
                    })
                    .collect();
                awaited.push(self.elements(&mut out, NFT_MSG_NEWSETELEM, table, set, &adds));
                let deletes: Vec<(IpAddr, Option<Duration>)> = chunk
                    .iter()
                    .filter_map(|c| match *c {
                        Change::Delete(ip) => Some((ip, None)),
                        Change::Add(..) => None,
                    })
                    .collect();
                if !deletes.is_empty() {
                    awaited.push(self.elements(&mut out, NFT_MSG_DELSETELEM, table, set, &deletes));
                }
            }
            self.end(&mut out);
            self.socket.send(&out)?;
            self.socket.answers(first, awaited)?;
        }
        Ok(())
    }

    /// Starts a batch; returns its first sequence number.
    fn begin(&mut self, out: &mut Vec<u8>) -> u32 {
        let seq = self.socket.next_seq();
        let at = header(out, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq);
        nfgenmsg(out, 0, NFNL_SUBSYS_NFTABLES);
        finish(out, at);
        seq
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        let seq = self.socket.next_seq();
        let at = header(out, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq);
        nfgenmsg(out, 0, NFNL_SUBSYS_NFTABLES);
        finish(out, at);
    }

    /// One NEWSETELEM or DELSETELEM message; returns its sequence number.
    fn elements(
        &mut self,
        out: &mut Vec<u8>,
        kind: u16,
        table: &str,
        set: &str,
        elements: &[(IpAddr, Option<Duration>)],
    ) -> u32 {
        let seq = self.socket.next_seq();
        let mut flags = NLM_F_REQUEST | NLM_F_ACK;
        if kind == NFT_MSG_NEWSETELEM {
            flags |= NLM_F_CREATE;
        }
        let at = header(out, (NFNL_SUBSYS_NFTABLES << 8) | kind, flags, seq);
        nfgenmsg(out, NFPROTO_INET, 0);
        attr(out, NFTA_SET_ELEM_LIST_TABLE, &c_string(table));
        attr(out, NFTA_SET_ELEM_LIST_SET, &c_string(set));
        let list = nest(out, NFTA_SET_ELEM_LIST_ELEMENTS);
        for (ip, timeout) in elements {
            let element = nest(out, NFTA_LIST_ELEM);
            let key = nest(out, NFTA_SET_ELEM_KEY);
            match ip {
                IpAddr::V4(v4) => attr(out, NFTA_DATA_VALUE, &v4.octets()),
                IpAddr::V6(v6) => attr(out, NFTA_DATA_VALUE, &v6.octets()),
            }
            end_nest(out, key);
            if let Some(t) = timeout {
                let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
                attr(out, NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
            }
            end_nest(out, element);
        }
        end_nest(out, list);
        finish(out, at);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{messages, socketless};
    use super::*;

    #[test]
    fn an_unban_is_an_add_and_a_delete_between_batch_begin_and_end() {
        let mut s = SetElements {
            socket: socketless(),
        };
        let mut out = Vec::new();
        let first = s.begin(&mut out);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        s.elements(
            &mut out,
            NFT_MSG_NEWSETELEM,
            "pyfilter",
            "v4",
            &[(ip, None)],
        );
        s.elements(
            &mut out,
            NFT_MSG_DELSETELEM,
            "pyfilter",
            "v4",
            &[(ip, None)],
        );
        s.end(&mut out);
        let m = messages(&out);
        let kinds: Vec<u16> = m.iter().map(|m| m.0).collect();
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM,
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM,
                NFNL_MSG_BATCH_END
            ]
        );
        assert_eq!(m[0].2, first);
        assert_eq!(m[1].1 & NLM_F_CREATE, NLM_F_CREATE, "adding is creating");
        assert_eq!(m[2].1 & NLM_F_CREATE, 0, "deleting is not");
        assert!(m.iter().all(|m| m.3 % 4 == 0), "{m:?}");
    }

    #[test]
    fn a_timeout_travels_in_milliseconds_big_endian() {
        let mut s = SetElements {
            socket: socketless(),
        };
        let mut out = Vec::new();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let timeout = Duration::from_secs(600);
        s.elements(
            &mut out,
            NFT_MSG_NEWSETELEM,
            "pyfilter",
            "v6",
            &[(ip, Some(timeout))],
        );
        let ms = 600_000u64.to_be_bytes();
        assert!(out.windows(8).any(|w| w == ms), "{out:?}");
        let octets = "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        assert!(out.windows(16).any(|w| w == octets));
    }
}
