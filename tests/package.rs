//! The Debian package (`scripts/package`), built from the binary under test: lintian finds
//! no error, and it installs, runs, is removed and purged with dpkg, inside a throwaway
//! root (`dpkg --root` with its own database, maintainer scripts honouring DPKG_ROOT), so
//! the machine itself is never touched and no daemon is ever started.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs dpkg-dev and lintian)"))
}

/// dpkg acting on the throwaway root only.
fn dpkg(root: &Path, args: &[&str]) -> Output {
    let root_arg = format!("--root={}", root.display());
    let admin = format!("--admindir={}", root.join("var/lib/dpkg").display());
    let mut all = vec![
        root_arg.as_str(),
        admin.as_str(),
        // The maintainer scripts run here with DPKG_ROOT set, rather than chrooted into
        // a root that has no shell; dependencies are the machine's, not the root's.
        "--force-script-chrootless",
        "--force-depends",
        "--log=/dev/null",
    ];
    all.extend_from_slice(args);
    let out = run("dpkg", &all);
    assert!(out.status.success(), "dpkg {args:?}: {}", stderr(&out));
    out
}

/// Every path under `root`, relative to it, but dpkg's own database.
fn left_in(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == "var/lib/dpkg" {
                continue;
            }
            if path.is_dir() && !path.is_symlink() {
                stack.push(path.clone());
            }
            found.push(rel);
        }
    }
    found.sort();
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_package_passes_lintian_installs_checks_and_purges_to_nothing() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(repo().join("scripts/package"))
        .args(["--binary", BIN, "--fast", "--out"])
        .arg(work.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/package: {}", stderr(&out));
    let deb = PathBuf::from(stdout(&out).lines().last().unwrap());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("pyfilter_{version}_")),
        "{}",
        deb.display()
    );

    let deb_arg = deb.to_str().unwrap();
    let lintian = run("lintian", &["--fail-on", "error", deb_arg]);
    assert!(
        lintian.status.success() && !stdout(&lintian).contains("E: "),
        "lintian: {}{}",
        stdout(&lintian),
        stderr(&lintian)
    );

    let root = work.path().join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(file), "").unwrap();
    }

    // Install.
    dpkg(&root, &["-i", deb_arg]);
    let installed = root.join("usr/bin/pyfilter");
    for file in [
        "usr/bin/pyfilter",
        "usr/share/man/man1/pyfilter.1.gz",
        "usr/share/man/man5/pyfilter.yml.5.gz",
        "usr/share/man/man5/pyfilter-rules.5.gz",
        "usr/share/bash-completion/completions/pyfilter",
        "usr/share/zsh/vendor-completions/_pyfilter",
        "usr/share/fish/vendor_completions.d/pyfilter.fish",
        "etc/pyfilter/pyfilter.yml",
    ] {
        assert!(root.join(file).is_file(), "{file} installed");
    }
    let units: Vec<String> = left_in(&root)
        .into_iter()
        .filter(|p| p.ends_with(".service") || p.ends_with(".timer"))
        .collect();
    assert_eq!(units.len(), 4, "{units:?}");
    for unit in &units {
        let text = std::fs::read_to_string(root.join(unit)).unwrap();
        if unit.ends_with(".service") {
            assert!(
                text.contains("ExecStart=/usr/bin/pyfilter "),
                "{unit} runs the packaged binary"
            );
        }
        assert!(!text.contains("/usr/local/bin/pyfilter"), "{unit}");
    }
    assert_eq!(
        mode(&root.join("var/lib/pyfilter")),
        0o2770,
        "the state directory: root and the admin's group, setgid, nothing for others"
    );
    let conffiles = run(
        "dpkg-query",
        &[
            &format!("--admindir={}", root.join("var/lib/dpkg").display()),
            "-W",
            "-f=${Conffiles}",
            "pyfilter",
        ],
    );
    assert!(
        stdout(&conffiles).contains("/etc/pyfilter/pyfilter.yml "),
        "the configuration is a conffile: {}",
        stdout(&conffiles)
    );

    // It runs, on the configuration it shipped.
    let check = Command::new(&installed)
        .arg("-c")
        .arg(root.join("etc/pyfilter/pyfilter.yml"))
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(check.status.success(), "pyfilter check: {}", stderr(&check));
    assert!(
        stdout(&check).ends_with("configuration OK\n"),
        "{}",
        stdout(&check)
    );

    // What the daemon and the administrator would leave: a database, an edited config.
    std::fs::write(root.join("var/lib/pyfilter/pyfilter.db"), "bans").unwrap();
    let conf = root.join("etc/pyfilter/pyfilter.yml");
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited.push_str("\n# edited by the administrator\n");
    std::fs::write(&conf, &edited).unwrap();

    // Remove: the program goes, the configuration and the bans stay.
    dpkg(&root, &["-r", "pyfilter"]);
    assert!(!installed.exists(), "the binary is removed");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    assert!(root.join("var/lib/pyfilter/pyfilter.db").exists());

    // Purge: nothing is left but dpkg's own database.
    dpkg(&root, &["-P", "pyfilter"]);
    let left: Vec<String> = left_in(&root)
        .into_iter()
        .filter(|p| !matches!(p.as_str(), "var" | "var/lib"))
        .collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
}
