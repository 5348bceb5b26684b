//! Root integration tests of the images issue's test images, pushed to a real loopback registry
//! with flotilla's push and pulled back: the two-layer whiteout image, whose semantics are
//! checked through a real overlay mount of the pulled layers, and the ~100 MB four-layer image.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::images::{
    BIG_LAYER_BYTES, BIG_LAYERS, Overlay, big_image, push_test_image, whiteout_image,
};
use common::registry::Registry;
use flotilla::image::pull::{PullOptions, pull};
use flotilla::image::reference::Reference;
use flotilla::image::store::Store;

#[tokio::test(flavor = "multi_thread")]
async fn whiteouts_are_visible_through_an_overlay_mount() {
    let registry = Registry::start();
    let image = whiteout_image();
    let name =
        Reference::parse(&format!("{}/test/whiteouts:1", registry.host())).expect("reference");
    push_test_image(&image, &name).await;
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let report = pull(&store, &name, &PullOptions::default())
        .await
        .expect("pull");
    assert_eq!(report.unpacked_layers, 2);
    let chain = report.record.chain_ids();
    let (lower, upper) = (store.layer_path(&chain[0]), store.layer_path(&chain[1]));

    // The upper layer holds overlayfs whiteouts, not OCI `.wh.` files.
    let whiteout = fs::symlink_metadata(upper.join("a/x")).expect("a/x whiteout");
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert!(!upper.join("a/.wh.x").exists());
    assert!(!upper.join("b/.wh..wh..opq").exists());

    // Through a real overlay: x deleted, b opaque (y hidden), z added.
    let overlay = Overlay::mount(&[upper, lower]);
    let merged = overlay.path();
    assert!(merged.join("a").is_dir(), "a stays");
    assert!(!merged.join("a/x").exists(), "x is deleted by .wh.x");
    assert!(!merged.join("b/y").exists(), "y is hidden by the opaque b");
    assert_eq!(
        fs::read_to_string(merged.join("b/z")).expect("b/z"),
        "z from layer 2\n"
    );
    let mut listed: Vec<String> = fs::read_dir(merged.join("b"))
        .expect("read b")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["z"]);
    assert!(
        fs::read_dir(merged.join("a"))
            .expect("read a")
            .next()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn big_four_layer_image_pulls() {
    let registry = Registry::start();
    let image = big_image();
    let name = Reference::parse(&format!("{}/test/big:1", registry.host())).expect("reference");
    let pushed = push_test_image(image, &name).await;
    assert_eq!(pushed.pushed_blobs, BIG_LAYERS + 1);
    assert!(pushed.pushed_bytes >= (BIG_LAYERS * BIG_LAYER_BYTES) as u64);
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let report = pull(&store, &name, &PullOptions::default())
        .await
        .expect("pull");
    assert_eq!(report.fetched_blobs, BIG_LAYERS + 1);
    assert!(report.fetched_bytes >= (BIG_LAYERS * BIG_LAYER_BYTES) as u64);
    assert_eq!(report.unpacked_layers, BIG_LAYERS);
    for (i, chain_id) in report.record.chain_ids().iter().enumerate() {
        let part = store.layer_path(chain_id).join(format!("big/part{i}.bin"));
        let size = fs::metadata(&part).expect("layer file").len();
        assert_eq!(size, BIG_LAYER_BYTES as u64, "{}", part.display());
    }
}
