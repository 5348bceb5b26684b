//! Root integration tests of image tarballs: `save` → `load` round trips, docker-archives and OCI
//! image layouts built by hand in the test, gzipped archives, a corrupted layer (refused, nothing
//! stored), and `import` of a busybox rootfs tarball. Every test uses its own tempdir data roots.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;

use common::images::whiteout_image;
use common::registry::{busybox_image, busybox_layer, files_layer, gzip};
use flotilla::image::archive::{self, ArchiveError};
use flotilla::image::record::{self, ImageRecord};
use flotilla::image::reference::Reference;
use flotilla::image::store::{Digest, Store};
use serde_json::json;

fn reference(text: &str) -> Reference {
    Reference::parse(text).expect("reference")
}

fn new_store() -> (tempfile::TempDir, Store) {
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    (root, store)
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(read) => read
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Nothing in the store: no blob, no layer, no record, no temporary file.
fn assert_empty(store: &Store) {
    for dir in ["blobs/sha256", "layers", "images", "tmp"] {
        let left = entries(&store.root().join(dir));
        assert!(left.is_empty(), "{dir} is not empty: {left:?}");
    }
}

/// The names and contents of a tar's regular files.
fn tar_files(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(data);
    let mut files = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read entry");
        files.push((path, content));
    }
    files
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_mtime(1_600_000_000);
        tar.append_data(&mut header, path, *data)
            .expect("tar entry");
    }
    tar.into_inner().expect("finish tar")
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn config_json(diff_ids: &[Digest], cmd: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": [cmd], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    }))
    .expect("config json")
}

#[test]
fn save_then_load_round_trip() {
    let (_source_root, source) = new_store();
    let busybox = busybox_image("amd64");
    let whiteouts = whiteout_image();
    let first = busybox.import(&source, "docker.io/library/busybox:1");
    let second = busybox.import(&source, "127.0.0.1:5000/tools/busybox:stable");
    let third = whiteouts.import(&source, "docker.io/test/whiteouts:2");
    let names = [
        reference("busybox:1"),
        reference("127.0.0.1:5000/tools/busybox:stable"),
        reference("test/whiteouts:2"),
    ];
    let saved = archive::save(&source, &names, Vec::new()).expect("save");

    // Both readers' files are there: docker-archive and OCI image layout.
    let files = tar_files(&saved);
    let file = |name: &str| {
        files
            .iter()
            .find(|(path, _)| path == name)
            .map(|(_, data)| data.clone())
            .unwrap_or_else(|| panic!("{name} in the archive"))
    };
    let manifest_json: serde_json::Value =
        serde_json::from_slice(&file("manifest.json")).expect("manifest.json");
    let images = manifest_json.as_array().expect("manifest.json is a list");
    assert_eq!(
        images.len(),
        2,
        "one entry per distinct image: {manifest_json}"
    );
    assert_eq!(
        images[0]["RepoTags"],
        json!(["busybox:1", "127.0.0.1:5000/tools/busybox:stable"])
    );
    assert_eq!(images[0]["Config"], json!(blob_name(&first.config_digest)));
    assert_eq!(images[1]["Layers"].as_array().map(Vec::len), Some(2));
    let index: serde_json::Value = serde_json::from_slice(&file("index.json")).expect("index");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        json!("docker.io/library/busybox:1")
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&file("oci-layout")).expect("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"})
    );
    let repositories: serde_json::Value =
        serde_json::from_slice(&file("repositories")).expect("repositories");
    assert!(repositories["busybox"]["1"].is_string(), "{repositories}");
    // Every blob file holds the content its name says, once.
    let blob_files: Vec<&(String, Vec<u8>)> = files
        .iter()
        .filter(|(p, _)| p.starts_with("blobs/"))
        .collect();
    let distinct: BTreeSet<&String> = blob_files.iter().map(|(p, _)| p).collect();
    assert_eq!(distinct.len(), blob_files.len(), "no blob twice");
    for (path, data) in blob_files {
        assert_eq!(path, &blob_name(&Digest::sha256_of(data)));
    }

    let (_target_root, target) = new_store();
    let loaded = archive::load(&target, saved.as_slice()).expect("load");
    assert_eq!(loaded.len(), 3);
    for (original, name) in [
        (&first, &names[0]),
        (&second, &names[1]),
        (&third, &names[2]),
    ] {
        let found = loaded
            .iter()
            .find(|l| l.reference.as_ref() == Some(name))
            .unwrap_or_else(|| panic!("{name} loaded"));
        assert_eq!(
            &found.record, original,
            "records equal after the round trip"
        );
        assert_eq!(
            &record::load(&target, &name.to_string()).expect("record on disk"),
            original
        );
        for layer in &original.layers {
            assert!(target.has_layer(&layer.chain_id), "layer unpacked");
        }
    }
    let top = first.top_chain_id().expect("a layer");
    assert!(target.layer_path(top).join("bin/busybox").is_file());
    assert!(entries(&target.root().join("tmp")).is_empty());

    // Loading the same archive again changes nothing and fails nothing.
    let again = archive::load(&target, saved.as_slice()).expect("load again");
    assert_eq!(again.len(), 3);
}

