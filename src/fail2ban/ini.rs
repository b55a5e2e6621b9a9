//! fail2ban's INI dialect, one file at a time: Python's `configparser` as fail2ban sets it
//! up, with each value kept beside the file and line it was written at.
//!
//! The dialect, as Python reads it (strict mode, `;` as the inline comment prefix):
//! - `[name]` opens a section; `[DEFAULT]` holds the defaults of every section.
//! - `key = value` or `key: value`, the first `=` or `:` splitting; keys are lower-cased.
//! - A line indented deeper than its key's line continues the value (a new line in it);
//!   blank lines inside a value are kept, trailing ones dropped.
//! - A line whose first non-blank character is `#` or `;` is a comment, wherever it is;
//!   `;` after a blank ends a line early. `#` after text is part of the value.
//! - The same section or key twice in one file is an error, as in fail2ban.
//!
//! No crate reads this dialect with positions (configparser-rs and rust-ini give neither
//! line numbers nor Python's indentation rules), hence this small reader.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One option's value (its lines joined with `\n`) and where its key was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub at: Location,
}

/// The options of one section, in the order they were first written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options(Vec<(String, Value)>);

impl Options {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, keeping its place when it was there already; returns the old value.
    pub fn set(&mut self, key: &str, value: Value) -> Option<Value> {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.0.push((key.to_string(), value));
                None
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// One file as written: its `[DEFAULT]` options and its other sections, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IniFile {
    pub defaults: Options,
    pub sections: Vec<(String, Options)>,
}

impl IniFile {
    pub fn section(&self, name: &str) -> Option<&Options> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
    }
}

/// A line the dialect cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct SyntaxError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// The value being read: its section (`None` for `[DEFAULT]`), key, lines and location.
struct Open {
    section: Option<usize>,
    key: String,
    lines: Vec<String>,
    at: Location,
}

/// Reads one file's text; `file` names it in locations and errors.
pub fn parse(file: &Path, text: &str) -> Result<IniFile, SyntaxError> {
    let shared: Arc<Path> = Arc::from(file);
    let error = |line: usize, message: String| SyntaxError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let mut out = IniFile::default();
    // `None`: before any header. `Some(None)`: [DEFAULT]. `Some(Some(i))`: a section.
    let mut current: Option<Option<usize>> = None;
    let mut open: Option<Open> = None;
    let mut indent_level = 0usize;
    // Strict mode: what this file already named, to refuse doubles.
    let mut seen_sections: Vec<String> = Vec::new();
    let mut seen_keys: Vec<(Option<usize>, String)> = Vec::new();

    for (n, raw) in text.split('\n').enumerate() {
        let lineno = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let comment_start = comment_start(line);
        let value = line[..comment_start.unwrap_or(line.len())].trim();
        if value.is_empty() {
            // A truly blank line belongs to the value being read (trimmed at its end);
            // a comment line does not.
            if comment_start.is_none()
                && let Some(o) = open.as_mut()
            {
                o.lines.push(String::new());
            }
            continue;
        }
        let indent = line
            .char_indices()
            .find(|(_, c)| !c.is_whitespace())
            .map_or(0, |(i, _)| i);
        if open.is_some() && indent > indent_level {
            if let Some(o) = open.as_mut() {
                o.lines.push(value.to_string());
            }
            continue;
        }
        indent_level = indent;
        if let Some(header) = section_header(value) {
            close(&mut out, open.take());
            if header == "DEFAULT" {
                current = Some(None);
                continue;
            }
            if seen_sections.iter().any(|s| s == header) {
                return Err(error(
                    lineno,
                    format!("section [{header}] is already in this file"),
                ));
            }
            seen_sections.push(header.to_string());
            out.sections.push((header.to_string(), Options::default()));
            current = Some(Some(out.sections.len() - 1));
            continue;
        }
        let Some(section) = current else {
            return Err(error(
                lineno,
                format!("`{value}` comes before any [section] header"),
            ));
        };
        let Some(split) = value.find(['=', ':']) else {
            return Err(error(
                lineno,
                format!("`{value}` is neither a [section] header nor `key = value`"),
            ));
        };
        let key = value[..split].trim_end().to_lowercase();
        if key.is_empty() {
            return Err(error(lineno, format!("`{value}` has no key before `=`")));
        }
        if seen_keys.iter().any(|(s, k)| *s == section && *k == key) {
            return Err(error(
                lineno,
                format!("`{key}` is set twice in this section of this file"),
            ));
        }
        seen_keys.push((section, key.clone()));
        close(&mut out, open.take());
        open = Some(Open {
            section,
            key,
            lines: vec![value[split + 1..].trim().to_string()],
            at: Location {
                file: shared.clone(),
                line: lineno,
            },
        });
    }
    close(&mut out, open.take());
    Ok(out)
}

