//! Image tarballs: `image save` writes one tar that is at once a docker-archive (`manifest.json`
//! with Config/RepoTags/Layers, `repositories`) and an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), as Docker ≥ 25 does, so both kinds of reader load it; the
//! blobs are the store's own (manifest, config and layers unchanged), so a save → load round trip
//! keeps manifest digests. `image load` reads either kind, gzipped, zstd-compressed or plain: every
//! file is staged under the store's `tmp/` and hashed while written, every blob an image uses is
//! checked against its digest (or, in a legacy docker-archive, against the config's diff ids),
//! and only then are the blobs committed, the layers unpacked and the records written. On any
//! error nothing this load added stays in the store. `image import` ([`import`]) turns a rootfs
//! tarball into a one-layer image.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::record::{self, Descriptor, ImageRecord, ManifestKind, Platform, RecordError};
use super::reference::{Reference, ReferenceError};
use super::store::{Digest, Store, StoreError, chain_id_next};
use super::unpack::{Compression, UnpackOptions};

mod import;
mod read;
mod save;

pub use import::{ImportOptions, host_platform, import, import_with};
use read::{Contents, Staged, blob_path};
pub use save::{save, save_to_path};

/// The annotation containerd and Docker ≥ 25 put the full image name in.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a reference name (often only a tag).
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why saving, loading or importing an image tarball failed; each variant names the file, blob,
/// layer or image concerned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("read archive: {source}")]
    Read { source: io::Error },
    #[error("{what} is compressed with {format}, which is not supported (gzip, zstd or none)")]
    Compression { what: String, format: String },
    #[error("archive entry {path}: {source}")]
    Entry { path: String, source: io::Error },
    #[error("archive entry {path}: stage in the store: {source}")]
    Stage {
        path: String,
        source: Box<StoreError>,
    },
    #[error("archive entry {path}: {size} bytes is too large for a metadata file (limit {limit})")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("archive has neither manifest.json (docker-archive) nor index.json (OCI image layout)")]
    NotAnImage,
    #[error("archive {file}: {reason}")]
    BadMetadata { file: String, reason: String },
    #[error("archive has no {path}, which {by} refers to")]
    Missing { path: String, by: String },
    #[error("blob {expected} ({path}): the archive's content has digest {actual}")]
    BlobDigest {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "blob {digest} ({path}): the archive has {actual} bytes, the descriptor says {expected}"
    )]
    BlobSize {
        path: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest}: {source}")]
    Store {
        digest: Digest,
        source: Box<StoreError>,
    },
    #[error("layer {diff_id}: {source}")]
    Layer {
        diff_id: Digest,
        source: Box<StoreError>,
    },
    #[error("image {image}: {reason}")]
    BadImage { image: String, reason: String },
    #[error("image name {name:?}: {source}")]
    Reference {
        name: String,
        source: ReferenceError,
    },
    #[error("index {digest}: no manifest for platform {platform}")]
    NoPlatform { digest: Digest, platform: String },
    #[error("image {name}: a saved image needs a tag or a digest")]
    NoName { name: String },
    #[error("write archive: {source}")]
    Write { source: io::Error },
    #[error("write archive {path}: {source}")]
    WriteFile { path: PathBuf, source: io::Error },
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

// --- archive files ---------------------------------------------------------------------------

/// One image of `manifest.json` (docker-archive).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An entry of an OCI `index.json`, with its annotations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<IndexEntry>,
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ArchiveError::Write {
        source: io::Error::other(e),
    })
}

// --- load ------------------------------------------------------------------------------------

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Which manifest of a multi-platform index to load.
    pub platform: Platform,
    pub unpack: UnpackOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            platform: host_platform(),
            unpack: UnpackOptions::default(),
        }
    }
}

/// One image a load recorded: under its name, or (unnamed in the archive) under its image id,
/// the config digest, as `docker load` reports `Loaded image ID: sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub reference: Option<Reference>,
    pub record: ImageRecord,
}

