//! Reading the time written on a log line.
//!
//! Bans are decided on the log's own time (event time), so `scan` of yesterday's log shows
//! what the daemon would have done yesterday. `auto` knows the layouts logs are written in:
//!
//! - syslog, `Nov 26 01:02:03` (day padded or not, a fraction, a year after the day or after
//!   the clock, a weekday before: `Wed Jul 17 22:54:32.123 2013`, as Apache and ctime write);
//! - ISO 8601 / RFC 3339: `2024-07-20T14:42:11.123456+02:00`, a space for the `T`, `,` for
//!   the `.`, `Z`, `+02`, `+0200`, `+02:00`, the offset glued on or after one space, or
//!   none; `/` between the date's parts (`2015/01/21 10:56:10`, nginx);
//! - the common log format, `10/Oct/2000:13:55:36 -0700` (web servers' access logs), the
//!   month also in the languages Java's access logs write it in (`02/sept./2015`, `Okt`);
//! - MySQL's old `130324 17:56:13` (`yymmdd`, the hour padded with a space or not);
//! - TAI64N labels, `@4000000050f3a2e1...` (daemontools' multilog).
//!
//! Besides `auto`: `epoch` (seconds since 1970, with a fraction or not) and any strftime
//! format; one with a time but no date (`%H:%M:%S%.f`) gives that time on the day of the
//! reference (see `on_the_reference_day`). A year-less time takes the year that puts it
//! latest without being in the future (right across New Year); a time without an offset is
//! local time. A `%Z` standing alone reads a zone's name: an unambiguous abbreviation
//! (`PDT`, `CEST`) or a numeric one (`+03`) gives its offset, any other name local time.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime,
    TimeZone, Utc,
};

/// Why a `time_format` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeFormatError {
    #[error("`{0}` is not a valid strftime format")]
    BadStrftime(String),
    #[error(
        "`{0}` is not a time format: use auto, syslog, iso8601, tai64n, epoch or a strftime format such as `%d/%b/%Y:%H:%M:%S %z`"
    )]
    Unknown(String),
    #[error("time_format needs at least one format")]
    Empty,
}

/// How a rule reads the time of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// Whichever known layout starts the text (see the module's documentation).
    Auto,
    Syslog,
    Rfc3339,
    Tai64n,
    /// Seconds since 1970-01-01 UTC, a fraction allowed.
    Epoch,
    /// A chrono strftime format, matched at the start of the text.
    Strftime(String),
}

impl TimeFormat {
    /// Parses the `time_format` key of a rule.
    pub fn parse(text: &str) -> Result<TimeFormat, TimeFormatError> {
        match text {
            "auto" => Ok(TimeFormat::Auto),
            "syslog" => Ok(TimeFormat::Syslog),
            "rfc3339" | "iso8601" => Ok(TimeFormat::Rfc3339),
            "tai64n" => Ok(TimeFormat::Tai64n),
            "epoch" => Ok(TimeFormat::Epoch),
            f if f.contains('%') => {
                // Parse once against nothing to catch malformed specifiers now, not per line.
                let items = chrono::format::StrftimeItems::new(f);
                if items
                    .clone()
                    .any(|i| matches!(i, chrono::format::Item::Error))
                {
                    return Err(TimeFormatError::BadStrftime(f.to_string()));
                }
                Ok(TimeFormat::Strftime(f.to_string()))
            }
            other => Err(TimeFormatError::Unknown(other.to_string())),
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
            TimeFormat::Auto => read_auto(text, reference),
            TimeFormat::Syslog => read_syslog(text, reference),
            TimeFormat::Rfc3339 => read_iso(text),
            TimeFormat::Tai64n => read_tai64n(text),
            TimeFormat::Epoch => read_epoch(text),
            TimeFormat::Strftime(f) => read_strftime(f, text, reference),
        }
    }
}

/// The formats a rule tries, in order, until one reads the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFormats(Vec<TimeFormat>);

impl TimeFormats {
    pub fn new(formats: Vec<TimeFormat>) -> Result<TimeFormats, TimeFormatError> {
        if formats.is_empty() {
            return Err(TimeFormatError::Empty);
        }
        Ok(TimeFormats(formats))
    }

