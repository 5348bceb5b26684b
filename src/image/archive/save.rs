//! `image save`: the images of the store written as one tarball that is at once a docker-archive
//! (`manifest.json` with Config/RepoTags/Layers, `repositories`) and an OCI image layout
//! (`oci-layout`, `index.json` with `io.containerd.image.name` annotations, `blobs/sha256/…`), as
//! Docker ≥ 25 writes it. Blobs are the store's own, unchanged and each written once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use serde_json::json;

use super::super::record::{self, ImageRecord};
use super::super::reference::Reference;
use super::super::store::{Digest, Store, StoreError};
use super::read::blob_path;
use super::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ArchiveError, DockerEntry, IndexEntry, IndexFile,
    Result, to_json,
};

/// Writes the images recorded under `references` as one tarball (docker-archive and OCI image
/// layout at once) to `writer`, and returns the writer.
pub fn save<W: Write>(store: &Store, references: &[Reference], writer: W) -> Result<W> {
    let mut images: Vec<(Reference, ImageRecord)> = Vec::new();
    for reference in references {
        let image = record::load(store, &reference.to_string())?;
        images.push((reference.clone(), image));
    }
    let write = |source| ArchiveError::Write { source };
    let mut tar = tar::Builder::new(writer);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut header, dir, io::empty())
            .map_err(write)?;
    }
    let mut written = BTreeSet::new();
    for (_, image) in &images {
        let blobs = std::iter::once(&image.config_digest)
            .chain(image.layers.iter().map(|l| &l.blob.digest))
            .chain(std::iter::once(&image.manifest_digest));
        for digest in blobs {
            if written.insert(digest.clone()) {
                append_blob(&mut tar, store, digest)?;
            }
        }
    }

    let mut index = IndexFile {
        schema_version: 2,
        media_type: Some(record::OCI_INDEX.to_string()),
        manifests: Vec::new(),
    };
    let mut docker: Vec<(Digest, DockerEntry)> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (reference, image) in &images {
        let size = blob_size(store, &image.manifest_digest)?;
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), reference.to_string());
        if let Some(tag) = &reference.tag {
            annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.clone());
        }
        index.manifests.push(IndexEntry {
            media_type: image.manifest_media_type.clone(),
            digest: image.manifest_digest.clone(),
            size,
            platform: None,
            annotations,
        });
        let position = match docker.iter().position(|(d, _)| d == &image.manifest_digest) {
            Some(position) => position,
            None => {
                docker.push((
                    image.manifest_digest.clone(),
                    DockerEntry {
                        config: blob_path(&image.config_digest),
                        repo_tags: Some(Vec::new()),
                        layers: image
                            .layers
                            .iter()
                            .map(|l| blob_path(&l.blob.digest))
                            .collect(),
                    },
                ));
                docker.len() - 1
            }
        };
        if let Some(tag) = &reference.tag {
            let familiar = format!("{}:{tag}", reference.familiar_name());
            if let Some(tags) = docker[position].1.repo_tags.as_mut()
                && !tags.contains(&familiar)
            {
                tags.push(familiar);
            }
            if let Some(top) = image.layers.last() {
                repositories
                    .entry(reference.familiar_name())
                    .or_default()
                    .insert(tag.clone(), top.blob.digest.hex().to_string());
            }
        }
    }
    let docker: Vec<DockerEntry> = docker.into_iter().map(|(_, entry)| entry).collect();
    let files: [(&str, Vec<u8>); 4] = [
        ("index.json", to_json(&index)?),
        ("manifest.json", to_json(&docker)?),
        (
            "oci-layout",
            to_json(&json!({"imageLayoutVersion": "1.0.0"}))?,
        ),
        ("repositories", to_json(&repositories)?),
    ];
    for (name, data) in files {
        let mut header = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut header, name, data.as_slice())
            .map_err(write)?;
    }
    tar.into_inner().map_err(write)
}

/// [`save`] into the file `path`, written under a temporary name beside it and renamed into
/// place when complete, so a failed save never leaves a truncated archive under that name.
pub fn save_to_path(store: &Store, references: &[Reference], path: &Path) -> Result<()> {
    let file_error = |source| ArchiveError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file = fs::File::create(&tmp).map_err(file_error)?;
        let file = save(store, references, io::BufWriter::new(file))?;
        let file = file.into_inner().map_err(|e| file_error(e.into_error()))?;
        file.sync_all().map_err(file_error)?;
        fs::rename(&tmp, path).map_err(file_error)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn blob_size(store: &Store, digest: &Digest) -> Result<u64> {
    fs::metadata(store.blob_path(digest))
        .map(|m| m.len())
        .map_err(|source| ArchiveError::Store {
            digest: digest.clone(),
            source: Box::new(StoreError::OpenBlob {
                digest: digest.clone(),
                source,
            }),
        })
}

fn append_blob<W: Write>(tar: &mut tar::Builder<W>, store: &Store, digest: &Digest) -> Result<()> {
    let store_error = |source| ArchiveError::Store {
        digest: digest.clone(),
        source: Box::new(source),
    };
    let file = store.open_blob(digest).map_err(store_error)?;
    let size = file
        .metadata()
        .map_err(|source| {
            store_error(StoreError::ReadBlob {
                digest: digest.clone(),
                source,
            })
        })?
        .len();
    let mut header = header(tar::EntryType::Regular, 0o644, size);
    // A reader that yields exactly `size` bytes: a blob that changed size under us would
    // otherwise corrupt the archive.
    tar.append_data(&mut header, blob_path(digest), file.take(size))
        .map_err(|source| ArchiveError::Write { source })
}
