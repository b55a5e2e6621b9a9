//! Times shown to people and to programs: local time, to the second.
//!
//! Every time is rounded once, the same way, by `to_second`: up to the next whole second.
//! The store keeps whole seconds rounded the same way, so the time `pyfilter ban` prints
//! is the time `list`, the admin and a notification show later, and a ban shown is never
//! over before the time shown. A ban begins on the second it was decided in
//! (`start_second`), so it is never shown to begin after its line was read.

use chrono::{DateTime, Local, SecondsFormat, Utc};

/// `t` rounded up to the whole second: how every time is kept and shown.
pub fn to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(whole, 0).unwrap_or(t)
}

/// The whole second `t` falls in: when a ban decided at `t` begins.
pub fn start_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// A time for people: local, to the second.
pub fn human_time(t: DateTime<Utc>) -> String {
    to_second(t)
        .with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A time for programs: RFC 3339 in local time with its offset, to the second.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    to_second(t)
        .with_timezone(&Local)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_rounded_up_to_the_second_the_same_way_for_people_and_programs() {
        let t = DateTime::from_timestamp(1_800_000_000, 300_000_000).unwrap();
        let whole = DateTime::from_timestamp(1_800_000_001, 0).unwrap();
        assert_eq!(to_second(t), whole);
        assert_eq!(to_second(whole), whole, "a whole second stays");
        assert_eq!(human_time(t), human_time(whole));
        assert_eq!(rfc3339(t), rfc3339(whole));
        assert_eq!(
            start_second(t),
            DateTime::from_timestamp(1_800_000_000, 0).unwrap()
        );
    }
}
