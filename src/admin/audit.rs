//! The admin's own log: sign-ins (failed ones are what the `pyfilter-admin` rule counts,
//! so pyfilter bans whoever guesses passwords at its admin), sign-outs, password
//! changes, and the bans made in it.
//!
//! Lines look like syslog's, with an RFC 3339 time:
//! `2026-11-26T07:30:12+00:00 pyfilter-admin[812]: failed sign-in from 192.0.2.7 for user "bob"`.
//! The client's address comes before anything the client chose, and what it chose is
//! quoted with control characters escaped, so a user name cannot forge a line.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use chrono::{Local, SecondsFormat};

pub struct Audit {
    path: PathBuf,
}

impl Audit {
    pub fn new(path: PathBuf) -> Audit {
        Audit { path }
    }

    pub fn failed_sign_in(&self, client: IpAddr, user: &str) {
        self.write(&format!(
            "failed sign-in from {client} for user {}",
            quoted(user)
        ));
    }

    pub fn event(&self, client: IpAddr, user: &str, what: &str) {
        self.write(&format!("{what} from {client} by user {}", quoted(user)));
    }

    /// Opened for each line, so that logrotate may move the file away.
    fn write(&self, message: &str) {
        let line = format!(
            "{} pyfilter-admin[{}]: {message}\n",
            Local::now().to_rfc3339_opts(SecondsFormat::Secs, false),
            std::process::id()
        );
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Not world-readable: people type passwords into the user field by mistake.
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            log::error!("admin log {}: {e}", self.path.display());
        }
        log::info!("{}", line.trim_end());
    }
}

/// A client-chosen text, quoted, every control character and quote escaped.
fn quoted(text: &str) -> String {
    let short: String = text.chars().take(64).collect();
    format!("{:?}", short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_name_cannot_break_the_line() {
        assert_eq!(
            quoted("x\" from 10.0.0.1\nfailed sign-in from 10.0.0.2"),
            r#""x\" from 10.0.0.1\nfailed sign-in from 10.0.0.2""#
        );
    }

    #[test]
    fn lines_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::new(dir.path().join("sub/admin.log"));
        audit.failed_sign_in("192.0.2.7".parse().unwrap(), "bob");
        audit.event("192.0.2.8".parse().unwrap(), "alice", "signed in");
        let path = dir.path().join("sub/admin.log");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o007, 0, "not for others: {mode:o}");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with(r#"failed sign-in from 192.0.2.7 for user "bob""#),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("pyfilter-admin["));
    }
}
