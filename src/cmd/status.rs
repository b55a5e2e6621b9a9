//! `pyfilter status [--json]`: asks the running daemon, over its control socket, what it
//! follows and holds: each log source and its state, the addresses being counted, the
//! bans in force, the firewall, the store and the fleet link. Exit 1 when no daemon runs
//! (or it cannot be asked).

use std::process::ExitCode;

use anyhow::Context;

use crate::control::Paths;
use crate::control::client::ask;
use crate::control::protocol::{Request, Status};
use crate::settings::Settings;
use crate::status::{SourceState, render_sources};

pub fn run(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let paths = Paths::beside(&settings.config.sqlite.path);
    let answer = ask(&paths.socket, &Request::Status)
        .with_context(|| format!("asking the daemon on {}", paths.socket.display()))?;
    let Some(answer) = answer else {
        eprintln!(
            "pyfilter: no daemon runs for {} (nothing answers on {}); start it with `systemctl start pyfilter` or `pyfilter run`",
            settings.config.sqlite.path.display(),
            paths.socket.display()
        );
        return Ok(ExitCode::from(1));
    };
    let answer = super::accepted(Box::new(answer))?;
    let status = answer
        .status
        .context("the daemon answered without its status")?;
    if json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print!("{}", said(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `pyfilter status` prints for people.
fn said(s: &Status) -> String {
    let mut out = format!(
        "pyfilter {} (pid {}), up {}s since {}\n",
        s.version, s.pid, s.uptime_secs, s.started_at
    );
    out.push_str(&format!(
        "bans: {} in force here, {} made from the logs since the start; {} addresses being counted\n",
        s.bans_active, s.bans_made, s.addresses_counted
    ));
    out.push_str(&format!(
        "firewall: {}; store: {} {}",
        s.firewall, s.store, s.store_location
    ));
    if let Some(link) = &s.fleet {
        out.push_str(&format!("; fleet link: {link}"));
    }
    out.push('\n');
    let count = |state| s.sources.iter().filter(|r| r.state == state).count();
    out.push_str(&format!(
        "sources: {} following, {} polling, {} absent, {} failed{}\n",
        count(SourceState::Following),
        count(SourceState::Polling),
        count(SourceState::Absent),
        count(SourceState::Failed),
        if s.inotify {
            ""
        } else {
            " (no inotify instance: every log is polled)"
        }
    ));
    out.push_str(&render_sources(&s.sources));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::SourceStatus;

    #[test]
    fn the_status_says_counts_link_and_every_source() {
        let s = Status {
            pid: 42,
            version: "0.1.0".into(),
            started_at: "2026-12-07T06:00:00Z".into(),
            uptime_secs: 61,
            bans_active: 3,
            addresses_counted: 7,
            bans_made: 2,
            firewall: "iptables".into(),
            store: "redis".into(),
            store_location: "redis://127.0.0.1:6379/0".into(),
            fleet: Some("up".into()),
            inotify: true,
            sources: vec![SourceStatus {
                kind: "file".into(),
                name: "/var/log/secure".into(),
                state: SourceState::Absent,
                why: None,
                rules: vec!["sshd".into()],
                since: "2026-12-07T06:00:00Z".into(),
                position: None,
                last_line: None,
                lines: 0,
                matches: 0,
                cut: 0,
            }],
        };
        let text = said(&s);
        assert!(text.contains("3 in force here, 2 made"), "{text}");
        assert!(text.contains("7 addresses being counted"), "{text}");
        assert!(text.contains("; fleet link: up"), "{text}");
        assert!(
            text.contains("0 following, 0 polling, 1 absent, 0 failed\n"),
            "{text}"
        );
        assert!(
            text.contains("absent    /var/log/secure  rules sshd; followed when it appears"),
            "{text}"
        );
    }
}
