//! `/v1/images`: list, inspect, remove, tag, prune, history, and `POST /v1/images/pull` and
//! `POST /v1/images/{name}/push` streaming their progress as newline-delimited JSON, over the
//! image library ([`crate::image`]) and the daemon's registry settings. A client that goes away
//! cancels its pull or push. Registry credentials come from the client's `X-Registry-Auth`
//! header, else from the daemon's own Docker config ([`crate::api::types::REGISTRY_AUTH_HEADER`]).
//! Tarballs (save, load, import) are in [`super::image_archive`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{ServerState, ndjson};
use crate::api::error::{ApiError, JsonBody};
use crate::api::types::{
    ErrorBody, ErrorCode, Event, Image, ImageHistory, ImagePull, ImagePushed, ImageRemoved,
    ImageTag, PullProgress, PushProgress, REGISTRY_AUTH_HEADER, RegistryAuth,
};
use crate::image::manage;
use crate::image::pull::{Cancel, Progress, PullError, PullEvent, PullOptions};
use crate::image::push::{PushError, PushOptions};
use crate::image::record::{self, ImageRecord, Platform, RecordError};
use crate::image::reference::Reference;
use crate::image::registry::RegistryOptions;
use crate::image::store::Store;

pub(super) fn image_of(store: &Store, r: &ImageRecord, with_config: bool) -> Image {
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
        diff_ids: if with_config {
            r.diff_ids().iter().map(ToString::to_string).collect()
        } else {
            Vec::new()
        },
        manifest_media_type: with_config.then(|| r.manifest_media_type.clone()),
        manifest_size: with_config
            .then(|| std::fs::metadata(store.blob_path(&r.manifest_digest)).map_or(0, |m| m.len())),
    }
}

/// Runs an image-store call on the blocking pool.
pub(super) async fn with_images<T, F>(state: &ServerState, f: F) -> Result<T, ApiError>
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
        // The build cache's intermediate images are not listed (Docker hides them too).
        Ok(manage::list(store)?
            .iter()
            .filter(|r| !crate::engine::build::is_intermediate(&r.name))
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

/// The daemon's registry settings plus the credentials for `reference`: the client's
/// `X-Registry-Auth` header when it sent one, else the daemon's own Docker config.
fn registry_options(
    state: &ServerState,
    reference: &Reference,
    headers: &HeaderMap,
) -> Result<RegistryOptions, ApiError> {
    let Some(value) = headers.get(REGISTRY_AUTH_HEADER) else {
        return Ok(crate::engine::images::registry_options(
            &state.config,
            reference,
        ));
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("{REGISTRY_AUTH_HEADER}: not ASCII")))?;
    let auth = RegistryAuth::decode(text).map_err(ApiError::bad_request)?;
    let mut options = state.config.registry_options();
    options.auth = Some((auth.username, auth.password));
    Ok(options)
}

/// A task that cancels when the client of a streaming response goes away (the response's
/// receiver is dropped); abort it when the work is done, or the stream never ends.
pub(super) fn on_disconnect<T: Send + 'static>(
    tx: &mpsc::Sender<T>,
    then: impl FnOnce() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let tx = tx.clone();
    tokio::spawn(async move {
        tx.closed().await;
        then();
    })
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
/// `done` (with the image) or `error`. A client that disconnects cancels the pull: partial
/// downloads and unpacks are removed, complete verified blobs stay for the next pull.
#[utoipa::path(post, path = "/v1/images/pull", tag = "images", request_body = ImagePull,
    params(("X-Registry-Auth" = Option<String>, Header,
        description = "base64url of {\"username\",\"password\"}")),
    responses((status = 200, description = "newline-delimited JSON progress", body = PullProgress,
        content_type = "application/x-ndjson"), (status = 400, body = ErrorBody)))]
