//! Every count the README and the man pages give of the rules, the enabled rules, the
//! patterns of a rule and the firewall backends is the binary's: read from `check --json`
//! on the embedded defaults, so a rule added or a pattern changed cannot leave the docs
//! behind.

mod common;

use std::path::Path;

use common::*;
use regex::Regex;
use serde_json::Value;

const DOCS: &[&str] = &[
    "README.md",
    "man/pyfilter.1",
    "man/pyfilter.yml.5",
    "man/pyfilter-rules.5",
    "pyfilter.yml",
    "CONTRIBUTING.md",
];

/// The firewall backends `firewall.backend` takes.
const BACKENDS: &[&str] = &["iptables", "ipset", "nftables", "none"];

fn number(word: &str) -> Option<usize> {
    const WORDS: &[&str] = &[
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    word.parse()
        .ok()
        .or_else(|| WORDS.iter().position(|w| w.eq_ignore_ascii_case(word)))
}

/// The shipped rules as the embedded defaults run them (no rules_dir of the host's).
fn shipped() -> Vec<Value> {
    let s = Setup::new("enabled_rules: null\nrules: {}");
    // The test's config names only its own paths; the rules are the embedded ones.
    let text = std::fs::read_to_string(s.config()).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("enabled_rules:") && !l.starts_with("rules:"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(s.config(), text).unwrap();
    let out = s.cli(None, &["check", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    report["rules"].as_array().unwrap().clone()
}

/// Documentation text with roff's escapes and font changes taken out, one line per
/// paragraph line.
fn plain(path: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    text.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "")
        .replace("\\fP", "")
        .lines()
        .map(|l| l.strip_prefix(".B ").or(l.strip_prefix(".I ")).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_count_in_the_readme_and_the_man_pages_is_the_binarys() {
    let rules = shipped();
    let total = rules.len();
    let enabled = rules.iter().filter(|r| r["enabled"] == true).count();
    let n = r"(\d+|[A-Za-z]+)";
    let enabled_count = Regex::new(&format!(
        r"(?i)\b{n} (?:shipped |built-in )?rules (?:are )?enabled|\b{n} enabled (?:shipped )?rules|\bthe {n} (?:rules )?enabled|\b{n} of them (?:are )?enabled"
    ))
    .unwrap();
    let total_count = Regex::new(&format!(
        r"(?i)\b{n} (?:shipped |built-in |embedded )?rules\b(?: \*\*)?"
    ))
    .unwrap();
    let backends_count = Regex::new(&format!(r"(?i)\b{n} (?:firewall )?backends\b")).unwrap();
    let sample =
        Regex::new(r"^\s+([a-z0-9-]+) \((?:enabled|disabled), (?:mode [^,]+, )?(\d+) patterns?,")
            .unwrap();
    let mut wrong = Vec::new();
    for doc in DOCS {
        let text = plain(doc);
        for (i, line) in text.lines().enumerate() {
            let at = format!("{doc}:{}", i + 1);
            // A warning in a sample run counts the rules of that run, not the shipped ones.
            if line.starts_with("warning:") {
                continue;
            }
            let mut counted_enabled = Vec::new();
            for c in enabled_count.captures_iter(line) {
                let word = c.iter().skip(1).flatten().next().unwrap().as_str();
                counted_enabled.push(c.get(0).unwrap().range());
                if let Some(k) = number(word)
                    && k != enabled
                {
                    wrong.push(format!(
                        "{at}: {k} enabled rules, the binary has {enabled}: {line}"
                    ));
                }
            }
            for c in total_count.captures_iter(line) {
                let whole = c.get(0).unwrap().range();
                if counted_enabled
                    .iter()
                    .any(|r| r.start <= whole.start && whole.start < r.end)
                {
                    continue;
                }
                if let Some(k) = number(&c[1])
                    && k != total
                    && k != enabled
                {
                    wrong.push(format!("{at}: {k} rules, the binary has {total}: {line}"));
                }
            }
            for c in backends_count.captures_iter(line) {
                if let Some(k) = number(&c[1])
                    && k != BACKENDS.len()
                {
                    wrong.push(format!(
                        "{at}: {k} backends, the binary has {} ({}): {line}",
                        BACKENDS.len(),
                        BACKENDS.join(", ")
                    ));
                }
            }
            if let Some(c) = sample.captures(line)
                && let Some(rule) = rules.iter().find(|r| r["name"] == c[1])
            {
                let k: u64 = c[2].parse().unwrap();
                if Some(k) != rule["patterns"].as_u64() {
                    wrong.push(format!(
                        "{at}: {} with {k} patterns, the binary has {}: {line}",
                        &c[1], rule["patterns"]
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs that disagree with the binary:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_backends_the_docs_count_are_those_the_configuration_takes() {
    for backend in BACKENDS {
        let s = Setup::new(&format!("firewall: {{ backend: {backend} }}"));
        let out = s.cli(None, &["check", "--json"]);
        assert!(out.status.success(), "{backend}: {}", stderr(&out));
    }
    let s = Setup::new("firewall: { backend: pf }");
    let out = s.cli(None, &["check"]);
    assert_eq!(out.status.code(), Some(2), "pf is no backend of pyfilter's");
}
