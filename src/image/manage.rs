//! Managing the images in the store: listing records, finding an image by name or by id (a prefix
//! of its config digest, as `docker images` shows it), tagging, removing and pruning. Removing a
//! record also removes the blobs and layer snapshots no other record (and no container) uses;
//! pruning removes dangling records (those without a tag) or, with `all`, every unused one, then
//! every blob and snapshot that no record references. A layer snapshot that any container of the
//! data root (running or stopped) has in its root filesystem is never collected, whatever the
//! records say; and `rm -f` of an image a container uses keeps it as a dangling record (named by
//! its manifest digest, like Docker's `<none>`), so its content stays until the container is
//! gone and a prune removes it. A lock file under the store serializes
//! these collections against pulls of other processes (shared for writers, exclusive for
//! collectors), so a pull never loses a blob it has written but not yet recorded.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use super::record::{self, ImageRecord, RecordError};
use super::reference::Reference;
use super::store::{Algorithm, Digest, Store, StoreError};

/// Why managing images failed; each variant names the image or the path.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("image {name}: no such image")]
    NotFound { name: String },
    #[error("list images in {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error("image record {path}: {reason}")]
    BadRecord { path: PathBuf, reason: String },
    #[error("image {name}: delete record {path}: {source}")]
    DeleteRecord {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "image {name}: in use by container(s) {containers}: stop and remove them first, or use -f"
    )]
    InUse { name: String, containers: String },
    #[error("image {id}: referenced by several names ({names}): remove them by name, or use -f")]
    SeveralNames { id: String, names: String },
    #[error("image {target}: a tag target needs a tag, not a digest")]
    TagWithDigest { target: String },
    #[error("image store: {source}")]
    Store {
        #[from]
        source: StoreError,
    },
    #[error("lock the image store {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

type Result<T, E = ManageError> = std::result::Result<T, E>;

/// The names of the containers that use `image`, which then may not be removed without force.
///
/// Asks the runtime (its `list`, never its files) which containers of the same data root were
/// created from this image id (config digest); unreadable container state counts as none.
pub fn in_use_by_containers(store: &Store, image: &ImageRecord) -> Vec<String> {
    let Some(data_root) = store.root().parent() else {
        return Vec::new();
    };
    let id = image.config_digest.to_string();
    crate::runtime::lifecycle::Runtime::new(data_root)
        .and_then(|rt| rt.list())
        .map(|all| {
            all.into_iter()
                .filter(|c| c.meta.image_id.as_deref() == Some(id.as_str()))
                .map(|c| c.meta.name)
                .collect()
        })
        .unwrap_or_default()
}

/// The layer snapshots (chain ids) that the containers of the data root, running or stopped, have
/// in their root filesystems, from each container's own record of its layers (the runtime's
/// `layers_of`, never a guess from the image records, which `rm -f` may have removed). `None` when
/// that cannot be known (the containers cannot be listed, or one's layers cannot be read): then
/// no snapshot may be collected.
fn layers_in_use_by_containers(store: &Store) -> Option<BTreeSet<Digest>> {
    let data_root = store.root().parent()?;
    let runtime = crate::runtime::lifecycle::Runtime::new(data_root).ok()?;
    let mut used = BTreeSet::new();
    for container in runtime.list().ok()? {
        let paths = crate::runtime::copy::layers_of(&runtime.dir(&container.meta.id)).ok()?;
        used.extend(paths.iter().filter_map(|path| chain_id_of_layer_path(path)));
    }
    Some(used)
}

/// The chain id of a snapshot path `…/layers/<chain hex>/diff` ([`Store::layer_path`]). Only the
/// tail is read, so a data root spelled differently (relative, through a symlink) still matches;
/// a false match only keeps a snapshot longer.
fn chain_id_of_layer_path(path: &std::path::Path) -> Option<Digest> {
    if path.file_name()? != "diff" {
        return None;
    }
    let hex = path.parent()?.file_name()?.to_str()?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// A lock on the image store, released on drop. Writers (pull, load) hold it shared, so they run
/// side by side; collectors (rm, prune) hold it exclusive.
#[derive(Debug)]
pub struct StoreLock {
    _file: fs::File,
}

impl StoreLock {
    pub fn shared(store: &Store) -> Result<StoreLock> {
        StoreLock::take(store, rustix::fs::FlockOperation::LockShared)
    }

    pub fn exclusive(store: &Store) -> Result<StoreLock> {
        StoreLock::take(store, rustix::fs::FlockOperation::LockExclusive)
    }

    fn take(store: &Store, operation: rustix::fs::FlockOperation) -> Result<StoreLock> {
        let path = store.root().join("lock");
        let lock_error = |source: io::Error| ManageError::Lock {
            path: path.clone(),
            source,
        };
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_error)?;
        loop {
            match rustix::fs::flock(&file, operation) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(lock_error(e.into())),
            }
        }
        Ok(StoreLock { _file: file })
    }
}

