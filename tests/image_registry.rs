//! Root integration tests of pull and push against a real loopback registry (Debian's
//! `docker-registry`), with busybox test images built in the test and pushed by flotilla itself.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::registry::{
    Compress, Flavor, Registry, TestImage, busybox_image, busybox_layer, files_layer,
    image_compressed, image_from_layers, image_with, index_of, index_with,
};
use flotilla::image::pull::{Progress, PullError, PullEvent, PullOptions, pull};
use flotilla::image::push::{PushOptions, push};
use flotilla::image::record;
use flotilla::image::reference::Reference;
use flotilla::image::registry::{self, RegistryOptions};
use flotilla::image::store::Store;

fn reference(registry: &Registry, rest: &str) -> Reference {
    Reference::parse(&format!("{}/{rest}", registry.host())).expect("reference")
}

/// Imports `image` into a scratch store and pushes it to `name` with flotilla's push.
async fn push_image(image: &TestImage, name: &Reference) -> flotilla::image::push::PushReport {
    push_image_with(image, name, &PushOptions::default())
        .await
        .expect("push")
}

async fn push_image_with(
    image: &TestImage,
    name: &Reference,
    options: &PushOptions,
) -> Result<flotilla::image::push::PushReport, flotilla::image::push::PushError> {
    let scratch = tempfile::tempdir().expect("tempdir");
    let store = Store::open(scratch.path()).expect("store");
    image.import(&store, &name.to_string());
    push(&store, name, name, options).await
}

