//! A ban as the fields a notification shows: the `{placeholders}` of `stdin`, `json` and
//! `form`, and the `PYFILTER_*` variables a command finds in its environment.

use crate::ban::Ban;
use crate::config::notify::PLACEHOLDERS;
use crate::net::display_net;
use crate::time::{human_time, rfc3339};

use super::{Change, Notice};

/// A notice's fields, in the order of `PLACEHOLDERS`.
pub struct Fields(Vec<(&'static str, String)>);

impl Fields {
    pub fn of(notice: &Notice) -> Fields {
        let ban: &Ban = &notice.ban;
        let event = match notice.change {
            Change::Ban => "ban",
            Change::Unban => "unban",
        };
        let values = [
            event.to_string(),
            display_net(&ban.net),
            ban.rule.clone(),
            ban.server.clone(),
            ban.source.as_str().to_string(),
            ban.reason.clone(),
            ban.attempts.to_string(),
            rfc3339(ban.banned_at),
            ban.expires_at.map(rfc3339).unwrap_or_default(),
            ban.expires_at.map_or("forever".into(), human_time),
            ban.lifted_at.map(rfc3339).unwrap_or_default(),
            ban.lift_reason.clone().unwrap_or_default(),
        ];
        Fields(
            PLACEHOLDERS
                .into_iter()
                .zip(values.into_iter().map(|v| harmless(&v)))
                .collect(),
        )
    }

    /// `text` with every `{placeholder}` replaced; other braces are left as they are.
    pub fn render(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 64);
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let field = after.find('}').and_then(|close| {
                let name = &after[..close];
                self.get(name).map(|value| (value, close))
            });
            match field {
                Some((value, close)) => {
                    out.push_str(value);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// A JSON template with the placeholders of its strings replaced: the values become
    /// parts of JSON strings, so no log line can change the document's shape.
    pub fn render_json(&self, template: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match template {
            Value::String(s) => Value::String(self.render(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.render_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.render_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The command's environment: `PYFILTER_IP`, `PYFILTER_RULE`...
    pub fn env(&self) -> impl Iterator<Item = (String, &str)> {
        self.0.iter().map(|(name, value)| {
            (
                format!("PYFILTER_{}", name.to_ascii_uppercase()),
                value.as_str(),
            )
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A value with its control characters written out (`\r`, `\u{1b}`): a log line must not
/// start a new mail header, move a terminal's cursor, or carry a NUL into an environment.
fn harmless(value: &str) -> String {
    if !value.chars().any(char::is_control) {
        return value.to_string();
    }
    value
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::notice;
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_other_braces_kept() {
        let f = Fields::of(&notice(Change::Ban, "192.0.2.7"));
        assert_eq!(
            f.render("{event} {ip} by {rule} on {server}: {reason} {nope} {ip"),
            "ban 192.0.2.7 by sshd on web-1: Failed password for root {nope} {ip"
        );
    }

    #[test]
    fn a_log_line_cannot_add_a_mail_header_or_a_json_key() {
        let mut n = notice(Change::Ban, "192.0.2.7");
        n.ban.new.reason = "x\r\nBcc: everyone@example.org\0\", \"admin\": true".into();
        let f = Fields::of(&n);
        let mail = f.render("Subject: {reason}\n\nbody");
        assert_eq!(mail.lines().count(), 3, "{mail}");
        assert!(mail.starts_with("Subject: x\\r\\nBcc"), "{mail}");
        let json = f.render_json(&serde_json::json!({ "text": "{reason}" }));
        assert_eq!(json.as_object().map(|o| o.len()), Some(1), "{json}");
        assert!(f.env().all(|(_, v)| !v.contains('\0')));
    }

    #[test]
    fn the_environment_names_every_field() {
        let f = Fields::of(&notice(Change::Unban, "2001:db8::/64"));
        let env: Vec<(String, &str)> = f.env().collect();
        assert!(env.contains(&("PYFILTER_EVENT".into(), "unban")));
        assert!(env.contains(&("PYFILTER_IP".into(), "2001:db8::/64")));
        assert!(env.contains(&("PYFILTER_LIFT_REASON".into(), "expired")));
        assert_eq!(env.len(), PLACEHOLDERS.len());
    }
}
