//! The admin's questions (summary, history pages, a ban by id) asked of a real Redis
//! store: its answers from the indexes must be those of the whole history.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use pyfilter::ban::{BanQuery, NewBan, Origin, Summary};
use pyfilter::config::RedisConfig;
use pyfilter::store::{BanStore, RedisStore};

use common::RedisServer;

/// A store on `redis` as server `a`, its outbox in a directory that lives as long as the
/// first value.
fn open_store(
    redis: &RedisServer,
    sync: bool,
    retention: Duration,
) -> (tempfile::TempDir, RedisStore) {
    let dir = tempfile::tempdir().unwrap();
    let config = RedisConfig {
        url: redis.url(),
        sync,
        ..RedisConfig::default()
    };
    let store = RedisStore::open(&config, &dir.path().join("local.db"), retention, "a").unwrap();
    (dir, store)
}

/// An sshd ban of `ip` by server `a` after five attempts.
fn sshd_ban(
    ip: &str,
    reason: &str,
    banned_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> NewBan {
    NewBan {
        net: format!("{ip}/32").parse().unwrap(),
        rule: "sshd".into(),
        reason: reason.into(),
        attempts: 5,
        server: "a".into(),
        source: Origin::Log,
        banned_at,
        expires_at,
    }
}

#[test]
fn summary_and_history_pages_from_the_indexes_match_the_whole_history() {
    summary_and_history_pages("2");
}

/// The same of a store written before layout 2, which servers go on writing that way.
#[test]
fn summary_and_history_pages_of_a_layout_1_store_match_the_whole_history() {
    summary_and_history_pages("1");
}

fn summary_and_history_pages(layout: &str) {
    let redis = RedisServer::start();
    redis.cli(&["SET", "pyfilter:layout", layout]);
    let (_dir, mut store) = open_store(&redis, true, Duration::from_secs(86_400 * 90));
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
    redis.cli(&["HDEL", "pyfilter:records", "3"]);

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
    let (_dir, mut store) = open_store(&redis, false, Duration::from_secs(3600));
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

/// A store written before layout 2 (a hash per record, a sorted set per network) is read
/// and written in its own layout until `prune --compact` rewrites it: afterwards every
/// ban, lift, log line (tabs and backslashes included) and repeat offence reads the same,
/// no key of the old layout is left, and new bans are packed.
#[test]
fn a_layout_1_store_is_compacted_into_layout_2_and_reads_the_same() {
    let redis = RedisServer::start();
    redis.cli(&["SET", "pyfilter:layout", "1"]);
    let (_dir, mut store) = open_store(&redis, false, Duration::from_secs(86_400 * 90));
    let now = Utc::now();
    let ban = |i: i64, hours_ago: i64| NewBan {
        net: format!("192.0.2.{i}/32").parse().unwrap(),
        rule: "sshd".into(),
        reason: format!("line {i}\twith a tab, a \\ and\\t a fake escape"),
        attempts: 3,
        server: "a".into(),
        source: Origin::Log,
        banned_at: DateTime::from_timestamp(now.timestamp() - hours_ago * 3600, 0).unwrap(),
        expires_at: Some(DateTime::from_timestamp(now.timestamp() + 3600, 0).unwrap()),
    };
    store
        .record_many(&(0..10).map(|i| ban(i, 10)).collect::<Vec<_>>())
        .unwrap();
    let lifted: Vec<_> = (0..4).map(|i| ban(i, 10).net).collect();
    store.lift_many(&lifted, now, "by\thand").unwrap();
    // Two of them again: repeat offenders.
    store.record_many(&[ban(0, 1), ban(1, 1)]).unwrap();
    assert_eq!(redis.cli(&["EXISTS", "pyfilter:ban:1"]).trim(), "1");
    assert_eq!(redis.cli(&["HLEN", "pyfilter:records"]).trim(), "0");
    // `prune --compact` sets layout 2 first: a network lifted in layout 1 is banned
    // again in layout 2 by a server while the records are being rewritten.
    redis.cli(&["SET", "pyfilter:layout", "2"]);
    store.record_many(&[ban(2, 1)]).unwrap();
    let before = store.all_bans().unwrap();
    assert_eq!(before.len(), 13);
    let active = store.active_bans().unwrap();
    assert_eq!(active.len(), 9);
    let since = now - chrono::Duration::days(1);
    assert_eq!(store.bans_since(&ban(0, 1).net, since).unwrap(), 2);

    assert_eq!(store.compact().unwrap(), Some(12));
    assert_eq!(redis.cli(&["GET", "pyfilter:layout"]).trim(), "2");
    assert_eq!(redis.cli(&["HLEN", "pyfilter:records"]).trim(), "13");
    for pattern in [
        "pyfilter:ban:*",
        "pyfilter:bans_of:*",
        "pyfilter:active",
        "pyfilter:history",
    ] {
        assert_eq!(redis.cli(&["KEYS", pattern]).trim(), "", "{pattern}");
    }
    assert_eq!(redis.cli(&["ZCARD", "pyfilter:history:0"]).trim(), "13");
    assert_eq!(store.all_bans().unwrap(), before);
    assert_eq!(store.active_bans().unwrap(), active);
    assert_eq!(store.bans_since(&ban(0, 1).net, since).unwrap(), 2);
    assert!(store.holds(&ban(1, 10)).unwrap() && store.holds(&ban(1, 1)).unwrap());
    assert_eq!(
        store.ban(1).unwrap().unwrap().lift_reason.as_deref(),
        Some("by\thand")
    );
    // Run again, nothing is left to rewrite.
    assert_eq!(store.compact().unwrap(), Some(0));
    // A network's active ban is its last, whichever layout recorded it.
    let lift = |store: &mut RedisStore, i: i64| -> Vec<i64> {
        let lifted = store.lift_many(&[ban(i, 0).net], now, "test").unwrap();
        lifted.iter().map(|b| b.id).collect()
    };
    assert_eq!(lift(&mut store, 0), [11], "banned again in layout 1");
    assert_eq!(lift(&mut store, 2), [13], "banned again in layout 2");
    assert_eq!(lift(&mut store, 2), [0i64; 0], "lifted already");
    store.record_many(&[ban(0, 0), ban(2, 0)]).unwrap();

    // New bans and lifts are packed; prune drops the old lifted ones and their offences.
    store.record_many(&[ban(20, 0)]).unwrap();
    store.lift_many(&[ban(20, 0).net], now, "test").unwrap();
    assert_eq!(redis.cli(&["HLEN", "pyfilter:records"]).trim(), "16");
    assert_eq!(redis.cli(&["EXISTS", "pyfilter:ban:16"]).trim(), "0");
    let dropped = store
        .purge_history(now + chrono::Duration::seconds(1))
        .unwrap();
    assert_eq!(
        dropped, 7,
        "the four lifted before, the two lifted above and the new one"
    );
    assert_eq!(redis.cli(&["HLEN", "pyfilter:records"]).trim(), "9");
    assert_eq!(
        redis
            .cli(&["HEXISTS", "pyfilter:offences", "192.0.2.20/32"])
            .trim(),
        "0"
    );
    assert_eq!(
        store.bans_since(&ban(0, 1).net, since).unwrap(),
        1,
        "its lifted ban is forgotten, its active one is not"
    );
    assert_eq!(store.all_bans().unwrap().len(), 9);
}

/// A new store is of layout 2 from its first ban: one packed line per ban, no key per ban.
#[test]
fn a_new_store_packs_each_ban_in_one_line() {
    let redis = RedisServer::start();
    let (_dir, mut store) = open_store(&redis, false, Duration::from_secs(86_400));
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let new = sshd_ban(
        "198.51.100.7",
        "Failed password for root from 198.51.100.7",
        now,
        None,
    );
    store.record_many(std::slice::from_ref(&new)).unwrap();
    assert_eq!(redis.cli(&["GET", "pyfilter:layout"]).trim(), "2");
    assert_eq!(
        redis.cli(&["HGET", "pyfilter:records", "1"]).trim(),
        format!(
            "198.51.100.7/32\tsshd\t5\ta\tlog\t{}\t\tFailed password for root from 198.51.100.7",
            now.timestamp()
        )
    );
    assert_eq!(
        redis
            .cli(&["HGET", "pyfilter:offences", "198.51.100.7/32"])
            .trim(),
        format!("1:{}", now.timestamp())
    );
    assert_eq!(
        redis
            .cli(&["ZRANGE", "pyfilter:history:0", "0", "-1", "WITHSCORES"])
            .trim(),
        format!("1\n{}", now.timestamp())
    );
    for pattern in ["pyfilter:ban*", "pyfilter:active", "pyfilter:history"] {
        assert_eq!(redis.cli(&["KEYS", pattern]).trim(), "", "{pattern}");
    }
    assert_eq!(store.ban(1).unwrap().unwrap().new, new);
    assert_eq!(store.active_bans().unwrap().len(), 1);
}

/// A network left in `expiry` without a ban to find (its record and offences dropped by
/// hand, or lost) would be due for ever, and every server would wake for it without
/// pause: asking what is due takes it out, and leaves the real bans alone.
#[test]
fn a_due_network_without_a_ban_leaves_expiry_instead_of_being_due_for_ever() {
    let redis = RedisServer::start();
    let (_dir, mut store) = open_store(&redis, false, Duration::from_secs(86_400));
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let ban = |ip: &str, ends_in: i64| {
        let until = now + chrono::Duration::seconds(ends_in);
        sshd_ban(ip, "line", now - chrono::Duration::hours(1), Some(until))
    };
    store
        .record_many(&[ban("192.0.2.1", -10), ban("192.0.2.2", 3600)])
        .unwrap();
    let past = (now.timestamp() - 20).to_string();
    // One due with no ban at all, one whose id has no record.
    redis.cli(&["ZADD", "pyfilter:expiry", &past, "192.0.2.99/32"]);
    redis.cli(&["ZADD", "pyfilter:expiry", &past, "192.0.2.98/32"]);
    redis.cli(&["HSET", "pyfilter:offences", "192.0.2.98/32", "777:1"]);

    let due = store.due(now).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].net, ban("192.0.2.1", 0).net);
    assert_eq!(
        redis.cli(&["ZRANGE", "pyfilter:expiry", "0", "-1"]).trim(),
        "192.0.2.1/32\n192.0.2.2/32",
        "the due ban stays until it is lifted, the later one too"
    );
    assert_eq!(
        store.next_expiry().unwrap(),
        Some(now - chrono::Duration::seconds(10))
    );
    store.lift_many(&[due[0].net], now, "expired").unwrap();
    assert_eq!(store.due(now).unwrap(), []);
    assert_eq!(
        store.next_expiry().unwrap(),
        Some(now + chrono::Duration::seconds(3600))
    );
}
