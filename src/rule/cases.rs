//! Every shipped rule against its annotated log, `tests/rules/<rule>.log`.
//!
//! Each log line is preceded by one `# expect:` line: `# expect: ADDRESS TIME` (TIME in
//! RFC 3339; without an offset it is the local wall-clock time of a log written without a
//! zone) or `# expect: no match`. A `# mode: NAME` line makes the cases after it (until
//! the next) be read in that mode of the rule; before any, in its default mode. Other `#`
//! lines are comments. Lines without a year are read as if now were 2026-11-26 12:00
//! local time. Any difference fails the test.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Timelike};

use super::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rules");

/// A time as an annotation gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    Zoned(DateTime<FixedOffset>),
    Local(NaiveDateTime),
}

impl Expected {
    fn parse(text: &str) -> Option<Expected> {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(Expected::Zoned(t));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(Expected::Local)
    }

    /// Whether `at` is this time, to the precision the annotation gives (an annotation
    /// without a fraction of a second compares whole seconds, as `scan` prints them).
    fn agrees(&self, at: DateTime<FixedOffset>) -> bool {
        let whole = |nanos: u32, at: DateTime<FixedOffset>| {
            if nanos == 0 {
                at.with_nanosecond(0).unwrap_or(at)
            } else {
                at
            }
        };
        match self {
            Expected::Zoned(t) => *t == whole(t.nanosecond(), at) && t.offset() == at.offset(),
            Expected::Local(t) => {
                whole(t.nanosecond(), at)
                    .with_timezone(&Local)
                    .naive_local()
                    == *t
            }
        }
    }
}

/// One annotated line.
struct Case {
    line_no: usize,
    /// The mode it is read in (`None`: the default).
    mode: Option<String>,
    expect: Option<(IpAddr, Expected)>,
    text: String,
}

fn cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut pending: Option<(usize, Option<(IpAddr, Expected)>)> = None;
    let mut mode = None;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(rest) = line.strip_prefix("# mode:") {
            mode = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("# expect:") {
            assert!(
                pending.is_none(),
                "{}:{n}: two expectations in a row",
                path.display()
            );
            let rest = rest.trim();
            let expect = if rest == "no match" {
                None
            } else {
                let (ip, time) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("{}:{n}: want `ADDRESS TIME`", path.display()));
                let ip: IpAddr = ip
                    .parse()
                    .unwrap_or_else(|_| panic!("{}:{n}: bad address {ip}", path.display()));
                let time = Expected::parse(time.trim())
                    .unwrap_or_else(|| panic!("{}:{n}: bad time {time}", path.display()));
                Some((ip, time))
            };
            pending = Some((n, expect));
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else {
            let (_, expect) = pending.take().unwrap_or_else(|| {
                panic!("{}:{n}: line without `# expect:` above it", path.display())
            });
            out.push(Case {
                line_no: n,
                mode: mode.clone(),
                expect,
                text: line.to_string(),
            });
        }
    }
    out
}

fn reference() -> DateTime<Local> {
    Local.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

/// The shipped rule `name` in `mode`, alone in its automaton.
fn shipped(name: &str, mode: Option<&str>) -> Automaton {
    let source = load_sources(Path::new("/nonexistent"))
        .unwrap()
        .into_iter()
        .find(|s| s.file.name == name)
        .unwrap();
    let limits = Limits {
        failed_attempts: NonZeroU32::new(5).unwrap(),
        request_time: Duration::from_secs(600),
        ban_time: BanTime::Forever,
    };
    let rule = Rule::compile(source.file, source.origin, limits, mode).unwrap();
    Automaton::new(vec![Arc::new(rule)]).unwrap()
}

/// What the one rule of `automaton` finds on `line`.
fn examine(
    automaton: &Automaton,
    line: &[u8],
    scratch: &mut Scratch,
) -> Option<Result<Found, Skip>> {
    let mut out = None;
    automaton.examine(line, reference(), scratch, |_, f| out = Some(f));
    out
}

fn case_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_rule_has_an_annotated_log() {
    let names: Vec<String> = case_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for source in load_sources(Path::new("/nonexistent")).unwrap() {
        assert!(
            names.contains(&source.file.name),
            "no tests/rules/{}.log",
            source.file.name
        );
    }
}

#[test]
fn every_annotated_line_gives_exactly_the_expected_address_and_time() {
    let mut failures = Vec::new();
    let mut compiled = std::collections::HashMap::new();
    for path in case_files() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let cases = cases(&path);
        assert!(
            cases.iter().filter(|c| c.expect.is_some()).count() >= 5,
            "{name}: fewer than 5 matching cases"
        );
        assert!(
            cases.iter().any(|c| c.expect.is_none()),
            "{name}: no must-not-match case"
        );
        for case in cases {
            let (rule, scratch) = compiled
                .entry((name.clone(), case.mode.clone()))
                .or_insert_with(|| {
                    let rule = shipped(&name, case.mode.as_deref());
                    let scratch = rule.scratch();
                    (rule, scratch)
                });
            let got = examine(rule, case.text.as_bytes(), scratch);
            let ok = match (&case.expect, &got) {
                (None, None) => true,
                (Some((ip, time)), Some(Ok(found))) => *ip == found.ip && time.agrees(found.at),
                _ => false,
            };
            if !ok {
                let got = match got {
                    None => "no match".to_string(),
                    Some(Ok(f)) => format!("{} {}", f.ip, f.at.to_rfc3339()),
                    Some(Err(skip)) => format!("skipped: {skip}"),
                };
                let want = match case.expect {
                    None => "no match".to_string(),
                    Some((ip, t)) => format!("{ip} {t:?}"),
                };
                failures.push(format!(
                    "{}:{}{}: want {want}, got {got}\n    {}",
                    path.display(),
                    case.line_no,
                    case.mode
                        .map(|m| format!(" (mode {m})"))
                        .unwrap_or_default(),
                    case.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} annotated lines disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_host_name_where_the_address_stands_never_matches() {
    // Addresses are parsed, never resolved: a line naming a host instead is no attempt.
    for path in case_files() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut compiled = std::collections::HashMap::new();
        for case in cases(&path) {
            let Some((ip, _)) = case.expect else { continue };
            let (rule, scratch) = compiled.entry(case.mode.clone()).or_insert_with(|| {
                let rule = shipped(&name, case.mode.as_deref());
                let scratch = rule.scratch();
                (rule, scratch)
            });
            let forms = [ip.to_string(), format!("::ffff:{ip}")];
            for form in forms.iter().filter(|f| case.text.contains(f.as_str())) {
                let line = case.text.replace(form.as_str(), "attacker.example.com");
                if let Some(Ok(found)) = examine(rule, line.as_bytes(), scratch) {
                    assert_ne!(
                        found.ip,
                        ip,
                        "{}:{}: matched with a host name: {line}",
                        path.display(),
                        case.line_no
                    );
                }
            }
        }
    }
}

#[test]
fn huge_and_invalid_utf8_lines_cost_no_more_than_a_skip() {
    let long = vec![b'a'; 1 << 20];
    let mut junk = b"Nov 26 01:02:03 h sshd[1]: Failed password for \xff\xfe\x80 from ".to_vec();
    junk.extend_from_slice(&[0xc3; 4096]);
    for path in case_files() {
        let rule = shipped(&path.file_stem().unwrap().to_string_lossy(), None);
        let mut scratch = rule.scratch();
        assert!(examine(&rule, &long, &mut scratch).is_none());
        assert!(examine(&rule, &junk, &mut scratch).is_none());
    }
}
