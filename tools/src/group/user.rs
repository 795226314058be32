//! `lsim user add`: a user of the group server, added to its user store
//! (salted SCRAM credentials only) with the password read from stdin.
//!
//! Owns the command's flags and what it prints. It must not touch how
//! credentials are kept (`lsim_im::xmpp::users`) or the other commands.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use lsim_im::xmpp::users::UserStore;

/// `lsim user add`.
#[derive(clap::Args)]
pub struct UserAddArgs {
    /// The user name (the JID's local part).
    user: String,
    /// The server's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Read the password from the first line of standard input.
    #[arg(long, required = true)]
    password_stdin: bool,
    /// Replace an existing user's password.
    #[arg(long)]
    replace: bool,
}

/// Adds a user (kept as salted SCRAM credentials only).
pub fn user_add(a: UserAddArgs) -> Result<()> {
    let _ = a.password_stdin;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("empty password");
    }
    let store = UserStore::open(&a.data_dir)?;
    store.add(&a.user, password, a.replace)?;
    println!("added {} to {}", a.user, store.path().display());
    Ok(())
}
