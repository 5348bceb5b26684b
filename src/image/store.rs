//! The image content store under the data root: content-addressed blobs
//! (`<root>/image/blobs/<algorithm>/<hex>`), one unpacked snapshot per layer keyed by its chain id
//! (`<root>/image/layers/<chain hex>/`, holding `diff/` and `layer.json`), and a scratch directory
//! (`<root>/image/tmp/`). This module owns that layout and the rule that makes it crash-safe:
//! everything is written under `tmp/`, verified, synced, and only then renamed into place, so a
//! blob or a layer that exists under its final name is complete. Leftovers in `tmp/` are garbage
//! that [`Store::cleanup_tmp`] removes.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use sha2::Digest as _;

use super::unpack::{self, UnpackError, UnpackOptions};

/// Why a store operation failed. Each variant names the blob, layer or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },
    #[error("create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("create temporary file in {path}: {source}")]
    CreateTemp { path: PathBuf, source: io::Error },
    #[error("blob {digest}: write: {source}")]
    WriteBlob { digest: Digest, source: io::Error },
    #[error("blob {expected}: written data has digest {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest}: written data was hashed with {written}, not {expected}")]
    AlgorithmMismatch {
        digest: Digest,
        written: Algorithm,
        expected: Algorithm,
    },
    #[error("blob {digest}: sync to disk: {source}")]
    SyncBlob { digest: Digest, source: io::Error },
    #[error("blob {digest}: move into place: {source}")]
    CommitBlob { digest: Digest, source: io::Error },
    #[error("blob {digest}: open: {source}")]
    OpenBlob { digest: Digest, source: io::Error },
    #[error("blob {digest}: read: {source}")]
    ReadBlob { digest: Digest, source: io::Error },
    #[error("blob {digest}: delete: {source}")]
    DeleteBlob { digest: Digest, source: io::Error },
    #[error("layer {chain_id}: unpack: {source}")]
    Unpack {
        chain_id: Digest,
        source: UnpackError,
    },
    #[error("layer {chain_id}: unpacked content has diff id {actual}, the image says {expected}")]
    DiffIdMismatch {
        chain_id: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {chain_id}: write {path}: {source}")]
    WriteLayer {
        chain_id: Digest,
        path: PathBuf,
        source: io::Error,
    },
    #[error("layer {chain_id}: move into place: {source}")]
    CommitLayer { chain_id: Digest, source: io::Error },
    #[error("layer {chain_id}: read record: {source}")]
    ReadLayer { chain_id: Digest, source: io::Error },
    #[error("layer {chain_id}: delete: {source}")]
    DeleteLayer { chain_id: Digest, source: io::Error },
    #[error("clean temporary directory {path}: {source}")]
    CleanTmp { path: PathBuf, source: io::Error },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Whether the message already starts with the blob or layer it concerns.
    pub fn names_object(&self) -> bool {
        !matches!(
            self,
            StoreError::InvalidDigest { .. }
                | StoreError::CreateDir { .. }
                | StoreError::CreateTemp { .. }
                | StoreError::CleanTmp { .. }
        )
    }

    /// The message, prefixed with `{kind} {digest}: ` unless it already names its blob or
    /// layer, so a caller that knows the object never names it twice.
    pub fn named(&self, kind: &str, digest: &Digest) -> String {
        if self.names_object() {
            self.to_string()
        } else {
            format!("{kind} {digest}: {self}")
        }
    }
}

/// A content digest algorithm of the OCI image spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated content digest, `algorithm:hex` with lowercase hex of the algorithm's length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 hex>` or `sha512:<128 hex>`.
    pub fn parse(text: &str) -> Result<Digest> {
        let bad = |reason: &str| StoreError::InvalidDigest {
            digest: text.to_string(),
            reason: reason.to_string(),
        };
        let (algorithm, hex) = text
            .split_once(':')
            .ok_or_else(|| bad("expected algorithm:hex"))?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(bad("unsupported algorithm (sha256 or sha512)")),
        };
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("the hex part must be lowercase hexadecimal"));
        }
        if hex.len() != algorithm.hex_len() {
            return Err(StoreError::InvalidDigest {
                digest: text.to_string(),
                reason: format!(
                    "{algorithm} needs {} hex digits, found {}",
                    algorithm.hex_len(),
                    hex.len()
                ),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::sha256_from_hex(hex::encode(sha2::Sha256::digest(data)))
    }

    /// Wraps a hex string produced by our own sha256 hasher (always valid).
    pub(crate) fn sha256_from_hex(hex: String) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A streaming hasher for one algorithm.
#[derive(Clone)]
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

/// The chain id of a layer on top of `parent` (OCI image spec: the chain id of the first layer is
/// its diff id; then `sha256(parent_chain_id + " " + diff_id)`).
pub fn chain_id_next(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => Digest::sha256_of(format!("{parent} {diff_id}").as_bytes()),
    }
}

/// The chain id of the top of a stack of layers given bottom-first by their diff ids.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    diff_ids.iter().fold(None, |parent, diff| {
        Some(chain_id_next(parent.as_ref(), diff))
    })
}

