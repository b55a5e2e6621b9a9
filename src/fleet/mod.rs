//! Fleet sync: the thread that listens to the other servers' bans and unbans.
//!
//! Every ban and unban recorded in the Redis store is published on one channel as a small
//! versioned JSON event (`{"v":1,"kind":"ban","ip":...,"rule":...,"server":...,
//! "reason":...,"at":...,"until":...,"id":...}`). This thread subscribes, drops its own
//! server's events, checks every other one (version, kind, address, times) and hands it to
//! the decision thread, which applies it to the firewall. It reconnects by itself with
//! backoff and reports each change of state once; on every (re)connection the decision
//! thread reconciles with Redis, catching whatever was published meanwhile.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::Sender;
use serde::Deserialize;

use crate::config::RedisConfig;
use crate::event::{Event, Link, RemoteEvent};
use crate::metrics::Metrics;
use crate::net::parse_net;
use crate::store::redacted;

/// An event as published, before it is trusted.
#[derive(Debug, Deserialize)]
struct Wire {
    v: u32,
    kind: String,
    ip: String,
    #[serde(default)]
    rule: Option<String>,
    server: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    until: Option<String>,
    /// When the sending server made the change. Any JSON value: it only feeds the sync
    /// lag metric, so an odd one must not get the event refused.
    #[serde(default)]
    at: Option<serde_json::Value>,
}

/// Checks one published event: `Ok(None)` for this server's own, `Err` with the reason for
/// anything malformed, of an unknown version, or naming no valid address.
pub fn parse_event(payload: &[u8], own_server: &str) -> Result<Option<RemoteEvent>, String> {
    parse_sent(payload, own_server).map(|e| e.map(|(event, _)| event))
}

/// An event and the time its server wrote on it (`None` when it wrote none readable as
/// RFC 3339).
pub type Sent = (RemoteEvent, Option<DateTime<Utc>>);

/// `parse_event`, with the time the sending server wrote on the event.
pub fn parse_sent(payload: &[u8], own_server: &str) -> Result<Option<Sent>, String> {
    let wire: Wire =
        serde_json::from_slice(payload).map_err(|e| format!("not a pyfilter event ({e})"))?;
    if wire.v != 1 {
        return Err(format!("unknown event version {}", wire.v));
    }
    if wire.server == own_server {
        return Ok(None);
    }
    let net = parse_net(&wire.ip)?;
    let sent = wire
        .at
        .as_ref()
        .and_then(|v| v.as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let event = match wire.kind.as_str() {
        "ban" => {
            let until = match wire.until.as_deref() {
                None => None,
                Some(t) => Some(
                    DateTime::parse_from_rfc3339(t)
                        .map_err(|e| format!("bad `until` {t:?}: {e}"))?
                        .with_timezone(&Utc),
                ),
            };
            RemoteEvent::Ban {
                net,
                rule: wire.rule.unwrap_or_else(|| "remote".into()),
                server: wire.server,
                reason: wire.reason.unwrap_or_default(),
                until,
            }
        }
        "unban" => RemoteEvent::Unban {
            net,
            server: wire.server,
        },
        other => return Err(format!("unknown event kind {other:?}")),
    };
    Ok(Some((event, sent)))
}

const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts the subscriber thread. It lives as long as the daemon.
/// Every event received is counted in `metrics`, with how late it came.
pub fn spawn(
    config: RedisConfig,
    own_server: String,
    events: Sender<Event>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<JoinHandle<()>> {
    let client = ::redis::Client::open(config.url.as_str())?;
    let url = redacted(&config.url);
    let channel = config.channel();
    Ok(std::thread::Builder::new()
        .name("sync".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(250);
            let mut was_up: Option<bool> = None;
            loop {
                let result = (|| -> ::redis::RedisResult<()> {
                    let mut conn = client.get_connection_with_timeout(config.timeout)?;
                    let mut pubsub = conn.as_pubsub();
                    pubsub.subscribe(&channel)?;
                    if was_up != Some(true) {
                        log::info!("sync: connected to Redis {url}, listening on {channel}");
                    }
                    was_up = Some(true);
                    backoff = Duration::from_millis(250);
                    if events.send(Event::Link(Link::Up(Instant::now()))).is_err() {
                        return Ok(());
                    }
                    loop {
                        let msg = pubsub.get_message()?;
                        match parse_sent(msg.get_payload_bytes(), &own_server) {
                            Ok(Some((event, sent))) => {
                                metrics.remote_event(sent, Utc::now());
                                if events.send(Event::Remote(event)).is_err() {
                                    return Ok(());
                                }
                            }
                            Ok(None) => {}
                            Err(why) => log::warn!(
                                "sync: event dropped: {why}: {}",
                                String::from_utf8_lossy(msg.get_payload_bytes())
                            ),
                        }
                    }
                })();
                if let Err(e) = result {
                    if was_up != Some(false) {
                        log::warn!("sync: lost Redis {url} ({e}); banning locally and retrying");
                        let _ = events.send(Event::Link(Link::Down));
                    }
                    was_up = Some(false);
                } else {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        })?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
