//! Neutral: what the idle daemon keeps resident. Start-up touches far more than the idle
//! daemon needs — configuration parsing, every rule compiled to be checked, the restore —
//! and the kernel maps code around each page touched; once the daemon is ready, this
//! gives it back.
//!
//! - Free heap memory goes back to the kernel (`malloc_trim`), and the allocator keeps at
//!   most two arenas (`M_ARENA_MAX`): a handful of threads that allocate a little each
//!   need no arena of their own.
//! - Read-only mappings of files with no private page (the code and constants of the
//!   binary, libc and the loader) are dropped from the page tables (`MADV_DONTNEED`: the
//!   pages stay in the page cache and come back on first use, without read-ahead:
//!   `MADV_RANDOM`), so the daemon holds the code it runs, not what start-up ran nor what
//!   the kernel mapped around it. A mapping holding private pages (relocated data) is
//!   left alone: dropping those would lose the relocations.
//!
//! The daemon sheds once ready, and again whenever it has been quiet for `QUIET` (`Idle`):
//! what a burst of work faulted in is given back when the burst is over.

use std::fs;
use std::time::{Duration, Instant};

/// How long without an event or a request makes the daemon idle.
pub const QUIET: Duration = Duration::from_secs(20);

/// When the decision loop sheds: once per quiet spell.
#[derive(Debug)]
pub struct Idle {
    since: Instant,
    shed: bool,
}

impl Default for Idle {
    fn default() -> Idle {
        Idle {
            since: Instant::now(),
            shed: false,
        }
    }
}

impl Idle {
    /// Something happened: a new quiet spell starts.
    pub fn busy(&mut self) {
        self.since = Instant::now();
        self.shed = false;
    }

    /// When to wake up to shed, if this spell has not shed yet.
    pub fn due(&self) -> Option<Instant> {
        (!self.shed).then(|| self.since + QUIET)
    }

    /// Sheds when the spell has lasted `QUIET`.
    pub fn tick(&mut self, now: Instant) {
        if !self.shed && now >= self.since + QUIET {
            let given = shed();
            log::debug!(
                "quiet for {}s: {} KiB of code and constants given back",
                QUIET.as_secs(),
                given / 1024
            );
            self.shed = true;
        }
    }
}

/// Most malloc arenas: the main one and one for every other thread to share.
const ARENAS: libc::c_int = 2;

/// Bounds the allocator's arenas. Call it first thing, before threads start.
pub fn limit_arenas() {
    // SAFETY: mallopt only changes the allocator's settings.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Gives back what start-up touched and the idle daemon does not need. Returns the
/// bytes of code and constants dropped from the page tables.
pub fn shed() -> usize {
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut dropped = 0;
    for m in mappings(&smaps) {
        if m.sheddable() {
            let len = m.end - m.start;
            // SAFETY: the range is a whole mapping of this process, read-only and backed
            // by a file with no private page: its pages are refetched from the page cache
            // when touched again, with the same contents.
            let ok = unsafe {
                let addr = m.start as *mut libc::c_void;
                libc::madvise(addr, len, libc::MADV_RANDOM) == 0
                    && libc::madvise(addr, len, libc::MADV_DONTNEED) == 0
            };
            if ok {
                dropped += m.rss_kb * 1024;
            }
        }
    }
    dropped
}

/// One mapping of `/proc/self/smaps`, as far as `shed` needs it.
#[derive(Debug, PartialEq, Eq)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    path: &'a str,
    rss_kb: usize,
    /// Private (copied-on-write) pages, in KiB.
    anonymous_kb: usize,
}

impl Mapping<'_> {
    fn sheddable(&self) -> bool {
        let p = self.perms.as_bytes();
        p.len() == 4
            && p[0] == b'r'
            && p[1] == b'-'
            && p[3] == b'p'
            && self.path.starts_with('/')
            && self.anonymous_kb == 0
            && self.rss_kb > 0
    }
}

fn mappings(smaps: &str) -> Vec<Mapping<'_>> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            out.push(Mapping {
                start,
                end,
                perms,
                path,
                rss_kb: 0,
                // Unknown until read: not sheddable unless the line says 0.
                anonymous_kb: usize::MAX,
            });
            continue;
        }
        let value = || fields.clone().next().and_then(|v| v.parse().ok());
        if let Some(m) = out.last_mut() {
            match first {
                "Rss:" => m.rss_kb = value().unwrap_or(0),
                "Anonymous:" => m.anonymous_kb = value().unwrap_or(usize::MAX),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0700000 r-xp 00266000 fd:01 1234                       /usr/bin/pyfilter
Rss:                6000 kB
Anonymous:             0 kB
55d0c0800000-55d0c0850000 r--p 00978000 fd:01 1234                       /usr/bin/pyfilter
Rss:                 320 kB
Anonymous:           320 kB
55d0c0900000-55d0c0910000 rw-p 009cd000 fd:01 1234                       /usr/bin/pyfilter
Rss:                  16 kB
Anonymous:            16 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Rss:                 900 kB
Anonymous:           900 kB
";

    #[test]
    fn only_read_only_file_mappings_without_private_pages_are_shed() {
        let maps = mappings(SMAPS);
        assert_eq!(maps.len(), 4);
        let shed: Vec<bool> = maps.iter().map(Mapping::sheddable).collect();
        // The code, yes; the relocated (private) read-only data, the data and the heap, no.
        assert_eq!(shed, [true, false, false, false]);
        assert_eq!(maps[0].rss_kb, 6000);
    }

    #[test]
    fn a_quiet_spell_sheds_once_and_activity_starts_another() {
        let mut idle = Idle::default();
        let due = idle.due().unwrap();
        idle.tick(due - Duration::from_secs(1));
        assert_eq!(idle.due(), Some(due), "not yet");
        idle.tick(due);
        assert_eq!(idle.due(), None, "shed once");
        idle.busy();
        assert!(idle.due().unwrap() > due);
    }

    #[test]
    fn shedding_this_process_keeps_it_running() {
        limit_arenas();
        let before: Vec<u64> = (0..1000).collect();
        shed();
        // Code and constants come back from the page cache as they are used.
        assert_eq!(before.iter().sum::<u64>(), 499_500);
        assert!(format!("{:?}", std::time::Instant::now()).contains("Instant"));
    }
}
