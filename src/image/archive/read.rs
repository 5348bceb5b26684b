//! Reading an image tarball (docker-archive or OCI image layout, gzip, zstd or plain) into
//! staging: every regular file is streamed into an uncommitted [`BlobWriter`] under the store's
//! `tmp/` and hashed while it is written, small files are also kept in memory for parsing, and
//! symlinks and hardlinks between entries are remembered. Nothing counts in the store until
//! [`Contents::take`] hands a writer back for a verified commit; dropping the contents deletes
//! every staged file. Entry paths are only map keys: nothing is ever created at a path taken
//! from the archive.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path};

use super::super::store::{Algorithm, BlobWriter, Digest, Store};
use super::super::unpack::Compression;
use super::ArchiveError;

/// The top-level files that describe an archive (kept in memory, never stored as blobs).
const METADATA: &[&str] = &["manifest.json", "index.json", "oci-layout", "repositories"];
/// Largest metadata file accepted.
const METADATA_LIMIT: u64 = 16 << 20;
/// Files up to this size are also kept in memory (manifests, configs, indexes).
const SMALL: u64 = 4 << 20;
/// Bound on the memory all kept copies may take together.
const SMALL_BUDGET: u64 = 64 << 20;
/// How many links are followed when resolving a path.
const MAX_LINKS: usize = 16;

/// One staged file of the archive.
pub(super) struct Staged {
    writer: BlobWriter,
    /// Digest of the content (sha256, or sha512 under `blobs/sha512/`).
    pub digest: Digest,
    pub size: u64,
    /// The first bytes, to tell a compressed layer from a plain tar.
    pub magic: Vec<u8>,
    /// The content, for small files.
    pub data: Option<Vec<u8>>,
}

/// Everything read from an archive.
#[derive(Default)]
pub(super) struct Contents {
    files: HashMap<String, Staged>,
    links: HashMap<String, String>,
    metadata: HashMap<String, Vec<u8>>,
}

