//! Image records: what the store knows about a named image once all its blobs are present —
//! the manifest digest, the config digest, the layer chain (diff ids and chain ids) and the
//! config fields containers are made from. One JSON file per name under
//! `<data root>/image/images/<sha256 of the name>.json`, written atomically (temp + rename).
//! Also the OCI/Docker manifest, index and config shapes read from blobs.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::store::{Digest, Store, StoreError, chain_id_next};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Why reading or writing an image record (or the manifest and config behind it) failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("image {name}: {source}")]
    Store { name: String, source: StoreError },
    #[error("image {name}: manifest {digest}: {reason}")]
    BadManifest {
        name: String,
        digest: Digest,
        reason: String,
    },
    #[error("image {name}: config {digest}: {reason}")]
    BadConfig {
        name: String,
        digest: Digest,
        reason: String,
    },
    #[error("image {name}: no such image in the store")]
    NotFound { name: String },
    #[error("image {name}: read record {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("image {name}: write record {path}: {source}")]
    Write {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
}

type Result<T, E = RecordError> = std::result::Result<T, E>;

/// A content descriptor (OCI descriptor / Docker manifest entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An OS/architecture pair, as in index entries and image configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, the host platform here.
    pub fn linux_amd64() -> Platform {
        Platform {
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            variant: None,
        }
    }

    /// Whether an index entry's platform satisfies this requested platform (a requested
    /// variant must match; an unrequested one matches anything).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The image config blob (the parts flotilla reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
}

/// `rootfs` of an image config: the uncompressed layer digests, bottom first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// The container defaults of an image config, with Docker's field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `ONBUILD` triggers (instruction texts), run by a build on this image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
}

/// An image's HEALTHCHECK (durations in nanoseconds, as Docker stores them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// One layer of an image: its blob, its diff id and its chain id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub blob: Descriptor,
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// What the store records about a named image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The full reference the image is known by (`127.0.0.1:5000/a/b:1`).
    pub name: String,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config_digest: Digest,
    pub platform: Platform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Bottom layer first.
    pub layers: Vec<LayerRecord>,
    pub config: ContainerConfig,
}

impl ImageRecord {
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    pub fn chain_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.chain_id.clone()).collect()
    }

    /// The chain id of the top layer: the image's root filesystem.
    pub fn top_chain_id(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }
}

/// A parsed manifest blob: an image manifest or an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    Image(Manifest),
    Index(Index),
}

/// Parses a manifest or index, telling them apart by media type or, failing that, by shape.
pub fn parse_manifest(data: &[u8]) -> std::result::Result<ManifestKind, String> {
    let value: serde_json::Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let media_type = value.get("mediaType").and_then(|m| m.as_str());
    let is_index = match media_type {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(format!("unsupported media type {other}")),
        None => value.get("manifests").is_some(),
    };
    if value.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return Err("only schema version 2 manifests are supported".to_string());
    }
    if is_index {
        serde_json::from_value(value)
            .map(ManifestKind::Index)
            .map_err(|e| e.to_string())
    } else {
        serde_json::from_value(value)
            .map(ManifestKind::Image)
            .map_err(|e| e.to_string())
    }
}

/// The media type of a manifest blob (defaulting by shape when it has none).
pub fn manifest_media_type(kind: &ManifestKind) -> String {
    match kind {
        ManifestKind::Image(m) => m.media_type.clone().unwrap_or(OCI_MANIFEST.to_string()),
        ManifestKind::Index(i) => i.media_type.clone().unwrap_or(OCI_INDEX.to_string()),
    }
}

/// `<data root>/image/images`.
pub fn records_dir(store: &Store) -> PathBuf {
    store.root().join("images")
}

/// The record file of `name`.
pub fn record_path(store: &Store, name: &str) -> PathBuf {
    records_dir(store).join(format!("{}.json", Digest::sha256_of(name.as_bytes()).hex()))
}

