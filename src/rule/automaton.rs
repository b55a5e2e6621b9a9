//! One automaton for every rule reading a file: the cost of a line does not grow with the
//! number of rules that read it.
//!
//! A line's header is read once (`header.rs`). The programs of all the rules are one
//! automaton, asked once per new program name; the patterns of all the rules that read
//! messages are another, run once over the message, anchored at its start, reporting every
//! pattern that matches (so every rule that matches); the patterns of the rules that read
//! their service's own lines are a third, run once over the whole line. Only for a pattern
//! that matched are its groups (address, time) found, with a bounded backtracker anchored on
//! the same text. Each rule reports its first matching pattern, at most once per line.
//!
//! Sessions: some services write the client's address on one line and the failure on
//! another line of the same connection (`conn=1022 ... ACCEPT from IP=...`, then `conn=1022
//! ... RESULT ... err=49`). A pattern with a `session` group, or `session: pid` (the
//! process id of the line's syslog tag: `sshd[1234]:`), joins such lines: a
//! `remember: true` pattern records its session, with the address its line carries, or else
//! a mark (the line, a failure, waits for the line that names the address), and reports
//! nothing, so the rule's later patterns still examine the line; another pattern of a
//! session reports only for a session recorded before (else it too leaves the line to the
//! later patterns): a line without an address, for a
//! session with a recorded address (which serves every later failure of its session); a
//! line with its address, for a marked session, which that line uses up. A `forget: true`
//! pattern drops its session's record (the connection ended, or a new one began) and
//! reports nothing, leaving the line to the later patterns too. It takes its own
//! line's time, or else the recorded one (a log that writes the time on a line of its own).
//! The records live in the scratch space of the thread reading the source (one
//! per file or journal rule: lines come in order), at most `MAX_SESSIONS` per rule, the
//! oldest forgotten first. (`scan` matches batches of lines on several threads: a session
//! whose lines fall in two batches is not joined there.)

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local};
use regex_automata::nfa::thompson::{WhichCaptures, backtrack};
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input, MatchKind, PatternSet, meta};

use super::header::{self, Header};
use super::timestamp::{TimeCache, TimeFormat};
use super::{Found, Pattern, REGEX_SIZE_LIMIT, Rule, RuleError, Skip, pattern, syntax_config};

/// The rules reading one source, compiled together.
#[derive(Debug, Clone)]
pub struct Automaton {
    rules: Vec<Arc<Rule>>,
    /// Every rule's programs; `program_rule[p]` is the rule of pattern `p`.
    programs: Option<meta::Regex>,
    program_rule: Vec<usize>,
    /// Patterns over messages; `message_map[p]` is (rule, pattern of the rule).
    message: Option<meta::Regex>,
    message_map: Vec<(usize, usize)>,
    /// Patterns over the whole lines of services' own formats.
    line: Option<meta::Regex>,
    line_map: Vec<(usize, usize)>,
    any_untagged: bool,
}

/// One matching thread's working memory.
#[derive(Debug, Clone)]
pub struct Scratch {
    programs: Option<meta::Cache>,
    program_set: PatternSet,
    message: Option<meta::Cache>,
    message_set: PatternSet,
    line: Option<meta::Cache>,
    line_set: PatternSet,
    /// The last program name and which rules read its messages.
    last_program: Option<Vec<u8>>,
    accepts: Vec<bool>,
    /// Which rules have reported on the current line.
    reported: Vec<bool>,
    /// Per rule and pattern, made when first needed.
    captures: Vec<Vec<Option<(backtrack::Cache, Captures)>>>,
    locs: Vec<Vec<Option<regex::bytes::CaptureLocations>>>,
    /// Header stamps, and each rule's own times.
    header_time: TimeCache,
    times: Vec<TimeCache>,
    /// Each rule's recorded sessions.
    sessions: Vec<Sessions>,
}

