//! YAML read with limits, for `pyfilter.yml` and rule files alike: a size cap on the file,
//! then one pass over the parser's events that caps nesting depth and alias expansion,
//! before serde sees the text.
//!
//! serde_yaml expands every alias into a fresh copy and loads the whole event stream
//! before it checks its own recursion limit, so a 100 KB value aliased 100,000 times took
//! 20 s and 9.8 GB before any error, and a 50,000-deep flow collection held a reload for
//! 8 s. The pass here (saphyr-parser's streaming events) stops at the first event past a
//! limit, and names the file and the line. A text it cannot parse is left to serde_yaml,
//! whose messages the configuration's errors are built on.

use std::io::Read;
use std::path::Path;

use saphyr_parser::{Event, Parser};
use serde::de::DeserializeOwned;

use super::ConfigError;

/// The largest configuration or rule file read: a real one is a few kilobytes.
pub const MAX_FILE: u64 = 1024 * 1024;
/// The deepest nesting of mappings and sequences: pyfilter's files use four or five.
pub const MAX_DEPTH: usize = 64;
/// The most a document may weigh once its aliases are expanded (bytes of text, plus one
/// per node): four times the largest file, room for any honest use of anchors.
pub const MAX_EXPANDED: u64 = 4 * MAX_FILE;

/// Reads `path`, refusing a file larger than `MAX_FILE` without reading all of it.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    let cannot = |e: std::io::Error| ConfigError::plain(path, format!("cannot read: {e}"));
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_FILE {
        return Err(too_large(path));
    }
    Ok(text)
}

fn too_large(file: &Path) -> ConfigError {
    ConfigError::plain(
        file,
        format!(
            "larger than {} KiB; a configuration or rule file is a few kilobytes",
            MAX_FILE / 1024
        ),
    )
}

/// Checks the limits, then deserializes `text`; errors name `file` and, where the parser
/// knows it, the line.
pub fn deserialize<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    check(file, text)?;
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| ConfigError::located(file, text, e))
}

/// Refuses a text over `MAX_FILE`, nested deeper than `MAX_DEPTH`, or whose aliases
/// expand past `MAX_EXPANDED`.
pub fn check(file: &Path, text: &str) -> Result<(), ConfigError> {
    if text.len() as u64 > MAX_FILE {
        return Err(too_large(file));
    }
    let located = |line: usize, message: String| ConfigError {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    };
    let too_deep = |line: usize| {
        located(
            line,
            format!("nested deeper than {MAX_DEPTH} levels; pyfilter's files need a few"),
        )
    };
    // What each anchor weighs once expanded, by the parser's anchor id.
    let mut anchors: Vec<u64> = Vec::new();
    let set_anchor = |anchors: &mut Vec<u64>, id: usize, weight: u64| {
        if id > 0 {
            if anchors.len() <= id {
                anchors.resize(id + 1, 0);
            }
            anchors[id] = weight;
        }
    };
    // The open collections: their anchor and the document's weight when they opened.
    let mut open: Vec<(usize, u64)> = Vec::new();
    let mut weight: u64 = 0;
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(next) => next,
            // The scanner looks ahead through flow collections, and stops at its own
            // limit (255 levels) before the parser has said where the 65th began.
            Err(e) if e.info().contains("recursion limit") => {
                return Err(too_deep(e.marker().line()));
            }
            // Any other syntax error is serde_yaml's to report, in the words the
            // configuration's errors are built on.
            Err(_) => return Ok(()),
        };
        let line = span.start.line();
        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                weight = weight.saturating_add(1);
                open.push((anchor, weight));
                if open.len() > MAX_DEPTH {
                    return Err(too_deep(line));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, start)) = open.pop() {
                    set_anchor(&mut anchors, anchor, weight - start + 1);
                }
            }
            Event::Scalar(value, _, anchor, _) => {
                let own = 1 + value.len() as u64;
                weight = weight.saturating_add(own);
                set_anchor(&mut anchors, anchor, own);
            }
            Event::Alias(id) => {
                weight = weight.saturating_add(anchors.get(id).copied().unwrap_or(0));
                if weight > MAX_EXPANDED {
                    return Err(located(
                        line,
                        format!(
                            "aliases expand the document past {} MiB; write the values out, or share less",
                            MAX_EXPANDED / (1024 * 1024)
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn name() -> &'static Path {
        Path::new("/etc/pyfilter/pyfilter.yml")
    }

    #[test]
    fn a_value_aliased_a_hundred_thousand_times_is_refused_at_once() {
        let mut text = format!("server_name: &big \"{}\"\nignore:\n", "x".repeat(100_000));
        for _ in 0..100_000 {
            text.push_str("  - *big\n");
        }
        let start = Instant::now();
        let e = check(name(), &text).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(e.message.contains("aliases expand"), "{e}");
        // The alias that went past the limit, 4 MiB / 100 KB = about the 42nd.
        assert!(e.line.is_some_and(|l| (40..50).contains(&l)), "{e}");
        assert!(
            e.to_string().starts_with("/etc/pyfilter/pyfilter.yml:"),
            "{e}"
        );
    }

    #[test]
    fn nested_aliases_are_counted_expanded() {
        // The billion laughs: each level doubles ten times.
        let mut text = String::from("a: &a0 [\"lol\"]\n");
        for i in 1..10 {
            let prev = i - 1;
            let refs = vec![format!("*a{prev}"); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = check(name(), &text).unwrap_err();
        assert!(e.message.contains("aliases expand"), "{e}");
    }

    #[test]
    fn a_deep_flow_collection_is_refused_at_once() {
        let text = format!("ignore: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
        let start = Instant::now();
        let e = check(name(), &text).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert!(e.message.contains("nested deeper than 64"), "{e}");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn honest_anchors_and_nesting_pass() {
        let text = "logs: &logs [/var/log/auth.log, /var/log/secure]\nrules:\n  sshd: { log_files: *logs }\n  other: { log_files: *logs }\n";
        check(name(), text).unwrap();
        check(name(), crate::config::EMBEDDED_DEFAULT).unwrap();
    }

    #[test]
    fn a_file_past_the_size_cap_is_refused_without_being_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pyfilter.yml");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(8 * 1024 * 1024 * 1024).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.message.contains("larger than 1024 KiB"), "{e}");
    }

    #[test]
    fn a_syntax_error_is_left_to_serde_yaml() {
        check(name(), "a: [unclosed\n").unwrap();
        let e = deserialize::<serde_yaml::Value>(name(), "a: [unclosed\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
    }
}
