//! A [`Plan`] written as `pyfilter.yml`: the defaults at the top, one entry per jail
//! under `rules:`, each note as a comment beside what it concerns.
//!
//! Written by hand rather than serialized, for the comments; every scalar goes through
//! serde_yaml, so a path or a match with YAML's special characters is quoted as it must be,
//! and every comment is one line (`Note::comment`), so no text from fail2ban's files can
//! turn into configuration.

use std::fmt::Write;
use std::path::Path;

use super::{JailPlan, Plan, RuleEntry, one_line};
use crate::duration::format_duration;

/// One YAML scalar for `text`.
fn scalar(text: &str) -> String {
    serde_yaml::to_string(text)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| format!("{text:?}"))
}

/// `plan` as a configuration; `rules_dir` when the rules read are not in the default one.
pub fn yaml(plan: &Plan, rules_dir: Option<&Path>) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# pyfilter.yml from the fail2ban configuration in {}, by `pyfilter import --fail2ban`.",
        one_line(&plan.dir.display().to_string())
    );
    let _ = writeln!(w, "# Files read, in fail2ban's order:");
    for f in &plan.files {
        let _ = writeln!(w, "#   {}", one_line(&f.display().to_string()));
    }
    let _ = writeln!(
        w,
        "# Lines \"# [DEFAULT]: ...\" and \"# jail NAME: ...\" tell what fail2ban did that pyfilter\n\
         # does not, or does otherwise. Check the result: pyfilter -c FILE check"
    );
    if !plan.notes.is_empty() {
        let _ = writeln!(w);
        for n in &plan.notes {
            let _ = writeln!(w, "{}", n.comment());
        }
    }
    let _ = writeln!(w);
    let origin = |w: &mut String, key: &str| {
        if let Some((_, text)) = plan.origins.iter().find(|(k, _)| *k == key) {
            let _ = writeln!(w, "# fail2ban: {}", one_line(text));
        }
    };
    origin(w, "failed_attempts");
    if let Some(n) = plan.failed_attempts {
        let _ = writeln!(w, "failed_attempts: {n}");
    }
    if let Some(d) = plan.request_time {
        let _ = writeln!(w, "request_time: {}", scalar(&format_duration(d)));
    }
    if let Some(b) = plan.ban_time {
        let _ = writeln!(w, "ban_time: {}", scalar(&b.to_string()));
    }
    if let Some(list) = &plan.ignore {
        origin(w, "ignore");
        if list.is_empty() {
            let _ = writeln!(w, "ignore: []");
        } else {
            let _ = writeln!(w, "ignore:");
            for net in list {
                let _ = writeln!(w, "  - {}", scalar(&crate::net::display_net(net)));
            }
        }
    }
    if let Some(inc) = &plan.ban_time_increment {
        origin(w, "ban_time_increment");
        let _ = writeln!(w, "ban_time_increment:");
        let _ = writeln!(w, "  factor: {}", inc.factor);
        let _ = writeln!(w, "  max: {}", scalar(&format_duration(inc.max)));
        let _ = writeln!(w, "  window: {}", scalar(&format_duration(inc.window)));
    }
    if let Some(b) = plan.firewall {
        origin(w, "firewall");
        let _ = writeln!(w, "firewall:\n  backend: {b}");
    }
    if let Some(dir) = rules_dir {
        let _ = writeln!(w, "rules_dir: {}", scalar(&dir.display().to_string()));
    }
    if plan.jails.iter().all(|j| j.entry.is_none()) {
        let _ = writeln!(w, "rules: {{}}");
    } else {
        let _ = writeln!(w, "rules:");
    }
    for jail in &plan.jails {
        write_jail(w, jail);
    }
    if !plan.also_enabled.is_empty() {
        let carried: Vec<&str> = plan
            .jails
            .iter()
            .filter_map(|j| j.entry.as_ref().map(|e| e.rule.as_str()))
            .collect();
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "# pyfilter also runs the rules it enables by default on whichever of their logs exist:"
        );
        for line in wrap(&plan.also_enabled.join(", "), 86) {
            let _ = writeln!(w, "#   {line}");
        }
        if !carried.is_empty() {
            let _ = writeln!(
                w,
                "# To run only the rules above instead:\n# enabled_rules: [{}]",
                carried.join(", ")
            );
        }
    }
    out
}

