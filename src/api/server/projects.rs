//! `/v1/projects`: `up` and `down` of a project (the reconciler, streamed as newline-delimited
//! [`ProjectProgress`] lines, the last one `done`), `run` (a one-off container, answered once
//! started), and the projects known by their containers' labels.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use tokio::sync::mpsc;

use super::{ServerState, ndjson};
use crate::api::error::{ApiError, JsonBody};
use crate::api::types::{
    Container, ProjectDown, ProjectProgress, ProjectRun, ProjectSummary, ProjectUp,
};
use crate::engine::reconcile::{Reconciler, RunError};
use crate::plan::labels;
use crate::spec::units::check_project_name;

fn checked(name: &str) -> Result<(), ApiError> {
    check_project_name(name).map_err(|e| ApiError::bad_request(format!("project name: {e}")))
}

/// Checks the name and that the project is free, then runs `op` (an `up` or a `down`) in the
/// background and streams its progress.
fn streamed<F, Fut>(state: &ServerState, name: String, op: F) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<Reconciler>, String, mpsc::Sender<ProjectProgress>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    checked(&name)?;
    state
        .reconciler
        .check_free(&name)
        .map_err(ApiError::conflict)?;
    let (tx, rx) = mpsc::channel::<ProjectProgress>(1024);
    tokio::spawn(op(state.reconciler.clone(), name, tx));
    Ok(ndjson(rx, state.shutdown.clone()))
}

/// Converges a project to the stack sent: creates, recreates, starts and removes what the
/// plan says, streaming each step.
#[utoipa::path(post, path = "/v1/projects/{name}/up", tag = "projects", request_body = ProjectUp,
    params(("name" = String, Path, description = "the project's name")),
    responses((status = 200, description = "newline-delimited JSON progress, the last line `done`",
        body = ProjectProgress, content_type = "application/x-ndjson"),
        (status = 400, body = crate::api::types::ErrorBody),
        (status = 409, description = "another up or down runs on the project",
            body = crate::api::types::ErrorBody)))]
pub(super) async fn up(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ProjectUp>,
) -> Result<Response, ApiError> {
    streamed(&state, name, |r, name, tx| r.up(name, req, tx))
}

/// Stops and removes a project's containers and networks (and with `volumes` its volumes).
#[utoipa::path(post, path = "/v1/projects/{name}/down", tag = "projects", request_body = ProjectDown,
    params(("name" = String, Path, description = "the project's name")),
    responses((status = 200, description = "newline-delimited JSON progress, the last line `done`",
        body = ProjectProgress, content_type = "application/x-ndjson"),
        (status = 400, body = crate::api::types::ErrorBody),
        (status = 409, description = "another up or down runs on the project",
            body = crate::api::types::ErrorBody)))]
pub(super) async fn down(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ProjectDown>,
) -> Result<Response, ApiError> {
    streamed(&state, name, |r, name, tx| r.down(name, req, tx))
}

/// Creates and starts a one-off container of a service (Compose's `run`), after bringing up
/// its dependencies unless `no_deps`; answers the started container.
#[utoipa::path(post, path = "/v1/projects/{name}/run", tag = "projects", request_body = ProjectRun,
    params(("name" = String, Path, description = "the project's name")),
    responses((status = 200, description = "the one-off container, started", body = Container),
        (status = 400, description = "unknown service, bad override, invalid stack",
            body = crate::api::types::ErrorBody),
        (status = 409, description = "another up, down or run runs on the project",
            body = crate::api::types::ErrorBody),
        (status = 500, description = "a dependency, the create or the start failed",
            body = crate::api::types::ErrorBody)))]
pub(super) async fn run(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ProjectRun>,
) -> Result<axum::Json<Container>, ApiError> {
    checked(&name)?;
    match state.reconciler.run(&name, req).await {
        Ok(c) => Ok(axum::Json(c.into())),
        Err(RunError::Invalid(m)) => Err(ApiError::bad_request(m)),
        Err(RunError::Busy(m)) => Err(ApiError::conflict(m)),
        Err(RunError::Failed(m)) => Err(ApiError::internal(m)),
    }
}

/// The projects that have containers, by name (Compose's `ls -a`).
#[utoipa::path(get, path = "/v1/projects", tag = "projects",
    responses((status = 200, body = Vec<ProjectSummary>)))]
pub(super) async fn list(
    State(state): State<ServerState>,
) -> Result<axum::Json<Vec<ProjectSummary>>, ApiError> {
    let all = state.containers.list().await?;
    // name → (status → count, config files of the newest container)
    let mut projects: BTreeMap<String, (BTreeMap<String, usize>, String)> = BTreeMap::new();
    for c in all {
        let Some(project) = c.meta.labels.get(labels::PROJECT) else {
            continue;
        };
        let entry = projects.entry(project.clone()).or_default();
        *entry
            .0
            .entry(format!("{:?}", c.state.status).to_lowercase())
            .or_default() += 1;
        if let Some(files) = c.meta.labels.get(labels::CONFIG_FILES) {
            entry.1 = files.clone();
        }
    }
    Ok(axum::Json(
        projects
            .into_iter()
            .map(|(name, (counts, config_files))| ProjectSummary {
                name,
                status: counts
                    .iter()
                    .map(|(s, n)| format!("{s}({n})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                config_files,
            })
            .collect(),
    ))
}