/// Most sessions one rule keeps on record.
pub(super) const MAX_SESSIONS: usize = 4096;
/// Longest session key kept (a connection number, a queue id): longer ones are ignored.
const MAX_SESSION_KEY: usize = 64;

/// The sessions a rule has recorded, by key.
#[derive(Debug, Clone, Default)]
struct Sessions {
    known: HashMap<Vec<u8>, Record>,
    /// Keys, oldest first.
    order: VecDeque<Vec<u8>>,
}

/// What the recording lines of a session gave: the address, the time, and whether a line
/// without an address marked it (a failure waiting for the line that names the address).
#[derive(Debug, Clone, Copy)]
struct Record {
    ip: Option<IpAddr>,
    at: Option<DateTime<FixedOffset>>,
    marked: bool,
}

impl Sessions {
    fn record(&mut self, key: &[u8], ip: Option<IpAddr>, at: Option<DateTime<FixedOffset>>) {
        let marked = ip.is_none();
        if let Some(known) = self.known.get_mut(key) {
            known.ip = ip.or(known.ip);
            known.at = at.or(known.at);
            known.marked |= marked;
            return;
        }
        if self.order.len() >= MAX_SESSIONS
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        self.order.push_back(key.to_vec());
        self.known.insert(key.to_vec(), Record { ip, at, marked });
    }

    fn get(&self, key: &[u8]) -> Option<Record> {
        self.known.get(key).copied()
    }