/// The record stored beside each unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Size of the uncompressed layer tar.
    pub size: u64,
}

const LAYER_RECORD: &str = "layer.json";
const LAYER_DIFF: &str = "diff";

/// Unique names for scratch files: process id, time and a counter.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The image content store rooted at `<data root>/image`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store under the data root, creating its directories.
    pub fn open(data_root: &Path) -> Result<Store> {
        let store = Store {
            root: data_root.join("image"),
        };
        for dir in [
            store.root.join("blobs").join(Algorithm::Sha256.as_str()),
            store.root.join("layers"),
            store.tmp_dir(),
        ] {
            fs::create_dir_all(&dir)
                .map_err(|source| StoreError::CreateDir { path: dir, source })?;
        }
        Ok(store)
    }

    /// `<data root>/image`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    // --- blobs -------------------------------------------------------------------------------

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm.as_str())
            .join(&digest.hex)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        File::open(self.blob_path(digest)).map_err(|source| StoreError::OpenBlob {
            digest: digest.clone(),
            source,
        })
    }

    /// Reads a whole (small) blob: manifests, indexes, configs.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut data)
            .map_err(|source| StoreError::ReadBlob {
                digest: digest.clone(),
                source,
            })?;
        Ok(data)
    }

    /// Deletes a blob; deleting a missing blob is not an error.
    pub fn delete_blob(&self, digest: &Digest) -> Result<()> {
        match fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::DeleteBlob {
                digest: digest.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Starts writing a sha256 blob; `expected_size` (from the descriptor) makes an oversized
    /// stream fail as soon as it passes the size.
    pub fn blob_writer(&self, expected_size: Option<u64>) -> Result<BlobWriter> {
        self.blob_writer_with(Algorithm::Sha256, expected_size)
    }

    /// Starts writing a blob hashed with `algorithm`.
    pub fn blob_writer_with(
        &self,
        algorithm: Algorithm,
        expected_size: Option<u64>,
    ) -> Result<BlobWriter> {
        let tmp = self.tmp_dir();
        let path = tmp.join(unique_name("blob"));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| StoreError::CreateTemp { path: tmp, source })?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(file),
            path,
            hasher: Some(Hasher::new(algorithm)),
            algorithm,
            written: 0,
            expected_size,
        })
    }

    /// Writes a whole blob from memory and verifies it.
    pub fn write_blob(&self, data: &[u8], expected: &Digest) -> Result<PathBuf> {
        let mut writer = self.blob_writer_with(expected.algorithm, Some(data.len() as u64))?;
        writer
            .write_all(data)
            .map_err(|source| StoreError::WriteBlob {
                digest: expected.clone(),
                source,
            })?;
        writer.commit(expected)
    }

    // --- layers ------------------------------------------------------------------------------

    fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("layers").join(&chain_id.hex)
    }

    /// The unpacked tree of a layer (an overlayfs lowerdir).
    pub fn layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.layer_dir(chain_id).join(LAYER_DIFF)
    }

    /// Whether the layer is unpacked and complete.
    pub fn has_layer(&self, chain_id: &Digest) -> bool {
        self.layer_dir(chain_id).join(LAYER_RECORD).is_file()
    }

    /// The record of an unpacked layer.
    pub fn layer_info(&self, chain_id: &Digest) -> Result<LayerInfo> {
        let read_error = |source: io::Error| StoreError::ReadLayer {
            chain_id: chain_id.clone(),
            source,
        };
        let text = fs::read(self.layer_dir(chain_id).join(LAYER_RECORD)).map_err(read_error)?;
        serde_json::from_slice(&text).map_err(|e| read_error(io::Error::other(e)))
    }

    /// Unpacks a layer whose diff id is `diff_id`, on top of the chain `parent`, into its
    /// snapshot. The stream is unpacked under `tmp/`, its diff id checked, the result synced and
    /// renamed into `layers/<chain id>` in one step. An already unpacked layer is returned as is,
    /// without reading the stream.
    pub fn unpack_layer<R: Read>(
        &self,
        parent: Option<&Digest>,
        diff_id: &Digest,
        reader: R,
        options: &UnpackOptions,
    ) -> Result<LayerInfo> {
        self.unpack_layer_synced(parent, diff_id, reader, options)
            .map(|(info, _)| info)
    }

    /// [`Store::unpack_layer`], also returning the proof of the store-wide sync it made before
    /// the rename (`None` when the layer was already there and nothing was read or synced).
    /// Whatever was written to the store's filesystem before `reader` reached its end is on
    /// disk once this returns the proof.
    pub fn unpack_layer_synced<R: Read>(
        &self,
        parent: Option<&Digest>,
        diff_id: &Digest,
        reader: R,
        options: &UnpackOptions,
    ) -> Result<(LayerInfo, Option<Synced>)> {
        let chain_id = chain_id_next(parent, diff_id);
        if self.has_layer(&chain_id) {
            return Ok((self.layer_info(&chain_id)?, None));
        }
        let tmp = TempDir::create(&self.tmp_dir(), "layer")?;
        let diff = tmp.path.join(LAYER_DIFF);
        fs::create_dir(&diff).map_err(|source| StoreError::CreateDir {
            path: diff.clone(),
            source,
        })?;
        let unpacked =
            unpack::unpack(reader, &diff, options).map_err(|source| StoreError::Unpack {
                chain_id: chain_id.clone(),
                source,
            })?;
        if &unpacked.diff_id != diff_id {
            return Err(StoreError::DiffIdMismatch {
                chain_id,
                expected: diff_id.clone(),
                actual: unpacked.diff_id,
            });
        }
        let info = LayerInfo {
            chain_id: chain_id.clone(),
            diff_id: diff_id.clone(),
            parent: parent.cloned(),
            size: unpacked.size,
        };
        let record = tmp.path.join(LAYER_RECORD);
        let write_error = |path: &Path, source: io::Error| StoreError::WriteLayer {
            chain_id: chain_id.clone(),
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| write_error(&record, e.into()))?;
        fs::write(&record, json).map_err(|e| write_error(&record, e))?;

        // Everything written under tmp must be on disk before the rename makes it count.
        let dir = rustix::fs::open(
            &tmp.path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| write_error(&tmp.path, e.into()))?;
        rustix::fs::syncfs(&dir).map_err(|e| write_error(&tmp.path, e.into()))?;
        let synced = Synced { _private: () };

        let target = self.layer_dir(&chain_id);
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp.path,
            rustix::fs::CWD,
            &target,
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => tmp.keep(),
            // Another unpack of the same layer finished first: its copy is as good as ours.
            Err(Errno::EXIST) | Err(Errno::NOTEMPTY) if self.has_layer(&chain_id) => {
                return Ok((self.layer_info(&chain_id)?, Some(synced)));
            }
            Err(e) => {
                return Err(StoreError::CommitLayer {
                    chain_id,
                    source: e.into(),
                });
            }
        }
        let layers = self.root.join("layers");
        sync_dir(&layers).map_err(|source| StoreError::CommitLayer {
            chain_id: chain_id.clone(),
            source,
        })?;
        Ok((info, Some(synced)))
    }

    /// Deletes a layer snapshot: first renamed out of `layers/` (so it stops counting at once),
    /// then removed. A missing layer is not an error.
    pub fn delete_layer(&self, chain_id: &Digest) -> Result<()> {
        let doomed = self.tmp_dir().join(unique_name("deleted-layer"));
        match fs::rename(self.layer_dir(chain_id), &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StoreError::DeleteLayer {
                    chain_id: chain_id.clone(),
                    source,
                });
            }
        }
        fs::remove_dir_all(&doomed).map_err(|source| StoreError::DeleteLayer {
            chain_id: chain_id.clone(),
            source,
        })
    }

    /// Removes everything left in `tmp/` (half-written blobs, half-unpacked layers) by an earlier
    /// run. Call it when no write is in progress (at daemon start). Returns how many were removed.
    pub fn cleanup_tmp(&self) -> Result<usize> {
        let tmp = self.tmp_dir();
        let clean_error = |source: io::Error| StoreError::CleanTmp {
            path: tmp.clone(),
            source,
        };
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).map_err(clean_error)? {
            let entry = entry.map_err(clean_error)?;
            let path = entry.path();
            let result = if entry.file_type().map_err(clean_error)?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match result {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::CleanTmp { path, source }),
            }
        }
        Ok(removed)
    }
}

