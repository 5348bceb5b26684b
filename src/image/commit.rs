//! `commit`: a container's overlay upper dir becomes a new layer on top of its image, and a new
//! image record names the result — the parent's config (with `--change` instructions applied),
//! its layers plus the new one, and a history entry.
//!
//! The upper dir is walked with directory fds and `O_NOFOLLOW` (a running container cannot
//! redirect the walk to host files), written as a tar stream that is hashed (the diff id) and
//! gzip-compressed into a blob writer in one pass. Overlayfs's whiteouts are converted back to
//! the OCI form: a character device 0/0 becomes an empty `.wh.<name>`, a directory marked
//! opaque (`trusted.overlay.opaque=y`) gets a `.wh..wh..opq` entry. Empty mount points that the
//! runtime created for its own mounts (`exclude`) are left out, as Docker's init layer does.
//! Then the config and an OCI manifest are written, the layer is unpacked as a snapshot and
//! the record saved; on error the blobs this commit added are removed again.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::manage::StoreLock;
use super::record::{self, ContainerConfig, Descriptor, ImageRecord};
use super::reference::Reference;
use super::store::{Digest, Store, StoreError};
use super::unpack::UnpackOptions;

/// Why a commit failed; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("commit: change {change:?}: {reason}")]
    Change { change: String, reason: String },
    #[error("commit: read the upper dir {path}: {source}")]
    Walk { path: String, source: io::Error },
    #[error("commit: write the layer: {source}")]
    Write { source: io::Error },
    #[error("commit: {source}")]
    Store {
        #[from]
        source: StoreError,
    },
    #[error("commit: {source}")]
    Record {
        #[from]
        source: record::RecordError,
    },
    #[error("commit: {source}")]
    Manage {
        #[from]
        source: super::manage::ManageError,
    },
    #[error("commit: parent image {name}: {reason}")]
    Parent { name: String, reason: String },
    #[error("commit: unpack the new layer: {source}")]
    Unpack { source: StoreError },
}

type Result<T, E = CommitError> = std::result::Result<T, E>;

/// What else goes into the new image.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Dockerfile instructions applied to the config (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`,
    /// `USER`, `LABEL`, `STOPSIGNAL`, `EXPOSE`).
    pub changes: Vec<String>,
    /// The history comment (`-m`).
    pub comment: Option<String>,
    pub author: Option<String>,
    /// What the history says created the layer (the container's command).
    pub created_by: String,
    /// Paths (absolute, in the container) left out when they are empty files or directories.
    pub exclude: Vec<String>,
    /// The creation time, RFC 3339.
    pub created: String,
}

/// A Dockerfile-style argument list: JSON array form, or shell form (`sh -c`) when `shell`.
fn words(text: &str, shell: bool, change: &str) -> Result<Vec<String>> {
    let t = text.trim();
    if t.starts_with('[') {
        return serde_json::from_str(t).map_err(|e| CommitError::Change {
            change: change.to_string(),
            reason: format!("invalid JSON array: {e}"),
        });
    }
    if shell {
        Ok(vec!["/bin/sh".into(), "-c".into(), t.to_string()])
    } else {
        Ok(t.split_whitespace().map(str::to_string).collect())
    }
}

/// `K=V K2="v 2"` or the legacy `K V` form.
fn pairs(text: &str, change: &str) -> Result<Vec<(String, String)>> {
    let t = text.trim();
    if !t.contains('=') {
        return match t.split_once(char::is_whitespace) {
            Some((k, v)) => Ok(vec![(k.to_string(), v.trim().to_string())]),
            None => Err(CommitError::Change {
                change: change.to_string(),
                reason: "expected KEY=VALUE".into(),
            }),
        };
    }
    let words = crate::spec::units::shell_split(t).map_err(|e| CommitError::Change {
        change: change.to_string(),
        reason: e.to_string(),
    })?;
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CommitError::Change {
                change: change.to_string(),
                reason: format!("{w:?}: expected KEY=VALUE"),
            }),
        })
        .collect()
}

