//! The axum routes of the REST API and the OpenAPI document generated from them. Handlers are
//! thin: they validate, call the store or the engine (blocking work off the async threads) and
//! publish events; the daemon ([`crate::engine::daemon`]) serves this router on each listener,
//! with bearer-token auth on TCP. Containers' routes are in [`containers`] (lifecycle) and
//! [`container_ops`] (restart, top, stats, archive, commit), images' in [`images`]; streaming
//! endpoints answer newline-delimited JSON ([`ndjson`]); exec and attach switch the connection
//! to a framed stream ([`exec`]).

mod build;
mod container_ops;
mod containers;
mod df;
mod exec;
mod image_archive;
mod images;
mod networks;
mod project_sync;
mod projects;
mod volumes;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use utoipa::OpenApi;

use super::error::{ApiError, MAX_BODY};
use super::types::{
    Bind, BuildOptions, BuildProgress, BuildPruned, CommitResult, Container, ContainerCommit,
    ContainerCreate, ContainerExit, ContainerState, ContainerStats, ContainerStatus, ContainerTop,
    Counts, DiskUsage, ErrorBody, ErrorCode, Event, ExecCreate, ExecDetached, Image, ImageHistory,
    ImageLoaded, ImagePull, ImagePushed, ImageRemoved, ImageTag, Info, LogLine, Network,
    NetworkConnect, NetworkContainer, NetworkCreate, NetworkDisconnect, NetworkIpam,
    NetworksPruned, Port, ProjectDown, ProjectProgress, ProjectRun, ProjectSummary, ProjectUp,
    PublishPort, PullProgress, PushProgress, Tmpfs, UsageSummary, Version, Volume, VolumeCreate,
    VolumeMount, VolumesPruned,
};
use crate::engine::config::DaemonConfig;
use crate::engine::containers::Containers;
use crate::engine::events::{EventBus, EventFilter, parse_time};
use crate::runtime::state::Status;
use crate::store::{NetworkRecord, ProjectRecord, Store, VolumeRecord};

/// What every handler reaches: the store, the event bus, the daemon's settings.
#[derive(Debug, Clone)]
pub struct ServerState {
    pub store: Arc<Store>,
    pub events: EventBus,
    pub data_root: PathBuf,
    /// The containers of the data root.
    pub containers: Arc<Containers>,
    /// The daemon's configuration (registries for pulls).
    pub config: Arc<DaemonConfig>,
    /// `up` and `down` of projects.
    pub reconciler: Arc<crate::engine::reconcile::Reconciler>,
    /// Turns true when the daemon shuts down: streaming responses end then.
    pub shutdown: watch::Receiver<bool>,
}

