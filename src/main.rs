//! pyfilter: follows logs, counts failed attempts per address, bans brute-forcing
//! addresses in the firewall and records the bans. ARCHITECTURE.md maps the code.

use std::process::ExitCode;

use clap::Parser;

use pyfilter::cli::UsageError;
use pyfilter::cli::{Cli, Command};
use pyfilter::cmd;
use pyfilter::config::ConfigError;
use pyfilter::settings::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    // rediss:// needs one process-wide TLS crypto provider; ring is the one built in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !matches!(cli.command, Command::Run { .. }) {
        // `pyfilter list | head` should end quietly, as other Unix tools do. The daemon
        // keeps SIGPIPE ignored: a closed log pipe must not kill it.
        // SAFETY: resetting a signal to its default disposition, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let usage = e
                .chain()
                .any(|c| c.is::<ConfigError>() || c.is::<UsageError>());
            eprintln!("pyfilter: {}", message(&e));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes, each said once: a library error often repeats its cause's
/// text in its own (SQLite's does), and the administrator should read it once.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose, &cli.command) {
        (true, _, _) => "error",
        (false, 0, Command::Run { .. }) => "info",
        // The admin server logs sign-ins and bans as the daemon logs its work.
        (false, 0, Command::Admin(a)) if a.action.is_none() => "info",
        (false, 0, _) => "warn",
        (false, 1, _) => "info",
        (false, 2, _) => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .format_target(false)
        .init();
}

fn dispatch(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Command::Completions { shell } = &cli.command {
        // Needs no configuration: install scripts run it before one exists.
        clap_complete::generate(
            *shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "pyfilter",
            &mut std::io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Run { metrics } = &cli.command {
        // The daemon loads its configuration itself: it keeps compiled only the rules
        // with something to read.
        return cmd::run::run(cli.config.as_deref(), *metrics).map(|()| ExitCode::SUCCESS);
    }
    let settings = Settings::load(cli.config.as_deref())?;
    match &cli.command {
        Command::Run { .. } => unreachable!("run above"),
        Command::Ban(args) => cmd::ban::run(&settings, args),
        Command::Unban { ip } => cmd::unban::run(&settings, ip),
        Command::List { json, all } => cmd::list::run(&settings, *json, *all),
        Command::Show { ip, json } => cmd::show::run(&settings, ip, *json),
        Command::Prune { compact } => cmd::prune::run(&settings, *compact),
        Command::Scan(args) => cmd::scan::run(&settings, args),
        Command::Check { show_regex, json } => {
            cmd::check::run(&settings, show_regex.as_deref(), *json)
        }
        Command::Flush => cmd::flush::run(&settings),
        Command::Status { json } => cmd::status::run(&settings, *json),
        Command::Import(args) => cmd::import::run(&settings, args),
        Command::Admin(args) => cmd::admin::run(settings, args),
        Command::Completions { .. } => unreachable!("handled before loading the configuration"),
    }
}
