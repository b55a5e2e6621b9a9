//! `pyfilter flush`: remove pyfilter's bans from the firewall. The store keeps them; the
//! next `pyfilter run` puts them back. With a daemon running, the daemon flushes (and
//! keeps its structures, empty, for the bans it makes next); with none, the chain and
//! jumps (sets, table) go too, under the state lock.

use std::process::ExitCode;

use crate::control::protocol::Request;
use crate::control::{self, Paths, Route};
use crate::settings::Settings;

pub fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    crate::firewall::check_privilege(&settings.config.firewall)?;
    let name = match control::route(
        &Paths::beside(&settings.config.sqlite.path),
        &Request::Flush,
    )? {
        Route::Daemon(answer) => {
            super::accepted(answer)?
                .flush
                .ok_or_else(|| anyhow::anyhow!("the daemon answered a flush without its outcome"))?
                .firewall
        }
        Route::Here(_lock) => {
            let mut firewall = crate::firewall::open(&settings.config.firewall)?;
            firewall.flush()?;
            firewall.name().to_string()
        }
    };
    println!("removed pyfilter's rules from the {name} firewall");
    Ok(ExitCode::SUCCESS)
}
