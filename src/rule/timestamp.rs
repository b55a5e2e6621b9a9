//! Reading the time written on a log line.
//!
//! Bans are decided on the log's own time (event time), so `scan` of yesterday's log shows
//! what the daemon would have done yesterday. Supported: classic syslog (`Nov 26 01:02:03`,
//! year inferred from a reference time, right across New Year), RFC 3339 / ISO 8601 as
//! rsyslog writes it (with or without fraction and offset), and any strftime format.
//! Times without an offset are local time.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
};

/// How a rule reads the time of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// Syslog or RFC 3339 at the start of the line, whichever is there.
    Auto,
    Syslog,
    Rfc3339,
    /// A chrono strftime format, matched at the start of the text.
    Strftime(String),
}

impl TimeFormat {
    /// Parses the `time_format` key of a rule.
    pub fn parse(text: &str) -> Result<TimeFormat, String> {
        match text {
            "auto" => Ok(TimeFormat::Auto),
            "syslog" => Ok(TimeFormat::Syslog),
            "rfc3339" | "iso8601" => Ok(TimeFormat::Rfc3339),
            f if f.contains('%') => {
                // Parse once against nothing to catch malformed specifiers now, not per line.
                let items = chrono::format::StrftimeItems::new(f);
                if items
                    .clone()
                    .any(|i| matches!(i, chrono::format::Item::Error))
                {
                    return Err(format!("`{f}` is not a valid strftime format"));
                }
                Ok(TimeFormat::Strftime(f.to_string()))
            }
            other => Err(format!(
                "`{other}` is not a time format: use auto, syslog, rfc3339 or a strftime format such as `%d/%b/%Y:%H:%M:%S %z`"
            )),
        }
    }

    /// The time at the start of `text`; `reference` (now, or a file's modification time)
    /// supplies the year when the format has none.
    pub fn read(&self, text: &[u8], reference: DateTime<Local>) -> Option<DateTime<FixedOffset>> {
        let text = match std::str::from_utf8(text) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&text[..e.valid_up_to()]).ok()?,
        };
        let text = text.trim_start_matches([' ', '[']);
        match self {
            TimeFormat::Auto => read_syslog(text, reference).or_else(|| read_rfc3339(text)),
            TimeFormat::Syslog => read_syslog(text, reference),
            TimeFormat::Rfc3339 => read_rfc3339(text),
            TimeFormat::Strftime(f) => read_strftime(f, text, reference),
        }
    }
}

/// The formats a rule tries, in order, until one reads the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFormats(Vec<TimeFormat>);

impl TimeFormats {
    pub fn new(formats: Vec<TimeFormat>) -> Result<TimeFormats, String> {
        if formats.is_empty() {
            return Err("time_format needs at least one format".into());
        }
        Ok(TimeFormats(formats))
    }

    /// The first format's reading that succeeds. A single format also remembers its
    /// last stamp (see `TimeCache`).
    pub fn read_cached(
        &self,
        text: &[u8],
        reference: DateTime<Local>,
        cache: &mut TimeCache,
    ) -> Option<DateTime<FixedOffset>> {
        match self.0.as_slice() {
            [one] => one.read_cached(text, reference, cache),
            many => many.iter().find_map(|f| f.read(text, reference)),
        }
    }
}

/// The last time read, keyed by the exact text of its stamp: consecutive log lines
/// mostly share their second, and reading a time is far dearer than comparing bytes.
#[derive(Debug, Clone, Default)]
pub struct TimeCache {
    key: Vec<u8>,
    value: Option<DateTime<FixedOffset>>,
}

impl TimeFormat {
    /// `read`, remembering the last stamp.
    pub fn read_cached(
        &self,
        text: &[u8],
        reference: DateTime<Local>,
        cache: &mut TimeCache,
    ) -> Option<DateTime<FixedOffset>> {
        let Some(len) = self.stamp_len(text) else {
            return self.read(text, reference);
        };
        if cache.value.is_some() && cache.key == text[..len] {
            return cache.value;
        }
        let value = self.read(text, reference);
        cache.key.clear();
        cache.key.extend_from_slice(&text[..len]);
        cache.value = value;
        value
    }