/// Pushes a manifest or index as is (flotilla's push only pushes image records).
async fn push_raw_manifest(target: &Reference, body: Vec<u8>, media_type: &'static str) {
    let client = registry::client_for(target, &RegistryOptions::default());
    let oci_ref = registry::oci_reference(target);
    client
        .auth(
            &oci_ref,
            &oci_client::secrets::RegistryAuth::Anonymous,
            oci_client::RegistryOperation::Push,
        )
        .await
        .expect("auth");
    client
        .push_manifest_raw(&oci_ref, body, http::HeaderValue::from_static(media_type))
        .await
        .expect("push manifest");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_then_pull_round_trip_and_second_pull_fetches_nothing() {
    let registry = Registry::start();
    let image = busybox_image("amd64");
    let name = reference(&registry, "test/busybox:1");
    let pushed = push_image(&image, &name).await;
    assert_eq!(pushed.pushed_blobs, 2, "one layer and the config");
    assert_eq!(pushed.manifest_digest, image.manifest_digest());

    // Pushing again uploads no blob.
    let again = push_image(&image, &name).await;
    assert_eq!((again.pushed_blobs, again.skipped_blobs), (0, 2));

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = PullOptions {
        progress: Some(Progress(std::sync::Arc::new(move |event: &PullEvent| {
            sink.lock().expect("events").push(event.clone());
        }))),
        ..PullOptions::default()
    };
    let report = pull(&store, &name, &options).await.expect("pull");
    assert_eq!(report.fetched_blobs, 2);
    let events = events.lock().expect("events").clone();
    let layer = &image.layer_digests()[0];
    let position = |wanted: &PullEvent| events.iter().position(|e| e == wanted);
    let downloaded = position(&PullEvent::Downloaded {
        blob: layer.clone(),
    })
    .expect("layer downloaded event");
    let unpacked = position(&PullEvent::Unpacked {
        blob: layer.clone(),
    })
    .expect("layer unpacked event");
    assert!(downloaded < unpacked, "{events:?}");
    // The layer unpacks from the bytes as they arrive: unpacking starts before the first byte.
    let unpacking = position(&PullEvent::Unpacking {
        blob: layer.clone(),
    })
    .expect("layer unpacking event");
    let first_bytes = events
        .iter()
        .position(|e| matches!(e, PullEvent::Downloading { blob, .. } if blob == layer))
        .expect("layer download progress");
    assert!(unpacking < first_bytes, "{events:?}");
    let last_bytes = events
        .iter()
        .rev()
        .find_map(|e| match e {
            PullEvent::Downloading {
                blob,
                received,
                total,
            } if blob == layer => Some((*received, *total)),
            _ => None,
        })
        .expect("progress bytes");
    assert_eq!(last_bytes.0, last_bytes.1);
    assert_eq!(report.unpacked_layers, 1);
    let image_record = &report.record;
    assert_eq!(image_record.manifest_digest, image.manifest_digest());
    assert_eq!(image_record.diff_ids(), image.diff_ids);
    assert_eq!(image_record.platform.architecture, "amd64");
    assert_eq!(image_record.config.cmd, Some(vec!["sh".to_string()]));
    assert!(
        image_record
            .config
            .env
            .as_ref()
            .is_some_and(|env| env.contains(&"FLOTILLA_TEST=1".to_string()))
    );
    let top = image_record.top_chain_id().expect("a layer");
    let busybox = store.layer_path(top).join("bin/busybox");
    let mode = fs::metadata(&busybox)
        .expect("bin/busybox")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "bin/busybox is executable");
    let sh = fs::read_link(store.layer_path(top).join("bin/sh")).expect("bin/sh link");
    assert_eq!(sh.to_str(), Some("busybox"));

    // The record is on disk under the name.
    let loaded = record::load(&store, &name.to_string()).expect("record");
    assert_eq!(&loaded, image_record);

    // A second pull transfers no blob and unpacks nothing.
    let gets_before = registry.blob_gets();
    assert!(
        gets_before >= 2,
        "the first pull's blob GETs are in the access log"
    );
    let mtime = fs::metadata(store.blob_path(&image.layer_digests()[0]))
        .and_then(|m| m.modified())
        .expect("blob mtime");
    let second = pull(&store, &name, &PullOptions::default())
        .await
        .expect("second pull");
    assert_eq!((second.fetched_blobs, second.fetched_bytes), (0, 0));
    assert_eq!(second.unpacked_layers, 0);
    assert_eq!(registry.blob_gets(), gets_before, "no blob GET");
    let mtime_after = fs::metadata(store.blob_path(&image.layer_digests()[0]))
        .and_then(|m| m.modified())
        .expect("blob mtime");
    assert_eq!(mtime, mtime_after);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_by_digest() {
    let registry = Registry::start();
    let image = busybox_image("amd64");
    push_image(&image, &reference(&registry, "test/bydigest:1")).await;
    let by_digest = reference(
        &registry,
        &format!("test/bydigest@{}", image.manifest_digest()),
    );
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let report = pull(&store, &by_digest, &PullOptions::default())
        .await
        .expect("pull by digest");
    assert_eq!(report.record.manifest_digest, image.manifest_digest());
    let top = report.record.top_chain_id().expect("a layer");
    assert!(store.layer_path(top).join("bin/busybox").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn index_resolves_to_amd64() {
    let registry = Registry::start();
    let amd64 = busybox_image("amd64");
    let arm64 = busybox_image("arm64");
    push_image(&amd64, &reference(&registry, "test/multi:amd64")).await;
    push_image(&arm64, &reference(&registry, "test/multi:arm64")).await;
    let index = index_of(&[("arm64", &arm64), ("amd64", &amd64)]);
    let multi = reference(&registry, "test/multi:latest");
    push_raw_manifest(&multi, index, record::OCI_INDEX).await;

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let report = pull(&store, &multi, &PullOptions::default())
        .await
        .expect("pull index");
    assert_eq!(report.record.manifest_digest, amd64.manifest_digest());
    assert_eq!(report.record.platform.architecture, "amd64");

    // A platform the index lacks is a clear error naming the reference.
    let mut options = PullOptions::default();
    options.platform.architecture = "s390x".to_string();
    let error = pull(&store, &multi, &options).await.expect_err("no s390x");
    assert!(matches!(error, PullError::NoPlatform { .. }), "{error}");
    assert!(error.to_string().contains("linux/s390x"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_tag_is_a_clear_error() {
    let registry = Registry::start();
    push_image(
        &busybox_image("amd64"),
        &reference(&registry, "test/known:1"),
    )
    .await;
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    for missing in ["test/known:nope", "test/unknown:1"] {
        let missing = reference(&registry, missing);
        let error = pull(&store, &missing, &PullOptions::default())
            .await
            .expect_err("unknown tag");
        assert!(matches!(error, PullError::NotFound { .. }), "{error}");
        assert!(error.to_string().contains(&missing.to_string()), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_blob_is_refused_and_nothing_stored() {
    let registry = Registry::start();
    let image = busybox_image("amd64");
    let name = reference(&registry, "test/corrupt:1");
    push_image(&image, &name).await;
    let layer = &image.layer_digests()[0];
    let data = registry.blob_data_path(layer);
    let mut bytes = fs::read(&data).expect("registry blob data");
    for b in bytes.iter_mut().skip(100).take(64) {
        *b ^= 0xff;
    }
    fs::write(&data, &bytes).expect("corrupt blob");

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("digest mismatch");
    let message = error.to_string();
    assert!(message.contains(&layer.to_string()), "{message}");
    assert!(!store.has_blob(layer), "corrupted blob not stored");
    let top = &image.diff_ids[0];
    assert!(!store.has_layer(&flotilla::image::store::chain_id_next(None, top)));
    assert!(matches!(
        record::load(&store, &name.to_string()),
        Err(record::RecordError::NotFound { .. })
    ));
    let leftovers: Vec<_> = fs::read_dir(store.root().join("tmp"))
        .expect("tmp dir")
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_manifest_list_and_schema2_manifests() {
    let registry = Registry::start();
    let amd64 = image_with(Flavor::Docker, "amd64", vec![busybox_layer()]);
    let arm64 = image_with(Flavor::Docker, "arm64", vec![busybox_layer()]);
    push_image(&amd64, &reference(&registry, "test/docker:amd64")).await;
    push_image(&arm64, &reference(&registry, "test/docker:arm64")).await;
    let list = index_with(Flavor::Docker, &[("arm64", &arm64), ("amd64", &amd64)]);
    let name = reference(&registry, "test/docker:latest");
    push_raw_manifest(&name, list, record::DOCKER_MANIFEST_LIST).await;

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let report = pull(&store, &name, &PullOptions::default())
        .await
        .expect("pull manifest list");
    assert_eq!(report.record.manifest_digest, amd64.manifest_digest());
    assert_eq!(report.record.manifest_media_type, record::DOCKER_MANIFEST);
    let top = report.record.top_chain_id().expect("a layer");
    assert!(store.layer_path(top).join("bin/busybox").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_base_layer_is_neither_fetched_nor_unpacked_again() {
    let registry = Registry::start();
    let base = image_from_layers("amd64", vec![busybox_layer()]);
    let app = image_from_layers(
        "amd64",
        vec![busybox_layer(), files_layer(&[("motd", "hello\n")])],
    );
    let base_name = reference(&registry, "test/base:1");
    let app_name = reference(&registry, "test/app:1");
    push_image(&base, &base_name).await;
    let pushed = push_image(&app, &app_name).await;
    // Every blob is either uploaded or found already there.
    assert_eq!(pushed.pushed_blobs + pushed.skipped_blobs, 3);

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let first = pull(&store, &base_name, &PullOptions::default())
        .await
        .expect("pull base");
    assert_eq!((first.fetched_blobs, first.unpacked_layers), (2, 1));
    let second = pull(&store, &app_name, &PullOptions::default())
        .await
        .expect("pull app");
    assert_eq!(
        (second.fetched_blobs, second.unpacked_layers),
        (2, 1),
        "only the config and the top layer"
    );
    let chain = second.record.chain_ids();
    assert_eq!(chain[0], first.record.chain_ids()[0]);
    assert_eq!(
        chain[1],
        flotilla::image::store::chain_id(&app.diff_ids).expect("chain id")
    );
    let top = store.layer_path(&chain[1]);
    assert_eq!(
        fs::read_to_string(top.join("motd")).expect("motd"),
        "hello\n"
    );
    assert!(
        !top.join("bin/busybox").exists(),
        "a layer holds only its own diff"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_blob_is_refused_and_nothing_stored() {
    let registry = Registry::start();
    let image = busybox_image("amd64");
    let name = reference(&registry, "test/truncated:1");
    push_image(&image, &name).await;
    let layer = &image.layer_digests()[0];
    let data = registry.blob_data_path(layer);
    let bytes = fs::read(&data).expect("registry blob data");
    fs::write(&data, &bytes[..bytes.len() / 2]).expect("truncate blob");

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("truncated blob");
    assert!(error.to_string().contains(&layer.to_string()), "{error}");
    assert!(!store.has_blob(layer));
    assert!(record::load(&store, &name.to_string()).is_err());
    assert_eq!(
        fs::read_dir(store.root().join("tmp")).expect("tmp").count(),
        0,
        "no temporary files left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_down_is_a_clear_error() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let name = Reference::parse(&format!("127.0.0.1:{port}/test/down:1")).expect("reference");
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("registry down");
    let message = error.to_string();
    assert!(matches!(error, PullError::Manifest { .. }), "{message}");
    assert!(message.starts_with(&name.to_string()), "{message}");
    assert!(message.contains("connect"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_uncompressed_layers() {
    let registry = Registry::start();
    let image = image_compressed(
        Flavor::Oci,
        "amd64",
        vec![
            (busybox_layer(), Compress::Zstd),
            (files_layer(&[("plain", "uncompressed\n")]), Compress::None),
        ],
    );
    let name = reference(&registry, "test/compressed:1");
    push_image(&image, &name).await;
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let report = pull(&store, &name, &PullOptions::default())
        .await
        .expect("pull");
    assert_eq!(report.unpacked_layers, 2);
    let chain = report.record.chain_ids();
    assert!(store.layer_path(&chain[0]).join("bin/busybox").is_file());
    assert_eq!(
        fs::read_to_string(store.layer_path(&chain[1]).join("plain")).expect("plain"),
        "uncompressed\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry_needs_credentials() {
    let registry = Registry::start_with_auth("alice", "s3cret");
    let image = busybox_image("amd64");
    let name = reference(&registry, "test/private:1");
    let credentials = RegistryOptions {
        auth: Some(("alice".to_string(), "s3cret".to_string())),
        ..RegistryOptions::default()
    };

    // Without credentials: a clear error naming the reference, for push and pull.
    let error = push_image_with(&image, &name, &PushOptions::default())
        .await
        .expect_err("push without credentials");
    assert!(
        matches!(error, flotilla::image::push::PushError::Unauthorized { .. }),
        "{error}"
    );
    assert!(error.to_string().starts_with(&name.to_string()), "{error}");

    let pushed = push_image_with(
        &image,
        &name,
        &PushOptions {
            registry: credentials.clone(),
            ..PushOptions::default()
        },
    )
    .await
    .expect("push with credentials");
    assert_eq!(pushed.pushed_blobs, 2);

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("pull without credentials");
    let message = error.to_string();
    assert!(message.starts_with(&name.to_string()), "{message}");
    assert!(
        message.contains("401") || message.contains("nauthorized"),
        "{message}"
    );

    let report = pull(
        &store,
        &name,
        &PullOptions {
            registry: credentials,
            ..PullOptions::default()
        },
    )
    .await
    .expect("pull with credentials");
    assert_eq!(report.record.manifest_digest, image.manifest_digest());
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_resumes_from_complete_blobs() {
    let registry = Registry::start();
    let image = busybox_image("amd64");
    let name = reference(&registry, "test/resume:1");
    push_image(&image, &name).await;
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let first = pull(&store, &name, &PullOptions::default())
        .await
        .expect("pull");
    // As if the first pull had stopped after downloading, before unpacking: the blobs are
    // complete, the snapshot is not there.
    let top = first.record.top_chain_id().expect("a layer").clone();
    store.delete_layer(&top).expect("delete layer");
    let gets_before = registry.blob_gets();
    let again = pull(&store, &name, &PullOptions::default())
        .await
        .expect("pull again");
    assert_eq!((again.fetched_blobs, again.unpacked_layers), (0, 1));
    assert_eq!(registry.blob_gets(), gets_before);
    assert!(store.layer_path(&top).join("bin/busybox").is_file());
}
