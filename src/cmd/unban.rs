//! `pyfilter unban IP`: asks the running daemon, or, with none, unbans here under the
//! state lock.

use std::process::ExitCode;

use crate::cli::UsageError;
use crate::control::protocol::{Request, UnbanAnswer};
use crate::control::{self, Paths, Route};
use crate::engine::apply;
use crate::net::{display_net, parse_net};
use crate::settings::Settings;

pub fn run(settings: &Settings, ip: &str) -> anyhow::Result<ExitCode> {
    let net = parse_net(ip).map_err(|e| UsageError(e.to_string()))?;
    crate::firewall::check_privilege(&settings.config.firewall)?;
    let request = Request::Unban { ip: ip.to_string() };
    let answer = match control::route(&Paths::beside(&settings.config.sqlite.path), &request)? {
        Route::Daemon(answer) => super::accepted(answer)?
            .unban
            .ok_or_else(|| anyhow::anyhow!("the daemon answered an unban without its outcome"))?,
        Route::Here(_lock) => {
            let mut firewall = crate::firewall::open(&settings.config.firewall)?;
            firewall.init()?;
            let mut store = crate::store::open(settings)?;
            let lifted = apply::unban(store.as_mut(), firewall.as_mut(), &net, "unbanned by hand")?;
            UnbanAnswer {
                ip: display_net(&net),
                was_banned: lifted.is_some(),
            }
        }
    };
    if answer.was_banned {
        println!("unbanned {}", answer.ip);
    } else {
        println!("{} was not banned", answer.ip);
    }
    Ok(ExitCode::SUCCESS)
}
