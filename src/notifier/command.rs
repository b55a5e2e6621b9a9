//! A notification as a command: the program runs with its arguments as written (no shell,
//! so nothing from a log line is ever parsed as shell syntax), the ban in `PYFILTER_*`
//! environment variables and on standard input, and is killed, with whatever it started,
//! when it overstays its timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::template::Fields;
use super::{Deliver, Notice, NotifyError};

pub struct Run {
    argv: Vec<String>,
    /// Standard input's template; `None`: the ban's JSON.
    stdin: Option<String>,
    timeout: Duration,
}

impl Run {
    pub fn new(argv: Vec<String>, stdin: Option<String>, timeout: Duration) -> Run {
        Run {
            argv,
            stdin,
            timeout,
        }
    }
}

impl Deliver for Run {
    fn deliver(&mut self, notice: &Notice) -> Result<(), NotifyError> {
        let fields = Fields::of(notice);
        let input = match &self.stdin {
            Some(template) => fields.render(template),
            None => format!("{}\n", notice.json()),
        };
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .envs(fields.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Its complaints go where the daemon's go: the journal.
            .stderr(Stdio::inherit())
            // Its own process group, so a timeout ends what it started too.
            .process_group(0)
            .spawn()
            .map_err(|e| NotifyError::Spawn {
                program: self.argv[0].clone(),
                source: e,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // From another thread: a program that does not read its input must not
            // block this one past the timeout.
            let _ = std::thread::Builder::new()
                .name("notify-stdin".into())
                .spawn(move || {
                    let _ = stdin.write_all(input.as_bytes());
                });
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(NotifyError::Status(status.to_string())),
                Ok(None) if Instant::now() >= deadline => {
                    // SAFETY: signalling the process group this thread just created.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(NotifyError::Timeout(self.timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(NotifyError::Wait(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Change;
    use super::super::testing::notice;
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Run {
        Run::new(
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            None,
            timeout,
        )
    }

    #[test]
    fn the_command_gets_the_ban_in_its_environment_and_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "{{ echo \"$PYFILTER_EVENT $PYFILTER_IP $PYFILTER_RULE\"; cat; }} > {}",
            out.display()
        );
        sh(&script, Duration::from_secs(5))
            .deliver(&notice(Change::Ban, "192.0.2.7"))
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("ban 192.0.2.7 sshd"));
        let json: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(json["ip"], "192.0.2.7");
    }

    #[test]
    fn a_failing_command_is_an_error_and_a_hanging_one_is_killed() {
        let e = sh("exit 3", Duration::from_secs(5))
            .deliver(&notice(Change::Ban, "192.0.2.7"))
            .unwrap_err();
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        let started = Instant::now();
        let e = sh("sleep 30 & sleep 30", Duration::from_millis(300))
            .deliver(&notice(Change::Ban, "192.0.2.7"))
            .unwrap_err();
        assert!(matches!(e, NotifyError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = Run::new(
            vec!["/nonexistent/notify".into()],
            None,
            Duration::from_secs(1),
        )
        .deliver(&notice(Change::Ban, "192.0.2.7"))
        .unwrap_err();
        assert!(
            e.to_string().starts_with("cannot run /nonexistent/notify"),
            "{e}"
        );
    }
}
