//! The header layer: what stands before a program's message on a log line, read once for
//! every rule.
//!
//! A rule's patterns describe a program's message; this module finds where that message
//! starts, which program wrote it and where its time is written. It knows:
//!
//! - classic syslog, `Mmm dd hh:mm:ss` (day padded or not, an optional fraction, an
//!   optional year after the day), with or without a host, with a `<facility.level>` token
//!   after the time (some syslogds) and Solaris' `[ID 123456 facility.level]` after the tag;
//! - ISO 8601 / RFC 3339 times in place of the classic one (rsyslog's high-precision
//!   format: fraction, `Z` or an offset, `T` or a space between date and time);
//! - TAI64N labels (`@4000000050f3a2e1...`, daemontools' multilog);
//! - a `<PRI>` prefix on any of them, and RFC 5424 (`<PRI>1 TIME HOST APP PROCID MSGID SD MSG`);
//! - the tags `prog:`, `prog[pid]:`, `prog(pam_unix)[pid]:`, `[prog]:` and `[prog]`;
//! - rsyslog's `message repeated N times: [ MESSAGE]`, unwrapped to MESSAGE;
//! - no time at all, `HOST PROG[PID]: MESSAGE` (a journal entry handed on as text, its
//!   time apart), when the tag names a process id and ends in `:`.
//!
//! A line whose header has a time but no tag a program would write (a daemon's own log
//! file stamped like syslog: `Aug 30 00:10:57 auth(user,ip)<id>: ...`) is also offered
//! untagged: its message is whatever follows the time. The journal needs none of this:
//! its entries carry program, time and message apart (`source/journal.rs`).
//!
//! Nothing here allocates: a header is a few offsets into the line.

use std::ops::Range;

/// Where the parts of a line's header are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The time stamp's text (read by `timestamp::TimeFormat::Auto`), when there is one:
    /// RFC 5424 allows a line without time (`-`).
    pub stamp: Option<Range<usize>>,
    /// The syslog reading: the program's name and its message.
    pub tagged: Option<Tagged>,
    /// The message when the line is read as carrying no tag: everything after the time.
    pub untagged: Range<usize>,
}

/// A program's name and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub program: Range<usize>,
    pub message: Range<usize>,
    /// The process id the tag names (`sshd[123]:`, RFC 5424's PROCID), when it names one.
    pub pid: Option<Range<usize>>,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Reads the header of `line`; `None` when the line does not start with a time stamp of
/// a known kind (a service's own format, read whole by the rules that know it).
pub fn parse(line: &[u8]) -> Option<Header> {
    let mut i = pri(line, 0).unwrap_or(0);
    if i > 0 && line[i..].starts_with(b"1 ") {
        return rfc5424(line, i + 2);
    }
    let bracketed = line.get(i) == Some(&b'[');
    if bracketed {
        i += 1;
    }
    let start = i;
    let Some(end) = stamp(line, i) else {
        return if bracketed { None } else { timeless(line, i) };
    };
    i = end;
    if bracketed {
        if line.get(i) != Some(&b']') {
            return None;
        }
        i += 1;
    }
    if i < line.len() && !is_space(line[i]) {
        return None;
    }
    i = skip_spaces(line, i);
    i = facility_token(line, i).unwrap_or(i);
    let untagged = unwrap_repeated(line, i..line.len());
    let tagged = tag(line, i).or_else(|| {
        // A host first: one token, which a tag never is.
        let host_end = token_end(line, i);
        (host_end > i && host_end < line.len() && line[host_end - 1] != b':')
            .then(|| tag(line, skip_spaces(line, host_end)))
            .flatten()
    });
    Some(Header {
        stamp: Some(start..end),
        tagged,
        untagged,
    })
}