#[test]
fn save_to_path_writes_a_complete_file() {
    let (_root, store) = new_store();
    busybox_image("amd64").import(&store, "docker.io/library/busybox:1");
    let out = tempfile::tempdir().expect("tempdir");
    let path = out.path().join("busybox.tar");
    archive::save_to_path(&store, &[reference("busybox:1")], &path).expect("save");
    assert_eq!(
        entries(out.path()),
        ["busybox.tar"],
        "no temporary file left"
    );
    let (_other_root, other) = new_store();
    let loaded = archive::load(&other, fs::File::open(&path).expect("open")).expect("load");
    assert_eq!(loaded.len(), 1);

    // An unknown image is an error naming it, and leaves no file.
    let missing = out.path().join("missing.tar");
    let error =
        archive::save_to_path(&store, &[reference("nope:1")], &missing).expect_err("unknown image");
    assert!(
        error.to_string().contains("docker.io/library/nope:1"),
        "{error}"
    );
    assert_eq!(entries(out.path()), ["busybox.tar"]);
}

#[test]
fn gzipped_archive_loads() {
    let (_source_root, source) = new_store();
    let original = busybox_image("amd64").import(&source, "docker.io/library/busybox:gz");
    let saved = archive::save(&source, &[reference("busybox:gz")], Vec::new()).expect("save");
    let (_target_root, target) = new_store();
    let loaded = archive::load(&target, gzip(&saved).as_slice()).expect("load gzip");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].record, original);
    let zstd = zstd::encode_all(saved.as_slice(), 3).expect("zstd");
    let (_zstd_root, zstd_target) = new_store();
    let loaded = archive::load(&zstd_target, zstd.as_slice()).expect("load zstd");
    assert_eq!(loaded[0].record, original);
}

