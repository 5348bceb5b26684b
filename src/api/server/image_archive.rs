//! Image tarballs over the API, streamed both ways, never buffered whole: `GET /v1/images/save`
//! answers a docker-archive + OCI layout tar as it is written, `POST /v1/images/load` and
//! `POST /v1/images/import` read the request body as it arrives (these routes bypass the
//! 1 MiB limit of JSON bodies). A body that ends early (the client went away, Ctrl-C) or a
//! corrupt archive fails the load or import and the archive library rolls back: nothing of it
//! stays in the store.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::ServerState;
use super::images::{image_of, with_images};
use crate::api::error::ApiError;
use crate::api::types::{ErrorBody, Event, Image, ImageLoaded};
use crate::image::archive::{self, ArchiveError, ImportOptions};
use crate::image::manage::StoreLock;
use crate::image::record::RecordError;
use crate::image::reference::Reference;
use crate::image::store::Store;

/// The pairs of a query string, percent-decoded (`+` is a space), keys repeated as given.
pub(super) fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    fn decode(s: &str) -> Result<String, ApiError> {
        let mut out = Vec::with_capacity(s.len());
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            ApiError::bad_request(format!("query {s:?}: bad percent-encoding"))
                        })?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| ApiError::bad_request(format!("query {s:?}: not UTF-8")))
    }
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The values of `key`; any other key is a 400 (as unknown JSON fields are).
pub(super) fn values_of(
    pairs: Vec<(String, String)>,
    allowed: &[&str],
    key: &str,
) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?} (expected {})",
                allowed.join(", ")
            )));
        }
        if k == key {
            out.push(v);
        }
    }
    Ok(out)
}

fn parse_reference(text: &str) -> Result<Reference, ApiError> {
    Reference::parse(text).map_err(|e| ApiError::bad_request(format!("reference {text:?}: {e}")))
}

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        match &e {
            ArchiveError::Record(RecordError::NotFound { .. }) => {
                ApiError::not_found(e.to_string())
            }
            ArchiveError::Record(_)
            | ArchiveError::Stage { .. }
            | ArchiveError::Store { .. }
            | ArchiveError::Write { .. }
            | ArchiveError::WriteFile { .. } => {
                tracing::error!(error = %e, "image archive");
                ApiError::internal(e.to_string())
            }
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

/// A `Write` that hands its bytes, in chunks, to the response body.
struct BodyWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl BodyWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl std::io::Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Writes the named images as one tar (docker-archive and OCI image layout), streamed.
/// `names` is repeated, one image each. Unknown images are a 404 before anything is sent; a
/// failure later cuts the stream short (the client sees a truncated body, never a complete
/// archive).
#[utoipa::path(get, path = "/v1/images/save", tag = "images",
    params(("names" = Vec<String>, Query, description = "image references (repeat the key)")),
    responses((status = 200, description = "a tar archive", content_type = "application/x-tar"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn save(
    State(state): State<ServerState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let names = values_of(query_pairs(raw.as_deref())?, &["names"], "names")?;
    if names.is_empty() {
        return Err(ApiError::bad_request("names: at least one image to save"));
    }
    let references = names
        .iter()
        .map(|n| parse_reference(n))
        .collect::<Result<Vec<_>, _>>()?;
    let root = state.data_root.clone();
    let refs = references.clone();
    // Unknown names are answered now, before the 200.
    with_images(&state, move |store| {
        for r in &refs {
            match crate::image::record::load(store, &r.to_string()) {
                Ok(_) => {}
                Err(RecordError::NotFound { .. }) => {
                    return Err(ApiError::not_found(format!("image {r}: no such image")));
                }
                Err(e) => return Err(ApiError::internal(e.to_string())),
            }
        }
        Ok(())
    })
    .await?;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let fail = |tx: &mpsc::Sender<_>, message: String| {
            tracing::warn!(error = %message, "image save");
            let _ = tx.blocking_send(Err(std::io::Error::other(message)));
        };
        let store = match Store::open(&root) {
            Ok(s) => s,
            Err(e) => return fail(&tx, format!("open the image store: {e}")),
        };
        // Held while the blobs are read: a concurrent rm waits for it.
        let _lock = match StoreLock::shared(&store) {
            Ok(l) => l,
            Err(e) => return fail(&tx, e.to_string()),
        };
        let writer = BodyWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        match archive::save(&store, &references, writer) {
            Ok(mut w) => {
                if let Err(e) = std::io::Write::flush(&mut w) {
                    fail(&tx, format!("write archive: {e}"));
                }
            }
            Err(e) => fail(&tx, e.to_string()),
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The request body as a `Read` on a blocking thread, fed by [`pump`].
pub(super) struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(next)) => self.current = next,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Feeds the request body to the reader; once the reader is gone (done or failed) reads the
/// rest and drops it, so that the client, still sending, gets to read the answer.
pub(super) fn pump(body: Body) -> (BodyReader, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let task = tokio::spawn(async move {
        let mut body = body;
        let mut reader_gone = false;
        while let Some(frame) = body.frame().await {
            let data = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Err(e) => {
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("the request body ended early: {e}"),
                        )))
                        .await;
                    return;
                }
            };
            if !reader_gone && tx.send(Ok(data)).await.is_err() {
                reader_gone = true;
            }
        }
    });
    (
        BodyReader {
            rx,
            current: Bytes::new(),
        },
        task,
    )
}