    /// `auto` alone.
    pub fn auto() -> TimeFormats {
        TimeFormats(vec![TimeFormat::Auto])
    }

    /// The first format's reading that succeeds, remembered for the next line whose text
    /// is the same (see `TimeCache`).
    pub fn read_cached(
        &self,
        text: &[u8],
        reference: DateTime<Local>,
        cache: &mut TimeCache,
    ) -> Option<DateTime<FixedOffset>> {
        cache.read(text, || self.0.iter().find_map(|f| f.read(text, reference)))
    }
}

impl TimeFormat {
    /// `read`, remembered for the next text that is the same (see `TimeCache`).
    pub fn read_cached(
        &self,
        text: &[u8],
        reference: DateTime<Local>,
        cache: &mut TimeCache,
    ) -> Option<DateTime<FixedOffset>> {
        cache.read(text, || self.read(text, reference))
    }
}

/// The last time read, keyed by the exact text of its stamp: consecutive log lines
/// mostly share their second, and reading a time is far dearer than comparing bytes.
#[derive(Debug, Clone, Default)]
pub struct TimeCache {
    key: Vec<u8>,
    value: Option<DateTime<FixedOffset>>,
}

impl TimeCache {
    const MAX_KEY: usize = 64;

    fn read(
        &mut self,
        text: &[u8],
        read: impl FnOnce() -> Option<DateTime<FixedOffset>>,
    ) -> Option<DateTime<FixedOffset>> {
        // A stamp, or a `time` group, is short; a longer text is a whole line, read
        // from its start, whose bytes say nothing about the next line's time.
        let cacheable = text.len() <= TimeCache::MAX_KEY;
        if cacheable && self.value.is_some() && self.key == text {
            return self.value;
        }
        let value = read();
        if cacheable {
            self.key.clear();
            self.key.extend_from_slice(text);
            self.value = value;
        }
        value
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/// Short month names of the languages Java writes them in most (CLDR and the older
/// JDK tables): English, French, German, Spanish, Italian, Portuguese, Dutch; lower
/// case, without a final `.`.
const LOCALIZED_MONTHS: [&[&str]; 12] = [
    &["jan", "janv", "ene", "gen"],
    &["feb", "févr", "fev"],
    &["mar", "mars", "mär", "märz", "mrt"],
    &["apr", "avr", "abr"],
    &["may", "mai", "mag", "mei"],
    &["jun", "juin", "juni", "giu"],
    &["jul", "juil", "juli", "lug"],
    &["aug", "août", "ago"],
    &["sep", "sept", "set"],
    &["oct", "okt", "ott", "out"],
    &["nov"],
    &["dec", "déc", "dez", "dic"],
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn read_auto(text: &str, reference: DateTime<Local>) -> Option<DateTime<FixedOffset>> {
    match text.as_bytes().first()? {
        b'A'..=b'Z' => read_syslog(text, reference),
        b'@' => read_tai64n(text),
        b'0'..=b'9' => read_iso(text)
            .or_else(|| read_clf(text))
            .or_else(|| read_mysql(text)),
        _ => None,
    }
}

/// A cursor over the text of a time stamp.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            b: text.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let ok = self.peek() == Some(c);
        if ok {
            self.i += 1;
        }
        ok
    }

    fn spaces(&mut self) -> usize {
        let n = self.b[self.i..].iter().take_while(|&&b| b == b' ').count();
        self.i += n;
        n
    }

    /// Exactly `min..=max` digits, as a number.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let n = self.b[self.i..]
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        // A field of variable width must be followed by something else than a digit.
        if n < min || (min != max && self.b.get(self.i + n).is_some_and(u8::is_ascii_digit)) {
            return None;
        }
        let v = self.b[self.i..self.i + n]
            .iter()
            .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
        self.i += n;
        Some(v)
    }