/// Where a comment starts on `line`: 0 for a comment line, the position of a `;` that
/// follows a blank (or starts the line), or `None`.
fn comment_start(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with(';') {
        return Some(0);
    }
    line.char_indices()
        .find(|&(i, c)| {
            c == ';'
                && (i == 0
                    || line[..i]
                        .chars()
                        .next_back()
                        .is_some_and(char::is_whitespace))
        })
        .map(|(i, _)| i)
}

/// `[name]` (Python's `\[(?P<header>.+)\]`, matched at the start: the last `]` closes).
fn section_header(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

fn close(out: &mut IniFile, open: Option<Open>) {
    let Some(o) = open else { return };
    let text = o.lines.join("\n").trim_end().to_string();
    let value = Value { text, at: o.at };
    match o.section {
        None => out.defaults.set(&o.key, value),
        Some(i) => out.sections[i].1.set(&o.key, value),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> IniFile {
        parse(Path::new("/etc/fail2ban/jail.local"), text).unwrap()
    }

    fn value<'a>(f: &'a IniFile, section: &str, key: &str) -> &'a str {
        let opts = if section == "DEFAULT" {
            &f.defaults
        } else {
            f.section(section).unwrap()
        };
        &opts.get(key).unwrap().text
    }

    #[test]
    fn sections_keys_and_both_delimiters() {
        let f = read("[DEFAULT]\nbantime = 1h\n\n[sshd]\nEnabled: true\nport=ssh\n");
        assert_eq!(value(&f, "DEFAULT", "bantime"), "1h");
        assert_eq!(value(&f, "sshd", "enabled"), "true", "keys are lower-cased");
        assert_eq!(value(&f, "sshd", "port"), "ssh");
        assert_eq!(f.section("sshd").unwrap().get("port").unwrap().at.line, 6);
    }

    #[test]
    fn indented_lines_continue_a_value_and_inner_blank_lines_stay() {
        let f = read(
            "[web]\nlogpath = /var/log/a.log\n   /var/log/b.log\n\n   /var/log/c.log\n\n\nport = 80\n",
        );
        assert_eq!(
            value(&f, "web", "logpath"),
            "/var/log/a.log\n/var/log/b.log\n\n/var/log/c.log"
        );
        assert_eq!(value(&f, "web", "port"), "80");
    }

    #[test]
    fn comments_whole_lines_and_semicolons_after_a_blank() {
        let f = read(
            "# top\n[sshd]\n; a note\nport = ssh ; the ssh port\nlogpath = /a.log\n  # not a path\n  /b.log\nurl = http://x/;y\nignoreip = 192.0.2.1 # office\n",
        );
        assert_eq!(value(&f, "sshd", "port"), "ssh");
        assert_eq!(value(&f, "sshd", "logpath"), "/a.log\n/b.log");
        assert_eq!(
            value(&f, "sshd", "url"),
            "http://x/;y",
            "no blank before `;`"
        );
        assert_eq!(
            value(&f, "sshd", "ignoreip"),
            "192.0.2.1 # office",
            "`#` after text is part of the value, as in fail2ban"
        );
    }

    #[test]
    fn the_first_delimiter_splits_and_values_may_be_empty() {
        let f = read("[a]\nfailregex = ^x=<HOST>:y$\nempty =\n");
        assert_eq!(value(&f, "a", "failregex"), "^x=<HOST>:y$");
        assert_eq!(value(&f, "a", "empty"), "");
    }

    #[test]
    fn doubles_and_stray_lines_are_errors_with_their_line() {
        let e = parse(Path::new("/x/jail.local"), "[a]\nk = 1\nk = 2\n").unwrap_err();
        assert_eq!(
            (e.line, e.to_string().starts_with("/x/jail.local:3:")),
            (3, true)
        );
        assert_eq!(
            parse(Path::new("j"), "[a]\n[b]\n[a]\n").unwrap_err().line,
            3
        );
        assert_eq!(parse(Path::new("j"), "k = 1\n").unwrap_err().line, 1);
        let e = parse(Path::new("j"), "[a]\njust words\n").unwrap_err();
        assert!(e.message.contains("neither"), "{e}");
        assert_eq!(parse(Path::new("j"), "[a]\n= 1\n").unwrap_err().line, 2);
    }

    #[test]
    fn default_may_be_reopened_and_headers_take_the_last_bracket() {
        let f = read("[DEFAULT]\na = 1\n[x]\n[DEFAULT]\nb = 2\n[we]ird] trailing\nc = 3\n");
        assert_eq!(value(&f, "DEFAULT", "b"), "2");
        assert_eq!(value(&f, "we]ird", "c"), "3");
    }

    #[test]
    fn crlf_line_ends_are_read() {
        let f = read("[sshd]\r\nenabled = true\r\nlogpath = /a\r\n  /b\r\n");
        assert_eq!(value(&f, "sshd", "enabled"), "true");
        assert_eq!(value(&f, "sshd", "logpath"), "/a\n/b");
    }
}
