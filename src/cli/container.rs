//! `flotilla container …`: create, run (detached, or attached with the exit code propagated),
//! start, stop, kill, restart, pause, unpause, rm, wait, ls/ps, inspect, logs, exec, top, stats,
//! cp and commit, with Docker's flags and output.
//!
//! Until the daemon exists (the engine-daemon issue), these commands run in-process against the
//! data root (`--data-root`) through [`crate::runtime::lifecycle::Runtime`]; then they become API
//! calls and keep this output. There are deliberately no top-level aliases (`flotilla run`, `ps`,
//! `logs`, …): those names belong to the Compose commands.
//!
//! Exit codes follow Docker: `run` and `create` exit 125 when the engine fails before the
//! container runs, 126/127 when its command cannot be executed or found, and the container's
//! own status otherwise; other commands exit 1 on failure, 2 on usage errors.

pub(super) mod attach_api;
mod show;
mod transfer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::system::{HostArgs, engine_client};
use super::{EngineArgs, ProjectArgs, out};
use crate::runtime::bundle::LogConfig;
use crate::runtime::config::{BindMount, ContainerConfig, TmpfsMount};
use crate::runtime::lifecycle::{CreateOptions, LifecycleError, LogsOptions, Runtime};
use crate::runtime::logs::Stream;
use crate::runtime::sys::cgroup::Limits;
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
    /// Remove the container when it exits
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
    /// Bind mount a host directory: SRC:DST[:ro] (a missing SRC directory is created)
    #[arg(short, long = "volume", value_name = "SRC:DST[:ro]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs: DST[:size=64m,mode=1777]
    #[arg(long, value_name = "DST[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Publish a port (`-p`; arrives with the network issue: refused for now)
    #[arg(long = "publish", value_name = "[IP:]HOST:CONTAINER")]
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
    /// Network: `none` (default: an empty namespace with lo) or `host`; bridges arrive with the
    /// network issue
    #[arg(long = "network", alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,
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
    /// Accepted for Docker compatibility (anonymous volumes arrive with the volume issue)
    #[arg(short, long)]
    pub volumes: bool,
    /// Wait until the container has exited first (`run -d --rm`'s remover)
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
    let rt = runtime(engine)?;
    match command {
        ContainerCommand::Create(args) => create(&rt, project, args, None),
        ContainerCommand::Run(args) => create(&rt, project, args, Some((engine, hosts))),
        ContainerCommand::Start(args) => each(&rt, &args.containers, |id| rt.start(id).map(|_| ())),
        ContainerCommand::Stop(args) => each(&rt, &args.containers, |id| {
            rt.stop(id, args.time.map(Duration::from_secs))
        }),
        ContainerCommand::Kill(args) => each(&rt, &args.containers, |id| rt.kill(id, &args.signal)),
        ContainerCommand::Restart(args) => each(&rt, &args.containers, |id| {
            rt.stop(id, args.time.map(Duration::from_secs))?;
            rt.start(id).map(|_| ())
        }),
        ContainerCommand::Pause(args) => each(&rt, &args.containers, |id| rt.pause(id)),
        ContainerCommand::Unpause(args) => each(&rt, &args.containers, |id| rt.unpause(id)),
        ContainerCommand::Rm(args) => each(&rt, &args.containers, |id| {
            if args.wait_first {
                rt.wait(id)?;
            }
            rt.rm(id, args.force)
        }),
        ContainerCommand::Wait(args) => wait(&rt, &args.containers),
        ContainerCommand::Ls(args) => show::ls(&rt, args),
        ContainerCommand::Inspect(args) => show::inspect(&rt, args),
        ContainerCommand::Logs(args) => logs(&rt, args),
        ContainerCommand::Exec(args) => {
            let client = engine_client(engine, hosts).map_err(fail)?;
            Ok(attach_api::exec(&client, &args.container, args)?)
        }
        ContainerCommand::Attach(args) => {
            let client = engine_client(engine, hosts).map_err(fail)?;
            Ok(attach_api::attach_command(&client, args)?)
        }
        ContainerCommand::Top(args) => show::top(&rt, args),
        ContainerCommand::Stats(args) => show::stats(&rt, args),
        ContainerCommand::Cp(args) => transfer::cp(&rt, args),
        ContainerCommand::Commit(args) => transfer::commit(engine, &rt, args),
    }
}

fn runtime(engine: &EngineArgs) -> Result<Runtime, Failure> {
    let rt = Runtime::new(&engine.data_root).map_err(fail)?;
    // Tests and benchmarks keep their cgroups apart.
    Ok(match std::env::var("FLOTILLA_CGROUP_PREFIX") {
        Ok(p) if !p.is_empty() => rt.with_prefix(&p),
        _ => rt,
    })
}