/// A header without a time, `HOST PROG[PID]: MESSAGE` or `PROG[PID]: MESSAGE`: how
/// fail2ban's journal backend and some collectors hand on a journal entry, whose time
/// travels beside it. The tag must name a process id and end in `:`: without a time,
/// only that sets it apart from the words of a service's own log.
fn timeless(line: &[u8], i: usize) -> Option<Header> {
    let pid_tag = |t: &Tagged| {
        t.pid
            .as_ref()
            .is_some_and(|p| line.get(p.end + 1) == Some(&b':'))
    };
    let tagged = tag(line, i).filter(pid_tag).or_else(|| {
        let host_end = token_end(line, i);
        (host_end > i && host_end < line.len() && line[host_end - 1] != b':')
            .then(|| tag(line, skip_spaces(line, host_end)))
            .flatten()
            .filter(pid_tag)
    })?;
    Some(Header {
        stamp: None,
        untagged: tagged.message.clone(),
        tagged: Some(tagged),
    })
}

/// `<PRI>`: up to three digits in angle brackets. The index after it.
fn pri(line: &[u8], i: usize) -> Option<usize> {
    if line.get(i) != Some(&b'<') {
        return None;
    }
    let digits = line[i + 1..]
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    ((1..=3).contains(&digits) && line.get(i + 1 + digits) == Some(&b'>')).then_some(i + 2 + digits)
}

/// `<facility.level>` as some syslog daemons write it after the time.
fn facility_token(line: &[u8], i: usize) -> Option<usize> {
    if line.get(i) != Some(&b'<') {
        return None;
    }
    let close = i + 1 + line[i + 1..].iter().take(24).position(|&b| b == b'>')?;
    let inner = &line[i + 1..close];
    let dot = inner.iter().position(|&b| b == b'.')?;
    let word = |w: &[u8]| !w.is_empty() && w.iter().all(|b| b.is_ascii_alphanumeric());
    (word(&inner[..dot]) && word(&inner[dot + 1..]) && line.get(close + 1) == Some(&b' '))
        .then(|| skip_spaces(line, close + 1))
}

/// The end of the time stamp starting at `i`, of any kind the layer knows.
fn stamp(line: &[u8], i: usize) -> Option<usize> {
    match line.get(i)? {
        b'A'..=b'Z' => syslog_stamp(line, i),
        b'0'..=b'9' => iso_stamp(line, i),
        b'@' => tai64n_stamp(line, i),
        _ => None,
    }
}

/// `Mmm dd hh:mm:ss[.frac]`, the day padded with a space or not, optionally a year
/// between the day and the clock (`Oct 27 2015 09:24:46`).
fn syslog_stamp(line: &[u8], i: usize) -> Option<usize> {
    let month = line.get(i..i + 3)?;
    if !MONTHS.iter().any(|m| &m[..] == month) {
        return None;
    }
    let mut j = i + 3;
    if line.get(j) != Some(&b' ') {
        return None;
    }
    j = skip_spaces(line, j);
    let day = digits(line, j);
    if !(1..=2).contains(&day) {
        return None;
    }
    j += day;
    if line.get(j) != Some(&b' ') {
        return None;
    }
    j += 1;
    if digits(line, j) == 4 && line.get(j + 4) == Some(&b' ') {
        j += 5;
    }
    j = clock(line, j)?;
    Some(fraction(line, j))
}

