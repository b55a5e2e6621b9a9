//! Inputs that made a fuzz target (fuzz/fuzz_targets/) fail, replayed through the same
//! library functions. Each input is kept as found under fuzz/regressions/<target>/.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Local, TimeZone};
use pyfilter::config::ConfigSource;
use pyfilter::rule::Automaton;
use pyfilter::rule::timestamp::{TimeCache, TimeFormat};
use pyfilter::settings::Settings;

/// The fuzz targets' fixed reference time (2023-11-14T22:13:20Z).
fn reference() -> DateTime<Local> {
    Local.timestamp_opt(1_700_000_000, 0).unwrap()
}

/// Found by the `timestamp` target: `TimeFormat::read_cached` panicked in `stamp_len`
/// ("range start index 11 out of range for slice of length 10", src/timestamp.rs) on a
/// text of exactly 10 bytes that starts with a digit and holds no space.
#[test]
fn timestamp_ten_bytes_starting_with_a_digit_read_cached() {
    let input = include_bytes!("../fuzz/regressions/timestamp/stamp_len-ten-digit-bytes-no-space");
    assert_eq!(input, b"1700000000");
    for format in [TimeFormat::Auto, TimeFormat::Syslog, TimeFormat::Rfc3339] {
        for text in [&input[..], b"2024-07-20", b"[2024-07-20", b"  0123456789"] {
            let mut cache = TimeCache::default();
            assert_eq!(
                format.read_cached(text, reference(), &mut cache),
                format.read(text, reference()),
                "{format:?} on {:?}",
                String::from_utf8_lossy(text)
            );
        }
    }
}

/// The same bug reached through a rule, as the daemon would: a rule without a `time`
/// group reads the time from the whole line, and a line that is just an IPv4 address of
/// 10 characters (`10.0.0.123`) is such a text.
#[test]
fn timestamp_ten_byte_line_through_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bare-address.yml"),
        "name: bare-address\npatterns: ['^<IP>$']\n",
    )
    .unwrap();
    let text = format!("server_name: test\nrules_dir: {}\n", dir.path().display());
    let settings =
        Settings::from_text(Path::new("test.yml"), &text, ConfigSource::Embedded).unwrap();
    let rule = settings.rule("bare-address").expect("rule loaded");
    let automaton = Automaton::new(vec![Arc::new(rule.clone())]).unwrap();
    let mut scratch = automaton.scratch();
    // Must not panic; the line holds no time, so it is skipped as BadTime.
    let mut got = None;
    automaton.examine(b"10.0.0.123", reference(), &mut scratch, |_, f| {
        got = Some(f)
    });
    assert!(matches!(got, Some(Err(_))), "{got:?}");
}

/// Found with the `timestamp` target's cache check (consecutive lines through one
/// `TimeCache` must read as without it): the cache keys a syslog stamp on its first 15
/// bytes, but `read_syslog` skips any number of spaces after the month (and reads a day
/// such as `0026`), so a stamp longer than 15 bytes reads past the key. Two lines that
/// differ only after byte 15 (`Nov  26 01:02:03`, `Nov  26 01:02:04`) then get the first
/// line's time.
#[test]
fn timestamp_cache_never_changes_a_syslog_reading() {
    let input =
        include_bytes!("../fuzz/regressions/timestamp/time-cache-syslog-stamp-longer-than-15");
    for format in [TimeFormat::Auto, TimeFormat::Syslog] {
        let mut cache = TimeCache::default();
        for line in input
            .split(|&b| b == b'\n')
            .chain([&b"Nov 0026 01:02:03"[..], b"Nov 0026 01:02:04"])
        {
            assert_eq!(
                format.read_cached(line, reference(), &mut cache),
                format.read(line, reference()),
                "{format:?} on {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
