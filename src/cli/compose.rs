//! The Compose commands on a project: `up`, `down`, `ps`, `ls` here; `logs` and attached `up`
//! in [`logs`] and [`attach`]; `start`, `stop`, `restart`, `kill`, `pause`, `unpause`, `rm`,
//! `wait`, and `compose events` / `compose images` in [`ops`]; `port`, `scale` and `exec` in
//! [`service`]. The stack is loaded here, in the client (like `docker compose`: paths, `.env`
//! and the process environment are the user's), and sent to the daemon as its canonical
//! model; the daemon plans and converges, and streams each step back
//! (`api::types::ProjectProgress`), rendered in the `--progress` mode ([`progress`]: plain
//! lines, JSON, quiet, or the live tty view). The other commands find
//! the project's containers by their Compose labels and act on each through the container API,
//! all at once.
//!
//! Every command is also under `flotilla compose …`, so `alias docker-compose='flotilla
//! compose'` works; `events`, `images`, `push`, `top` and `stats` are only there (the
//! top-level names are Docker's). `push` is in [`push`], `top` and `stats` in [`monitor`].

mod attach;
mod logs;
mod monitor;
mod ops;
pub(crate) mod progress;
mod pull;
mod push;
mod rmi;
mod run;
mod service;
mod watch;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::system::{HostArgs, engine_client};
use super::{EngineArgs, ProjectArgs, out, warn};
use crate::api::client::{Client, block_on};
use crate::api::types::{
    Container, ContainerStatus, Port, ProjectDown, ProjectProgress, ProjectUp,
};
use crate::plan::labels;
use crate::spec::load::{self, Loaded};

/// The project commands, at the top level and under `compose`.
#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Create and start the stack's containers (converge it to the stack file)
    Up(UpArgs),
    /// Stop and remove the stack's containers and networks
    Down(DownArgs),
    /// Build the images of the services with a `build:` section
    Build(super::build::ServiceBuildArgs),
    /// List the stack's containers
    Ps(PsArgs),
    /// List projects
    Ls(LsArgs),
    /// Show the logs of the stack's containers
    Logs(logs::LogsArgs),
    /// Start the stack's stopped containers
    Start(ops::ServicesArgs),
    /// Stop the stack's running containers
    Stop(ops::StopArgs),
    /// Restart the stack's containers
    Restart(ops::StopArgs),
    /// Send a signal (default SIGKILL) to the stack's running containers
    Kill(ops::KillArgs),
    /// Pause the stack's running containers
    Pause(ops::ServicesArgs),
    /// Unpause the stack's paused containers
    Unpause(ops::ServicesArgs),
    /// Remove the stack's stopped containers
    Rm(ops::RmArgs),
    /// Wait until the services' containers stop; exit with the first one's code
    Wait(ops::WaitArgs),
    /// Print the host address a service's private port is published on
    Port(service::PortArgs),
    /// Set the number of replicas of services (`SERVICE=N`)
    Scale(service::ScaleArgs),
    /// Run a command in a service's running container
    Exec(service::ExecArgs),
    /// Create the stack's containers without starting them (`up --no-start`)
    Create(pull::CreateArgs),
    /// Run a one-off command in a new container of a service
    Run(run::RunArgs),
    /// Bring the stack up, then apply edits of the stack files and `develop.watch` rules
    Watch(watch::WatchArgs),
}

/// `flotilla compose …`: every project command under Compose's own group.
#[derive(Args, Debug)]
pub struct ComposeArgs {
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Subcommand, Debug)]
pub enum ComposeCommand {
    #[command(flatten)]
    Project(ProjectCommand),
    /// Show the events of the stack's containers, live
    Events(ops::EventsArgs),
    /// List the images the stack's containers use
    Images(ops::ImagesArgs),
    /// Pull the images of the stack's services through the daemon
    Pull(pull::PullArgs),
    /// Push the images of the stack's services through the daemon
    Push(push::PushArgs),
    /// Show the processes of the stack's running containers
    Top(monitor::TopArgs),
    /// Show the resource use of the stack's running containers
    Stats(monitor::StatsArgs),
}

