//! `notify:` as written: who is told of bans and unbans, and how (a command run without a
//! shell, or an HTTP POST to a webhook), with the checks an entry must pass.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::duration::de_duration;

/// One receiver of notifications.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// What logs and metrics call it [default: the command's program, or the URL's host].
    pub name: Option<String>,
    /// A program and its arguments, run without a shell; the ban is in its environment.
    pub command: Option<Vec<String>>,
    /// What the command reads on standard input, with `{placeholders}` [default: the
    /// ban's JSON].
    pub stdin: Option<String>,
    /// A webhook: the ban is POSTed there.
    pub url: Option<String>,
    /// Extra request headers (tokens, API keys).
    pub headers: BTreeMap<String, String>,
    /// A JSON body whose strings may hold `{placeholders}` [default: the ban's JSON].
    pub json: Option<serde_json::Value>,
    /// A form body (`application/x-www-form-urlencoded`) whose values may hold
    /// `{placeholders}`.
    pub form: Option<BTreeMap<String, String>>,
    /// On which changes: `ban`, `unban`.
    pub on: Vec<NotifyOn>,
    /// Only bans of these rules [default: every rule].
    pub rules: Vec<String>,
    /// Only bans from these sources [default: log and manual, not the other servers'].
    pub sources: Vec<NotifySource>,
    /// How long one try may take.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Tries after the first, each after twice the wait of the one before (1s, 2s, 4s...).
    pub retries: u32,
    /// Notifications waiting at most; past it new ones are dropped (and counted).
    pub queue: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            name: None,
            command: None,
            stdin: None,
            url: None,
            headers: BTreeMap::new(),
            json: None,
            form: None,
            on: vec![NotifyOn::Ban],
            rules: Vec::new(),
            sources: vec![NotifySource::Log, NotifySource::Manual],
            timeout: Duration::from_secs(10),
            retries: 3,
            queue: 1000,
        }
    }
}

impl NotifyConfig {
    /// The name logs and metrics give this receiver.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        if let Some(program) = self.command.as_ref().and_then(|c| c.first()) {
            return program.rsplit('/').next().unwrap_or(program).to_string();
        }
        self.url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "notify".into())
    }
}

/// Which change is notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    Ban,
    Unban,
}

/// Where a ban came from, as `notify.sources` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifySource {
    Log,
    Manual,
    Remote,
}

/// The names a template may use, each written `{name}`.
pub const PLACEHOLDERS: [&str; 12] = [
    "event",
    "ip",
    "rule",
    "server",
    "source",
    "reason",
    "attempts",
    "banned_at",
    "expires_at",
    "until",
    "lifted_at",
    "lift_reason",
];

/// What is wrong with one entry, or `None`.
pub fn check(n: &NotifyConfig) -> Option<String> {
    match (&n.command, &n.url) {
        (Some(_), Some(_)) => return Some("give either `command` or `url`, not both".into()),
        (None, None) => {
            return Some(
                "needs a `command` (a program and its arguments) or a `url` (a webhook)".into(),
            );
        }
        (Some(argv), None) => {
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                return Some("`command` needs at least the program to run".into());
            }
            if !n.headers.is_empty() || n.json.is_some() || n.form.is_some() {
                return Some("`headers`, `json` and `form` go with `url`, not `command`".into());
            }
        }
        (None, Some(url)) => {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return Some(format!("`{url}` is not an http:// or https:// URL"));
                }
            }
            if n.stdin.is_some() {
                return Some("`stdin` goes with `command`, not `url`".into());
            }
            if n.json.is_some() && n.form.is_some() {
                return Some("give either `json` or `form`, not both".into());
            }
        }
    }
    if n.on.is_empty() {
        return Some("`on` needs `ban`, `unban` or both".into());
    }
    if n.sources.is_empty() {
        return Some("`sources` needs at least one of log, manual, remote".into());
    }
    if n.queue == 0 {
        return Some("`queue` must be at least 1".into());
    }
    if n.timeout > Duration::from_secs(600) {
        return Some("`timeout` must be at most 10m".into());
    }
    if n.retries > 20 {
        return Some("`retries` must be at most 20".into());
    }
    let mut texts: Vec<&str> = n.stdin.iter().map(String::as_str).collect();
    texts.extend(n.form.iter().flat_map(|f| f.values().map(String::as_str)));
    let mut json_strings = Vec::new();
    if let Some(json) = &n.json {
        strings_of(json, &mut json_strings);
    }
    texts.extend(json_strings);
    texts.iter().find_map(|t| unknown_placeholder(t)).map(|p| {
        format!(
            "`{{{p}}}` is not a placeholder; the placeholders are {}",
            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
        )
    })
}

fn strings_of<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings_of(v, out)),
        _ => {}
    }
}

/// The first `{word}` in `text` that is not a placeholder; other braces are text.
pub fn unknown_placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let word = &rest[..close];
        if !word.is_empty()
            && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !PLACEHOLDERS.contains(&word)
        {
            return Some(word);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(yaml: &str) -> NotifyConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn an_entry_is_a_command_or_a_webhook() {
        assert_eq!(check(&entry("command: [/bin/true]")), None);
        assert_eq!(check(&entry("url: https://hooks.example.org/x")), None);
        assert!(check(&entry("{}")).unwrap().contains("needs a `command`"));
        assert!(
            check(&entry("command: [a]\nurl: http://h/"))
                .unwrap()
                .contains("not both")
        );
        assert!(
            check(&entry("url: ftp://h/x"))
                .unwrap()
                .contains("not an http:// or https:// URL")
        );
        assert!(
            check(&entry("command: [a]\nheaders: {X: y}"))
                .unwrap()
                .contains("go with `url`")
        );
    }

    #[test]
    fn a_misspelt_placeholder_is_refused_and_other_braces_are_text() {
        let e = check(&entry("url: http://h/\njson: {text: 'banned {ipp}'}")).unwrap();
        assert!(e.starts_with("`{ipp}` is not a placeholder"), "{e}");
        assert_eq!(
            check(&entry(
                "command: [a]\nstdin: 'x {ip} {Weird} {} {not-a-word} {'"
            )),
            None
        );
    }

    #[test]
    fn defaults_notify_local_bans_only() {
        let e = entry("command: [/usr/sbin/sendmail, -t]");
        assert_eq!(e.on, [NotifyOn::Ban]);
        assert_eq!(e.sources, [NotifySource::Log, NotifySource::Manual]);
        assert_eq!(e.display_name(), "sendmail");
        assert_eq!(
            entry("url: https://hooks.slack.com/services/T/B/X").display_name(),
            "hooks.slack.com"
        );
    }
}