    /// `hh:mm:ss` (the hour may have one digit).
    fn clock(&mut self) -> Option<NaiveTime> {
        let h = self.number(1, 2)?;
        self.eat(b':').then_some(())?;
        let m = self.number(2, 2)?;
        self.eat(b':').then_some(())?;
        let s = self.number(2, 2)?;
        let nanos = self.fraction();
        // A leap second is read as the last nanosecond before the next minute.
        let (s, nanos) = if s == 60 {
            (59, 999_999_999)
        } else {
            (s, nanos)
        };
        NaiveTime::from_hms_nano_opt(h, m, s, nanos)
    }

    /// `.123` or `,123`, as nanoseconds (0 when absent).
    fn fraction(&mut self) -> u32 {
        let start = self.i;
        if !(self.eat(b'.') || self.eat(b',')) {
            return 0;
        }
        let digits: Vec<u8> = self.b[self.i..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if digits.is_empty() {
            self.i = start;
            return 0;
        }
        self.i += digits.len();
        digits
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(9)
            .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'))
    }

    /// A month's abbreviation.
    fn month(&mut self) -> Option<u32> {
        let word = self.b.get(self.i..self.i + 3)?;
        let m = MONTHS.iter().position(|m| m.as_bytes() == word)? as u32 + 1;
        self.i += 3;
        Some(m)
    }

    /// A month's abbreviation in the language of the server's locale, as Java's access
    /// logs (Jetty, Tomcat) write it under a locale other than English: `sept.`, `Okt`,
    /// `févr.`, `mag`. Letters up to the next `/` (a final `.` dropped), any case.
    fn localized_month(&mut self) -> Option<u32> {
        let len = self.b[self.i..]
            .iter()
            .take(12)
            .take_while(|&&b| b != b'/' && b != b' ' && !b.is_ascii_digit())
            .count();
        let word = std::str::from_utf8(&self.b[self.i..self.i + len]).ok()?;
        let word = word.strip_suffix('.').unwrap_or(word).to_lowercase();
        let m = LOCALIZED_MONTHS
            .iter()
            .position(|names| names.contains(&word.as_str()))? as u32
            + 1;
        self.i += len;
        Some(m)
    }

    /// `Z`, `+hh`, `+hhmm` or `+hh:mm`, if there.
    fn offset(&mut self) -> Option<FixedOffset> {
        let start = self.i;
        if self.eat(b'Z') {
            return FixedOffset::east_opt(0);
        }
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return None,
        };
        self.i += 1;
        let Some(h) = self.number(2, 2) else {
            self.i = start;
            return None;
        };
        let colon = self.eat(b':');
        let m = match self.number(2, 2) {
            Some(m) => m,
            None if colon => {
                self.i = start;
                return None;
            }
            None => 0,
        };
        FixedOffset::east_opt(sign * (h * 3600 + m * 60) as i32).or_else(|| {
            self.i = start;
            None
        })
    }
}

/// `[Www ]Mmm dd [yyyy ]hh:mm:ss[.frac][ yyyy]`.
fn read_syslog(text: &str, reference: DateTime<Local>) -> Option<DateTime<FixedOffset>> {
    let mut c = Cursor::new(text);
    if let Some(w) = text.get(..4)
        && WEEKDAYS.iter().any(|d| w.starts_with(d))
        && w.ends_with(' ')
    {
        c.i = 4;
        c.spaces();
    }
    let month = c.month()?;
    if c.spaces() == 0 {
        return None;
    }
    let day = c.number(1, 2)?;
    if c.spaces() == 0 {
        return None;
    }
    let mut year = None;
    let save = c.i;
    if let Some(y) = c.number(4, 4)
        && c.spaces() > 0
    {
        year = Some(y as i32);
    } else {
        c.i = save;
    }
    let time = c.clock()?;
    if year.is_none()
        && c.spaces() == 1
        && let Some(y) = c.number(4, 4)
    {
        year = Some(y as i32);
    }
    match year {
        Some(y) => local(NaiveDate::from_ymd_opt(y, month, day)?.and_time(time)),
        None => infer_year(reference, |year| {
            NaiveDate::from_ymd_opt(year, month, day).map(|d| d.and_time(time))
        }),
    }
}

