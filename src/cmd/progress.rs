//! Progress of long work (`scan` of a large file, `import`) on the terminal: one line on
//! standard error, redrawn at most ten times a second and wiped when the work ends. Only
//! when standard error is a terminal and the output is not JSON, and only for work that
//! lasts: what ends within half a second never shows a line.

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use crate::words;

/// Work shorter than this shows nothing.
const QUIET_START: Duration = Duration::from_millis(500);
/// The shortest time between two redraws.
const REDRAW: Duration = Duration::from_millis(100);

/// What is counted.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Bytes,
    /// Things with this noun (singular, plural).
    Items(&'static str, &'static str),
}

/// One line of progress.
pub struct Progress {
    label: String,
    unit: Unit,
    total: Option<u64>,
    done: u64,
    started: Instant,
    drawn: Option<Instant>,
    enabled: bool,
}

/// Whether progress is shown: standard error is a terminal, and standard output is not
/// JSON that a program reads.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

impl Progress {
    pub fn new(label: impl Into<String>, unit: Unit, total: Option<u64>, enabled: bool) -> Self {
        Progress {
            label: label.into(),
            unit,
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
            enabled,
        }
    }

    /// `n` more done.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.started) < QUIET_START
            || self.drawn.is_some_and(|d| now.duration_since(d) < REDRAW)
        {
            return;
        }
        self.drawn = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}", self.line());
        let _ = err.flush();
    }

    /// The line as it is drawn: `scan auth.log: 42% (1.2 GB of 2.9 GB)`.
    pub fn line(&self) -> String {
        let amount = |n: u64| match self.unit {
            Unit::Bytes => bytes(n),
            Unit::Items(one, many) => words::count(n, one, many),
        };
        match self.total.filter(|t| *t > 0) {
            Some(total) => {
                let percent = (self.done.min(total) * 100) / total;
                let total_text = match self.unit {
                    Unit::Bytes => bytes(total),
                    Unit::Items(..) => total.to_string(),
                };
                let done_text = match self.unit {
                    Unit::Bytes => bytes(self.done),
                    Unit::Items(..) => self.done.to_string(),
                };
                let noun = match self.unit {
                    Unit::Bytes => String::new(),
                    Unit::Items(one, many) => {
                        format!(" {}", if total == 1 { one } else { many })
                    }
                };
                format!(
                    "{}: {percent}% ({done_text} of {total_text}{noun})",
                    self.label
                )
            }
            None => format!("{}: {}", self.label, amount(self.done)),
        }
    }

    /// Wipes the line, when one was drawn.
    pub fn finish(&mut self) {
        if self.drawn.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }

    /// A reader that counts what is read from `inner` into this progress.
    pub fn reader<R: Read>(self, inner: R) -> Counting<R> {
        Counting {
            inner,
            progress: self,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A reader that shows how much of it was read.
pub struct Counting<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// A size for people: `812 B`, `14.2 MB`, `2.9 GB` (powers of 1000, as `ls -h --si`).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_how_far_in_the_units_of_the_work() {
        let mut p = Progress::new("scan auth.log", Unit::Bytes, Some(2_900_000_000), false);
        p.add(1_218_000_000);
        assert_eq!(p.line(), "scan auth.log: 42% (1.2 GB of 2.9 GB)");
        let mut p = Progress::new("import", Unit::Items("ban", "bans"), Some(1), false);
        assert_eq!(p.line(), "import: 0% (0 of 1 ban)");
        p.add(1);
        assert_eq!(p.line(), "import: 100% (1 of 1 ban)");
        let mut p = Progress::new("scan -", Unit::Bytes, None, false);
        p.add(812);
        assert_eq!(p.line(), "scan -: 812 B");
    }

    #[test]
    fn a_counting_reader_reads_everything_through() {
        let p = Progress::new("scan", Unit::Bytes, Some(11), false);
        let mut r = p.reader(&b"hello world"[..]);
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello world");
        assert_eq!(r.progress.done, 11);
    }
}