/// Runs `f` on each container (resolved by name or id), printing the argument as Docker does;
/// every failure is reported, the exit code is 1 if any failed.
fn each(
    rt: &Runtime,
    containers: &[String],
    f: impl Fn(&str) -> Result<(), LifecycleError>,
) -> Result<u8, Failure> {
    let mut failed = false;
    for name in containers {
        match rt.resolve(name).and_then(|id| f(&id)) {
            Ok(()) => out(&format!("{name}\n")).map_err(fail)?,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

fn wait(rt: &Runtime, containers: &[String]) -> Result<u8, Failure> {
    let mut failed = false;
    for name in containers {
        match rt.resolve(name).and_then(|id| rt.wait(&id)) {
            Ok(code) => out(&format!("{code}\n")).map_err(fail)?,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

// --- create / run ---------------------------------------------------------------------------

/// `KEY=VALUE` stays; `KEY` takes the host's value (dropped when the host has none).
fn env_entry(entry: &str) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_string());
    }
    std::env::var(entry).ok().map(|v| format!("{entry}={v}"))
}

fn env_files(files: &[PathBuf]) -> Result<Vec<String>, Failure> {
    let mut env = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::new(125, format!("env file {}: {e}", file.display())))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            env.extend(env_entry(line));
        }
    }
    Ok(env)
}

/// `DST[:size=64m,mode=1777]`.
fn parse_tmpfs(text: &str) -> Result<TmpfsMount, String> {
    let (target, options) = text.split_once(':').unwrap_or((text, ""));
    let mut mount = TmpfsMount {
        target: target.to_string(),
        ..Default::default()
    };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("size", v)) => mount.size = Some(units::parse_bytes(v)?),
            Some(("mode", v)) => {
                mount.mode = Some(
                    u32::from_str_radix(v, 8)
                        .map_err(|_| format!("tmpfs {text:?}: mode {v:?} is not octal"))?,
                );
            }
            // Mount flags Docker accepts; the runtime applies its safe defaults.
            None if matches!(
                option,
                "rw" | "ro" | "exec" | "noexec" | "nosuid" | "suid" | "nodev" | "dev"
            ) => {}
            _ => return Err(format!("tmpfs {text:?}: unsupported option {option:?}")),
        }
    }
    Ok(mount)
}

/// `SRC:DST[:ro]` with a host path source; a missing source directory is created (Compose's
/// short syntax).
fn parse_bind(text: &str) -> Result<BindMount, String> {
    let v = units::parse_volume(text)?;
    let Some(source) = v.source.filter(|_| v.kind == "bind") else {
        return Err(format!(
            "volume {text:?}: named and anonymous volumes arrive with the volume issue; \
             use a host path (absolute, or starting with ./ or ~)"
        ));
    };
    let source = match source.strip_prefix('~') {
        Some(rest) => PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(rest.trim_start_matches('/')),
        None => std::path::absolute(&source).unwrap_or_else(|_| PathBuf::from(&source)),
    };
    if !source.exists() {
        std::fs::create_dir_all(&source)
            .map_err(|e| format!("volume {text:?}: create {}: {e}", source.display()))?;
    }
    Ok(BindMount {
        source,
        target: v.target,
        read_only: v.read_only,
    })
}

