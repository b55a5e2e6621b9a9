//! Progress of long work on a terminal: `scan` draws it on standard error when that is a
//! terminal (here a pseudo-terminal made by `script`), never on standard output, never
//! with `--json`, and never when standard error is not a terminal.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// Runs `shell` under `script`, standard error on a pseudo-terminal; returns what the
/// terminal showed.
fn on_a_terminal(shell: &str) -> String {
    let out = Command::new("script")
        .args(["-q", "-e", "-c", shell, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) must be installed");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// A shell command that feeds `lines` to `scan -` slowly, for about two seconds.
fn slow_scan(s: &Setup, json: bool, out: &std::path::Path) -> String {
    let chunk = s.path("chunk.log");
    let lines: String = (0..2000)
        .map(|i| failed(&format!("192.0.2.{}", i % 200)))
        .collect();
    std::fs::write(&chunk, lines).unwrap();
    format!(
        "for i in $(seq 20); do cat {chunk}; sleep 0.1; done | {BIN} -c {config} scan {json}- > {out}",
        chunk = chunk.display(),
        config = s.config().display(),
        json = if json { "--json " } else { "" },
        out = out.display()
    )
}

#[test]
fn a_long_scan_shows_progress_on_the_terminal_and_nowhere_else() {
    let s = Setup::new("firewall: { backend: none }");
    let out = s.path("out.txt");
    let screen = on_a_terminal(&slow_scan(&s, false, &out));
    assert!(screen.contains("scan -: "), "no progress drawn: {screen:?}");
    assert!(screen.contains(" MB"), "{screen:?}");
    // Wiped at the end: the last thing drawn erases the line.
    assert!(screen.trim_end().ends_with("\x1b[K"), "{screen:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.ends_with("40000 matched, 200 bans, 0 skipped\n"),
        "{text}"
    );
    assert!(!text.contains("scan -:") && !text.contains('\r'), "{text}");
}

#[test]
fn no_progress_with_json_or_without_a_terminal() {
    let s = Setup::new("firewall: { backend: none }");
    let out = s.path("out.json");
    let screen = on_a_terminal(&slow_scan(&s, true, &out));
    assert!(!screen.contains("scan -"), "{screen:?}");
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .ends_with("\"bans\":200}\n")
    );
    // Standard error to a file: no terminal, no progress.
    let err = s.path("err.txt");
    let shell = format!("{} 2> {}", slow_scan(&s, false, &out), err.display());
    let status = Command::new("sh").args(["-c", &shell]).status().unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "");
}
