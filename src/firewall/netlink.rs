//! nf_tables over netlink: adding and deleting the elements of pyfilter's address sets
//! in one kernel transaction, without starting `nft`.
//!
//! A ban that arrives alone (the common case: one attacker, or one ban from the fleet)
//! cost a whole `nft` process — about 2.5 ms of CPU to start it, load libnftables and
//! read the ruleset — and on a fleet every server pays it for every ban at the same
//! moment. Here the same change is one `sendmsg` of a batch (`NFNL_MSG_BATCH_BEGIN`,
//! `NFT_MSG_NEWSETELEM`/`NFT_MSG_DELSETELEM`, `NFNL_MSG_BATCH_END`) and one read of the
//! kernel's acknowledgements: tens of microseconds.
//!
//! Only what `nft` itself would send for `add element` and `delete element` on a set of
//! single addresses is spoken here; the table, its sets and chains, restores and blocks
//! (interval sets, whose elements are ranges) stay with `nft -f`, which the backend also
//! falls back to whenever this path fails, so an error is always reported in `nft`'s
//! words.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NETLINK_NETFILTER: libc::c_int = 12;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

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
/// How long the kernel may take to answer a batch before the path is given up.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// One change to a set of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Adds the address (a no-op when present), to expire after the timeout if any.
    Add(IpAddr, Option<Duration>),
    /// Deletes the address; sent as an add and a delete in one transaction, so a missing
    /// address is not an error (the kernel refuses deleting one).
    Delete(IpAddr),
}

/// A netlink socket to nf_tables in this process's network namespace.
pub struct SetElements {
    socket: OwnedFd,
    seq: u32,
}

impl SetElements {
    pub fn open() -> io::Result<SetElements> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid (the kernel picks the port id).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a sockaddr_nl of the size given.
        let bound = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        // Acknowledgements carry only the header of the message they answer, not the
        // whole batch back.
        set_option(&socket, SOL_NETLINK, NETLINK_CAP_ACK, 1)?;
        let timeout = libc::timeval {
            tv_sec: ANSWER_WITHIN.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: timeout is a timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // Start where an earlier socket of this process cannot have been.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(SetElements { socket, seq })
    }

    /// Applies `changes` to the set `set` of the `inet` table `table`: each batch of up
    /// to a few thousand changes is one transaction, applied whole or not at all. An
    /// error is the kernel's (`ENOENT` for a missing table or set, `ENOSPC` for a full
    /// set...), or a timeout; batches before the failing one stay applied, which is
    /// harmless since every change is idempotent.
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
            self.send(&out)?;
            self.answers(first, awaited)?;
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Starts a batch; returns its first sequence number.
    fn begin(&mut self, out: &mut Vec<u8>) -> u32 {
        let seq = self.next_seq();
        let at = header(out, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq);
        nfgenmsg(out, 0, NFNL_SUBSYS_NFTABLES);
        finish(out, at);
        seq
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        let seq = self.next_seq();
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
        let seq = self.next_seq();
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

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl addresses the kernel (port id 0).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: bytes and to are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != bytes.len() {
            return Err(io::Error::other("netlink batch sent in part"));
        }
        Ok(())
    }

    /// Reads the kernel's answers until every message in `awaited` has one. The kernel
    /// answers each of them even when the transaction is refused, the refused one with
    /// its error; an error on a message we did not ask about (a malformed batch) ends
    /// the wait at once. Answers to an earlier, abandoned batch (before `first`) are
    /// skipped by their sequence numbers.
    fn answers(&self, first: u32, mut awaited: Vec<u32>) -> io::Result<()> {
        let span = self.seq.wrapping_sub(first);
        let mut refused: Option<io::Error> = None;
        let mut buf = vec![0u8; 64 * 1024];
        while !awaited.is_empty() {
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(refused.unwrap_or(e));
            }
            for (seq, error) in acknowledgements(&buf[..n as usize]) {
                if seq.wrapping_sub(first) > span {
                    continue;
                }
                if error != 0 {
                    refused.get_or_insert(io::Error::from_raw_os_error(-error));
                }
                match awaited.iter().position(|&s| s == seq) {
                    Some(i) => {
                        awaited.swap_remove(i);
                    }
                    None if error != 0 => awaited.clear(),
                    None => {}
                }
            }
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn set_option(
    socket: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: value is a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The (sequence number, error) of each NLMSG_ERROR message in `bytes`; error 0 is an
/// acknowledgement.
fn acknowledgements(mut bytes: &[u8]) -> Vec<(u32, i32)> {
    let mut found = Vec::new();
    while bytes.len() >= 16 {
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
        if len < 16 || len > bytes.len() {
            break;
        }
        if kind == NLMSG_ERROR && len >= 20 {
            // An answer carries the sequence number of the message it answers.
            let seq = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            let error = i32::from_ne_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
            found.push((seq, error));
        }
        bytes = &bytes[align(len).min(bytes.len())..];
    }
    found
}

const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Starts a message; returns where it starts, for `finish` to write its length.
fn header(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let at = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    at
}

fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

fn nfgenmsg(out: &mut Vec<u8>, family: u8, res_id: u16) {
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
}

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (align(len) - len), 0);
}

fn nest(out: &mut Vec<u8>, kind: u16) -> usize {
    let at = out.len();
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn end_nest(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u16;
    out[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

fn c_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages of a batch as (type, flags, sequence number, whole length).
    fn messages(mut bytes: &[u8]) -> Vec<(u16, u16, u32, usize)> {
        let mut found = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(bytes[4..6].try_into().unwrap());
            let flags = u16::from_ne_bytes(bytes[6..8].try_into().unwrap());
            let seq = u32::from_ne_bytes(bytes[8..12].try_into().unwrap());
            found.push((kind, flags, seq, len));
            bytes = &bytes[align(len)..];
        }
        found
    }

    fn socketless() -> SetElements {
        // SAFETY: /dev/null is only a placeholder descriptor; nothing is sent.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0);
        SetElements {
            // SAFETY: fd was just opened and is owned here.
            socket: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: 0,
        }
    }

    #[test]
    fn an_unban_is_an_add_and_a_delete_between_batch_begin_and_end() {
        let mut s = socketless();
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
        let mut s = socketless();
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

    #[test]
    fn answers_are_read_by_sequence_number_with_their_error() {
        let mut bytes = Vec::new();
        for (seq, error) in [(7u32, 0i32), (8, -28)] {
            let at = header(&mut bytes, NLMSG_ERROR, 0, seq);
            bytes.extend_from_slice(&error.to_ne_bytes());
            header(&mut bytes, 0, 0, seq);
            finish(&mut bytes, at);
        }
        assert_eq!(acknowledgements(&bytes), [(7, 0), (8, -28)]);
    }
}
