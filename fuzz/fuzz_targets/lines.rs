//! The line splitter fed in random chunk sizes gives what splitting the whole stream at
//! once gives: every newline-terminated line, cut at the cap, trailing `\r` removed, and
//! never a line longer than the cap.
//!
//! Input: byte 0 is the cap (0..=255), the next 8 bytes seed the chunk sizes, the rest is
//! the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyfilter::source::lines::LineSplitter;

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// What the splitter should emit for `stream`, terminated lines first, then the tail
/// that `finish` emits.
fn model(stream: &[u8], max_line: usize) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..nl];
        lines.push(trim_cr(&line[..line.len().min(max_line)]).to_vec());
        rest = &rest[nl + 1..];
    }
    let tail = &rest[..rest.len().min(max_line)];
    let tail = (!tail.is_empty()).then(|| trim_cr(tail).to_vec());
    (lines, tail)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let max_line = data[0] as usize;
    let mut seed = u64::from_le_bytes(data[1..9].try_into().unwrap()) | 1;
    let stream = &data[9..];

    let mut splitter = LineSplitter::new(max_line);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift: chunk sizes of 0..=64 bytes (empty chunks too).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = ((seed % 65) as usize).min(rest.len());
        let (chunk, after) = rest.split_at(n);
        splitter.feed(chunk, &mut |l| {
            assert!(l.len() <= max_line, "emitted {} bytes, cap {max_line}", l.len());
            got.push(l.to_vec());
        });
        assert!(splitter.pending() <= max_line, "holds {} bytes, cap {max_line}", splitter.pending());
        rest = after;
    }
    let (want, want_tail) = model(stream, max_line);
    assert_eq!(got, want, "terminated lines differ (cap {max_line})");
    let mut tail = Vec::new();
    splitter.finish(&mut |l| {
        assert!(l.len() <= max_line);
        tail.push(l.to_vec());
    });
    assert_eq!(tail.pop(), want_tail, "unterminated tail differs (cap {max_line})");
    assert!(tail.is_empty());
    assert_eq!(splitter.pending(), 0);
});
