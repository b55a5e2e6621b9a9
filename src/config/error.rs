//! Configuration errors, and how one is located: the file, the line and the key it
//! concerns, for YAML syntax errors, bad values and failed checks alike.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration or rule error, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn plain(file: impl AsRef<Path>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.as_ref().to_path_buf(),
            line: None,
            message: message.into(),
        }
    }

    /// A YAML error, its position moved to the front where people and editors look for it.
    pub fn yaml(file: impl AsRef<Path>, err: &serde_yaml::Error) -> ConfigError {
        let mut message = err.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        ConfigError {
            file: file.as_ref().to_path_buf(),
            line: err.location().map(|l| l.line()),
            message: match message.split_once(": ") {
                Some((key, said)) if !key.contains(' ') => format!("{key}: {}", in_words(said)),
                _ => in_words(&message),
            },
        }
    }

    /// A deserialization error with the path of the key it concerns. serde_yaml locates
    /// syntax errors and unknown keys itself, but a bad value (a duration, an address)
    /// only by the path, which is looked up in the text.
    pub fn located(
        file: impl AsRef<Path>,
        text: &str,
        err: serde_path_to_error::Error<serde_yaml::Error>,
    ) -> ConfigError {
        let path = key_path(err.path());
        let mut located = ConfigError::yaml(file, err.inner());
        // serde_yaml names the key itself, less precisely (no list entry): the path
        // below says it once. An unknown field keeps serde_yaml's naming: the path
        // below is not added to it.
        if let Some((own, rest)) = located.message.split_once(": ")
            && !own.contains(' ')
            && !rest.starts_with("unknown field")
            && path.starts_with(own.split('[').next().unwrap_or(own))
        {
            located.message = rest.to_string();
        }
        let keys: Vec<&str> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        let unknown_field = located.message.contains("unknown field");
        if !unknown_field && let Some(line) = locate(text, &keys) {
            located.line = Some(line);
        }
        if !unknown_field && path != "." && !located.message.starts_with(&path) {
            located.message = format!("{path}: {}", located.message);
        }
        located
    }

    /// An error about `key`, located at the first line of `text` that defines it.
    pub fn at_key(
        file: impl AsRef<Path>,
        text: &str,
        key: &str,
        message: impl fmt::Display,
    ) -> ConfigError {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let line = text.lines().position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.starts_with(&format!("{leaf}:")) || l.starts_with(&format!("\"{leaf}\":"))
        });
        ConfigError {
            file: file.as_ref().to_path_buf(),
            line: line.map(|l| l + 1),
            message: format!("{key}: {message}"),
        }
    }
}

/// A key's path as the administrator writes it: `rules.sshd.failed_attempts`, `ignore`
/// entry 2 as `ignore (entry 2)`; what the parser could not name is left out.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut keys: Vec<String> = Vec::new();
    let mut entry = None;
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Map { key } => keys.push(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => keys.push(variant.clone()),
            serde_path_to_error::Segment::Seq { index } => entry = Some(index + 1),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    if keys.is_empty() {
        return ".".into();
    }
    let keys = keys.join(".");
    match entry {
        Some(n) => format!("{keys} (entry {n})"),
        None => keys,
    }
}

/// A parser's message in the administrator's words: what the key takes, and what was
/// found, without Rust's type names (`expected a nonzero u32`).
pub fn in_words(message: &str) -> String {
    if message == "invalid socket address syntax" {
        return "must be an address and a port, like 127.0.0.1:8080 or [::1]:8080".into();
    }
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return message.to_string();
    };
    let wanted = match expected.trim() {
        "a nonzero u32" | "a nonzero u64" | "a nonzero usize" => "a whole number of 1 or more",
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" | "u64" | "usize" => "a whole number of 0 or more",
        "i32" | "i64" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" => "text",
        "a sequence" => "a list, like [a, b]",
        "a map" => "keys and values, like { key: value }",
        "a character" => "one character",
        other if other.starts_with("struct ") || other.starts_with("a map") => {
            "keys and values, like { key: value }"
        }
        other if other.starts_with("a sequence") => "a list, like [a, b]",
        _ => return message.to_string(),
    };
    let found = match found.split_once(' ') {
        Some(("string" | "integer" | "floating", value)) => value
            .trim_start_matches("point ")
            .trim_matches('"')
            .trim_matches('`')
            .to_string(),
        Some(("boolean", value)) => value.trim_matches('`').to_string(),
        _ => match found {
            "sequence" => "a list".into(),
            "map" => "keys and values".into(),
            "unit value" => "nothing".into(),
            other => other.into(),
        },
    };
    format!("must be {wanted}, not {found}")
}

impl ConfigError {
    /// An error about the nested keys `path` (`["rules", "sshd", "mode"]`), located at the
    /// line that defines the last of them, even inside `{ ... }`.
    pub fn at_path(
        file: impl AsRef<Path>,
        text: &str,
        path: &[&str],
        message: impl fmt::Display,
    ) -> ConfigError {
        ConfigError {
            file: file.as_ref().to_path_buf(),
            line: locate(text, path),
            message: format!("{}: {message}", path.join(".")),
        }
    }
}

/// The 1-based line where the nested `keys` are defined, following them down the text.
fn locate(text: &str, keys: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    for key in keys {
        let found = (from..lines.len()).find(|&i| {
            let l = lines[i];
            l.match_indices(&format!("{key}:")).any(|(at, _)| {
                at == 0
                    || l.as_bytes()[at - 1].is_ascii_whitespace()
                    || matches!(l.as_bytes()[at - 1], b'{' | b',' | b'"' | b'\'')
            })
        })?;
        from = found;
    }
    (!keys.is_empty()).then_some(from + 1)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
