//! Root integration tests of layer unpacking and the layer store on the real kernel: metadata
//! preservation, compression, whiteouts (also seen through a real overlay mount), and the
//! malicious-archive set, each checked against "host" paths in a tempdir outside the layer root.

use std::fs;
use std::io::{Cursor, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flotilla::image::store::{Digest, Store, StoreError, chain_id};
use flotilla::image::unpack::{UnpackError, UnpackOptions, Unpacked, unpack};
use tar::{EntryType, Header};

const MTIME: u64 = 1_600_000_000;

/// Builds tar archives entry by entry with raw names, so hostile paths can be written as is.
struct Tar {
    builder: tar::Builder<Vec<u8>>,
}

fn raw_header(path: &[u8], kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    assert!(path.len() < 100, "test paths must fit the old name field");
    h.as_old_mut().name[..path.len()].copy_from_slice(path);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n" where len counts the whole record, itself included.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

impl Tar {
    fn new() -> Tar {
        Tar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn append(&mut self, mut h: Header, data: &[u8]) -> &mut Tar {
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, path: &str, mode: u32) -> &mut Tar {
        self.append(
            raw_header(path.as_bytes(), EntryType::Directory, 0, mode),
            b"",
        )
    }

    fn file(&mut self, path: &str, data: &[u8]) -> &mut Tar {
        self.file_mode(path, data, 0o644)
    }

    fn file_mode(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Tar {
        let h = raw_header(path.as_bytes(), EntryType::Regular, data.len() as u64, mode);
        self.append(h, data)
    }

    fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Tar {
        let mut h = raw_header(path.as_bytes(), kind, 0, 0o777);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.append(h, b"")
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.link(EntryType::Symlink, path, target)
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.link(EntryType::Link, path, target)
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let h = raw_header(b"PaxHeader", EntryType::XHeader, data.len() as u64, 0o644);
        self.append(h, &data)
    }

    fn finish(&mut self) -> Vec<u8> {
        self.builder.finish().unwrap();
        std::mem::take(self.builder.get_mut())
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 1).unwrap()
}

/// A tempdir holding a layer root (`root/`) and "host" files outside it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        Sandbox { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Absolute path of a host file outside the layer root.
    fn host(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The host path without its leading '/', for building `../../<host>` escapes.
    fn host_rel(&self, name: &str) -> String {
        let p = self.host(name);
        p.to_str().unwrap().trim_start_matches('/').to_string()
    }

    /// Where an entry aimed at the host path lands when confined: inside the root.
    fn contained(&self, name: &str) -> PathBuf {
        self.root().join(self.host_rel(name))
    }

    fn unpack(&self, data: &[u8]) -> Result<Unpacked, UnpackError> {
        unpack(Cursor::new(data), &self.root(), &UnpackOptions::default())
    }
}

fn sha256_file(path: &Path) -> Digest {
    Digest::sha256_of(&fs::read(path).unwrap())
}

#[test]
fn unpacks_files_dirs_links_and_metadata() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.dir("./", 0o755)
        .dir("etc/", 0o755)
        .file("etc/hosts", b"127.0.0.1 localhost\n")
        .file_mode("usr/bin/tool", b"#!/bin/sh\n", 0o4755)
        .symlink("etc/link", "hosts")
        .symlink("abs", "/etc/hosts")
        .hardlink("etc/hard", "etc/hosts")
        .dir("ro/", 0o555)
        .file("ro/inside", b"x");
    // Ownership and an xattr through PAX, applied to the next entry.
    t.pax(&[
        ("uid", b"1234"),
        ("gid", b"5678"),
        ("mtime", b"1600000000.25"),
        ("SCHILY.xattr.user.flotilla", b"yes"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
    ])
    .file("owned", b"data");
    let mut h = raw_header(b"lnk-owned", EntryType::Symlink, 0, 0o777);
    h.as_old_mut().linkname[..5].copy_from_slice(b"owned");
    h.set_uid(42);
    h.set_gid(43);
    t.append(h, b"");
    let mut h = raw_header(b"dev/null", EntryType::Char, 0, 0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    t.append(h, b"");
    t.append(raw_header(b"fifo", EntryType::Fifo, 0, 0o600), b"");
    let data = t.finish();

    let out = sb.unpack(&data).unwrap();
    assert_eq!(out.diff_id, Digest::sha256_of(&data));
    assert_eq!(out.size, data.len() as u64);

    let root = sb.root();
    assert_eq!(
        fs::read(root.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    let hosts = fs::metadata(root.join("etc/hosts")).unwrap();
    assert_eq!(hosts.mode() & 0o7777, 0o644);
    assert_eq!(hosts.mtime(), MTIME as i64);
    assert_eq!(hosts.nlink(), 2);
    assert_eq!(
        fs::metadata(root.join("etc/hard")).unwrap().ino(),
        hosts.ino()
    );
    assert_eq!(
        fs::read_link(root.join("etc/link")).unwrap(),
        Path::new("hosts")
    );
    assert_eq!(
        fs::read_link(root.join("abs")).unwrap(),
        Path::new("/etc/hosts")
    );
    let tool = fs::metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid kept");
    // Implicit parent directories are created 0755.
    assert_eq!(
        fs::metadata(root.join("usr")).unwrap().mode() & 0o7777,
        0o755
    );
    // Directory mode and mtime are applied after the children were written.
    let ro = fs::metadata(root.join("ro")).unwrap();
    assert_eq!(ro.mode() & 0o7777, 0o555);
    assert_eq!(ro.mtime(), MTIME as i64);
    assert_eq!(
        fs::metadata(root.join("etc")).unwrap().mtime(),
        MTIME as i64
    );

    let owned = fs::metadata(root.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    assert_eq!(
        (owned.mtime(), owned.mtime_nsec()),
        (MTIME as i64, 250_000_000)
    );
    let mut buf = [0u8; 16];
    let n = rustix::fs::getxattr(root.join("owned"), "user.flotilla", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"yes");
    assert!(
        rustix::fs::getxattr(root.join("owned"), "trusted.overlay.opaque", &mut buf).is_err(),
        "a layer must not forge overlay xattrs"
    );
    let lnk = fs::symlink_metadata(root.join("lnk-owned")).unwrap();
    assert_eq!((lnk.uid(), lnk.gid()), (42, 43));
    assert_eq!(lnk.mtime(), MTIME as i64);

    let dev = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(dev.mode() & 0o7777, 0o666);
    let fifo = fs::symlink_metadata(root.join("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o600);
}

#[test]
fn gzip_zstd_and_plain_give_the_same_tree_and_diff_id() {
    let mut t = Tar::new();
    t.dir("a/", 0o755)
        .file("a/b", &vec![7u8; 300_000])
        .file("c", b"");
    let data = t.finish();
    let mut results = Vec::new();
    for (name, stream) in [
        ("plain", data.clone()),
        ("gzip", gzip(&data)),
        ("zstd", zstd(&data)),
    ] {
        let sb = Sandbox::new();
        let out = sb.unpack(&stream).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(fs::read(sb.root().join("a/b")).unwrap(), vec![7u8; 300_000]);
        assert_eq!(fs::read(sb.root().join("c")).unwrap(), b"");
        results.push(out);
    }
    assert!(results.iter().all(|r| r == &results[0]));
    assert_eq!(results[0].diff_id, Digest::sha256_of(&data));
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let sb = Sandbox::new();
    let mut t = Tar::new();
    t.file("gone", b"will be replaced")
        .file(".wh.gone", b"")
        .file(".wh.never-existed", b"")
        .dir("d/", 0o755)
        .file("d/.wh..wh..opq", b"")
        .file("d/kept", b"k")
        .file(".wh..wh.plnk", b"");
    let data = t.finish();
    sb.unpack(&data).unwrap();
    let root = sb.root();
    for name in ["gone", "never-existed"] {
        let m = fs::symlink_metadata(root.join(name)).unwrap();
        assert!(m.file_type().is_char_device(), "{name}");
        assert_eq!(m.rdev(), 0, "{name}");
        assert!(!root.join(format!(".wh.{name}")).exists());
    }
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(root.join("d"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(!root.join("d/.wh..wh..opq").exists());
    assert_eq!(fs::read(root.join("d/kept")).unwrap(), b"k");
    assert!(!root.join(".wh..wh.plnk").exists());
}

/// Unmounts on drop, so a failing assertion never leaves a mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn whiteout_semantics_through_a_real_overlay_mount() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let opts = UnpackOptions::default();

    let mut lower = Tar::new();
    lower
        .file("deleted", b"1")
        .file("kept", b"2")
        .dir("opaque/", 0o755)
        .file("opaque/old", b"3")
        .dir("merged/", 0o755)
        .file("merged/old", b"4");
    let lower = lower.finish();
    let mut upper = Tar::new();
    upper
        .file(".wh.deleted", b"")
        .dir("opaque/", 0o755)
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/new", b"5")
        .dir("merged/", 0o755)
        .file("merged/new", b"6");
    let upper = upper.finish();

    let l1 = store
        .unpack_layer(None, &Digest::sha256_of(&lower), Cursor::new(&lower), &opts)
        .unwrap();
    let l2 = store
        .unpack_layer(
            Some(&l1.chain_id),
            &Digest::sha256_of(&upper),
            Cursor::new(gzip(&upper)),
            &opts,
        )
        .unwrap();
    let diff_ids = [l1.diff_id.clone(), l2.diff_id.clone()];
    assert_eq!(chain_id(&diff_ids).as_ref(), Some(&l2.chain_id));

    let target = dir.path().join("merged-view");
    fs::create_dir(&target).unwrap();
    let options = format!(
        "lowerdir={}:{}",
        store.layer_path(&l2.chain_id).display(),
        store.layer_path(&l1.chain_id).display()
    );
    let options = std::ffi::CString::new(options).unwrap();
    rustix::mount::mount(
        "overlay",
        &target,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        options.as_c_str(),
    )
    .unwrap();
    let _guard = Mounted(target.clone());

    let names = |sub: &str| {
        let mut v: Vec<String> = fs::read_dir(target.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(""), ["kept", "merged", "opaque"]);
    assert_eq!(names("opaque"), ["new"]);
    assert_eq!(names("merged"), ["new", "old"]);
    assert_eq!(fs::read(target.join("kept")).unwrap(), b"2");
    assert!(!target.join("deleted").exists());
}

// ---- the malicious-archive set ------------------------------------------------------------------

#[test]
fn dotdot_escape_is_contained() {
    let sb = Sandbox::new();
    let path = format!("../../../../../../../../{}", sb.host_rel("victim"));
    let data = Tar::new().file(&path, b"pwned").finish();
    sb.unpack(&data).unwrap();
    assert!(!sb.host("victim").exists(), "host written through ..");
    assert_eq!(fs::read(sb.contained("victim")).unwrap(), b"pwned");

    // The literal case from the issue: ../../etc/x lands in <root>/etc/x.
    let sb = Sandbox::new();
    let data = Tar::new().file("../../etc/flotilla-x", b"pwned").finish();
    sb.unpack(&data).unwrap();
    assert!(!Path::new("/etc/flotilla-x").exists());
    assert_eq!(
        fs::read(sb.root().join("etc/flotilla-x")).unwrap(),
        b"pwned"
    );
}

#[test]
fn absolute_path_is_contained() {
    let sb = Sandbox::new();
    let path = sb.host("victim").to_str().unwrap().to_string();
    let data = Tar::new()
        .file(&path, b"pwned")
        .file("/etc/flotilla-abs", b"pwned")
        .finish();
    sb.unpack(&data).unwrap();
    assert!(!sb.host("victim").exists());
    assert!(!Path::new("/etc/flotilla-abs").exists());
    assert_eq!(fs::read(sb.contained("victim")).unwrap(), b"pwned");
    assert_eq!(
        fs::read(sb.root().join("etc/flotilla-abs")).unwrap(),
        b"pwned"
    );
}

#[test]
fn symlink_to_outside_dir_is_never_followed_out() {
    // a -> <host dir> (absolute), then a/victim: IN_ROOT resolves a to <root>/<host dir>, which
    // does not exist in the layer: refused.
    let sb = Sandbox::new();
    let data = Tar::new()
        .symlink("a", sb.dir.path().to_str().unwrap())
        .file("a/victim", b"pwned")
        .finish();
    let err = sb.unpack(&data).unwrap_err();
    assert!(matches!(err, UnpackError::ResolveParent { .. }), "{err}");
    assert!(err.to_string().contains("a/victim"), "{err}");
    assert!(!sb.host("victim").exists());

    // Same, but the layer has that directory: the write lands inside the root.
    let sb = Sandbox::new();
    let host_dir = sb.dir.path().to_str().unwrap().to_string();
    let data = Tar::new()
        .dir(&format!("{}/", host_dir.trim_start_matches('/')), 0o755)
        .symlink("a", &host_dir)
        .file("a/victim", b"pwned")
        .finish();
    sb.unpack(&data).unwrap();
    assert!(!sb.host("victim").exists());
    assert_eq!(fs::read(sb.contained("victim")).unwrap(), b"pwned");
}

#[test]
fn symlink_to_etc_then_passwd_leaves_host_passwd_alone() {
    let before = sha256_file(Path::new("/etc/passwd"));
    let sb = Sandbox::new();
    let data = Tar::new()
        .symlink("a", "/etc")
        .file("a/passwd", b"root::0:0::/:/bin/sh\n")
        .finish();
    assert!(sb.unpack(&data).is_err(), "no etc in the layer: refused");
    assert_eq!(sha256_file(Path::new("/etc/passwd")), before);

    let sb = Sandbox::new();
    let data = Tar::new()
        .dir("etc/", 0o755)
        .symlink("a", "/etc")
        .file("a/passwd", b"root::0:0::/:/bin/sh\n")
        .finish();
    sb.unpack(&data).unwrap();
    assert_eq!(sha256_file(Path::new("/etc/passwd")), before);
    assert_eq!(
        fs::read(sb.root().join("etc/passwd")).unwrap(),
        b"root::0:0::/:/bin/sh\n"
    );
}

#[test]
fn symlink_chain_escape_is_contained() {
    // a -> b, b -> ../../.., then a/<host path>/victim.
    let sb = Sandbox::new();
    let path = format!("a/{}", sb.host_rel("victim"));
    let data = Tar::new()
        .symlink("a", "b")
        .symlink("b", "../../..")
        .file(&path, b"pwned")
        .finish();
    sb.unpack(&data).unwrap();
    assert!(!sb.host("victim").exists());
    assert_eq!(fs::read(sb.contained("victim")).unwrap(), b"pwned");
    // The chain itself is kept as written.
    assert_eq!(
        fs::read_link(sb.root().join("b")).unwrap(),
        Path::new("../../..")
    );
}

#[test]
fn relative_symlink_escape_through_parent_is_contained() {
    // up -> ../../../../../.. (far above the root), then up/<host path>/victim.
    let sb = Sandbox::new();
    let data = Tar::new()
        .symlink("up", "../../../../../../../..")
        .file(&format!("up/{}", sb.host_rel("victim")), b"pwned")
        .finish();
    sb.unpack(&data).unwrap();
    assert!(!sb.host("victim").exists());
    assert!(sb.contained("victim").exists());
}

#[test]
fn existing_symlink_is_replaced_not_followed() {
    let sb = Sandbox::new();
    fs::write(sb.host("victim"), b"original").unwrap();
    let data = Tar::new()
        .symlink("evil", sb.host("victim").to_str().unwrap())
        .file("evil", b"pwned")
        .symlink("evildir", sb.dir.path().to_str().unwrap())
        .dir("evildir/", 0o755)
        .file("evildir/victim", b"pwned")
        .finish();
    sb.unpack(&data).unwrap();
    assert_eq!(fs::read(sb.host("victim")).unwrap(), b"original");
    let evil = fs::symlink_metadata(sb.root().join("evil")).unwrap();
    assert!(evil.file_type().is_file());
    assert_eq!(fs::read(sb.root().join("evil")).unwrap(), b"pwned");
    assert!(
        fs::symlink_metadata(sb.root().join("evildir"))
            .unwrap()
            .is_dir()
    );
}

#[test]
fn hardlink_to_host_files_is_refused() {
    let sb = Sandbox::new();
    fs::write(sb.host("victim"), b"secret").unwrap();
    let shadow_links = fs::metadata("/etc/shadow").map(|m| m.nlink()).ok();

    for target in [
        "/etc/shadow".to_string(),
        "../../../../../../../../etc/shadow".to_string(),
        sb.host("victim").to_str().unwrap().to_string(),
        format!("../../../../../../../../{}", sb.host_rel("victim")),
    ] {
        let data = Tar::new().hardlink("stolen", &target).finish();
        let err = sb.unpack(&data).unwrap_err();
        assert!(
            matches!(err, UnpackError::HardlinkTarget { .. }),
            "{target}: {err}"
        );
        assert!(!sb.root().join("stolen").exists());
    }
    // Through a symlink pointing out of the root.
    let data = Tar::new()
        .symlink("s", sb.dir.path().to_str().unwrap())
        .hardlink("stolen", "s/victim")
        .finish();
    assert!(matches!(
        sb.unpack(&data),
        Err(UnpackError::HardlinkTarget { .. })
    ));
    assert_eq!(fs::metadata(sb.host("victim")).unwrap().nlink(), 1);
    assert_eq!(fs::read(sb.host("victim")).unwrap(), b"secret");
    assert_eq!(
        fs::metadata("/etc/shadow").map(|m| m.nlink()).ok(),
        shadow_links
    );

    // A hardlink to the layer's own /etc/shadow is fine and stays inside.
    let sb = Sandbox::new();
    let data = Tar::new()
        .file("etc/shadow", b"layer")
        .hardlink("stolen", "/etc/shadow")
        .finish();
    sb.unpack(&data).unwrap();
    assert_eq!(fs::read(sb.root().join("stolen")).unwrap(), b"layer");
    assert_eq!(fs::metadata(sb.root().join("stolen")).unwrap().nlink(), 2);
}

/// A GNU sparse entry: `real_size` bytes of which only the last 512 are stored.
fn sparse_tar(name: &str, real_size: u64) -> Vec<u8> {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(512);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.set_real_size(real_size);
    gnu.sparse[0].set_offset(real_size - 512);
    gnu.sparse[0].set_length(512);
    h.set_cksum();
    let mut t = Tar::new();
    t.builder.append(&h, &[b'z'; 512][..]).unwrap();
    t.finish()
}

#[test]
fn one_gigabyte_sparse_file_streams_and_stays_sparse() {
    let sb = Sandbox::new();
    let size = 1u64 << 30;
    let data = sparse_tar("big", size);
    assert!(data.len() < 8192, "the archive itself is tiny");
    let started = Instant::now();
    let out = sb.unpack(&data).unwrap();
    let took = started.elapsed();
    assert!(took.as_secs() < 60, "unpacking 1 GiB sparse took {took:?}");
    assert_eq!(out.diff_id, Digest::sha256_of(&data));
    let m = fs::metadata(sb.root().join("big")).unwrap();
    assert_eq!(m.len(), size);
    assert!(
        m.blocks() * 512 < 16 << 20,
        "file should be sparse, uses {} bytes",
        m.blocks() * 512
    );
    let mut f = fs::File::open(sb.root().join("big")).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(size - 512)).unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, vec![b'z'; 512]);
}

#[test]
fn entry_over_the_size_cap_is_refused_before_reading() {
    let sb = Sandbox::new();
    let data = sparse_tar("big", 1 << 30);
    let options = UnpackOptions {
        max_entry_size: (1 << 30) - 1,
        ..UnpackOptions::default()
    };
    let err = unpack(Cursor::new(&data), &sb.root(), &options).unwrap_err();
    assert!(
        matches!(err, UnpackError::EntryTooLarge { size, .. } if size == 1 << 30),
        "{err}"
    );
    assert!(!sb.root().join("big").exists());

    // A plain entry declaring a terabyte with no data behind it.
    let mut h = raw_header(b"huge", EntryType::Regular, 0, 0o644);
    h.set_size(1 << 40);
    h.set_cksum();
    let data = h.as_bytes().to_vec();
    let err = sb.unpack(&data).unwrap_err();
    assert!(matches!(err, UnpackError::EntryTooLarge { .. }), "{err}");
}

#[test]
fn corrupted_gzip_is_an_error() {
    let mut t = Tar::new();
    t.file(
        "a",
        &(0..200_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let data = gzip(&t.finish());
    let mut corrupt = data.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let sb = Sandbox::new();
    assert!(sb.unpack(&corrupt).is_err(), "flipped bytes must fail");

    let sb = Sandbox::new();
    let truncated = &data[..data.len() - 100];
    assert!(sb.unpack(truncated).is_err(), "truncated gzip must fail");

    // Only the CRC in the trailer is wrong.
    let mut bad_crc = data.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let sb = Sandbox::new();
    assert!(sb.unpack(&bad_crc).is_err(), "bad gzip crc must fail");
}

#[test]
fn truncated_tar_is_an_error() {
    let mut t = Tar::new();
    t.file("a", &[1u8; 4096]).file("b", &[2u8; 4096]);
    let data = t.finish();

    // Cut in the middle of b's data.
    let sb = Sandbox::new();
    let err = sb.unpack(&data[..512 + 4096 + 512 + 1000]).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Truncated {
                expected: 4096,
                actual: 1000,
                ..
            }
        ),
        "{err}"
    );
    // Cut exactly after b: no end-of-archive marker.
    let sb = Sandbox::new();
    let err = sb.unpack(&data[..2 * (512 + 4096)]).unwrap_err();
    assert!(matches!(err, UnpackError::MissingEndMarker), "{err}");
    // Cut in the middle of a header.
    let sb = Sandbox::new();
    assert!(sb.unpack(&data[..512 + 4096 + 100]).is_err());
    // Garbage instead of a header.
    let sb = Sandbox::new();
    let mut garbage = data.clone();
    garbage[10] ^= 0xff;
    assert!(matches!(
        sb.unpack(&garbage),
        Err(UnpackError::ReadArchive { .. })
    ));
}

#[test]
fn unsupported_compression_and_bad_names() {
    let sb = Sandbox::new();
    let err = sb
        .unpack(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2])
        .unwrap_err();
    assert!(
        matches!(err, UnpackError::UnsupportedCompression { format: "xz" }),
        "{err}"
    );
    let data = Tar::new().file("a/..", b"x").finish();
    assert!(matches!(
        sb.unpack(&data),
        Err(UnpackError::InvalidName { .. })
    ));
    let data = Tar::new().file("./", b"x").finish();
    assert!(matches!(
        sb.unpack(&data),
        Err(UnpackError::InvalidName { .. })
    ));
}

#[test]
fn later_entries_replace_earlier_ones() {
    let sb = Sandbox::new();
    let data = Tar::new()
        .dir("x/", 0o755)
        .file("x/inner", b"1")
        .file("x", b"now a file")
        .file("y", b"file")
        .dir("y/", 0o700)
        .symlink("z", "nowhere")
        .symlink("z", "elsewhere")
        .finish();
    sb.unpack(&data).unwrap();
    assert_eq!(fs::read(sb.root().join("x")).unwrap(), b"now a file");
    let y = fs::metadata(sb.root().join("y")).unwrap();
    assert!(y.is_dir());
    assert_eq!(y.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        fs::read_link(sb.root().join("z")).unwrap(),
        Path::new("elsewhere")
    );
}

// ---- the layer store ----------------------------------------------------------------------------

#[test]
fn store_unpacks_once_and_checks_the_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let opts = UnpackOptions::default();
    let data = Tar::new().file("hello", b"world").finish();
    let diff_id = Digest::sha256_of(&data);

    // Wrong diff id: error naming the layer, nothing stored, tmp clean.
    let wrong = Digest::sha256_of(b"something else");
    let err = store
        .unpack_layer(None, &wrong, Cursor::new(&data), &opts)
        .unwrap_err();
    assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&wrong.to_string()), "{err}");
    assert!(!store.has_layer(&wrong));
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        0
    );

    // A corrupt stream: same, nothing half-unpacked counts.
    let err = store
        .unpack_layer(
            None,
            &diff_id,
            Cursor::new(gzip(&data)[..20].to_vec()),
            &opts,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Unpack { .. }), "{err}");
    assert!(!store.has_layer(&diff_id));
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);

    let info = store
        .unpack_layer(None, &diff_id, Cursor::new(&data), &opts)
        .unwrap();
    assert_eq!(info.chain_id, diff_id);
    assert_eq!(info.size, data.len() as u64);
    assert!(store.has_layer(&diff_id));
    assert_eq!(
        fs::read(store.layer_path(&diff_id).join("hello")).unwrap(),
        b"world"
    );
    assert_eq!(store.layer_info(&diff_id).unwrap(), info);

    // Present: the stream is not even read.
    struct Explodes;
    impl Read for Explodes {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("an unpacked layer must not be read again")
        }
    }
    assert_eq!(
        store.unpack_layer(None, &diff_id, Explodes, &opts).unwrap(),
        info
    );

    // A second layer on top gets the OCI chain id.
    let data2 = Tar::new().file(".wh.hello", b"").finish();
    let diff2 = Digest::sha256_of(&data2);
    let info2 = store
        .unpack_layer(Some(&diff_id), &diff2, Cursor::new(zstd(&data2)), &opts)
        .unwrap();
    assert_eq!(
        Some(info2.chain_id.clone()),
        chain_id(&[diff_id.clone(), diff2.clone()])
    );
    assert_eq!(info2.parent.as_ref(), Some(&diff_id));

    store.delete_layer(&info2.chain_id).unwrap();
    assert!(!store.has_layer(&info2.chain_id));
    store.delete_layer(&info2.chain_id).unwrap();
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn half_unpacked_leftovers_do_not_count_and_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // What a crash mid-unpack leaves: a directory under tmp/, never under layers/.
    let crashed = store.root().join("tmp/layer-crashed/diff/usr/lib");
    fs::create_dir_all(&crashed).unwrap();
    fs::write(crashed.join("half"), b"half").unwrap();
    let mut w = store.blob_writer(None).unwrap();
    w.write_all(b"partial").unwrap();
    std::mem::forget(w); // a crash: Drop never runs
    assert_eq!(store.cleanup_tmp().unwrap(), 2);
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn blob_digest_mismatch_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let good = b"layer bytes";
    let digest = Digest::sha256_of(good);
    let err = store.write_blob(b"tampered bytes", &digest).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    // A blob longer than its descriptor says fails while streaming.
    let mut w = store.blob_writer(Some(good.len() as u64)).unwrap();
    assert!(w.write_all(b"layer bytes and more").is_err());
    drop(w);
    let mut w = store.blob_writer(None).unwrap();
    w.write_all(b"layer bytez").unwrap();
    let err = w.commit(&digest).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&digest.to_string()));
    assert!(!store.has_blob(&digest));
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    store.write_blob(good, &digest).unwrap();
    assert!(store.has_blob(&digest));
}

