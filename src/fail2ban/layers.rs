//! fail2ban's jail configuration as fail2ban layers it: which files, in which order, and
//! how each one's sections merge over the earlier ones'.
//!
//! The order is fail2ban's (its config reader, and jail.conf(5)): `jail.conf`, then
//! `jail.d/*.conf` in alphabetical order, then `jail.local`, then `jail.d/*.local` in
//! alphabetical order; a later value wins. Each file brings its `[INCLUDES]`: the files of
//! `before` are read just before it and those of `after` just after it (paths relative to
//! the including file, each followed by its `.local` when there is one; a file already on
//! the way is not read again). When a later file sets a key a section had, the earlier
//! value is kept in `KNOWN/<section>`, for `%(known/key)s`. A section named `name?cond`
//! adds its keys to `name` as `key?cond`, as fail2ban does.

use std::path::{Path, PathBuf};

use super::Fail2banError;
use super::ini::{self, IniFile, Options, Value};

/// The merged configuration: defaults and sections (`INCLUDES` and `KNOWN/...` among
/// them), with the files read in the order they were read.
#[derive(Debug, Clone, Default)]
pub struct Layered {
    pub files: Vec<PathBuf>,
    pub defaults: Options,
    sections: Vec<(String, Options)>,
}

const INCLUDES: &str = "INCLUDES";
const KNOWN: &str = "KNOWN/";

impl Layered {
    /// Reads `BASE.conf`, `BASE.d/*.conf`, `BASE.local` and `BASE.d/*.local` in `dir`
    /// (`jail` in `/etc/fail2ban`, or `sshd` in `/etc/fail2ban/filter.d`), with their
    /// includes. None of them there is no error: `files` is then empty.
    pub fn read(dir: &Path, base: &str) -> Result<Layered, Fail2banError> {
        if !dir.is_dir() {
            return Err(Fail2banError::NoDirectory(dir.to_path_buf()));
        }
        let d = dir.join(format!("{base}.d"));
        let mut top = vec![dir.join(format!("{base}.conf"))];
        top.extend(sorted_in(&d, "conf")?);
        top.push(dir.join(format!("{base}.local")));
        top.extend(sorted_in(&d, "local")?);
        let top: Vec<PathBuf> = top.into_iter().filter(|p| p.is_file()).collect();
        let mut order = Vec::new();
        for file in with_locals(&top) {
            includes(&file, &mut Vec::new(), &mut order)?;
        }
        let mut layered = Layered::default();
        for (path, file) in order {
            layered.merge(file);
            layered.files.push(path);
        }
        Ok(layered)
    }

    fn merge(&mut self, file: IniFile) {
        for (key, value) in file.defaults.iter() {
            self.defaults.set(key, value.clone());
        }
        for (name, options) in file.sections {
            let (name, options) = match name.split_once('?') {
                Some((base, cond))
                    if !base.is_empty()
                        && base.chars().all(|c| c.is_alphanumeric() || c == '_') =>
                {
                    let mut renamed = Options::default();
                    for (k, v) in options.iter() {
                        renamed.set(&format!("{k}?{cond}"), v.clone());
                    }
                    (base.to_string(), renamed)
                }
                _ => (name, options),
            };
            let mut known = Vec::new();
            {
                let section = self.section_mut(&name);
                for (k, v) in options.iter() {
                    if let Some(old) = section.set(k, v.clone()) {
                        known.push((k.to_string(), old));
                    }
                }
            }
            if !known.is_empty() {
                let previous = self.section_mut(&format!("{KNOWN}{name}"));
                for (k, v) in known {
                    previous.set(&k, v);
                }
            }
        }
    }

    fn section_mut(&mut self, name: &str) -> &mut Options {
        let at = match self.sections.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.sections.push((name.to_string(), Options::default()));
                self.sections.len() - 1
            }
        };
        &mut self.sections[at].1
    }

    /// A section's own options (not the defaults).
    pub fn section(&self, name: &str) -> Option<&Options> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
    }

    /// The value an earlier file gave `key` in `section`, before a later one changed it.
    pub fn known(&self, section: &str, key: &str) -> Option<&Value> {
        self.section(&format!("{KNOWN}{section}"))?.get(key)
    }

    /// The jails: every section but `INCLUDES` and the `KNOWN/` records, in the order
    /// they first appeared.
    pub fn jails(&self) -> impl Iterator<Item = &str> {
        self.sections
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != INCLUDES && !n.starts_with(KNOWN))
    }

    /// `key` in `section`, or in the defaults: the raw text, before interpolation.
    pub fn raw(&self, section: &str, key: &str) -> Option<&Value> {
        self.section(section)
            .and_then(|o| o.get(key))
            .or_else(|| self.defaults.get(key))
    }

    /// Adds a default, as fail2ban adds `fail2ban_version` and `fail2ban_confpath` before
    /// reading the jails.
    pub fn add_default(&mut self, key: &str, value: Value) {
        self.defaults.set(key, value);
    }
}

/// The files of `dir` ending in `.ext`, sorted by name (fail2ban's `sorted(glob(...))`;
/// like a glob, names starting with `.` are left out).
fn sorted_in(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, Fail2banError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Fail2banError::Read {
                file: dir.to_path_buf(),
                source: e,
            });
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Fail2banError::Read {
            file: dir.to_path_buf(),
            source: e,
        })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && path.extension().is_some_and(|e| e == ext) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Each file followed by its `.local`, when that exists and is not listed already.
fn with_locals(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in files {
        out.push(f.clone());
        let local = f.with_extension("local");
        if !files.contains(&local) && local.is_file() {
            out.push(local);
        }
    }
    out
}