/// `YYYY-MM-DD[T ]hh:mm:ss[.frac][ ][offset]`, or `/` between the date's parts.
fn read_iso(text: &str) -> Option<DateTime<FixedOffset>> {
    let mut c = Cursor::new(text);
    let year = c.number(4, 4)? as i32;
    let sep = c.peek()?;
    if sep != b'-' && sep != b'/' {
        return None;
    }
    c.i += 1;
    let month = c.number(2, 2)?;
    c.eat(sep).then_some(())?;
    let day = c.number(2, 2)?;
    if !(c.eat(b'T') || c.spaces() > 0) {
        return None;
    }
    let time = c.clock()?;
    let naive = NaiveDate::from_ymd_opt(year, month, day)?.and_time(time);
    let save = c.i;
    let offset = c.offset().or_else(|| {
        c.i = save;
        (c.spaces() == 1).then(|| c.offset()).flatten()
    });
    zoned(naive, offset)
}

/// `dd/Mmm/yyyy:hh:mm:ss[ offset]` (the common log format), the month in English or in
/// another language (`LOCALIZED_MONTHS`).
fn read_clf(text: &str) -> Option<DateTime<FixedOffset>> {
    let mut c = Cursor::new(text);
    let day = c.number(1, 2)?;
    c.eat(b'/').then_some(())?;
    let save = c.i;
    let month = match c.month() {
        Some(m) if c.eat(b'/') => m,
        _ => {
            c.i = save;
            let m = c.localized_month()?;
            c.eat(b'/').then_some(())?;
            m
        }
    };
    let year = c.number(4, 4)? as i32;
    c.eat(b':').then_some(())?;
    let time = c.clock()?;
    let naive = NaiveDate::from_ymd_opt(year, month, day)?.and_time(time);
    c.spaces();
    zoned(naive, c.offset())
}

/// MySQL before 5.7: `yymmdd hh:mm:ss`, the hour padded with a space or not.
fn read_mysql(text: &str) -> Option<DateTime<FixedOffset>> {
    let mut c = Cursor::new(text);
    let date = c.number(6, 6)?;
    if c.spaces() == 0 {
        return None;
    }
    let time = c.clock()?;
    let (y, m, d) = (date / 10000, date / 100 % 100, date % 100);
    local(NaiveDate::from_ymd_opt(2000 + y as i32, m, d)?.and_time(time))
}

/// `@` and 24 hexadecimal digits: 2^62 plus the seconds, then the nanoseconds.
fn read_tai64n(text: &str) -> Option<DateTime<FixedOffset>> {
    let hex = text.strip_prefix('@')?.get(..24)?;
    let secs = u64::from_str_radix(&hex[..16], 16)
        .ok()?
        .checked_sub(1 << 62)?;
    let nanos = u32::from_str_radix(&hex[16..], 16).ok()?;
    // Labels count TAI seconds; like multilog's own readers, the leap seconds are not
    // taken off: logs and people read them as UTC.
    DateTime::<Utc>::from_timestamp(i64::try_from(secs).ok()?, nanos).map(|t| t.fixed_offset())
}