fn create_options(project: &ProjectArgs, args: &RunArgs) -> Result<CreateOptions, Failure> {
    let bad = |m: String| Failure::new(125, m);
    if let Some(p) = args.publish.first() {
        units::parse_port(p).map_err(bad)?;
        return Err(bad(format!(
            "publish {p:?}: publishing ports is not yet supported (it arrives with the network \
             issue); use --network host to reach the container's ports"
        )));
    }
    let netns = match args.network.as_deref() {
        None | Some("none") | Some("default") => None,
        // The starting process's own namespace: the host's (nothing new is created).
        Some("host") => Some(PathBuf::from("/proc/self/ns/net")),
        Some(other) => {
            return Err(bad(format!(
                "network {other:?}: not yet supported (none and host for now; networks arrive \
                 with the network issue)"
            )));
        }
    };
    let mut env = env_files(&project.env_files)?;
    env.extend(args.env.iter().filter_map(|e| env_entry(e)));
    let tmpfs = args
        .tmpfs
        .iter()
        .map(|t| parse_tmpfs(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let binds = args
        .volume
        .iter()
        .map(|v| parse_bind(v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let mut limits = Limits::default();
    if let Some(m) = &args.memory {
        let bytes = units::parse_bytes(m).map_err(|e| bad(format!("--memory: {e}")))?;
        limits.memory =
            Some(i64::try_from(bytes).map_err(|_| bad(format!("--memory {m:?}: too large")))?);
    }
    if let Some(cpus) = args.cpus {
        limits
            .set_cpus(cpus)
            .map_err(|e| bad(format!("--cpus: {e}")))?;
    }
    limits.pids_limit = args.pids_limit;
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let config = ContainerConfig {
        command: (!args.command.is_empty()).then(|| args.command.clone()),
        entrypoint: args.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        }),
        env,
        working_dir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        read_only: args.read_only,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        init: args.init,
        tty: args.tty,
        tmpfs,
        binds,
        netns,
        ..Default::default()
    };
    Ok(CreateOptions {
        name: args.name.clone(),
        image: Some(args.image.clone()),
        config,
        limits,
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout.map(Duration::from_secs),
        log: LogConfig::default(),
        open_stdin: args.interactive,
        labels,
    })
}

/// `create`, and `run` (`start`: create, start, then attach through the daemon unless detached).
fn create(
    rt: &Runtime,
    project: &ProjectArgs,
    args: &RunArgs,
    start: Option<(&EngineArgs, &HostArgs)>,
) -> Result<u8, Failure> {
    let client = match start {
        Some((engine, hosts)) if !args.detach => {
            Some(engine_client(engine, hosts).map_err(|e| Failure::new(125, e))?)
        }
        _ => None,
    };
    let options = create_options(project, args)?;
    let id = rt.create(options).map_err(|e| Failure::new(125, e))?;
    if start.is_none() {
        out(&format!("{id}\n")).map_err(fail)?;
        return Ok(0);
    }
    let remove = |rt: &Runtime| {
        if args.rm
            && let Err(e) = rt.rm(&id, true)
        {
            eprintln!("error: {e}");
        }
    };
    // Signals for the container are taken before any thread starts (see `forward_signals`).
    let signals = (!args.detach && !args.tty).then(block_signals);
    if let Err(e) = rt.start(&id) {
        remove(rt);
        return Err(match e {
            LifecycleError::StartFailed { status, .. } => Failure::new(status, e),
            e => Failure::new(125, e),
        });
    }
    if args.detach {
        if args.rm {
            spawn_remover(rt, &id);
        }
        out(&format!("{id}\n")).map_err(fail)?;
        return Ok(0);
    }
    if let Some(set) = signals {
        forward_signals(rt.clone(), id.clone(), set);
    }
    let code = match &client {
        Some(client) => attach_api::attach(client, &id, args.interactive, args.tty, true),
        None => Err("error: no daemon to attach through".to_string()),
    };
    remove(rt);
    let code = code.map_err(|message| Failure { code: 125, message })?;
    Ok((code & 0xff) as u8)
}

/// `run -d --rm`: a detached `flotilla container wait`-like helper that removes the container
/// once it exits (the daemon's job once it exists).
fn spawn_remover(rt: &Runtime, id: &str) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let root = rt.dir(id);
    let Some(data_root) = root.parent().and_then(Path::parent) else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--data-root")
        .arg(data_root)
        .args(["container", "rm", "--force", "--wait-first"])
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Not waited for: it outlives this command (init reaps it).
    let _ = cmd.spawn();
}

fn block_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    let _ = set.thread_block();
    set
}

/// Docker's sig-proxy: signals this attached command receives go to the container.
fn forward_signals(rt: Runtime, id: String, set: nix::sys::signal::SigSet) {
    std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            let _ = rt.kill(&id, sig.as_str());
        }
    });
}

// --- logs / exec ----------------------------------------------------------------------------

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

fn logs(rt: &Runtime, args: &LogsArgs) -> Result<u8, Failure> {
    let id = rt.resolve(&args.container).map_err(fail)?;
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| fail(format!("--tail {n:?}: expected a number or all")))?,
        ),
    };
    let options = LogsOptions {
        tail,
        since: args.since.as_deref().map(since).transpose()?,
        follow: args.follow,
        timestamps: args.timestamps,
    };
    let mut closed = false;
    rt.logs(&id, &options, &mut |e| {
        let text = e.render(options.timestamps);
        let result = match e.stream {
            Stream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(text.as_bytes()).and_then(|_| o.flush())
            }
            Stream::Stderr => {
                let mut o = std::io::stderr().lock();
                o.write_all(text.as_bytes()).and_then(|_| o.flush())
            }
        };
        closed = result.is_err();
        !closed
    })
    .map_err(fail)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn tmpfs_and_bind_syntax() {
        let t = parse_tmpfs("/run:size=64m,mode=1700").unwrap();
        assert_eq!(t.target, "/run");
        assert_eq!(t.size, Some(64 << 20));
        assert_eq!(t.mode, Some(0o1700));
        assert!(parse_tmpfs("/run:bogus=1").is_err());
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("made/by/run");
        let b = parse_bind(&format!("{}:/data:ro", src.display())).unwrap();
        assert!(src.is_dir());
        assert!(b.read_only);
        assert_eq!(b.target, "/data");
        assert!(parse_bind("named:/data").is_err());
    }
}
