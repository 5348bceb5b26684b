//! `/v1/containers`: create, list, inspect, start, stop, kill, pause, unpause, wait, remove and
//! the logs stream, over the engine's container service ([`crate::engine::containers`]).

use std::time::{Duration, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::volumes::with_engine;
use super::{ServerState, ndjson};
use crate::api::error::{ApiError, JsonBody};
use crate::api::types::{Container, ContainerCreate, ContainerExit, ErrorBody, LogLine};
use crate::engine::containers::AUTO_REMOVE_LABEL;
use crate::engine::events::Event;
use crate::engine::project::standalone::{NamedVolume, StandaloneError};
use crate::runtime::config::{BindMount, ContainerConfig, TmpfsMount};
use crate::runtime::lifecycle::{CreateOptions, LifecycleError, LogsOptions, Runtime};
use crate::runtime::logs::{self, Entry, Stream};
use crate::runtime::state::Status;
use crate::runtime::sys::cgroup::Limits;
use crate::runtime::time;
use crate::spec::model;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// The lifecycle's options for a create request.
fn create_options(req: ContainerCreate) -> Result<CreateOptions, ApiError> {
    let absolute = |what: &str, path: &str| {
        if path.starts_with('/') {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "{what} {path:?}: expected an absolute path"
            )))
        }
    };
    let mut binds = Vec::new();
    for b in &req.binds {
        absolute("binds: source", &b.source)?;
        absolute("binds: target", &b.target)?;
        if !std::path::Path::new(&b.source).exists() {
            return Err(ApiError::bad_request(format!(
                "binds: source {:?} does not exist",
                b.source
            )));
        }
        binds.push(BindMount {
            source: b.source.clone().into(),
            target: b.target.clone(),
            read_only: b.read_only,
        });
    }
    let mut tmpfs = Vec::new();
    for t in &req.tmpfs {
        absolute("tmpfs: target", &t.target)?;
        tmpfs.push(TmpfsMount {
            target: t.target.clone(),
            size: t.size,
            mode: t.mode,
        });
    }
    let netns = match req.network.as_deref() {
        // The namespace of the process that starts the container: the host's.
        Some("host") => Some(std::path::PathBuf::from("/proc/self/ns/net")),
        // none: a namespace of its own with only `lo`; a bridge network's namespace is made
        // by the engine (`standalone_parts`, `prepare_standalone`).
        _ => None,
    };
    for d in &req.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::bad_request(format!(
                "dns {d:?}: expected an IP address"
            )));
        }
    }
    let mut labels = req.labels;
    if req.auto_remove {
        labels.insert(AUTO_REMOVE_LABEL.to_string(), "true".to_string());
    }
    let mut limits = Limits {
        memory: req.memory,
        pids_limit: req.pids_limit,
        ..Limits::default()
    };
    if let Some(cpus) = req.cpus {
        limits
            .set_cpus(cpus)
            .map_err(|e| ApiError::bad_request(format!("cpus: {e}")))?;
    }
    Ok(CreateOptions {
        name: req.name,
        image: Some(req.image),
        config: ContainerConfig {
            command: req.command,
            entrypoint: req.entrypoint,
            env: req.env,
            working_dir: req.working_dir,
            user: req.user,
            hostname: req.hostname,
            read_only: req.read_only,
            init: req.init,
            tty: req.tty,
            cap_add: req.cap_add,
            cap_drop: req.cap_drop,
            binds,
            tmpfs,
            netns,
            dns: req.dns,
            // Removed at exit: its writable layer need not survive a crash.
            volatile_rootfs: req.auto_remove,
            ..ContainerConfig::default()
        },
        limits,
        stop_signal: req.stop_signal,
        stop_timeout: req.stop_timeout.map(Duration::from_secs),
        open_stdin: req.open_stdin,
        labels,
        ..CreateOptions::default()
    })
}

/// The bridge network a create request names (`bridge` or a network's name), if any.
fn bridge_network(req: &ContainerCreate) -> Option<String> {
    match req.network.as_deref() {
        None | Some("none" | "default" | "host") => None,
        Some(name) => Some(name.to_string()),
    }
}

/// What a create request asks of the engine besides the container: its bridge network,
/// aliases, named volumes and published ports, checked.
#[allow(clippy::type_complexity)]
fn standalone_parts(
    req: &ContainerCreate,
) -> Result<
    (
        Option<String>,
        Vec<String>,
        Vec<NamedVolume>,
        Vec<model::Port>,
    ),
    ApiError,