// ---- random hostile archives --------------------------------------------------------------------

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of hostile paths: `..`, the sandbox's own absolute path, names reused by symlinks.
    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_string()),
            Just(".".to_string()),
            Just("a".to_string()),
            Just("b".to_string()),
            Just("victim".to_string()),
            Just("@HOST@".to_string()),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (any::<bool>(), prop::collection::vec(component(), 1..5)).prop_map(|(abs, parts)| {
            let joined = parts.join("/");
            if abs { format!("/{joined}") } else { joined }
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        File(String),
        Dir(String),
        Symlink(String, String),
        Hardlink(String, String),
        Whiteout(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            path().prop_map(Op::File),
            path().prop_map(Op::Dir),
            (path(), path()).prop_map(|(p, t)| Op::Symlink(p, t)),
            (path(), path()).prop_map(|(p, t)| Op::Hardlink(p, t)),
            path().prop_map(Op::Whiteout),
        ]
    }

    fn listing(dir: &Path) -> Vec<(String, u64, Vec<u8>)> {
        let mut out: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = fs::symlink_metadata(e.path()).unwrap();
                let content = if m.is_file() {
                    fs::read(e.path()).unwrap()
                } else {
                    Vec::new()
                };
                // A directory's link count follows its subdirectories (the root's grows).
                let nlink = if m.is_dir() { 0 } else { m.nlink() };
                (e.file_name().into_string().unwrap(), nlink, content)
            })
            .collect();
        out.sort();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn nothing_outside_the_root_changes(ops in prop::collection::vec(op(), 1..12)) {
            let sb = Sandbox::new();
            fs::write(sb.host("victim"), b"original").unwrap();
            let host = sb.host_rel("");
            let host = host.trim_end_matches('/');
            let fill = |s: &str| s.replace("@HOST@", host);
            let before = listing(sb.dir.path());

            let mut t = Tar::new();
            for op in &ops {
                let fits = |s: &str| fill(s).len() < 100;
                match op {
                    Op::File(p) if fits(p) => { t.file(&fill(p), b"pwned"); }
                    Op::Dir(p) if fits(p) => { t.dir(&fill(p), 0o777); }
                    Op::Symlink(p, target) if fits(p) && fits(target) => {
                        t.symlink(&fill(p), &fill(target));
                    }
                    Op::Hardlink(p, target) if fits(p) && fits(target) => {
                        t.hardlink(&fill(p), &fill(target));
                    }
                    Op::Whiteout(p) if fits(p) => {
                        let p = fill(p);
                        let (dir, name) = p.rsplit_once('/').unwrap_or(("", &p));
                        let wh = if dir.is_empty() { format!(".wh.{name}") } else { format!("{dir}/.wh.{name}") };
                        if wh.len() < 100 { t.file(&wh, b""); }
                    }
                    _ => {}
                }
            }
            let data = t.finish();
            let _ = sb.unpack(&data);
            let after = listing(sb.dir.path());
            prop_assert_eq!(before, after);
            prop_assert_eq!(fs::read(sb.host("victim")).unwrap(), b"original");
        }
    }
}
