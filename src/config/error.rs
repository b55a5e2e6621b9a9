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
            message,
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
        let path = err.path().to_string();
        let mut located = ConfigError::yaml(file, err.inner());
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
