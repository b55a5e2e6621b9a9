//! Netlink to netfilter: one socket speaking to the kernel's firewall directly, so a ban
//! of one address is a `sendmsg` and a read of the kernel's acknowledgements — tens of
//! microseconds — instead of an `nft` or `ipset` process (milliseconds of CPU each, paid
//! by every server of a fleet for every ban at the same moment).
//!
//! Only what `nft` and `ipset` themselves send to add and delete single addresses is
//! spoken here (`nf_tables`, `ipset`); creating tables, sets and chains, restores, blocks,
//! and any change this path could not make stay with the tools, so an error is always
//! reported in their words. This file owns the socket and the message framing.

mod ipset;
mod nf_tables;

pub use ipset::IpsetMembers;
pub use nf_tables::SetElements;

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
const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;

/// How long the kernel may take to answer before the path is given up.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// One change to a set of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Adds the address, to expire after the timeout if any.
    Add(IpAddr, Option<Duration>),
    /// Deletes the address; a missing one is not an error.
    Delete(IpAddr),
}

/// A backend's netlink path: its socket, opened on first use and again after a failure.
/// A change it could not make is left to the backend's tool (`nft`, `ipset`), which
/// makes it or says in its own words why not (a full set, a set deleted by hand).
pub struct Direct<T> {
    socket: Option<T>,
    /// Netlink to netfilter cannot be opened here at all: every change goes to the tool.
    unavailable: bool,
    open: fn() -> io::Result<T>,
    tool: &'static str,
}

impl<T> Direct<T> {
    pub fn new(open: fn() -> io::Result<T>, tool: &'static str) -> Direct<T> {
        Direct {
            socket: None,
            unavailable: false,
            open,
            tool,
        }
    }

    /// Makes a change to the set `set` with `change`; `false` when it was not made and
    /// is the tool's to make.
    pub fn apply(&mut self, set: &str, change: impl FnOnce(&mut T) -> io::Result<()>) -> bool {
        if self.socket.is_none() && !self.unavailable {
            match (self.open)() {
                Ok(socket) => self.socket = Some(socket),
                Err(e) => {
                    log::warn!(
                        "cannot open netlink to netfilter ({e}); every firewall change will start `{}`",
                        self.tool
                    );
                    self.unavailable = true;
                }
            }
        }
        let Some(socket) = self.socket.as_mut() else {
            return false;
        };
        match change(socket) {
            Ok(()) => true,
            Err(e) => {
                log::debug!(
                    "netlink change of set {set} failed ({e}); handing it to {}",
                    self.tool
                );
                self.socket = None;
                false
            }
        }
    }
}

/// A netlink socket to netfilter in this process's network namespace, with the
/// sequence numbers of the messages sent on it.
struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    fn open() -> io::Result<Socket> {
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
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid (the kernel picks the port id).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a sockaddr_nl of the size given.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        // Acknowledgements carry only the header of the message they answer, not the
        // whole message back.
        let one: libc::c_int = 1;
        // SAFETY: one is a c_int of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_CAP_ACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let timeout = libc::timeval {
            tv_sec: ANSWER_WITHIN.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: timeout is a timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
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
        Ok(Socket { fd, seq })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `bytes` (one or more messages) to the kernel in one `sendmsg`.
    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl addresses the kernel (port id 0).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: bytes and to are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
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
            return Err(io::Error::other("netlink messages sent in part"));
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
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
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
mod testing {
    use super::*;

    /// The messages in `bytes` as (type, flags, sequence number, whole length).
    pub fn messages(mut bytes: &[u8]) -> Vec<(u16, u16, u32, usize)> {
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

    /// A socket that is never used: messages are only built.
    pub fn socketless() -> Socket {
        // SAFETY: /dev/null is only a placeholder descriptor; nothing is sent.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0);
        Socket {
            // SAFETY: fd was just opened and is owned here.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: 0,
        }
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
