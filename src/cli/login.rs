//! `flotilla login [SERVER]` and `flotilla logout [SERVER]`: registry credentials in Docker's
//! config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), shared with `docker`.
//! Login checks the credentials against the registry before saving them; the password comes from
//! standard input (`--password-stdin`), `-p`, or a no-echo prompt on a terminal.

use std::io::{BufRead, IsTerminal, Read, Write};

use clap::Args;

use super::{EngineArgs, out, warn};
use crate::engine::config::DaemonConfig;
use crate::image::credentials::{self, Server};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry (`host[:port]`; default: Docker Hub)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
    /// User name
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users of this machine: prefer --password-stdin); also `-p`
    /// after the command, as with Docker
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry (`host[:port]`; default: Docker Hub)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

fn write(text: &str) -> Result<(), String> {
    out(text).map_err(|e| format!("error: cannot write output: {e}"))
}

/// A line typed at the terminal after `prompt`, shown or (for passwords) not echoed.
fn prompt(prompt: &str, echo: bool) -> Result<String, String> {
    let failed = |e: std::io::Error| format!("error: read from the terminal: {e}");
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(failed)?;
    tty.write_all(prompt.as_bytes()).map_err(failed)?;
    tty.flush().map_err(failed)?;
    let saved = if echo {
        None
    } else {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        let saved = tcgetattr(&tty).map_err(|e| failed(e.into()))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&tty, SetArg::TCSANOW, &quiet).map_err(|e| failed(e.into()))?;
        Some(saved)
    };
    let mut line = String::new();
    let result = std::io::BufReader::new(&tty).read_line(&mut line);
    if let Some(saved) = saved {
        let _ = nix::sys::termios::tcsetattr(&tty, nix::sys::termios::SetArg::TCSANOW, &saved);
    }
    result.map_err(failed)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs `flotilla login`.
pub fn login(engine: &EngineArgs, args: &LoginArgs) -> Result<(), String> {
    let server = Server::parse(args.server.as_deref()).map_err(|e| format!("error: {e}"))?;
    let interactive = std::io::stdin().is_terminal();
    let username = match &args.username {
        Some(user) => user.clone(),
        None if interactive && !args.password_stdin => prompt("Username: ", true)?,
        None => return Err("error: login needs a user name: use -u USER".to_string()),
    };
    if username.is_empty() {
        return Err("error: login: the user name is empty".to_string());
    }
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("error: read the password from standard input: {e}"))?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(password) = &args.password {
        warn("using --password on the command line is insecure: use --password-stdin");
        password.clone()
    } else if interactive {
        prompt("Password: ", false)?
    } else {
        return Err("error: login needs a password: use --password-stdin".to_string());
    };
    if password.is_empty() {
        return Err("error: login: the password is empty".to_string());
    }
    let config = DaemonConfig::load(engine.config.as_deref()).map_err(|e| format!("error: {e}"))?;
    let options = config.registry_options();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("error: start the async runtime: {e}"))?;
    runtime
        .block_on(credentials::verify(&server, &options, &username, &password))
        .map_err(|e| format!("error: {e}"))?;
    let path = credentials::docker_config_path().map_err(|e| format!("error: {e}"))?;
    let helper = credentials::save(&path, &server, &username, &password)
        .map_err(|e| format!("error: {e}"))?;
    if helper {
        warn(&format!(
            "{} names a credential helper: flotilla asks it when pulling, but stores these \
             credentials in the file itself (a helper's own answer comes first)",
            path.display()
        ));
    }
    write("Login Succeeded\n")
}

/// Runs `flotilla logout`.
pub fn logout(args: &LogoutArgs) -> Result<(), String> {
    let server = Server::parse(args.server.as_deref()).map_err(|e| format!("error: {e}"))?;
    let path = credentials::docker_config_path().map_err(|e| format!("error: {e}"))?;
    if credentials::remove(&path, &server).map_err(|e| format!("error: {e}"))? {
        write(&format!("Removing login credentials for {}\n", server.key))
    } else {
        write(&format!("Not logged in to {}\n", server.key))
    }
}
