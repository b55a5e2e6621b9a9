//! Read-only commands open the store read-only: `list`, `check` and `admin users` work for
//! a user who may only read the state, write nothing, and a user who may not read it is
//! told what to do. Run as an unprivileged user with setpriv, as an administrator would
//! with sudo -u.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use common::*;

/// Runs `pyfilter -c CONFIG ARGS` as nobody:nogroup, with no supplementary group.
fn as_nobody(s: &Setup, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            BIN,
            "-c",
        ])
        .arg(s.config())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) must be installed")
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A setup whose directories anyone may enter, with one ban recorded by root.
fn with_one_ban() -> Setup {
    let s = Setup::new("firewall: { backend: none }");
    chmod(s.dir.path(), 0o755);
    let out = s.cli(None, &["ban", "192.0.2.7", "--for", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s
}

fn files_of(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn list_works_for_a_user_who_may_only_read_and_writes_nothing() {
    let s = with_one_ban();
    let db_dir = s.path("db");
    // Readable, not writable: as a state directory shared with a group would be.
    chmod(&db_dir, 0o755);
    for f in std::fs::read_dir(&db_dir).unwrap() {
        chmod(&f.unwrap().path(), 0o644);
    }
    let before = files_of(&db_dir);
    let out = as_nobody(&s, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("192.0.2.7"), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("1 active ban\n"), "{}", stdout(&out));
    let out = as_nobody(&s, &["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        files_of(&db_dir),
        before,
        "a read-only command changed the state"
    );
}

#[test]
fn list_reads_a_database_nobody_has_open_without_creating_its_shared_memory() {
    let s = with_one_ban();
    let db_dir = s.path("db");
    // The last writer has gone: SQLite removed its -wal and -shm files, and the user
    // may not create them in the directory.
    for f in std::fs::read_dir(&db_dir).unwrap() {
        let p = f.unwrap().path();
        if p.to_string_lossy().ends_with("-shm") || p.to_string_lossy().ends_with("-wal") {
            std::fs::remove_file(p).unwrap();
        }
    }
    chmod(&db_dir, 0o755);
    chmod(&s.path("db/pyfilter.db"), 0o644);
    let before = files_of(&db_dir);
    let out = as_nobody(&s, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("192.0.2.7"));
    assert_eq!(files_of(&db_dir), before);
}

#[test]
fn a_user_who_may_not_read_the_state_is_told_what_to_do() {
    let s = with_one_ban();
    chmod(&s.path("db"), 0o700);
    let out = as_nobody(&s, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("permission denied; run this as root (sudo), or as a member of the group that may read the state directory"),
        "{err}"
    );
    assert!(!err.contains("readonly database"), "{err}");
    assert_eq!(
        err.matches("permission denied").count(),
        1,
        "said once: {err}"
    );
    // `check` still checks, and says why it cannot count the admin's users.
    let out = as_nobody(&s, &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("users unknown (cannot read"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn read_only_commands_create_no_database() {
    let s = Setup::new("firewall: { backend: none }");
    for args in [
        &["list"][..],
        &["list", "--all"],
        &["check"],
        &["admin", "users"],
    ] {
        let out = s.cli(None, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert!(stdout(&s.cli(None, &["list"])).contains("no active bans"));
    assert!(
        !s.path("db").exists(),
        "a read-only command created the state"
    );
}
