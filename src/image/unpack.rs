//! Secure layer unpacking: a tar stream (uncompressed, gzip or zstd, told apart by magic bytes) is
//! written into a layer directory through file descriptors confined to that directory. This module
//! owns the conversion of tar entries into files, directories, links, device nodes and overlayfs
//! whiteouts, and the computation of the layer's diff id.
//!
//! Confinement: the layer root is opened once; every entry's parent directory is resolved by the
//! kernel with `openat2(root, parent, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..`, absolute
//! paths and symlinks (absolute or relative, chained or not) are resolved as if the layer root were
//! `/` and can never reach outside it. The final component is then created relative to that parent
//! fd with `O_NOFOLLOW`/`O_EXCL`/`AT_SYMLINK_NOFOLLOW`, after removing whatever was there, so a
//! symlink left by an earlier entry is replaced rather than followed. Path strings are never joined
//! and checked. The `tar` crate only reads entries; it never touches the filesystem.
//!
//! Rooms: `confined` holds the fd-confined primitives (resolve, create parents, remove a tree),
//! `entries` turns each tar entry into its filesystem object; this file reads and decompresses
//! the stream and hashes it.

use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use sha2::Digest as _;

use super::store::Digest;

pub mod confined;
mod entries;

use entries::Unpacker;

/// Prefix of an OCI whiteout file (`.wh.<name>` deletes `<name>` of lower layers).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// The overlayfs xattr that makes a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Read and write buffer size, also the granularity at which zeros become holes.
const COPY_BUFFER: usize = 128 * 1024;

/// Why a layer could not be unpacked. `path` is the entry's path as written in the archive.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("open layer root {path}: {source}")]
    OpenRoot { path: PathBuf, source: io::Error },
    #[error("read layer stream: {source}")]
    ReadStream { source: io::Error },
    #[error("layer is compressed with {format}, which is not supported (gzip, zstd or none)")]
    UnsupportedCompression { format: &'static str },
    #[error("start {format} decoder: {source}")]
    Decoder {
        format: &'static str,
        source: io::Error,
    },
    #[error("read tar archive: {source}")]
    ReadArchive { source: io::Error },
    #[error("tar archive ended without its end-of-archive marker (truncated stream)")]
    MissingEndMarker,
    #[error("entry {path:?}: read data: {source}")]
    ReadEntry { path: String, source: io::Error },
    #[error("entry {path:?}: truncated: {actual} of {expected} bytes")]
    Truncated {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("entry {path:?}: declared size {size} exceeds the limit of {limit} bytes")]
    EntryTooLarge { path: String, size: u64, limit: u64 },
    #[error("entry {path:?}: unsafe or invalid name: {reason}")]
    InvalidName { path: String, reason: &'static str },
    #[error("entry {path:?}: invalid header: {reason}")]
    InvalidHeader { path: String, reason: String },
    #[error("entry {path:?}: unsupported entry type {kind}")]
    UnsupportedType { path: String, kind: String },
    #[error("entry {path:?}: resolve parent directory inside the layer: {source}")]
    ResolveParent { path: String, source: io::Error },
    #[error("entry {path:?}: remove the existing file: {source}")]
    RemoveExisting { path: String, source: io::Error },
    #[error("entry {path:?}: create {what}: {source}")]
    Create {
        path: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("entry {path:?}: write data: {source}")]
    Write { path: String, source: io::Error },
    #[error("entry {path:?}: hardlink target {target:?} inside the layer: {source}")]
    HardlinkTarget {
        path: String,
        target: String,
        source: io::Error,
    },
    #[error("entry {path:?}: set {what}: {source}")]
    Metadata {
        path: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("entry {path:?}: whiteout: {source}")]
    Whiteout { path: String, source: io::Error },
}

type Result<T, E = UnpackError> = std::result::Result<T, E>;

/// How a layer stream is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    /// Tells the compression from a stream's first bytes (six are enough).
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if magic.len() >= 4 && magic.starts_with(b"BZh") && (b'1'..=b'9').contains(&magic[3])
        {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }
}

/// Knobs of the unpacker. `Default` suits the daemon: ownership and device nodes only when root.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Refuse an entry whose declared (uncompressed, sparse-expanded) size is larger.
    pub max_entry_size: u64,
    /// Apply the archive's uid/gid (needs root).
    pub same_owner: bool,
    /// Create character and block devices (needs root); otherwise they are skipped.
    pub devices: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            max_entry_size: 64 << 30,
            same_owner: root,
            devices: root,
        }
    }
}

/// What unpacking produced: the diff id (sha256 of the uncompressed tar) and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub diff_id: Digest,
    pub size: u64,
}

/// Unpacks a layer stream into the existing directory `dest`.
pub fn unpack<R: Read>(reader: R, dest: &Path, options: &UnpackOptions) -> Result<Unpacked> {
    let root = rustix::fs::open(
        dest,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenRoot {
        path: dest.to_path_buf(),
        source: e.into(),
    })?;
    unpack_at(reader, root.as_fd(), options)
}

/// Unpacks a layer stream into the directory open as `root`; nothing outside it is touched.
pub fn unpack_at<R: Read>(
    mut reader: R,
    root: BorrowedFd<'_>,
    options: &UnpackOptions,
) -> Result<Unpacked> {
    let mut magic = [0u8; 6];
    let mut have = 0;
    while have < magic.len() {
        match reader.read(&mut magic[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(UnpackError::ReadStream { source }),
        }
    }
    let compression = Compression::detect(&magic[..have]);
    let raw = io::Cursor::new(magic[..have].to_vec()).chain(reader);
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            COPY_BUFFER,
            raw,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw).map_err(|source| {
            UnpackError::Decoder {
                format: "zstd",
                source,
            }
        })?),
        other @ (Compression::Bzip2 | Compression::Xz) => {
            return Err(UnpackError::UnsupportedCompression {
                format: other.name(),
            });
        }
    };

    let tracked = Tracked {
        inner: decoded,
        hasher: sha2::Sha256::new(),
        count: 0,
        hit_eof: false,
    };
    let mut archive = tar::Archive::new(tracked);
    let mut unpacker = Unpacker::new(root, options);
    {
        let entries = archive
            .entries()
            .map_err(|source| UnpackError::ReadArchive { source })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| UnpackError::ReadArchive { source })?;
            unpacker.entry(&mut entry)?;
        }
    }
    unpacker.finish()?;

    let mut tracked = archive.into_inner();
    if tracked.hit_eof {
        return Err(UnpackError::MissingEndMarker);
    }
    // The rest of the stream (record padding) is part of the diff id, and reading the compressed
    // stream to its end is what verifies its checksum.
    io::copy(&mut tracked, &mut io::sink())
        .map_err(|source| UnpackError::ReadArchive { source })?;
    let hex = hex::encode(tracked.hasher.finalize());
    Ok(Unpacked {
        diff_id: Digest::sha256_from_hex(hex),
        size: tracked.count,
    })
}

/// Hashes and counts what the tar reader consumes, and notes whether it met the end of the stream.
struct Tracked<R> {
    inner: R,
    hasher: sha2::Sha256,
    count: u64,
    hit_eof: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"BZh9\x31\x41"), Compression::Bzip2);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(Compression::detect(b"etc/passwd"), Compression::None);
        assert_eq!(Compression::detect(b"BZhx"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }
}