/// Seconds since the epoch, a fraction allowed.
fn read_epoch(text: &str) -> Option<DateTime<FixedOffset>> {
    let mut c = Cursor::new(text);
    let secs = c.number(9, 11)?;
    let nanos = c.fraction();
    DateTime::<Utc>::from_timestamp(i64::from(secs), nanos).map(|t| t.fixed_offset())
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

/// A time of day without a date (`12:57:32.907`, logback's default layout): the day of
/// `reference`, or the day before when that would put it more than an hour after
/// `reference` (a line written before midnight, read after it). Right for lines read as
/// they are written; a file read later gets its last day's date on every line.
fn on_the_reference_day(
    reference: DateTime<Local>,
    time: NaiveTime,
) -> Option<DateTime<FixedOffset>> {
    let day = reference.date_naive();
    let at = local(day.and_time(time))?;
    let limit = reference
        .checked_add_signed(Duration::hours(1))
        .unwrap_or(reference);
    if at <= limit {
        Some(at)
    } else {
        local(day.pred_opt()?.and_time(time))
    }
}

/// `naive` at `offset`, or in local time when the text gave none.
fn zoned(naive: NaiveDateTime, offset: Option<FixedOffset>) -> Option<DateTime<FixedOffset>> {
    match offset {
        Some(offset) => offset.from_local_datetime(&naive).single(),
        None => local(naive),
    }
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

fn read_strftime(
    format: &str,
    text: &str,
    reference: DateTime<Local>,
) -> Option<DateTime<FixedOffset>> {
    if format.contains("%Z")
        && let Some(at) = read_zone_name(format, text, reference)
    {
        return Some(at);
    }
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
    let has_day = [
        "%m", "%b", "%B", "%h", "%d", "%e", "%j", "%a", "%A", "%u", "%w", "%U", "%W", "%V", "%x",
        "%v",
    ]
    .iter()
    .any(|d| format.contains(d));
    if !has_day {
        let (time, _) = NaiveTime::parse_and_remainder(text, format).ok()?;
        return on_the_reference_day(reference, time);
    }
    let with_year = format!("%Y {format}");
    infer_year(reference, |year| {
        NaiveDateTime::parse_and_remainder(&format!("{year} {text}"), &with_year)
            .ok()
            .map(|(n, _)| n)
    })
}

/// Unambiguous time zone abbreviations and their offsets in minutes. Left out on
/// purpose: names that stand for several zones (CST, IST, AST, ...); a line stamped with
/// one of them is read as local time, as chrono does with any `%Z`.
const ZONE_NAMES: &[(&str, i32)] = &[
    ("UTC", 0),
    ("UT", 0),
    ("GMT", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 60),
    ("BST", 60),
    ("CET", 60),
    ("CEST", 120),
    ("MET", 60),
    ("MEST", 120),
    ("EET", 120),
    ("EEST", 180),
    ("MSK", 180),
    ("SAST", 120),
    ("NST", -210),
    ("NDT", -150),
    ("ADT", -180),
    ("EST", -300),
    ("EDT", -240),
    ("CDT", -300),
    ("MST", -420),
    ("MDT", -360),
    ("PST", -480),
    ("PDT", -420),
    ("AKST", -540),
    ("AKDT", -480),
    ("HST", -600),
    ("HDT", -540),
    ("JST", 540),
    ("KST", 540),
    ("HKT", 480),
    ("AWST", 480),
    ("ACST", 570),
    ("ACDT", 630),
    ("AEST", 600),
    ("AEDT", 660),
    ("NZST", 720),
    ("NZDT", 780),
];

/// A strftime format with `%Z` standing alone between spaces (`%Z %b %e %H:%M:%S`, as
/// Monit writes): chrono only skips a zone's name, so the name is looked up here, an
/// abbreviation in `ZONE_NAMES` or a numeric name (`+03`, `-0330`, as the tz database
/// names zones without an abbreviation), and the time read with that offset. `None` when
/// the name is unknown: the caller then reads the time as local.
fn read_zone_name(
    format: &str,
    text: &str,
    reference: DateTime<Local>,
) -> Option<DateTime<FixedOffset>> {
    let (before, _) = format.split_once("%Z")?;
    if !(before.is_empty() || before.ends_with(char::is_whitespace)) {
        return None;
    }
    let index = before.split_whitespace().count();
    let (start, name) = text
        .split_whitespace()
        .nth(index)
        .map(|token| (token.as_ptr() as usize - text.as_ptr() as usize, token))?;
    let minutes = match ZONE_NAMES.iter().find(|(n, _)| *n == name) {
        Some((_, m)) => *m,
        None => {
            let (sign, digits) = match name.as_bytes().first()? {
                b'+' => (1, &name[1..]),
                b'-' => (-1, &name[1..]),
                _ => return None,
            };
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (h, m) = match digits.len() {
                2 => (digits.parse::<i32>().ok()?, 0),
                4 => (
                    digits[..2].parse::<i32>().ok()?,
                    digits[2..].parse::<i32>().ok()?,
                ),
                _ => return None,
            };
            sign * (h * 60 + m)
        }
    };
    let offset = format!(
        "{}{:02}{:02}",
        if minutes < 0 { '-' } else { '+' },
        minutes.abs() / 60,
        minutes.abs() % 60
    );
    let text = format!("{}{offset}{}", &text[..start], &text[start + name.len()..]);
    let format = format.replacen("%Z", "%z", 1);
    let has_year = ["%Y", "%y", "%G", "%g", "%C", "%s", "%+", "%F", "%D", "%c"]
        .iter()
        .any(|y| format.contains(y));
    if has_year {
        return DateTime::parse_and_remainder(&text, &format)
            .ok()
            .map(|(at, _)| at);
    }
    let limit = reference
        .checked_add_signed(Duration::days(2))
        .unwrap_or(reference);
    let with_year = format!("%Y {format}");
    (0..=5)
        .map(|back| reference.year() + 1 - back)
        .find_map(|year| {
            DateTime::parse_and_remainder(&format!("{year} {text}"), &with_year)
                .ok()
                .map(|(at, _)| at)
                .filter(|at| *at <= limit)
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
                TimeFormats::auto().read_cached(line, r, &mut cache),
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

    #[test]
    fn auto_reads_the_layouts_logs_are_written_in() {
        let r = reference("2026-11-26T12:00:00Z");
        let read = |text: &str| TimeFormat::Auto.read(text.as_bytes(), r).map(local_naive);
        let zoned = |text: &str| {
            TimeFormat::Auto
                .read(text.as_bytes(), r)
                .map(|t| t.to_rfc3339())
        };
        assert_eq!(
            read("Wed Jul 17 22:54:32 2013] [error]").as_deref(),
            Some("2013-07-17 22:54:32")
        );
        assert_eq!(
            read("Sat Jul 20 21:34:49.453232 2013]").as_deref(),
            Some("2013-07-20 21:34:49")
        );
        assert_eq!(
            read("Thu Sep  8 00:39:49 2016 [pid 1]").as_deref(),
            Some("2016-09-08 00:39:49")
        );
        assert_eq!(
            read("Oct 27 2015 09:24:46 host").as_deref(),
            Some("2015-10-27 09:24:46")
        );
        assert_eq!(
            read("2015/01/21 10:56:10 [error]").as_deref(),
            Some("2015-01-21 10:56:10")
        );
        assert_eq!(
            read("130324  0:04:00 [Warning]").as_deref(),
            Some("2013-03-24 00:04:00")
        );
        assert_eq!(
            read("2015-10-07  8:25:38 1398").as_deref(),
            Some("2015-10-07 08:25:38")
        );
        assert_eq!(
            read("2013-11-16 21:59:30,121 novo").as_deref(),
            Some("2013-11-16 21:59:30")
        );
        assert_eq!(
            zoned("2024-08-31 02:11:28.892+0800]").as_deref(),
            Some("2024-08-31T02:11:28.892+08:00")
        );
        assert_eq!(
            zoned("2019-11-26 01:04:49.008 +08:00 [WRN]").as_deref(),
            Some("2019-11-26T01:04:49.008+08:00")
        );
        assert_eq!(
            zoned("2020-10-19T17:44:33+0200 lvl").as_deref(),
            Some("2020-10-19T17:44:33+02:00")
        );
        assert_eq!(
            zoned("20/Jan/2015:19:53:28 +0100] \"GET").as_deref(),
            Some("2015-01-20T19:53:28+01:00")
        );
        assert_eq!(
            zoned("@400000004c91b044077a9e94 imap").as_deref(),
            Some("2010-09-16T05:51:00.125476500+00:00")
        );
        assert_eq!(
            read("24/Mar/2013:08:58:32 GMT]").as_deref(),
            Some("2013-03-24 08:58:32")
        );
    }

    #[test]
    fn a_time_without_a_date_takes_the_reference_day() {
        let f = TimeFormat::parse("%H:%M:%S%.f").unwrap();
        let noon = Local.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let at = |text: &str, r| f.read(text.as_bytes(), r).map(local_naive);
        assert_eq!(
            at("11:57:32.907 [http-nio-8080-exec-10] WARN", noon).as_deref(),
            Some("2026-11-26 11:57:32")
        );
        // Up to an hour ahead of the reference (clocks): the same day.
        assert_eq!(
            at("12:30:00.000 x", noon).as_deref(),
            Some("2026-11-26 12:30:00")
        );
        // Written before midnight, read after it: the day before.
        let night = Local.with_ymd_and_hms(2026, 11, 26, 0, 10, 0).unwrap();
        assert_eq!(
            at("23:59:59.001 [main] WARN", night).as_deref(),
            Some("2026-11-25 23:59:59")
        );
        assert_eq!(f.read(b"25:00:00.000 x", noon), None);
        assert_eq!(f.read(b"not a time", noon), None);
    }

    #[test]
    fn common_log_format_with_month_names_of_other_languages() {
        let r = reference("2026-11-26T12:00:00Z");
        let zoned = |text: &str| {
            TimeFormat::Auto
                .read(text.as_bytes(), r)
                .map(|t| t.to_rfc3339())
        };
        assert_eq!(
            zoned("02/sept./2015:00:11:31 +0200] \"GET").as_deref(),
            Some("2015-09-02T00:11:31+02:00")
        );
        assert_eq!(
            zoned("17/Okt/2015:00:35:12 +0200]").as_deref(),
            Some("2015-10-17T00:35:12+02:00")
        );
        assert_eq!(
            zoned("03/févr./2016:10:00:00 +0100]").as_deref(),
            Some("2016-02-03T10:00:00+01:00")
        );
        assert_eq!(
            zoned("03/Mär/2016:10:00:00 +0100]").as_deref(),
            Some("2016-03-03T10:00:00+01:00")
        );
        assert_eq!(
            zoned("03/mag/2016:10:00:00 +0100]").as_deref(),
            Some("2016-05-03T10:00:00+01:00")
        );
        assert_eq!(
            zoned("20/Jan/2015:19:53:28 +0100]").as_deref(),
            Some("2015-01-20T19:53:28+01:00")
        );
        assert_eq!(zoned("03/xyz/2016:10:00:00 +0100]"), None);
        assert_eq!(zoned("03/Septembre/2016:10:00:00 +0100]"), None);
    }

    #[test]
    fn epoch_seconds() {
        let f = TimeFormat::parse("epoch").unwrap();
        let at = f
            .read(b"1386543323.250 4 x", reference("2026-01-01T00:00:00Z"))
            .unwrap();
        assert_eq!(at.timestamp_millis(), 1_386_543_323_250);
    }

    #[test]
    fn a_zone_name_gives_its_offset() {
        let f = TimeFormat::parse("%Z %b %e %H:%M:%S").unwrap();
        let r = reference("2026-11-26T12:00:00Z");
        let read = |text: &str| f.read(text.as_bytes(), r).map(|t| t.to_rfc3339());
        assert_eq!(
            read("[PDT Apr 16 21:05:29] error").as_deref(),
            Some("2026-04-16T21:05:29-07:00")
        );
        assert_eq!(
            read("[CEST Aug  6 10:14:52] error").as_deref(),
            Some("2026-08-06T10:14:52+02:00")
        );
        assert_eq!(
            read("+0530 Dec 31 23:59:59 x").as_deref(),
            Some("2025-12-31T23:59:59+05:30")
        );
        assert_eq!(
            read("-03 Jan  2 00:00:00 x").as_deref(),
            Some("2026-01-02T00:00:00-03:00")
        );
        // An ambiguous or unknown name: local time, as chrono reads any `%Z`.
        let local = f.read(b"CST Apr 16 21:05:29", r).unwrap();
        assert_eq!(local_naive(local), "2026-04-16 21:05:29");
        let year = TimeFormat::parse("%Z %Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            year.read(b"EST 2019-01-02 03:04:05 x", r)
                .map(|t| t.to_rfc3339())
                .as_deref(),
            Some("2019-01-02T03:04:05-05:00")
        );
    }
}
