//! `image import`: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image, as
//! `docker import` makes it. One pass over the input computes the diff id (sha256 of the plain
//! tar) while gzip-compressing it into a blob writer under the store's `tmp/`; then the config
//! (rootfs diff ids, os/arch, created) and an OCI manifest are made, the blobs committed, the
//! layer unpacked and the record written. On any error nothing this import added stays.

use std::io::{self, BufReader, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use sha2::Digest as _;

use super::super::record::{self, ContainerConfig, Descriptor, ImageRecord, Platform};
use super::super::reference::Reference;
use super::super::store::{Digest, Store};
use super::super::unpack::{Compression, UnpackOptions};
use super::{Added, ArchiveError, Result, to_json};

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The image's os/architecture (the host's by default).
    pub platform: Platform,
    /// The container defaults of the image (`docker import --change`).
    pub config: ContainerConfig,
    /// The creation time, RFC 3339 (now by default).
    pub created: Option<String>,
    pub unpack: UnpackOptions,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            platform: host_platform(),
            config: ContainerConfig::default(),
            created: None,
            unpack: UnpackOptions::default(),
        }
    }
}

/// The platform of this machine in OCI terms (`linux/amd64`, `linux/arm64`, …).
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Platform {
        architecture: architecture.to_string(),
        os: std::env::consts::OS.to_string(),
        variant: None,
    }
}

/// Imports a rootfs tarball as the one-layer image `reference`.
pub fn import<R: Read>(store: &Store, reader: R, reference: &Reference) -> Result<ImageRecord> {
    import_with(store, reader, reference, &ImportOptions::default())
}

/// [`import`] with options.
pub fn import_with<R: Read>(
    store: &Store,
    reader: R,
    reference: &Reference,
    options: &ImportOptions,
) -> Result<ImageRecord> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let magic = {
        use std::io::BufRead as _;
        let buffer = reader
            .fill_buf()
            .map_err(|source| ArchiveError::Read { source })?;
        buffer[..buffer.len().min(6)].to_vec()
    };
    let mut decoded: Box<dyn Read + '_> = match Compression::detect(&magic) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|source| ArchiveError::Read { source })?,
        ),
        other => {
            return Err(ArchiveError::Compression {
                what: "rootfs tarball".to_string(),
                format: format!("{other:?}").to_lowercase(),
            });
        }
    };

    // One pass: hash the plain tar (the diff id) and gzip it into the blob writer.
    let writer = store
        .blob_writer(None)
        .map_err(|source| ArchiveError::Stage {
            path: "rootfs tarball".to_string(),
            source: Box::new(source),
        })?;
    let mut encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = match decoded.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(ArchiveError::Read { source }),
        };
        hasher.update(&buffer[..n]);
        encoder
            .write_all(&buffer[..n])
            .map_err(|source| ArchiveError::Entry {
                path: "rootfs layer blob".to_string(),
                source,
            })?;
    }
    let writer = encoder.finish().map_err(|source| ArchiveError::Entry {
        path: "rootfs layer blob".to_string(),
        source,
    })?;
    let diff_id = Digest::sha256_from_hex(hex::encode(hasher.finalize()));
    let blob_digest = writer.digest();
    let blob_size = writer.written();

    let created = options
        .created
        .clone()
        .unwrap_or_else(|| rfc3339(SystemTime::now()));
    let config = to_json(&json!({
        "architecture": options.platform.architecture,
        "os": options.platform.os,
        "created": created,
        "config": options.config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created, "created_by": "flotilla image import", "comment": "imported from tarball"}],
    }))?;
    let config_digest = Digest::sha256_of(&config);
    let manifest = to_json(&record::Manifest {
        schema_version: 2,
        media_type: Some(record::OCI_MANIFEST.to_string()),
        config: Descriptor {
            media_type: record::OCI_CONFIG.to_string(),
            digest: config_digest.clone(),
            size: config.len() as u64,
            platform: None,
        },
        layers: vec![Descriptor {
            media_type: record::OCI_LAYER_GZIP.to_string(),
            digest: blob_digest.clone(),
            size: blob_size,
            platform: None,
        }],
    })?;
    let manifest_digest = Digest::sha256_of(&manifest);

    let mut added = Added::new(store);
    if store.has_blob(&blob_digest) {
        drop(writer);
    } else {
        writer
            .commit(&blob_digest)
            .map_err(|source| ArchiveError::Store {
                digest: blob_digest.clone(),
                source: Box::new(source),
            })?;
        added.blobs.push(blob_digest);
    }
    added.write_blob(&config, &config_digest)?;
    added.write_blob(&manifest, &manifest_digest)?;
    let image = record::from_store(store, &reference.to_string(), &manifest_digest)?;
    added.unpack_layers(&image, &options.unpack)?;
    record::save(store, &image)?;
    added.disarm();
    Ok(image)
}

/// `2026-11-23T15:46:43Z` (UTC, seconds).
fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_448_803);
        assert_eq!(rfc3339(t), "2026-11-23T15:46:43Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
