//! One file per subcommand. `run` wires the daemon's threads to the decision thread; the
//! others are short-lived: each opens the same store and firewall modules the daemon
//! uses, does its one job and exits. Those that change the firewall (`ban`, `unban`,
//! `flush`) ask the running daemon over its control socket; those that record many bans
//! or lifts (`prune`, `import`) only write the store while it runs, and it applies them.
//! With no daemon, they change the firewall themselves under the state lock (`control`).

pub mod admin;
pub mod ban;
pub mod check;
pub mod flush;
pub mod import;
pub mod import_fail2ban;
pub mod list;
pub mod progress;
pub mod prune;
pub mod run;
pub mod scan;
pub mod show;
pub mod status;
pub mod unban;

use crate::cli::UsageError;
use crate::control::protocol::{Answer, RefusalKind};

/// The daemon's answer when it carried the request out; its refusal as an error
/// otherwise (exit 2 for the asker's mistakes, as when the command checks them itself).
fn accepted(answer: Box<Answer>) -> anyhow::Result<Answer> {
    if answer.ok {
        return Ok(*answer);
    }
    let refusal = answer.error.unwrap_or(crate::control::protocol::Refusal {
        kind: RefusalKind::Failure,
        message: "the daemon refused without saying why".into(),
    });
    match refusal.kind {
        RefusalKind::Usage => Err(UsageError(refusal.message).into()),
        RefusalKind::Failure => Err(anyhow::anyhow!("the daemon: {}", refusal.message)),
    }
}
