//! `pyfilter import --fail2ban [DIR]`: fail2ban's jail configuration printed as a
//! `pyfilter.yml` on standard output, what cannot be carried over on standard error (as
//! YAML comments, also inside the configuration beside the jail they concern).
//!
//! Nothing is changed: no store, no firewall. The rules the configuration may name are
//! the ones this pyfilter has (shipped, and in the current configuration's rules_dir), and
//! the configuration printed is checked the way `pyfilter check` checks one before it is
//! printed. A `mode` this pyfilter does not accept for a rule becomes a note.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::cli::UsageError;
use crate::config::{Config, ConfigSource};
use crate::fail2ban::{self, KnownRule, Note, Plan};
use crate::settings::Settings;

pub fn run(settings: &Settings, dir: &Path) -> anyhow::Result<ExitCode> {
    let known = known_rules(settings)?;
    let mut plan = fail2ban::plan(dir, &known).map_err(|e| UsageError(e.to_string()))?;
    // The configuration's own rules directory is carried when it holds rules: the rules
    // the import may name are read from it.
    let default_dir = Config::default().rules_dir;
    let rules_dir = (settings.config.rules_dir != default_dir
        && holds_rules(&settings.config.rules_dir))
    .then_some(&*settings.config.rules_dir);
    check_modes(&mut plan, rules_dir);
    let text = fail2ban::yaml(&plan, rules_dir);
    Settings::from_text(Path::new("(imported)"), &text, ConfigSource::Embedded).map_err(|e| {
        anyhow!(
            "the configuration made from {} is refused ({e}); this is a bug, please report it",
            dir.display()
        )
    })?;
    print!("{text}");
    for note in plan.all_notes() {
        eprintln!("{}", note.comment());
    }
    let carried = plan.jails.iter().filter(|j| j.entry.is_some()).count();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    eprintln!(
        "# {} enabled: {carried} carried over, {} not; {}",
        plural(plan.jails.len(), "jail", "jails"),
        plan.jails.len() - carried,
        plural(plan.all_notes().count(), "note", "notes")
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether `dir` has a rule file in it.
fn holds_rules(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x == "yml" || x == "yaml")
        })
    })
}

/// The rules this pyfilter has, with what the import needs of each.
fn known_rules(settings: &Settings) -> anyhow::Result<Vec<KnownRule>> {
    let sources = crate::rule::load_sources(&settings.config.rules_dir)?;
    Ok(sources
        .into_iter()
        .map(|s| KnownRule {
            name: s.file.name,
            enabled: s.file.enabled,
            log_files: s.file.log_files,
            journal: s.file.journal,
            failed_attempts: s.file.failed_attempts.map(|n| n.get()),
            request_time: s.file.request_time,
            ban_time: s.file.ban_time,
        })
        .collect())
}

/// Keeps a rule's `mode` only when this pyfilter accepts it for that rule; otherwise the
/// mode becomes a note, with pyfilter's reason.
fn check_modes(plan: &mut Plan, rules_dir: Option<&Path>) {
    for jail in &mut plan.jails {
        let Some(entry) = jail.entry.as_mut() else {
            continue;
        };
        let Some(mode) = entry.mode.clone() else {
            continue;
        };
        let mut text = String::new();
        if let Some(d) = rules_dir {
            text.push_str(&format!(
                "rules_dir: {}\n",
                yaml_scalar(&d.display().to_string())
            ));
        }
        text.push_str(&format!(
            "rules:\n  {}:\n    mode: {}\n",
            yaml_scalar(&entry.rule),
            yaml_scalar(&mode)
        ));
        if let Err(e) = Settings::from_text(Path::new("(mode)"), &text, ConfigSource::Embedded) {
            let why = if e.message.contains("unknown field `mode`") {
                "this pyfilter has no rule modes".to_string()
            } else {
                format!(
                    "this pyfilter refuses it for rule {} ({})",
                    entry.rule, e.message
                )
            };
            jail.notes.push(Note::jail(
                &jail.jail,
                format!("mode {mode} not carried over: {why}"),
            ));
            entry.mode = None;
        }
    }
}

fn yaml_scalar(text: &str) -> String {
    serde_yaml::to_string(text)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}
