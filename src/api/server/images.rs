//! `/v1/images`: list, inspect, remove, and `POST /v1/images/pull` streaming its progress as
//! newline-delimited JSON, over the image library ([`crate::image`]) and the daemon's
//! registry settings.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{ServerState, ndjson};
use crate::api::error::{ApiError, JsonBody};
use crate::api::types::{
    ErrorBody, ErrorCode, Event, Image, ImagePull, ImageRemoved, PullProgress,
};
use crate::image::manage;
use crate::image::pull::{Progress, PullError, PullEvent, PullOptions};
use crate::image::record::{ImageRecord, Platform};
use crate::image::reference::Reference;
use crate::image::registry::RegistryOptions;
use crate::image::store::Store;

fn image_of(store: &Store, r: &ImageRecord, with_config: bool) -> Image {
    Image {
        id: r.config_digest.to_string(),
        name: r.name.clone(),
        manifest_digest: r.manifest_digest.to_string(),
        platform: r.platform.to_string(),
        created: r.created.clone(),
        size: manage::image_size(store, r),
        layers: r.layers.len(),
        config: if with_config {
            serde_json::to_value(&r.config).ok()
        } else {
            None
        },
    }
}

/// Runs an image-store call on the blocking pool.
async fn with_images<T, F>(state: &ServerState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
{
    let root = state.data_root.clone();
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&root)
            .map_err(|e| ApiError::internal(format!("open the image store: {e}")))?;
        f(&store)
    })
    .await
    .map_err(|e| ApiError::internal(format!("image store task: {e}")))?
}

/// Every image in the store, by name.
#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses((status = 200, body = Vec<Image>), (status = 500, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<ServerState>,
) -> Result<axum::Json<Vec<Image>>, ApiError> {
    let images = with_images(&state, |store| {
        Ok(manage::list(store)?
            .iter()
            .map(|r| image_of(store, r, false))
            .collect())
    })
    .await?;
    Ok(axum::Json(images))
}

/// One image, by reference or id (prefix), with its config.
#[utoipa::path(get, path = "/v1/images/{name}", tag = "images",
    params(("name" = String, Path, description = "image reference or id (URL-encoded)")),
    responses((status = 200, body = Image), (status = 404, body = ErrorBody)))]
pub(super) async fn inspect(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Image>, ApiError> {
    let image = with_images(&state, move |store| {
        let found = manage::find(store, &name)?;
        found
            .records
            .first()
            .map(|r| image_of(store, r, true))
            .ok_or_else(|| ApiError::not_found(format!("image {name}: no such image")))
    })
    .await?;
    Ok(axum::Json(image))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveQuery {
    /// Remove every name of an id, and untag an image containers use.
    #[serde(default)]
    force: bool,
}

/// Removes an image's name (or every name of an id), then the content nothing else uses.
#[utoipa::path(delete, path = "/v1/images/{name}", tag = "images",
    params(("name" = String, Path, description = "image reference or id (URL-encoded)"),
        RemoveQuery),
    responses((status = 200, body = ImageRemoved), (status = 404, body = ErrorBody),
        (status = 409, description = "in use by a container", body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<axum::Json<ImageRemoved>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (id, removed) = with_images(&state, move |store| {
        let id = manage::find(store, &name)?
            .records
            .first()
            .map(|r| r.config_digest.to_string())
            .unwrap_or_default();
        Ok((id, manage::remove(store, &name, q.force)?))
    })
    .await?;
    for name in &removed.untagged {
        state
            .events
            .publish(Event::now("image", "delete", &id, name));
    }
    Ok(axum::Json(ImageRemoved {
        untagged: removed.untagged,
        deleted: removed.deleted.iter().map(ToString::to_string).collect(),
        reclaimed: removed.reclaimed,
    }))
}

fn parse_platform(text: &str) -> Result<Platform, ApiError> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts
                .get(2)
                .filter(|v| !v.is_empty())
                .map(|v| v.to_string()),
        }),
        _ => Err(ApiError::bad_request(format!(
            "platform {text:?}: expected os/arch[/variant]"
        ))),
    }
}

