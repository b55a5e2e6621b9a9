//! `pyfilter admin [--listen ADDR]`, `admin passwd USER`, `admin token`: the command-line
//! side of the web interface (the interface itself is `crate::admin`).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;

use crate::admin::{self, auth};
use crate::cli::UsageError;
use crate::cli::{AdminAction, AdminArgs};
use crate::settings::Settings;
use crate::store::User;

pub fn run(settings: Settings, args: &AdminArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        None => {
            let options = admin::Options {
                listen: args.listen,
                tls_cert: args.tls_cert.clone(),
                tls_key: args.tls_key.clone(),
            };
            admin::serve(settings, &options)?;
        }
        Some(AdminAction::Passwd { user }) => passwd(&settings, user)?,
        Some(AdminAction::Token { name }) => token(&settings, name)?,
        Some(AdminAction::Users) => users(&settings)?,
        Some(AdminAction::Deluser { user }) => {
            if !crate::store::open_accounts(&settings)?.delete_user(user)? {
                return Err(UsageError(format!("there is no admin user {user}")).into());
            }
            println!("removed the admin user {user}; its sessions are over");
        }
        Some(AdminAction::Revoke { name }) => {
            match crate::store::open_accounts(&settings)?.revoke_tokens(name)? {
                0 => return Err(UsageError(format!("there is no token named {name}")).into()),
                n => println!(
                    "revoked {n} token{} named {name}",
                    if n == 1 { "" } else { "s" }
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn passwd(settings: &Settings, name: &str) -> anyhow::Result<()> {
    auth::check_name(name).map_err(|e| UsageError(e.to_string()))?;
    let password = read_password(name)?;
    let hash = auth::hash(&password).map_err(|e| UsageError(e.to_string()))?;
    let mut accounts = crate::store::open_accounts(settings)?;
    let old = accounts.user(name)?;
    accounts.set_user(&User::with_password(name, hash, old.as_ref(), Utc::now()))?;
    if old.is_some() {
        println!("changed the password of {name}; its open sessions are over");
    } else {
        println!("created the admin user {name}");
    }
    Ok(())
}

/// From the terminal without echo, asked twice; otherwise one line of standard input
/// (for scripts: `printf '%s\n' "$PW" | pyfilter admin passwd alice`).
fn read_password(name: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))
            .context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            return Err(UsageError("the two passwords differ; nothing changed".into()).into());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }
}

fn users(settings: &Settings) -> anyhow::Result<()> {
    let mut accounts = crate::store::open_read_only(settings)?;
    let users = accounts.users()?;
    if users.is_empty() {
        println!("no admin user (create one with `pyfilter admin passwd NAME`)");
    }
    for u in &users {
        println!(
            "user  {}  (password set {})",
            u.name,
            crate::time::human_time(u.changed_at)
        );
    }
    let mut tokens = std::collections::BTreeMap::<String, usize>::new();
    for name in accounts.token_names()? {
        *tokens.entry(name).or_default() += 1;
    }
    for (name, n) in tokens {
        println!(
            "token {name}{}",
            if n > 1 {
                format!(" ({n} tokens)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn token(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let token = auth::token()?;
    let mut accounts = crate::store::open_accounts(settings)?;
    accounts.add_token(&auth::digest(&token), name, Utc::now())?;
    eprintln!(
        "token `{name}` created; it is shown only now. Send it as `Authorization: Bearer TOKEN` to /api/bans and /metrics."
    );
    println!("{token}");
    Ok(())
}
