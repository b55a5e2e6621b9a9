//! The fleet's wire event: one ban or unban as it travels on the Redis ban channel, in
//! versioned JSON. This is its one definition: the Redis store encodes it (its scripts
//! publish the text they are given, with the ban's id added) and the sync thread decodes
//! it.
//!
//! ```text
//! {"v":1,"kind":"ban","ip":"192.0.2.1","rule":"sshd","server":"web-1","reason":"...","at":"2026-11-26T00:00:00+00:00","until":null,"id":7}
//! {"v":1,"kind":"unban","ip":"192.0.2.1","server":"web-1","reason":"...","at":"2026-11-26T01:00:00+00:00","id":7}
//! ```
//!
//! `ip` is an address, or a block in CIDR form; `at` (when the change was made) and
//! `until` (when the ban ends, `null` for forever) are RFC 3339 in UTC, to the second.
//! The id comes last: it is known only inside the script that records the ban, which
//! publishes the text it is given around the id (`around_id`) with the id in between.
//!
//! A reader takes the fields in any order and ignores those it does not know: servers
//! before this one published the same fields with Lua's cjson, in hash order, with `/`
//! written `\/` and a large id as a float.

use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ban::NewBan;
use crate::event::RemoteEvent;
use crate::net::{display_net, parse_net};

/// The version this server writes, and the only one it reads.
pub const VERSION: u32 = 1;

/// An event as published, before it is trusted: its fields are the text on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    pub v: u32,
    /// `ban` or `unban`.
    pub kind: String,
    pub ip: String,
    /// A ban's rule; an unban has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The server that made the change.
    pub server: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// When the change was made. Read leniently: it only feeds the sync lag metric, so an
    /// odd one must not get the event refused.
    #[serde(default, deserialize_with = "lenient")]
    pub at: Option<String>,
    /// A ban's end: `Some(None)` for forever, written `null`. An unban has none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub until: Option<Option<String>>,
    /// The ban's id in the shared store; `None` before the script adds it. Read
    /// leniently: it is for people, and cjson wrote large ones as floats.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub id: Option<i64>,
}

/// An event and the time its server wrote on it (`None` when it wrote none readable as
/// RFC 3339).
pub type Sent = (RemoteEvent, Option<DateTime<Utc>>);

impl WireEvent {
    /// The event of a new ban, without its id.
    pub fn ban(ban: &NewBan) -> WireEvent {
        WireEvent {
            v: VERSION,
            kind: "ban".into(),
            ip: display_net(&ban.net),
            rule: Some(ban.rule.clone()),
            server: ban.server.clone(),
            reason: Some(ban.reason.clone()),
            at: Some(rfc3339(ban.banned_at)),
            until: Some(ban.expires_at.map(rfc3339)),
            id: None,
        }
    }

    /// The event of `server` lifting the ban of `net` at `at`, without its id.
    pub fn unban(net: &IpNet, server: &str, why: &str, at: DateTime<Utc>) -> WireEvent {
        WireEvent {
            v: VERSION,
            kind: "unban".into(),
            ip: display_net(net),
            rule: None,
            server: server.to_string(),
            reason: Some(why.to_string()),
            at: Some(rfc3339(at)),
            until: None,
            id: None,
        }
    }

    /// The JSON text, compact.
    pub fn encode(&self) -> String {
        // Strings, numbers and options only: serde_json has nothing here it could refuse.
        serde_json::to_string(self).expect("a wire event always serializes")
    }

