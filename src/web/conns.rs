//! The open connections, and the limits that keep a slow or greedy client from taking
//! the server from others: a cap per client address below the server's own, and, past
//! either cap, room made by closing the oldest connection still sending its request
//! (of that address, or of the address holding the most) rather than refusing the new
//! one. An honest request is read in milliseconds, so the connections that are closed
//! are the slow ones; a handler already at work is never interrupted. And each
//! connection reads through `Deadline`, so a request must arrive whole in time, however
//! its bytes trickle in.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

struct Slot {
    peer: IpAddr,
    opened: Instant,
    /// Still sending its request: may be closed to make room.
    reading: bool,
    /// A handle on the socket, to close it from the acceptor.
    stream: TcpStream,
}

#[derive(Default)]
struct Table {
    slots: HashMap<u64, Slot>,
    per_peer: HashMap<IpAddr, usize>,
    next: u64,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.slots.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&slot.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&slot.peer);
            }
        }
        Some(slot)
    }

    /// The oldest connection still reading, among those `which` picks.
    fn oldest_reading(&self, which: impl Fn(&Slot) -> bool) -> Option<u64> {
        self.slots
            .iter()
            .filter(|(_, s)| s.reading && which(s))
            .min_by_key(|(_, s)| s.opened)
            .map(|(id, _)| *id)
    }
}

/// The open connections of one server, shared by its acceptor and connection threads.
pub struct Conns {
    table: Mutex<Table>,
    max: usize,
    per_address: usize,
}

/// Why a connection was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every connection (of this address, or of the server) is at work on a request.
    Busy,
}

impl Conns {
    /// At most `max` connections, and `per_address` from one address.
    pub fn new(max: usize, per_address: usize) -> Conns {
        Conns {
            table: Mutex::new(Table::default()),
            max: max.max(1),
            per_address: per_address.clamp(1, max.max(1)),
        }
    }

    /// Takes a new connection from `peer`, closing a slow one to make room when a cap
    /// is reached. Returns its id, for `answering` and `close`.
    pub fn open(&self, peer: IpAddr, stream: &TcpStream) -> Result<u64, Refused> {
        let handle = stream.try_clone().map_err(|_| Refused::Busy)?;
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if t.per_peer.get(&peer).copied().unwrap_or(0) >= self.per_address {
            let id = t.oldest_reading(|s| s.peer == peer).ok_or(Refused::Busy)?;
            evict(&mut t, id, "its address has too many open");
        }
        if t.slots.len() >= self.max {
            // From the address that holds the most: the attacker's, not the newcomer's.
            let heaviest = t
                .per_peer
                .iter()
                .filter(|(p, _)| t.slots.values().any(|s| s.peer == **p && s.reading))
                .max_by_key(|(_, n)| **n)
                .map(|(p, _)| *p);
            let id = heaviest
                .and_then(|h| t.oldest_reading(|s| s.peer == h))
                .ok_or(Refused::Busy)?;
            evict(&mut t, id, "the server is full");
        }
        let id = t.next;
        t.next += 1;
        t.slots.insert(
            id,
            Slot {
                peer,
                opened: Instant::now(),
                reading: true,
                stream: handle,
            },
        );
        *t.per_peer.entry(peer).or_default() += 1;
        Ok(id)
    }

    /// Connection `id` has sent its whole request: it is at work, and stays.
    pub fn answering(&self, id: u64) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = t.slots.get_mut(&id) {
            slot.reading = false;
        }
    }

    /// Connection `id` is done (a no-op when it was closed to make room).
    pub fn close(&self, id: u64) {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// How many connections are open.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .len()
    }
}

fn evict(t: &mut Table, id: u64, why: &str) {
    if let Some(slot) = t.remove(id) {
        log::info!(
            "HTTP: closing a connection from {} still sending its request after {} ms ({why})",
            slot.peer,
            slot.opened.elapsed().as_millis()
        );
        // Its thread's read fails at once, and it ends.
        let _ = slot.stream.shutdown(Shutdown::Both);
    }
}

/// A socket whose reads and writes end at a deadline, whatever the pace of the bytes:
/// each read or write waits at most `per_io`, and never past `until`, which the
/// connection moves once the request is read (`Rc`: shared with whoever holds the
/// stream, such as TLS, on the connection's one thread).
pub struct Deadline {
    stream: TcpStream,
    per_io: Duration,
    pub until: Rc<Cell<Instant>>,
}

impl Deadline {
    pub fn new(stream: TcpStream, per_io: Duration, until: Instant) -> Deadline {
        Deadline {
            stream,
            per_io,
            until: Rc::new(Cell::new(until)),
        }
    }

    /// The wait allowed for the next read or write, or `TimedOut` past the deadline.
    fn wait(&self) -> io::Result<Duration> {
        let left = self.until.get().saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request's deadline passed",
            ));
        }
        Ok(left.min(self.per_io))
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = self.wait()?;
        self.stream.set_read_timeout(Some(wait))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let wait = self.wait()?;
        self.stream.set_write_timeout(Some(wait))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected socket pair on loopback: (the server's end, the client's).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn past_its_cap_an_address_loses_its_oldest_slow_connection_not_the_new_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let conns = Conns::new(8, 2);
        let (s1, mut c1) = pair(&listener);
        let (s2, _c2) = pair(&listener);
        let (s3, _c3) = pair(&listener);
        let first = conns.open(ip(1), &s1).unwrap();
        conns.open(ip(1), &s2).unwrap();
        conns.open(ip(1), &s3).unwrap();
        assert_eq!(conns.len(), 2);
        // The oldest was shut: its client sees the end of the stream.
        let mut buf = [0u8; 1];
        assert_eq!(c1.read(&mut buf).unwrap(), 0);
        conns.close(first);
        assert_eq!(conns.len(), 2, "closing an evicted one is a no-op");
    }

    #[test]
    fn a_full_server_makes_room_from_the_heaviest_address_and_spares_work_in_progress() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let conns = Conns::new(4, 3);
        let mut keep = Vec::new();
        let mut ids = Vec::new();
        for peer in [ip(1), ip(1), ip(1), ip(2)] {
            let (s, c) = pair(&listener);
            ids.push(conns.open(peer, &s).unwrap());
            keep.push((s, c));
        }
        let (s, _c) = pair(&listener);
        conns.open(ip(3), &s).unwrap();
        assert_eq!(conns.len(), 4);
        let t = conns.table.lock().unwrap();
        assert_eq!(t.per_peer.get(&ip(1)), Some(&2), "one of the heaviest went");
        assert!(!t.slots.contains_key(&ids[0]), "its oldest");
        drop(t);
        // Nothing is reading any more: a newcomer is refused rather than cut a handler.
        let conns = Conns::new(1, 1);
        let (s, _c) = pair(&listener);
        let id = conns.open(ip(1), &s).unwrap();
        conns.answering(id);
        let (s, _c) = pair(&listener);
        assert_eq!(conns.open(ip(2), &s), Err(Refused::Busy));
    }

    #[test]
    fn a_deadline_ends_a_trickle_that_no_single_read_would() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (s, mut c) = pair(&listener);
        let start = Instant::now();
        let mut d = Deadline::new(
            s,
            Duration::from_secs(10),
            start + Duration::from_millis(600),
        );
        let writer = std::thread::spawn(move || {
            for _ in 0..10 {
                if c.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        let mut buf = [0u8; 16];
        let err = loop {
            match d.read(&mut buf) {
                Ok(0) => panic!("the client stopped before the deadline"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{err}"
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_secs(2),
            "{took:?}"
        );
        writer.join().unwrap();
    }
}