/// A scratch directory under `tmp/`, removed on drop unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn create(tmp: &Path, prefix: &str) -> Result<TempDir> {
        let path = tmp.join(unique_name(prefix));
        fs::create_dir(&path).map_err(|source| StoreError::CreateTemp {
            path: tmp.to_path_buf(),
            source,
        })?;
        Ok(TempDir { path, keep: false })
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes one blob: hashes while writing to a temporary file in `tmp/`, and only
/// [`commit`](BlobWriter::commit) — after checking size and digest — moves it to its final name.
/// A writer dropped without a successful commit deletes its temporary file.
pub struct BlobWriter {
    store: Store,
    file: Option<File>,
    path: PathBuf,
    hasher: Option<Hasher>,
    algorithm: Algorithm,
    written: u64,
    expected_size: Option<u64>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest of the data written so far (for content whose digest is not known in advance,
    /// such as a file of an archive, before deciding whether to [`commit`](BlobWriter::commit)).
    pub fn digest(&self) -> Digest {
        match &self.hasher {
            Some(hasher) => hasher.clone().finish(),
            None => Hasher::new(self.algorithm).finish(),
        }
    }

    /// Verifies the written data against `expected` (and the expected size, if one was given),
    /// syncs it and renames it into place. On a mismatch nothing is stored and the temporary file
    /// is deleted.
    pub fn commit(self, expected: &Digest) -> Result<PathBuf> {
        self.verify(expected)?.commit()
    }

    /// Verifies the written data against `expected` (and the expected size, if one was given)
    /// without storing it yet: [`VerifiedBlob::commit`] does. On a mismatch nothing is stored and
    /// the temporary file is deleted.
    pub fn verify(mut self, expected: &Digest) -> Result<VerifiedBlob> {
        if expected.algorithm != self.algorithm {
            return Err(StoreError::AlgorithmMismatch {
                digest: expected.clone(),
                written: self.algorithm,
                expected: expected.algorithm,
            });
        }
        if let Some(size) = self.expected_size
            && size != self.written
        {
            return Err(StoreError::SizeMismatch {
                digest: expected.clone(),
                expected: size,
                actual: self.written,
            });
        }
        let actual = match self.hasher.take() {
            Some(hasher) => hasher.finish(),
            None => Hasher::new(self.algorithm).finish(),
        };
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok(VerifiedBlob {
            writer: self,
            digest: expected.clone(),
        })
    }
}

/// Proof that the store's whole filesystem was synced (`syncfs`) by
/// [`Store::unpack_layer_synced`]; only the store makes one.
#[derive(Debug)]
pub struct Synced {
    _private: (),
}

/// A blob whose size and digest are verified, still in `tmp/` (dropped: deleted).
#[derive(Debug)]
pub struct VerifiedBlob {
    writer: BlobWriter,
    digest: Digest,
}

impl VerifiedBlob {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn written(&self) -> u64 {
        self.writer.written
    }

