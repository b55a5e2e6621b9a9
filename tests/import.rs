//! `pyfilter import`: an existing PyFilter installation's bans, from its SQLite database
//! and its Redis, brought in once however often the command runs.

mod common;

use common::*;

#[test]
fn pyfilter_sqlite_and_redis_bans_are_imported_once() {
    let s = Setup::new("firewall: { backend: none }");
    let legacy = s.path("PyFilter.db");
    let db = rusqlite::Connection::open(&legacy).unwrap();
    db.execute_batch(
        "CREATE TABLE banned_ip (ip text, time_banned integer, server_name text, log_msg text, country text);
         INSERT INTO banned_ip VALUES ('192.0.2.1', 1700000000, 'old-web', 'Failed password for root from 192.0.2.1', 'ZZ');
         INSERT INTO banned_ip VALUES ('2001:db8::7', 1700000100, 'old-web', 'Invalid user x from 2001:db8::7', NULL);
         INSERT INTO banned_ip VALUES ('not-an-address', 1700000200, 'old-web', 'x', NULL);",
    )
    .unwrap();
    drop(db);
    let redis = RedisServer::start();
    redis.cli(&[
        "HSET",
        "198.51.100.9",
        "reason",
        "nginx 401",
        "banned_server",
        "old-db",
        "time_banned",
        "1700000300.5",
    ]);
    redis.cli(&["LPUSH", "latest_10_keys", "198.51.100.9"]);

    let out = s.cli(
        None,
        &[
            "import",
            "--pyfilter-sqlite",
            legacy.to_str().unwrap(),
            "--pyfilter-redis",
            &redis.admin_url(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("3 bans imported, 0 already there, 1 skipped"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("not-an-address"), "{}", stderr(&out));

    let list = stdout(&s.cli(None, &["list", "--json"]));
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.contains(
            r#""ip":"198.51.100.9","rule":"pyfilter-import","reason":"nginx 401","server":"old-db""#
        ),
        "{list}"
    );
    assert!(list.contains(r#""expires_at":null"#));

    // Again: nothing new.
    let again = s.cli(
        None,
        &[
            "import",
            "--pyfilter-sqlite",
            legacy.to_str().unwrap(),
            "--pyfilter-redis",
            &redis.admin_url(),
        ],
    );
    assert!(
        stdout(&again).starts_with("0 bans imported, 3 already there"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn a_database_that_is_not_pyfilters_is_refused() {
    let s = Setup::new("firewall: { backend: none }");
    let other = s.path("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x int);")
        .unwrap();
    let out = s.cli(
        None,
        &["import", "--pyfilter-sqlite", other.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is this PyFilter's database?"),
        "{}",
        stderr(&out)
    );
    let out = s.cli(None, &["import"]);
    assert_eq!(out.status.code(), Some(2), "one source is required");
}
