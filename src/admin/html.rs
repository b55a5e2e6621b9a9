//! HTML building blocks for the admin's pages: text from outside as a page shows it, the
//! page frame with its navigation, the CSRF field, and times written for people
//! ("2026-11-26 07:30:12, 3 min ago").
//!
//! Pages are maud templates, checked when the crate compiles: every value spliced into
//! one is escaped unless it is `Markup` that another template made, so no value reaches
//! a page unescaped by accident. Text that a log, a user or another server wrote is
//! spliced as `Text`, which also shows its control characters. The pages hold no inline
//! script or style, so the Content-Security-Policy can forbid both.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, Render, html};

/// Text that came from a log, a user or another server, as a page shows it: escaped for
/// an element or a quoted attribute (quotes of both kinds included), with its control
/// characters written out (`\u{1b}`) rather than sent.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl Render for Text<'_> {
    fn render_to(&self, out: &mut String) {
        for c in self.0.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                // Log lines may hold control characters; show them, do not send them.
                c if c.is_control() && c != '\n' && c != '\t' => {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "{}", c.escape_default());
                }
                c => out.push(c),
            }
        }
    }
}

/// Escapes a value for a URL's query.
pub fn url(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A time as the server's local date and time, with how long ago (or how soon) it is.
/// `app.js` keeps the "ago" part current while the page stays open.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(crate::time::rfc3339(t)) { (crate::time::human_time(t)) }
        " "
        span class="ago" data-t=(t.timestamp()) { (ago(t, now)) }
    }
}

/// "just now", "3 min ago", "in 2 h", "5 days ago".
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let span = match n {
        0..=59 => return "just now".into(),
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h", n / 3600),
        86_400..=172_799 => "1 day".into(),
        _ => format!("{} days", n / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Who is signed in, for the navigation and its sign-out form.
pub struct Viewer<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
    pub server: &'a str,
    /// The bans are a fleet's, shared through Redis.
    pub fleet: bool,
}

/// A whole page, as the response's body.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (Text(title)) " · pyfilter" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                (nav(viewer))
                main {
                    h1 { (Text(title)) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// The navigation: only the name before signing in.
fn nav(viewer: Option<&Viewer>) -> Markup {
    html! {
        nav {
            @match viewer {
                None => span class="brand" { "pyfilter" },
                Some(v) => {
                    a class="brand" href="/" { "pyfilter" }
                    span class="server" { (Text(v.server)) }
                    a href="/" { "Dashboard" }
                    a href="/history" { "History" }
                    a href="/ban" { "Ban an address" }
                    a href="/password" { "Password" }
                    form method="post" action="/logout" class="signout" {
                        (csrf_field(v.csrf))
                        span class="user" { (Text(v.user)) }
                        " "
                        button type="submit" id="sign-out" { "Sign out" }
                    }
                }
            }
        }
    }
}

/// A hidden CSRF field for a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(Text(token)); }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn shown(text: &str) -> String {
        html! { (Text(text)) }.into_string()
    }

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            shown(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(shown("a\u{1b}[31mb"), "a\\u{1b}[31mb");
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let m = chrono::Duration::minutes(1);
        assert_eq!(ago(now - m / 2, now), "just now");
        assert_eq!(ago(now - m * 3, now), "3 min ago");
        assert_eq!(ago(now - m * 150, now), "2 h ago");
        assert_eq!(ago(now - m * 60 * 30, now), "1 day ago");
        assert_eq!(ago(now - m * 60 * 24 * 5, now), "5 days ago");
        assert_eq!(ago(now + m * 120, now), "in 2 h");
    }
}
