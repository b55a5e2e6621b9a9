//! What a Redis store publishes on the ban channel when it records and lifts bans: the
//! fleet's wire event, byte for byte as `WireEvent` encodes it, with the id the store gave
//! the ban, and read back by the sync thread's parser as the ban or unban it was.

mod common;

use std::time::Duration;

use chrono::DateTime;
use pyfilter::ban::{NewBan, Origin, Recorded};
use pyfilter::config::RedisConfig;
use pyfilter::event::RemoteEvent;
use pyfilter::fleet::parse_event;
use pyfilter::fleet::wire::WireEvent;
use pyfilter::store::{BanStore, RedisStore};

use common::RedisServer;

#[test]
fn recording_and_lifting_publish_the_wire_event_with_the_ban_id() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = RedisConfig {
        url: redis.url(),
        ..RedisConfig::default()
    };
    let mut store = RedisStore::open(
        &config,
        &dir.path().join("local.db"),
        Duration::from_secs(86_400),
        "web-1",
    )
    .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut events = conn.as_pubsub();
    events.subscribe(config.channel()).unwrap();
    let mut next = || -> String {
        let message = events.get_message().unwrap();
        String::from_utf8(message.get_payload_bytes().to_vec()).unwrap()
    };

    let at = DateTime::from_timestamp(1_795_651_200, 0).unwrap();
    let ban = |net: &str, until: Option<i64>| NewBan {
        net: net.parse().unwrap(),
        rule: "sshd".into(),
        reason: "Failed password for \"root\" from 198.51.100.7 port 22 ssh2 / é".into(),
        attempts: 5,
        server: "web-1".into(),
        source: Origin::Log,
        banned_at: at,
        expires_at: until.map(|s| at + chrono::Duration::seconds(s)),
    };
    let bans = [
        ban("198.51.100.0/24", Some(3600)),
        ban("2001:db8::1/128", None),
    ];
    let recorded = store.record_many(&bans).unwrap();
    for (ban, recorded) in bans.iter().zip(&recorded) {
        let Recorded::New(recorded) = recorded else {
            panic!("{recorded:?}")
        };
        let mut expected = WireEvent::ban(ban);
        expected.id = Some(recorded.id);
        let published = next();
        assert_eq!(published, expected.encode());
        assert_eq!(
            parse_event(published.as_bytes(), "web-2").unwrap(),
            Some(RemoteEvent::Ban {
                net: ban.net,
                rule: ban.rule.clone(),
                server: ban.server.clone(),
                reason: ban.reason.clone(),
                until: ban.expires_at,
            })
        );
    }

    let lifted_at = at + chrono::Duration::seconds(60);
    let lifted = store
        .lift_many(&[bans[0].net], lifted_at, "by hand")
        .unwrap();
    let mut expected = WireEvent::unban(&bans[0].net, "web-1", "by hand", lifted_at);
    expected.id = Some(lifted[0].id);
    let published = next();
    assert_eq!(published, expected.encode());
    assert_eq!(
        parse_event(published.as_bytes(), "web-2").unwrap(),
        Some(RemoteEvent::Unban {
            net: bans[0].net,
            server: "web-1".into(),
        })
    );
}
