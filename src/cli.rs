//! The command line: subcommands and options, the contract users and scripts rely on
//! (documented in `man/pyfilter.1`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Protects a server from brute force: follows logs, counts failed attempts per address,
/// bans offenders in the firewall and remembers the bans.
#[derive(Debug, Parser)]
#[command(name = "pyfilter", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: /etc/pyfilter/pyfilter.yml, else the embedded default]
    #[arg(short, long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (Ctrl-C or SIGTERM stops it, SIGHUP reloads).
    Run {
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9179).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
    },
    /// Ban an address or CIDR block now.
    Ban(BanArgs),
    /// Lift the ban of an address or CIDR block.
    Unban {
        /// Address or CIDR block.
        ip: String,
    },
    /// Show active bans (or the whole history with --all).
    List {
        /// JSON Lines, one ban a line.
        #[arg(long)]
        json: bool,
        /// Include lifted bans.
        #[arg(long)]
        all: bool,
    },
    /// Why an address or block is banned, or is not: its bans here and in the fleet with
    /// the log line that tipped each, whether the firewall holds it now, its counts per
    /// rule, the ignore list, and how long a next ban would last.
    Show {
        /// Address or CIDR block.
        ip: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Lift bans whose time is up and drop history past history_retention.
    Prune {
        /// With Redis: rewrite a store written before layout 2 into it (a third of the
        /// memory). Run it once every server of the fleet runs this version: older ones
        /// cannot read layout 2.
        #[arg(long)]
        compact: bool,
    },
    /// Dry run of the whole pipeline over files; firewall and store untouched.
    Scan(ScanArgs),
    /// Validate the configuration and rules and print what would run.
    Check {
        /// Print the one regular expression a rule's patterns compile to, and nothing else.
        #[arg(long, value_name = "RULE")]
        show_regex: Option<String>,
        /// The same content as one JSON object.
        #[arg(long, conflicts_with = "show_regex")]
        json: bool,
    },
    /// What the running daemon follows (each source and its state), counts, bans,
    /// firewall, store and fleet link; exit 1 when no daemon runs.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove everything pyfilter put in the firewall (its chain and jumps), nothing else.
    Flush,
    /// Bring the bans of an existing PyFilter installation into this store (idempotent), or
    /// turn a fail2ban configuration into a pyfilter.yml (--fail2ban).
    Import(ImportArgs),
    /// Serve the web interface (`admin passwd USER` and `admin token` manage access).
    Admin(AdminArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("from").required(true).multiple(true))]
pub struct ImportArgs {
    /// PyFilter's SQLite database.
    #[arg(long, value_name = "PATH", group = "from")]
    pub pyfilter_sqlite: Option<PathBuf>,
    /// PyFilter's Redis (its per-address hashes).
    #[arg(long, value_name = "URL", group = "from")]
    pub pyfilter_redis: Option<String>,
    /// Print a pyfilter.yml made from fail2ban's jail configuration in DIR (what cannot
    /// be carried over is listed on standard error); nothing is changed.
    #[arg(
        long,
        value_name = "DIR",
        num_args = 0..=1,
        default_missing_value = "/etc/fail2ban",
        group = "from",
        conflicts_with_all = ["pyfilter_sqlite", "pyfilter_redis", "duration", "no_firewall"]
    )]
    pub fail2ban: Option<PathBuf>,
    /// How long imported bans last from now [default: forever, as in PyFilter]
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Only record them, without root: a running daemon puts them in the firewall as it
    /// does any recorded ban; a stopped one at its next start.
    #[arg(long)]
    pub no_firewall: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub action: Option<AdminAction>,
    /// Address and port to listen on [default: admin.listen, 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create a user or change its password (read from the terminal, or one line of
    /// standard input); its open sessions end.
    Passwd {
        /// 1 to 64 letters, digits and . _ @ -
        user: String,
    },
    /// Create a bearer token for /api/bans and /metrics; it is printed once.
    Token {
        /// What the token is for, kept with it.
        #[arg(long, default_value = "api")]
        name: String,
    },
    /// List the admin's users and the names of its tokens.
    Users,
    /// Remove a user; its open sessions end at once.
    Deluser { user: String },
    /// Revoke every token created with this name.
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub struct BanArgs {
    /// Address or CIDR block (192.0.2.1, 2001:db8::1, 198.51.100.0/24).
    pub ip: String,
    /// How long (e.g. 30m, 12h, 7d, forever) [default: the configured ban_time]
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why, recorded with the ban.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Only this rule (it may be disabled in the configuration).
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// JSON Lines: one object per match and ban, then a summary.
    #[arg(long)]
    pub json: bool,
    /// Log files to read; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// A mistake in what the user typed: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
