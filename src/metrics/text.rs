//! The Prometheus text exposition (format 0.0.4): samples grouped by family with their
//! HELP and TYPE, label values escaped, numbers written as Prometheus reads them; and
//! the two renderings, the daemon's live one and the admin's from the saved snapshot.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::family::{ACTIVE_BANS, BANS, BUILD_INFO, FAMILIES, Family, SAVED_AT, STORE_UP, Sample};
use super::from_rows;
use crate::ban::Summary;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The store's samples: its figures, or `store_up 0` alone when it could not answer.
pub fn store_samples(summary: Option<&Summary>) -> Vec<Sample> {
    let Some(summary) = summary else {
        return vec![Sample::new(&STORE_UP, &[], 0.0)];
    };
    let mut out = vec![
        Sample::new(&STORE_UP, &[], 1.0),
        Sample::new(&ACTIVE_BANS, &[], summary.active as f64),
    ];
    for (rule, server, n) in &summary.by_rule_server {
        out.push(Sample::new(&BANS, &[rule, server], *n as f64));
    }
    out
}

/// Writes the exposition of `daemon` (the daemon's counters, live or saved) and of the
/// store's `summary` (`None`: the store did not answer), with the build info.
pub fn render(out: &mut String, daemon: &[Sample], summary: Option<&Summary>) {
    let mut samples = vec![Sample::new(&BUILD_INFO, &[env!("CARGO_PKG_VERSION")], 1.0)];
    samples.extend(store_samples(summary));
    samples.extend_from_slice(daemon);
    write_samples(out, &samples);
}

/// The admin's `/metrics`: the counters the daemon last saved (`saved`: name, value and
/// when it was saved, as read back from the local SQLite file), with the time they were
/// saved, and the store's `summary` (`None`: the store did not answer, said by
/// `pyfilter_store_up 0`).
pub fn render_saved(
    out: &mut String,
    saved: &[(String, f64, DateTime<Utc>)],
    summary: Option<&Summary>,
) {
    let mut daemon = from_rows(saved.iter().map(|(k, v, _)| (k.as_str(), *v)));
    if let Some(at) = saved.iter().map(|(_, _, at)| *at).max() {
        daemon.push(Sample::new(&SAVED_AT, &[], at.timestamp() as f64));
    }
    render(out, &daemon, summary);
}

/// Writes samples grouped by family (in `FAMILIES` order, label values sorted within
/// one), each family headed by its `# HELP` and `# TYPE`.
fn write_samples(out: &mut String, samples: &[Sample]) {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    let rank = |s: &Sample| FAMILIES.iter().position(|f| *f == s.family);
    sorted.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.labels.cmp(&b.labels)));
    let mut current: Option<&Family> = None;
    for s in sorted {
        if current != Some(s.family) {
            current = Some(s.family);
            let name = s.family.name;
            let _ = writeln!(out, "# HELP pyfilter_{name} {}", escape_help(s.family.help));
            let _ = writeln!(out, "# TYPE pyfilter_{name} {}", s.family.kind.as_str());
        }
        out.push_str("pyfilter_");
        out.push_str(&s.key());
        out.push(' ');
        out.push_str(&format_value(s.value));
        out.push('\n');
    }
}

pub(super) fn write_labels(out: &mut String, names: &[&str], values: &[String]) {
    if names.is_empty() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&escape_label(value));
        out.push('"');
    }
    out.push('}');
}

/// A label value as the text format wants it: `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: `\` and line feeds escaped (quotes are fine there).
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A value as Go's `ParseFloat` reads it: whole numbers without a fraction.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's shortest round-trip form, never an exponent: `3`, `0.25`, `-1.5`.
        format!("{v}")
    }
}

/// Reads `{a="x",b="y\"z"}` strictly: names of letters, digits and `_`, values quoted
/// with only the three escapes the format has, nothing after the closing brace.
pub(super) fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut chars = text.strip_prefix('{')?.chars().peekable();
    let mut labels = Vec::new();
    if chars.peek() == Some(&'}') {
        chars.next();
        return chars.next().is_none().then_some(labels);
    }
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        if chars.next()? != '=' || chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => value.push(match chars.next()? {
                    '\\' => '\\',
                    '"' => '"',
                    'n' => '\n',
                    _ => return None,
                }),
                '\n' => return None,
                c => value.push(c),
            }
        }
        labels.push((name, value));
        match chars.next()? {
            ',' => {}
            '}' => return chars.next().is_none().then_some(labels),
            _ => return None,
        }
    }
}
