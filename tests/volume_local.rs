//! Named volumes of the `local` driver: create/list/inspect/remove/prune against a real state
//! database in a temporary data root, bind-type driver options, and copy-up of image content.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;

use flotilla::store::Store;
use flotilla::volume::{CopyUp, VolumeError, Volumes};

fn volumes(root: &Path) -> Volumes {
    let store = Arc::new(Store::open(root).unwrap());
    Volumes::new(root, store)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn unused(_: &str) -> Vec<String> {
    Vec::new()
}

fn open_root(path: &Path) -> OwnedFd {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap()
}

#[test]
fn create_list_inspect_remove() {
    let root = tempfile::tempdir().unwrap();
    let vols = volumes(root.path());
    let v = vols
        .create("data", map(&[("app", "web")]), BTreeMap::new())
        .unwrap();
    assert_eq!(v.driver, "local");
    assert_eq!(v.mountpoint, root.path().join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    fs::write(v.mountpoint.join("f"), "x").unwrap();

    // Creating it again returns it unchanged, labels and content included.
    let again = vols
        .create("data", map(&[("other", "1")]), BTreeMap::new())
        .unwrap();
    assert_eq!(again, v);
    assert!(v.mountpoint.join("f").exists());

    vols.create("logs", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    let names = |l: Option<&str>| {
        vols.list(l)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(None), ["data", "logs"]);
    assert_eq!(names(Some("app")), ["data"]);
    assert_eq!(names(Some("app=web")), ["data"]);
    assert!(names(Some("app=db")).is_empty());

    assert_eq!(vols.get("data").unwrap(), v);
    assert_eq!(vols.get(&v.id).unwrap(), v);
    // The records survive a reopen of the store.
    drop(vols);
    let vols = volumes(root.path());
    assert_eq!(vols.get("data").unwrap(), v);

    let removed = vols.remove("data", false, &unused).unwrap().unwrap();
    assert_eq!(removed.id, v.id);
    assert!(!root.path().join("volumes/data").exists());
    let e = vols.get("data").unwrap_err();
    assert!(matches!(e, VolumeError::NotFound { .. }));
    assert_eq!(e.to_string(), "volume \"data\" not found");
    assert!(vols.remove("data", false, &unused).is_err());
    assert!(vols.remove("data", true, &unused).unwrap().is_none());

    // A new volume of the old name starts empty.
    let v2 = vols
        .create("data", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    assert_ne!(v2.id, v.id);
    assert_eq!(fs::read_dir(&v2.mountpoint).unwrap().count(), 0);
    // Nothing but the volume directories is left under volumes/.
    let mut left: Vec<_> = fs::read_dir(root.path().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["data", "logs"]);
}

#[test]
fn bad_names_and_options() {
    let root = tempfile::tempdir().unwrap();
    let vols = volumes(root.path());
    for bad in ["", "-x", ".x", "a/b", "../x", "a b", &"a".repeat(256)] {
        let e = vols
            .create(bad, BTreeMap::new(), BTreeMap::new())
            .unwrap_err();
        assert!(matches!(e, VolumeError::InvalidName { .. }), "{bad:?}: {e}");
    }
    let e = vols
        .create("x", BTreeMap::new(), map(&[("size", "1g")]))
        .unwrap_err();
    assert!(
        e.to_string().starts_with("volume \"x\": driver option"),
        "{e}"
    );
    let e = vols
        .create(
            "x",
            BTreeMap::new(),
            map(&[("type", "nfs"), ("device", ":/x")]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("type=nfs"), "{e}");
    let e = vols
        .create_with_driver("x", "rexray", BTreeMap::new(), BTreeMap::new())
        .unwrap_err();
    assert!(matches!(e, VolumeError::Driver { .. }), "{e}");
    // Nothing was made by the failures.
    assert!(vols.list(None).unwrap().is_empty());
    assert!(!root.path().join("volumes/x").exists());
}

#[test]
fn remove_in_use_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let vols = volumes(root.path());
    let v = vols.create("db", BTreeMap::new(), BTreeMap::new()).unwrap();
    let using = |name: &str| {
        if name == "db" {
            vec!["app-db-1".to_string(), "app-backup-1".to_string()]
        } else {
            Vec::new()
        }
    };
    for force in [false, true] {
        let e = vols.remove("db", force, &using).unwrap_err();
        assert!(matches!(e, VolumeError::InUse { .. }));
        assert_eq!(
            e.to_string(),
            "volume \"db\" is in use by container(s) app-db-1, app-backup-1"
        );
    }
    assert_eq!(vols.get("db").unwrap(), v);
    assert!(v.mountpoint.is_dir());
}

#[test]
fn prune_removes_only_unused() {
    let root = tempfile::tempdir().unwrap();
    let vols = volumes(root.path());
    for name in ["a", "b", "c"] {
        vols.create(name, map(&[("tier", name)]), BTreeMap::new())
            .unwrap();
    }
    let using = |name: &str| {
        if name == "b" {
            vec!["ctr".to_string()]
        } else {
            Vec::new()
        }
    };
    let pruned = vols.prune(Some("tier=a"), &using).unwrap();
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0].name, "a");
    let pruned = vols.prune(None, &using).unwrap();
    assert_eq!(
        pruned.iter().map(|v| &v.name[..]).collect::<Vec<_>>(),
        ["c"]
    );
    let left: Vec<_> = vols
        .list(None)
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(left, ["b"]);
    assert!(!root.path().join("volumes/a").exists());
    assert!(!root.path().join("volumes/c").exists());
}

#[test]
fn bind_type_driver_opts() {
    let root = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("keep"), "k").unwrap();
    let vols = volumes(root.path());
    let device = host.path().to_str().unwrap();
    let opts = map(&[("type", "none"), ("o", "bind"), ("device", device)]);
    let v = vols
        .create("hostdata", BTreeMap::new(), opts.clone())
        .unwrap();
    assert_eq!(v.mountpoint, host.path());
    assert_eq!(v.options, opts);
    assert!(v.is_bind());
    assert_eq!(vols.get("hostdata").unwrap().mountpoint, host.path());

    // The device must exist, be a directory and be absolute.
    let missing = host.path().join("missing");
    let e = vols
        .create(
            "nodev",
            BTreeMap::new(),
            map(&[
                ("type", "none"),
                ("o", "bind"),
                ("device", missing.to_str().unwrap()),
            ]),
        )
        .unwrap_err();
    assert!(matches!(e, VolumeError::Device { .. }), "{e}");
    assert!(
        e.to_string().starts_with("volume \"nodev\": bind device"),
        "{e}"
    );
    let file = host.path().join("keep");
    let e = vols
        .create(
            "filedev",
            BTreeMap::new(),
            map(&[
                ("type", "none"),
                ("o", "bind"),
                ("device", file.to_str().unwrap()),
            ]),
        )
        .unwrap_err();
    assert!(matches!(e, VolumeError::Device { .. }), "{e}");
    for opts in [
        map(&[("type", "none"), ("o", "bind"), ("device", "rel/dir")]),
        map(&[("type", "none"), ("o", "bind")]),
        map(&[("type", "none"), ("device", device)]),
    ] {
        let e = vols.create("bad", BTreeMap::new(), opts).unwrap_err();
        assert!(matches!(e, VolumeError::Option { .. }), "{e}");
    }
    assert_eq!(vols.list(None).unwrap().len(), 1);

    // Removal forgets the volume but never touches the host directory.
    vols.remove("hostdata", false, &unused).unwrap();
    assert_eq!(fs::read_to_string(host.path().join("keep")).unwrap(), "k");
}

/// An image root with `/data` holding a file, a subdirectory, a relative symlink and a symlink
/// to the host's `/etc`.
fn image(root: &Path) {
    let data = root.join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("conf"), "hello").unwrap();
    fs::set_permissions(data.join("conf"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(data.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(data.join("sub/run.sh"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(data.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("conf", data.join("link")).unwrap();
    symlink("/etc", data.join("etc")).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o770)).unwrap();
    // A path that leaves the image through a symlink.
    symlink("/etc", root.join("escape")).unwrap();
    let old = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
    };
    for p in ["data/conf", "data/sub", "data"] {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            root.join(p),
            &old,
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
    }
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(data.join("conf"), Some(1234), Some(5678)).unwrap();
    }
}

#[test]
fn copy_up_fills_an_empty_volume() {
    let root = tempfile::tempdir().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    image(rootfs.path());
    let vols = volumes(root.path());
    let v = vols
        .create("app", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    let fd = open_root(rootfs.path());

    assert_eq!(
        flotilla::volume::copy_up(&v, fd.as_fd(), "/data").unwrap(),
        CopyUp::Copied
    );
    let m = &v.mountpoint;
    assert_eq!(fs::read_to_string(m.join("conf")).unwrap(), "hello");
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&m.join("conf")), 0o640);
    assert_eq!(mode(&m.join("sub")), 0o750);
    assert_eq!(mode(&m.join("sub/run.sh")), 0o4755);
    // The volume's root takes the image directory's mode.
    assert_eq!(mode(m), 0o770);
    assert_eq!(fs::read_link(m.join("link")).unwrap(), Path::new("conf"));
    // Copied as a symlink, never followed: the host's /etc is not in the volume.
    assert!(
        fs::symlink_metadata(m.join("etc"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_link(m.join("etc")).unwrap(), Path::new("/etc"));
    let mtime = |p: &Path| fs::symlink_metadata(p).unwrap().mtime();
    assert_eq!(mtime(&m.join("conf")), 1_000_000_000);
    assert_eq!(mtime(&m.join("sub")), 1_000_000_000);
    assert_eq!(mtime(m), 1_000_000_000);
    if rustix::process::geteuid().is_root() {
        let meta = fs::metadata(m.join("conf")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    }

    // A second copy-up finds the volume not empty and changes nothing.
    fs::write(m.join("conf"), "changed").unwrap();
    fs::remove_file(m.join("link")).unwrap();
    assert_eq!(
        flotilla::volume::copy_up(&v, fd.as_fd(), "/data").unwrap(),
        CopyUp::NotEmpty
    );
    assert_eq!(fs::read_to_string(m.join("conf")).unwrap(), "changed");
    assert!(!m.join("link").exists());
}

#[test]
fn copy_up_does_nothing_to_a_non_empty_volume() {
    let root = tempfile::tempdir().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    image(rootfs.path());
    let vols = volumes(root.path());
    let v = vols
        .create("used", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    fs::write(v.mountpoint.join("mine"), "data").unwrap();
    let fd = open_root(rootfs.path());
    assert_eq!(
        flotilla::volume::copy_up(&v, fd.as_fd(), "/data").unwrap(),
        CopyUp::NotEmpty
    );
    let names: Vec<_> = fs::read_dir(&v.mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mine"]);
}

#[test]
fn copy_up_stays_inside_the_image() {
    let root = tempfile::tempdir().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    image(rootfs.path());
    let vols = volumes(root.path());
    let v = vols
        .create("conf", BTreeMap::new(), BTreeMap::new())
        .unwrap();
    let fd = open_root(rootfs.path());
    // `/escape` → `/etc` resolves inside the image root, which has no /etc: nothing to copy,
    // and the host's /etc is never read.
    for path in ["/escape", "/../../etc", "/missing", "/data/conf"] {
        assert_eq!(
            flotilla::volume::copy_up(&v, fd.as_fd(), path).unwrap(),
            CopyUp::NothingInImage,
            "{path}"
        );
    }
    assert_eq!(fs::read_dir(&v.mountpoint).unwrap().count(), 0);
    // `..` is clamped at the image root: `/../data` is the image's /data.
    assert_eq!(
        flotilla::volume::copy_up(&v, fd.as_fd(), "/../data").unwrap(),
        CopyUp::Copied
    );
    assert!(v.mountpoint.join("conf").is_file());
}