/// Every image record in the store, sorted by name.
pub fn list(store: &Store) -> Result<Vec<ImageRecord>> {
    let dir = record::records_dir(store);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ManageError::List { path: dir, source }),
    };
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ManageError::List {
            path: dir.clone(),
            source,
        })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let data = match fs::read(&path) {
            Ok(data) => data,
            // Removed since the directory was read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ManageError::List { path, source }),
        };
        let image: ImageRecord =
            serde_json::from_slice(&data).map_err(|e| ManageError::BadRecord {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        records.push(image);
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(records)
}

/// `name`'s reference, when the record's name parses (it always should).
pub fn reference_of(image: &ImageRecord) -> Option<Reference> {
    Reference::parse(&image.name).ok()
}

/// Whether an image record has no tag (it is known by digest only): a dangling image.
pub fn is_dangling(image: &ImageRecord) -> bool {
    reference_of(image).is_some_and(|r| r.tag.is_none())
}

/// The short id `docker images` shows: 12 hex digits of the config digest.
pub fn short_id(image: &ImageRecord) -> String {
    image.config_digest.hex().chars().take(12).collect()
}

/// The size of an image: the unpacked (uncompressed) size of its layers.
pub fn image_size(store: &Store, image: &ImageRecord) -> u64 {
    image
        .layers
        .iter()
        .filter_map(|l| store.layer_info(&l.chain_id).ok())
        .map(|info| info.size)
        .sum()
}

/// What an image argument matched.
#[derive(Debug, Clone)]
pub struct Found {
    pub records: Vec<ImageRecord>,
    /// The argument was an image id (matching every name of that image).
    pub by_id: bool,
}

/// The image named by `arg`: a reference (`busybox`, `host:5000/a/b:1`, `a@sha256:…`) or an id
/// (`sha256:<hex>` or a prefix of at least 4 hex digits of the config digest).
pub fn find(store: &Store, arg: &str) -> Result<Found> {
    if let Ok(reference) = Reference::parse(arg) {
        match record::load(store, &reference.to_string()) {
            Ok(image) => {
                return Ok(Found {
                    records: vec![image],
                    by_id: false,
                });
            }
            Err(RecordError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
    if hex.len() >= 4 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hex = hex.to_ascii_lowercase();
        let records: Vec<ImageRecord> = list(store)?
            .into_iter()
            .filter(|image| image.config_digest.hex().starts_with(&hex))
            .collect();
        let ids: BTreeSet<&Digest> = records.iter().map(|r| &r.config_digest).collect();
        if ids.len() == 1 {
            return Ok(Found {
                records,
                by_id: true,
            });
        }
    }
    Err(ManageError::NotFound {
        name: arg.to_string(),
    })
}

/// Records `source`'s image under `target` too (replacing what `target` named before).
pub fn tag(store: &Store, source: &str, target: &Reference) -> Result<ImageRecord> {
    if target.digest.is_some() || target.tag.is_none() {
        return Err(ManageError::TagWithDigest {
            target: target.to_string(),
        });
    }
    let found = find(store, source)?;
    let Some(image) = found.records.into_iter().next() else {
        return Err(ManageError::NotFound {
            name: source.to_string(),
        });
    };
    let _lock = StoreLock::shared(store)?;
    let tagged = ImageRecord {
        name: target.to_string(),
        ..image
    };
    record::save(store, &tagged)?;
    Ok(tagged)
}

/// What removing or pruning did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Names whose records were removed.
    pub untagged: Vec<String>,
    /// Image ids (config digests) whose content is gone.
    pub deleted: Vec<Digest>,
    pub deleted_blobs: usize,
    pub deleted_layers: usize,
    /// Bytes of blobs and (uncompressed) layers removed.
    pub reclaimed: u64,
}

/// Removes the image named by `arg` (every name of it when `arg` is an id, which needs `force`
/// when there are several), then the blobs and snapshots nothing else uses. An image used by a
/// container needs `force`, and then only loses its name: its content stays for the container.
pub fn remove(store: &Store, arg: &str, force: bool) -> Result<Removed> {
    let _lock = StoreLock::exclusive(store)?;
    let found = find(store, arg)?;
    if found.by_id && found.records.len() > 1 && !force {
        return Err(ManageError::SeveralNames {
            id: arg.to_string(),
            names: names_of(&found.records),
        });
    }
    let mut keep = Vec::new();
    for image in &found.records {
        let containers = in_use_by_containers(store, image);
        if !containers.is_empty() {
            if !force {
                return Err(ManageError::InUse {
                    name: image.name.clone(),
                    containers: containers.join(", "),
                });
            }
            keep.push(image.clone());
        }
    }
    let mut removed = Removed::default();
    for image in &found.records {
        delete_record(store, image)?;
        removed.untagged.push(image.name.clone());
    }
    // Like Docker, an image a container uses loses its names but not its existence: when no
    // name of it is left, it stays as a dangling record (repository@manifest digest), which
    // keeps its blobs and snapshots, and which a prune removes once no container uses it.
    let remaining = list(store)?;
    let mut kept_ids = BTreeSet::new();
    for image in &keep {
        if remaining
            .iter()
            .any(|r| r.config_digest == image.config_digest)
            || !kept_ids.insert(image.config_digest.clone())
        {
            continue;
        }
        if let Some(dangling) = dangling_name(image) {
            record::save(
                store,
                &ImageRecord {
                    name: dangling,
                    ..image.clone()
                },
            )?;
        }
    }
    collect(store, &found.records, &keep, false, &mut removed)?;
    Ok(removed)
}

/// The name of `image` without a tag: `repository@<manifest digest>`.
fn dangling_name(image: &ImageRecord) -> Option<String> {
    let reference = reference_of(image)?;
    let dangling = Reference::parse(&format!("{}@{}", reference.name(), image.manifest_digest));
    dangling.ok().map(|r| r.to_string())
}

/// Removes dangling records (without a tag) or, with `all`, every record no container uses; then
/// every blob and snapshot no remaining record references.
pub fn prune(store: &Store, all: bool) -> Result<Removed> {
    let _lock = StoreLock::exclusive(store)?;
    let mut removed = Removed::default();
    let mut gone = Vec::new();
    for image in list(store)? {
        if (all || is_dangling(&image)) && in_use_by_containers(store, &image).is_empty() {
            delete_record(store, &image)?;
            removed.untagged.push(image.name.clone());
            gone.push(image);
        }
    }
    collect(store, &gone, &[], true, &mut removed)?;
    Ok(removed)
}

fn names_of(records: &[ImageRecord]) -> String {
    records
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn delete_record(store: &Store, image: &ImageRecord) -> Result<()> {
    let path = record::record_path(store, &image.name);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ManageError::DeleteRecord {
            name: image.name.clone(),
            path,
            source,
        }),
    }
}

/// The blobs and layers the remaining records (and `keep`) use.
fn referenced(store: &Store, keep: &[ImageRecord]) -> Result<(BTreeSet<Digest>, BTreeSet<Digest>)> {
    let mut blobs = BTreeSet::new();
    let mut layers = BTreeSet::new();
    for image in list(store)?.iter().chain(keep) {
        blobs.insert(image.manifest_digest.clone());
        blobs.insert(image.config_digest.clone());
        for layer in &image.layers {
            blobs.insert(layer.blob.digest.clone());
            layers.insert(layer.chain_id.clone());
        }
    }
    Ok((blobs, layers))
}

/// Deletes the blobs and layers of `gone` (or, with `everything`, all in the store) that no
/// remaining record uses. Call with the exclusive lock held.
fn collect(
    store: &Store,
    gone: &[ImageRecord],
    keep: &[ImageRecord],
    everything: bool,
    removed: &mut Removed,
) -> Result<()> {
    let (used_blobs, mut used_layers) = referenced(store, keep)?;
    // Containers use snapshots directly: theirs stay even when no record names them any more.
    // When the containers' layers cannot be known, no snapshot is collected this time.
    let containers_known = match layers_in_use_by_containers(store) {
        Some(layers) => {
            used_layers.extend(layers);
            true
        }
        None => false,
    };
    let mut blobs = BTreeSet::new();
    let mut layers = BTreeSet::new();
    for image in gone {
        blobs.insert(image.manifest_digest.clone());
        blobs.insert(image.config_digest.clone());
        for layer in &image.layers {
            blobs.insert(layer.blob.digest.clone());
            layers.insert(layer.chain_id.clone());
        }
    }
    if everything {
        blobs.extend(stored_blobs(store)?);
        layers.extend(stored_layers(store)?);
    }
    // Upper layers first, so an interrupted removal never leaves a child snapshot whose parent
    // is already gone.
    let mut layers: Vec<Digest> = if containers_known {
        layers.difference(&used_layers).cloned().collect()
    } else {
        Vec::new()
    };
    layers.sort_by_key(|chain_id| {
        std::cmp::Reverse(
            gone.iter()
                .flat_map(|g| g.layers.iter().position(|l| &l.chain_id == chain_id))
                .max()
                .unwrap_or(0),
        )
    });
    for chain_id in layers {
        if !store.has_layer(&chain_id) && !store.layer_path(&chain_id).exists() {
            continue;
        }
        let size = store.layer_info(&chain_id).map(|i| i.size).unwrap_or(0);
        store.delete_layer(&chain_id)?;
        removed.deleted_layers += 1;
        removed.reclaimed += size;
    }
    for digest in blobs.difference(&used_blobs) {
        let Ok(meta) = fs::metadata(store.blob_path(digest)) else {
            continue;
        };
        store.delete_blob(digest)?;
        removed.deleted_blobs += 1;
        removed.reclaimed += meta.len();
    }
    let mut ids: Vec<Digest> = gone
        .iter()
        .map(|g| g.config_digest.clone())
        .filter(|id| !used_blobs.contains(id))
        .collect();
    ids.sort();
    ids.dedup();
    removed.deleted.extend(ids);
    Ok(())
}

/// Every blob file in the store.
fn stored_blobs(store: &Store) -> Result<Vec<Digest>> {
    let mut digests = Vec::new();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let dir = store.root().join("blobs").join(algorithm.as_str());
        for name in dir_names(&dir)? {
            if let Ok(digest) = Digest::parse(&format!("{algorithm}:{name}")) {
                digests.push(digest);
            }
        }
    }
    Ok(digests)
}

