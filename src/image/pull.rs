//! Pull: resolve a reference to a manifest (an index or manifest list resolved to the requested
//! platform), fetch the config and layer blobs concurrently (bounded), each streamed into the
//! store and verified against its digest while streaming, unpack each layer as soon as its blob
//! is complete, and record the image. Blobs and layers already present are neither fetched nor
//! unpacked again.

use std::io::Write;

use futures_util::{StreamExt, TryStreamExt, stream};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;

use super::record::{self, Descriptor, ImageRecord, ManifestKind, Platform, RecordError};
use super::reference::Reference;
use super::registry::{self, OciReference, RegistryOptions};
use super::store::{Digest, Store, StoreError, Synced};
use super::unpack::UnpackOptions;

/// Why a pull failed; each variant names the reference or the blob.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{reference}: not found in the registry")]
    NotFound { reference: String },
    #[error(
        "{reference}: the registry refused access (unauthorized): log in or check the credentials"
    )]
    Unauthorized { reference: String },
    #[error("{reference}: fetch manifest: {reason}")]
    Manifest { reference: String, reason: String },
    #[error("{reference}: manifest {digest}: {reason}")]
    BadManifest {
        reference: String,
        digest: String,
        reason: String,
    },
    #[error("{reference}: manifest digest is {actual}, the reference asks for {expected}")]
    ManifestDigest {
        reference: String,
        expected: String,
        actual: Digest,
    },
    #[error("{reference}: no manifest for platform {platform} in the index")]
    NoPlatform { reference: String, platform: String },
    #[error("blob {digest}: fetch: {reason}")]
    Fetch { digest: Digest, reason: String },
    #[error("{}", source.named("blob", digest))]
    Store {
        digest: Digest,
        source: Box<StoreError>,
    },
    #[error("{}", source.named("layer", diff_id))]
    Unpack {
        diff_id: Digest,
        source: Box<StoreError>,
    },
    #[error("layer {diff_id}: unpack task: {reason}")]
    Task { diff_id: Digest, reason: String },
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Every source failed (mirrors of a Docker Hub image, then the hub endpoint), in order.
    #[error("{reference}: every source failed: {}", join_attempts(attempts))]
    Sources {
        reference: String,
        attempts: Vec<PullError>,
    },
    #[error("{reference}: pull cancelled")]
    Cancelled { reference: String },
}

type Result<T, E = PullError> = std::result::Result<T, E>;

/// The errors of the sources tried, each naming its own endpoint, in order: the mirrors, then
/// the Docker Hub endpoint (mirrors are only tried for Docker Hub images).
fn join_attempts(attempts: &[PullError]) -> String {
    let last = attempts.len().saturating_sub(1);
    let texts: Vec<String> = attempts
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let role = if i < last { "mirror" } else { "docker hub" };
            format!("{role} {e}")
        })
        .collect();
    texts.join("; then ")
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// Bound on concurrent blob downloads (and unpacks).
    pub concurrency: usize,
    pub registry: RegistryOptions,
    pub unpack: UnpackOptions,
    /// Told every step, for per-layer progress display.
    pub progress: Option<Progress>,
    /// Stops the pull (Ctrl-C) when set: downloads in flight stop at their next chunk and their
    /// partial files are deleted; complete blobs stay, so the next pull resumes from them.
    pub cancel: Option<Cancel>,
}

/// A cancellation flag shared between a pull and whoever may stop it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the pull to stop.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// [`PullError::Cancelled`] if the pull was asked to stop.
fn check_cancel(options: &PullOptions, reference: &Reference) -> Result<()> {
    match &options.cancel {
        Some(cancel) if cancel.is_cancelled() => Err(PullError::Cancelled {
            reference: reference.to_string(),
        }),
        _ => Ok(()),
    }
}

/// One step of a pull, as `docker pull` shows them per layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The manifest for the platform is known.
    Resolved { manifest: Digest, layers: usize },
    /// A layer already unpacked in the store: nothing to fetch or unpack.
    LayerExists { blob: Digest },
    /// Bytes of a blob received so far.
    Downloading {
        blob: Digest,
        received: u64,
        total: u64,
    },
    /// Every byte of a blob is received and verified against its digest (it is in the store,
    /// or about to be once the layer streamed from it is synced).
    Downloaded { blob: Digest },
    /// A layer starts unpacking: for a layer fetched now, as soon as its download starts (it is
    /// unpacked from the bytes as they arrive); for a layer whose blob was in the store, when
    /// the unpacker opens the blob.
    Unpacking { blob: Digest },
    /// The layer is unpacked, verified and in the store.
    Unpacked { blob: Digest },
}