/// What the archive says about one image, checked against the staged blobs.
struct Planned {
    names: Vec<Reference>,
    manifest_digest: Digest,
    /// A manifest made here for a legacy docker-archive, which has none.
    made_manifest: Option<Vec<u8>>,
    /// Blobs to commit from the archive (manifest, config, layers).
    blobs: Vec<Digest>,
}

/// Loads every image of a docker-archive or OCI image-layout tarball (gzipped or not).
pub fn load<R: Read>(store: &Store, reader: R) -> Result<Vec<LoadedImage>> {
    load_with(store, reader, &LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with<R: Read>(
    store: &Store,
    reader: R,
    options: &LoadOptions,
) -> Result<Vec<LoadedImage>> {
    let mut contents = Contents::read(store, reader)?;
    let docker = match contents.metadata("manifest.json") {
        Some(data) => Some(
            serde_json::from_slice::<Vec<DockerEntry>>(data).map_err(|e| {
                ArchiveError::BadMetadata {
                    file: "manifest.json".to_string(),
                    reason: e.to_string(),
                }
            })?,
        ),
        None => None,
    };
    let planned = match (contents.metadata("index.json"), &docker) {
        (Some(index), _) => {
            match plan_oci(&contents, index, docker.as_deref(), &options.platform) {
                Ok(planned) => planned,
                // An index naming content the archive lacks (other platforms, say) while its
                // manifest.json is complete: read it as the docker-archive it also is.
                Err(error @ (ArchiveError::Missing { .. } | ArchiveError::NoPlatform { .. })) => {
                    match &docker {
                        Some(docker) => plan_docker(&contents, docker).map_err(|_| error)?,
                        None => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
        (None, Some(docker)) => plan_docker(&contents, docker)?,
        (None, None) => return Err(ArchiveError::NotAnImage),
    };

    let mut added = Added::new(store);
    for image in &planned {
        for digest in &image.blobs {
            if store.has_blob(digest) {
                continue;
            }
            let Some(writer) = contents.take(digest) else {
                // Committed already for an earlier image of this archive.
                continue;
            };
            writer
                .commit(digest)
                .map_err(|source| ArchiveError::Store {
                    digest: digest.clone(),
                    source: Box::new(source),
                })?;
            added.blobs.push(digest.clone());
        }
        if let Some(manifest) = &image.made_manifest {
            added.write_blob(manifest, &image.manifest_digest)?;
        }
    }
    drop(contents);

    let mut records = Vec::new();
    for image in &planned {
        let id_name;
        let name = match image.names.first() {
            Some(first) => first.to_string(),
            None => {
                id_name = image_id(store, &image.manifest_digest)?;
                id_name.clone()
            }
        };
        let record = record::from_store(store, &name, &image.manifest_digest)?;
        added.unpack_layers(&record, &options.unpack)?;
        records.push((image, record));
    }

    let mut loaded = Vec::new();
    for (image, record) in records {
        if image.names.is_empty() {
            record::save(store, &record)?;
            added.disarm();
            loaded.push(LoadedImage {
                reference: None,
                record,
            });
            continue;
        }
        for name in &image.names {
            let record = ImageRecord {
                name: name.to_string(),
                ..record.clone()
            };
            record::save(store, &record)?;
            added.disarm();
            loaded.push(LoadedImage {
                reference: Some(name.clone()),
                record,
            });
        }
    }
    Ok(loaded)
}

/// The image id (config digest) of a manifest in the store.
fn image_id(store: &Store, manifest: &Digest) -> Result<String> {
    let data = store
        .read_blob(manifest)
        .map_err(|source| ArchiveError::Store {
            digest: manifest.clone(),
            source: Box::new(source),
        })?;
    match record::parse_manifest(&data) {
        Ok(ManifestKind::Image(m)) => Ok(m.config.digest.to_string()),
        _ => Ok(manifest.to_string()),
    }
}

/// The staged blob `digest`, checked against its digest and (if known) its size.
fn verified<'a>(
    contents: &'a Contents,
    digest: &Digest,
    size: Option<u64>,
    by: &str,
) -> Result<&'a Staged> {
    let path = blob_path(digest);
    let staged = contents.get(&path).ok_or_else(|| ArchiveError::Missing {
        path: path.clone(),
        by: by.to_string(),
    })?;
    if &staged.digest != digest {
        return Err(ArchiveError::BlobDigest {
            path,
            expected: digest.clone(),
            actual: staged.digest.clone(),
        });
    }
    if let Some(size) = size
        && size != staged.size
    {
        return Err(ArchiveError::BlobSize {
            path,
            digest: digest.clone(),
            expected: size,
            actual: staged.size,
        });
    }
    Ok(staged)
}

/// The in-memory content of a small staged file.
fn small<'a>(staged: &'a Staged, what: &str) -> Result<&'a [u8]> {
    staged
        .data
        .as_deref()
        .ok_or_else(|| ArchiveError::BadMetadata {
            file: what.to_string(),
            reason: format!("{} bytes is too large", staged.size),
        })
}

/// Plans the images of an OCI image layout (`index.json`), names from the annotations or, for
/// entries without a usable one, from `manifest.json`'s RepoTags.
fn plan_oci(
    contents: &Contents,
    index: &[u8],
    docker: Option<&[DockerEntry]>,
    platform: &Platform,
) -> Result<Vec<Planned>> {
    let bad_index = |reason: String| ArchiveError::BadMetadata {
        file: "index.json".to_string(),
        reason,
    };
    let index: IndexFile = serde_json::from_slice(index).map_err(|e| bad_index(e.to_string()))?;
    let mut planned: Vec<Planned> = Vec::new();
    for entry in &index.manifests {
        let mut names = entry_names(entry)?;
        let mut blobs = Vec::new();
        let (mut digest, mut size) = (entry.digest.clone(), entry.size);
        let mut nested = false;
        loop {
            let by = format!(
                "the manifest list in {}",
                if nested { "the index" } else { "index.json" }
            );
            let staged = verified(contents, &digest, Some(size), &by)?;
            let data = small(staged, &blob_path(&digest))?;
            let bad = |reason: String| ArchiveError::BadImage {
                image: digest.to_string(),
                reason,
            };
            match record::parse_manifest(data).map_err(bad)? {
                ManifestKind::Image(manifest) => {
                    blobs.push(digest.clone());
                    blobs.extend(plan_manifest(contents, &digest, &manifest)?);
                    if names.is_empty()
                        && let Some(docker) = docker
                    {
                        names = docker_names(docker, &manifest.config.digest)?;
                    }
                    break;
                }
                ManifestKind::Index(_) if nested => {
                    return Err(bad("nested index inside an index".to_string()));
                }
                ManifestKind::Index(inner) => {
                    let chosen = inner
                        .manifests
                        .iter()
                        .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
                        .ok_or_else(|| ArchiveError::NoPlatform {
                            digest: digest.clone(),
                            platform: platform.to_string(),
                        })?;
                    (digest, size) = (chosen.digest.clone(), chosen.size);
                    nested = true;
                }
            }
        }
        match planned.iter_mut().find(|p| p.manifest_digest == digest) {
            Some(existing) => {
                for name in names {
                    if !existing.names.contains(&name) {
                        existing.names.push(name);
                    }
                }
            }
            None => planned.push(Planned {
                names,
                manifest_digest: digest,
                made_manifest: None,
                blobs,
            }),
        }
    }
    Ok(planned)
}

/// Checks the config and layer blobs of `manifest`; returns their digests.
fn plan_manifest(
    contents: &Contents,
    digest: &Digest,
    manifest: &record::Manifest,
) -> Result<Vec<Digest>> {
    let by = format!("manifest {digest}");
    let config = verified(
        contents,
        &manifest.config.digest,
        Some(manifest.config.size),
        &by,
    )?;
    let config_file =
        record::parse_config(small(config, &blob_path(&config.digest))?).map_err(|reason| {
            ArchiveError::BadImage {
                image: digest.to_string(),
                reason: format!("config {}: {reason}", manifest.config.digest),
            }
        })?;
    if config_file.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ArchiveError::BadImage {
            image: digest.to_string(),
            reason: format!(
                "config has {} diff ids but the manifest has {} layers",
                config_file.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    let mut blobs = vec![manifest.config.digest.clone()];
    for layer in &manifest.layers {
        verified(contents, &layer.digest, Some(layer.size), &by)?;
        blobs.push(layer.digest.clone());
    }
    Ok(blobs)
}

/// The names an index entry carries: `io.containerd.image.name`, else a
/// `org.opencontainers.image.ref.name` that is a whole reference (not just a tag).
fn entry_names(entry: &IndexEntry) -> Result<Vec<Reference>> {
    let parse = |name: &String| {
        Reference::parse(name).map_err(|source| ArchiveError::Reference {
            name: name.clone(),
            source,
        })
    };
    if let Some(name) = entry.annotations.get(ANNOTATION_IMAGE_NAME) {
        return Ok(vec![parse(name)?]);
    }
    match entry.annotations.get(ANNOTATION_REF_NAME) {
        Some(name) if name.contains('/') || name.contains(':') => {
            Ok(Reference::parse(name).map(|r| vec![r]).unwrap_or_default())
        }
        _ => Ok(Vec::new()),
    }
}

/// RepoTags of the `manifest.json` entry whose config is `config`.
fn docker_names(docker: &[DockerEntry], config: &Digest) -> Result<Vec<Reference>> {
    let path = blob_path(config);
    let mut names = Vec::new();
    for entry in docker {
        let same = entry.config.trim_start_matches("./") == path
            || entry.config.trim_end_matches(".json") == config.hex();
        if same {
            names.extend(repo_tags(entry)?);
        }
    }
    Ok(names)
}

fn repo_tags(entry: &DockerEntry) -> Result<Vec<Reference>> {
    entry
        .repo_tags
        .iter()
        .flatten()
        .map(|name| {
            Reference::parse(name).map_err(|source| ArchiveError::Reference {
                name: name.clone(),
                source,
            })
        })
        .collect()
}

/// The digest a file name states, if it is one (`blobs/sha256/<hex>` or `<hex>.json`).
fn named_digest(path: &str) -> Option<Digest> {
    let path = path.trim_start_matches("./");
    if let Some(rest) = path.strip_prefix("blobs/")
        && let Some((algorithm, hex)) = rest.split_once('/')
    {
        return Digest::parse(&format!("{algorithm}:{hex}")).ok();
    }
    let hex = path.strip_suffix(".json")?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Plans the images of a docker-archive without an OCI index: each blob is checked against the
/// digest its name states, plain layer tars against the config's diff ids, and an OCI manifest
/// is made for each image.
fn plan_docker(contents: &Contents, docker: &[DockerEntry]) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for entry in docker {
        let by = "manifest.json".to_string();
        let lookup = |path: &str| -> Result<&Staged> {
            let staged = contents.get(path).ok_or_else(|| ArchiveError::Missing {
                path: path.to_string(),
                by: by.clone(),
            })?;
            if let Some(expected) = named_digest(path)
                && expected != staged.digest
            {
                return Err(ArchiveError::BlobDigest {
                    path: path.to_string(),
                    expected,
                    actual: staged.digest.clone(),
                });
            }
            Ok(staged)
        };
        let config = lookup(&entry.config)?;
        let config_file =
            record::parse_config(small(config, &entry.config)?).map_err(|reason| {
                ArchiveError::BadImage {
                    image: entry.config.clone(),
                    reason,
                }
            })?;
        let diff_ids = &config_file.rootfs.diff_ids;
        if diff_ids.len() != entry.layers.len() {
            return Err(ArchiveError::BadImage {
                image: entry.config.clone(),
                reason: format!(
                    "config has {} diff ids but manifest.json lists {} layers",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            });
        }
        let mut blobs = vec![config.digest.clone()];
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let layer = lookup(path)?;
            let media_type = match Compression::detect(&layer.magic) {
                Compression::Gzip => record::OCI_LAYER_GZIP,
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::None => {
                    if &layer.digest != diff_id {
                        return Err(ArchiveError::BlobDigest {
                            path: path.clone(),
                            expected: diff_id.clone(),
                            actual: layer.digest.clone(),
                        });
                    }
                    "application/vnd.oci.image.layer.v1.tar"
                }
                other => {
                    return Err(ArchiveError::Compression {
                        what: format!("layer {path}"),
                        format: format!("{other:?}").to_lowercase(),
                    });
                }
            };
            blobs.push(layer.digest.clone());
            layers.push(Descriptor {
                media_type: media_type.to_string(),
                digest: layer.digest.clone(),
                size: layer.size,
                platform: None,
            });
        }
        let manifest = record::Manifest {
            schema_version: 2,
            media_type: Some(record::OCI_MANIFEST.to_string()),
            config: Descriptor {
                media_type: record::OCI_CONFIG.to_string(),
                digest: config.digest.clone(),
                size: config.size,
                platform: None,
            },
            layers,
        };
        let made = to_json(&manifest)?;
        planned.push(Planned {
            names: repo_tags(entry)?,
            manifest_digest: Digest::sha256_of(&made),
            made_manifest: Some(made),
            blobs,
        });
    }
    Ok(planned)
}

// --- rollback --------------------------------------------------------------------------------

/// What a load or import added to the store, removed again on drop unless disarmed (once a
/// record refers to it).
pub(super) struct Added<'a> {
    store: &'a Store,
    pub blobs: Vec<Digest>,
    pub layers: Vec<Digest>,
    armed: bool,
}

impl<'a> Added<'a> {
    pub fn new(store: &'a Store) -> Added<'a> {
        Added {
            store,
            blobs: Vec::new(),
            layers: Vec::new(),
            armed: true,
        }
    }

    /// Keeps everything added.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Writes a blob made in memory, unless the store has it.
    pub fn write_blob(&mut self, data: &[u8], digest: &Digest) -> Result<()> {
        if !self.store.has_blob(digest) {
            self.store
                .write_blob(data, digest)
                .map_err(|source| ArchiveError::Store {
                    digest: digest.clone(),
                    source: Box::new(source),
                })?;
            self.blobs.push(digest.clone());
        }
        Ok(())
    }

    /// Unpacks the layers of `image` the store lacks, bottom first.
    pub fn unpack_layers(&mut self, image: &ImageRecord, options: &UnpackOptions) -> Result<()> {
        let mut parent: Option<Digest> = None;
        for layer in &image.layers {
            let chain_id = chain_id_next(parent.as_ref(), &layer.diff_id);
            if !self.store.has_layer(&chain_id) {
                let layer_error = |source| ArchiveError::Layer {
                    diff_id: layer.diff_id.clone(),
                    source: Box::new(source),
                };
                let blob = self
                    .store
                    .open_blob(&layer.blob.digest)
                    .map_err(layer_error)?;
                self.store
                    .unpack_layer(
                        parent.as_ref(),
                        &layer.diff_id,
                        BufReader::with_capacity(256 * 1024, blob),
                        options,
                    )
                    .map_err(layer_error)?;
                self.layers.push(chain_id.clone());
            }
            parent = Some(chain_id);
        }
        Ok(())
    }
}

impl Drop for Added<'_> {
    fn drop(&mut self) {
        if self.armed {
            for chain_id in self.layers.iter().rev() {
                let _ = self.store.delete_layer(chain_id);
            }
            for digest in &self.blobs {
                let _ = self.store.delete_blob(digest);
            }
        }
    }
}
