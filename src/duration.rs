//! Durations as users write them: humantime strings (`10m`, `1h 30m`, `7d`) and `forever`,
//! range-checked where they are read, so that no time computed from them can overflow.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest duration pyfilter takes: 100 years. Longer is `forever` in all but name,
/// and a ban end computed from a longer one could pass the last date the clock types can
/// hold (a `ban_time` of `100000000d` once crashed the daemon at its first ban).
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Why a duration is refused; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// `why` is empty, or a parenthesis that starts with a space.
    #[error("`{text}` is not a duration{why}; write it like `90s`, `10m`, `1h 30m` or `7d`")]
    Syntax { text: String, why: String },
    #[error("`{text}` is zero; a duration must be positive")]
    Zero { text: String },
    #[error(
        "`{text}` is longer than {max} (100 years), the longest duration pyfilter takes; write `forever` for a ban that never ends",
        max = format_duration(MAX_DURATION)
    )]
    TooLong { text: String },
}

/// How long a ban lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanTime {
    For(Duration),
    Forever,
}

impl BanTime {
    /// Parses `forever` or a humantime duration; a zero duration, or one longer than
    /// `MAX_DURATION`, is refused.
    pub fn parse(text: &str) -> Result<BanTime, DurationError> {
        if text.trim().eq_ignore_ascii_case("forever") {
            return Ok(BanTime::Forever);
        }
        parse_duration(text).map(BanTime::For)
    }

    /// The expiry of a ban that starts at `from`, `None` for forever. A ban so long that
    /// its end cannot be written as a date (only a record made by hand in the store, or
    /// by another program, could ask for one) ends at the last date there is.
    pub fn expiry(
        self,
        from: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            BanTime::Forever => None,
            BanTime::For(d) => Some(after(from, d)),
        }
    }
}

/// `at + d`, or the last date there is: time arithmetic never panics.
pub fn after(at: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// `at - d`, or the first date there is.
pub fn before(at: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// `now + wait` for a timer; a wait too long for the monotonic clock becomes a day, after
/// which whoever set the timer looks again (a timer never fires early for it).
pub fn instant_after(now: std::time::Instant, wait: Duration) -> std::time::Instant {
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

impl fmt::Display for BanTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTime::Forever => f.write_str("forever"),
            BanTime::For(d) => f.write_str(&format_duration(*d)),
        }
    }
}

/// A duration the way it is written in the configuration: `90d`, `1h 30m`, `45s`.
/// (humantime's own formatting uses 30.44-day months, which reads oddly for `90d`.)
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / 86400, "d"),
        (secs % 86400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        format!("{}ms", d.as_millis())
    } else {
        text.join(" ")
    }
}

/// Parses a positive humantime duration of at most `MAX_DURATION`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| DurationError::Syntax {
        text: text.to_string(),
        // humantime's own text points at byte offsets (`expected number at 0`).
        why: match e {
            humantime::DurationError::UnknownUnit { unit, .. } => {
                format!(" (`{unit}` is not a unit: use s, m, h, d or w)")
            }
            humantime::DurationError::NumberOverflow => " (too long)".into(),
            _ => String::new(),
        },
    })?;
    if d.is_zero() {
        return Err(DurationError::Zero {
            text: text.to_string(),
        });
    }
    if d > MAX_DURATION {
        return Err(DurationError::TooLong {
            text: text.to_string(),
        });
    }
    Ok(d)
}

/// Serde adapter for a required humantime duration.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Serde adapter for an optional humantime duration.
pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

impl<'de> Deserialize<'de> for BanTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BanTime::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_humantime_and_forever() {
        assert_eq!(BanTime::parse("forever"), Ok(BanTime::Forever));
        assert_eq!(
            BanTime::parse("1h 30m"),
            Ok(BanTime::For(Duration::from_secs(5400)))
        );
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(format_duration(Duration::from_secs(90 * 86400)), "90d");
        assert_eq!(
            BanTime::For(Duration::from_secs(5400)).to_string(),
            "1h 30m"
        );
    }

    #[test]
    fn refuses_zero_and_garbage() {
        let zero = parse_duration("0s").unwrap_err();
        assert!(zero.to_string().contains("zero"), "{zero}");
        let soon = parse_duration("soon").unwrap_err().to_string();
        assert!(soon.contains("not a duration"), "{soon}");
        assert!(!soon.contains(" at 0"), "no parser offsets: {soon}");
        let unit = parse_duration("5x").unwrap_err().to_string();
        assert!(unit.contains("`x` is not a unit"), "{unit}");
    }

    #[test]
    fn a_duration_past_a_hundred_years_is_refused_and_says_forever() {
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        let e = BanTime::parse("100000000d").unwrap_err();
        assert!(matches!(e, DurationError::TooLong { .. }), "{e}");
        assert!(
            e.to_string().contains("36500d") && e.to_string().contains("`forever`"),
            "{e}"
        );
        // humantime's own overflow is a syntax error, not a panic.
        assert!(parse_duration("99999999999999999999999d").is_err());
    }

    #[test]
    fn an_expiry_past_the_last_date_is_the_last_date_not_a_panic() {
        let from = chrono::Utc::now();
        let far = BanTime::For(Duration::from_secs(u64::MAX)).expiry(from);
        assert_eq!(far, Some(chrono::DateTime::<chrono::Utc>::MAX_UTC));
        let hour = BanTime::For(Duration::from_secs(3600)).expiry(from);
        assert_eq!(hour, Some(from + chrono::Duration::hours(1)));
    }
}
