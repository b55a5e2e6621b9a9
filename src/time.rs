//! Times shown to people and to programs: local time, to the second.

use chrono::{DateTime, Local, SecondsFormat, Utc};

/// A time for people: local, to the second.
pub fn human_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A time for programs: RFC 3339 in local time with its offset.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}
