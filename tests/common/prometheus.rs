//! A strict reader of the Prometheus text format, for the tests of `run --metrics` and
//! of the admin's `/metrics`: what it accepts, Prometheus reads the same way.

use std::collections::{BTreeMap, HashSet};

/// Label names and values, sorted.
pub type Labels = Vec<(String, String)>;

/// Sample name and labels -> value.
pub type Scrape = BTreeMap<(String, Labels), f64>;

/// Parses an exposition strictly: every family has one `# HELP` and one `# TYPE` before
/// its samples, which come together; names and labels are well formed, label values use
/// only the format's three escapes, no sample repeats, counters are `_total` and never
/// negative, every name has pyfilter's prefix, and nothing else is there.
pub fn parse(text: &str) -> Result<Scrape, String> {
    if !text.ends_with('\n') {
        return Err("the text does not end with a line feed".into());
    }
    let mut help = HashSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut out = Scrape::new();
    for (i, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text"))?;
            check_name(name).map_err(|e| at(&e))?;
            if !help.insert(name.to_string()) {
                return Err(at("second HELP"));
            }
            let mut chars = doc.chars();
            while let Some(c) = chars.next() {
                if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                    return Err(at("bad escape in HELP"));
                }
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type"))?;
            check_name(name).map_err(|e| at(&e))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at("unknown type"));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(at("second TYPE"));
            }
            if done.contains(name) || current.as_deref() == Some(name) {
                return Err(at("TYPE after the family's samples"));
            }
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("a line pyfilter never writes"));
        } else {
            let (name, labels, value) = sample(line).map_err(|e| at(&e))?;
            let kind = types
                .get(&name)
                .ok_or_else(|| at("sample before its TYPE"))?;
            if !help.contains(&name) {
                return Err(at("sample without HELP"));
            }
            if current.as_deref() != Some(&name) {
                if done.contains(&name) {
                    return Err(at("family split in two"));
                }
                done.extend(current.take());
                current = Some(name.clone());
            }
            // NaN is refused too: a counter counts.
            let counts = value >= 0.0;
            if kind == "counter" && (!name.ends_with("_total") || !counts) {
                return Err(at("counter not `_total` or negative"));
            }
            if out.insert((name, labels), value).is_some() {
                return Err(at("sample repeated"));
            }
        }
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with("pyfilter_")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn sample(line: &str) -> Result<(String, Labels, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        loop {
            let mut label = String::new();
            for (_, c) in chars.by_ref() {
                match c {
                    '=' => break,
                    c if c.is_ascii_alphanumeric() || c == '_' => label.push(c),
                    _ => return Err(format!("bad label name after {label:?}")),
                }
            }
            if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
                return Err("empty or numeric label name".into());
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("unquoted label value".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => value.push(match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => '\\',
                        '"' => '"',
                        'n' => '\n',
                        c => return Err(format!("bad escape \\{c}")),
                    }),
                    c => value.push(c),
                }
            }
            if labels.iter().any(|(l, _)| *l == label) {
                return Err(format!("label {label} twice"));
            }
            labels.push((label, value));
            match chars.next().ok_or("unterminated labels")? {
                (_, ',') => {}
                (i, '}') => {
                    rest = &inner[i + 1..];
                    break;
                }
                (_, c) => return Err(format!("{c:?} after a label")),
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    let value: f64 = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v if ok_chars && !v.is_empty() => v.parse().map_err(|e| format!("value {v:?}: {e}"))?,
        v => return Err(format!("value {v:?} (or a timestamp)")),
    };
    labels.sort();
    Ok((name.to_string(), labels, value))
}

pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    scrape.get(&(name.to_string(), labels)).copied()
}
