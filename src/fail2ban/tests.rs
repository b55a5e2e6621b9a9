//! The whole conversion on small fail2ban configurations written here: which jails become
//! which rule entries, what reaches the top level, and the notes for the rest.

use std::path::Path;
use std::time::Duration;

use super::*;

fn known() -> Vec<KnownRule> {
    let rule = |name: &str| KnownRule {
        name: name.into(),
        enabled: true,
        log_files: vec![format!("/var/log/{name}.log")],
        journal: None,
        failed_attempts: None,
        request_time: None,
        ban_time: None,
    };
    vec![
        KnownRule {
            journal: Some(JournalSpec {
                matches: vec!["_COMM=sshd".into()],
                file: None,
            }),
            ..rule("sshd")
        },
        rule("postfix"),
        rule("nginx-http-auth"),
        KnownRule {
            failed_attempts: Some(1),
            enabled: false,
            ..rule("apache-badbots")
        },
    ]
}

/// The usual shape: jail.conf's defaults and jails, the files given after it.
const JAIL_CONF: &str = "\
[DEFAULT]
bantime = 10m
findtime = 10m
maxretry = 5
backend = auto
enabled = false
mode = normal
filter = %(__name__)s[mode=%(mode)s]
port = 0:65535
banaction = iptables-multiport
action_ = %(banaction)s[port=\"%(port)s\"]
action_mw = %(action_)s
            sendmail-whois[dest=root]
action = %(action_)s
sshd_log = /var/log/auth.log

[sshd]
port = ssh
logpath = %(sshd_log)s

[postfix]
mode = more
port = smtp
logpath = /var/log/mail.log

[nginx-http-auth]
port = http,https
logpath = /var/log/nginx/*error.log

[apache-badbots]
logpath = /var/log/apache2/*access.log
";

fn plan_of(files: &[(&str, &str)]) -> Plan {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = d.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    plan(d.path(), &known()).unwrap()
}

fn entry<'a>(p: &'a Plan, rule: &str) -> &'a RuleEntry {
    p.jails
        .iter()
        .find_map(|j| j.entry.as_ref().filter(|e| e.rule == rule))
        .unwrap_or_else(|| panic!("no entry for {rule}: {p:#?}"))
}

fn notes(p: &Plan) -> Vec<String> {
    p.all_notes().map(Note::comment).collect()
}

fn has_note(p: &Plan, text: &str) -> bool {
    notes(p).iter().any(|n| n.contains(text))
}

#[test]
fn enabled_jails_become_enabled_rules_with_their_mode_logs_and_own_limits() {
    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        (
            "jail.local",
            "[DEFAULT]\nbantime = 1h\n[sshd]\nenabled = true\nmode = aggressive\n\
             [postfix]\nenabled = true\n[nginx-http-auth]\nenabled = yes\nmaxretry = 3\n",
        ),
        ("jail.d/x.local", "[nginx-http-auth]\nbantime = 1d\n"),
    ]);
    assert_eq!(p.failed_attempts, Some(5));
    assert_eq!(p.request_time, Some(Duration::from_secs(600)));
    assert_eq!(p.ban_time, Some(BanTime::For(Duration::from_secs(3600))));
    assert_eq!(p.jails.len(), 3, "apache-badbots stays off");
    let sshd = entry(&p, "sshd");
    assert_eq!(sshd.mode.as_deref(), Some("aggressive"));
    assert_eq!(
        sshd.log_files.as_deref(),
        Some(&["/var/log/auth.log".to_string()][..])
    );
    assert_eq!(
        (sshd.failed_attempts, sshd.ban_time),
        (None, None),
        "as the defaults"
    );
    assert_eq!(entry(&p, "postfix").mode.as_deref(), Some("more"));
    let nginx = entry(&p, "nginx-http-auth");
    assert_eq!(nginx.mode, None, "normal is the default mode");
    assert_eq!(nginx.failed_attempts, Some(3));
    assert_eq!(
        nginx.ban_time,
        Some(BanTime::For(Duration::from_secs(86400)))
    );
    assert!(has_note(&p, "# jail sshd: port ssh not carried over"));
    assert!(!has_note(&p, "jail sshd: action"), "{:#?}", notes(&p));
    assert_eq!(p.firewall, Some(crate::config::Backend::Iptables));
    assert!(
        p.also_enabled.is_empty(),
        "every rule on by default is a jail"
    );
}

#[test]
fn a_rule_whose_file_sets_its_own_limits_gets_the_jails_written_out() {
    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        ("jail.local", "[apache-badbots]\nenabled = true\n"),
    ]);
    // fail2ban used maxretry 5 for it; pyfilter's rule file says 1, which would win.
    assert_eq!(entry(&p, "apache-badbots").failed_attempts, Some(5));
    assert_eq!(
        p.also_enabled,
        ["sshd", "postfix", "nginx-http-auth"].map(String::from)
    );
}

#[test]
fn the_systemd_backend_reads_the_journal_with_the_jails_match_or_the_rules_own() {
    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        (
            "jail.local",
            "[DEFAULT]\nbackend = systemd\n[sshd]\nenabled = true\n\
             [postfix]\nenabled = true\njournalmatch = _SYSTEMD_UNIT=postfix@-.service + _COMM=smtpd\n\
             [nginx-http-auth]\nenabled = true\nbackend = systemd[journalpath=/srv/journal]\n",
        ),
        (
            "filter.d/nginx-http-auth.conf",
            "[Definition]\njournalmatch = _SYSTEMD_UNIT=nginx.service + _COMM=nginx\n",
        ),
    ]);
    let sshd = entry(&p, "sshd");
    assert_eq!(
        sshd.log_files,
        Some(vec![]),
        "files are not read, the journal is"
    );
    assert_eq!(sshd.journal.as_ref().unwrap().matches, ["_COMM=sshd"]);
    let postfix = entry(&p, "postfix").journal.clone().unwrap();
    assert_eq!(
        postfix.matches,
        ["_SYSTEMD_UNIT=postfix@-.service", "+", "_COMM=smtpd"]
    );
    let nginx = entry(&p, "nginx-http-auth").journal.clone().unwrap();
    assert_eq!(
        nginx.matches,
        ["_SYSTEMD_UNIT=nginx.service", "+", "_COMM=nginx"]
    );
    assert_eq!(nginx.file.as_deref(), Some(Path::new("/srv/journal")));
}

#[test]
fn what_cannot_be_carried_is_a_note_never_silence() {
    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        (
            "jail.local",
            "[DEFAULT]
ignoreip = 127.0.0.1/8 192.0.2.0/24 gw.example.org
[sshd]
enabled = true
action = %(action_mw)s
  abuseipdb[abuseipdb_apikey=x]
usedns = yes
protocol = udp
frobnicate = 7
[myapp]
enabled = true
filter = myapp
logpath = /var/log/myapp.log
action = %(action_mw)s
[mailonly]
enabled = true
filter = postfix
action = sendmail-whois
[broken]
enabled = true
filter = nginx-http-auth
logpath = %(nowhere)s
",
        ),
    ]);
    for text in [
        "# [DEFAULT]: ignoreip gw.example.org not carried over: a host name",
        "# jail sshd: action sendmail-whois not carried over: pyfilter sends no mail",
        "# jail sshd: action abuseipdb not carried over: pyfilter reports bans to no outside service",
        "# jail sshd: usedns = yes not carried over",
        "# jail sshd: protocol udp not carried over",
        "# jail sshd: frobnicate = 7 not carried over: not a jail setting pyfilter knows",
        "# jail myapp: filter myapp not carried over: pyfilter has no rule of that name",
        "# jail myapp: action sendmail-whois not carried over",
        "# jail mailonly: not carried over: none of its actions bans (sendmail-whois)",
        "# jail broken: not carried over: fail2ban cannot read it either:",
        "jail.local:22: `logpath`",
    ] {
        assert!(has_note(&p, text), "no note {text:?} in {:#?}", notes(&p));
    }
    assert!(
        !has_note(&p, "abuseipdb_apikey"),
        "an action's parameter is covered by the action's note"
    );
    let carried: Vec<&str> = p
        .jails
        .iter()
        .filter_map(|j| j.entry.as_ref().map(|e| e.rule.as_str()))
        .collect();
    assert_eq!(carried, ["sshd"]);
    let ignore: Vec<String> = p.ignore.unwrap().iter().map(|n| n.to_string()).collect();
    assert_eq!(ignore, ["127.0.0.0/8", "192.0.2.0/24", "::1/128"]);
}

#[test]
fn a_second_jail_on_the_same_filter_is_noted_not_merged() {
    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        (
            "jail.local",
            "[postfix]\nenabled = true\n[postfix-sasl]\nenabled = true\nfilter = postfix[mode=auth]\nlogpath = /var/log/mail.log\n",
        ),
    ]);
    assert_eq!(entry(&p, "postfix").mode.as_deref(), Some("more"));
    assert!(has_note(
        &p,
        "# jail postfix-sasl: not carried over: its filter `postfix` is also jail postfix's"
    ));
}

#[test]
fn bantime_increment_and_recidive_become_ban_time_increment() {
    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        ("fail2ban.conf", "[Definition]\ndbpurgeage = 3d\n"),
        (
            "jail.local",
            "[DEFAULT]\nbantime = 1h\nbantime.increment = true\nbantime.maxtime = 2w\nbantime.overalljails = true\n",
        ),
    ]);
    let inc = p.ban_time_increment.unwrap();
    assert_eq!(inc.factor, 2.0, "fail2ban doubles a repeat ban");
    assert_eq!(inc.max, Duration::from_secs(14 * 86400));
    assert_eq!(
        inc.window,
        Duration::from_secs(3 * 86400),
        "from dbpurgeage"
    );

    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        (
            "jail.local",
            "[DEFAULT]\nbantime.increment = true\nbantime.factor = 3\n",
        ),
    ]);
    let inc = p.ban_time_increment.unwrap();
    assert_eq!(
        (inc.factor, inc.max),
        (6.0, Duration::from_secs(30 * 86400))
    );
    assert!(has_note(&p, "bantime.factor 3"));
    assert!(has_note(&p, "no bantime.maxtime"));
    assert!(has_note(&p, "bantime.overalljails is off"));

    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        (
            "jail.local",
            "[recidive]\nenabled = true\nlogpath = /var/log/fail2ban.log\nbantime = 1w\nfindtime = 1d\n",
        ),
    ]);
    let inc = p.ban_time_increment.unwrap();
    assert_eq!(
        (inc.factor, inc.max, inc.window),
        (
            2.0,
            Duration::from_secs(7 * 86400),
            Duration::from_secs(86400)
        )
    );
    assert!(p.jails[0].entry.is_none());
    assert!(has_note(
        &p,
        "# jail recidive: carried over as ban_time_increment"
    ));
}

#[test]
fn times_in_fail2ban_syntax_and_forever() {
    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        (
            "jail.local",
            "[DEFAULT]\nbantime = -1\nfindtime = 1d 2h\n[sshd]\nenabled = true\nbantime = 2*3600\nfindtime = 1h30m\nmaxretry = many\n",
        ),
    ]);
    assert_eq!(p.ban_time, Some(BanTime::Forever));
    assert_eq!(p.request_time, Some(Duration::from_secs(93_600)));
    let sshd = entry(&p, "sshd");
    assert_eq!(sshd.ban_time, Some(BanTime::For(Duration::from_secs(7200))));
    assert_eq!(sshd.request_time, Some(Duration::from_secs(5400)));
    assert!(has_note(&p, "maxretry = many is not a whole number"));
}

#[test]
fn the_printed_yaml_is_the_plan() {
    let p = plan_of(&[
        ("jail.conf", JAIL_CONF),
        (
            "jail.local",
            "[DEFAULT]\nignoreip = 192.0.2.1\n[sshd]\nenabled = true\nmode = aggressive\nmaxretry = 3\n[myapp]\nenabled = true\nfilter = myapp\n",
        ),
    ]);
    let text = yaml(&p, None);
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(v["failed_attempts"], 5);
    assert_eq!(v["request_time"], "10m");
    assert_eq!(v["ban_time"], "10m");
    assert_eq!(v["ignore"][0], "192.0.2.1");
    assert_eq!(v["firewall"]["backend"], "iptables");
    let sshd = &v["rules"]["sshd"];
    assert_eq!(sshd["enabled"], true);
    assert_eq!(sshd["mode"], "aggressive");
    assert_eq!(sshd["failed_attempts"], 3);
    assert_eq!(sshd["log_files"][0], "/var/log/auth.log");
    assert!(v["rules"].get("myapp").is_none());
    assert!(
        text.contains("  # jail myapp: filter myapp not carried over"),
        "{text}"
    );
    assert!(text.contains("# enabled_rules: [sshd]"), "{text}");
}