/// A receiver of [`PullEvent`]s, called from the pulling tasks (keep it quick).
#[derive(Clone)]
pub struct Progress(pub std::sync::Arc<dyn Fn(&PullEvent) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

fn emit(options: &PullOptions, event: PullEvent) {
    if let Some(progress) = &options.progress {
        (progress.0)(&event);
    }
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::linux_amd64(),
            concurrency: registry::DEFAULT_CONCURRENCY,
            registry: RegistryOptions::default(),
            unpack: UnpackOptions::default(),
            progress: None,
            cancel: None,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub record: ImageRecord,
    /// Blobs (config and layers) downloaded by this pull.
    pub fetched_blobs: usize,
    pub fetched_bytes: u64,
    /// Layers unpacked by this pull (the others were already in the store).
    pub unpacked_layers: usize,
}

/// Pulls `reference` into the store and records it under its full name.
pub async fn pull(
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
) -> Result<PullReport> {
    let name = reference.to_string();
    // Mirrors first (for Docker Hub images), then the registry itself.
    let sources = options.registry.sources(reference);
    let mut resolved = None;
    let mut failed = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let client = registry::client_for(source, &options.registry);
        match resolve(&client, source, options).await {
            Ok(found) => {
                resolved = Some((client, source, found));
                break;
            }
            // A mirror that fails is skipped; the registry's own answer is final.
            Err(error) if i + 1 < sources.len() => failed.push(error),
            Err(error) if failed.is_empty() => return Err(error),
            Err(error) => {
                failed.push(error);
                return Err(PullError::Sources {
                    reference: name,
                    attempts: failed,
                });
            }
        }
    }
    let Some((client, source, (manifest, data, digest))) = resolved else {
        return Err(PullError::NotFound { reference: name });
    };
    let reference = source;
    if !store.has_blob(&digest) {
        store
            .write_blob(&data, &digest)
            .map_err(|source| PullError::Store {
                digest: digest.clone(),
                source: Box::new(source),
            })?;
    }

    let mut fetched_blobs = 0;
    let mut fetched_bytes = 0;
    if !store.has_blob(&manifest.config.digest) {
        fetched_bytes += fetch_blob(&client, store, reference, &manifest.config, options).await?;
        fetched_blobs += 1;
    }
    // The record gives the chain: every layer's chain id is known before any is fetched, so
    // each layer unpacks as soon as its own blob is complete.
    let image = record::from_store(store, &name, &digest)?;
    emit(
        options,
        PullEvent::Resolved {
            manifest: digest.clone(),
            layers: image.layers.len(),
        },
    );

    let concurrency = options.concurrency.max(1);
    let results: Vec<(Option<u64>, bool)> = stream::iter(image.layers.iter().enumerate())
        .map(|(i, layer)| {
            let parent = i
                .checked_sub(1)
                .and_then(|p| image.layers.get(p))
                .map(|p| p.chain_id.clone());
            let client = &client;
            async move {
                if store.has_layer(&layer.chain_id) {
                    emit(
                        options,
                        PullEvent::LayerExists {
                            blob: layer.blob.digest.clone(),
                        },
                    );
                    return Ok((None, false));
                }
                check_cancel(options, reference)?;
                if !store.has_blob(&layer.blob.digest) {
                    // Unpacking, not downloading, dominates a pull: the layer is unpacked from
                    // the bytes as they arrive, while the blob is written and verified.
                    let fetched =
                        fetch_and_unpack(client, store, reference, layer, parent, options).await?;
                    emit(
                        options,
                        PullEvent::Unpacked {
                            blob: layer.blob.digest.clone(),
                        },
                    );
                    return Ok((Some(fetched), true));
                }
                check_cancel(options, reference)?;
                emit(
                    options,
                    PullEvent::Unpacking {
                        blob: layer.blob.digest.clone(),
                    },
                );
                let unpacked = unpack(store, parent, layer, &options.unpack).await?;
                emit(
                    options,
                    PullEvent::Unpacked {
                        blob: layer.blob.digest.clone(),
                    },
                );
                Ok::<_, PullError>((None, unpacked))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let mut unpacked_layers = 0;
    for (fetched, unpacked) in results {
        if let Some(bytes) = fetched {
            fetched_blobs += 1;
            fetched_bytes += bytes;
        }
        unpacked_layers += usize::from(unpacked);
    }
    record::save(store, &image)?;
    Ok(PullReport {
        record: image,
        fetched_blobs,
        fetched_bytes,
        unpacked_layers,
    })
}

/// Fetches the manifest of `reference`, resolving an index to the requested platform; returns
/// the image manifest, its bytes and its digest (computed from the bytes).
async fn resolve(
    client: &oci_client::Client,
    reference: &Reference,
    options: &PullOptions,
) -> Result<(record::Manifest, bytes::Bytes, Digest)> {
    let auth = options.registry.registry_auth();
    let name = reference.to_string();
    let oci_ref = registry::oci_reference(reference);

    let (data, digest) = fetch_manifest(client, &auth, reference, &oci_ref).await?;
    if let Some(expected) = &reference.digest
        && digest.to_string() != *expected
    {
        return Err(PullError::ManifestDigest {
            reference: name,
            expected: expected.clone(),
            actual: digest,
        });
    }
    let bad_manifest = |digest: &Digest, reason: String| PullError::BadManifest {
        reference: reference.to_string(),
        digest: digest.to_string(),
        reason,
    };
    let resolved = match record::parse_manifest(&data)
        .map_err(|reason| bad_manifest(&digest, reason))?
    {
        ManifestKind::Image(manifest) => (manifest, data, digest),
        ManifestKind::Index(index) => {
            let entry = index
                .manifests
                .iter()
                .find(|entry| {
                    entry
                        .platform
                        .as_ref()
                        .is_some_and(|p| options.platform.matches(p))
                })
                .ok_or_else(|| PullError::NoPlatform {
                    reference: name.clone(),
                    platform: options.platform.to_string(),
                })?;
            let at = registry::oci_reference_at(reference, &entry.digest);
            let (data, digest) = fetch_manifest(client, &auth, reference, &at).await?;
            if digest != entry.digest {
                return Err(bad_manifest(
                    &entry.digest,
                    format!("registry served content with digest {digest}"),
                ));
            }
            match record::parse_manifest(&data).map_err(|reason| bad_manifest(&digest, reason))? {
                ManifestKind::Image(manifest) => (manifest, data, digest),
                ManifestKind::Index(_) => {
                    return Err(bad_manifest(&digest, "nested index".to_string()));
                }
            }
        }
    };
    Ok(resolved)
}

async fn fetch_manifest(
    client: &oci_client::Client,
    auth: &oci_client::secrets::RegistryAuth,
    reference: &Reference,
    oci_ref: &OciReference,
) -> Result<(bytes::Bytes, Digest)> {
    let (data, _) = client
        .pull_manifest_raw(oci_ref, auth, registry::ACCEPTED_MANIFESTS)
        .await
        .map_err(|e| manifest_error(reference, &e))?;
    // The digest is computed here from the bytes received, never taken from a header.
    let digest = Digest::sha256_of(&data);
    Ok((data, digest))
}

fn manifest_error(reference: &Reference, error: &OciDistributionError) -> PullError {
    if registry::is_not_found(error) {
        PullError::NotFound {
            reference: reference.to_string(),
        }
    } else if registry::is_unauthorized(error) {
        PullError::Unauthorized {
            reference: reference.to_string(),
        }
    } else {
        PullError::Manifest {
            reference: reference.to_string(),
            reason: registry::describe(error),
        }
    }
}

/// Streams one blob into the store, verified while streaming; returns the bytes received.
async fn fetch_blob(
    client: &oci_client::Client,
    store: &Store,
    reference: &Reference,
    blob: &Descriptor,
    options: &PullOptions,
) -> Result<u64> {
    fetch_blob_tee(client, store, reference, blob, options, None).await
}

/// The unpacker a blob's bytes are handed to while it downloads.
struct Tee {
    /// Every received chunk, after it is written to the blob file. Dropped once the blob is
    /// verified (or failed), so the unpacker's reader sees the end of the stream.
    chunks: Option<std::sync::mpsc::SyncSender<bytes::Bytes>>,
    /// The unpacker's outcome: the proof of its store-wide sync when it unpacked the layer from
    /// the whole stream, else `None`.
    synced: std::sync::mpsc::Receiver<Option<Synced>>,
}

/// [`fetch_blob`], also handing every received chunk to `tee` (the unpacker of a layer that
/// is unpacked while it downloads).
///
/// Durability with one sync instead of two: the verified blob waits (in `tmp/`) for the
/// unpacker, whose `syncfs` before it commits the layer also puts the blob's data on disk,
/// since it runs after the unpacker saw the end of the stream, that is after the blob's last
/// write. Only then is the blob renamed into place (and its directory synced). When the
/// unpacker did not sync (it failed, or found the layer already there), the blob is fsynced
/// itself as before. Either way a blob's final name never appears before its data is durable,
/// and the record, written after every blob and layer, never points at missing data.
async fn fetch_blob_tee(
    client: &oci_client::Client,
    store: &Store,
    reference: &Reference,
    blob: &Descriptor,
    options: &PullOptions,
    tee: Option<Tee>,
) -> Result<u64> {
    let digest = &blob.digest;
    let fetch_error = |reason: String| PullError::Fetch {
        digest: digest.clone(),
        reason,
    };
    let descriptor = OciDescriptor {
        media_type: blob.media_type.clone(),
        digest: digest.to_string(),
        size: i64::try_from(blob.size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    };
    let oci_ref = registry::oci_reference(reference);
    let mut body = client
        .pull_blob_stream(&oci_ref, &descriptor)
        .await
        .map_err(|e| fetch_error(registry::describe(&e)))?;
    // The file writes (and the final sync) run on a blocking thread; the network side hands
    // it chunks through a small bounded channel, so a slow disk slows the download down.
    let (chunks, mut incoming) = tokio::sync::mpsc::channel::<Chunk>(16);
    let writer_store = store.clone();
    let writer_digest = digest.clone();
    let writer_options = options.clone();
    let size = blob.size;
    let writer = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut tee = tee;
        let digest = writer_digest;
        let store_error = |source| PullError::Store {
            digest: digest.clone(),
            source: Box::new(source),
        };
        let mut writer = writer_store.blob_writer(Some(size)).map_err(store_error)?;
        while let Some(chunk) = incoming.blocking_recv() {
            match chunk {
                Chunk::Data(data) => {
                    writer.write_all(&data).map_err(|source| {
                        store_error(StoreError::WriteBlob {
                            digest: digest.clone(),
                            source,
                        })
                    })?;
                    // An unpacker that stopped has its own error to report; the blob goes on.
                    if let Some(t) = tee.as_mut()
                        && let Some(chunks) = &t.chunks
                        && chunks.send(data).is_err()
                    {
                        t.chunks = None;
                    }
                }
                Chunk::End => {
                    let verified = writer.verify(&digest).map_err(store_error)?;
                    let written = verified.written();
                    emit(
                        &writer_options,
                        PullEvent::Downloaded {
                            blob: digest.clone(),
                        },
                    );
                    let synced = tee.take().and_then(|mut t| {
                        // The end of the unpacker's stream: every byte is written above.
                        t.chunks = None;
                        t.synced.recv().ok().flatten()
                    });
                    match synced {
                        Some(proof) => verified.commit_synced(&proof),
                        None => verified.commit(),
                    }
                    .map_err(store_error)?;
                    return Ok(written);
                }
            }
        }
        // The sender went away without `End`: the download failed; the writer's drop deletes
        // the partial file.
        Err(PullError::Fetch {
            digest: digest.clone(),
            reason: "download interrupted".to_string(),
        })
    });
    let mut failure = None;
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        if let Err(cancelled) = check_cancel(options, reference) {
            failure = Some(cancelled);
            break;
        }
        match chunk {
            Ok(data) => {
                received += data.len() as u64;
                emit(
                    options,
                    PullEvent::Downloading {
                        blob: digest.clone(),
                        received,
                        total: blob.size,
                    },
                );
                if chunks.send(Chunk::Data(data)).await.is_err() {
                    // The writer failed; its error is the one to report.
                    break;
                }
            }
            Err(e) => {
                failure = Some(fetch_error(registry::lower_first(e.to_string())));
                break;
            }
        }
    }
    if failure.is_none() {
        // A closed channel here means the writer already failed and will say why.
        let _ = chunks.send(Chunk::End).await;
    }
    drop(chunks);
    let written = writer.await.map_err(|e| fetch_error(e.to_string()))?;
    match failure {
        Some(error) => Err(error),
        None => written,
    }
}

/// Fetches a layer's blob and unpacks the layer from the same bytes while they arrive. The layer
/// counts only when its diff id verifies; it is dropped again when the blob itself fails, so a
/// failed pull never leaves a layer without its verified blob.
async fn fetch_and_unpack(
    client: &oci_client::Client,
    store: &Store,
    reference: &Reference,
    layer: &record::LayerRecord,
    parent: Option<Digest>,
    options: &PullOptions,
) -> Result<u64> {
    let (tee, chunks) = std::sync::mpsc::sync_channel::<bytes::Bytes>(64);
    let (synced_sender, synced) = std::sync::mpsc::sync_channel::<Option<Synced>>(1);
    let unpack_store = store.clone();
    let diff_id = layer.diff_id.clone();
    let unpack_options = options.unpack.clone();
    let unpack_parent = parent.clone();
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_ended = ended.clone();
    // Unpacking starts with the download: the unpacker reads the bytes as they arrive.
    emit(
        options,
        PullEvent::Unpacking {
            blob: layer.blob.digest.clone(),
        },
    );
    let unpacker = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::with_capacity(
            256 * 1024,
            ChannelReader {
                chunks,
                current: bytes::Bytes::new(),
                ended: reader_ended,
            },
        );
        let result = unpack_store.unpack_layer_synced(
            unpack_parent.as_ref(),
            &diff_id,
            reader,
            &unpack_options,
        );
        // The sync covers the blob only if it came after the blob's last write, which the end
        // of the stream proves (a decoder may stop before the last compressed bytes).
        let (result, proof) = match result {
            Ok((info, proof)) => (
                Ok(info),
                proof.filter(|_| ended.load(std::sync::atomic::Ordering::SeqCst)),
            ),
            Err(e) => (Err(e), None),
        };
        let _ = synced_sender.send(proof);
        result
    });
    let fetched = fetch_blob_tee(
        client,
        store,
        reference,
        &layer.blob,
        options,
        Some(Tee {
            chunks: Some(tee),
            synced,
        }),
    )
    .await;
    let unpacked = unpacker.await;
    let chain_id = super::store::chain_id_next(parent.as_ref(), &layer.diff_id);
    match (fetched, unpacked) {
        (Ok(bytes), Ok(Ok(_))) => Ok(bytes),
        // The blob's own failure is the one to report (the unpacker only saw its bytes end).
        (Err(error), unpacked) => {
            if matches!(unpacked, Ok(Ok(_))) {
                let _ = store.delete_layer(&chain_id);
            }
            Err(error)
        }
        (Ok(_), Ok(Err(source))) => Err(PullError::Unpack {
            diff_id: layer.diff_id.clone(),
            source: Box::new(source),
        }),
        (Ok(_), Err(e)) => Err(PullError::Task {
            diff_id: layer.diff_id.clone(),
            reason: e.to_string(),
        }),
    }
}

