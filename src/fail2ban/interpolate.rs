//! fail2ban's interpolation: `%(name)s` in a value stands for another option's value, read
//! in the section asked about (so `%(__name__)s` in `[DEFAULT]`'s `filter` is each jail's
//! own name), its defaults behind it.
//!
//! Besides Python's `%(name)s` and `%%`, fail2ban reads `%(section/name)s` (another
//! section's option), `%(default/name)s` (the `[DEFAULT]` one, even when the section has
//! its own) and `%(known/name)s` (the value an earlier file gave this section's option);
//! each falls back to the defaults. Ten levels deep at most, as in Python: deeper is a loop.

use std::collections::BTreeSet;

use super::ini::{Location, Value};
use super::layers::Layered;

/// Python's `MAX_INTERPOLATION_DEPTH`.
const MAX_DEPTH: usize = 10;

/// A value that cannot be interpolated: fail2ban skips the jail that needs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: `{key}`: {message}")]
pub struct InterpolationError {
    pub at: Location,
    pub key: String,
    pub message: String,
}

impl Layered {
    /// `key` of `section` (or of the defaults), interpolated. The options the value
    /// referred to, at any depth, are added to `refs`.
    pub fn get(
        &self,
        section: &str,
        key: &str,
        refs: &mut BTreeSet<String>,
    ) -> Result<Option<Value>, InterpolationError> {
        let Some(raw) = self.raw(section, key) else {
            return Ok(None);
        };
        let mut out = String::new();
        self.expand(section, &raw.text, 1, &mut out, refs)
            .map_err(|message| InterpolationError {
                at: raw.at.clone(),
                key: key.to_string(),
                message,
            })?;
        Ok(Some(Value {
            text: out,
            at: raw.at.clone(),
        }))
    }

    fn expand(
        &self,
        section: &str,
        mut rest: &str,
        depth: usize,
        out: &mut String,
        refs: &mut BTreeSet<String>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "more than {MAX_DEPTH} levels of %(...)s: do two options refer to each other?"
            ));
        }
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            if let Some(after) = rest.strip_prefix("%%") {
                out.push('%');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("%(") {
                let name = after
                    .find(')')
                    .filter(|&end| end > 0 && after[end + 1..].starts_with('s'))
                    .map(|end| &after[..end])
                    .ok_or_else(|| {
                        format!("`{}` is not a %(name)s reference", first_words(rest))
                    })?;
                rest = &after[name.len() + 2..];
                let value = self.lookup(section, name).ok_or_else(|| {
                    format!("%({name})s: no option `{name}` in [{section}] or [DEFAULT]")
                })?;
                refs.insert(name.to_lowercase());
                if value.contains('%') {
                    self.expand(section, &value, depth + 1, out, refs)?;
                } else {
                    out.push_str(&value);
                }
            } else {
                return Err(format!(
                    "`%` must be followed by `%` or `(`, not `{}`",
                    first_words(rest)
                ));
            }
        }
        out.push_str(rest);
        Ok(())
    }

    /// The raw value `%(name)s` stands for in `section`.
    fn lookup(&self, section: &str, name: &str) -> Option<String> {
        let lower = name.to_lowercase();
        if lower == "__name__" {
            return Some(section.to_string());
        }
        if let Some(v) = self.raw(section, &lower) {
            return Some(v.text.clone());
        }
        let (sec, opt) = name.split_once('/')?;
        if sec.is_empty()
            || !sec
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            return None;
        }
        let opt = opt.to_lowercase();
        let found = match sec.to_lowercase().as_str() {
            "default" => None,
            "known" => self.known(section, &opt),
            _ => self.section(sec)?.get(&opt),
        };
        found
            .or_else(|| self.defaults.get(&opt))
            .map(|v| v.text.clone())
    }
}

/// The start of `text`, for messages.
fn first_words(text: &str) -> String {
    text.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn layered(files: &[(&str, &str)]) -> (tempfile::TempDir, Layered) {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = d.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let l = Layered::read(d.path(), "jail").unwrap();
        (d, l)
    }

    fn get(l: &Layered, section: &str, key: &str) -> String {
        l.get(section, key, &mut BTreeSet::new())
            .unwrap()
            .unwrap()
            .text
    }

    #[test]
    fn names_resolve_in_the_section_asked_about_with_defaults_behind() {
        let (_d, l) = layered(&[(
            "jail.conf",
            "[DEFAULT]\nmode = normal\nfilter = %(__name__)s[mode=%(mode)s]\nsshd_log = /var/log/auth.log\n\
             [sshd]\nlogpath = %(sshd_log)s\n[postfix]\nmode = more\n[x]\npct = 50%%\n",
        )]);
        assert_eq!(get(&l, "sshd", "filter"), "sshd[mode=normal]");
        assert_eq!(get(&l, "postfix", "filter"), "postfix[mode=more]");
        assert_eq!(get(&l, "sshd", "logpath"), "/var/log/auth.log");
        assert_eq!(get(&l, "x", "pct"), "50%");
        let mut refs = BTreeSet::new();
        l.get("postfix", "filter", &mut refs).unwrap();
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            ["__name__", "mode"],
            "what a value refers to is recorded"
        );
    }

    #[test]
    fn default_known_and_other_section_references() {
        let (_d, l) = layered(&[
            (
                "jail.conf",
                "[DEFAULT]\nbackend = auto\nport = 0:65535\n[sshd]\nbackend = systemd\nport = ssh\n\
                 [paths]\nweb = /var/log/nginx\n",
            ),
            (
                "jail.local",
                "[sshd]\nport = %(known/port)s,2222\nold = %(default/backend)s\n\
                 web = %(paths/web)s/error.log\nmissing = %(paths/nothere)s\n",
            ),
        ]);
        assert_eq!(get(&l, "sshd", "port"), "ssh,2222");
        assert_eq!(get(&l, "sshd", "old"), "auto");
        assert_eq!(get(&l, "sshd", "web"), "/var/log/nginx/error.log");
        assert!(
            l.get("sshd", "missing", &mut BTreeSet::new()).is_err(),
            "no such option anywhere"
        );
        assert_eq!(
            get(&l, "nginx", "port"),
            "0:65535",
            "a jail not written anywhere still has the defaults"
        );
    }

    #[test]
    fn known_falls_back_to_the_default_when_no_earlier_file_set_it() {
        let (_d, l) = layered(&[(
            "jail.local",
            "[DEFAULT]\nignoreip = 127.0.0.1/8\n[sshd]\nignoreip = %(known/ignoreip)s 192.0.2.7\n",
        )]);
        assert_eq!(get(&l, "sshd", "ignoreip"), "127.0.0.1/8 192.0.2.7");
    }

    #[test]
    fn loops_missing_names_and_bad_percents_are_located_errors() {
        let (_d, l) = layered(&[(
            "jail.local",
            "[a]\nx = %(y)s\ny = %(x)s\nz = %(nope)s\nw = 100%\nv = %(open\n",
        )]);
        for (key, line, says) in [
            ("x", 2, "levels"),
            ("z", 4, "no option `nope`"),
            ("w", 5, "must be followed"),
            ("v", 6, "not a %(name)s"),
        ] {
            let e = l.get("a", key, &mut BTreeSet::new()).unwrap_err();
            assert_eq!(e.at.line, line, "{e}");
            assert!(e.message.contains(says), "{e}");
            assert!(e.at.file.ends_with(Path::new("jail.local")));
        }
    }
}