    fn forget(&mut self, key: &[u8]) {
        if self.known.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// Where a match's time comes from.
#[derive(Clone, Copy)]
enum When<'a> {
    /// The syslog header's stamp (absent: RFC 5424 allows that).
    Stamp(Option<&'a [u8]>),
    /// Known already (the journal).
    Known(DateTime<FixedOffset>),
    /// The rule's `time_format`, on its `time` group or the start of the line.
    Own,
}

impl Automaton {
    pub fn new(rules: Vec<Arc<Rule>>) -> Result<Automaton, RuleError> {
        let mut programs = Vec::new();
        let mut program_rule = Vec::new();
        let mut messages = Vec::new();
        let mut message_map = Vec::new();
        let mut lines = Vec::new();
        let mut line_map = Vec::new();
        if let Some(released) = rules.iter().find(|r| !r.is_compiled()) {
            return Err(RuleError::Released(released.name.to_string()));
        }
        for (r, rule) in rules.iter().enumerate() {
            for p in &rule.programs {
                programs.push(format!("(?:{p})$"));
                program_rule.push(r);
            }
            for (i, p) in rule.patterns.iter().enumerate() {
                if rule.reads_messages() {
                    messages.push(p.source.as_str());
                    message_map.push((r, i));
                }
                if rule.own_format {
                    lines.push(p.source.as_str());
                    line_map.push((r, i));
                }
            }
        }
        Ok(Automaton {
            any_untagged: rules.iter().any(|r| r.untagged),
            programs: build_set(&programs)?,
            program_rule,
            message: build_set(&messages)?,
            message_map,
            line: build_set(&lines)?,
            line_map,
            rules,
        })
    }

    /// The rules, in the order matches name them.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// Working memory for `examine`, one per thread that matches.
    pub fn scratch(&self) -> Scratch {
        let set =
            |re: &Option<meta::Regex>| PatternSet::new(re.as_ref().map_or(0, |r| r.pattern_len()));
        Scratch {
            programs: self.programs.as_ref().map(|r| r.create_cache()),
            program_set: set(&self.programs),
            message: self.message.as_ref().map(|r| r.create_cache()),
            message_set: set(&self.message),
            line: self.line.as_ref().map(|r| r.create_cache()),
            line_set: set(&self.line),
            last_program: None,
            accepts: vec![false; self.rules.len()],
            reported: vec![false; self.rules.len()],
            captures: self
                .rules
                .iter()
                .map(|r| vec![None; r.patterns.len()])
                .collect(),
            locs: self
                .rules
                .iter()
                .map(|r| vec![None; r.patterns.len()])
                .collect(),
            header_time: TimeCache::default(),
            times: vec![TimeCache::default(); self.rules.len()],
            sessions: vec![Sessions::default(); self.rules.len()],
        }
    }

    /// Examines one log line for every rule: `each(rule index, what it found)` for every
    /// rule whose pattern matches. `reference` stands for "now" when a time has no year.
    pub fn examine(
        &self,
        line: &[u8],
        reference: DateTime<Local>,
        scratch: &mut Scratch,
        mut each: impl FnMut(usize, Result<Found, Skip>),
    ) {
        scratch.reported.iter_mut().for_each(|r| *r = false);
        if self.message.is_some()
            && let Some(h) = header::parse(line)
        {
            self.messages(line, &h, reference, scratch, &mut each);
        }
        if self.line.is_some() {
            let all = 0..line.len();
            self.search(
                Source::Line,
                line,
                all,
                None,
                When::Own,
                Want::All,
                reference,
                scratch,
                &mut each,
            );
        }
    }

    /// Examines one journal entry's message, whose time is known: the journal's matches
    /// chose the entries, so every rule reading messages reads it, and the rules of own
    /// formats read it as one of their lines. `pid`, the entry's process id, is the
    /// session of `session: pid` patterns, as a syslog tag's is.
    pub fn examine_entry(
        &self,
        message: &[u8],
        pid: Option<&[u8]>,
        at: DateTime<FixedOffset>,
        scratch: &mut Scratch,
        mut each: impl FnMut(usize, Result<Found, Skip>),
    ) {
        scratch.reported.iter_mut().for_each(|r| *r = false);
        let reference = at.with_timezone(&Local);
        let all = message.len();
        let when = When::Known(at);
        // `search` passes over a source no rule reads.
        for source in [Source::Message, Source::Line] {
            self.search(
                source,
                message,
                0..all,
                pid,
                when,
                Want::All,
                reference,
                scratch,
                &mut each,
            );
        }
    }

    /// The tagged message for the rules reading its program, then the untagged one for
    /// the rules that take it and do not read that program.
    fn messages(
        &self,
        line: &[u8],
        h: &Header,
        reference: DateTime<Local>,
        scratch: &mut Scratch,
        each: &mut impl FnMut(usize, Result<Found, Skip>),
    ) {
        let stamp = h.stamp.clone().map(|s| &line[s]);
        let when = When::Stamp(stamp);
        match &h.tagged {
            Some(t) => {
                self.accept(&line[t.program.clone()], scratch);
                if scratch.accepts.iter().any(|&a| a) {
                    let msg = t.message.clone();
                    let pid = t.pid.clone().map(|p| &line[p]);
                    self.search(
                        Source::Message,
                        line,
                        msg,
                        pid,
                        when,
                        Want::Accepted,
                        reference,
                        scratch,
                        each,
                    );
                }
            }
            None => scratch.accepts.iter_mut().for_each(|a| *a = false),
        }
        if self.any_untagged {
            let want = Want::Untagged;
            if (0..self.rules.len()).any(|r| self.wanted(want, r, scratch)) {
                let msg = h.untagged.clone();
                self.search(
                    Source::Message,
                    line,
                    msg,
                    None,
                    when,
                    want,
                    reference,
                    scratch,
                    each,
                );
            }
        }
    }

    /// Whether rule `r` reads the text a search is about.
    fn wanted(&self, want: Want, r: usize, scratch: &Scratch) -> bool {
        !scratch.reported[r]
            && match want {
                Want::All => true,
                Want::Accepted => scratch.accepts[r],
                Want::Untagged => self.rules[r].untagged && !scratch.accepts[r],
            }
    }

    /// Sets `scratch.accepts` to the rules that read `program`'s messages.
    fn accept(&self, program: &[u8], scratch: &mut Scratch) {
        if scratch.last_program.as_deref() == Some(program) {
            return;
        }
        scratch.accepts.iter_mut().for_each(|a| *a = false);
        if let (Some(re), Some(cache)) = (&self.programs, scratch.programs.as_mut()) {
            scratch.program_set.clear();
            let input = Input::new(program).anchored(Anchored::Yes);
            re.which_overlapping_matches_with(cache, &input, &mut scratch.program_set);
            for p in scratch.program_set.iter() {
                scratch.accepts[self.program_rule[p.as_usize()]] = true;
            }
        }
        match &mut scratch.last_program {
            Some(last) => {
                last.clear();
                last.extend_from_slice(program);
            }
            None => scratch.last_program = Some(program.to_vec()),
        }
    }

    /// Runs one automaton over `line[range]`, anchored at its start, and reports the first
    /// matching pattern of each rule that `wanted` and that has not reported yet. `pid` is
    /// the process id of the line's syslog tag, the session of `session: pid` patterns.
    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        source: Source,
        line: &[u8],
        range: Range<usize>,
        pid: Option<&[u8]>,
        when: When,
        want: Want,
        reference: DateTime<Local>,
        scratch: &mut Scratch,
        each: &mut impl FnMut(usize, Result<Found, Skip>),
    ) {
        let text = &line[range];
        let (re, cache, set, map) = match source {
            Source::Message => (
                &self.message,
                &mut scratch.message,
                &mut scratch.message_set,
                &self.message_map,
            ),
            Source::Line => (
                &self.line,
                &mut scratch.line,
                &mut scratch.line_set,
                &self.line_map,
            ),
        };
        let (Some(re), Some(cache)) = (re, cache.as_mut()) else {
            return;
        };
        set.clear();
        re.which_overlapping_matches_with(cache, &Input::new(text).anchored(Anchored::Yes), set);
        if set.is_empty() {
            return;
        }
        let matched: Vec<usize> = set.iter().map(|p| p.as_usize()).collect();
        for p in matched {
            let (r, i) = map[p];
            if !self.wanted(want, r, scratch) {
                continue;
            }
            let rule = &self.rules[r];
            let pattern = &rule.patterns[i];
            if pattern.ignore {
                // The rule's first matching pattern says the line is no attempt.
                scratch.reported[r] = true;
                continue;
            }
            let Some(spans) = groups(
                pattern,
                text,
                &mut scratch.captures[r][i],
                &mut scratch.locs[r][i],
            ) else {
                continue;
            };
            let line_ip = spans.ip.map(|s| pattern::parse_ip(&text[s]));
            let time = spans.time;
            let read_time = |scratch: &mut Scratch| match (when, time.clone()) {
                (When::Known(at), _) => Some(at),
                // A `time` group is the rule's choice (a stamp with the year, say).
                (_, Some(t)) => {
                    rule.time_format
                        .read_cached(&text[t], reference, &mut scratch.times[r])
                }
                (When::Stamp(Some(s)), None) => read_stamp(s, reference, &mut scratch.header_time),
                // A header without a time (RFC 5424's `-`, a journal entry handed on
                // as `HOST PROG[PID]: MESSAGE`): the line is taken as written when read.
                (When::Stamp(None), None) => Some(reference.fixed_offset()),
                (When::Own, None) => {
                    rule.time_format
                        .read_cached(text, reference, &mut scratch.times[r])
                }
            };
            let key = if pattern.session_pid {
                // No tag's process id (the journal, an untagged line): no session.
                let Some(pid) = pid else { continue };
                Some(pid)
            } else {
                spans.session.map(|s| &text[s])
            };
            let (ip, recorded_at) = match key {
                None => (line_ip.flatten(), None),
                Some(key) => {
                    if key.len() > MAX_SESSION_KEY {
                        continue;
                    }
                    if pattern.forget {
                        scratch.sessions[r].forget(key);
                        continue;
                    }
                    if pattern.remember {
                        if line_ip != Some(None) {
                            let at = read_time(scratch);
                            scratch.sessions[r].record(key, line_ip.flatten(), at);
                        }
                        continue;
                    }
                    let sessions = &mut scratch.sessions[r];
                    match (sessions.get(key), line_ip) {
                        (None, _) => continue,
                        // A line naming the address ends a marked session.
                        (Some(record), Some(ip)) if record.marked => {
                            sessions.forget(key);
                            (ip, record.at)
                        }
                        (Some(_), Some(_)) => continue,
                        (Some(record), None) if record.ip.is_some() => (record.ip, record.at),
                        (Some(_), None) => continue,
                    }
                }
            };
            scratch.reported[r] = true;
            let found = (|| {
                let ip = ip.ok_or(Skip::BadAddress)?;
                // A line without a time of its own takes its session's.
                let at = read_time(scratch).or(recorded_at).ok_or(Skip::BadTime)?;
                Ok(Found {
                    ip,
                    at,
                    instant: rule.patterns[i].instant,
                })
            })();
            each(r, found);
        }
    }
}

/// Which rules a search reports for.
#[derive(Clone, Copy)]
enum Want {
    All,
    /// Those reading the tagged program.
    Accepted,
    /// Those taking untagged messages, unless they read the tagged program.
    Untagged,
}

#[derive(Clone, Copy)]
enum Source {
    Message,
    Line,
}

fn read_stamp(
    stamp: &[u8],
    reference: DateTime<Local>,
    cache: &mut TimeCache,
) -> Option<DateTime<FixedOffset>> {
    TimeFormat::Auto.read_cached(stamp, reference, cache)
}

/// Where a pattern's groups matched on a text.
struct Spans {
    ip: Option<Range<usize>>,
    time: Option<Range<usize>>,
    session: Option<Range<usize>>,
}

/// The spans of the address, time and session groups of `pattern` on `text`, matched
/// anchored; `None` when it does not match or a group it has took no part.
fn groups(
    pattern: &Pattern,
    text: &[u8],
    captures: &mut Option<(backtrack::Cache, Captures)>,
    locs: &mut Option<regex::bytes::CaptureLocations>,
) -> Option<Spans> {
    let spans = |span: &dyn Fn(usize) -> Option<Range<usize>>| {
        let needed = |g: Option<usize>| match g {
            Some(g) => span(g).map(Some),
            None => Some(None),
        };
        Some(Spans {
            ip: needed(pattern.ip_group)?,
            time: pattern.time_group.and_then(span),
            session: needed(pattern.session_group)?,
        })
    };
    if text.len() <= pattern.backtrack.max_haystack_len() {
        let (cache, caps) = captures.get_or_insert_with(|| {
            (
                pattern.backtrack.create_cache(),
                pattern.backtrack.create_captures(),
            )
        });
        let input = Input::new(text).anchored(Anchored::Yes);
        pattern.backtrack.try_search(cache, &input, caps).ok()?;
        spans(&|g: usize| caps.get_group(g).map(|s| s.start..s.end))
    } else {
        let regex = pattern.long_text_regex()?;
        let locs = locs.get_or_insert_with(|| regex.capture_locations());
        regex.captures_read(locs, text)?;
        spans(&|g: usize| locs.get(g).map(|(s, e)| s..e))
    }
}

/// Many patterns in one automaton that reports every pattern matching.
fn build_set<S: AsRef<str>>(patterns: &[S]) -> Result<Option<meta::Regex>, RuleError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    meta::Regex::builder()
        .syntax(syntax_config())
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::All)
                .which_captures(WhichCaptures::Implicit)
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .utf8_empty(false),
        )
        .build_many(patterns)
        .map(Some)
        .map_err(|e| RuleError::Combined(e.to_string()))
}