    /// The event's text around its id, for a script that learns the id: it publishes
    /// `before`, the id in decimal, then `after`. The id is the last field, so that is
    /// the text `encode` writes with the id, and the script writes no JSON of its own.
    pub fn around_id(&self) -> (String, String) {
        let mut before = WireEvent {
            id: None,
            ..self.clone()
        }
        .encode();
        // Compact JSON of an object ends with its `}`: the id goes just before it.
        before.pop();
        before.push_str(r#","id":"#);
        (before, "}".to_string())
    }

    /// Reads one published event, without trusting it yet.
    pub fn decode(payload: &[u8]) -> Result<WireEvent, String> {
        serde_json::from_slice(payload).map_err(|e| format!("not a pyfilter event ({e})"))
    }

    /// Checks the event: `Ok(None)` for this server's own, `Err` with the reason for one
    /// of an unknown version or kind, naming no valid address, or with a bad `until`.
    pub fn check(self, own_server: &str) -> Result<Option<Sent>, String> {
        if self.v != VERSION {
            return Err(format!("unknown event version {}", self.v));
        }
        if self.server == own_server {
            return Ok(None);
        }
        let net = parse_net(&self.ip).map_err(|e| e.to_string())?;
        let sent = self
            .at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let event = match self.kind.as_str() {
            "ban" => {
                let until = match self.until.flatten() {
                    None => None,
                    Some(t) => Some(
                        DateTime::parse_from_rfc3339(&t)
                            .map_err(|e| format!("bad `until` {t:?}: {e}"))?
                            .with_timezone(&Utc),
                    ),
                };
                RemoteEvent::Ban {
                    net,
                    rule: self.rule.unwrap_or_else(|| "remote".into()),
                    server: self.server,
                    reason: self.reason.unwrap_or_default(),
                    until,
                }
            }
            "unban" => RemoteEvent::Unban {
                net,
                server: self.server,
            },
            other => return Err(format!("unknown event kind {other:?}")),
        };
        Ok(Some((event, sent)))
    }
}

/// Checks one published event: `Ok(None)` for this server's own, `Err` with the reason for
/// anything malformed, of an unknown version, or naming no valid address.
pub fn parse_event(payload: &[u8], own_server: &str) -> Result<Option<RemoteEvent>, String> {
    parse_sent(payload, own_server).map(|e| e.map(|(event, _)| event))
}

/// `parse_event`, with the time the sending server wrote on the event.
pub fn parse_sent(payload: &[u8], own_server: &str) -> Result<Option<Sent>, String> {
    WireEvent::decode(payload)?.check(own_server)
}

/// A time on the wire: UTC, to the second, with its offset written `+00:00`.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Any JSON value; `None` unless it reads as a `T`.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// A field that is there, `null` included (`Some(None)`); its absence is the default.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::Origin;

    fn new_ban(net: &str, expires: Option<i64>) -> NewBan {
        NewBan {
            net: net.parse().unwrap(),
            rule: "sshd".into(),
            reason: "Failed password for \"root\" from 192.0.2.1 /x é".into(),
            attempts: 5,
            server: "web-1".into(),
            source: Origin::Log,
            banned_at: DateTime::from_timestamp(1_795_651_200, 0).unwrap(),
            expires_at: expires.map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        }
    }

    /// What the RECORD and LIFT scripts publish.
    fn with_id(event: &WireEvent, id: i64) -> String {
        let (before, after) = event.around_id();
        format!("{before}{id}{after}")
    }

