//! `pyfilter prune`: lift bans whose time is up and drop old history. For servers where
//! the daemon is not running (or from cron as a safety net); the daemon expires bans itself.

use std::process::ExitCode;

use chrono::Utc;

use crate::engine::apply;
use crate::settings::Settings;

pub fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut store = crate::store::open(settings)?;
    let now = Utc::now();
    // The firewall is only needed when something expired: a prune with nothing to do
    // works without root.
    let lifted = if store.due(now)?.is_empty() {
        Vec::new()
    } else {
        let mut firewall = crate::firewall::open(&settings.config.firewall)?;
        firewall.init()?;
        apply::expire_due(store.as_mut(), firewall.as_mut(), now)?
    };
    let dropped = store.purge_history(crate::duration::before(
        now,
        settings.config.history_retention,
    ))?;
    println!(
        "{} lifted, {} dropped",
        crate::words::count(lifted.len(), "expired ban", "expired bans"),
        crate::words::count(dropped, "old history record", "old history records")
    );
    Ok(ExitCode::SUCCESS)
}
