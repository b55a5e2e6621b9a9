//! Durations as users write them: humantime strings (`10m`, `1h 30m`, `7d`) and `forever`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// How long a ban lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanTime {
    For(Duration),
    Forever,
}

impl BanTime {
    /// Parses `forever` or a humantime duration; a zero duration is refused.
    pub fn parse(text: &str) -> Result<BanTime, String> {
        if text.trim().eq_ignore_ascii_case("forever") {
            return Ok(BanTime::Forever);
        }
        parse_duration(text).map(BanTime::For)
    }

    /// The expiry of a ban that starts at `from`, `None` for forever.
    pub fn expiry(
        self,
        from: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            BanTime::Forever => None,
            BanTime::For(d) => {
                Some(from + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
            }
        }
    }
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

/// Parses a positive humantime duration with a message that says what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like `90s`, `10m`, `1h 30m` or `7d`")
    })?;
    if d.is_zero() {
        return Err(format!("`{text}` is zero; a duration must be positive"));
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
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }
}