/// The bytes of a download as a `Read` for the unpacker; the end of the stream is when the
/// sender is dropped.
struct ChannelReader {
    chunks: std::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
    /// Set once the sender is gone (the blob's writer is done writing).
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(next) => self.current = next,
                Err(_) => {
                    self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// What the network side of [`fetch_blob`] hands the writer thread.
enum Chunk {
    Data(bytes::Bytes),
    End,
}

/// Unpacks one layer from its blob on a blocking thread; `false` when it was already unpacked.
async fn unpack(
    store: &Store,
    parent: Option<Digest>,
    layer: &record::LayerRecord,
    options: &UnpackOptions,
) -> Result<bool> {
    let store = store.clone();
    let diff_id = layer.diff_id.clone();
    let blob = layer.blob.digest.clone();
    let options = options.clone();
    let task_diff_id = diff_id.clone();
    tokio::task::spawn_blocking(move || {
        if store.has_layer(&super::store::chain_id_next(parent.as_ref(), &diff_id)) {
            return Ok(false);
        }
        let unpack_error = |source| PullError::Unpack {
            diff_id: diff_id.clone(),
            source: Box::new(source),
        };
        let file = store.open_blob(&blob).map_err(unpack_error)?;
        store
            .unpack_layer(
                parent.as_ref(),
                &diff_id,
                std::io::BufReader::new(file),
                &options,
            )
            .map_err(unpack_error)?;
        Ok(true)
    })
    .await
    .map_err(|e| PullError::Task {
        diff_id: task_diff_id,
        reason: e.to_string(),
    })?
}