    /// How many leading bytes of `text` hold everything `read` looks at, for the
    /// built-in formats.
    fn stamp_len(&self, text: &[u8]) -> Option<usize> {
        let skip = text.iter().take_while(|&&b| b == b' ' || b == b'[').count();
        let rest = &text[skip..];
        let syslog = matches!(self, TimeFormat::Auto | TimeFormat::Syslog);
        let iso = matches!(self, TimeFormat::Auto | TimeFormat::Rfc3339);
        let len = match rest.first()? {
            b'A'..=b'Z' if syslog => syslog_len(rest)?,
            b'0'..=b'9' if iso => {
                let first = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
                match rest.get(first + 1..) {
                    // `date time`: the time is the second token. (Found by fuzzing: a
                    // ten-byte text with no space has no second token at all.)
                    Some(second) if first == 10 => {
                        first
                            + 1
                            + second
                                .iter()
                                .position(|&b| b == b' ')
                                .unwrap_or(second.len())
                    }
                    _ => first,
                }
            }
            _ => return None,
        };
        Some(skip + len.min(rest.len()))
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// How many bytes `read_syslog` looks at: month, spaces, the day token, a space and the
/// clock. (Found by fuzzing: a fixed 15 let a cached time stand for a padded stamp that
/// differs only further on.)
fn syslog_len(b: &[u8]) -> Option<usize> {
    let mut i = b.len().min(3);
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i += b[i..].iter().position(|&c| c == b' ')?;
    Some((i + 1 + 8).min(b.len()))
}

/// `Mmm dd hh:mm:ss`, day space-padded or not.
fn read_syslog(text: &str, reference: DateTime<Local>) -> Option<DateTime<FixedOffset>> {
    let b = text.as_bytes();
    let month = MONTHS
        .iter()
        .position(|m| b.get(..3) == Some(m.as_bytes()))? as u32
        + 1;
    let rest = text.get(3..)?.trim_start_matches(' ');
    let (day, rest) = rest.split_once(' ')?;
    let day: u32 = day.parse().ok()?;
    let time = read_clock(rest.as_bytes().get(..8)?)?;
    infer_year(reference, |year| {
        NaiveDate::from_ymd_opt(year, month, day).map(|d| d.and_time(time))
    })
}

/// `hh:mm:ss`, read by hand: this runs for every new second of a log.
fn read_clock(b: &[u8]) -> Option<NaiveTime> {
    let two = |i: usize| -> Option<u32> {
        let (h, l) = (b[i], b[i + 1]);
        (h.is_ascii_digit() && l.is_ascii_digit())
            .then(|| u32::from(h - b'0') * 10 + u32::from(l - b'0'))
    };
    if b[2] != b':' || b[5] != b':' {
        return None;
    }
    NaiveTime::from_hms_opt(two(0)?, two(3)?, two(6)?)
}

/// Picks the latest year that does not put the time in the future (two days of slack for
/// clocks and time zones), so December lines read in January land in the previous year.
fn infer_year(
    reference: DateTime<Local>,
    build: impl Fn(i32) -> Option<NaiveDateTime>,
) -> Option<DateTime<FixedOffset>> {
    let limit = reference
        .checked_add_signed(Duration::days(2))
        .unwrap_or(reference);
    // Four years back covers 29 February.
    for year in [
        reference.year() + 1,
        reference.year(),
        reference.year() - 1,
        reference.year() - 2,
        reference.year() - 3,
        reference.year() - 4,
    ] {
        if let Some(naive) = build(year)
            && let Some(at) = local(naive)
            && at <= limit
        {
            return Some(at);
        }
    }
    None
}

fn local(naive: NaiveDateTime) -> Option<DateTime<FixedOffset>> {
    let at = Local.from_local_datetime(&naive);
    // A time inside a daylight-saving gap does not exist; an hour later does.
    at.earliest()
        .or_else(|| {
            Local
                .from_local_datetime(&naive.checked_add_signed(Duration::hours(1))?)
                .earliest()
        })
        .map(|t| t.fixed_offset())
}

/// `2024-07-20T14:42:11.123456+02:00`, `...Z`, or without offset (local time); a space
/// instead of `T` is accepted.
fn read_rfc3339(text: &str) -> Option<DateTime<FixedOffset>> {
    if !text.as_bytes().get(..4)?.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let token_end = |s: &str| s.find([' ', ']', ',']).unwrap_or(s.len());
    let first = &text[..token_end(text)];
    let candidate: std::borrow::Cow<str> = if first.len() == 10 {
        // Date, space, time: join them into one token.
        let rest = text.get(11..)?;
        format!("{first}T{}", &rest[..token_end(rest)]).into()
    } else {
        first.into()
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(&candidate) {
        return Some(at);
    }
    let (naive, _) = NaiveDateTime::parse_and_remainder(&candidate, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    local(naive)
}

fn read_strftime(
    format: &str,
    text: &str,
    reference: DateTime<Local>,
) -> Option<DateTime<FixedOffset>> {
    let has_zone = ["%z", "%:z", "%#z", "%+"]
        .iter()
        .any(|z| format.contains(z));
    let has_year = ["%Y", "%y", "%G", "%g", "%C", "%s", "%+", "%F", "%D", "%c"]
        .iter()
        .any(|y| format.contains(y));
    if has_zone {
        return DateTime::parse_and_remainder(text, format)
            .ok()
            .map(|(at, _)| at);
    }
    if has_year {
        let (naive, _) = NaiveDateTime::parse_and_remainder(text, format).ok()?;
        return local(naive);
    }
    let with_year = format!("%Y {format}");
    infer_year(reference, |year| {
        NaiveDateTime::parse_and_remainder(&format!("{year} {text}"), &with_year)
            .ok()
            .map(|(n, _)| n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> DateTime<Local> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Local)
    }

    fn local_naive(at: DateTime<FixedOffset>) -> String {
        at.with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    #[test]
    fn syslog_takes_the_year_of_the_reference() {
        let at = TimeFormat::Auto
            .read(
                b"Jun 14 15:16:01 combo sshd",
                reference("2026-11-26T12:00:00Z"),
            )
            .unwrap();
        assert_eq!(local_naive(at), "2026-06-14 15:16:01");
    }

    #[test]
    fn syslog_december_read_in_january_is_last_year() {
        let at = TimeFormat::Syslog
            .read(b"Dec 31 23:59:59 host x", reference("2027-01-01T00:30:00Z"))
            .unwrap();
        assert_eq!(local_naive(at), "2026-12-31 23:59:59");
    }

    #[test]
    fn syslog_accepts_space_padded_days() {
        let at = TimeFormat::Syslog
            .read(b"Dec  1 06:55:46 LabSZ", reference("2026-12-26T00:00:00Z"))
            .unwrap();
        assert_eq!(local_naive(at), "2026-12-01 06:55:46");
    }

    #[test]
    fn rfc3339_keeps_its_offset() {
        let at = TimeFormat::Auto
            .read(
                b"2024-07-20T14:42:11.123456+02:00 host sshd",
                reference("2026-01-01T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(at.to_rfc3339(), "2024-07-20T14:42:11.123456+02:00");
        let z = TimeFormat::Rfc3339
            .read(b"2024-07-20T14:42:11Z x", reference("2026-01-01T00:00:00Z"))
            .unwrap();
        assert_eq!(z.timestamp(), 1721486531);
    }

    #[test]
    fn iso_with_space_and_no_offset_is_local() {
        let at = TimeFormat::Auto
            .read(
                b"2024-07-20 14:42:11 mysqld",
                reference("2026-01-01T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(local_naive(at), "2024-07-20 14:42:11");
    }

    #[test]
    fn strftime_with_zone_and_brackets() {
        let f = TimeFormat::parse("%d/%b/%Y:%H:%M:%S %z").unwrap();
        let at = f
            .read(
                b"[10/Oct/2000:13:55:36 -0700] GET /",
                reference("2026-01-01T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(at.to_rfc3339(), "2000-10-10T13:55:36-07:00");
    }

    #[test]
    fn strftime_without_year_infers_it() {
        let f = TimeFormat::parse("%b %d %H:%M:%S").unwrap();
        let at = f
            .read(b"Mar 03 10:00:00 x", reference("2026-11-26T00:00:00Z"))
            .unwrap();
        assert_eq!(local_naive(at), "2026-03-03 10:00:00");
    }

    #[test]
    fn unreadable_times_are_none_not_panics() {
        let r = reference("2026-01-01T00:00:00Z");
        assert_eq!(TimeFormat::Auto.read(b"garbage line", r), None);
        assert_eq!(TimeFormat::Auto.read(b"Feb 30 10:00:00 x", r), None);
        assert_eq!(TimeFormat::Auto.read(b"\xff\xfe", r), None);
        assert_eq!(TimeFormat::Auto.read(b"", r), None);
        assert_eq!(TimeFormat::Syslog.read(b"Dec", r), None);
    }

    #[test]
    fn the_cache_gives_the_same_answers() {
        let r = reference("2026-11-26T12:00:00Z");
        let mut cache = TimeCache::default();
        for line in [
            &b"Dec 10 06:55:46 a"[..],
            b"Dec 10 06:55:46 b",
            b"Dec 10 06:55:47 a",
            b"Dec 1 06:55:47 a",
            b"2024-07-20 14:42:11 x",
            b"2024-07-20 14:42:12 x",
            b"2024-07-20T14:42:11+02:00 x",
            b"garbage",
            b"",
        ] {
            assert_eq!(
                TimeFormat::Auto.read_cached(line, r, &mut cache),
                TimeFormat::Auto.read(line, r)
            );
        }
    }

    #[test]
    fn a_list_of_formats_tries_each_in_turn() {
        let f = TimeFormats::new(vec![
            TimeFormat::Auto,
            TimeFormat::parse("%y%m%d %H:%M:%S").unwrap(),
        ])
        .unwrap();
        let r = reference("2026-11-26T12:00:00Z");
        let mut cache = TimeCache::default();
        let old = f
            .read_cached(b"151126  1:02:03 [Warning] Access denied", r, &mut cache)
            .unwrap();
        assert_eq!(local_naive(old), "2015-11-26 01:02:03");
        let new = f
            .read_cached(b"2025-11-26T01:02:03.123456Z 12 [Note]", r, &mut cache)
            .unwrap();
        assert_eq!(new.timestamp(), 1764118923);
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(TimeFormat::parse("weird").is_err());
        assert!(TimeFormat::parse("%Q").is_err());
    }
}
