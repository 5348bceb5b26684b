//! `start`, `stop`, `restart`, `kill`, `pause`, `unpause`, `rm`, `wait` on `[SERVICE...]` (all
//! services when none), and `compose events` / `compose images`. Each acts on the project's
//! containers through the container API, all at once, and prints Compose's progress lines
//! (` Container demo-web-1  Stopping`, then `Stopped` as each one is done); a container that
//! fails is reported with the daemon's reason and makes the exit code 1, the others carry on.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::Args;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::super::system::{HostArgs, engine_client};
use super::super::{EngineArgs, ProjectArgs, out};
use super::{Scope, render, service_of};
use crate::api::client::{Client, EventsQuery, block_on};
use crate::api::types::{Container, ContainerStatus, ProjectProgress};
use crate::engine::events::EventFilter;
use crate::plan::labels;

#[derive(Args, Debug, Clone, Default)]
pub struct ServicesArgs {
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct StopArgs {
    /// Seconds to wait for each container to stop before killing it
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct KillArgs {
    /// The signal (name or number)
    #[arg(short = 's', long, default_value = "SIGKILL")]
    pub signal: String,
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RmArgs {
    /// Do not ask (nothing is asked anyway: only stopped containers are removed; `-f` after
    /// `rm`)
    #[arg(long)]
    pub force: bool,
    /// Stop the running containers first, then remove them too
    #[arg(short = 's', long)]
    pub stop: bool,
    /// Also remove the containers' anonymous volumes
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct WaitArgs {
    /// Then take the project down (`down`)
    #[arg(long)]
    pub down_project: bool,
    /// The services whose containers to wait for
    #[arg(value_name = "SERVICE", required = true)]
    pub services: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct EventsArgs {
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ImagesArgs {
    /// Only the image ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// Prints one progress line about a container.
fn progress(c: &Container, status: &str, detail: Option<String>, since: Instant) {
    let p = ProjectProgress {
        kind: "container".into(),
        name: c.name.clone(),
        service: Some(service_of(c)),
        status: status.into(),
        detail,
        elapsed_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    if let Some(text) = render(&p, false) {
        if status == "Error" {
            eprint!("{text}");
        } else {
            let _ = out(&text);
        }
    }
}

/// Runs `op` on every container at once: `working` for each first, then `done` (or the error)
/// as each one ends. False when one failed.
pub(super) async fn each<F, Fut>(containers: &[Container], working: &str, done: &str, op: F) -> bool
where
    F: Fn(&Container) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    for c in containers {
        progress(c, working, None, start);
    }
    let mut running: FuturesUnordered<_> = containers
        .iter()
        .map(|c| {
            let fut = op(c);
            async move { (c, fut.await) }
        })
        .collect();
    let mut ok = true;
    while let Some((c, r)) = running.next().await {
        match r {
            Ok(()) => progress(c, done, None, start),
            Err(e) => {
                ok = false;
                progress(c, "Error", Some(e), start);
            }
        }
    }
    ok
}

fn is_up(c: &Container) -> bool {
    matches!(
        c.state.status,
        ContainerStatus::Running | ContainerStatus::Paused
    )
}

/// Stops these containers at once (the running and paused ones), with Compose's lines.
pub(super) async fn stop_all(client: &Client, list: &[Container], timeout: Option<u64>) -> bool {
    let up: Vec<Container> = list.iter().filter(|c| is_up(c)).cloned().collect();
    each(&up, "Stopping", "Stopped", |c| {
        let client = client.clone();
        let id = c.id.clone();
        async move {
            client
                .stop_container(&id, timeout)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await
}

/// Sends SIGKILL to these containers at once, with Compose's lines.
pub(super) async fn kill_all(client: &Client, list: &[Container]) -> bool {
    each(list, "Killing", "Killed", |c| {
        let client = client.clone();
        let id = c.id.clone();
        async move {
            match client.kill_container(&id, None).await {
                Ok(_) => Ok(()),
                // Already stopped meanwhile: nothing to kill.
                Err(e) if e.code() == Some(crate::api::types::ErrorCode::Conflict) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Runs `body` with the client and the selected containers; `Ok(1)` when an action failed.
fn with_containers<B, Fut>(
    cmd: &'static str,
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    services: &[String],
    body: B,
) -> Result<u8, String>
where
    B: FnOnce(Client, Vec<Container>) -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    let scope = Scope::of(project)?;
    let client = engine_client(engine, hosts)?;
    block_on(async {
        let list = scope.select(cmd, &client, services).await?;
        body(client, list).await.map(|ok| u8::from(!ok))
    })
    .map_err(|e| format!("start a runtime: {e}"))?
}

pub fn start(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &ServicesArgs,
) -> Result<u8, String> {
    with_containers(
        "start",
        engine,
        hosts,
        project,
        &args.services,
        |client, list| async move {
            for s in &args.services {
                if !list.iter().any(|c| service_of(c) == *s) {
                    return Err(format!("start: service {s:?} has no container to start"));
                }
            }
            if list.is_empty() && args.services.is_empty() {
                return Err("start: no containers to start".into());
            }
            let stopped: Vec<Container> = list.into_iter().filter(|c| !is_up(c)).collect();
            Ok(each(&stopped, "Starting", "Started", |c| {
                let client = client.clone();
                let id = c.id.clone();
                async move {
                    client
                        .start_container(&id)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
            .await)
        },
    )
}

/// `stop`, or `restart` (stop, then start, every selected container).
pub fn stop(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &StopArgs,
    restart: bool,
) -> Result<u8, String> {
    let cmd = if restart { "restart" } else { "stop" };
    with_containers(
        cmd,
        engine,
        hosts,
        project,
        &args.services,
        |client, list| async move {
            if !restart {
                return Ok(stop_all(&client, &list, args.timeout).await);
            }
            Ok(each(&list, "Restarting", "Started", |c| {
                let client = client.clone();
                let id = c.id.clone();
                let up = is_up(c);
                async move {
                    if up {
                        client
                            .stop_container(&id, args.timeout)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    client
                        .start_container(&id)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
            .await)
        },
    )
}

pub fn kill(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &KillArgs,
) -> Result<u8, String> {
    with_containers(
        "kill",
        engine,
        hosts,
        project,
        &args.services,
        |client, list| async move {
            let running: Vec<Container> = list
                .into_iter()
                .filter(|c| c.state.status == ContainerStatus::Running)
                .collect();
            if running.is_empty() {
                eprintln!("no container to kill");
                return Ok(true);
            }
            Ok(each(&running, "Killing", "Killed", |c| {
                let client = client.clone();
                let id = c.id.clone();
                let signal = args.signal.clone();
                async move {
                    client
                        .kill_container(&id, Some(&signal))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
            .await)
        },
    )
}

/// `pause`, or `unpause` (`pause` false).
pub fn pause(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &ServicesArgs,
    pause: bool,
) -> Result<u8, String> {
    let (cmd, from, working, done) = if pause {
        ("pause", ContainerStatus::Running, "Pausing", "Paused")
    } else {
        ("unpause", ContainerStatus::Paused, "Unpausing", "Unpaused")
    };
    with_containers(
        cmd,
        engine,
        hosts,
        project,
        &args.services,
        |client, list| async move {
            let targets: Vec<Container> = list
                .into_iter()
                .filter(|c| c.state.status == from)
                .collect();
            Ok(each(&targets, working, done, |c| {
                let client = client.clone();
                let id = c.id.clone();
                async move {
                    let r = if pause {
                        client.pause_container(&id).await
                    } else {
                        client.unpause_container(&id).await
                    };
                    r.map(|_| ()).map_err(|e| e.to_string())
                }
            })
            .await)
        },
    )
}

pub fn rm(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &RmArgs,
) -> Result<u8, String> {
    with_containers(
        "rm",
        engine,
        hosts,
        project,
        &args.services,
        |client, list| async move {
            let mut ok = true;
            let list = if args.stop {
                ok = stop_all(&client, &list, None).await;
                let refreshed = list.iter().map(|c| client.inspect_container(&c.id));
                futures_util::future::join_all(refreshed)
                    .await
                    .into_iter()
                    .filter_map(Result::ok)
                    .collect()
            } else {
                list
            };
            let stopped: Vec<Container> = list.into_iter().filter(|c| !is_up(c)).collect();
            if stopped.is_empty() {
                eprintln!("No stopped containers");
                return Ok(ok);
            }
            let volumes = args.volumes;
            let removed = each(&stopped, "Removing", "Removed", |c| {
                let client = client.clone();
                let id = c.id.clone();
                async move {
                    client
                        .remove_container_with(&id, false, volumes)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await;
            Ok(ok && removed)
        },
    )
}

pub fn wait(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &WaitArgs,
) -> Result<u8, String> {
    let scope = Scope::of(project)?;
    let client = engine_client(engine, hosts)?;
    let code = block_on(async {
        let list = scope.select("wait", &client, &args.services).await?;
        if list.is_empty() {
            return Err(format!("wait: no containers for project {:?}", scope.name));
        }
        let mut waits: FuturesUnordered<_> =
            list.iter().map(|c| client.wait_container(&c.id)).collect();
        match waits.next().await {
            Some(Ok(exit)) => Ok(exit.exit_code),
            Some(Err(e)) => Err(format!("wait: {e}")),
            None => Ok(0),
        }
    })
    .map_err(|e| format!("start a runtime: {e}"))??;
    if args.down_project {
        super::down(engine, hosts, project, &super::DownArgs::default())?;
    }
    Ok(exit_byte(code))
}

/// An exit code as a process's (Docker's -1 for "unknown" becomes 255).
pub(super) fn exit_byte(code: i32) -> u8 {
    u8::try_from(code.rem_euclid(256)).unwrap_or(255)
}

/// The project's container events, live: the daemon's container events whose container
/// belongs to the project (by its labels; new containers are looked up once).
pub fn events(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &EventsArgs,
) -> Result<u8, String> {
    let scope = Scope::of(project)?;
    let client = engine_client(engine, hosts)?;
    block_on(async {
        let mut filters = EventFilter::default();
        filters
            .add("type", "container")
            .map_err(|e| format!("events: {e}"))?;
        // Subscribed before listing, so no container is missed between the two.
        let mut stream = client
            .events_with(&EventsQuery {
                filters,
                ..EventsQuery::default()
            })
            .await
            .map_err(|e| format!("events: {e}"))?;
        // id → service (None: not one of the project's service containers).
        let mut members: HashMap<String, Option<String>> = HashMap::new();
        let list = super::project_containers(&client, &scope.name, true)
            .await
            .map_err(|e| format!("events: {e}"))?;
        if let Some(d) = &scope.declared {
            for s in &args.services {
                super::check_service("events", &scope.name, d, s)?;
            }
        }
        for c in &list {
            members.insert(c.id.clone(), Some(service_of(c)));
        }
        while let Some(e) = stream.next().await {
            let e = e.map_err(|e| format!("events: {e}"))?;
            if !members.contains_key(&e.id) {
                let service = client
                    .inspect_container(&e.id)
                    .await
                    .ok()
                    .filter(|c| {
                        c.labels.get(labels::PROJECT) == Some(&scope.name)
                            && c.labels.get(labels::ONEOFF).map(String::as_str)
                                != Some(labels::TRUE)
                    })
                    .map(|c| service_of(&c));
                members.insert(e.id.clone(), service);
            }
            let Some(Some(service)) = members.get(&e.id) else {
                continue;
            };
            if !args.services.is_empty() && !args.services.contains(service) {
                continue;
            }
            let mut attributes = e.attributes.clone();
            attributes.insert("name".into(), e.name.clone());
            attributes.insert("service".into(), service.clone());
            let t = UNIX_EPOCH + Duration::from_millis(e.time);
            let text = if args.json {
                let v = serde_json::json!({
                    "time": crate::runtime::time::format(t),
                    "type": "container",
                    "service": service,
                    "id": e.id,
                    "action": e.action,
                    "attributes": attributes,
                });
                format!("{v}\n")
            } else {
                let attrs: Vec<String> =
                    attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{} container {} {} ({})\n",
                    crate::runtime::time::format(t),
                    e.action,
                    e.id,
                    attrs.join(", ")
                )
            };
            out(&text).map_err(|e| format!("events: write: {e}"))?;
        }
        Ok(0)
    })
    .map_err(|e| format!("start a runtime: {e}"))?
}

/// `repository:tag` → (repository, tag); a digest or no tag gives `<none>`/`latest`.
fn split_reference(name: &str) -> (String, String) {
    let name = name.split('@').next().unwrap_or(name);
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (
            name[..slash + i].to_string(),
            name[slash + i + 1..].to_string(),
        ),
        None => (name.to_string(), "latest".to_string()),
    }
}

pub fn images(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &ImagesArgs,
) -> Result<u8, String> {
    let scope = Scope::of(project)?;
    let client = engine_client(engine, hosts)?;
    let (list, images) = block_on(async {
        let list = scope.select("images", &client, &args.services).await?;
        let images = client
            .list_images()
            .await
            .map_err(|e| format!("images: {e}"))?;
        Ok::<_, String>((list, images))
    })
    .map_err(|e| format!("start a runtime: {e}"))??;
    let by_id: BTreeMap<&str, &crate::api::types::Image> =
        images.iter().map(|i| (i.id.as_str(), i)).collect();
    let short = |id: &str| {
        id.strip_prefix("sha256:")
            .unwrap_or(id)
            .chars()
            .take(12)
            .collect::<String>()
    };
    let text = if args.quiet {
        let mut ids: Vec<String> = list
            .iter()
            .filter_map(|c| c.image_id.as_deref().map(short))
            .collect();
        ids.sort();
        ids.dedup();
        ids.iter().map(|i| format!("{i}\n")).collect()
    } else {
        let rows: Vec<(String, String, String, String, u64)> = list
            .iter()
            .map(|c| {
                let (repo, tag) = split_reference(c.image.as_deref().unwrap_or(""));
                let id = c.image_id.clone().unwrap_or_default();
                let size = by_id.get(id.as_str()).map_or(0, |i| i.size);
                (c.name.clone(), repo, tag, id, size)
            })
            .collect();
        match args.format.as_str() {
            "json" => {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(c, r, t, i, s)| {
                        serde_json::json!({
                            "ContainerName": c, "Repository": r, "Tag": t, "ID": i, "Size": s,
                        })
                    })
                    .collect();
                format!("{}\n", serde_json::Value::Array(v))
            }
            "table" => {
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|(c, r, t, i, s)| {
                        vec![
                            c.clone(),
                            r.clone(),
                            t.clone(),
                            short(i),
                            super::super::human::size(*s),
                        ]
                    })
                    .collect();
                super::super::human::table(
                    &["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"],
                    &rows,
                )
            }
            f => return Err(format!("images: --format {f:?}: expected table or json")),
        }
    };
    out(&text).map_err(|e| format!("images: write: {e}"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_exit_codes() {
        assert_eq!(
            split_reference("flotilla.test/busybox:1.36"),
            ("flotilla.test/busybox".into(), "1.36".into())
        );
        assert_eq!(
            split_reference("localhost:5000/web"),
            ("localhost:5000/web".into(), "latest".into())
        );
        assert_eq!(exit_byte(3), 3);
        assert_eq!(exit_byte(-1), 255);
        assert_eq!(exit_byte(256 + 7), 7);
    }
}