impl Contents {
    /// Reads a whole archive (decompressing it if it is gzip or zstd) into staging.
    pub fn read<R: Read>(store: &Store, reader: R) -> Result<Contents, ArchiveError> {
        let mut reader = BufReader::with_capacity(256 * 1024, reader);
        let magic = peek(&mut reader)?;
        let decoded: Box<dyn Read + '_> = match Compression::detect(&magic) {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(reader)
                    .map_err(|source| ArchiveError::Read { source })?,
            ),
            other => {
                return Err(ArchiveError::Compression {
                    what: "archive".to_string(),
                    format: format!("{other:?}").to_lowercase(),
                });
            }
        };
        let mut archive = tar::Archive::new(decoded);
        let mut contents = Contents::default();
        let mut kept = 0;
        let entries = archive
            .entries()
            .map_err(|source| ArchiveError::Read { source })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| ArchiveError::Read { source })?;
            let raw_path = entry
                .path()
                .map_err(|source| ArchiveError::Read { source })?
                .into_owned();
            let Some(path) = normalize(&raw_path) else {
                continue;
            };
            let entry_error = |source| ArchiveError::Entry {
                path: path.clone(),
                source,
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink => {
                    let target = entry.link_name().map_err(entry_error)?;
                    if let Some(target) = target {
                        let parent = Path::new(&path).parent().unwrap_or(Path::new(""));
                        if let Some(target) = normalize(&parent.join(target)) {
                            contents.links.insert(path, target);
                        }
                    }
                    continue;
                }
                tar::EntryType::Link => {
                    let target = entry.link_name().map_err(entry_error)?;
                    if let Some(target) = target.as_deref().and_then(normalize) {
                        contents.links.insert(path, target);
                    }
                    continue;
                }
                _ => continue,
            }
            let size = entry.size();
            if METADATA.contains(&path.as_str()) {
                if size > METADATA_LIMIT {
                    return Err(ArchiveError::TooLarge {
                        path,
                        size,
                        limit: METADATA_LIMIT,
                    });
                }
                let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                entry.read_to_end(&mut data).map_err(entry_error)?;
                contents.metadata.insert(path, data);
                continue;
            }
            let keep = size <= SMALL && kept + size <= SMALL_BUDGET;
            if keep {
                kept += size;
            }
            let staged = stage(store, &path, &mut entry, size, keep)?;
            contents.files.insert(path, staged);
        }
        Ok(contents)
    }

    /// A top-level metadata file (`manifest.json`, `index.json`, …).
    pub fn metadata(&self, name: &str) -> Option<&[u8]> {
        self.metadata.get(name).map(Vec::as_slice)
    }

    /// The staged file at `path`, following links between entries.
    pub fn get(&self, path: &str) -> Option<&Staged> {
        let mut path = normalize(Path::new(path))?;
        for _ in 0..MAX_LINKS {
            if let Some(staged) = self.files.get(&path) {
                return Some(staged);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }

    /// Hands back the writer of a staged file with content `digest`, for the caller to commit.
    pub fn take(&mut self, digest: &Digest) -> Option<BlobWriter> {
        let path = self
            .files
            .iter()
            .find(|(_, staged)| &staged.digest == digest)
            .map(|(path, _)| path.clone())?;
        self.files.remove(&path).map(|staged| staged.writer)
    }
}

/// Where an OCI image layout keeps the blob `digest`.
pub(super) fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// Streams one entry into a blob writer, hashing it (and keeping a copy if asked).
fn stage<R: Read>(
    store: &Store,
    path: &str,
    entry: &mut R,
    size: u64,
    keep: bool,
) -> Result<Staged, ArchiveError> {
    let algorithm = if path.starts_with("blobs/sha512/") {
        Algorithm::Sha512
    } else {
        Algorithm::Sha256
    };
    let mut writer = store
        .blob_writer_with(algorithm, Some(size))
        .map_err(|source| ArchiveError::Stage {
            path: path.to_string(),
            source: Box::new(source),
        })?;
    let entry_error = |source| ArchiveError::Entry {
        path: path.to_string(),
        source,
    };
    let mut data = keep.then(|| Vec::with_capacity(usize::try_from(size).unwrap_or(0)));
    let mut magic = Vec::with_capacity(6);
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = match entry.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(entry_error(e)),
        };
        let chunk = &buffer[..n];
        if magic.len() < 6 {
            let want = (6 - magic.len()).min(n);
            magic.extend_from_slice(&chunk[..want]);
        }
        writer.write_all(chunk).map_err(entry_error)?;
        if let Some(data) = data.as_mut() {
            data.extend_from_slice(chunk);
        }
    }
    if writer.written() != size {
        return Err(entry_error(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("truncated: {} of {size} bytes", writer.written()),
        )));
    }
    Ok(Staged {
        digest: writer.digest(),
        size,
        magic,
        data,
        writer,
    })
}

/// Reads the first bytes of a stream without consuming them.
fn peek<R: Read>(reader: &mut BufReader<R>) -> Result<Vec<u8>, ArchiveError> {
    use std::io::BufRead as _;
    loop {
        match reader.fill_buf() {
            Ok(buffer) => return Ok(buffer[..buffer.len().min(6)].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ArchiveError::Read { source }),
        }
    }
}

/// `./a//b/` → `a/b`; `..` pops a component (and cannot climb above the top); an empty result
/// (the archive root itself) is `None`.
fn normalize(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_entry_paths() {
        assert_eq!(
            normalize(Path::new("./blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(
            normalize(Path::new("/manifest.json")).as_deref(),
            Some("manifest.json")
        );
        assert_eq!(normalize(Path::new("a/../b/./c/")).as_deref(), Some("b/c"));
        assert_eq!(normalize(Path::new("../../x")).as_deref(), Some("x"));
        assert_eq!(normalize(Path::new("./")), None);
    }
}