> {
    let bridge = bridge_network(req);
    if bridge.is_none() {
        let what = if !req.publish.is_empty() {
            Some("publishing ports")
        } else if !req.network_aliases.is_empty() {
            Some("network aliases")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(ApiError::bad_request(format!(
                "{what} needs a bridge network (network bridge, or one made by network create)"
            )));
        }
    }
    let mut volumes = Vec::new();
    for v in &req.volumes {
        if !v.target.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "volumes: target {:?}: expected an absolute path",
                v.target
            )));
        }
        volumes.push(NamedVolume {
            name: v.name.clone(),
            target: v.target.clone(),
            read_only: v.read_only,
        });
    }
    let mut ports = Vec::new();
    for p in &req.publish {
        let protocol = p.protocol.as_deref().unwrap_or("tcp");
        if !matches!(protocol, "tcp" | "udp") {
            return Err(ApiError::bad_request(format!(
                "publish: protocol {protocol:?}: expected tcp or udp"
            )));
        }
        if !(1..=65535).contains(&p.target) {
            return Err(ApiError::bad_request(format!(
                "publish: container port {}: expected 1-65535",
                p.target
            )));
        }
        // The same check the start makes, before anything is created.
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        crate::network::proxy::PublishRequest::from_long_syntax(
            p.host_ip.as_deref(),
            p.published.as_deref(),
            p.target,
            protocol,
            ip,
        )
        .map_err(|e| ApiError::bad_request(format!("publish: {e}")))?;
        ports.push(model::Port {
            host_ip: p.host_ip.clone(),
            target: p.target,
            published: p.published.clone(),
            protocol: Some(protocol.to_string()),
            ..model::Port::default()
        });
    }
    Ok((bridge, req.network_aliases.clone(), volumes, ports))
}

fn standalone_error(e: StandaloneError) -> ApiError {
    match e {
        StandaloneError::NotFound(m) => ApiError::not_found(m),
        StandaloneError::Invalid(m) => ApiError::bad_request(m),
        StandaloneError::Conflict(m) => ApiError::conflict(m),
        StandaloneError::Failed(m) => ApiError::internal(m),
    }
}

/// Adds the healthcheck's status (the daemon's monitor keeps it in the state dir) and the
/// published ports as bound.
fn with_health(state: &ServerState, mut c: Container) -> Container {
    c.state.health =
        crate::engine::health::read(&state.containers.dir(&c.id)).map(|h| h.status.to_string());
    c.ports = state
        .containers
        .ports(&c.id)
        .into_iter()
        .map(Into::into)
        .collect();
    c
}

