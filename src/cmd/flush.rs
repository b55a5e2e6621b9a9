//! `pyfilter flush`: remove pyfilter's chain and jumps from the firewall. The store keeps
//! its bans; the next `pyfilter run` puts them back.

use std::process::ExitCode;

use crate::settings::Settings;

pub fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut firewall = crate::firewall::open(&settings.config.firewall)?;
    firewall.flush()?;
    println!(
        "removed pyfilter's rules from the {} firewall",
        firewall.name()
    );
    Ok(ExitCode::SUCCESS)
}
