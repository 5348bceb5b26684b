//! `flotilla container …`: create, run (detached, or attached with the exit code propagated),
//! start, stop, kill, restart, pause, unpause, rm, wait, ls/ps, inspect, logs, exec, top, stats,
//! cp and commit, with Docker's flags and output.
//!
//! Every command is a client of the daemon's REST API ([`crate::api::client`]), on `--host` or
//! the default socket, where a daemon is started when none answers
//! ([`super::system::engine_client`]); `exec`, `attach` and the `-i`/`-t` attach of `run` use the
//! daemon's upgraded streams ([`attach_api`]). There are deliberately no top-level aliases
//! (`flotilla run`, `ps`, `logs`, …): those names belong to the Compose commands.
//!
//! Exit codes follow Docker: `run` and `create` exit 125 when the engine fails before the
//! container runs, 126/127 when its command cannot be executed or found, and the container's
//! own status otherwise; other commands exit 1 on failure, 2 on usage errors.

pub(super) mod attach_api;
mod run;
pub(crate) mod show;
mod transfer;

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};

use super::system::{HostArgs, engine_client};
use super::{EngineArgs, ProjectArgs, out};
use crate::api::client::{Client, ClientError, LogsQuery};
use crate::runtime::time;
use crate::spec::units;

/// `flotilla container`.
#[derive(Args, Debug)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub command: ContainerCommand,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create a container (not started)
    Create(Box<RunArgs>),
    /// Create and start a container; without -d, attach to it and exit with its status
    Run(Box<RunArgs>),
    /// Start stopped containers
    Start(NamesArgs),
    /// Stop running containers (stop signal, grace period, then SIGKILL)
    Stop(StopArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Stop then start containers
    Restart(StopArgs),
    /// Freeze every process of containers
    Pause(NamesArgs),
    /// Thaw paused containers
    Unpause(NamesArgs),
    /// Remove containers
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Wait until containers stop, then print their exit codes
    Wait(NamesArgs),
    /// List containers
    #[command(visible_alias = "ps", alias = "list")]
    Ls(show::LsArgs),
    /// Show containers in detail (JSON)
    Inspect(show::InspectArgs),
    /// Show a container's output
    Logs(LogsArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Attach this terminal to a running container's input and output
    Attach(attach_api::AttachArgs),
    /// Show the processes of a container
    Top(show::TopArgs),
    /// Show cpu, memory and pids usage of containers
    Stats(show::StatsArgs),
    /// Copy files between a container and the host (CONTAINER:PATH HOSTPATH or the reverse)
    Cp(transfer::CpArgs),
    /// Make a new image from a container's changes
    Commit(transfer::CommitArgs),
}

/// The options of `run` and `create`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Run in the background and print the container id
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits (done by the daemon, even if this command is gone)
    #[arg(long)]
    pub rm: bool,
    /// Keep standard input open
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's value); the global
    /// --env-file adds files of them
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Bind mount a host directory, SRC:DST[:ro] (a missing SRC directory is created), or
    /// mount a named volume, NAME:DST[:ro] (made when missing, filled from the image)
    #[arg(short, long = "volume", value_name = "SRC|NAME:DST[:ro]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs: DST[:size=64m,mode=1777]
    #[arg(long, value_name = "DST[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Publish a port (`-p`, needs a bridge network): [IP:][HOST:]CONTAINER[/PROTO]
    #[arg(long = "publish", value_name = "[IP:][HOST:]CONTAINER[/PROTO]")]
    pub publish: Vec<String>,
    /// The container's name
    #[arg(long)]
    pub name: Option<String>,
    /// The container's hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit (`512m`, `1g`)
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Number of cpus (`1.5`)
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`)
    #[arg(short, long)]
    pub user: Option<String>,
    /// Run a minimal init as PID 1 that forwards signals and reaps zombies
    #[arg(long)]
    pub init: bool,
    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Add a capability (`NET_ADMIN`, `ALL`)
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Override the image's entrypoint
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Signal that stops the container (default: the image's, else SIGTERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds to wait after the stop signal before SIGKILL (default 10)
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Network: `bridge` (default, as with Docker: the daemon's default bridge network, made
    /// on first use), `none` (an empty namespace with lo), `host`, or a network made by
    /// `network create`
    #[arg(long = "network", alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,
    /// Another DNS name of the container on its network
    #[arg(long = "network-alias", alias = "net-alias", value_name = "NAME")]
    pub network_alias: Vec<String>,
    /// A DNS server for the container's /etc/resolv.conf
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Set a label (KEY=VALUE)
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// The image
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The command and its arguments (default: the image's)
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct NamesArgs {
    /// Containers, by name or id (prefix)
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's stop timeout)
    #[arg(short = 't', long = "time", alias = "timeout", value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Containers, by name or id (prefix)
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct KillArgs {
    /// The signal (name or number)
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Containers, by name or id (prefix)
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RmArgs {
    /// Kill and remove running containers (`-f` after the command, as with Docker)
    #[arg(long)]
    pub force: bool,
    /// Also remove the container's anonymous volumes
    #[arg(short, long)]
    pub volumes: bool,
    /// Wait until the container has exited first (hidden; kept for scripts of older versions)
    #[arg(long, hide = true)]
    pub wait_first: bool,
    /// Containers, by name or id (prefix)
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops (`-f` after the command)
    #[arg(long)]
    pub follow: bool,
    /// Only the last N lines (`all` for every line)
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Only lines since this time (RFC 3339, Unix seconds, or a duration like `10m`)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Prefix lines with their time
    #[arg(short, long)]
    pub timestamps: bool,
    /// The container
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Keep standard input open
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`)
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run in the background
    #[arg(short, long)]
    pub detach: bool,
    /// The container
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The command and its arguments
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// A failed command: its message and Docker's exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: format!("error: {message}"),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { code: 1, message }
    }
}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::new(1, e)
}