/// Runs a project command; its exit code (1 with the message on standard error on failure).
pub fn run(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    command: &ProjectCommand,
) -> ExitCode {
    let done = |r: Result<(), String>| r.map(|()| 0u8);
    let result = match command {
        ProjectCommand::Up(args) => up(engine, hosts, project, args),
        ProjectCommand::Down(args) => done(down(engine, hosts, project, args)),
        ProjectCommand::Build(args) => super::build::service_build(engine, hosts, project, args),
        ProjectCommand::Ps(args) => done(ps(engine, hosts, project, args)),
        ProjectCommand::Ls(args) => done(ls(engine, hosts, args)),
        ProjectCommand::Logs(args) => logs::logs(engine, hosts, project, args),
        ProjectCommand::Start(args) => ops::start(engine, hosts, project, args),
        ProjectCommand::Stop(args) => ops::stop(engine, hosts, project, args, false),
        ProjectCommand::Restart(args) => ops::stop(engine, hosts, project, args, true),
        ProjectCommand::Kill(args) => ops::kill(engine, hosts, project, args),
        ProjectCommand::Pause(args) => ops::pause(engine, hosts, project, args, true),
        ProjectCommand::Unpause(args) => ops::pause(engine, hosts, project, args, false),
        ProjectCommand::Rm(args) => ops::rm(engine, hosts, project, args),
        ProjectCommand::Wait(args) => ops::wait(engine, hosts, project, args),
        ProjectCommand::Port(args) => done(service::port(engine, hosts, project, args)),
        ProjectCommand::Scale(args) => service::scale(engine, hosts, project, args),
        ProjectCommand::Exec(args) => service::exec(engine, hosts, project, args),
        ProjectCommand::Create(args) => pull::create(engine, hosts, project, args),
        ProjectCommand::Run(args) => run::run(engine, hosts, project, args),
        ProjectCommand::Watch(args) => watch::watch(engine, hosts, project, args),
    };
    exit(result)
}

/// Runs `flotilla compose …`.
pub fn run_group(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &ComposeArgs,
) -> ExitCode {
    match &args.command {
        ComposeCommand::Project(command) => run(engine, hosts, project, command),
        ComposeCommand::Events(a) => exit(ops::events(engine, hosts, project, a)),
        ComposeCommand::Images(a) => exit(ops::images(engine, hosts, project, a)),
        ComposeCommand::Pull(a) => exit(pull::pull(engine, hosts, project, a)),
        ComposeCommand::Push(a) => exit(push::push(engine, hosts, project, a)),
        ComposeCommand::Top(a) => exit(monitor::top(engine, hosts, project, a)),
        ComposeCommand::Stats(a) => exit(monitor::stats(engine, hosts, project, a)),
    }
}

