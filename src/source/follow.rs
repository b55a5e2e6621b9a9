//! Following one log file as it really behaves: appended to, rotated by rename,
//! truncated in place (copytruncate), deleted and created again.
//!
//! A `Follower` is plain state with no thread and no waiting: the watcher calls `poll`
//! whenever inotify says something happened (or every `poll_interval` where inotify cannot
//! be had: the same state either way, so switching loses and repeats nothing), and `poll`
//! reads only the new bytes. Lines are handed to a callback as they complete. The position
//! it reports (inode and offset of the last whole line) is what the store saves, so a
//! restart neither replays old lines nor misses new ones.
//!
//! A path that holds a directory (a log replaced by one) counts as absent until a file is
//! back. After a rotation by rename the old file is still read until it has been quiet
//! for `ROTATED_GRACE` once the new one has data: a writer that reopens late still writes
//! a line or two to the old file.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::Position;
use crate::source::lines::LineSplitter;

const READ_BLOCK: usize = 64 * 1024;

/// How long a rotated file is still read once the new file has data, after its last line.
pub const ROTATED_GRACE: Duration = Duration::from_secs(30);

/// Where to begin in a file that exists at start and has no saved position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Only what is written from now on (old history is for `scan`).
    AtEnd,
    /// The whole file.
    AtStart,
}

/// One open file and how far it was read.
#[derive(Debug)]
struct Reader {
    file: File,
    inode: u64,
    read_off: u64,
    lines: LineSplitter,
}