/// The API router; with `token`, every request must carry `Authorization: Bearer <token>`.
pub fn router(state: ServerState, token: Option<Arc<str>>) -> Router {
    let router = Router::new()
        .route("/v1/version", get(version))
        .route("/v1/info", get(info))
        .route("/v1/events", get(events))
        .route(
            "/v1/containers",
            get(containers::list).post(containers::create),
        )
        .route(
            "/v1/containers/{id}",
            get(containers::inspect).delete(containers::remove),
        )
        .route("/v1/containers/{id}/start", post(containers::start))
        .route("/v1/containers/{id}/stop", post(containers::stop))
        .route("/v1/containers/{id}/kill", post(containers::kill))
        .route("/v1/containers/{id}/pause", post(containers::pause))
        .route("/v1/containers/{id}/unpause", post(containers::unpause))
        .route("/v1/containers/{id}/wait", post(containers::wait))
        .route("/v1/containers/{id}/logs", get(containers::logs))
        .route("/v1/containers/{id}/restart", post(container_ops::restart))
        .route("/v1/containers/{id}/top", get(container_ops::top))
        .route("/v1/containers/{id}/stats", get(container_ops::stats))
        .route(
            "/v1/containers/{id}/archive",
            get(container_ops::archive_get).put(container_ops::archive_put),
        )
        .route("/v1/containers/{id}/commit", post(container_ops::commit))
        .route("/v1/containers/{id}/exec", post(exec::exec))
        .route("/v1/containers/{id}/attach", post(exec::attach))
        .route("/v1/projects", get(projects::list))
        .route("/v1/projects/{name}/up", post(projects::up))
        .route("/v1/projects/{name}/down", post(projects::down))
        .route("/v1/projects/{name}/run", post(projects::run))
        .route("/v1/projects/{name}/sync", post(project_sync::sync))
        .route("/v1/images", get(images::list))
        .route("/v1/images/pull", post(images::pull))
        .route("/v1/images/prune", post(images::prune))
        .route("/v1/images/save", get(image_archive::save))
        .route("/v1/images/load", post(image_archive::load))
        .route("/v1/images/import", post(image_archive::import))
        .route("/v1/build", post(build::build))
        .route("/v1/build/prune", post(build::prune))
        .route(
            "/v1/images/{name}",
            get(images::inspect).delete(images::remove),
        )
        .route("/v1/images/{name}/tag", post(images::tag))
        .route("/v1/images/{name}/push", post(images::push))
        .route("/v1/images/{name}/history", get(images::history))
        .route("/v1/volumes", get(volumes::list).post(volumes::create))
        .route("/v1/volumes/prune", post(volumes::prune))
        .route(
            "/v1/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/v1/networks", get(networks::list).post(networks::create))
        .route("/v1/networks/prune", post(networks::prune))
        .route("/v1/networks/{name}/connect", post(networks::connect))
        .route("/v1/networks/{name}/disconnect", post(networks::disconnect))
        .route(
            "/v1/networks/{name}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/v1/system/df", get(df::df))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    match token {
        Some(token) => router.layer(middleware::from_fn_with_state(token, require_token)),
        None => router,
    }
}

async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::unauthorized("wrong bearer token").into_response(),
        None => ApiError::unauthorized("a bearer token is required on TCP").into_response(),
    }
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs a store call on the blocking pool (commits wait for the disk).
async fn with_store<T, F>(state: &ServerState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
{
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(format!("state database task: {e}")))?
        .map_err(ApiError::from)
}

/// The daemon's version.
#[utoipa::path(get, path = "/v1/version", tag = "system",
    responses((status = 200, body = Version)))]
async fn version() -> axum::Json<Version> {
    axum::Json(Version::current())
}

/// The daemon, its data root and its host.
#[utoipa::path(get, path = "/v1/info", tag = "system",
    responses((status = 200, body = Info), (status = 500, body = ErrorBody)))]
async fn info(State(state): State<ServerState>) -> Result<axum::Json<Info>, ApiError> {
    let (mut counts, schema_version) = with_store(&state, |s| {
        Ok((
            Counts {
                networks: s.count::<NetworkRecord>()?,
                volumes: s.count::<VolumeRecord>()?,
                projects: s.count::<ProjectRecord>()?,
                ..Counts::default()
            },
            s.schema_version()?,
        ))
    })
    .await?;
    let containers = state.containers.list().await?;
    counts.containers = containers.len() as u64;
    counts.running = containers
        .iter()
        .filter(|c| matches!(c.state.status, Status::Running | Status::Paused))
        .count() as u64;
    let root = state.data_root.clone();
    counts.images = tokio::task::spawn_blocking(move || {
        crate::image::store::Store::open(&root)
            .ok()
            .and_then(|s| crate::image::manage::list(&s).ok())
            .map_or(0, |l| l.len() as u64)
    })
    .await
    .unwrap_or(0);
    Ok(axum::Json(Info {
        version: Version::current(),
        data_root: state.data_root.display().to_string(),
        schema_version,
        counts,
        cgroup_version: cgroup_version().to_string(),
        kernel: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        pid: std::process::id(),
        cgroup_prefix: state.containers.runtime().prefix().to_string(),
        watching: state.containers.watching() as u64,
    }))
}

