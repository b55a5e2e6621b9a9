//! `pyfilter prune`: lift bans whose time is up and drop old history. For servers where
//! the daemon is not running (or from cron as a safety net); the daemon expires bans
//! itself. While it runs, prune only lifts them in the store and the daemon takes them out
//! of the kernel, as it does for any lift recorded by another process; with none, prune
//! does both under the state lock.

use std::process::ExitCode;

use chrono::Utc;
use ipnet::IpNet;

use crate::control::{self, Applier, Paths};
use crate::engine::apply;
use crate::settings::Settings;

pub fn run(settings: &Settings, compact: bool) -> anyhow::Result<ExitCode> {
    let mut store = crate::store::open(settings)?;
    let now = Utc::now();
    // The firewall is only needed when something expired and no daemon runs: a prune
    // with nothing to do, or beside a running daemon, works without root.
    let lifted = if store.due(now)?.is_empty() {
        0
    } else {
        let paths = Paths::beside(&settings.config.sqlite.path);
        if !control::lock::daemon_running(&paths.lock) {
            crate::firewall::check_privilege(&settings.config.firewall)?;
        }
        match control::applier(&paths)? {
            Applier::Daemon => {
                // Read again: the daemon may have lifted some meanwhile.
                let due: Vec<IpNet> = store.due(now)?.iter().map(|b| b.net).collect();
                store.lift_many(&due, now, "expired")?.len()
            }
            Applier::Here(_lock) => {
                let mut firewall = crate::firewall::open(&settings.config.firewall)?;
                firewall.init()?;
                apply::expire_due(store.as_mut(), firewall.as_mut(), now)?.len()
            }
        }
    };
    let dropped = store.purge_history(crate::duration::before(
        now,
        settings.config.history_retention,
    ))?;
    println!(
        "{} lifted, {} dropped",
        crate::words::count(lifted, "expired ban", "expired bans"),
        crate::words::count(dropped, "old history record", "old history records")
    );
    if compact {
        match store.compact()? {
            Some(n) => println!(
                "layout 2: {} rewritten",
                crate::words::count(n, "record", "records")
            ),
            None => anyhow::bail!("--compact is for a Redis store (`store: redis`)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