impl Reader {
    fn open(path: &Path, max_line: usize) -> io::Result<Option<Reader>> {
        match File::open(path) {
            Ok(file) => {
                let meta = file.metadata()?;
                if meta.is_dir() {
                    // Replaced by a directory: absent until a file is back.
                    return Ok(None);
                }
                let inode = meta.ino();
                Ok(Some(Reader {
                    file,
                    inode,
                    read_off: 0,
                    lines: LineSplitter::new(max_line),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn seek(&mut self, offset: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.read_off = offset;
        self.lines.reset();
        Ok(())
    }

    /// Reads to the end of the file, emitting whole lines. Returns how many bytes it read.
    fn drain(&mut self, buf: &mut [u8], sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let start = self.read_off;
        loop {
            let n = match self.file.read(buf) {
                Ok(0) => return Ok(self.read_off - start),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.read_off += n as u64;
            self.lines.feed(&buf[..n], sink);
        }
    }

    fn position(&self) -> Position {
        // A capped line's pending bytes are not the whole line; resuming after it is the
        // best that can be done.
        let pending = if self.lines.is_capped() {
            0
        } else {
            self.lines.pending() as u64
        };
        Position {
            inode: self.inode,
            offset: self.read_off - pending,
        }
    }
}

/// Follows one path.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    max_line: usize,
    current: Option<Reader>,
    /// The file that was at `path` before a rotation by rename. The writer may still
    /// append to it until it reopens the log, so it is drained until it has been quiet
    /// for `grace` once the new file has data.
    rotated: Option<Rotated>,
    grace: Duration,
    /// Lines cut at the cap by readers now closed.
    cut_before: u64,
    buf: Vec<u8>,
}

/// A rotated file still read, and since when it has given nothing.
#[derive(Debug)]
struct Rotated {
    reader: Reader,
    quiet_since: Instant,
}

impl Rotated {
    fn new(reader: Reader) -> Rotated {
        Rotated {
            reader,
            quiet_since: Instant::now(),
        }
    }
}

impl Follower {
    pub fn new(path: impl Into<PathBuf>, max_line: usize) -> Follower {
        Follower {
            path: path.into(),
            max_line,
            current: None,
            rotated: None,
            grace: ROTATED_GRACE,
            cut_before: 0,
            buf: vec![0; READ_BLOCK],
        }
    }

    /// How long a rotated file is read after its last line once the new one has data.
    pub fn with_grace(mut self, grace: Duration) -> Follower {
        self.grace = grace;
        self
    }

    /// Lines longer than the cap seen so far (read, handed on empty).
    pub fn cut_lines(&self) -> u64 {
        self.cut_before
            + self.current.as_ref().map_or(0, |r| r.lines.capped_lines)
            + self
                .rotated
                .as_ref()
                .map_or(0, |r| r.reader.lines.capped_lines)
    }

    /// Whether a file is open at the path (not absent, not a directory).
    pub fn is_open(&self) -> bool {
        self.current.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file for the first time and places the read position, reading nothing
    /// (the first `poll` does): the daemon says it is ready only once every file is
    /// placed, so no line written after that is skipped. With a saved position of the same
    /// file, resumes there; when the file was rotated while pyfilter was down, the rest of
    /// the rotated file (found by its inode beside the log) is read first, then the new
    /// one from its start.
    pub fn open(&mut self, saved: Option<Position>, fresh: Fresh) -> io::Result<()> {
        let Some(mut reader) = Reader::open(&self.path, self.max_line)? else {
            // Not there yet: it is read from its start when it appears.
            return Ok(());
        };
        let len = reader.file.metadata()?.len();
        match saved {
            Some(pos) if pos.inode == reader.inode => {
                reader.seek(if pos.offset <= len { pos.offset } else { 0 })?
            }
            Some(pos) => {
                if let Some(old) = self.find_rotated(pos)? {
                    log::info!(
                        "{}: rotated while pyfilter was stopped; reading the rest of the old file first",
                        self.path.display()
                    );
                    self.rotated = Some(Rotated::new(old));
                }
            }
            None if fresh == Fresh::AtEnd => reader.seek(len)?,
            None => {}
        }
        self.current = Some(reader);
        Ok(())
    }

    /// Reads whatever is new. Call it whenever the file or its directory changed.
    pub fn poll(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        if let Some(old) = &mut self.rotated
            && old.reader.drain(&mut self.buf, sink)? > 0
        {
            old.quiet_since = Instant::now();
        }
        loop {
            if self.current.is_none() {
                match Reader::open(&self.path, self.max_line)? {
                    Some(r) => {
                        log::debug!("{}: opened (inode {})", self.path.display(), r.inode);
                        self.current = Some(r);
                    }
                    None => return Ok(()),
                }
            }
            let cur = self.current.as_mut().expect("opened above");
            if cur.file.metadata()?.len() < cur.read_off {
                log::info!(
                    "{}: truncated (copytruncate); reading from the start",
                    self.path.display()
                );
                cur.seek(0)?;
            }
            cur.drain(&mut self.buf, sink)?;
            match std::fs::metadata(&self.path) {
                Ok(m) if is_other_file(&m, cur.inode) => {
                    log::info!("{}: rotated; following the new file", self.path.display());
                    let old = self.current.take().expect("current is set");
                    if let Some(older) = self.rotated.replace(Rotated::new(old)) {
                        self.retire(older, sink);
                    }
                    if m.is_dir() {
                        log::warn!(
                            "{}: is now a directory; followed again when a file is back",
                            self.path.display()
                        );
                        break;
                    }
                }
                _ => break,
            }
        }
        self.retire_rotated(sink)
    }

    /// Once the new file holds data and the rotated one has been quiet for the grace
    /// period, the writer has moved on: the rotated file is done.
    fn retire_rotated(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let moved_on = self
            .current
            .as_ref()
            .is_some_and(|c| c.read_off > 0 || c.lines.pending() > 0);
        let quiet = self
            .rotated
            .as_ref()
            .is_some_and(|r| r.quiet_since.elapsed() >= self.grace);
        if moved_on
            && quiet
            && let Some(mut old) = self.rotated.take()
        {
            old.reader.drain(&mut self.buf, sink)?;
            self.retire(old, sink);
        }
        Ok(())
    }

    fn retire(&mut self, mut old: Rotated, sink: &mut dyn FnMut(&[u8])) {
        old.reader.lines.finish(sink);
        self.cut_before += old.reader.lines.capped_lines;
    }

    /// Whether a rotated file is still being drained (the watcher then wakes on any
    /// change in the directory, since the rotated file has another name).
    pub fn draining_rotated(&self) -> bool {
        self.rotated.is_some()
    }

    /// Where reading stopped, once the file has been seen.
    pub fn position(&self) -> Option<Position> {
        self.current.as_ref().map(Reader::position)
    }

    fn find_rotated(&self, pos: Position) -> io::Result<Option<Reader>> {
        let Some(dir) = self.path.parent() else {
            return Ok(None);
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(None);
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file()
                && meta.ino() == pos.inode
                && entry.path() != self.path
                && let Some(mut r) = Reader::open(&entry.path(), self.max_line)?
                // Checked again through the open handle: the name may have moved.
                && r.inode == pos.inode
                && pos.offset <= r.file.metadata()?.len()
            {
                r.seek(pos.offset)?;
                return Ok(Some(r));
            }
        }
        Ok(None)
    }
}

fn is_other_file(meta: &Metadata, inode: u64) -> bool {
    meta.ino() != inode
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Appends as a logger does (the file threads' tests use it too).
    pub(crate) fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn poll(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        f.poll(&mut |l| out.push(String::from_utf8_lossy(l).into_owned()))
            .unwrap();
        out
    }

    fn start(f: &mut Follower, saved: Option<Position>, fresh: Fresh) -> Vec<String> {
        f.open(saved, fresh).unwrap();
        poll(f)
    }

    #[test]
    fn reads_only_new_lines_and_starts_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, "old 1\nold 2\n");
        let mut f = Follower::new(&log, 1024);
        assert!(start(&mut f, None, Fresh::AtEnd).is_empty());
        append(&log, "new 1\n");
        assert_eq!(poll(&mut f), ["new 1"]);
        assert!(poll(&mut f).is_empty());
    }

    #[test]
    fn a_missing_file_is_read_from_its_start_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("later.log");
        let mut f = Follower::new(&log, 1024);
        assert!(start(&mut f, None, Fresh::AtEnd).is_empty());
        assert!(poll(&mut f).is_empty());
        append(&log, "first\n");
        assert_eq!(poll(&mut f), ["first"]);
    }

    #[test]
    fn rotation_by_rename_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, "");
        let mut f = Follower::new(&log, 1024).with_grace(Duration::ZERO);
        start(&mut f, None, Fresh::AtEnd);
        append(&log, "a\n");
        assert_eq!(poll(&mut f), ["a"]);
        append(&log, "b\n");
        std::fs::rename(&log, dir.path().join("auth.log.1")).unwrap();
        append(&log, "");
        // The writer has not reopened yet: it still writes to the renamed file.
        append(&dir.path().join("auth.log.1"), "c\n");
        assert_eq!(poll(&mut f), ["b", "c"]);
        assert!(f.draining_rotated());
        append(&dir.path().join("auth.log.1"), "d\n");
        append(&log, "e\n");
        assert_eq!(poll(&mut f), ["d", "e"]);
        assert!(!f.draining_rotated());
        append(&log, "f\n");
        assert_eq!(poll(&mut f), ["f"]);
    }

    #[test]
    fn a_line_written_to_the_rotated_file_after_the_new_one_has_data_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        let old = dir.path().join("auth.log.1");
        append(&log, "");
        let mut f = Follower::new(&log, 1024);
        start(&mut f, None, Fresh::AtEnd);
        std::fs::rename(&log, &old).unwrap();
        append(&log, "new\n");
        assert_eq!(poll(&mut f), ["new"]);
        // A second writer (or a slow one) still had the old file open.
        append(&old, "leftover\n");
        assert_eq!(poll(&mut f), ["leftover"]);
        append(&log, "newer\n");
        assert_eq!(poll(&mut f), ["newer"]);
        assert!(
            f.draining_rotated(),
            "until it has been quiet for the grace"
        );
    }

    #[test]
    fn a_log_replaced_by_a_directory_is_absent_until_a_file_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, "");
        let mut f = Follower::new(&log, 1024).with_grace(Duration::ZERO);
        start(&mut f, None, Fresh::AtEnd);
        append(&log, "a\n");
        assert_eq!(poll(&mut f), ["a"]);
        std::fs::remove_file(&log).unwrap();
        std::fs::create_dir(&log).unwrap();
        assert!(poll(&mut f).is_empty());
        assert!(poll(&mut f).is_empty(), "no error, again and again");
        assert!(!f.is_open());
        std::fs::remove_dir(&log).unwrap();
        append(&log, "back\n");
        assert_eq!(poll(&mut f), ["back"]);
        assert!(f.is_open());
    }