/// Appends to `order` the files `file` brings, itself among them: its `before` includes,
/// itself, its `after` includes, recursively. `chain` holds the files on the way here.
fn includes(
    file: &Path,
    chain: &mut Vec<PathBuf>,
    order: &mut Vec<(PathBuf, IniFile)>,
) -> Result<(), Fail2banError> {
    let text = match std::fs::read(file) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
            Fail2banError::Syntax(ini::SyntaxError {
                file: file.to_path_buf(),
                line: 1,
                message: "not UTF-8 text".into(),
            })
        })?,
        // An include that is not there is skipped, as fail2ban does (paths-overrides.local).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Fail2banError::Read {
                file: file.to_path_buf(),
                source: e,
            });
        }
    };
    let parsed = ini::parse(file, &text).map_err(Fail2banError::Syntax)?;
    let dir = file.parent().unwrap_or(Path::new("/"));
    let named = |key: &str| -> Vec<PathBuf> {
        parsed
            .section(INCLUDES)
            .and_then(|o| o.get(key))
            .map(|v| {
                v.text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| dir.join(l))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (named("before"), named("after"));
    chain.push(file.to_path_buf());
    for inc in with_locals(&before) {
        if !chain.contains(&inc) {
            includes(&inc, chain, order)?;
        }
    }
    order.push((file.to_path_buf(), parsed));
    for inc in with_locals(&after) {
        if !chain.contains(&inc) {
            includes(&inc, chain, order)?;
        }
    }
    chain.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn text<'a>(l: &'a Layered, section: &str, key: &str) -> &'a str {
        &l.raw(section, key).unwrap().text
    }

    #[test]
    fn conf_then_d_conf_then_local_then_d_local_each_alphabetically() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        write(
            p,
            "jail.conf",
            "[DEFAULT]\nbantime = 1\n[sshd]\nport = ssh\n",
        );
        write(p, "jail.d/b.conf", "[DEFAULT]\nbantime = 3\n");
        write(p, "jail.d/a.conf", "[DEFAULT]\nbantime = 2\nfindtime = 2\n");
        write(p, "jail.local", "[DEFAULT]\nbantime = 4\nfindtime = 4\n");
        write(p, "jail.d/z.local", "[sshd]\nport = 2222\n");
        write(p, "jail.d/y.local", "[DEFAULT]\nfindtime = 5\n");
        write(p, "jail.d/.hidden.local", "[DEFAULT]\nbantime = 9\n");
        write(p, "jail.d/notes.txt", "not a config file\n");
        let l = Layered::read(p, "jail").unwrap();
        let names: Vec<String> = l
            .files
            .iter()
            .map(|f| f.strip_prefix(p).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "jail.conf",
                "jail.d/a.conf",
                "jail.d/b.conf",
                "jail.local",
                "jail.d/y.local",
                "jail.d/z.local"
            ]
        );
        assert_eq!(
            text(&l, "sshd", "bantime"),
            "4",
            "jail.local over jail.d/*.conf"
        );
        assert_eq!(text(&l, "sshd", "findtime"), "5", "jail.d/*.local last");
        assert_eq!(text(&l, "sshd", "port"), "2222");
        assert_eq!(l.known("sshd", "port").unwrap().text, "ssh");
        assert_eq!(l.jails().collect::<Vec<_>>(), ["sshd"]);
    }

    #[test]
    fn includes_come_before_and_after_with_their_locals_and_loops_stop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        write(
            p,
            "jail.conf",
            "[INCLUDES]\nbefore = paths-debian.conf\n[DEFAULT]\nlog = %(sshd_log)s\n[sshd]\nenabled = false\n",
        );
        write(
            p,
            "paths-debian.conf",
            "[INCLUDES]\nbefore = paths-common.conf\nafter = paths-overrides.local\n[DEFAULT]\nsshd_log = /debian\n",
        );
        write(
            p,
            "paths-common.conf",
            "[INCLUDES]\nbefore = paths-debian.conf\n[DEFAULT]\nsshd_log = /common\nother = 1\n",
        );
        write(p, "paths-common.local", "[DEFAULT]\nother = 2\n");
        write(
            p,
            "paths-overrides.local",
            "[DEFAULT]\nsshd_log = /override\n",
        );
        let l = Layered::read(p, "jail").unwrap();
        let names: Vec<String> = l
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "paths-common.conf",
                "paths-common.local",
                "paths-debian.conf",
                "paths-overrides.local",
                "jail.conf"
            ]
        );
        assert_eq!(text(&l, "sshd", "sshd_log"), "/override");
        assert_eq!(text(&l, "sshd", "other"), "2");
        assert_eq!(
            l.jails().collect::<Vec<_>>(),
            ["sshd"],
            "INCLUDES is no jail"
        );
    }

    #[test]
    fn conditional_sections_add_conditional_keys() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "jail.local",
            "[sshd]\nport = ssh\n[sshd?family=inet6]\nport = 22\n",
        );
        let l = Layered::read(d.path(), "jail").unwrap();
        assert_eq!(text(&l, "sshd", "port?family=inet6"), "22");
        assert_eq!(text(&l, "sshd", "port"), "ssh");
    }

    #[test]
    fn a_missing_directory_and_a_bad_file_are_errors_and_no_file_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            Layered::read(&d.path().join("nope"), "jail"),
            Err(Fail2banError::NoDirectory(_))
        ));
        assert!(Layered::read(d.path(), "jail").unwrap().files.is_empty());
        write(
            d.path(),
            "jail.local",
            "[sshd]\nenabled = true\nenabled = false\n",
        );
        let e = Layered::read(d.path(), "jail").unwrap_err();
        assert!(e.to_string().contains("jail.local:3:"), "{e}");
    }
}
