//! Splitting a byte stream into lines, as the stream arrives.
//!
//! A line written in two pieces is emitted once, whole, when its newline arrives. Lines are
//! bytes (logs are not always UTF-8). A trailing `\r` is removed.
//!
//! A line longer than the cap is never buffered whole, so one absurd line cannot make
//! pyfilter buffer without end; nor is what fits of it matched: a cut line has lost its
//! end, and with it the end anchor that keeps an attacker from choosing the address (a
//! 16 KB user name ending in a forged `rip=10.66.66.66` would ban that address). It is
//! handed on empty, so it is still counted and numbered as a line, and counted as cut.

/// Incremental line splitter.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max_line: usize,
    /// The current line already exceeded the cap; its rest is being dropped.
    capped: bool,
    /// How many lines were longer than the cap (handed on empty).
    pub capped_lines: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            max_line,
            capped: false,
            capped_lines: 0,
        }
    }

    /// Feeds bytes; calls `sink` with every line they complete.
    pub fn feed(&mut self, mut chunk: &[u8], sink: &mut dyn FnMut(&[u8])) {
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let piece = &chunk[..nl];
            if self.partial.is_empty() && !self.capped {
                // The common case: a whole line inside the chunk, no copy.
                if trim_cr(piece).len() > self.max_line {
                    self.capped_lines += 1;
                    sink(b"");
                } else {
                    sink(trim_cr(piece));
                }
            } else {
                self.push(piece);
                if self.capped || trim_cr(&self.partial).len() > self.max_line {
                    if !self.capped {
                        self.capped_lines += 1;
                    }
                    sink(b"");
                } else {
                    sink(trim_cr(&self.partial));
                }
                self.partial.clear();
                self.capped = false;
            }
            chunk = &chunk[nl + 1..];
        }
        if !chunk.is_empty() {
            self.push(chunk);
        }
    }

    /// Emits an unterminated last line (the stream has ended for good).
    pub fn finish(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if self.capped {
            sink(b"");
        } else if !self.partial.is_empty() {
            sink(trim_cr(&self.partial));
        }
        self.reset();
    }

    /// Forgets any partial line (the file was truncated under us).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.capped = false;
    }

    /// Bytes held for a line not yet complete.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Whether the bytes pending are a whole (capped) line's start, which a restart
    /// cannot re-read exactly.
    pub fn is_capped(&self) -> bool {
        self.capped
    }

    fn push(&mut self, piece: &[u8]) {
        // One byte over the cap is kept, so that a line of exactly the cap plus its `\r`
        // is told from a longer one.
        let room = (self.max_line + 1).saturating_sub(self.partial.len());
        if piece.len() > room {
            if !self.capped {
                self.capped_lines += 1;
            }
            self.capped = true;
        }
        self.partial
            .extend_from_slice(&piece[..piece.len().min(room)]);
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(splitter: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in chunks {
            splitter.feed(c, &mut |l| out.push(l.to_vec()));
        }
        out
    }

    #[test]
    fn a_line_in_two_pieces_is_emitted_once_whole() {
        let mut s = LineSplitter::new(100);
        let out = split(&mut s, &[b"first\nsec", b"ond half", b"\nthird\r\n"]);
        assert_eq!(
            out,
            vec![
                b"first".to_vec(),
                b"second half".to_vec(),
                b"third".to_vec()
            ]
        );
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn unterminated_tail_waits_until_finish() {
        let mut s = LineSplitter::new(100);
        assert!(split(&mut s, &[b"no newline yet"]).is_empty());
        let mut out = Vec::new();
        s.finish(&mut |l| out.push(l.to_vec()));
        assert_eq!(out, vec![b"no newline yet".to_vec()]);
    }

    #[test]
    fn long_lines_are_handed_on_empty_not_buffered_nor_cut() {
        let mut s = LineSplitter::new(8);
        let big = vec![b'x'; 100_000];
        let mut out = split(&mut s, &[b"abc", &big, &big]);
        assert!(s.pending() <= 9);
        out.extend(split(&mut s, &[b"\nok\n", &big, b"\n", b"12345678\r\n"]));
        assert_eq!(
            out,
            vec![
                b"".to_vec(),
                b"ok".to_vec(),
                b"".to_vec(),
                b"12345678".to_vec()
            ]
        );
        assert_eq!(s.capped_lines, 2);
        let mut s = LineSplitter::new(8);
        let out = split(&mut s, &[b"123", b"456789\n", b"1234", b"5678\r\n"]);
        assert_eq!(out, vec![b"".to_vec(), b"12345678".to_vec()]);
        assert_eq!(s.capped_lines, 1);
    }

    #[test]
    fn invalid_utf8_passes_through() {
        let mut s = LineSplitter::new(100);
        assert_eq!(
            split(&mut s, &[b"\xff\xfe bad\n"]),
            vec![b"\xff\xfe bad".to_vec()]
        );
    }
}
