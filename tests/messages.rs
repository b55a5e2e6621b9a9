//! Messages in the administrator's words: counts with the right plural, and one rounding
//! of times, so what `ban` prints is what `list` shows.

mod common;

use common::*;

#[test]
fn the_time_ban_prints_is_the_time_list_shows() {
    let s = Setup::new("firewall: { backend: none }");
    // Whatever the fraction of the second the ban is made at.
    for (i, wait) in [0u64, 250, 500, 750].iter().enumerate() {
        std::thread::sleep(std::time::Duration::from_millis(*wait));
        let ip = format!("192.0.2.{}", i + 1);
        let out = s.cli(None, &["ban", &ip, "--for", "1h"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let printed = stdout(&out);
        let until = printed
            .trim_end()
            .strip_prefix(&format!("banned {ip} until "))
            .unwrap_or_else(|| panic!("{printed}"))
            .to_string();
        let list = stdout(&s.cli(None, &["list"]));
        let row = list.lines().find(|l| l.starts_with(&ip)).unwrap();
        assert!(row.contains(&until), "ban said {until}, list says {row}");
        let again = stdout(&s.cli(None, &["ban", &ip]));
        assert!(
            again.contains(&format!("already banned until {until}")),
            "{again}"
        );
    }
}

#[test]
fn counts_of_one_are_singular() {
    let s = Setup::new("firewall: { backend: none }\nfailed_attempts: 1");
    let out = s.cli(None, &["ban", "192.0.2.1"]);
    assert!(out.status.success());
    assert!(stdout(&s.cli(None, &["list"])).ends_with("\n1 active ban\n"));
    assert!(stdout(&s.cli(None, &["list", "--all"])).ends_with("\n1 ban in history\n"));
    // The shipped pyfilter-admin rule has one pattern.
    let check = stdout(&s.cli(None, &["check"]));
    assert!(
        check.contains("pyfilter-admin (disabled, 1 pattern, 1 attempt within 10m"),
        "{check}"
    );
    assert!(
        !check.contains(" 1 patterns") && !check.contains(" 1 attempts"),
        "{check}"
    );
    let log = s.path("one.log");
    append(&log, &failed("192.0.2.9"));
    let scan = stdout(&s.cli(None, &["scan", log.to_str().unwrap()]));
    assert!(scan.contains("after 1 attempt\n"), "{scan}");
    assert!(
        scan.ends_with("1 line, 1 matched, 1 ban, 0 skipped\n"),
        "{scan}"
    );
}
