//! The Compose commands on a project: `up`, `down`, `ps`, `ls`. The stack is loaded here, in
//! the client (like `docker compose`: paths, `.env` and the process environment are the
//! user's), and sent to the daemon as its canonical model; the daemon plans and converges, and
//! streams each step back (`api::types::ProjectProgress`), rendered as Compose's plain lines.

use std::collections::BTreeMap;

use clap::Args;

use super::system::{HostArgs, engine_client};
use super::{EngineArgs, ProjectArgs, out, warn};
use crate::api::client::{Client, block_on};
use crate::api::types::{Container, ContainerStatus, ProjectDown, ProjectProgress, ProjectUp};
use crate::plan::labels;
use crate::spec::load::{self, Loaded};

#[derive(Args, Debug, Clone, Default)]
pub struct UpArgs {
    /// Detached: return once the containers run (attached mode is not there yet: `up` always
    /// detaches)
    #[arg(short = 'd', long)]
    pub detach: bool,
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
fn load_stack(project: &ProjectArgs) -> Result<Loaded, String> {
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

/// Prints the stream; the result is the `done` line's.
async fn follow(
    mut stream: crate::api::client::JsonStream<ProjectProgress>,
    verbose: bool,
) -> Result<(), String> {
    let mut last: Option<ProjectProgress> = None;
    while let Some(item) = stream.next().await {
        let p = item.map_err(|e| e.to_string())?;
        if let Some(text) = render(&p, verbose) {
            if p.status == "Error" {
                eprint!("{text}");
            } else {
                out(&text).map_err(|e| e.to_string())?;
            }
        }
        if p.kind == "done" {
            last = Some(p);
        }
    }
    match last {
        Some(p) if p.status == "ok" => Ok(()),
        Some(p) => Err(p.detail.unwrap_or_else(|| "failed".into())),
        None => Err("the daemon ended the stream early".into()),
    }
}

pub fn up(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &UpArgs,
) -> Result<(), String> {
    let loaded = load_stack(project)?;
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
    let req = ProjectUp {
        project: loaded.config.clone(),
        config_files: config_files(&loaded),
        working_dir: loaded.project_dir.display().to_string(),
        services: args.services.clone(),
        no_deps: args.no_deps,
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        scale,
        remove_orphans: args.remove_orphans,
        pull: args.pull.clone(),
        no_start: args.no_start,
        dry_run: args.dry_run,
        wait: args.wait,
        wait_timeout: args.wait_timeout,
    };
    let client = engine_client(engine, hosts)?;
    let name = loaded.name.clone();
    block_on(async {
        let stream = client
            .project_up(&name, &req)
            .await
            .map_err(|e| format!("up: {e}"))?;
        follow(stream, args.verbose || args.dry_run)
            .await
            .map_err(|e| format!("up: project {name}: {e}"))
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
        follow(stream, true)
            .await
            .map_err(|e| format!("down: project {name}: {e}"))
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

pub fn ps(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &PsArgs,
) -> Result<(), String> {
    let (loaded, name) = project_and_name(project, true)?;
    if let Some(l) = &loaded {
        let known: Vec<&String> = l
            .config
            .get("services")
            .and_then(|s| s.as_object())
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        for s in &args.only {
            if !known.contains(&s) {
                return Err(format!("ps: no such service: {s}"));
            }
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
                    "Labels": c.labels,
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
            ]);
        }
        super::human::table(
            &["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS"],
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
