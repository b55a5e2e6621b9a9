//! The admin's questions (summary, history pages, a ban by id) asked of a real Redis
//! store: its answers from the indexes must be those of the whole history.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use pyfilter::ban::{BanQuery, NewBan, Origin, Summary};
use pyfilter::config::RedisConfig;
use pyfilter::store::{BanStore, RedisStore};

use common::RedisServer;

#[test]
fn summary_and_history_pages_from_the_indexes_match_the_whole_history() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = RedisConfig {
        url: redis.url(),
        ..RedisConfig::default()
    };
    let mut store = RedisStore::open(
        &config,
        &dir.path().join("local.db"),
        Duration::from_secs(86_400 * 90),
        "a",
    )
    .unwrap();
    let now = Utc::now();
    let bans: Vec<NewBan> = (0..60i64)
        .map(|i| NewBan {
            net: format!("192.0.2.{i}/32").parse().unwrap(),
            rule: ["sshd", "postfix", "manual"][i as usize % 3].into(),
            reason: format!("line {i}"),
            attempts: 5,
            server: ["a", "b"][i as usize % 2].into(),
            source: Origin::Log,
            // Pairs of bans in the same second: ties are ordered by id.
            banned_at: DateTime::from_timestamp(now.timestamp() - (i / 2) * 5 * 3600, 0).unwrap(),
            expires_at: None,
        })
        .collect();
    store.record_many(&bans).unwrap();
    let lifted: Vec<_> = bans[..20].iter().map(|b| b.net).collect();
    store.lift_many(&lifted, now, "test").unwrap();
    // A record gone past history_retention leaves its id in the index for a while.
    redis.cli(&["DEL", "pyfilter:ban:3"]);

    // Asked while that id is still indexed: the summary and every filtered page read the
    // records' fields, so they leave it out.
    let summary = store.summary(now).unwrap();
    let filtered = [
        BanQuery {
            rule: Some("sshd".into()),
            server: Some("b".into()),
            limit: 50,
            ..BanQuery::default()
        },
        BanQuery {
            net: Some("192.0.2.0/28".parse().unwrap()),
            limit: 5,
            offset: 3,
            ..BanQuery::default()
        },
        BanQuery {
            server: Some("a".into()),
            offset: 10,
            limit: 10,
            ..BanQuery::default()
        },
    ];
    let answers: Vec<_> = filtered.iter().map(|q| store.search(q).unwrap()).collect();
    let all = store.all_bans().unwrap();
    assert_eq!(all.len(), 59);
    assert_eq!(summary, Summary::of(&all, now));
    for (q, indexed) in filtered.iter().zip(answers) {
        assert_eq!(indexed, q.page(all.clone()), "{q:?}");
    }
    // Unfiltered pages count the index alone (reading the whole history is what they
    // avoid); reading it, as above or as `prune` does, drops the gone ids from it.
    let unfiltered = [
        BanQuery {
            limit: 25,
            ..BanQuery::default()
        },
        BanQuery {
            offset: 25,
            limit: 25,
            ..BanQuery::default()
        },
        BanQuery {
            from: Some(now - chrono::Duration::days(3)),
            to: Some(now - chrono::Duration::days(1)),
            limit: 50,
            ..BanQuery::default()
        },
    ];
    for q in unfiltered {
        assert_eq!(store.search(&q).unwrap(), q.page(all.clone()), "{q:?}");
    }
    assert_eq!(store.ban(10).unwrap().unwrap().reason, "line 9");
    assert_eq!(store.ban(1000).unwrap(), None);
}

/// The active bans read a page at a time, as restore and reconcile do: every one is
/// there, even when bans are lifted between two pages (their ranks shift), and what a
/// page missed is still found active when asked.
#[test]
fn active_pages_hold_every_active_ban_even_while_others_are_lifted() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = RedisConfig {
        url: redis.url(),
        sync: false,
        ..RedisConfig::default()
    };
    let mut store = RedisStore::open(
        &config,
        &dir.path().join("local.db"),
        Duration::from_secs(3600),
        "a",
    )
    .unwrap();
    let now = Utc::now();
    let ban = |i: u32, minutes: i64| NewBan {
        net: format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255)
            .parse()
            .unwrap(),
        rule: "sshd".into(),
        reason: String::new(),
        attempts: 1,
        server: "a".into(),
        source: Origin::Log,
        banned_at: now,
        expires_at: Some(now + chrono::Duration::minutes(minutes)),
    };
    // 25,000 bans; the first 3,000 end first, so they hold the lowest ranks.
    let bans: Vec<NewBan> = (0..25_000)
        .map(|i| ban(i, if i < 3000 { 5 } else { 60 }))
        .collect();
    assert_eq!(store.record_many(&bans).unwrap().len(), 25_000);
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let page = store.active_page(cursor).unwrap();
        seen.extend(page.bans.iter().map(|b| b.net));
        pages += 1;
        if pages == 1 {
            // Lifted while the pages are read: every later rank moves down by 900.
            let lifted: Vec<_> = bans[..900].iter().map(|b| b.net).collect();
            store.lift_many(&lifted, now, "test").unwrap();
        }
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let missed: Vec<_> = bans[900..]
        .iter()
        .map(|b| b.net)
        .filter(|n| !seen.contains(n))
        .collect();
    assert!(missed.is_empty(), "{} active bans missed", missed.len());
    assert_eq!(
        store
            .still_active(&[bans[0].net, bans[24_999].net])
            .unwrap(),
        [false, true]
    );
}