/// Builds the record of `name` from a manifest whose manifest and config blobs are in the store.
pub fn from_store(store: &Store, name: &str, manifest_digest: &Digest) -> Result<ImageRecord> {
    let store_error = |source| RecordError::Store {
        name: name.to_string(),
        source,
    };
    let bad_manifest = |reason: String| RecordError::BadManifest {
        name: name.to_string(),
        digest: manifest_digest.clone(),
        reason,
    };
    let data = store.read_blob(manifest_digest).map_err(store_error)?;
    let kind = parse_manifest(&data).map_err(bad_manifest)?;
    let media_type = manifest_media_type(&kind);
    let ManifestKind::Image(manifest) = kind else {
        return Err(bad_manifest(
            "is an index, not an image manifest".to_string(),
        ));
    };
    let config_digest = manifest.config.digest.clone();
    let bad_config = |reason: String| RecordError::BadConfig {
        name: name.to_string(),
        digest: config_digest.clone(),
        reason,
    };
    let config_data = store.read_blob(&config_digest).map_err(store_error)?;
    let config = parse_config(&config_data).map_err(bad_config)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(bad_config(format!(
            "has {} diff ids but the manifest has {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let mut parent: Option<Digest> = None;
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (blob, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let chain_id = chain_id_next(parent.as_ref(), diff_id);
        layers.push(LayerRecord {
            blob: blob.clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
        });
        parent = Some(chain_id);
    }
    Ok(ImageRecord {
        name: name.to_string(),
        manifest_digest: manifest_digest.clone(),
        manifest_media_type: media_type,
        config_digest,
        platform: Platform {
            architecture: config.architecture,
            os: config.os,
            variant: None,
        },
        created: config.created,
        layers,
        config: config.config,
    })
}

/// Parses an image config blob.
pub fn parse_config(data: &[u8]) -> std::result::Result<ConfigFile, String> {
    serde_json::from_slice(data).map_err(|e| e.to_string())
}

/// Writes the record atomically: a temporary file in the same directory, synced, then renamed.
pub fn save(store: &Store, record: &ImageRecord) -> Result<PathBuf> {
    let path = record_path(store, &record.name);
    let write_error = |source: io::Error| RecordError::Write {
        name: record.name.clone(),
        path: path.clone(),
        source,
    };
    let dir = records_dir(store);
    fs::create_dir_all(&dir).map_err(write_error)?;
    let data = serde_json::to_vec_pretty(record).map_err(|e| write_error(io::Error::other(e)))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_synced(&tmp, &data).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(e));
    }
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error)?;
    Ok(path)
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Loads the record of `name` (a full reference as [`Reference`](super::reference::Reference)
/// displays it).
pub fn load(store: &Store, name: &str) -> Result<ImageRecord> {
    let path = record_path(store, name);
    let read_error = |source: io::Error| RecordError::Read {
        name: name.to_string(),
        path: path.clone(),
        source,
    };
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(RecordError::NotFound {
                name: name.to_string(),
            });
        }
        Err(e) => return Err(read_error(e)),
    };
    serde_json::from_slice(&data).map_err(|e| read_error(io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_config_fields() {
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],
            "Cmd":["sh"],"WorkingDir":"/w","ExposedPorts":{"80/tcp":{}},
            "Healthcheck":{"Test":["CMD","true"],"Interval":1000},"StopSignal":"SIGINT",
            "Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let parsed = parse_config(config).unwrap();
        assert_eq!(parsed.config.env, Some(vec!["A=1".to_string()]));
        assert_eq!(parsed.config.working_dir.as_deref(), Some("/w"));
        assert_eq!(parsed.config.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(parsed.config.healthcheck.unwrap().interval, Some(1000));
    }

    #[test]
    fn tells_index_from_manifest() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_manifest(index), Ok(ManifestKind::Index(_))));
        let schema1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(parse_manifest(schema1).is_err());
    }

    #[test]
    fn platform_matching() {
        let mut arm = Platform::linux_amd64();
        arm.architecture = "arm64".to_string();
        arm.variant = Some("v8".to_string());
        assert!(!Platform::linux_amd64().matches(&arm));
        let mut want = arm.clone();
        want.variant = None;
        assert!(want.matches(&arm));
    }
}