/// Every layer snapshot directory in the store (complete or not).
fn stored_layers(store: &Store) -> Result<Vec<Digest>> {
    let dir = store.root().join("layers");
    Ok(dir_names(&dir)?
        .into_iter()
        .filter_map(|name| Digest::parse(&format!("sha256:{name}")).ok())
        .collect())
}

fn dir_names(dir: &std::path::Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ManageError::List {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ManageError::List {
            path: dir.to_path_buf(),
            source,
        })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::record::{ContainerConfig, LayerRecord, Platform};

    /// Stores an image of fake layers (one blob per layer, one tiny snapshot per chain id).
    fn fake_image(store: &Store, name: &str, layers: &[&str]) -> ImageRecord {
        let mut records = Vec::new();
        let mut parent: Option<Digest> = None;
        for content in layers {
            let tar = {
                let mut builder = tar::Builder::new(Vec::new());
                let mut header = tar::Header::new_gnu();
                header.set_size(content.len() as u64);
                header.set_mode(0o644);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(1_600_000_000);
                builder
                    .append_data(&mut header, "file", content.as_bytes())
                    .unwrap();
                builder.into_inner().unwrap()
            };
            let digest = Digest::sha256_of(&tar);
            store.write_blob(&tar, &digest).unwrap();
            let info = store
                .unpack_layer(
                    parent.as_ref(),
                    &digest,
                    tar.as_slice(),
                    &Default::default(),
                )
                .unwrap();
            records.push(LayerRecord {
                blob: record::Descriptor {
                    media_type: "application/vnd.oci.image.layer.v1.tar".to_string(),
                    digest: digest.clone(),
                    size: tar.len() as u64,
                    platform: None,
                },
                diff_id: digest,
                chain_id: info.chain_id.clone(),
            });
            parent = Some(info.chain_id);
        }
        let config = format!("{{\"name\":\"{name}\",\"layers\":{}}}", layers.len());
        let config_digest = Digest::sha256_of(config.as_bytes());
        store.write_blob(config.as_bytes(), &config_digest).unwrap();
        let manifest = format!("{{\"config\":\"{config_digest}\"}}");
        let manifest_digest = Digest::sha256_of(manifest.as_bytes());
        store
            .write_blob(manifest.as_bytes(), &manifest_digest)
            .unwrap();
        let image = ImageRecord {
            name: Reference::parse(name).unwrap().to_string(),
            manifest_digest,
            manifest_media_type: record::OCI_MANIFEST.to_string(),
            config_digest,
            platform: Platform::linux_amd64(),
            created: None,
            layers: records,
            config: ContainerConfig::default(),
        };
        record::save(store, &image).unwrap();
        image
    }

    #[test]
    fn tag_find_remove_and_collect() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = fake_image(&store, "a:1", &["base", "top"]);
        let b = fake_image(&store, "b:1", &["base", "other"]);
        tag(&store, "a:1", &Reference::parse("a:2").unwrap()).unwrap();
        assert_eq!(list(&store).unwrap().len(), 3);
        let by_id = find(&store, &short_id(&a)).unwrap();
        assert!(by_id.by_id);
        assert_eq!(by_id.records.len(), 2);
        // An id with two names needs force.
        assert!(matches!(
            remove(&store, &short_id(&a), false),
            Err(ManageError::SeveralNames { .. })
        ));
        // One name of two: nothing but the record goes.
        let removed = remove(&store, "a:1", false).unwrap();
        assert_eq!(removed.untagged, ["docker.io/library/a:1"]);
        assert_eq!((removed.deleted_blobs, removed.deleted_layers), (0, 0));
        assert!(store.has_layer(&a.layers[1].chain_id));
        // The last name: its own blobs and layers go, the shared base stays for b.
        let removed = remove(&store, "a:2", false).unwrap();
        assert_eq!(removed.deleted, std::slice::from_ref(&a.config_digest));
        assert_eq!(removed.deleted_layers, 1);
        assert_eq!(removed.deleted_blobs, 3, "top layer, config, manifest");
        assert!(!store.has_layer(&a.layers[1].chain_id));
        assert!(!store.has_blob(&a.layers[1].blob.digest));
        assert!(store.has_layer(&b.layers[0].chain_id));
        assert!(store.has_blob(&b.layers[0].blob.digest));
        assert!(matches!(
            remove(&store, "a:2", false),
            Err(ManageError::NotFound { .. })
        ));
        let by_digest = Reference::parse(&format!("c@sha256:{}", "a".repeat(64))).unwrap();
        assert!(matches!(
            tag(&store, "b:1", &by_digest),
            Err(ManageError::TagWithDigest { .. })
        ));
    }

    #[test]
    fn chain_ids_of_layer_paths() {
        let hex = "a".repeat(64);
        let store_path = std::path::PathBuf::from(format!("/r/image/layers/{hex}/diff"));
        assert_eq!(
            chain_id_of_layer_path(&store_path).map(|d| d.to_string()),
            Some(format!("sha256:{hex}"))
        );
        let relative = std::path::PathBuf::from(format!("root/image/layers/{hex}/diff"));
        assert!(chain_id_of_layer_path(&relative).is_some());
        for other in ["/l/0", "/r/image/layers/zz/diff", "/r/layers/x"] {
            assert_eq!(chain_id_of_layer_path(std::path::Path::new(other)), None);
        }
    }

    #[test]
    fn force_remove_of_an_image_in_use_leaves_it_dangling() {
        // No container here: remove's `keep` path is exercised through the record it writes.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = fake_image(&store, "k:1", &["base"]);
        assert_eq!(
            dangling_name(&image).as_deref(),
            Some(format!("docker.io/library/k@{}", image.manifest_digest).as_str())
        );
    }

    #[test]
    fn prune_dangling_then_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tagged = fake_image(&store, "t:1", &["one"]);
        let digest_name = format!("d@{}", Digest::sha256_of(b"x"));
        let dangling = fake_image(&store, &digest_name, &["two"]);
        // An orphan blob no record references.
        let orphan = Digest::sha256_of(b"orphan");
        store.write_blob(b"orphan", &orphan).unwrap();
        let removed = prune(&store, false).unwrap();
        assert_eq!(removed.untagged, std::slice::from_ref(&dangling.name));
        assert!(!store.has_blob(&orphan));
        assert!(!store.has_layer(&dangling.layers[0].chain_id));
        assert!(store.has_layer(&tagged.layers[0].chain_id));
        let removed = prune(&store, true).unwrap();
        assert_eq!(removed.untagged, std::slice::from_ref(&tagged.name));
        assert!(removed.reclaimed > 0);
        assert!(stored_blobs(&store).unwrap().is_empty());
        assert!(stored_layers(&store).unwrap().is_empty());
    }
}