/// Runs `f` over the request body on the blocking pool, then waits until the body is read.
async fn with_body<T, F>(state: &ServerState, body: Body, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store, BodyReader) -> Result<T, ApiError> + Send + 'static,
{
    let (reader, task) = pump(body);
    let result = with_images(state, move |store| {
        // Shared: a prune (exclusive) cannot collect blobs committed before their record.
        let _lock = StoreLock::shared(store)?;
        f(store, reader)
    })
    .await;
    let _ = task.await;
    result
}

/// Loads the images of a tar archive sent as the request body (docker-archive or OCI image
/// layout; plain, gzip or zstd), streamed. Every blob is verified before anything is
/// committed; a corrupt or truncated archive is a 400 and leaves nothing in the store.
#[utoipa::path(post, path = "/v1/images/load", tag = "images",
    request_body(content = Vec<u8>, description = "the archive", content_type = "application/x-tar"),
    responses((status = 200, body = Vec<ImageLoaded>), (status = 400, body = ErrorBody)))]
pub(super) async fn load(
    State(state): State<ServerState>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<axum::Json<Vec<ImageLoaded>>, ApiError> {
    values_of(query_pairs(raw.as_deref())?, &[], "")?;
    let loaded = with_body(&state, body, |store, reader| {
        let loaded = archive::load(store, reader)?;
        Ok(loaded
            .into_iter()
            .map(|image| ImageLoaded {
                name: image.reference.map(|r| r.to_string()),
                id: image.record.config_digest.to_string(),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    for image in &loaded {
        state.events.publish(Event::now(
            "image",
            "load",
            &image.id,
            image.name.as_deref().unwrap_or(""),
        ));
    }
    Ok(axum::Json(loaded))
}

/// Makes a one-layer image from a rootfs tarball sent as the request body (plain, gzip or
/// zstd), streamed: `reference` names it, each `change` (repeatable) is a Dockerfile-like
/// instruction for its config (`CMD`, `ENV`, `WORKDIR`, …, as `docker import --change`).
#[utoipa::path(post, path = "/v1/images/import", tag = "images",
    params(("reference" = String, Query, description = "the new image's name"),
        ("change" = Option<Vec<String>>, Query, description = "config instructions (repeat the key)")),
    request_body(content = Vec<u8>, description = "the rootfs tarball",
        content_type = "application/x-tar"),
    responses((status = 201, body = Image), (status = 400, body = ErrorBody)))]
pub(super) async fn import(
    State(state): State<ServerState>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<(StatusCode, axum::Json<Image>), ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let allowed = ["reference", "change"];
    let changes = values_of(pairs.clone(), &allowed, "change")?;
    let names = values_of(pairs, &allowed, "reference")?;
    let [name] = names.as_slice() else {
        return Err(ApiError::bad_request(
            "reference: exactly one name for the image",
        ));
    };
    let reference = parse_reference(name)?;
    let mut options = ImportOptions::default();
    crate::image::commit::apply_changes(&mut options.config, &changes)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let image = with_body(&state, body, move |store, reader| {
        let record = archive::import_with(store, reader, &reference, &options)?;
        Ok(image_of(store, &record, false))
    })
    .await?;
    state
        .events
        .publish(Event::now("image", "import", &image.id, &image.name));
    Ok((StatusCode::CREATED, axum::Json(image)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        let pairs = query_pairs(Some("names=a%3A1&names=b+c&x=")).unwrap();
        assert_eq!(
            pairs,
            [
                ("names".to_string(), "a:1".to_string()),
                ("names".to_string(), "b c".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert!(query_pairs(Some("a=%zz")).is_err());
        assert!(values_of(pairs, &["names"], "names").is_err());
    }
}