/// `text` cut at spaces into lines of at most `width` characters (a longer word alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn write_jail(w: &mut String, jail: &JailPlan) {
    let _ = writeln!(w, "  # jail {}", one_line(&jail.jail));
    for n in &jail.notes {
        let _ = writeln!(w, "  {}", n.comment());
    }
    if let Some(e) = &jail.entry {
        write_entry(w, e);
    }
}

fn write_entry(w: &mut String, e: &RuleEntry) {
    let _ = writeln!(w, "  {}:", scalar(&e.rule));
    let _ = writeln!(w, "    enabled: true");
    if let Some(m) = &e.mode {
        let _ = writeln!(w, "    mode: {}", scalar(m));
    }
    if let Some(n) = e.failed_attempts {
        let _ = writeln!(w, "    failed_attempts: {n}");
    }
    if let Some(d) = e.request_time {
        let _ = writeln!(w, "    request_time: {}", scalar(&format_duration(d)));
    }
    if let Some(b) = e.ban_time {
        let _ = writeln!(w, "    ban_time: {}", scalar(&b.to_string()));
    }
    match &e.log_files {
        Some(files) if files.is_empty() => {
            let _ = writeln!(w, "    log_files: []");
        }
        Some(files) => {
            let _ = writeln!(w, "    log_files:");
            for f in files {
                let _ = writeln!(w, "      - {}", scalar(f));
            }
        }
        None => {}
    }
    if let Some(j) = &e.journal {
        let _ = writeln!(w, "    journal:");
        if j.matches.is_empty() {
            let _ = writeln!(w, "      match: []");
        } else {
            let _ = writeln!(w, "      match:");
            for m in &j.matches {
                let _ = writeln!(w, "        - {}", scalar(m));
            }
        }
        if let Some(f) = &j.file {
            let _ = writeln!(w, "      file: {}", scalar(&f.display().to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Note, RuleEntry};
    use super::*;
    use crate::config::JournalSpec;
    use crate::duration::BanTime;

    #[test]
    fn text_from_the_files_stays_in_comments_and_scalars_are_quoted() {
        let plan = Plan {
            dir: "/etc/fail2ban".into(),
            files: vec!["/etc/fail2ban/jail.conf".into()],
            failed_attempts: Some(5),
            request_time: Some(Duration::from_secs(600)),
            ban_time: Some(BanTime::Forever),
            ignore: Some(vec!["::1/128".parse().unwrap()]),
            jails: vec![JailPlan {
                jail: "web\nserver_name: evil".into(),
                entry: Some(RuleEntry {
                    rule: "nginx-http-auth".into(),
                    log_files: Some(vec![
                        "/var/log/nginx/*error.log".into(),
                        "#odd: path".into(),
                    ]),
                    journal: Some(JournalSpec {
                        matches: vec!["_COMM=nginx".into(), "+".into()],
                        file: None,
                    }),
                    ..RuleEntry::default()
                }),
                notes: vec![Note::jail(
                    "web",
                    "port 80\nserver_name: evil2 not carried over",
                )],
            }],
            ..Plan::default()
        };
        let text = yaml(&plan, None);
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert!(v.get("server_name").is_none(), "{text}");
        assert_eq!(v["ban_time"], "forever");
        assert_eq!(v["ignore"][0], "::1");
        let rule = &v["rules"]["nginx-http-auth"];
        assert_eq!(rule["log_files"][0], "/var/log/nginx/*error.log");
        assert_eq!(rule["log_files"][1], "#odd: path");
        assert_eq!(rule["journal"]["match"][1], "+");
        assert!(text.contains("# jail web: port 80 server_name: evil2 not carried over"));
    }
}
