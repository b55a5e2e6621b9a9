//! Every shipped rule examines the input, as one line and split on newlines: whatever a
//! log holds, matching must never panic.
#![no_main]

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{Local, TimeZone};
use libfuzzer_sys::fuzz_target;
use pyfilter::duration::BanTime;
use pyfilter::rule::{Limits, Rule, Scratch, load_sources};

fn rules() -> &'static Vec<Rule> {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let limits = Limits {
            failed_attempts: NonZeroU32::new(5).unwrap(),
            request_time: Duration::from_secs(600),
            ban_time: BanTime::For(Duration::from_secs(86_400)),
        };
        // A directory that does not exist: only the rules built into the library.
        load_sources(Path::new("/nonexistent/pyfilter-fuzz/rules.d"))
            .expect("embedded rules load")
            .into_iter()
            .map(|s| Rule::compile(s.file, s.origin, limits).expect("embedded rule compiles"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let rules = rules();
    // 2023-11-14T22:13:20Z: a fixed reference, so runs are reproducible.
    let reference = Local.timestamp_opt(1_700_000_000, 0).unwrap();
    for rule in rules {
        let mut scratch: Scratch = rule.scratch();
        let _ = rule.examine(data, reference, &mut scratch);
        // The same scratch reused line after line, as the daemon does.
        for line in data.split(|&b| b == b'\n') {
            let _ = rule.examine(line, reference, &mut scratch);
        }
    }
});
