//! `/v1/volumes`: create, list, inspect, remove and prune named volumes of the `local` driver
//! ([`crate::volume::Volumes`]: a directory under the data root, or a bind device), refusing
//! to remove a volume a container mounts.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ServerState;
use crate::api::error::{ApiError, JsonBody};
use crate::api::types::{ErrorBody, Event, Volume, VolumeCreate, VolumesPruned};
use crate::engine::project::ProjectEngine;
use crate::engine::project::labels as plabels;
use crate::volume::{VolumeError, usage};

/// The label Docker puts on volumes made without a name.
pub(super) const ANONYMOUS: &str = "com.docker.volume.anonymous";

/// Runs a volume call on the blocking pool with the daemon's project engine (its volumes and
/// the containers that use them).
pub(super) async fn with_engine<T, F>(state: &ServerState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&ProjectEngine) -> Result<T, ApiError> + Send + 'static,
{
    let engine = state.reconciler.engine().clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| ApiError::internal(format!("volume task: {e}")))?
}

pub(super) fn volume_error(e: VolumeError) -> ApiError {
    match &e {
        VolumeError::InvalidName { .. }
        | VolumeError::Driver { .. }
        | VolumeError::Option { .. }
        | VolumeError::Device { .. } => ApiError::bad_request(e.to_string()),
        VolumeError::NotFound { .. } => ApiError::not_found(e.to_string()),
        VolumeError::InUse { .. } => ApiError::conflict(e.to_string()),
        _ => {
            tracing::error!(error = %e, "volume operation");
            ApiError::internal(e.to_string())
        }
    }
}

/// Whether a volume was made without a name (by `POST /v1/volumes` without one, or for a
/// container's anonymous mount).
pub(super) fn is_anonymous(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key(ANONYMOUS) || labels.contains_key(plabels::ANONYMOUS_CONTAINER)
}

/// Creates a volume: `<root>/volumes/<name>/_data`, or a bind-type local volume.
#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", request_body = VolumeCreate,
    responses((status = 201, body = Volume), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<ServerState>,
    JsonBody(req): JsonBody<VolumeCreate>,
) -> Result<(StatusCode, axum::Json<Volume>), ApiError> {
    let vol = with_engine(&state, move |e| {
        let mut labels = req.labels;
        let name = match req.name {
            Some(name) => {
                if !crate::volume::valid_name(&name) {
                    return Err(volume_error(VolumeError::InvalidName { name }));
                }
                if let Ok(v) = e.volumes().get(&name) {
                    return Err(ApiError::conflict(format!(
                        "volume {:?} already exists (id {})",
                        v.name, v.id
                    )));
                }
                name
            }
            None => {
                labels.entry(ANONYMOUS.to_string()).or_default();
                crate::store::new_id().map_err(|e| ApiError::internal(e.to_string()))?
            }
        };
        let driver = req
            .driver
            .unwrap_or_else(|| crate::volume::DRIVER.to_string());
        e.volumes()
            .create_with_driver(&name, &driver, labels, req.driver_opts)
            .map_err(volume_error)
    })
    .await?;
    state
        .events
        .publish(Event::now("volume", "create", &vol.id, &vol.name));
    Ok((StatusCode::CREATED, axum::Json(vol.into())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// `key` or `key=value`: only volumes carrying this label.
    label: Option<String>,
}

/// Every volume, by name.
#[utoipa::path(get, path = "/v1/volumes", tag = "volumes", params(ListQuery),
    responses((status = 200, body = Vec<Volume>), (status = 400, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<ServerState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<axum::Json<Vec<Volume>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let vols = with_engine(&state, move |e| {
        e.volumes()
            .list(query.label.as_deref())
            .map_err(volume_error)
    })
    .await?;
    Ok(axum::Json(vols.into_iter().map(Volume::from).collect()))
}

/// One volume, by name or id.
#[utoipa::path(get, path = "/v1/volumes/{name}", tag = "volumes",
    params(("name" = String, Path, description = "volume name or id")),
    responses((status = 200, body = Volume), (status = 404, body = ErrorBody)))]
pub(super) async fn inspect(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Volume>, ApiError> {
    let vol = with_engine(&state, move |e| {
        e.volumes().get(&name).map_err(volume_error)
    })
    .await?;
    Ok(axum::Json(vol.into()))
}

/// Removes a volume and its content (a bind volume's device stays); refused while a
/// container mounts it.
#[utoipa::path(delete, path = "/v1/volumes/{name}", tag = "volumes",
    params(("name" = String, Path, description = "volume name or id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let removed = with_engine(&state, move |e| {
        let in_use = |n: &str| e.containers_using(n);
        e.volumes()
            .remove(&name, false, &in_use)
            .map_err(volume_error)?
            .ok_or_else(|| ApiError::not_found(format!("volume {name:?} not found")))
    })
    .await?;
    state
        .events
        .publish(Event::now("volume", "remove", &removed.id, &removed.name));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct PruneQuery {
    /// Also named volumes (default: only anonymous ones, like Docker).
    #[serde(default)]
    all: bool,
    /// `key` or `key=value`: only volumes carrying this label.
    label: Option<String>,
}

/// Removes the volumes no container mounts: anonymous ones, or with `all` every one.
#[utoipa::path(post, path = "/v1/volumes/prune", tag = "volumes", params(PruneQuery),
    responses((status = 200, body = VolumesPruned), (status = 400, body = ErrorBody)))]
pub(super) async fn prune(
    State(state): State<ServerState>,
    query: Result<Query<PruneQuery>, QueryRejection>,
) -> Result<axum::Json<VolumesPruned>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let removed = with_engine(&state, move |e| {
        let vols = e.volumes();
        let mut removed = Vec::new();
        let mut reclaimed = 0u64;
        for v in vols.list(query.label.as_deref()).map_err(volume_error)? {
            if !query.all && !is_anonymous(&v.labels) {
                continue;
            }
            let in_use = |n: &str| e.containers_using(n);
            if !in_use(&v.name).is_empty() {
                continue;
            }
            let size = if v.is_bind() {
                0
            } else {
                usage::tree_size(&v.mountpoint).unwrap_or(0)
            };
            match vols.remove(&v.id, true, &in_use) {
                Ok(Some(v)) => {
                    reclaimed = reclaimed.saturating_add(size);
                    removed.push(v);
                }
                Ok(None) | Err(VolumeError::InUse { .. }) => {}
                Err(err) => return Err(volume_error(err)),
            }
        }
        Ok((removed, reclaimed))
    })
    .await?;
    let (removed, reclaimed) = removed;
    for v in &removed {
        state
            .events
            .publish(Event::now("volume", "remove", &v.id, &v.name));
    }
    state
        .events
        .publish(Event::now("volume", "prune", "", "").with("reclaimed", reclaimed));
    Ok(axum::Json(VolumesPruned {
        volumes: removed.into_iter().map(|v| v.name).collect(),
        reclaimed,
    }))
}