/// Applies `--change` instructions to an image config.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    for change in changes {
        let (op, rest) = change
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((change.trim(), ""));
        match op.to_ascii_uppercase().as_str() {
            "CMD" => config.cmd = Some(words(rest, true, change)?),
            "ENTRYPOINT" => config.entrypoint = Some(words(rest, true, change)?),
            "WORKDIR" => config.working_dir = Some(rest.trim().to_string()),
            "USER" => config.user = Some(rest.trim().to_string()),
            "STOPSIGNAL" => config.stop_signal = Some(rest.trim().to_string()),
            "ENV" => {
                let env = config.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs(rest, change)? {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in pairs(rest, change)? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let key = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    ports.insert(key, json!({}));
                }
            }
            _ => {
                return Err(CommitError::Change {
                    change: change.clone(),
                    reason: "supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, \
                             WORKDIR"
                        .into(),
                });
            }
        }
    }
    Ok(())
}

/// Writes to `inner` and hashes what passes (the diff id of the plain tar).
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Walker<'a, W: Write> {
    builder: tar::Builder<W>,
    exclude: &'a [String],
    /// (dev, inode) of files with several links → the first path written.
    links: HashMap<(u64, u64), String>,
}

fn walk_err(path: &str) -> impl FnOnce(rustix::io::Errno) -> CommitError + '_ {
    move |e| CommitError::Walk {
        path: path.to_string(),
        source: e.into(),
    }
}

fn write_err(source: io::Error) -> CommitError {
    CommitError::Write { source }
}

fn header(st: &rustix::fs::Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

impl<W: Write> Walker<'_, W> {
    /// Writes the entries below `dir` (`prefix` is its path in the layer, `""` for the root).
    fn dir(&mut self, dir: BorrowedFd<'_>, prefix: &str, depth: usize) -> Result<()> {
        if depth > 512 {
            return Err(CommitError::Walk {
                path: prefix.to_string(),
                source: io::Error::other("tree too deep"),
            });
        }
        let mut names = Vec::new();
        for item in rustix::fs::Dir::read_from(dir).map_err(walk_err(prefix))? {
            let item = item.map_err(walk_err(prefix))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let st = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(walk_err(&path))?;
            let excluded = self.exclude.iter().any(|e| e.trim_matches('/') == path);
            match FileType::from_raw_mode(st.st_mode) {
                FileType::CharacterDevice if st.st_rdev == 0 => {
                    let wh = match path.rsplit_once('/') {
                        Some((up, n)) => format!("{up}/.wh.{n}"),
                        None => format!(".wh.{name}"),
                    };
                    let mut h = header(&st, tar::EntryType::Regular);
                    h.set_mode(0o644);
                    self.builder
                        .append_data(&mut h, &wh, io::empty())
                        .map_err(write_err)?;
                }
                FileType::Directory => {
                    let sub = rustix::fs::openat(
                        dir,
                        name.as_str(),
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(walk_err(&path))?;
                    let opaque = is_opaque(&sub);
                    let empty = rustix::fs::Dir::read_from(&sub)
                        .map_err(walk_err(&path))?
                        .filter_map(|e| e.ok())
                        .all(|e| matches!(e.file_name().to_bytes(), b"." | b".."));
                    if excluded && empty && !opaque {
                        continue;
                    }
                    let mut h = header(&st, tar::EntryType::Directory);
                    self.builder
                        .append_data(&mut h, format!("{path}/"), io::empty())
                        .map_err(write_err)?;
                    if opaque {
                        let mut h = header(&st, tar::EntryType::Regular);
                        h.set_mode(0o644);
                        self.builder
                            .append_data(&mut h, format!("{path}/.wh..wh..opq"), io::empty())
                            .map_err(write_err)?;
                    }
                    self.dir(sub.as_fd(), &path, depth + 1)?;
                }
                FileType::RegularFile => {
                    if excluded && st.st_size == 0 {
                        continue;
                    }
                    if st.st_nlink > 1 {
                        let key = (st.st_dev, st.st_ino);
                        if let Some(first) = self.links.get(&key) {
                            let mut h = header(&st, tar::EntryType::Link);
                            self.builder
                                .append_link(&mut h, &path, first)
                                .map_err(write_err)?;
                            continue;
                        }
                        self.links.insert(key, path.clone());
                    }
                    let fd = rustix::fs::openat(
                        dir,
                        name.as_str(),
                        OFlags::RDONLY
                            | OFlags::NOFOLLOW
                            | OFlags::NONBLOCK
                            | OFlags::NOCTTY
                            | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(walk_err(&path))?;
                    let file = File::from(fd);
                    let size = u64::try_from(st.st_size).unwrap_or(0);
                    let mut h = header(&st, tar::EntryType::Regular);
                    h.set_size(size);
                    // Exactly `size` bytes, even if the file changes meanwhile.
                    let reader = file.take(size).chain(io::repeat(0)).take(size);
                    self.builder
                        .append_data(&mut h, &path, reader)
                        .map_err(write_err)?;
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(dir, name.as_str(), Vec::new())
                        .map_err(walk_err(&path))?;
                    let mut h = header(&st, tar::EntryType::Symlink);
                    self.builder
                        .append_link(&mut h, &path, &*target.to_string_lossy())
                        .map_err(write_err)?;
                }
                kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                    let entry = match kind {
                        FileType::CharacterDevice => tar::EntryType::Char,
                        FileType::BlockDevice => tar::EntryType::Block,
                        _ => tar::EntryType::Fifo,
                    };
                    let mut h = header(&st, entry);
                    let rdev = st.st_rdev;
                    let _ = h.set_device_major(rustix::fs::major(rdev));
                    let _ = h.set_device_minor(rustix::fs::minor(rdev));
                    self.builder
                        .append_data(&mut h, &path, io::empty())
                        .map_err(write_err)?;
                }
                // Sockets are not archived (as in Docker).
                _ => {}
            }
        }
        Ok(())
    }
}

fn is_opaque(dir: &OwnedFd) -> bool {
    let mut buf = [0u8; 8];
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if let Ok(n) = rustix::fs::fgetxattr(dir, name, &mut buf)
            && buf[..n] == *b"y"
        {
            return true;
        }
    }
    false
}