#[test]
fn hand_made_docker_archive_loads() {
    // The legacy `docker save` layout: <config hex>.json, <v1 id>/layer.tar (plain), a symlink
    // for a layer shared with another image, manifest.json and repositories.
    let layer = busybox_layer();
    let motd = files_layer(&[("etc/motd", "hand made\n")]);
    let diff_ids = [Digest::sha256_of(&layer), Digest::sha256_of(&motd)];
    let config = config_json(&diff_ids, "sh");
    let config_name = format!("{}.json", Digest::sha256_of(&config).hex());
    let small_config = config_json(&diff_ids[..1], "true");
    let small_config_name = format!("{}.json", Digest::sha256_of(&small_config).hex());
    let manifest = serde_json::to_vec(&json!([
        {"Config": config_name, "RepoTags": ["hand/made:1", "localhost:5000/hand/made:1"],
         "Layers": ["1111/layer.tar", "2222/layer.tar"]},
        {"Config": small_config_name, "RepoTags": null, "Layers": ["3333/layer.tar"]},
    ]))
    .expect("manifest.json");
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [
        (config_name.as_str(), config.as_slice()),
        (small_config_name.as_str(), small_config.as_slice()),
        ("1111/layer.tar", layer.as_slice()),
        ("1111/VERSION", b"1.0".as_slice()),
        ("2222/layer.tar", motd.as_slice()),
        ("manifest.json", manifest.as_slice()),
        ("repositories", br#"{"hand/made":{"1":"2222"}}"#.as_slice()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, path, data).expect("tar entry");
    }
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    tar.append_link(&mut link, "3333/layer.tar", "../1111/layer.tar")
        .expect("tar symlink");
    let archive_data = tar.into_inner().expect("finish tar");

    let (_root, store) = new_store();
    let loaded = archive::load(&store, archive_data.as_slice()).expect("load docker-archive");
    let names: Vec<Option<String>> = loaded
        .iter()
        .map(|l| l.reference.as_ref().map(Reference::to_string))
        .collect();
    assert_eq!(
        names,
        [
            Some("docker.io/hand/made:1".to_string()),
            Some("localhost:5000/hand/made:1".to_string()),
            None
        ]
    );
    let image: &ImageRecord = &loaded[0].record;
    assert_eq!(image.config_digest, Digest::sha256_of(&config));
    assert_eq!(image.diff_ids(), diff_ids);
    assert_eq!(image.config.cmd, Some(vec!["sh".to_string()]));
    let chain = image.chain_ids();
    assert!(store.layer_path(&chain[0]).join("bin/busybox").is_file());
    assert_eq!(
        fs::read_to_string(store.layer_path(&chain[1]).join("etc/motd")).expect("motd"),
        "hand made\n"
    );
    // The unnamed image is recorded under its image id, and shares the busybox layer.
    let unnamed = &loaded[2].record;
    assert_eq!(unnamed.name, Digest::sha256_of(&small_config).to_string());
    assert_eq!(unnamed.chain_ids(), chain[..1]);
    assert_eq!(
        record::load(&store, "docker.io/hand/made:1").expect("record"),
        *image
    );
    // The manifest made for it is in the store, so the image can be saved and pushed.
    assert!(store.has_blob(&image.manifest_digest));
}

#[test]
fn hand_made_oci_layout_loads() {
    // As `skopeo copy … oci-archive:` or `tar -C layout -cf - .` make it: paths start with
    // "./", a multi-platform index of which only the amd64 blobs are present, and a ref.name
    // annotation that is only a tag.
    let layer = gzip(&busybox_layer());
    let diff_ids = [Digest::sha256_of(&busybox_layer())];
    let config = config_json(&diff_ids, "sh");
    let descriptor = |media_type: &str, data: &[u8]| json!({"mediaType": media_type, "digest": Digest::sha256_of(data).to_string(), "size": data.len()});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": record::OCI_MANIFEST,
        "config": descriptor(record::OCI_CONFIG, &config),
        "layers": [descriptor(record::OCI_LAYER_GZIP, &layer)],
    }))
    .expect("manifest");
    let absent_arm = Digest::sha256_of(b"arm64 manifest not in the archive");
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": record::OCI_INDEX,
        "manifests": [
            {"mediaType": record::OCI_MANIFEST, "digest": absent_arm.to_string(), "size": 10,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": record::OCI_MANIFEST, "digest": Digest::sha256_of(&manifest).to_string(),
             "size": manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .expect("nested index");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": record::OCI_INDEX, "digest": Digest::sha256_of(&nested).to_string(),
             "size": nested.len(), "annotations": {"org.opencontainers.image.ref.name": "1.0"}},
            {"mediaType": record::OCI_MANIFEST, "digest": Digest::sha256_of(&manifest).to_string(),
             "size": manifest.len(),
             "annotations": {"io.containerd.image.name": "registry.example/oci/made:1.0"}},
        ],
    }))
    .expect("index");
    let names: Vec<String> = [&layer, &config, &manifest, &nested]
        .iter()
        .map(|data| format!("./{}", blob_name(&Digest::sha256_of(data))))
        .collect();
    let archive_data = tar_of(&[
        ("./oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("./index.json", &index),
        (&names[0], &layer),
        (&names[1], &config),
        (&names[2], &manifest),
        (&names[3], &nested),
    ]);

    let (_root, store) = new_store();
    let loaded = archive::load(&store, archive_data.as_slice()).expect("load oci layout");
    assert_eq!(loaded.len(), 1, "both entries are the same amd64 manifest");
    let image = &loaded[0];
    assert_eq!(
        image
            .reference
            .as_ref()
            .map(Reference::to_string)
            .as_deref(),
        Some("registry.example/oci/made:1.0")
    );
    assert_eq!(image.record.manifest_digest, Digest::sha256_of(&manifest));
    assert_eq!(image.record.manifest_media_type, record::OCI_MANIFEST);
    let top = image.record.top_chain_id().expect("a layer");
    assert!(store.layer_path(top).join("bin/busybox").is_file());
    assert!(
        !store.has_blob(&Digest::sha256_of(&nested)),
        "only the image's blobs are kept"
    );

    // Without a name anywhere, the image is recorded under its image id.
    let unnamed_index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": record::OCI_MANIFEST,
            "digest": Digest::sha256_of(&manifest).to_string(), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    }))
    .expect("index");
    let archive_data = tar_of(&[
        ("index.json", &unnamed_index),
        (&names[0][2..], &layer),
        (&names[1][2..], &config),
        (&names[2][2..], &manifest),
    ]);
    let (_other_root, other) = new_store();
    let loaded = archive::load(&other, archive_data.as_slice()).expect("load unnamed");
    assert_eq!(loaded[0].reference, None);
    assert_eq!(
        loaded[0].record.name,
        Digest::sha256_of(&config).to_string()
    );
}