    #[test]
    fn copytruncate_is_followed_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, "");
        let mut f = Follower::new(&log, 1024);
        start(&mut f, None, Fresh::AtEnd);
        append(&log, "one\ntwo\n");
        assert_eq!(poll(&mut f), ["one", "two"]);
        std::fs::copy(&log, dir.path().join("auth.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&log)
            .unwrap();
        append(&log, "three\n");
        assert_eq!(poll(&mut f), ["three"]);
    }

    #[test]
    fn a_line_in_two_writes_is_read_once_and_the_position_excludes_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, "");
        let mut f = Follower::new(&log, 1024);
        start(&mut f, None, Fresh::AtEnd);
        append(&log, "whole\nhal");
        assert_eq!(poll(&mut f), ["whole"]);
        assert_eq!(f.position().unwrap().offset, 6);
        append(&log, "f\n");
        assert_eq!(poll(&mut f), ["half"]);
        assert_eq!(f.position().unwrap().offset, 11);
    }

    #[test]
    fn restart_resumes_at_the_saved_position() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, "seen\n");
        let mut f = Follower::new(&log, 1024);
        start(&mut f, None, Fresh::AtStart);
        let saved = f.position();
        drop(f);
        append(&log, "while down\n");
        let mut f = Follower::new(&log, 1024);
        assert_eq!(start(&mut f, saved, Fresh::AtEnd), ["while down"]);
    }

    #[test]
    fn restart_after_rotation_reads_the_rest_of_the_old_file_then_the_new() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        append(&log, "seen\n");
        let mut f = Follower::new(&log, 1024);
        start(&mut f, None, Fresh::AtStart);
        let saved = f.position();
        drop(f);
        append(&log, "missed tail\n");
        std::fs::rename(&log, dir.path().join("auth.log.1")).unwrap();
        append(&log, "new file\n");
        let mut f = Follower::new(&log, 1024);
        assert_eq!(
            start(&mut f, saved, Fresh::AtEnd),
            ["missed tail", "new file"]
        );
    }
}
