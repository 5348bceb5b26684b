//! `POST /v1/build`: the build context arrives as the request body (a tar stream, unpacked under
//! `<root>/build/contexts/<random>` as it comes and removed after the build), the options as
//! JSON in the `options` query parameter; the answer streams [`BuildProgress`] lines as the
//! executor ([`crate::engine::build`]) reports them, the last one `done` or `error`. A client
//! that goes away cancels the build (a running step's container is killed and removed).
//! `POST /v1/build/prune` removes the build cache and its intermediate images.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use tokio::sync::mpsc;

use super::image_archive::{pump, query_pairs, values_of};
use super::images::on_disconnect;
use super::{ServerState, ndjson};
use crate::api::error::ApiError;
use crate::api::types::{BuildOptions, BuildProgress, BuildPruned, ErrorBody, Event};
use crate::engine::build::{self, BuildRequest, Builder};
use crate::image::pull::Cancel;

/// Builds an image from a Dockerfile and the context sent as the body, streaming progress.
#[utoipa::path(post, path = "/v1/build", tag = "images",
    params(("options" = Option<String>, Query, description = "BuildOptions as JSON")),
    request_body(content = Vec<u8>, description = "the build context (tar)",
        content_type = "application/x-tar"),
    responses((status = 200, description = "newline-delimited JSON progress",
        body = BuildProgress, content_type = "application/x-ndjson"),
        (status = 400, body = ErrorBody)))]
pub(super) async fn build(
    State(state): State<ServerState>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let text = values_of(query_pairs(raw.as_deref())?, &["options"], "options")?
        .into_iter()
        .next()
        .unwrap_or_default();
    let options: BuildOptions = if text.trim().is_empty() {
        BuildOptions::default()
    } else {
        serde_json::from_str(&text).map_err(|e| ApiError::bad_request(format!("options: {e}")))?
    };
    let base = state.data_root.join("build").join("contexts");
    let dir = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<std::path::PathBuf> {
            std::fs::create_dir_all(&base)?;
            let mut bytes = [0u8; 8];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
            let dir = base.join(hex::encode(bytes));
            std::fs::create_dir(&dir)?;
            Ok(dir)
        })
        .await
        .map_err(|e| ApiError::internal(format!("build: {e}")))?
        .map_err(|e| ApiError::internal(format!("build: a directory for the context: {e}")))?
    };
    let (tx, rx) = mpsc::channel::<BuildProgress>(4096);
    let cancel = Cancel::new();
    let stop = cancel.clone();
    let watcher = on_disconnect(&tx, move || {
        tracing::info!("the client went away: build cancelled");
        stop.cancel();
    });
    let builder = Builder {
        data_root: state.data_root.clone(),
        containers: state.containers.clone(),
        config: state.config.clone(),
    };
    let events = state.events.clone();
    tokio::spawn(async move {
        let (reader, task) = pump(body);
        let into = dir.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(reader);
            archive.set_preserve_permissions(true);
            archive.set_overwrite(true);
            archive.unpack(&into)
        })
        .await;
        let _ = task.await;
        let last = match unpacked {
            Ok(Ok(())) => {
                let req = BuildRequest {
                    context: dir.clone(),
                    options,
                    cancel,
                };
                let sink = tx.clone();
                let mut progress = move |p: BuildProgress| {
                    let _ = sink.try_send(p);
                };
                match build::build(&builder, req, &mut progress).await {
                    Ok(outcome) => {
                        events.publish(
                            Event::now("image", "build", &outcome.id, &outcome.name)
                                .with("tags", outcome.tags.join(",")),
                        );
                        BuildProgress {
                            image: Some(outcome.id),
                            tags: outcome.tags,
                            ..BuildProgress::of("done")
                        }
                    }
                    Err(f) => f.progress(),
                }
            }
            Ok(Err(e)) => BuildProgress {
                message: Some(format!("the build context (tar): {e}")),
                ..BuildProgress::of("error")
            },
            Err(e) => BuildProgress {
                message: Some(format!("the build context: {e}")),
                ..BuildProgress::of("error")
            },
        };
        // The answer first: unlinking a big context can take seconds on a busy filesystem.
        let _ = tx.send(last).await;
        watcher.abort();
        drop(tx);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
    });
    Ok(ndjson(rx, state.shutdown.clone()))
}

/// Removes every build cache entry and the intermediate images no container uses.
#[utoipa::path(post, path = "/v1/build/prune", tag = "images",
    responses((status = 200, body = BuildPruned), (status = 500, body = ErrorBody)))]
pub(super) async fn prune(
    State(state): State<ServerState>,
) -> Result<axum::Json<BuildPruned>, ApiError> {
    let root = state.data_root.clone();
    let pruned = tokio::task::spawn_blocking(move || build::prune(&root))
        .await
        .map_err(|e| ApiError::internal(format!("builder prune: {e}")))?
        .map_err(ApiError::internal)?;
    Ok(axum::Json(pruned))
}