#[test]
fn corrupted_layer_is_refused_and_nothing_stored() {
    let (_source_root, source) = new_store();
    let image = busybox_image("amd64");
    let original = image.import(&source, "docker.io/library/busybox:1");
    let saved = archive::save(&source, &[reference("busybox:1")], Vec::new()).expect("save");
    let layer = &original.layers[0].blob.digest;

    // Flip bytes inside the layer blob's data (found by its content).
    let layer_data = &image.layers[0];
    let start = saved
        .windows(64)
        .position(|w| w == &layer_data[1000..1064])
        .expect("layer data in the archive");
    let mut corrupted = saved.clone();
    for b in &mut corrupted[start..start + 64] {
        *b ^= 0x5a;
    }
    for archive_data in [corrupted.clone(), gzip(&corrupted)] {
        let (_root, store) = new_store();
        let error = archive::load(&store, archive_data.as_slice()).expect_err("corrupted layer");
        assert!(matches!(error, ArchiveError::BlobDigest { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&layer.to_string()),
            "names the blob: {message}"
        );
        assert_empty(&store);
    }

    // A legacy docker-archive whose plain layer does not match the config's diff id.
    let plain = busybox_layer();
    let diff_id = Digest::sha256_of(&plain);
    let config = config_json(std::slice::from_ref(&diff_id), "sh");
    let config_name = format!("{}.json", Digest::sha256_of(&config).hex());
    let mut bad_layer = plain.clone();
    bad_layer[700] ^= 1;
    let manifest = serde_json::to_vec(&json!([
        {"Config": config_name, "RepoTags": ["bad/layer:1"], "Layers": ["x/layer.tar"]}
    ]))
    .expect("manifest.json");
    let archive_data = tar_of(&[
        (&config_name, &config),
        ("x/layer.tar", &bad_layer),
        ("manifest.json", &manifest),
    ]);
    let (_root, store) = new_store();
    let error = archive::load(&store, archive_data.as_slice()).expect_err("bad layer");
    let message = error.to_string();
    assert!(message.contains(&diff_id.to_string()), "{message}");
    assert!(message.contains("x/layer.tar"), "{message}");
    assert_empty(&store);

    // A truncated archive and a file that is no archive at all.
    let (_root, store) = new_store();
    let error = archive::load(&store, &saved[..saved.len() / 2]).expect_err("truncated");
    assert!(!error.to_string().is_empty());
    assert_empty(&store);
    let error = archive::load(&store, b"not a tarball".as_slice()).expect_err("garbage");
    assert!(
        matches!(error, ArchiveError::NotAnImage | ArchiveError::Read { .. }),
        "{error}"
    );
    assert_empty(&store);
}

#[test]
fn a_layer_that_fails_to_unpack_leaves_nothing() {
    // Blobs all verify (the manifest lists the bad blob's real digest) but the layer is no tar:
    // the unpack fails after the blobs were committed, and they are removed again.
    let not_a_tar = gzip(b"this is not a tar archive at all, just text");
    let diff_id = Digest::sha256_of(b"this is not a tar archive at all, just text");
    let config = config_json(std::slice::from_ref(&diff_id), "sh");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": record::OCI_MANIFEST,
        "config": {"mediaType": record::OCI_CONFIG, "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": record::OCI_LAYER_GZIP, "digest": Digest::sha256_of(&not_a_tar).to_string(), "size": not_a_tar.len()}],
    }))
    .expect("manifest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": record::OCI_MANIFEST, "digest": Digest::sha256_of(&manifest).to_string(),
            "size": manifest.len(), "annotations": {"io.containerd.image.name": "docker.io/x/y:1"}}],
    }))
    .expect("index");
    let archive_data = tar_of(&[
        ("index.json", &index),
        (&blob_name(&Digest::sha256_of(&not_a_tar)), &not_a_tar),
        (&blob_name(&Digest::sha256_of(&config)), &config),
        (&blob_name(&Digest::sha256_of(&manifest)), &manifest),
    ]);
    let (_root, store) = new_store();
    let error = archive::load(&store, archive_data.as_slice()).expect_err("bad layer");
    assert!(matches!(error, ArchiveError::Layer { .. }), "{error}");
    assert!(error.to_string().contains(&diff_id.to_string()), "{error}");
    assert_empty(&store);
}