/// `v2` when the unified hierarchy is mounted at /sys/fs/cgroup, else `v1` (legacy or hybrid).
pub fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Replay logged events from this time (RFC 3339 or Unix seconds), then go on live.
    since: Option<String>,
    /// End the stream after this time (RFC 3339 or Unix seconds); a past time only replays.
    until: Option<String>,
    /// JSON object of string lists: `{"type":["container"],"event":["die"],"container":["web"]}`
    /// (keys: type, event, container, image, volume, network, id, name).
    filters: Option<String>,
}

/// Events, one JSON object per line: the logged ones from `since`, then live ones until the
/// client goes away, `until` passes or the daemon stops.
#[utoipa::path(get, path = "/v1/events", tag = "system", params(EventsQuery),
    responses((status = 200, description = "newline-delimited JSON events", body = Event,
        content_type = "application/x-ndjson"), (status = 400, body = ErrorBody)))]
async fn events(
    State(state): State<ServerState>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let since = q.since.as_deref().map(parse_time).transpose()?;
    let until = q.until.as_deref().map(parse_time).transpose()?;
    let filter = EventFilter::parse(q.filters.as_deref().unwrap_or(""))?;
    // Subscribe before reading the log: nothing falls between the two (duplicates are
    // recognized by their sequence number).
    let mut rx = state.events.subscribe();
    let replayed = match since {
        Some(since) => {
            let bus = state.events.clone();
            let f = filter.clone();
            tokio::task::spawn_blocking(move || bus.replay(Some(since), until, &f))
                .await
                .map_err(|e| ApiError::internal(format!("event log task: {e}")))?
                .map_err(|e| ApiError::internal(format!("read the event log: {e}")))?
        }
        None => Vec::new(),
    };
    let after = replayed.last().map_or(0, |e| e.seq);
    let (tx, out) = mpsc::channel::<Event>(256);
    let mut stop = state.shutdown.clone();
    tokio::spawn(async move {
        for e in replayed {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        let now = crate::store::now_ms();
        if until.is_some_and(|u| u < now) {
            return;
        }
        let deadline = until.map(|u| {
            tokio::time::Instant::now() + std::time::Duration::from_millis(u.saturating_sub(now))
        });
        let ended = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(ended);
        loop {
            let event = tokio::select! {
                _ = &mut ended => return,
                _ = tx.closed() => return,
                _ = stop.wait_for(|stopping| *stopping) => return,
                r = rx.recv() => match r {
                    Ok(e) if e.seq <= after || !filter.matches(&e) => continue,
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Event::now("daemon", "lagged", "", "").with("missed", n)
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    Ok(ndjson(out, state.shutdown.clone()))
}

/// A streaming response of newline-delimited JSON: one line per item received, until the
/// sender is gone or the daemon stops. A client that goes away drops the receiver, which the
/// producer notices at its next send.
pub(crate) fn ndjson<T: Serialize + Send + 'static>(
    rx: mpsc::Receiver<T>,
    shutdown: watch::Receiver<bool>,
) -> Response {
    let stream = futures_util::stream::unfold((rx, shutdown), |(mut rx, mut stop)| async move {
        loop {
            let item = tokio::select! {
                _ = stop.wait_for(|stopping| *stopping) => return None,
                item = rx.recv() => item?,
            };
            let Ok(mut line) = serde_json::to_vec(&item) else {
                continue;
            };
            line.push(b'\n');
            return Some((Ok::<_, Infallible>(Bytes::from(line)), (rx, stop)));
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "the OpenAPI document")))]
async fn openapi_json() -> Response {
    match openapi().to_pretty_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError::internal(format!("render the OpenAPI document: {e}")).into_response(),
    }
}

/// Adds the bearer security scheme; drops the empty license taken from Cargo.toml.
struct Tidy;

impl utoipa::Modify for Tidy {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.license = None;
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flotilla engine API",
        description = "The daemon's REST API. On the unix socket no authentication; on TCP every \
                       request needs `Authorization: Bearer <token>` (the `[api] token` of the \
                       daemon's config). Errors are `{\"code\", \"message\"}` with a stable code."
    ),
    paths(version, info, events, volumes::create, volumes::list, volumes::inspect,
        volumes::remove, volumes::prune, networks::create, networks::list, networks::inspect,
        networks::remove, networks::prune, networks::connect, networks::disconnect, df::df,
        containers::create, containers::list, containers::inspect, containers::start,
        containers::stop, containers::kill, containers::pause, containers::unpause,
        containers::wait, containers::remove, containers::logs, container_ops::restart,
        container_ops::top, container_ops::stats, container_ops::archive_get,
        container_ops::archive_put, container_ops::commit, exec::exec, exec::attach, projects::up, projects::down,
        projects::run, projects::list, project_sync::sync, images::list, images::inspect,
        images::remove, images::pull, images::tag, images::push, images::prune, images::history,
        image_archive::save, image_archive::load, image_archive::import, build::build,
        build::prune, openapi_json),
    components(schemas(ErrorBody, ErrorCode, Container, ContainerCreate, ContainerExit, Port,
        ExecCreate, ExecDetached, Bind, Tmpfs, VolumeMount, PublishPort, ContainerTop, ContainerStats, ContainerCommit, CommitResult,
        ContainerState, ContainerStatus, LogLine, Image, ImagePull, ImageRemoved, PullProgress,
        ImageTag, PushProgress, ImagePushed, ImageHistory, ImageLoaded,
        ProjectUp, ProjectDown, ProjectRun, ProjectProgress, ProjectSummary, Volume,
        VolumeCreate, VolumesPruned, Network, NetworkCreate, NetworkIpam, NetworkContainer,
        NetworkConnect, NetworkDisconnect, NetworksPruned, DiskUsage, UsageSummary,
        crate::api::sync::ProjectSync, crate::api::sync::SyncFile,
        crate::api::sync::ProjectSynced, BuildOptions, BuildProgress, BuildPruned)),
    modifiers(&Tidy)
)]
struct ApiDoc;

/// The OpenAPI document of this API (`schemas/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn openapi_has_every_route() {
        let doc = openapi();
        for p in [
            "/v1/version",
            "/v1/info",
            "/v1/events",
            "/v1/volumes",
            "/v1/volumes/{name}",
            "/v1/containers",
            "/v1/containers/{id}",
            "/v1/containers/{id}/start",
            "/v1/containers/{id}/stop",
            "/v1/containers/{id}/kill",
            "/v1/containers/{id}/pause",
            "/v1/containers/{id}/unpause",
            "/v1/containers/{id}/wait",
            "/v1/containers/{id}/logs",
            "/v1/containers/{id}/restart",
            "/v1/containers/{id}/top",
            "/v1/containers/{id}/stats",
            "/v1/containers/{id}/archive",
            "/v1/containers/{id}/commit",
            "/v1/images",
            "/v1/images/{name}",
            "/v1/images/pull",
            "/v1/volumes/prune",
            "/v1/networks",
            "/v1/networks/{name}",
            "/v1/networks/prune",
            "/v1/networks/{name}/connect",
            "/v1/networks/{name}/disconnect",
            "/v1/system/df",
            "/v1/images/prune",
            "/v1/images/save",
            "/v1/images/load",
            "/v1/images/import",
            "/v1/images/{name}/tag",
            "/v1/images/{name}/push",
            "/v1/images/{name}/history",
            "/v1/build",
            "/v1/build/prune",
        ] {
            assert!(doc.paths.paths.contains_key(p), "{p} missing");
        }
    }
}