pub(super) async fn pull(
    State(state): State<ServerState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ImagePull>,
) -> Result<Response, ApiError> {
    let reference = Reference::parse(&req.reference)
        .map_err(|e| ApiError::bad_request(format!("reference {:?}: {e}", req.reference)))?;
    let cancel = Cancel::new();
    let mut options = PullOptions {
        registry: registry_options(&state, &reference, &headers)?,
        cancel: Some(cancel.clone()),
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
    let what = reference.to_string();
    let watcher = on_disconnect(&tx, move || {
        tracing::info!(image = %what, "the client went away: pull cancelled");
        cancel.cancel();
    });
    // The pull's future is not `Send` (the registry client's closures), so it runs on a
    // current-thread runtime of its own, on the blocking pool.
    tokio::task::spawn_blocking(move || {
        let result = pull_blocking(&root, &reference, &options);
        watcher.abort();
        let last = match result {
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

/// A store error of an image argument: not found is a 404, a record that vanished too.
fn not_found_or(name: &str, e: manage::ManageError) -> ApiError {
    match e {
        manage::ManageError::Record(RecordError::NotFound { .. }) => {
            ApiError::not_found(format!("image {name}: no such image"))
        }
        e => e.into(),
    }
}

/// Gives an image another name (replacing what that name named before).
#[utoipa::path(post, path = "/v1/images/{name}/tag", tag = "images", request_body = ImageTag,
    params(("name" = String, Path, description = "image reference or id (URL-encoded)")),
    responses((status = 201, body = Image), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn tag(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ImageTag>,
) -> Result<(axum::http::StatusCode, axum::Json<Image>), ApiError> {
    let target = Reference::parse(&req.target)
        .map_err(|e| ApiError::bad_request(format!("target {:?}: {e}", req.target)))?;
    let image = with_images(&state, move |store| {
        let tagged = manage::tag(store, &name, &target).map_err(|e| not_found_or(&name, e))?;
        Ok(image_of(store, &tagged, false))
    })
    .await?;
    state
        .events
        .publish(Event::now("image", "tag", &image.id, &image.name));
    Ok((axum::http::StatusCode::CREATED, axum::Json(image)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct PruneQuery {
    /// Every image no container uses, not only dangling (untagged) ones.
    #[serde(default)]
    all: bool,
    /// Only dangling images (the default; `dangling=false` is `all=true`, as in Docker's
    /// filter).
    dangling: Option<bool>,
}

/// Removes dangling images (or, with `all`, every image no container uses) and the content
/// nothing else references. An image a container uses is never removed.
#[utoipa::path(post, path = "/v1/images/prune", tag = "images", params(PruneQuery),
    responses((status = 200, body = ImageRemoved), (status = 400, body = ErrorBody)))]
pub(super) async fn prune(
    State(state): State<ServerState>,
    q: Result<Query<PruneQuery>, QueryRejection>,
) -> Result<axum::Json<ImageRemoved>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let all = q.all || q.dangling == Some(false);
    let removed = with_images(&state, move |store| Ok(manage::prune(store, all)?)).await?;
    for name in &removed.untagged {
        state
            .events
            .publish(Event::now("image", "delete", "", name));
    }
    Ok(axum::Json(ImageRemoved {
        untagged: removed.untagged,
        deleted: removed.deleted.iter().map(ToString::to_string).collect(),
        reclaimed: removed.reclaimed,
    }))
}

/// One `history` entry of an image config (the parts shown).
#[derive(Debug, Default, Deserialize)]
struct HistoryEntry {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

/// The steps that made an image, newest first: its config's `history`, each step that made a
/// layer with that layer's unpacked size (one step per layer when the config has no history).
fn history_of(store: &Store, image: &ImageRecord) -> Result<Vec<ImageHistory>, ApiError> {
    #[derive(Deserialize)]
    struct WithHistory {
        #[serde(default)]
        history: Vec<HistoryEntry>,
    }
    let blob = std::fs::read(store.blob_path(&image.config_digest))
        .map_err(|e| ApiError::internal(format!("image {}: read its config: {e}", image.name)))?;
    let config: WithHistory = serde_json::from_slice(&blob)
        .map_err(|e| ApiError::internal(format!("image {}: its config: {e}", image.name)))?;
    let sizes: Vec<u64> = image
        .layers
        .iter()
        .map(|l| store.layer_info(&l.chain_id).map_or(0, |i| i.size))
        .collect();
    let mut steps = config.history;
    if steps.iter().filter(|h| !h.empty_layer).count() != image.layers.len() {
        steps = image
            .layers
            .iter()
            .map(|_| HistoryEntry {
                created: image.created.clone(),
                ..HistoryEntry::default()
            })
            .collect();
    }
    let mut layer = 0;
    let mut out: Vec<ImageHistory> = steps
        .into_iter()
        .map(|h| {
            let size = if h.empty_layer {
                0
            } else {
                layer += 1;
                sizes.get(layer - 1).copied().unwrap_or(0)
            };
            ImageHistory {
                id: None,
                created: h.created,
                created_by: h.created_by.unwrap_or_default(),
                size,
                comment: h.comment.unwrap_or_default(),
            }
        })
        .collect();
    out.reverse();
    if let Some(newest) = out.first_mut() {
        newest.id = Some(image.config_digest.to_string());
    }
    Ok(out)
}

/// The steps that made an image, newest first.
#[utoipa::path(get, path = "/v1/images/{name}/history", tag = "images",
    params(("name" = String, Path, description = "image reference or id (URL-encoded)")),
    responses((status = 200, body = Vec<ImageHistory>), (status = 404, body = ErrorBody)))]
pub(super) async fn history(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<ImageHistory>>, ApiError> {
    let steps = with_images(&state, move |store| {
        let found = manage::find(store, &name)?;
        let image = found
            .records
            .first()
            .ok_or_else(|| ApiError::not_found(format!("image {name}: no such image")))?;
        history_of(store, image)
    })
    .await?;
    Ok(axum::Json(steps))
}

fn push_error(e: &PushError) -> PushProgress {
    let code = match e {
        PushError::Record(RecordError::NotFound { .. }) => ErrorCode::NotFound,
        PushError::NoTag { .. } => ErrorCode::BadRequest,
        PushError::Unauthorized { .. } => ErrorCode::Unauthorized,
        _ => ErrorCode::Internal,
    };
    PushProgress {
        message: Some(e.to_string()),
        code: Some(code),
        ..PushProgress::status("error")
    }
}

/// Uploads an image to the registry its name says, streaming progress: one JSON object per
/// line, `pushing`, then `done` (with what was pushed) or `error`. A client that disconnects
/// cancels the push (the store is only read).
#[utoipa::path(post, path = "/v1/images/{name}/push", tag = "images",
    params(("name" = String, Path, description = "image reference, with its registry and tag \
        (URL-encoded)"),
        ("X-Registry-Auth" = Option<String>, Header,
        description = "base64url of {\"username\",\"password\"}")),
    responses((status = 200, description = "newline-delimited JSON progress", body = PushProgress,
        content_type = "application/x-ndjson"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn push(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reference = Reference::parse(&name)
        .map_err(|e| ApiError::bad_request(format!("reference {name:?}: {e}")))?;
    if reference.tag.is_none() {
        return Err(ApiError::bad_request(format!(
            "{reference}: a push target needs a tag, not only a digest"
        )));
    }
    let options = PushOptions {
        registry: registry_options(&state, &reference, &headers)?,
        ..PushOptions::default()
    };
    let key = reference.to_string();
    let image = with_images(&state, move |store| match record::load(store, &key) {
        Ok(image) => Ok(image),
        Err(RecordError::NotFound { .. }) => {
            Err(ApiError::not_found(format!("image {key}: no such image")))
        }
        Err(e) => Err(ApiError::internal(e.to_string())),
    })
    .await?;
    let (tx, rx) = mpsc::channel::<PushProgress>(16);
    let _ = tx.try_send(PushProgress {
        id: Some(reference.name()),
        ..PushProgress::status("pushing")
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let what = reference.to_string();
    let watcher = on_disconnect(&tx, move || {
        tracing::info!(image = %what, "the client went away: push cancelled");
        let _ = stop_tx.send(());
    });
    let root = state.data_root.clone();
    let events = state.events.clone();
    tokio::task::spawn_blocking(move || {
        let result = push_blocking(&root, &image, &reference, &options, stop_rx);
        watcher.abort();
        let last = match result {
            Ok(Some(pushed)) => {
                events.publish(Event::now(
                    "image",
                    "push",
                    &image.config_digest.to_string(),
                    &reference.to_string(),
                ));
                PushProgress {
                    pushed: Some(pushed),
                    ..PushProgress::status("done")
                }
            }
            // The client is gone: nobody reads the last line.
            Ok(None) => return,
            Err(p) => *p,
        };
        let _ = tx.blocking_send(last);
    });
    Ok(ndjson(rx, state.shutdown.clone()))
}

/// Pushes on a current-thread runtime of its own (the registry client's futures are not
/// `Send`); `None` when `stop` fired first.
fn push_blocking(
    root: &std::path::Path,
    image: &ImageRecord,
    reference: &Reference,
    options: &PushOptions,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<Option<ImagePushed>, Box<PushProgress>> {
    let setup = |message: String| {
        Box::new(PushProgress {
            message: Some(message),
            code: Some(ErrorCode::Internal),
            ..PushProgress::status("error")
        })
    };
    let store = Store::open(root).map_err(|e| setup(format!("open the image store: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| setup(format!("start a runtime for the push: {e}")))?;
    let report = rt.block_on(async {
        tokio::select! {
            r = crate::image::push::push_record(&store, image, reference, options) => Some(r),
            _ = stop => None,
        }
    });
    match report {
        None => Ok(None),
        Some(Err(e)) => Err(Box::new(push_error(&e))),
        Some(Ok(report)) => Ok(Some(ImagePushed {
            manifest_size: std::fs::metadata(store.blob_path(&report.manifest_digest))
                .map_or(0, |m| m.len()),
            manifest_digest: report.manifest_digest.to_string(),
            pushed_blobs: report.pushed_blobs,
            pushed_bytes: report.pushed_bytes,
            skipped_blobs: report.skipped_blobs,
        })),
    }
}