    /// Syncs the blob's data (fsync) and renames it into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        if let Some(file) = self.writer.file.take() {
            file.sync_all().map_err(|source| StoreError::SyncBlob {
                digest: self.digest.clone(),
                source,
            })?;
        }
        self.rename()
    }

    /// Renames the blob into place without an fsync of its own, because `synced` proves that
    /// the store's filesystem was synced after this blob's last byte was written: the layer
    /// unpacked from the same bytes synced it (`syncfs` covers every file of the filesystem,
    /// and the blob's temporary file is in the same `tmp/` as the layer's). The caller
    /// guarantees that order (the unpacker only reaches the end of its stream after the last
    /// write here). Durability is unchanged: the blob's name appears only after its data is on
    /// disk, and the image record, written after every blob and layer, can never point at a
    /// missing or partial blob after a crash.
    pub fn commit_synced(mut self, synced: &Synced) -> Result<PathBuf> {
        let _ = synced;
        self.writer.file.take();
        self.rename()
    }

    fn rename(mut self) -> Result<PathBuf> {
        let expected = &self.digest;
        let store = &self.writer.store;
        let target = store.blob_path(expected);
        let commit_error = |source: io::Error| StoreError::CommitBlob {
            digest: expected.clone(),
            source,
        };
        let dir = target.parent().unwrap_or(&store.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(commit_error)?;
        fs::rename(&self.writer.path, &target).map_err(commit_error)?;
        // The temporary file is now the blob: nothing left for Drop to delete.
        self.writer.path = PathBuf::new();
        // The new name itself must be on disk before anything (a record) refers to it.
        sync_dir(&dir).map_err(commit_error)?;
        Ok(target)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.expected_size
            && self.written + buf.len() as u64 > size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob is larger than its declared {size} bytes"),
            ));
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = file.write(buf)?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("path", &self.path)
            .field("algorithm", &self.algorithm)
            .field("written", &self.written)
            .field("expected_size", &self.expected_size)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn tmp_entries(store: &Store) -> usize {
        fs::read_dir(store.tmp_dir()).unwrap().count()
    }

    #[test]
    fn digest_parse_and_display() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::sha256_of(b""), d);
        let d512 = format!("sha512:{}", "0".repeat(128));
        assert_eq!(Digest::parse(&d512).unwrap().to_string(), d512);
        for bad in [
            "",
            "sha256",
            "sha256:",
            "md5:abc",
            "sha256:ABCDEF",
            &format!("sha256:{}", "a".repeat(63)),
            &format!("sha256:{}", "a".repeat(65)),
            &format!("sha256:{}", "g".repeat(64)),
            &format!("sha512:{}", "a".repeat(64)),
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidDigest { .. }), "{bad}");
            assert!(err.to_string().starts_with("invalid digest"), "{err}");
        }
        let json = serde_json::to_string(&Digest::parse(EMPTY).unwrap()).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_string(), EMPTY);
        assert!(serde_json::from_str::<Digest>("\"sha256:x\"").is_err());
    }

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = Digest::sha256_of(b"c");
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
        assert_eq!(chain_id(&[a.clone(), b.clone()]), Some(ab.clone()));
        let abc = Digest::sha256_of(format!("{ab} {c}").as_bytes());
        assert_eq!(chain_id(&[a.clone(), b, c.clone()]), Some(abc.clone()));
        assert_eq!(chain_id_next(Some(&ab), &c), abc);
        assert_eq!(chain_id_next(None, &a), a);
    }

    #[test]
    fn known_chain_id_vector() {
        // Two-layer chain computed independently:
        // printf 'sha256:<a> sha256:<b>' | sha256sum with a = sha256(""), b = sha256("x").
        let a = Digest::sha256_of(b"");
        let b = Digest::sha256_of(b"x");
        let text = format!("{a} {b}");
        assert!(text.starts_with("sha256:e3b0c442"));
        assert_eq!(
            chain_id(&[a, b]).unwrap(),
            Digest::sha256_of(text.as_bytes())
        );
    }

    #[test]
    fn blob_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = b"hello blob";
        let digest = Digest::sha256_of(data);
        assert!(!store.has_blob(&digest));
        let mut w = store.blob_writer(Some(data.len() as u64)).unwrap();
        w.write_all(&data[..5]).unwrap();
        w.write_all(&data[5..]).unwrap();
        assert_eq!(w.written(), data.len() as u64);
        let path = w.commit(&digest).unwrap();
        assert_eq!(path, store.blob_path(&digest));
        assert!(path.ends_with(format!("image/blobs/sha256/{}", digest.hex())));
        assert!(store.has_blob(&digest));
        assert_eq!(store.read_blob(&digest).unwrap(), data);
        assert_eq!(tmp_entries(&store), 0);
        store.delete_blob(&digest).unwrap();
        assert!(!store.has_blob(&digest));
        store.delete_blob(&digest).unwrap();
        assert!(matches!(
            store.open_blob(&digest),
            Err(StoreError::OpenBlob { .. })
        ));
    }

    #[test]
    fn digest_mismatch_stores_nothing_and_names_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let claimed = Digest::sha256_of(b"what the manifest says");
        let mut w = store.blob_writer(None).unwrap();
        w.write_all(b"what the registry sent").unwrap();
        assert_eq!(tmp_entries(&store), 1);
        let err = w.commit(&claimed).unwrap_err();
        match &err {
            StoreError::DigestMismatch { expected, actual } => {
                assert_eq!(expected, &claimed);
                assert_eq!(actual, &Digest::sha256_of(b"what the registry sent"));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains(&claimed.to_string()), "{err}");
        assert!(!store.has_blob(&claimed));
        assert_eq!(tmp_entries(&store), 0, "temp file must be deleted");
    }

    #[test]
    fn size_mismatch_and_oversize() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = b"12345";
        let digest = Digest::sha256_of(data);
        let mut w = store.blob_writer(Some(6)).unwrap();
        w.write_all(data).unwrap();
        let err = w.commit(&digest).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SizeMismatch {
                    expected: 6,
                    actual: 5,
                    ..
                }
            ),
            "{err}"
        );
        let mut w = store.blob_writer(Some(4)).unwrap();
        assert!(w.write_all(data).is_err());
        drop(w);
        assert!(!store.has_blob(&digest));
        assert_eq!(tmp_entries(&store), 0);
    }

    #[test]
    fn verified_blob_commits_after_the_layer_sync_or_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = {
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(2);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_600_000_000);
            builder.append_data(&mut header, "f", &b"hi"[..]).unwrap();
            builder.into_inner().unwrap()
        };
        let digest = Digest::sha256_of(&tar);
        let mut w = store.blob_writer(Some(tar.len() as u64)).unwrap();
        w.write_all(&tar).unwrap();
        let verified = w.verify(&digest).unwrap();
        assert!(!store.has_blob(&digest), "not in place before the commit");
        let (info, proof) = store
            .unpack_layer_synced(None, &digest, tar.as_slice(), &Default::default())
            .unwrap();
        let proof = proof.expect("a fresh unpack syncs");
        verified.commit_synced(&proof).unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), tar);
        assert_eq!(tmp_entries(&store), 0);
        // Already unpacked: nothing synced, no proof; the fsync path is used.
        let (again, proof) = store
            .unpack_layer_synced(None, &digest, io::empty(), &Default::default())
            .unwrap();
        assert_eq!(again.chain_id, info.chain_id);
        assert!(proof.is_none());
        store.delete_blob(&digest).unwrap();
        let mut w = store.blob_writer(None).unwrap();
        w.write_all(&tar).unwrap();
        w.verify(&digest).unwrap().commit().unwrap();
        assert!(store.has_blob(&digest));
        // A verified blob dropped without a commit leaves nothing.
        let mut w = store.blob_writer(None).unwrap();
        w.write_all(b"other").unwrap();
        drop(w.verify(&Digest::sha256_of(b"other")).unwrap());
        assert_eq!(tmp_entries(&store), 0);
    }

    #[test]
    fn dropped_writer_deletes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.blob_writer(None).unwrap();
        w.write_all(b"partial").unwrap();
        assert_eq!(tmp_entries(&store), 1);
        drop(w);
        assert_eq!(tmp_entries(&store), 0);
    }

    #[test]
    fn sha512_blobs_and_algorithm_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = b"x";
        let d512 = Digest::parse(&format!(
            "sha512:{}",
            hex::encode(sha2::Sha512::digest(data))
        ))
        .unwrap();
        let path = store.write_blob(data, &d512).unwrap();
        assert!(path.ends_with(format!("blobs/sha512/{}", d512.hex())));
        let mut w = store.blob_writer(None).unwrap();
        w.write_all(data).unwrap();
        assert!(matches!(
            w.commit(&d512),
            Err(StoreError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn cleanup_tmp_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(store.tmp_dir().join("blob-crashed"), b"half").unwrap();
        fs::create_dir_all(store.tmp_dir().join("layer-crashed/diff/usr")).unwrap();
        assert_eq!(store.cleanup_tmp().unwrap(), 2);
        assert_eq!(tmp_entries(&store), 0);
        assert_eq!(store.cleanup_tmp().unwrap(), 0);
    }
}