/// Runs `flotilla container …` and returns the process exit code.
pub fn main(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &ContainerArgs,
) -> ExitCode {
    match run_command(engine, hosts, project, &args.command) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("{}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn run_command(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    command: &ContainerCommand,
) -> Result<u8, Failure> {
    // Docker's 125: the engine failed before the container ran.
    let engine_code = if matches!(
        command,
        ContainerCommand::Create(_) | ContainerCommand::Run(_)
    ) {
        125
    } else {
        1
    };
    let client = engine_client(engine, hosts).map_err(|message| Failure {
        code: engine_code,
        message,
    })?;
    let client = &client;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(engine_code, e))?;
    match command {
        ContainerCommand::Create(args) => run::run(client, project, args, false),
        ContainerCommand::Run(args) => run::run(client, project, args, true),
        ContainerCommand::Start(args) => tokio.block_on(each(&args.containers, |id| async move {
            client.start_container(&id).await.map(|_| ())
        })),
        ContainerCommand::Stop(args) => tokio.block_on(each(&args.containers, |id| async move {
            client.stop_container(&id, args.time).await.map(|_| ())
        })),
        ContainerCommand::Kill(args) => tokio.block_on(each(&args.containers, |id| async move {
            client
                .kill_container(&id, Some(&args.signal))
                .await
                .map(|_| ())
        })),
        ContainerCommand::Restart(args) => tokio
            .block_on(each(&args.containers, |id| async move {
                client.restart_container(&id, args.time).await.map(|_| ())
            })),
        ContainerCommand::Pause(args) => tokio.block_on(each(&args.containers, |id| async move {
            client.pause_container(&id).await.map(|_| ())
        })),
        ContainerCommand::Unpause(args) => tokio
            .block_on(each(&args.containers, |id| async move {
                client.unpause_container(&id).await.map(|_| ())
            })),
        ContainerCommand::Rm(args) => tokio.block_on(each(&args.containers, |id| async move {
            if args.wait_first {
                client.wait_container(&id).await?;
            }
            client
                .remove_container_with(&id, args.force, args.volumes)
                .await
        })),
        ContainerCommand::Wait(args) => tokio.block_on(wait(client, &args.containers)),
        ContainerCommand::Ls(args) => tokio.block_on(show::ls(client, args)),
        ContainerCommand::Inspect(args) => tokio.block_on(show::inspect(client, args)),
        ContainerCommand::Logs(args) => tokio.block_on(logs(client, args)),
        ContainerCommand::Exec(args) => Ok(attach_api::exec(client, &args.container, args)?),
        ContainerCommand::Attach(args) => Ok(attach_api::attach_command(client, args)?),
        ContainerCommand::Top(args) => tokio.block_on(show::top(client, args)),
        ContainerCommand::Stats(args) => tokio.block_on(show::stats(client, args)),
        ContainerCommand::Cp(args) => tokio.block_on(transfer::cp(client, args)),
        ContainerCommand::Commit(args) => tokio.block_on(transfer::commit(client, args)),
    }
}

