//! Push, the inverse of pull: upload an image's layer blobs and config from the store
//! (concurrently, bounded, skipping blobs the registry already has), then its manifest, unchanged,
//! so the pushed image keeps its manifest digest.

use std::io::{self, Read};

use futures_util::{StreamExt, TryStreamExt, stream};
use http::HeaderValue;
use oci_client::RegistryOperation;

use super::record::{self, Descriptor, ImageRecord, RecordError};
use super::reference::Reference;
use super::registry::{self, RegistryOptions};
use super::store::{Digest, Store, StoreError};

/// Why a push failed; each variant names the reference or the blob.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{reference}: log in to the registry: {reason}")]
    Auth { reference: String, reason: String },
    #[error(
        "{reference}: the registry refused access (unauthorized): log in or check the credentials"
    )]
    Unauthorized { reference: String },
    #[error("{reference}: a push target needs a tag, not only a digest")]
    NoTag { reference: String },
    #[error("{}", source.named("blob", digest))]
    Store {
        digest: Digest,
        source: Box<StoreError>,
    },
    #[error("blob {digest}: read from the store: {source}")]
    ReadBlob { digest: Digest, source: io::Error },
    #[error("blob {digest}: check whether the registry has it: {reason}")]
    Exists { digest: Digest, reason: String },
    #[error("blob {digest}: upload: {reason}")]
    Upload { digest: Digest, reason: String },
    #[error("{reference}: upload manifest {digest}: {reason}")]
    Manifest {
        reference: String,
        digest: Digest,
        reason: String,
    },
    #[error("{reference}: manifest media type {media_type:?} is not a valid header")]
    MediaType {
        reference: String,
        media_type: String,
    },
}

type Result<T, E = PushError> = std::result::Result<T, E>;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub concurrency: usize,
    pub registry: RegistryOptions,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: registry::DEFAULT_CONCURRENCY,
            registry: RegistryOptions::default(),
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub manifest_digest: Digest,
    pub pushed_blobs: usize,
    pub pushed_bytes: u64,
    /// Blobs the registry already had.
    pub skipped_blobs: usize,
}

/// Pushes the image recorded as `source` in the store to `target` (often the same reference).
pub async fn push(
    store: &Store,
    source: &Reference,
    target: &Reference,
    options: &PushOptions,
) -> Result<PushReport> {
    let image = record::load(store, &source.to_string())?;
    push_record(store, &image, target, options).await
}

/// Pushes an image record's blobs and manifest to `target`.
pub async fn push_record(
    store: &Store,
    image: &ImageRecord,
    target: &Reference,
    options: &PushOptions,
) -> Result<PushReport> {
    if target.tag.is_none() {
        return Err(PushError::NoTag {
            reference: target.to_string(),
        });
    }
    // `docker.io` targets go to the configured hub endpoint.
    let endpoint = options.registry.endpoint(target);
    let client = registry::client_for(&endpoint, &options.registry);
    let oci_ref = registry::oci_reference(&endpoint);
    client
        .auth(
            &oci_ref,
            &options.registry.registry_auth(),
            RegistryOperation::Push,
        )
        .await
        .map_err(|e| {
            refused(target, &e).unwrap_or_else(|| PushError::Auth {
                reference: target.to_string(),
                reason: registry::describe(&e),
            })
        })?;

    let config = Descriptor {
        media_type: record::OCI_CONFIG.to_string(),
        digest: image.config_digest.clone(),
        size: 0,
        platform: None,
    };
    let blobs: Vec<&Descriptor> = image
        .layers
        .iter()
        .map(|l| &l.blob)
        .chain(std::iter::once(&config))
        .collect();
    let results: Vec<Option<u64>> = stream::iter(blobs)
        .map(|blob| {
            let client = &client;
            let oci_ref = &oci_ref;
            async move {
                let digest = &blob.digest;
                let exists = client
                    .blob_exists(oci_ref, &digest.to_string())
                    .await
                    .map_err(|e| {
                        refused(target, &e).unwrap_or_else(|| PushError::Exists {
                            digest: digest.clone(),
                            reason: registry::describe(&e),
                        })
                    })?;
                if exists {
                    return Ok(None);
                }
                let size = blob_size(store, digest)?;
                client
                    .push_blob_stream(
                        oci_ref,
                        blob_stream(store, digest),
                        &digest.to_string(),
                        Some(size),
                    )
                    .await
                    .map_err(|e| {
                        refused(target, &e).unwrap_or_else(|| PushError::Upload {
                            digest: digest.clone(),
                            reason: registry::describe(&e),
                        })
                    })?;
                Ok::<_, PushError>(Some(size))
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;

    let manifest = store
        .read_blob(&image.manifest_digest)
        .map_err(|source| PushError::Store {
            digest: image.manifest_digest.clone(),
            source: Box::new(source),
        })?;
    let content_type =
        HeaderValue::from_str(&image.manifest_media_type).map_err(|_| PushError::MediaType {
            reference: target.to_string(),
            media_type: image.manifest_media_type.clone(),
        })?;
    client
        .push_manifest_raw(&oci_ref, manifest, content_type)
        .await
        .map_err(|e| {
            refused(target, &e).unwrap_or_else(|| PushError::Manifest {
                reference: target.to_string(),
                digest: image.manifest_digest.clone(),
                reason: registry::describe(&e),
            })
        })?;

    let mut report = PushReport {
        manifest_digest: image.manifest_digest.clone(),
        pushed_blobs: 0,
        pushed_bytes: 0,
        skipped_blobs: 0,
    };
    for result in results {
        match result {
            Some(bytes) => {
                report.pushed_blobs += 1;
                report.pushed_bytes += bytes;
            }
            None => report.skipped_blobs += 1,
        }
    }
    Ok(report)
}

/// [`PushError::Unauthorized`] when the registry refused access.
fn refused(
    target: &Reference,
    error: &oci_client::errors::OciDistributionError,
) -> Option<PushError> {
    registry::is_unauthorized(error).then(|| PushError::Unauthorized {
        reference: target.to_string(),
    })
}

fn blob_size(store: &Store, digest: &Digest) -> Result<u64> {
    std::fs::metadata(store.blob_path(digest))
        .map(|m| m.len())
        .map_err(|source| PushError::ReadBlob {
            digest: digest.clone(),
            source,
        })
}

/// The blob's content as a stream of chunks read from the store on a blocking thread, so a
/// large layer is never held in memory whole.
fn blob_stream(
    store: &Store,
    digest: &Digest,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    const CHUNK: usize = 4 << 20;
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    let store = store.clone();
    let digest = digest.clone();
    tokio::task::spawn_blocking(move || {
        let mut file = match store.open_blob(&digest) {
            Ok(file) => file,
            Err(e) => {
                let _ = sender.blocking_send(Err(io::Error::other(e.to_string()).into()));
                return;
            }
        };
        loop {
            let mut buffer = vec![0; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match file.read(&mut buffer[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = sender.blocking_send(Err(e.into()));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buffer.truncate(filled);
            if sender
                .blocking_send(Ok(bytes::Bytes::from(buffer)))
                .is_err()
            {
                return;
            }
        }
    });
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