/// `YYYY-MM-DD[T ]hh:mm:ss[.frac][Z|+hh:mm|+hhmm]`.
fn iso_stamp(line: &[u8], i: usize) -> Option<usize> {
    let date = line.get(i..i + 10)?;
    let shape = date.iter().enumerate().all(|(k, b)| {
        if k == 4 || k == 7 {
            *b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    if !shape || !matches!(line.get(i + 10), Some(b'T' | b' ')) {
        return None;
    }
    let mut j = clock(line, i + 11)?;
    j = fraction(line, j);
    match line.get(j) {
        Some(b'Z') => j += 1,
        Some(b'+' | b'-') => {
            let h = digits(line, j + 1);
            if h == 4 {
                j += 5;
            } else if h == 2 && line.get(j + 3) == Some(&b':') && digits(line, j + 4) == 2 {
                j += 6;
            } else if h == 2 {
                j += 3;
            }
        }
        // `hh:mm:ss +0100 `: an offset after a space (Exim's log_timezone).
        Some(b' ')
            if matches!(line.get(j + 1), Some(b'+' | b'-'))
                && digits(line, j + 2) == 4
                && line.get(j + 6).is_none_or(|&b| is_space(b)) =>
        {
            j += 6
        }
        _ => {}
    }
    Some(j)
}

/// `@` and 24 hexadecimal digits.
fn tai64n_stamp(line: &[u8], i: usize) -> Option<usize> {
    let hex = line.get(i + 1..i + 25)?;
    hex.iter().all(u8::is_ascii_hexdigit).then_some(i + 25)
}

/// `hh:mm:ss` at `i`: the index after it.
fn clock(line: &[u8], i: usize) -> Option<usize> {
    let ok = digits(line, i) == 2
        && line.get(i + 2) == Some(&b':')
        && digits(line, i + 3) == 2
        && line.get(i + 5) == Some(&b':')
        && digits(line, i + 6) == 2;
    ok.then_some(i + 8)
}

/// A `.123` or `,123` fraction of a second at `i`, if there is one.
fn fraction(line: &[u8], i: usize) -> usize {
    if matches!(line.get(i), Some(b'.' | b',')) {
        let n = digits(line, i + 1);
        if n > 0 {
            return i + 1 + n;
        }
    }
    i
}

fn digits(line: &[u8], i: usize) -> usize {
    line.get(i..)
        .map_or(0, |s| s.iter().take_while(|b| b.is_ascii_digit()).count())
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_spaces(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && is_space(line[i]) {
        i += 1;
    }
    i
}

fn token_end(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && !is_space(line[i]) {
        i += 1;
    }
    i
}

/// Bytes a program's name is made of in a tag.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'@')
}

/// A tag at `i`, and the message after it.
fn tag(line: &[u8], i: usize) -> Option<Tagged> {
    // `[prog]:` or `[prog]` (some embedded syslogs).
    if line.get(i) == Some(&b'[') {
        let start = i + 1;
        let end = start + line[start..].iter().take_while(|&&b| name_byte(b)).count();
        if end == start || line.get(end) != Some(&b']') {
            return None;
        }
        let mut j = end + 1;
        if line.get(j) == Some(&b':') {
            j += 1;
        }
        if j < line.len() && !is_space(line[j]) {
            return None;
        }
        return Some(Tagged {
            program: start..end,
            message: message(line, j),
            pid: None,
        });
    }
    let start = i;
    let end = start + line[start..].iter().take_while(|&&b| name_byte(b)).count();
    if end == start {
        return None;
    }
    let mut j = end;
    // `(pam_unix)`, `(22401)`, `(default)`: one word in parentheses.
    if line.get(j) == Some(&b'(') {
        let close = j
            + 1
            + line[j + 1..]
                .iter()
                .position(|&b| b == b')' || b == b'(' || is_space(b))?;
        if line[close] != b')' {
            return None;
        }
        j = close + 1;
    }
    // `[pid]`
    let mut pid = None;
    if line.get(j) == Some(&b'[') {
        let n = digits(line, j + 1);
        if n == 0 || line.get(j + 1 + n) != Some(&b']') {
            return None;
        }
        pid = Some(j + 1..j + 1 + n);
        j += n + 2;
    }
    match line.get(j) {
        Some(b':') if j + 1 == line.len() || is_space(line[j + 1]) => j += 1,
        // `prog[pid] message`: ProFTPD's own log writes no colon.
        Some(b) if pid.is_some() && is_space(*b) => {}
        _ => return None,
    }
    Some(Tagged {
        program: start..end,
        message: message(line, j),
        pid,
    })
}

/// The message starting at `i` (after the tag): spaces and Solaris' `[ID n fac.lvl]`
/// skipped, rsyslog's repetition unwrapped.
fn message(line: &[u8], i: usize) -> Range<usize> {
    let mut i = skip_spaces(line, i);
    if line[i..].starts_with(b"[ID ") {
        let n = digits(line, i + 4);
        if n > 0 && line.get(i + 4 + n) == Some(&b' ') {
            let rest = i + 5 + n;
            let len = line[rest..]
                .iter()
                .take(32)
                .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'.')
                .count();
            if len > 0 && line.get(rest + len) == Some(&b']') {
                i = skip_spaces(line, rest + len + 1);
            }
        }
    }
    unwrap_repeated(line, i..line.len())
}

/// `message repeated N times: [ MESSAGE]` becomes MESSAGE.
fn unwrap_repeated(line: &[u8], range: Range<usize>) -> Range<usize> {
    const WORDS: &[u8] = b"message repeated ";
    let text = &line[range.clone()];
    if !text.starts_with(WORDS) {
        return range;
    }
    let n = digits(text, WORDS.len());
    let rest = WORDS.len() + n;
    if n == 0 || !text[rest..].starts_with(b" times: [") {
        return range;
    }
    let body = skip_spaces(text, rest + b" times: [".len());
    let mut end = text.len();
    while end > body && is_space(text[end - 1]) {
        end -= 1;
    }
    if end > body && text[end - 1] == b']' {
        end -= 1;
    }
    range.start + body..range.start + end
}

/// RFC 5424, from just after `<PRI>1 `.
fn rfc5424(line: &[u8], i: usize) -> Option<Header> {
    let (stamp, i) = if line.get(i) == Some(&b'-') {
        (None, i + 1)
    } else {
        let end = iso_stamp(line, i)?;
        (Some(i..end), end)
    };
    if line.get(i) != Some(&b' ') {
        return None;
    }
    let field = |i: usize| -> Option<(Range<usize>, usize)> {
        let end = token_end(line, i);
        (end > i && line.get(end) == Some(&b' ')).then_some((i..end, end + 1))
    };
    let (_host, i) = field(i + 1)?;
    let (app, i) = field(i)?;
    let (procid, i) = field(i)?;
    let (_msgid, i) = field(i)?;
    let i = structured_data(line, i)?;
    let mut msg = if i < line.len() {
        if line[i] != b' ' {
            return None;
        }
        i + 1
    } else {
        i
    };
    if line[msg..].starts_with(b"\xEF\xBB\xBF") {
        msg += 3;
    }
    let message = unwrap_repeated(line, msg..line.len());
    let tagged = (&line[app.clone()] != b"-").then(|| Tagged {
        program: app,
        message: message.clone(),
        pid: (&line[procid.clone()] != b"-").then_some(procid),
    });
    Some(Header {
        stamp,
        tagged,
        untagged: message,
    })
}

/// RFC 5424 structured data: `-` or `[id k="v" ...]...` (values may hold `\"`, `\]`).
fn structured_data(line: &[u8], mut i: usize) -> Option<usize> {
    if line.get(i) == Some(&b'-') {
        return Some(i + 1);
    }
    if line.get(i) != Some(&b'[') {
        return None;
    }
    while line.get(i) == Some(&b'[') {
        i += 1;
        let mut quoted = false;
        loop {
            match *line.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (time, program, message) as text, for the tests.
    fn read(line: &str) -> Option<(String, String, String)> {
        let h = parse(line.as_bytes())?;
        let text = |r: Range<usize>| line[r].to_string();
        let (program, message) = match &h.tagged {
            Some(t) => (text(t.program.clone()), text(t.message.clone())),
            None => ("-".into(), text(h.untagged.clone())),
        };
        Some((h.stamp.map_or("-".into(), text), program, message))
    }

    fn is(line: &str, time: &str, program: &str, message: &str) {
        assert_eq!(
            read(line),
            Some((time.into(), program.into(), message.into())),
            "{line}"
        );
    }

    #[test]
    fn classic_syslog_with_and_without_host() {
        is(
            "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user x from 192.0.2.1",
            "Dec 10 06:55:46",
            "sshd",
            "Invalid user x from 192.0.2.1",
        );
        is(
            "Dec  1 06:55:46 sshd[8148]: Disconnecting: Too many",
            "Dec  1 06:55:46",
            "sshd",
            "Disconnecting: Too many",
        );
        is("Feb 7 16:01:07 h-1 su: x", "Feb 7 16:01:07", "su", "x");
        is(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure;",
            "Jun 14 15:16:01",
            "sshd",
            "authentication failure;",
        );
        is(
            "Mar  1 10:00:00 mx postfix/submission/smtpd[12]: warning: x",
            "Mar  1 10:00:00",
            "postfix/submission/smtpd",
            "warning: x",
        );
        is(
            "Jan 29 09:34:17 pop3-login: Info: Aborted",
            "Jan 29 09:34:17",
            "pop3-login",
            "Info: Aborted",
        );
        is(
            "Oct 27 2015 09:24:46 h screensharingd[1]: a",
            "Oct 27 2015 09:24:46",
            "screensharingd",
            "a",
        );
        is(
            "Oct 27 09:24:46.123 h prog: a",
            "Oct 27 09:24:46.123",
            "prog",
            "a",
        );
    }

    #[test]
    fn bracketed_and_odd_tags() {
        is(
            "Mar  3 00:17:22 [sshd]: User root",
            "Mar  3 00:17:22",
            "sshd",
            "User root",
        );
        is(
            "Jun 25 23:53:34 [sshd] User root",
            "Jun 25 23:53:34",
            "sshd",
            "User root",
        );
        is(
            "Jun 17 14:37:39 <mail.notice> robin sm-mta[2794]: 55H: x",
            "Jun 17 14:37:39",
            "sm-mta",
            "55H: x",
        );
        is(
            "Mar 29 05:59:23 dusky sshd[20878]: [ID 800047 auth.info] Failed keyboard-interactive",
            "Mar 29 05:59:23",
            "sshd",
            "Failed keyboard-interactive",
        );
        is(
            "Jan 29 13:54:06 auth-worker(22401): Info: sql",
            "Jan 29 13:54:06",
            "auth-worker",
            "Info: sql",
        );
    }

    #[test]
    fn iso_tai64n_and_pri() {
        is(
            "2024-07-20T14:42:11.123456+02:00 web1 sshd-session[1]: Failed",
            "2024-07-20T14:42:11.123456+02:00",
            "sshd-session",
            "Failed",
        );
        is(
            "2019-09-06T01:45:18 srv mysqld: 2019-09-06  1:45",
            "2019-09-06T01:45:18",
            "mysqld",
            "2019-09-06  1:45",
        );
        is(
            "2013-08-11 03:56:40 auth-worker(default): Info: pam",
            "2013-08-11 03:56:40",
            "auth-worker",
            "Info: pam",
        );
        is(
            "2020-01-01T00:00:00Z h p[1]: m",
            "2020-01-01T00:00:00Z",
            "p",
            "m",
        );
        is(
            "2020-01-01T00:00:00+0100 h p[1]: m",
            "2020-01-01T00:00:00+0100",
            "p",
            "m",
        );
        is(
            "@400000004c91b044077a9e94 imap-login: Info: Aborted",
            "@400000004c91b044077a9e94",
            "imap-login",
            "Info: Aborted",
        );
        is(
            "<38>Feb  5 10:00:00 h sshd[1]: m",
            "Feb  5 10:00:00",
            "sshd",
            "m",
        );
    }

    #[test]
    fn rfc5424() {
        is(
            "<38>1 2019-07-08T17:40:16.954167-04:00 host.example.com sshd 57915 - - Failed unknown",
            "2019-07-08T17:40:16.954167-04:00",
            "sshd",
            "Failed unknown",
        );
        is(
            r#"<38>1 2019-07-08T17:40:17Z h sshd 5 - [a b="[x\]"][c@1 d="e"] Failed"#,
            "2019-07-08T17:40:17Z",
            "sshd",
            "Failed",
        );
        is("<13>1 - h - - - - m", "-", "-", "m");
        is(
            "<13>1 2020-01-01T00:00:00Z h app 1 ID - \u{feff}bom",
            "2020-01-01T00:00:00Z",
            "app",
            "bom",
        );
    }

    #[test]
    fn repeated_messages_are_unwrapped() {
        is(
            "Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 5 times: [ Failed password for root from 192.0.2.1 port 4 ssh2]",
            "Dec 10 07:13:56",
            "sshd",
            "Failed password for root from 192.0.2.1 port 4 ssh2",
        );
    }

    #[test]
    fn untagged_lines_offer_what_follows_the_time() {
        let line = "Aug 30 00:10:57 auth(info@example.com,192.0.2.110,sasl:login)<Cv>: Info: x";
        let h = parse(line.as_bytes()).unwrap();
        assert_eq!(h.tagged, None);
        assert_eq!(
            &line[h.untagged],
            "auth(info@example.com,192.0.2.110,sasl:login)<Cv>: Info: x"
        );
        let line = "Oct 23 02:06:39 security: info: client";
        let h = parse(line.as_bytes()).unwrap();
        assert_eq!(&line[h.tagged.unwrap().program], "security");
        assert_eq!(&line[h.untagged], "security: info: client");
    }

    #[test]
    fn a_journal_entry_without_time_has_its_host_and_tag_read() {
        let h = parse(b"srv sshd[13709]: error: PAM: Authentication failure").unwrap();
        assert_eq!(h.stamp, None);
        let t = h.tagged.unwrap();
        let line = b"srv sshd[13709]: error: PAM: Authentication failure";
        assert_eq!(&line[t.program], b"sshd");
        assert_eq!(&line[t.pid.unwrap()], b"13709");
        assert_eq!(&line[t.message], b"error: PAM: Authentication failure");
        let h = parse(b"sshd-session[7]: Failed password").unwrap();
        assert_eq!(h.tagged.map(|t| t.message), Some(17..32));
        // Without a process id, or without the colon, it is no header.
        for own in [
            &b"srv sshd: Failed password"[..],
            b"client 192.0.2.1: refused",
            b"proftpd[12] 192.0.2.1 refused",
            b"a b c[12]: d",
        ] {
            assert_eq!(parse(own), None, "{}", String::from_utf8_lossy(own));
        }
    }

    #[test]
    fn own_formats_and_garbage_have_no_header() {
        for line in [
            "192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 401",
            "[Wed Jul 17 22:54:32 2013] [error] [client 192.0.2.1] x",
            "2015/01/21 10:56:10 [error] 2833#0: *1 x",
            "Thu Sep  8 00:39:49 2016 [pid 1] [x] FAIL LOGIN",
            "",
            "<",
            "<1",
            "<12>",
            "<12>1 ",
            "Dec",
            "Dec 1",
            "Dec 10 06:55",
            "@4000",
            "2024-07-20",
            "2024-07-20T14",
        ] {
            assert_eq!(parse(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn a_pid_without_colon_and_a_spaced_offset() {
        is(
            "Jan 10 00:00:00 myhost proftpd[12345] myhost.example.com (x[192.0.2.1]): USER",
            "Jan 10 00:00:00",
            "proftpd",
            "myhost.example.com (x[192.0.2.1]): USER",
        );
        let line = "2013-06-02 09:22:06 +0100 [1] H=x";
        let h = parse(line.as_bytes()).unwrap();
        assert_eq!(&line[h.stamp.unwrap()], "2013-06-02 09:22:06 +0100");
        assert_eq!(&line[h.untagged], "[1] H=x");
    }

    #[test]
    fn an_ipv6_host_is_a_host_not_a_tag() {
        is(
            "Jan  1 00:00:00 2001:db8::1 sshd[1]: m",
            "Jan  1 00:00:00",
            "sshd",
            "m",
        );
    }

    #[test]
    fn no_panic_on_any_prefix() {
        let line = b"<38>1 2019-07-08T17:40:17Z h sshd 5 - [a b=\"[x\\]\"] Failed; Dec 10 06:55:46 h p(x)[1]: [ID 1 a.b] message repeated 2 times: [ m]";
        for end in 0..line.len() {
            let _ = parse(&line[..end]);
            let _ = parse(&line[end..]);
        }
    }
}