/// Runs `f` on each container (by name or id), printing the argument as Docker does; every
/// failure is reported, the exit code is 1 if any failed.
async fn each<F, Fut>(containers: &[String], f: F) -> Result<u8, Failure>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let mut failed = false;
    for name in containers {
        match f(name.clone()).await {
            Ok(()) => out(&format!("{name}\n")).map_err(fail)?,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

async fn wait(client: &Client, containers: &[String]) -> Result<u8, Failure> {
    let mut failed = false;
    for name in containers {
        match client.wait_container(name).await {
            Ok(exit) => out(&format!("{}\n", exit.exit_code)).map_err(fail)?,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// `KEY=VALUE` stays; `KEY` takes the host's value (dropped when the host has none).
fn env_entry(entry: &str) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_string());
    }
    std::env::var(entry).ok().map(|v| format!("{entry}={v}"))
}

// --- logs ----------------------------------------------------------------------------

fn since(text: &str) -> Result<SystemTime, Failure> {
    if let Some(t) = time::parse(text) {
        return Ok(t);
    }
    let d = units::parse_duration(text).map_err(|e| {
        fail(format!(
            "--since {text:?}: expected RFC 3339, Unix seconds or a duration ({e})"
        ))
    })?;
    Ok(SystemTime::now()
        .checked_sub(d)
        .unwrap_or(SystemTime::UNIX_EPOCH))
}

async fn logs(client: &Client, args: &LogsArgs) -> Result<u8, Failure> {
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| fail(format!("--tail {n:?}: expected a number or all")))?,
        ),
    };
    let q = LogsQuery {
        follow: args.follow,
        tail,
        since: args
            .since
            .as_deref()
            .map(since)
            .transpose()?
            .map(time::format),
    };
    let mut stream = client
        .container_logs(&args.container, &q)
        .await
        .map_err(fail)?;
    while let Some(line) = stream.next().await {
        let line = line.map_err(fail)?;
        let text = if args.timestamps {
            format!("{} {}", line.time, line.log)
        } else {
            line.log
        };
        let result = if line.stream == "stderr" {
            let mut o = std::io::stderr().lock();
            o.write_all(text.as_bytes()).and_then(|_| o.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|_| o.flush())
        };
        if result.is_err() {
            // A closed pipe (`| head`) ends the command quietly.
            break;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    fn rewrite(args: &[&str]) -> Vec<String> {
        crate::cli::flags::docker_short_flags(args.iter().map(std::ffi::OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn short_flags_mean_what_docker_means() {
        assert_eq!(
            rewrite(&["flotilla", "container", "rm", "-f", "web"]),
            ["flotilla", "container", "rm", "--force", "web"]
        );
        assert_eq!(
            rewrite(&[
                "flotilla",
                "--data-root",
                "/d",
                "container",
                "logs",
                "-f",
                "web"
            ]),
            [
                "flotilla",
                "--data-root",
                "/d",
                "container",
                "logs",
                "--follow",
                "web"
            ]
        );
        assert_eq!(
            rewrite(&[
                "flotilla",
                "container",
                "run",
                "-e",
                "-p",
                "-p",
                "80:80",
                "img",
                "ls",
                "-p"
            ]),
            [
                "flotilla",
                "container",
                "run",
                "-e",
                "-p",
                "--publish",
                "80:80",
                "img",
                "ls",
                "-p"
            ]
        );
        // Not the container command: untouched.
        let other = ["flotilla", "-f", "container", "config", "-f", "x"];
        assert_eq!(rewrite(&other), other);
    }
}
