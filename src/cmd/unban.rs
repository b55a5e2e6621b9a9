//! `pyfilter unban IP`.

use std::process::ExitCode;

use crate::cli::UsageError;
use crate::engine::apply;
use crate::net::{display_net, parse_net};
use crate::settings::Settings;

pub fn run(settings: &Settings, ip: &str) -> anyhow::Result<ExitCode> {
    let net = parse_net(ip).map_err(|e| UsageError(e.to_string()))?;
    let mut firewall = crate::firewall::open(&settings.config.firewall)?;
    firewall.init()?;
    let mut store = crate::store::open(settings)?;
    match apply::unban(store.as_mut(), firewall.as_mut(), &net, "unbanned by hand")? {
        Some(_) => println!("unbanned {}", display_net(&net)),
        None => println!("{} was not banned", display_net(&net)),
    }
    Ok(ExitCode::SUCCESS)
}