/// Creates a container (not started).
#[utoipa::path(post, path = "/v1/containers", tag = "containers", request_body = ContainerCreate,
    responses((status = 201, body = Container), (status = 400, body = ErrorBody),
        (status = 404, description = "no such image", body = ErrorBody),
        (status = 409, description = "name in use", body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<ServerState>,
    JsonBody(req): JsonBody<ContainerCreate>,
) -> Result<(StatusCode, axum::Json<Container>), ApiError> {
    let policy = match req.restart.as_deref() {
        Some(text) => Some(
            crate::engine::restart::Policy::parse(text)
                .map_err(|e| ApiError::bad_request(format!("restart: {e}")))?,
        ),
        None => None,
    };
    let (bridge, aliases, volumes, ports) = standalone_parts(&req)?;
    let image = req.image.clone();
    let mut options = create_options(req)?;
    let mut prepared = None;
    if bridge.is_some() || !volumes.is_empty() {
        let (o, p) = with_engine(&state, move |e| {
            let mut o = options;
            let p = e
                .prepare_standalone(&mut o, &image, bridge.as_deref(), &aliases, &volumes)
                .map_err(standalone_error)?;
            Ok((o, p))
        })
        .await?;
        options = o;
        prepared = Some(p);
    }
    let c = match state.containers.create(options).await {
        Ok(c) => c,
        Err(e) => {
            if let Some(p) = prepared {
                let _ = with_engine(&state, move |e| {
                    e.undo_standalone(p);
                    Ok(())
                })
                .await;
            }
            return Err(e.into());
        }
    };
    if let Err(e) = crate::engine::netsvc::write_ports(&state.containers.dir(&c.meta.id), &ports) {
        let _ = state.containers.remove(&c.meta.id, true, true).await;
        return Err(ApiError::internal(format!(
            "store the published ports: {e}"
        )));
    }
    if let Some(policy) = policy {
        // A container must not outlive a policy it could not get.
        if let Err(e) = state
            .containers
            .set_restart_policy(&c.meta.id, policy)
            .await
        {
            let _ = state.containers.remove(&c.meta.id, true, true).await;
            return Err(e.into());
        }
    }
    Ok((StatusCode::CREATED, axum::Json(c.into())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Also stopped and created containers (default: running and paused only, as `docker ps`).
    #[serde(default)]
    all: bool,
    /// `key` or `key=value`: only containers carrying this label.
    label: Option<String>,
}

/// Containers, oldest first.
#[utoipa::path(get, path = "/v1/containers", tag = "containers", params(ListQuery),
    responses((status = 200, body = Vec<Container>), (status = 400, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<ServerState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<axum::Json<Vec<Container>>, ApiError> {
    let q = query(q)?;
    let label = q.label.as_deref().map(|l| match l.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (l.to_string(), None),
    });
    let all = state.containers.list().await?;
    Ok(axum::Json(
        all.into_iter()
            .filter(|c| q.all || matches!(c.state.status, Status::Running | Status::Paused))
            .filter(|c| {
                label.as_ref().is_none_or(|(k, v)| match v {
                    Some(v) => c.meta.labels.get(k) == Some(v),
                    None => c.meta.labels.contains_key(k),
                })
            })
            .map(|c| with_health(&state, c.into()))
            .collect(),
    ))
}

/// One container, by name, id or unambiguous id prefix, with Docker's inspect document in
/// `details`.
#[utoipa::path(get, path = "/v1/containers/{id}", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix")),
    responses((status = 200, body = Container), (status = 404, body = ErrorBody)))]
pub(super) async fn inspect(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Container>, ApiError> {
    let c = state.containers.inspect(&id).await?;
    let details = super::container_ops::details(&state.containers.dir(&c.meta.id), &c);
    let mut c = with_health(&state, c.into());
    c.details = Some(details);
    Ok(axum::Json(c))
}

/// Starts a created or exited container; returns once its process runs.
#[utoipa::path(post, path = "/v1/containers/{id}/start", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix")),
    responses((status = 200, body = Container), (status = 404, body = ErrorBody),
        (status = 409, description = "already running", body = ErrorBody),
        (status = 500, description = "a Compose post_start hook failed (the container runs)",
            body = ErrorBody)))]
pub(super) async fn start(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Container>, ApiError> {
    let c = state.containers.start(&id).await?;
    state
        .containers
        .post_start(&c)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(c.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct StopQuery {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's).
    timeout: Option<u64>,
}

/// Stops a container: its stop signal, the grace period, then SIGKILL. Stopping a stopped
/// container does nothing.
#[utoipa::path(post, path = "/v1/containers/{id}/stop", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), StopQuery),
    responses((status = 200, body = Container), (status = 404, body = ErrorBody)))]
pub(super) async fn stop(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<StopQuery>, QueryRejection>,
) -> Result<axum::Json<Container>, ApiError> {
    let q = query(q)?;
    let timeout = q.timeout.map(Duration::from_secs);
    Ok(axum::Json(
        state.containers.stop(&id, timeout).await?.into(),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct KillQuery {
    /// A signal name or number (default `SIGKILL`).
    signal: Option<String>,
}

/// Sends a signal to the container's PID 1.
#[utoipa::path(post, path = "/v1/containers/{id}/kill", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), KillQuery),
    responses((status = 200, body = Container), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn kill(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<KillQuery>, QueryRejection>,
) -> Result<axum::Json<Container>, ApiError> {
    let q = query(q)?;
    let signal = q.signal.unwrap_or_else(|| "SIGKILL".into());
    Ok(axum::Json(
        state.containers.kill(&id, &signal).await?.into(),
    ))
}

/// Freezes every process of a running container.
#[utoipa::path(post, path = "/v1/containers/{id}/pause", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix")),
    responses((status = 200, body = Container), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn pause(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Container>, ApiError> {
    Ok(axum::Json(state.containers.pause(&id).await?.into()))
}

/// Thaws a paused container.
#[utoipa::path(post, path = "/v1/containers/{id}/unpause", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix")),
    responses((status = 200, body = Container), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn unpause(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Container>, ApiError> {
    Ok(axum::Json(state.containers.unpause(&id).await?.into()))
}

/// Waits until the container has exited; returns its exit code.
#[utoipa::path(post, path = "/v1/containers/{id}/wait", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix")),
    responses((status = 200, body = ContainerExit), (status = 404, body = ErrorBody)))]
pub(super) async fn wait(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ContainerExit>, ApiError> {
    let st = state.containers.wait(&id).await?;
    Ok(axum::Json(ContainerExit {
        exit_code: st.exit_code.unwrap_or(-1),
        oom_killed: st.oom_killed,
        error: st.error,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveQuery {
    /// Kill a running container first.
    #[serde(default)]
    force: bool,
    /// Also remove its anonymous volumes.
    #[serde(default)]
    v: bool,
}

/// Removes a container: its state dir, cgroup, mounts, name and network namespace (with `v`
/// its anonymous volumes).
#[utoipa::path(delete, path = "/v1/containers/{id}", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), RemoveQuery),
    responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, description = "running (use force)", body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let q = query(q)?;
    state.containers.remove(&id, q.force, q.v).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    /// Keep streaming new lines until the container exits.
    #[serde(default)]
    follow: bool,
    /// Only the last `n` lines (before following).
    tail: Option<usize>,
    /// Only lines written at or after this time (RFC 3339 or Unix seconds).
    since: Option<String>,
}

fn line(e: Entry) -> LogLine {
    LogLine {
        time: e.time,
        stream: match e.stream {
            Stream::Stdout => "stdout".into(),
            Stream::Stderr => "stderr".into(),
        },
        log: e.log,
    }
}

/// The container's log lines, one JSON object per line; with `follow`, until the container
/// exits, the client goes away or the daemon stops.
#[utoipa::path(get, path = "/v1/containers/{id}/logs", tag = "containers",
    params(("id" = String, Path, description = "container name, id or id prefix"), LogsQuery),
    responses((status = 200, description = "newline-delimited JSON log lines", body = LogLine,
        content_type = "application/x-ndjson"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn logs(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let since = match &q.since {
        Some(s) => Some(time::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("since {s:?}: expected RFC 3339 or Unix seconds"))
        })?),
        None => None,
    };
    let id = state.containers.resolve(&id).await?;
    let rt = state.containers.runtime().clone();
    let (tx, rx) = mpsc::channel::<LogLine>(256);
    // Registered before the answer: an auto-removal waits until this stream has read all.
    let reader = state.containers.reader(&id);
    // Subscribed before the state is first read: the container's `die` (or `destroy`) ends a
    // pause of the follower at once instead of at its next poll.
    let wake = Wake {
        events: state.containers.events().subscribe(),
        handle: tokio::runtime::Handle::current(),
    };
    tokio::task::spawn_blocking(move || {
        let _reader = reader;
        if let Err(e) = read_logs(&rt, &id, &q, since, &tx, wake) {
            tracing::warn!(id, error = %e, "stream container logs");
        }
    });
    Ok(ndjson(rx, state.shutdown.clone()))
}

/// Sends the logs to `tx` (blocking); stops when the receiver is gone.
fn read_logs(
    rt: &Runtime,
    id: &str,
    q: &LogsQuery,
    since: Option<SystemTime>,
    tx: &mpsc::Sender<LogLine>,
    mut wake: Wake,
) -> Result<(), LifecycleError> {
    let dir = rt.dir(id);
    let io_err = |source| LifecycleError::Io {
        id: id.to_string(),
        step: "follow the logs",
        path: dir.clone(),
        source,
    };
    // Following starts before the files are read, so no line falls between the two.
    let mut follower = if q.follow {
        Some(logs::Follower::at_end(&dir).map_err(io_err)?)
    } else {
        None
    };
    let mut last = String::new();
    let options = LogsOptions {
        tail: q.tail,
        since,
        ..LogsOptions::default()
    };
    rt.logs(id, &options, &mut |e| {
        last.clone_from(&e.time);
        tx.blocking_send(line(e.clone())).is_ok()
    })?;
    let Some(follower) = follower.as_mut() else {
        return Ok(());
    };
    let since = since.map(time::format);
    // Short polls at first and after output, longer when quiet: a short-lived container's end
    // is seen within milliseconds, an idle one costs a wakeup every 50 ms.
    let mut pause = Duration::from_millis(2);
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        // A created container is followed from its start on; a removed one is done (its
        // open log file is still read to the end).
        let done = match rt.state(id) {
            Ok(st) => matches!(st.status, Status::Exited | Status::Dead),
            Err(LifecycleError::NotFound(_)) => true,
            Err(e) => return Err(e),
        };
        let entries = follower.poll().map_err(io_err)?;
        if !entries.is_empty() {
            pause = Duration::from_millis(2);
        }
        for e in entries {
            if e.time <= last || since.as_ref().is_some_and(|s| e.time < *s) {
                continue;
            }
            if tx.blocking_send(line(e)).is_err() {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
        wake.nap(id, pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// How a log follower learns that its container changed without waiting for its next poll.
struct Wake {
    events: broadcast::Receiver<Event>,
    handle: tokio::runtime::Handle,
}

impl Wake {
    /// Sleeps up to `pause` (blocking); returns early on an event of container `id` (or when
    /// events were missed). Events seen since the last call count, so none falls between a
    /// state read and the nap.
    fn nap(&mut self, id: &str, pause: Duration) {
        let events = &mut self.events;
        let changed = async {
            loop {
                match events.recv().await {
                    Ok(e) if e.kind == "container" && e.id == id => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        self.handle.block_on(async {
            let _ = tokio::time::timeout(pause, changed).await;
        });
    }
}