/// Makes the image `reference` from `parent` plus the contents of `upper` (an overlay upper
/// dir); returns its record.
pub fn commit(
    store: &Store,
    parent: &ImageRecord,
    upper: &Path,
    reference: &Reference,
    options: &CommitOptions,
) -> Result<ImageRecord> {
    let mut config = parent.config.clone();
    apply_changes(&mut config, &options.changes)?;
    // The config: the parent's blob as JSON (keeping fields flotilla does not model).
    let parent_config = store.read_blob(&parent.config_digest)?;
    let mut value: Value =
        serde_json::from_slice(&parent_config).map_err(|e| CommitError::Parent {
            name: parent.name.clone(),
            reason: format!("config: {e}"),
        })?;
    value["config"] = serde_json::to_value(&config).map_err(|e| CommitError::Write {
        source: io::Error::other(e),
    })?;
    if let Some(author) = &options.author {
        value["author"] = json!(author);
    }
    let mut entry = json!({"created_by": options.created_by});
    if let Some(c) = &options.comment {
        entry["comment"] = json!(c);
    }
    if let Some(author) = &options.author {
        entry["author"] = json!(author);
    }
    derive(
        store,
        Some(parent),
        value,
        &Derived {
            layer: Some(upper),
            exclude: &options.exclude,
            history: entry,
            created: options.created.clone(),
        },
        reference,
    )
}

/// What [`derive`] adds to its parent.
#[derive(Debug, Clone)]
pub struct Derived<'a> {
    /// A directory whose contents (overlay upper dir form: whiteouts as 0/0 devices, opaque
    /// xattrs) become one more layer; `None`: the new image has its parent's layers only and its
    /// history entry says `empty_layer`.
    pub layer: Option<&'a Path>,
    /// Paths left out of the layer when they are empty files or directories.
    pub exclude: &'a [String],
    /// The history entry (`created_by`, `comment`, …); `created` and `empty_layer` are set here.
    pub history: Value,
    /// The creation time, RFC 3339.
    pub created: String,
}

