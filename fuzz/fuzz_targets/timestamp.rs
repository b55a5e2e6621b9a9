//! Every time format reads the input: never a panic, and the cached reading agrees with
//! the plain one, also line after line through one cache (the input split on newlines).
#![no_main]

use std::sync::OnceLock;

use chrono::{Local, TimeZone};
use libfuzzer_sys::fuzz_target;
use pyfilter::rule::timestamp::{TimeCache, TimeFormat, TimeFormats};

const STRFTIME: &[&str] = &[
    "%d/%b/%Y:%H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%b %e %H:%M:%S",
    "%s",
    "%a %b %d %H:%M:%S%.f %Y",
    "%y%m%d %k:%M:%S",
];

fn formats() -> &'static Vec<TimeFormat> {
    static FORMATS: OnceLock<Vec<TimeFormat>> = OnceLock::new();
    FORMATS.get_or_init(|| {
        let mut all = vec![TimeFormat::Auto, TimeFormat::Syslog, TimeFormat::Rfc3339];
        for name in ["auto", "syslog", "rfc3339", "iso8601"] {
            all.push(TimeFormat::parse(name).unwrap());
        }
        all.extend(STRFTIME.iter().map(|f| TimeFormat::parse(f).unwrap()));
        all
    })
}

fuzz_target!(|data: &[u8]| {
    let reference = Local.timestamp_opt(1_700_000_000, 0).unwrap();
    // Another reference just before New Year, where the syslog year inference turns.
    let new_year = Local.timestamp_opt(1_704_067_199, 0).unwrap();
    for format in formats() {
        let plain = format.read(data, reference);
        let _ = format.read(data, new_year);
        let mut cache = TimeCache::default();
        // Twice: the second reading comes from the cache and must agree.
        assert_eq!(format.read_cached(data, reference, &mut cache), plain);
        assert_eq!(format.read_cached(data, reference, &mut cache), plain);
    }
    // Consecutive lines through one cache, as a rule reads a log: the cache may only
    // save work, never change a reading.
    for format in formats() {
        let mut cache = TimeCache::default();
        for line in data.split(|&b| b == b'\n') {
            assert_eq!(
                format.read_cached(line, reference, &mut cache),
                format.read(line, reference),
                "{format:?} cached reading differs for {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
    let many = TimeFormats::new(formats().clone()).unwrap();
    let _ = many.read_cached(data, reference, &mut TimeCache::default());
    // The input as a format itself: `parse` must refuse or accept, never panic, and a
    // format it accepts must read without panicking.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((format, line)) = text.split_once('\n') {
            if let Ok(f) = TimeFormat::parse(format) {
                let _ = f.read(line.as_bytes(), reference);
            }
        } else {
            let _ = TimeFormat::parse(text);
        }
    }
});