#[test]
fn import_busybox_rootfs() {
    let rootfs = busybox_layer();
    let (_root, store) = new_store();
    let name = reference("imported/busybox:1");
    let image = archive::import(&store, gzip(&rootfs).as_slice(), &name).expect("import");
    assert_eq!(image.name, "docker.io/imported/busybox:1");
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.diff_ids(), [Digest::sha256_of(&rootfs)]);
    assert_eq!(image.platform, archive::host_platform());
    assert_eq!(image.manifest_media_type, record::OCI_MANIFEST);
    let created = image.created.as_deref().expect("created");
    assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
    let top = image.top_chain_id().expect("a layer");
    let busybox = store.layer_path(top).join("bin/busybox");
    assert!(busybox.is_file(), "snapshot has /bin/busybox");
    assert_eq!(
        fs::read_link(store.layer_path(top).join("bin/sh")).expect("sh link"),
        std::path::Path::new("busybox")
    );
    // The layer blob is gzip and hashes to its digest.
    let blob = store.read_blob(&image.layers[0].blob.digest).expect("blob");
    assert_eq!(&blob[..2], &[0x1f, 0x8b]);
    assert_eq!(Digest::sha256_of(&blob), image.layers[0].blob.digest);
    assert_eq!(
        record::load(&store, &name.to_string()).expect("record"),
        image
    );

    // A plain tar imports to the same layer; the snapshot is shared.
    let again = archive::import(&store, rootfs.as_slice(), &reference("imported/plain:1"))
        .expect("import plain");
    assert_eq!(again.top_chain_id(), image.top_chain_id());

    // An imported image saves and loads like any other.
    let saved = archive::save(&store, std::slice::from_ref(&name), Vec::new()).expect("save");
    let (_other_root, other) = new_store();
    let loaded = archive::load(&other, saved.as_slice()).expect("load");
    assert_eq!(loaded[0].record, image);

    // Garbage is refused and leaves nothing.
    let (_bad_root, bad) = new_store();
    let error = archive::import(&bad, b"no tar here".as_slice(), &name).expect_err("garbage");
    assert!(error.to_string().contains("layer"), "{error}");
    assert_empty(&bad);
}
