//! `POST /v1/projects/{name}/sync`: watch's `sync` actions. The changed files are written (and
//! deleted) in every running replica of the service through [`crate::runtime::sync`] (under
//! `/proc/<pid>/root`, owned by the container's user), then, when asked, the replicas are
//! restarted (stop, start, their `post_start` hooks) all at once. The body is read here with
//! its own, larger limit ([`MAX_SYNC_BODY`]): the files travel in it.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use base64::Engine as _;
use http_body_util::BodyExt;

use super::ServerState;
use crate::api::error::ApiError;
use crate::api::sync::{MAX_SYNC_BODY, ProjectSync, ProjectSynced};
use crate::plan::labels;
use crate::runtime::state::Status;
use crate::runtime::sync::{self, Change};
use crate::spec::units::check_project_name;

/// Reads and decodes the request, at most [`MAX_SYNC_BODY`] bytes.
async fn read(body: Body) -> Result<ProjectSync, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_SYNC_BODY);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                crate::api::types::ErrorCode::PayloadTooLarge,
                format!("request body is larger than the limit of {MAX_SYNC_BODY} bytes"),
            ));
        }
        Err(e) => return Err(ApiError::bad_request(format!("read the body: {e}"))),
    };
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad_request(format!("invalid body: {}", e.inner()))
        } else {
            ApiError::bad_request(format!("invalid body: {path}: {}", e.inner()))
        }
    })
}

/// The changes of the request, decoded and checked.
fn changes(req: &ProjectSync) -> Result<Vec<Change>, ApiError> {
    let mut out = Vec::with_capacity(req.files.len());
    for (i, f) in req.files.iter().enumerate() {
        if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
            return Err(ApiError::bad_request(format!(
                "files[{i}].path: {:?} is not an absolute path without `..`",
                f.path
            )));
        }
        let content = match &f.content {
            None => None,
            Some(text) => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| {
                        ApiError::bad_request(format!("files[{i}].content: not base64: {e}"))
                    })?;
                Some((data, f.mode.unwrap_or(0o644)))
            }
        };
        out.push(Change {
            path: f.path.clone(),
            content,
        });
    }
    Ok(out)
}

/// The uid and gid the container's process runs as (its `config.json`).
fn owner(dir: &std::path::Path) -> Option<(u32, u32)> {
    let spec = oci_spec::runtime::Spec::load(dir.join("config.json")).ok()?;
    let user = spec.process().as_ref()?.user();
    Some((user.uid(), user.gid()))
}

/// Copies files into (and deletes files from) every running container of a service, then
/// restarts them when asked (running their `post_start` hooks, as a restart does).
#[utoipa::path(post, path = "/v1/projects/{name}/sync", tag = "projects",
    request_body = ProjectSync,
    params(("name" = String, Path, description = "the project's name")),
    responses((status = 200, description = "the containers synced", body = ProjectSynced),
        (status = 400, description = "bad project name, path or content",
            body = crate::api::types::ErrorBody),
        (status = 404, description = "the service has no running container",
            body = crate::api::types::ErrorBody),
        (status = 413, body = crate::api::types::ErrorBody),
        (status = 500, description = "a copy, a restart or a post_start hook after it failed",
            body = crate::api::types::ErrorBody)))]
pub(super) async fn sync(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<axum::Json<ProjectSynced>, ApiError> {
    check_project_name(&name).map_err(|e| ApiError::bad_request(format!("project name: {e}")))?;
    let req = read(body).await?;
    let changes = changes(&req)?;
    let all = state.containers.list().await?;
    let targets: Vec<_> = all
        .into_iter()
        .filter(|c| {
            let l = &c.meta.labels;
            l.get(labels::PROJECT) == Some(&name)
                && l.get(labels::SERVICE) == Some(&req.service)
                && l.get(labels::ONEOFF).map(String::as_str) != Some(labels::TRUE)
                && c.state.status == Status::Running
        })
        .collect();
    if targets.is_empty() {
        return Err(ApiError::not_found(format!(
            "project {name}: service {:?} has no running container",
            req.service
        )));
    }
    let mut jobs = Vec::new();
    for c in &targets {
        let Some(pid) = c.state.pid else { continue };
        let dir: PathBuf = state.containers.dir(&c.meta.id);
        let changes = changes.clone();
        let cname = c.meta.name.clone();
        jobs.push(tokio::task::spawn_blocking(move || {
            let root = crate::runtime::copy::open_root(&PathBuf::from(format!("/proc/{pid}/root")))
                .map_err(|e| format!("container {cname}: sync: {e}"))?;
            sync::apply(root.as_fd(), &changes, owner(&dir))
                .map_err(|e| format!("container {cname}: sync: {e}"))
        }));
    }
    for j in jobs {
        j.await
            .map_err(|e| ApiError::internal(format!("sync: the worker task failed: {e}")))?
            .map_err(ApiError::internal)?;
    }
    if req.restart {
        let timeout = Some(Duration::from_secs(req.timeout.unwrap_or(10)));
        let restarts = targets.iter().map(|c| {
            let containers = state.containers.clone();
            let id = c.meta.id.clone();
            async move {
                containers.stop(&id, timeout).await?;
                let c = containers.start(&id).await?;
                // As a restart does: the service's post_start hooks.
                containers.post_start(&c).await.map_err(ApiError::internal)
            }
        });
        for r in futures_util::future::join_all(restarts).await {
            r?;
        }
    }
    Ok(axum::Json(ProjectSynced {
        containers: targets.iter().map(|c| c.meta.name.clone()).collect(),
        restarted: req.restart,
    }))
}