fn exit(result: Result<u8, String>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(1)
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct UpArgs {
    /// Detached: return once the containers run (else stay attached to their logs; Ctrl-C
    /// stops them)
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Attached: stop every container when one exits
    #[arg(long, conflicts_with = "detach")]
    pub abort_on_container_exit: bool,
    /// Attached: exit with the exit code of this service's container (implies
    /// --abort-on-container-exit)
    #[arg(long, value_name = "SERVICE", conflicts_with = "detach")]
    pub exit_code_from: Option<String>,
    /// Attached: only these services' logs (repeatable)
    #[arg(long, value_name = "SERVICE")]
    pub attach: Vec<String>,
    /// Attached: not these services' logs (repeatable)
    #[arg(long, value_name = "SERVICE")]
    pub no_attach: Vec<String>,
    /// Attached: no colours in the logs
    #[arg(long)]
    pub no_color: bool,
    /// Attached: no `service-1  | ` prefix on log lines
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Attached: show the log lines' times
    #[arg(long)]
    pub timestamps: bool,
    /// Seconds to wait for each container to stop (Ctrl-C, aborts) before killing it
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Wait until the services run, and are healthy when they have a healthcheck
    #[arg(long)]
    pub wait: bool,
    /// Seconds `--wait` waits at most
    #[arg(long, value_name = "SECONDS")]
    pub wait_timeout: Option<u64>,
    /// Do not start the services' dependencies
    #[arg(long)]
    pub no_deps: bool,
    /// Recreate containers even when nothing changed
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// Keep existing containers even when their configuration changed
    #[arg(long)]
    pub no_recreate: bool,
    /// Pull images: always, missing, never (default: each service's pull_policy)
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
    /// Remove containers of services the stack file no longer has
    #[arg(long)]
    pub remove_orphans: bool,
    /// `SERVICE=N`: run N replicas of SERVICE (repeatable)
    #[arg(long, value_name = "SERVICE=N")]
    pub scale: Vec<String>,
    /// Create the containers, do not start them
    #[arg(long)]
    pub no_start: bool,
    /// Print the plan (and why each container would be recreated), change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also print why each container is recreated
    #[arg(long)]
    pub verbose: bool,
    /// Attached: also watch the stack files and the services' `develop.watch` rules, and
    /// apply what changes (see `watch`)
    #[arg(long, conflicts_with_all = ["detach", "dry_run", "no_start", "wait"])]
    pub watch: bool,
    /// Build the images of the services with `build:` first (with the build cache)
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Do not build images: a missing image that would need a build is an error
    #[arg(long)]
    pub no_build: bool,
    /// Only these services (and their dependencies)
    pub services: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DownArgs {
    /// Also remove the named volumes of the stack file and anonymous volumes
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove containers of services the stack file no longer has
    #[arg(long)]
    pub remove_orphans: bool,
    /// Seconds to wait for each container to stop before killing it
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print the plan, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Then remove the services' images: `local` (those without an `image` name) or `all`
    #[arg(long, value_enum, value_name = "TYPE")]
    pub rmi: Option<rmi::Rmi>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PsArgs {
    /// Also stopped containers
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only the container ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Only the services' names
    #[arg(long)]
    pub services: bool,
    /// Only containers in this state: created, running, paused, exited, dead (repeatable)
    #[arg(long)]
    pub status: Vec<String>,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only these services
    #[arg(value_name = "SERVICE")]
    pub only: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct LsArgs {
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only the project names
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// The stack, loaded as `config` does (all errors at once).
pub(super) fn load_stack(project: &ProjectArgs) -> Result<Loaded, String> {
    let loaded = load::load(&project.options(false)).map_err(|errs| {
        let n = errs.0.len();
        format!(
            "{errs}\nerror: the stack is not valid ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )
    })?;
    for w in &loaded.warnings {
        warn(w);
    }
    Ok(loaded)
}

/// The project's name: `-p`, else the stack file's (loading it); with `file_optional`, a
/// missing stack file is fine when `-p` names the project.
fn project_and_name(
    project: &ProjectArgs,
    file_optional: bool,
) -> Result<(Option<Loaded>, String), String> {
    match load_stack(project) {
        Ok(l) => {
            let name = l.name.clone();
            Ok((Some(l), name))
        }
        Err(e) => match (&project.project_name, file_optional) {
            (Some(name), true) => Ok((None, crate::spec::units::normalize_project_name(name))),
            _ => Err(e),
        },
    }
}

/// One progress line as Compose prints it in plain mode.
fn render(p: &ProjectProgress, verbose: bool) -> Option<String> {
    let kind = match p.kind.as_str() {
        "plan" => return p.detail.as_ref().map(|d| format!("{d}\n")),
        "warning" => return p.detail.as_ref().map(|d| format!("warning: {d}\n")),
        "done" => return None,
        "network" => "Network",
        "volume" => "Volume",
        "image" => "Image",
        "service" => "Service",
        _ => "Container",
    };
    let secs = p.elapsed_ms as f64 / 1000.0;
    let mut line = format!(" {kind} {}  {}", p.name, p.status);
    match (&p.detail, p.status.as_str()) {
        (Some(d), "Error") => line.push_str(&format!(": {d}")),
        (Some(d), "Recreate") if verbose => line.push_str(&format!(" ({d})")),
        (Some(d), "Waiting") => line.push_str(&format!(" for {} {d}", p.name)),
        (Some(d), "Restarting") => line.push_str(&format!(" ({d})")),
        _ => {}
    }
    line.push_str(&format!("  {secs:.1}s\n"));
    Some(line)
}

/// Shows the stream in `progress`'s mode; the result is the `done` line's.
async fn follow(
    stream: crate::api::client::JsonStream<ProjectProgress>,
    progress: &mut progress::Renderer,
) -> Result<(), String> {
    follow_interruptible(stream, progress, None)
        .await
        .map(|_| ())
}

/// [`follow`], counting the Ctrl-Cs that arrive meanwhile on `sigint` (the first says the stack
/// will stop once it is up; the second returns at once, with 2).
async fn follow_interruptible(
    mut stream: crate::api::client::JsonStream<ProjectProgress>,
    progress: &mut progress::Renderer,
    mut sigint: Option<&mut tokio::signal::unix::Signal>,
) -> Result<u32, String> {
    let mut last: Option<ProjectProgress> = None;
    let mut interrupts = 0;
    let mut ticks = tokio::time::interval(progress::TICK);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = ticks.tick() => {
                progress.tick().map_err(|e| e.to_string())?;
                continue;
            }
            Some(()) = async {
                match sigint.as_deref_mut() {
                    Some(sig) => sig.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                interrupts += 1;
                if interrupts > 1 {
                    return Ok(interrupts);
                }
                eprintln!("{}", attach::GRACEFUL);
                continue;
            }
        };
        let Some(item) = item else { break };
        let p = item.map_err(|e| e.to_string())?;
        progress.event(&p).map_err(|e| e.to_string())?;
        if p.kind == "done" {
            last = Some(p);
        }
    }
    match last {
        Some(p) if p.status == "ok" => Ok(interrupts),
        Some(p) => Err(p.detail.unwrap_or_else(|| "failed".into())),
        None => Err("the daemon ended the stream early".into()),
    }
}

/// The `up` request for `loaded` with `args` (the `--scale` values checked).
fn up_request(loaded: &Loaded, args: &UpArgs) -> Result<ProjectUp, String> {
    let mut scale = BTreeMap::new();
    for s in &args.scale {
        let (svc, n) = s
            .split_once('=')
            .ok_or_else(|| format!("--scale {s:?}: expected SERVICE=N"))?;
        let n: u32 = n
            .parse()
            .map_err(|_| format!("--scale {s:?}: N must be a number"))?;
        scale.insert(svc.to_string(), n);
    }
    Ok(ProjectUp {
        project: loaded.config_with_values(),
        config_files: config_files(loaded),
        working_dir: loaded.project_dir.display().to_string(),
        services: args.services.clone(),
        no_deps: args.no_deps,
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        scale,
        remove_orphans: args.remove_orphans,
        // `--build`: every selected service with `build:` is built (its base images pulled
        // when missing); the others pull what is missing.
        pull: if args.build {
            Some("build".to_string())
        } else {
            args.pull.clone()
        },
        no_build: args.no_build,
        no_start: args.no_start,
        dry_run: args.dry_run,
        wait: args.wait,
        wait_timeout: args.wait_timeout,
    })
}

pub fn up(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &UpArgs,
) -> Result<u8, String> {
    let loaded = load_stack(project)?;
    let req = up_request(&loaded, args)?;
    let declared = declared_services(&loaded);
    let attached = !(args.detach || args.wait || args.dry_run || args.no_start);
    let named = args
        .services
        .iter()
        .chain(&args.attach)
        .chain(&args.no_attach)
        .chain(&args.exit_code_from);
    for s in named {
        check_service("up", &loaded.name, &declared, s)?;
    }
    let client = engine_client(engine, hosts)?;
    let name = loaded.name.clone();
    block_on(async {
        // Registered first, so that no Ctrl-C is lost (and none kills the CLI mid-way).
        let mut sigint = if attached {
            Some(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                    .map_err(|e| format!("up: watch for Ctrl-C: {e}"))?,
            )
        } else {
            None
        };
        // Attached mode shows what the containers print from now on.
        let since = crate::runtime::time::now();
        let stream = client
            .project_up(&name, &req)
            .await
            .map_err(|e| format!("up: {e}"))?;
        let mut renderer = progress::Renderer::new(project.progress, args.verbose || args.dry_run);
        let interrupts = follow_interruptible(stream, &mut renderer, sigint.as_mut())
            .await
            .map_err(|e| format!("up: project {name}: {e}"))?;
        match sigint {
            Some(_) if interrupts > 1 => Ok(attach::INTERRUPTED),
            Some(mut sig) if args.watch => {
                watch::attached(
                    &client,
                    project,
                    args,
                    loaded,
                    &since,
                    &mut sig,
                    interrupts > 0,
                )
                .await
            }
            Some(mut sig) => {
                attach::attached(&client, &name, args, &since, &mut sig, interrupts > 0).await
            }
            None => Ok(0),
        }
    })
    .map_err(|e| format!("start a runtime: {e}"))?
}

/// The stack files given (absolute), for the containers' labels.
fn config_files(loaded: &Loaded) -> Vec<String> {
    loaded
        .files
        .iter()
        .filter(|f| {
            f.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .map(|f| f.display().to_string())
        .collect()
}

pub fn down(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &DownArgs,
) -> Result<(), String> {
    let (loaded, name) = project_and_name(project, true)?;
    let images = match args.rmi {
        Some(mode) if !args.dry_run => rmi::images(loaded.as_ref(), &name, mode),
        _ => Vec::new(),
    };
    let req = ProjectDown {
        project: loaded.map(|l| l.config),
        volumes: args.volumes,
        remove_orphans: args.remove_orphans,
        timeout: args.timeout,
        dry_run: args.dry_run,
    };
    let client = engine_client(engine, hosts)?;
    block_on(async {
        let stream = client
            .project_down(&name, &req)
            .await
            .map_err(|e| format!("down: {e}"))?;
        let mut renderer = progress::Renderer::new(project.progress, true);
        follow(stream, &mut renderer)
            .await
            .map_err(|e| format!("down: project {name}: {e}"))?;
        let mut failed = Vec::new();
        for (image, result) in rmi::remove(&client, &images).await {
            let (status, detail) = match result {
                Ok(()) => ("Removed", None),
                Err(e) => {
                    failed.push(format!("image {image}: {e}"));
                    ("Error", Some(e))
                }
            };
            let _ = renderer.event(&ProjectProgress {
                kind: "image".into(),
                name: image,
                service: None,
                status: status.into(),
                detail,
                elapsed_ms: 0,
            });
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("down: project {name}: {}", failed.join("; ")))
        }
    })
    .map_err(|e| format!("start a runtime: {e}"))?
}

/// The project's containers, by service then number.
async fn project_containers(
    client: &Client,
    name: &str,
    all: bool,
) -> Result<Vec<Container>, String> {
    let mut list = client
        .list_containers_with(all, &format!("{}={name}", labels::PROJECT))
        .await
        .map_err(|e| e.to_string())?;
    list.retain(|c| c.labels.get(labels::ONEOFF).map(String::as_str) != Some(labels::TRUE));
    let number = |c: &Container| {
        c.labels
            .get(labels::CONTAINER_NUMBER)
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    };
    list.sort_by(|a, b| {
        (a.labels.get(labels::SERVICE), number(a)).cmp(&(b.labels.get(labels::SERVICE), number(b)))
    });
    Ok(list)
}

/// The services the stack file declares (those its profiles enable).
fn declared_services(loaded: &Loaded) -> Vec<String> {
    loaded
        .config
        .get("services")
        .and_then(|s| s.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// `no such service: X`, naming the project, with a suggestion when one is close.
fn check_service(cmd: &str, project: &str, known: &[String], service: &str) -> Result<(), String> {
    if known.iter().any(|k| k == service) {
        return Ok(());
    }
    let hint = crate::spec::error::did_you_mean(service, known.iter().map(String::as_str))
        .map(|m| format!(" (did you mean {m:?}?)"))
        .unwrap_or_default();
    Err(format!(
        "{cmd}: project {project}: no such service: {service}{hint}"
    ))
}

/// The project a command acts on: its name, and the services of its stack file (`None` when
/// only `-p` names it and no stack file is there: then its containers' labels say which
/// services exist).
struct Scope {
    name: String,
    declared: Option<Vec<String>>,
}

impl Scope {
    fn of(project: &ProjectArgs) -> Result<Scope, String> {
        let (loaded, name) = project_and_name(project, true)?;
        Ok(Scope {
            name,
            declared: loaded.as_ref().map(declared_services),
        })
    }

    /// The project's service containers (stopped ones too) of `services` (all when empty);
    /// unknown service names are errors, and so is a project known by nothing at all.
    async fn select(
        &self,
        cmd: &str,
        client: &Client,
        services: &[String],
    ) -> Result<Vec<Container>, String> {
        let list = project_containers(client, &self.name, true)
            .await
            .map_err(|e| format!("{cmd}: {e}"))?;
        let known: Vec<String> = match &self.declared {
            Some(d) => d.clone(),
            None if list.is_empty() => {
                return Err(format!(
                    "{cmd}: no container found for project {:?}",
                    self.name
                ));
            }
            None => {
                let mut s: Vec<String> = list.iter().map(service_of).collect();
                s.dedup();
                s
            }
        };
        for s in services {
            check_service(cmd, &self.name, &known, s)?;
        }
        Ok(list
            .into_iter()
            .filter(|c| services.is_empty() || services.contains(&service_of(c)))
            .collect())
    }
}

fn service_of(c: &Container) -> String {
    c.labels.get(labels::SERVICE).cloned().unwrap_or_default()
}

/// The container's name without its project, as Compose's log prefixes show it (`web-1`); a
/// `container_name` is shown whole.
fn short_name(c: &Container) -> String {
    let project = c
        .labels
        .get(labels::PROJECT)
        .map(String::as_str)
        .unwrap_or("");
    let number = c
        .labels
        .get(labels::CONTAINER_NUMBER)
        .map(String::as_str)
        .unwrap_or("");
    let default = format!("{project}-{}-{number}", service_of(c));
    if c.name == default {
        c.name[project.len() + 1..].to_string()
    } else {
        c.name.clone()
    }
}

/// Docker's status column: `Up 3 seconds (healthy)`, `Exited (1) 2 minutes ago`, `Created`.
fn status_text(c: &Container) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(crate::runtime::time::parse)
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .map(|d| super::human::duration(d.as_secs()))
            .unwrap_or_default()
    };
    let health = c
        .state
        .health
        .as_deref()
        .map(|h| format!(" ({h})"))
        .unwrap_or_default();
    match c.state.status {
        ContainerStatus::Running => format!("Up {}{health}", since(&c.state.started_at)),
        ContainerStatus::Paused => format!("Up {} (Paused)", since(&c.state.started_at)),
        ContainerStatus::Exited => format!(
            "Exited ({}) {} ago",
            c.state.exit_code.unwrap_or(-1),
            since(&c.state.finished_at)
        ),
        ContainerStatus::Created => "Created".into(),
        ContainerStatus::Dead => "Dead".into(),
        ContainerStatus::Unknown => "Unknown".into(),
    }
}

/// A published port's host side as Compose prints it: `0.0.0.0:8080`, `[::]:8080`.
fn host_address(p: &Port) -> String {
    match p.host_ip.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, p.host_port).to_string(),
        Err(_) => format!("{}:{}", p.host_ip, p.host_port),
    }
}

/// Compose's PORTS column: `127.0.0.1:8080->80/tcp, 0.0.0.0:5353->53/udp`.
fn ports_text(c: &Container) -> String {
    c.ports
        .iter()
        .map(|p| format!("{}->{}/{}", host_address(p), p.container_port, p.protocol))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compose's `Publishers` of `ps --format json`.
fn publishers(c: &Container) -> Vec<serde_json::Value> {
    c.ports
        .iter()
        .map(|p| {
            serde_json::json!({
                "URL": p.host_ip, "TargetPort": p.container_port,
                "PublishedPort": p.host_port, "Protocol": p.protocol,
            })
        })
        .collect()
}

pub fn ps(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &PsArgs,
) -> Result<(), String> {
    let (loaded, name) = project_and_name(project, true)?;
    if let Some(l) = &loaded {
        let declared = declared_services(l);
        for s in &args.only {
            check_service("ps", &name, &declared, s)?;
        }
    }
    for s in &args.status {
        if ![
            "created",
            "running",
            "paused",
            "exited",
            "dead",
            "restarting",
            "removing",
        ]
        .contains(&s.as_str())
        {
            return Err(format!(
                "ps: --status {s:?}: expected created, running, paused, exited or dead"
            ));
        }
    }
    let client = engine_client(engine, hosts)?;
    let mut list = block_on(project_containers(
        &client,
        &name,
        args.all || !args.status.is_empty(),
    ))
    .map_err(|e| format!("start a runtime: {e}"))?
    .map_err(|e| format!("ps: {e}"))?;
    let service = |c: &Container| c.labels.get(labels::SERVICE).cloned().unwrap_or_default();
    list.retain(|c| args.only.is_empty() || args.only.contains(&service(c)));
    list.retain(|c| args.status.is_empty() || args.status.contains(&c.state.status.to_string()));
    let text = if args.quiet {
        list.iter().map(|c| format!("{}\n", c.id)).collect()
    } else if args.services {
        let mut names: Vec<String> = list.iter().map(service).collect();
        names.dedup();
        names.iter().map(|n| format!("{n}\n")).collect()
    } else if args.format == "json" {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|c| {
                serde_json::json!({
                    "ID": c.id, "Name": c.name, "Image": c.image, "Command": c.command.join(" "),
                    "Project": name, "Service": service(c), "State": c.state.status.to_string(),
                    "Health": c.state.health.clone().unwrap_or_default(),
                    "ExitCode": c.state.exit_code.unwrap_or(0), "Status": status_text(c),
                    "Labels": c.labels, "Ports": ports_text(c), "Publishers": publishers(c),
                })
            })
            .collect();
        let mut t = serde_json::to_string(&rows).map_err(|e| e.to_string())?;
        t.push('\n');
        t
    } else if args.format == "table" {
        let mut rows = Vec::new();
        for c in &list {
            let created = crate::runtime::time::parse(&c.created)
                .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                .map(|d| format!("{} ago", super::human::duration(d.as_secs())))
                .unwrap_or_default();
            let mut command = c.command.join(" ");
            if command.chars().count() > 20 {
                command = command.chars().take(19).collect::<String>() + "…";
            }
            rows.push(vec![
                c.name.clone(),
                c.image.clone().unwrap_or_default(),
                format!("\"{command}\""),
                service(c),
                created,
                status_text(c),
                ports_text(c),
            ]);
        }
        super::human::table(
            &[
                "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
            ],
            &rows,
        )
    } else {
        return Err(format!(
            "ps: --format {:?}: expected table or json",
            args.format
        ));
    };
    out(&text).map_err(|e| format!("ps: write: {e}"))
}

pub fn ls(engine: &EngineArgs, hosts: &HostArgs, args: &LsArgs) -> Result<(), String> {
    let client = engine_client(engine, hosts)?;
    let list = block_on(client.list_projects())
        .map_err(|e| format!("start a runtime: {e}"))?
        .map_err(|e| format!("ls: {e}"))?;
    let text = if args.quiet {
        list.iter().map(|p| format!("{}\n", p.name)).collect()
    } else if args.format == "json" {
        let mut t = serde_json::to_string(&list).map_err(|e| e.to_string())?;
        t.push('\n');
        t
    } else {
        let mut rows = Vec::new();
        for p in &list {
            rows.push(vec![
                p.name.clone(),
                p.status.clone(),
                p.config_files.clone(),
            ]);
        }
        super::human::table(&["NAME", "STATUS", "CONFIG FILES"], &rows)
    };
    out(&text).map_err(|e| format!("ls: write: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_as_compose_prints_them() {
        let port = |ip: &str, host: u16, container: u16, proto: &str| Port {
            host_ip: ip.into(),
            host_port: host,
            container_port: container,
            protocol: proto.into(),
        };
        let c = Container {
            id: "0".repeat(64),
            name: "p-web-1".into(),
            image: None,
            image_id: None,
            created: String::new(),
            command: Vec::new(),
            labels: BTreeMap::new(),
            tty: false,
            open_stdin: false,
            stop_signal: "SIGTERM".into(),
            stop_timeout_ms: 10_000,
            state: crate::api::types::ContainerState {
                status: ContainerStatus::Running,
                pid: None,
                started_at: None,
                finished_at: None,
                exit_code: None,
                signal: None,
                oom_killed: false,
                error: None,
                health: None,
            },
            ports: vec![
                port("127.0.0.1", 8080, 80, "tcp"),
                port("::", 8080, 80, "tcp"),
                port("0.0.0.0", 5353, 53, "udp"),
            ],
            details: None,
        };
        assert_eq!(
            ports_text(&c),
            "127.0.0.1:8080->80/tcp, [::]:8080->80/tcp, 0.0.0.0:5353->53/udp"
        );
        assert_eq!(
            publishers(&c)[2],
            serde_json::json!({"URL": "0.0.0.0", "TargetPort": 53, "PublishedPort": 5353,
                "Protocol": "udp"})
        );
    }
}
