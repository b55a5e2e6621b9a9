//! Every shipped rule, in each of its modes, examines the input through one automaton
//! (the header layer included), as one line and split on newlines, and as a journal
//! message: whatever a log holds, matching must never panic.
#![no_main]

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{Local, TimeZone};
use libfuzzer_sys::fuzz_target;
use pyfilter::duration::BanTime;
use pyfilter::rule::{Automaton, Limits, Rule, load_sources};

/// One automaton per mode name, with every rule that has it (and the others in their
/// default mode).
fn automata() -> &'static Vec<Automaton> {
    static AUTOMATA: OnceLock<Vec<Automaton>> = OnceLock::new();
    AUTOMATA.get_or_init(|| {
        let limits = Limits {
            failed_attempts: NonZeroU32::new(5).unwrap(),
            request_time: Duration::from_secs(600),
            ban_time: BanTime::For(Duration::from_secs(86_400)),
        };
        // A directory that does not exist: only the rules built into the library.
        let sources = load_sources(Path::new("/nonexistent/pyfilter-fuzz/rules.d"))
            .expect("embedded rules load");
        let mut modes: Vec<Option<String>> = vec![None];
        for s in &sources {
            for m in &s.file.modes {
                if !modes.contains(&Some(m.clone())) {
                    modes.push(Some(m.clone()));
                }
            }
        }
        modes
            .iter()
            .map(|mode| {
                let rules = sources
                    .iter()
                    .map(|s| {
                        let m = mode.as_deref().filter(|m| s.file.modes.iter().any(|k| k == m));
                        let rule = Rule::compile(s.file.clone(), s.origin.clone(), limits, m)
                            .expect("embedded rule compiles");
                        Arc::new(rule)
                    })
                    .collect();
                Automaton::new(rules).expect("embedded rules combine")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    // 2023-11-14T22:13:20Z: a fixed reference, so runs are reproducible.
    let reference = Local.timestamp_opt(1_700_000_000, 0).unwrap();
    for automaton in automata() {
        let mut scratch = automaton.scratch();
        automaton.examine(data, reference, &mut scratch, |_, _| {});
        automaton.examine_entry(data, reference.fixed_offset(), &mut scratch, |_, _| {});
        // The same scratch reused line after line, as the daemon does.
        for line in data.split(|&b| b == b'\n') {
            automaton.examine(line, reference, &mut scratch, |_, _| {});
        }
    }
});
