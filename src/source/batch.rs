//! Matching a whole file on every core: lines go out in batches to worker threads, each
//! matching them against all the rules at once (one `rule::Automaton`), and their matches
//! come back in line order.
//!
//! `scan` reads files far larger than anything the daemon sees at once. Matching (the
//! automaton and the capture search) is almost all of its cost and every line is
//! independent, so batches of lines are matched in parallel; counting and output, which
//! depend on order, stay on the caller's thread.

use std::collections::BTreeMap;
use std::io::{self, Read};

use chrono::{DateTime, Local};
use crossbeam_channel::bounded;

use crate::rule::{Automaton, Found, Scratch, Skip};
use crate::source::lines::LineSplitter;

const READ_BLOCK: usize = 256 * 1024;
/// A batch is sent once it holds this many bytes of lines.
const BATCH_BYTES: usize = 512 * 1024;

/// One rule matching one line.
#[derive(Debug, Clone, Copy)]
pub struct LineMatch {
    /// 1-based line number in the input.
    pub line: u64,
    /// Index of the rule in the automaton given to `match_stream`.
    pub rule: usize,
    pub result: Result<Found, Skip>,
}

/// What reading the whole input found out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub lines: u64,
    /// Lines cut at the length cap.
    pub capped: u64,
}

/// Lines, each followed by `\n`, and the number of the first.
struct Batch {
    seq: u64,
    first_line: u64,
    count: u64,
    text: Vec<u8>,
}

impl Batch {
    fn new(seq: u64, first_line: u64) -> Batch {
        Batch {
            seq,
            first_line,
            count: 0,
            text: Vec::with_capacity(BATCH_BYTES + READ_BLOCK),
        }
    }

    fn push(&mut self, line: &[u8]) {
        self.count += 1;
        self.text.extend_from_slice(line);
        self.text.push(b'\n');
    }

    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let text = self.text.strip_suffix(b"\n").unwrap_or(&self.text);
        text.split(|&b| b == b'\n').take(self.count as usize)
    }
}

/// Matches every line of `input` against the rules of `automaton` and calls `each` for
/// every match, in line order. Stops early when `each` fails.
pub fn match_stream(
    input: impl Read + Send,
    automaton: &Automaton,
    reference: DateTime<Local>,
    max_line: usize,
    mut each: impl FnMut(LineMatch) -> io::Result<()>,
) -> io::Result<Totals> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let (batch_tx, batch_rx) = bounded::<Batch>(workers * 2);
    let (done_tx, done_rx) = bounded::<(u64, Vec<LineMatch>)>(workers * 2);
    std::thread::scope(|scope| {
        let reader =
            scope.spawn(move || read_batches(input, max_line, |b| batch_tx.send(b).is_ok()));
        for _ in 0..workers {
            let batch_rx = batch_rx.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                let mut scratch = automaton.scratch();
                for batch in batch_rx {
                    let found = match_batch(&batch, automaton, &mut scratch, reference);
                    if done_tx.send((batch.seq, found)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        drop(batch_rx);
        // Batches finish out of order; hand them on in order.
        let mut pending: BTreeMap<u64, Vec<LineMatch>> = BTreeMap::new();
        let mut next = 0;
        let mut result = Ok(());
        for (seq, found) in &done_rx {
            pending.insert(seq, found);
            while let Some(found) = pending.remove(&next) {
                next += 1;
                for m in found {
                    result = each(m);
                    if result.is_err() {
                        break;
                    }
                }
                if result.is_err() {
                    break;
                }
            }
            if result.is_err() {
                // Dropping the receiver stops the workers, which stops the reader.
                drop(done_rx);
                break;
            }
        }
        let totals = reader.join().expect("the reader thread does not panic");
        result.and(totals)
    })
}

/// Reads `input`, splits it into lines (capped as the daemon caps them) and hands out
/// batches until `send` refuses one.
fn read_batches(
    mut input: impl Read,
    max_line: usize,
    send: impl Fn(Batch) -> bool,
) -> io::Result<Totals> {
    let mut buf = vec![0u8; READ_BLOCK];
    let mut splitter = LineSplitter::new(max_line);
    let mut batch = Batch::new(0, 1);
    let mut lines = 0;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        splitter.feed(&buf[..n], &mut |line| batch.push(line));
        if batch.text.len() >= BATCH_BYTES {
            lines += batch.count;
            let next = Batch::new(batch.seq + 1, lines + 1);
            if !send(std::mem::replace(&mut batch, next)) {
                return Ok(Totals {
                    lines,
                    capped: splitter.capped_lines,
                });
            }
        }
    }
    splitter.finish(&mut |line| batch.push(line));
    lines += batch.count;
    if batch.count > 0 {
        send(batch);
    }
    Ok(Totals {
        lines,
        capped: splitter.capped_lines,
    })
}

fn match_batch(
    batch: &Batch,
    automaton: &Automaton,
    scratch: &mut Scratch,
    reference: DateTime<Local>,
) -> Vec<LineMatch> {
    let mut found = Vec::new();
    for (line_no, line) in (batch.first_line..).zip(batch.lines()) {
        automaton.examine(line, reference, scratch, |rule, result| {
            found.push(LineMatch {
                line: line_no,
                rule,
                result,
            })
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_every_line_and_its_number() {
        let text: String = (1..=100_000).map(|i| format!("line {i}\n")).collect();
        let sent = std::sync::Mutex::new(Vec::new());
        let totals = read_batches(text.as_bytes(), 64, |b| {
            sent.lock().unwrap().push(b);
            true
        })
        .unwrap();
        assert_eq!(totals.lines, 100_000);
        let batches = sent.into_inner().unwrap();
        assert!(batches.len() > 1);
        let mut expected = 1;
        for (seq, b) in batches.iter().enumerate() {
            assert_eq!(b.seq, seq as u64);
            for (n, line) in (b.first_line..).zip(b.lines()) {
                assert_eq!(n, expected);
                assert_eq!(line, format!("line {n}").as_bytes());
                expected += 1;
            }
        }
        assert_eq!(expected, 100_001);
    }

    #[test]
    fn an_unterminated_last_line_and_empty_lines_count() {
        let sent = std::sync::Mutex::new(Vec::new());
        let totals = read_batches(&b"a\n\nlast"[..], 64, |b| {
            sent.lock().unwrap().push(b);
            true
        })
        .unwrap();
        assert_eq!(totals.lines, 3);
        let batches = sent.into_inner().unwrap();
        assert_eq!(
            batches[0].lines().collect::<Vec<_>>(),
            [&b"a"[..], b"", b"last"]
        );
    }
}