    #[test]
    fn events_are_written_in_the_documented_order() {
        let ban = WireEvent::ban(&new_ban("192.0.2.1/32", Some(1_795_737_600)));
        assert_eq!(
            with_id(&ban, 7),
            r#"{"v":1,"kind":"ban","ip":"192.0.2.1","rule":"sshd","server":"web-1","reason":"Failed password for \"root\" from 192.0.2.1 /x é","at":"2026-11-26T00:00:00+00:00","until":"2026-11-27T00:00:00+00:00","id":7}"#
        );
        let forever = WireEvent::ban(&new_ban("198.51.100.0/24", None));
        assert!(forever.encode().contains(r#""ip":"198.51.100.0/24","#));
        assert!(forever.encode().ends_with(r#","until":null}"#));
        let at = DateTime::from_timestamp(1_795_654_800, 0).unwrap();
        let unban = WireEvent::unban(&"2001:db8::1/128".parse().unwrap(), "web-1", "by hand", at);
        assert_eq!(
            with_id(&unban, 12),
            r#"{"v":1,"kind":"unban","ip":"2001:db8::1","server":"web-1","reason":"by hand","at":"2026-11-26T01:00:00+00:00","id":12}"#
        );
    }

    #[test]
    fn the_id_a_script_puts_in_is_where_serde_writes_it() {
        for mut event in [
            WireEvent::ban(&new_ban("192.0.2.1/32", Some(1_795_737_600))),
            WireEvent::ban(&new_ban("192.0.2.0/24", None)),
            WireEvent::unban(&"192.0.2.1/32".parse().unwrap(), "b", "", Utc::now()),
        ] {
            let spliced = with_id(&event, 123_456_789_012_345);
            event.id = Some(123_456_789_012_345);
            assert_eq!(spliced, event.encode());
            assert_eq!(WireEvent::decode(spliced.as_bytes()), Ok(event));
        }
    }

    #[test]
    fn what_older_servers_published_with_cjson_is_read() {
        let cjson = br#"{"id":7,"v":1,"at":"2026-11-26T00:00:00+00:00","until":null,"reason":"a \"q\" \/x","ip":"198.51.100.0\/24","kind":"ban","rule":"sshd","server":"b"}"#;
        let (event, sent) = parse_sent(cjson, "a").unwrap().unwrap();
        assert_eq!(
            event,
            RemoteEvent::Ban {
                net: "198.51.100.0/24".parse().unwrap(),
                rule: "sshd".into(),
                server: "b".into(),
                reason: "a \"q\" /x".into(),
                until: None,
            }
        );
        assert_eq!(sent, DateTime::from_timestamp(1_795_651_200, 0));
        let large_id = br#"{"at":"2026","server":"b","reason":"x","id":1.2345678901234e+14,"kind":"unban","ip":"192.0.2.1","v":1}"#;
        assert_eq!(WireEvent::decode(large_id).unwrap().id, None);
        assert!(matches!(
            parse_event(large_id, "a").unwrap(),
            Some(RemoteEvent::Unban { .. })
        ));
    }

    #[test]
    fn a_ban_event_is_parsed_and_own_events_are_ignored() {
        let e = br#"{"v":1,"kind":"ban","ip":"192.0.2.1","rule":"sshd","server":"b","reason":"x","at":"2026-11-26T00:00:00+00:00","until":"2026-11-27T00:00:00+00:00","id":7}"#;
        let got = parse_event(e, "a").unwrap().unwrap();
        assert_eq!(
            got,
            RemoteEvent::Ban {
                net: "192.0.2.1/32".parse().unwrap(),
                rule: "sshd".into(),
                server: "b".into(),
                reason: "x".into(),
                until: Some(
                    DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z")
                        .unwrap()
                        .with_timezone(&Utc)
                ),
            }
        );
        assert_eq!(parse_event(e, "b").unwrap(), None);
        let forever = br#"{"v":1,"kind":"ban","ip":"198.51.100.0/24","server":"b","until":null}"#;
        assert!(matches!(
            parse_event(forever, "a").unwrap(),
            Some(RemoteEvent::Ban { until: None, .. })
        ));
        let unban = br#"{"v":1,"kind":"unban","ip":"2001:db8::1","server":"b"}"#;
        assert!(matches!(
            parse_event(unban, "a").unwrap(),
            Some(RemoteEvent::Unban { .. })
        ));
    }

    #[test]
    fn the_sending_time_is_read_without_ever_refusing_an_event() {
        let sent = |payload: &[u8]| parse_sent(payload, "a").unwrap().unwrap().1;
        assert_eq!(
            sent(br#"{"v":1,"kind":"unban","ip":"192.0.2.1","server":"b","at":"2026-11-26T00:00:01+00:00"}"#),
            Some(DateTime::from_timestamp(1_795_651_201, 0).unwrap())
        );
        for odd in [
            &br#"{"v":1,"kind":"unban","ip":"192.0.2.1","server":"b"}"#[..],
            br#"{"v":1,"kind":"unban","ip":"192.0.2.1","server":"b","at":17}"#,
            br#"{"v":1,"kind":"unban","ip":"192.0.2.1","server":"b","at":"yesterday"}"#,
        ] {
            assert_eq!(sent(odd), None);
        }
    }

    #[test]
    fn forged_and_malformed_events_are_refused() {
        for (payload, says) in [
            (
                &br#"{"v":2,"kind":"ban","ip":"192.0.2.1","server":"b"}"#[..],
                "version",
            ),
            (
                br#"{"v":1,"kind":"ban","ip":"example.com","server":"b"}"#,
                "not an IP",
            ),
            (
                br#"{"v":1,"kind":"ban","ip":"192.0.2.1; rm -rf /","server":"b"}"#,
                "not an IP",
            ),
            (
                br#"{"v":1,"kind":"flush","ip":"192.0.2.1","server":"b"}"#,
                "kind",
            ),
            (
                br#"{"v":1,"kind":"ban","ip":"192.0.2.1","server":"b","until":"tomorrow"}"#,
                "until",
            ),
            (br#"not json"#, "not a pyfilter event"),
            (
                br#"{"v":1,"kind":"ban","ip":"10.0.0.1/8","server":"b"}"#,
                "host bits",
            ),
        ] {
            let err = parse_event(payload, "a").unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
