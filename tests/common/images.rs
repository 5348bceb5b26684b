//! Test images beyond busybox, and the mounts tests look through: a two-layer image with OCI
//! whiteouts (a deleted file and an opaque directory), a ~100 MB image of four layers of
//! incompressible (seeded pseudo-random) data, generated once per test process in memory and
//! never committed, a small layer that is tiny compressed and large unpacked (to fill a disk
//! during unpack), a helper that pushes a test image with flotilla's own push, and guards for a
//! tmpfs and a read-only overlay mount that are unmounted on drop.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flotilla::image::push::{PushOptions, PushReport, push};
use flotilla::image::reference::Reference;
use flotilla::image::store::Store;

use super::registry::{Compress, Flavor, TestImage, image_compressed, image_from_layers};

/// Layers of the big image.
pub const BIG_LAYERS: usize = 4;
/// Bytes of random data in each layer of the big image (4 × 25 MB = 100 MB).
pub const BIG_LAYER_BYTES: usize = 25_000_000;

/// Imports `image` into a scratch store and pushes it to `name` with flotilla's push.
pub async fn push_test_image(image: &TestImage, name: &Reference) -> PushReport {
    let scratch = tempfile::tempdir().expect("tempdir");
    let store = Store::open(scratch.path()).expect("store");
    image.import(&store, &name.to_string());
    push(&store, name, name, &PushOptions::default())
        .await
        .expect("push test image")
}

/// Layer 1: `/a/x` and `/b/y`. Layer 2: deletes `/a/x` (`a/.wh.x`), makes `/b` opaque
/// (`b/.wh..wh..opq`) and adds `/b/z`.
pub fn whiteout_layers() -> (Vec<u8>, Vec<u8>) {
    let mut lower = tar::Builder::new(Vec::new());
    dir(&mut lower, "a/");
    dir(&mut lower, "b/");
    file(&mut lower, "a/x", b"x from layer 1\n");
    file(&mut lower, "b/y", b"y from layer 1\n");
    let mut upper = tar::Builder::new(Vec::new());
    dir(&mut upper, "a/");
    file(&mut upper, "a/.wh.x", b"");
    dir(&mut upper, "b/");
    file(&mut upper, "b/.wh..wh..opq", b"");
    file(&mut upper, "b/z", b"z from layer 2\n");
    (
        lower.into_inner().expect("finish tar"),
        upper.into_inner().expect("finish tar"),
    )
}

/// The two-layer whiteout image (gzip layers, OCI manifest).
pub fn whiteout_image() -> TestImage {
    let (lower, upper) = whiteout_layers();
    image_from_layers("amd64", vec![lower, upper])
}

/// The ~100 MB image: four layers, each one file of pseudo-random (incompressible) bytes, with
/// layers stored as they are (uncompressed; compressing random data gains nothing). Built once
/// per test process.
pub fn big_image() -> &'static TestImage {
    static BIG: OnceLock<TestImage> = OnceLock::new();
    BIG.get_or_init(|| big_image_with(Compress::None))
}

/// The big image with its layers compressed as asked (the benchmark uses gzip, as registries
/// usually serve).
pub fn big_image_with(compress: Compress) -> TestImage {
    let layers = (0..BIG_LAYERS)
        .map(|i| {
            let data = random_bytes(0x5eed_0000 + i as u64, BIG_LAYER_BYTES);
            (
                single_file_layer(&format!("big/part{i}.bin"), &data),
                compress,
            )
        })
        .collect();
    image_compressed(Flavor::Oci, "amd64", layers)
}

/// A layer holding one file of `size` bytes of a repeated non-zero pattern: a few hundred KiB
/// gzipped, `size` bytes once unpacked (zeros would become holes).
pub fn compressible_image(size: usize) -> TestImage {
    let pattern = b"flotilla fills the disk. ";
    let data: Vec<u8> = pattern.iter().copied().cycle().take(size).collect();
    image_from_layers("amd64", vec![single_file_layer("fill.txt", &data)])
}

/// An uncompressed layer tar with one regular file.
pub fn single_file_layer(path: &str, data: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::with_capacity(data.len() + 4096));
    file(&mut tar, path, data);
    tar.into_inner().expect("finish tar")
}

/// `len` pseudo-random bytes from `seed` (splitmix64; fast and deterministic).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    header
}

fn dir(tar: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut header, path, std::io::empty())
        .expect("tar dir");
}

fn file(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = tar_header(tar::EntryType::Regular, 0o644, data.len() as u64);
    tar.append_data(&mut header, path, data).expect("tar file");
}

// --- mounts ---------------------------------------------------------------------------------

/// A tmpfs of a given size on a fresh tempdir, unmounted (lazily, so a busy mount cannot leak)
/// and removed on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tmpfs mount point");
        let data = CString::new(format!("size={size},mode=0755")).expect("mount data");
        rustix::mount::mount(
            "flotilla-test",
            dir.path(),
            "tmpfs",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            data.as_c_str(),
        )
        .expect("mount tmpfs (needs root)");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.dir.path(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// A read-only overlay of `lowers` (top first) on a fresh tempdir, unmounted on drop.
pub struct Overlay {
    dir: tempfile::TempDir,
}

impl Overlay {
    pub fn mount(lowers: &[PathBuf]) -> Overlay {
        assert!(lowers.len() >= 2, "a read-only overlay needs two lowerdirs");
        let dir = tempfile::tempdir().expect("overlay mount point");
        let lowerdir = lowers
            .iter()
            .map(|p| p.to_str().expect("utf-8 layer path"))
            .collect::<Vec<_>>()
            .join(":");
        let data = CString::new(format!("lowerdir={lowerdir}")).expect("mount data");
        rustix::mount::mount(
            "flotilla-test",
            dir.path(),
            "overlay",
            rustix::mount::MountFlags::RDONLY,
            data.as_c_str(),
        )
        .expect("mount overlay (needs root)");
        Overlay { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.dir.path(), rustix::mount::UnmountFlags::DETACH);
    }
}