/// The config of an image with no parent (`FROM scratch`) for this machine.
pub fn scratch_config() -> Value {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

/// Makes the image `reference` from `parent` (`None`: scratch) with the image config `config`
/// (a whole config document; its `rootfs` and `history` get the new layer and entry) and
/// maybe one more layer; returns its record. On error the blobs it added are removed.
pub fn derive(
    store: &Store,
    parent: Option<&ImageRecord>,
    mut value: Value,
    derived: &Derived<'_>,
    reference: &Reference,
) -> Result<ImageRecord> {
    let _lock = StoreLock::shared(store)?;

    // The layer: tar → (hash) → gzip → blob writer.
    let layer = match derived.layer {
        Some(upper) => {
            let root = rustix::fs::open(
                upper,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| CommitError::Walk {
                path: upper.display().to_string(),
                source: e.into(),
            })?;
            let writer = store.blob_writer(None)?;
            let gz = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
            let hashing = Hashing {
                inner: gz,
                hasher: sha2::Sha256::new(),
            };
            let mut builder = tar::Builder::new(hashing);
            builder.mode(tar::HeaderMode::Complete);
            let mut walker = Walker {
                builder,
                exclude: derived.exclude,
                links: HashMap::new(),
            };
            walker.dir(root.as_fd(), "", 0)?;
            let hashing = walker.builder.into_inner().map_err(write_err)?;
            let diff_id = Digest::sha256_from_hex(hex::encode(hashing.hasher.finalize()));
            let writer = hashing.inner.finish().map_err(write_err)?;
            Some((diff_id, writer))
        }
        None => None,
    };

    let created = derived.created.clone();
    value["created"] = json!(created);
    if !value["rootfs"]["diff_ids"].is_array() {
        value["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    if let Some((diff_id, _)) = &layer
        && let Some(ids) = value["rootfs"]["diff_ids"].as_array_mut()
    {
        ids.push(json!(diff_id.to_string()));
    }
    let mut entry = derived.history.clone();
    if !entry.is_object() {
        entry = json!({});
    }
    entry["created"] = json!(created);
    if layer.is_none() {
        entry["empty_layer"] = json!(true);
    }
    match value["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => value["history"] = json!([entry]),
    }
    let config_bytes = serde_json::to_vec(&value).map_err(|e| CommitError::Write {
        source: io::Error::other(e),
    })?;
    let config_digest = Digest::sha256_of(&config_bytes);

    let mut layers: Vec<Descriptor> = parent
        .map(|p| p.layers.iter().map(|l| l.blob.clone()).collect())
        .unwrap_or_default();
    if let Some((_, writer)) = &layer {
        layers.push(Descriptor {
            media_type: record::OCI_LAYER_GZIP.to_string(),
            digest: writer.digest(),
            size: writer.written(),
            platform: None,
        });
    }
    let manifest = record::Manifest {
        schema_version: 2,
        media_type: Some(record::OCI_MANIFEST.to_string()),
        config: Descriptor {
            media_type: record::OCI_CONFIG.to_string(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            platform: None,
        },
        layers,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| CommitError::Write {
        source: io::Error::other(e),
    })?;
    let manifest_digest = Digest::sha256_of(&manifest_bytes);

    // Store everything; on error remove the blobs this commit added.
    let mut added: Vec<Digest> = Vec::new();
    let result = (|| -> Result<ImageRecord> {
        let mut unpack = None;
        if let Some((diff_id, writer)) = layer {
            let blob_digest = writer.digest();
            if store.has_blob(&blob_digest) {
                drop(writer);
            } else {
                writer.commit(&blob_digest)?;
                added.push(blob_digest.clone());
            }
            unpack = Some((diff_id, blob_digest));
        }
        for (data, digest) in [
            (&config_bytes, &config_digest),
            (&manifest_bytes, &manifest_digest),
        ] {
            if !store.has_blob(digest) {
                store.write_blob(data, digest)?;
                added.push(digest.clone());
            }
        }
        let image = record::from_store(store, &reference.to_string(), &manifest_digest)?;
        if let Some((diff_id, blob_digest)) = unpack {
            let blob = store.open_blob(&blob_digest)?;
            store
                .unpack_layer(
                    parent.and_then(|p| p.top_chain_id()),
                    &diff_id,
                    io::BufReader::new(blob),
                    &UnpackOptions::default(),
                )
                .map_err(|source| CommitError::Unpack { source })?;
        }
        record::save(store, &image)?;
        Ok(image)
    })();
    if result.is_err() {
        for digest in &added {
            let _ = store.delete_blob(digest);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_dockerfile_instructions() {
        let mut c = ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            ..Default::default()
        };
        apply_changes(
            &mut c,
            &[
                r#"CMD ["cat", "/hello"]"#.into(),
                "ENTRYPOINT /bin/run me".into(),
                "ENV A=2 B=\"x y\"".into(),
                "WORKDIR /srv".into(),
                "USER nobody".into(),
                "LABEL a=b".into(),
                "EXPOSE 80 53/udp".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["cat", "/hello"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/run me"]);
        assert_eq!(c.env.unwrap(), ["PATH=/bin", "A=2", "B=x y"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(c.labels.unwrap()["a"], "b");
        assert!(c.exposed_ports.unwrap().contains_key("53/udp"));
        let err = apply_changes(
            &mut ContainerConfig::default(),
            &["RUN rm -rf /".to_string()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("supported: CMD"), "{err}");
    }
}