/// The daemon's registry settings plus the credentials of its Docker config for `reference`.
fn registry_options(state: &ServerState, reference: &Reference) -> RegistryOptions {
    crate::engine::images::registry_options(&state.config, reference)
}

fn progress_of(event: &PullEvent) -> PullProgress {
    let with = |status: &str, id: &dyn ToString| PullProgress {
        id: Some(id.to_string()),
        ..PullProgress::status(status)
    };
    match event {
        PullEvent::Resolved { manifest, layers } => PullProgress {
            total: Some(*layers as u64),
            ..with("resolved", manifest)
        },
        PullEvent::LayerExists { blob } => with("exists", blob),
        PullEvent::Downloading {
            blob,
            received,
            total,
        } => PullProgress {
            current: Some(*received),
            total: Some(*total),
            ..with("downloading", blob)
        },
        PullEvent::Downloaded { blob } => with("downloaded", blob),
        PullEvent::Unpacking { blob } => with("unpacking", blob),
        PullEvent::Unpacked { blob } => with("unpacked", blob),
    }
}

fn pull_error(e: &PullError) -> PullProgress {
    let code = match e {
        PullError::NotFound { .. } => ErrorCode::NotFound,
        _ => ErrorCode::Internal,
    };
    PullProgress {
        message: Some(e.to_string()),
        code: Some(code),
        ..PullProgress::status("error")
    }
}

/// Pulls an image into the store, streaming progress: one JSON object per line, the last one
/// `done` (with the image) or `error`. The pull goes on if the client disconnects.
#[utoipa::path(post, path = "/v1/images/pull", tag = "images", request_body = ImagePull,
    responses((status = 200, description = "newline-delimited JSON progress", body = PullProgress,
        content_type = "application/x-ndjson"), (status = 400, body = ErrorBody)))]
pub(super) async fn pull(
    State(state): State<ServerState>,
    JsonBody(req): JsonBody<ImagePull>,
) -> Result<Response, ApiError> {
    let reference = Reference::parse(&req.reference)
        .map_err(|e| ApiError::bad_request(format!("reference {:?}: {e}", req.reference)))?;
    let mut options = PullOptions {
        registry: registry_options(&state, &reference),
        ..PullOptions::default()
    };
    if let Some(p) = &req.platform {
        options.platform = parse_platform(p)?;
    }
    let (tx, rx) = mpsc::channel::<PullProgress>(1024);
    let progress_tx = tx.clone();
    options.progress = Some(Progress(std::sync::Arc::new(move |event: &PullEvent| {
        // A full channel (a slow client) drops byte counts, never the steps.
        let _ = progress_tx.try_send(progress_of(event));
    })));
    let root = state.data_root.clone();
    let events = state.events.clone();
    // The pull's future is not `Send` (the registry client's closures), so it runs on a
    // current-thread runtime of its own, on the blocking pool.
    tokio::task::spawn_blocking(move || {
        let last = match pull_blocking(&root, &reference, &options) {
            Ok(image) => {
                events.publish(Event::now("image", "pull", &image.id, &image.name));
                PullProgress {
                    image: Some(image),
                    ..PullProgress::status("done")
                }
            }
            Err(p) => *p,
        };
        let _ = tx.blocking_send(last);
    });
    Ok(ndjson(rx, state.shutdown.clone()))
}

/// Opens the store, takes its shared lock and pulls; the error is the stream's last line.
fn pull_blocking(
    root: &std::path::Path,
    reference: &Reference,
    options: &PullOptions,
) -> Result<Image, Box<PullProgress>> {
    use crate::engine::images::PullFailure;
    match crate::engine::images::pull_blocking(root, reference, options) {
        Ok((store, report)) => Ok(image_of(&store, &report.record, false)),
        Err(PullFailure::Pull(e)) => Err(Box::new(pull_error(&e))),
        Err(PullFailure::Setup(message)) => Err(Box::new(PullProgress {
            message: Some(message),
            code: Some(ErrorCode::Internal),
            ..PullProgress::status("error")
        })),
    }
}
