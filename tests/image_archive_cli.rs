//! `image save`, `load` and `import` through the real CLI as clients of a real test daemon
//! (tests/common/image_daemon.rs), archives streamed both ways: save to a file and to a pipe,
//! load from a file and from stdin (an archive larger than the API's 1 MiB JSON body limit),
//! import with `--change`; a truncated or garbage archive is one clear error line and leaves
//! nothing in the daemon's store; `save` of an unknown image leaves no file; Ctrl-C of a load
//! whose archive is still arriving exits 130 and the daemon rolls the load back.

mod common;

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::image_daemon::ImageDaemon;

const IMAGE: &str = "flotilla.test/busybox:1";

fn names_in_tar(data: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(data);
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Nothing of an image in the store: no record, no blob, no snapshot, nothing staged.
fn assert_store_empty(d: &ImageDaemon) {
    d.wait_tmp_empty();
    assert_eq!(d.entries("images"), Vec::<String>::new());
    assert_eq!(d.entries("blobs/sha256"), Vec::<String>::new());
    assert_eq!(d.entries("layers"), Vec::<String>::new());
}

fn rootfs_tar() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [("etc/motd", &b"imported\n"[..]), ("hello", &b"world\n"[..])] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(data.len() as u64);
        header.set_mtime(1_600_000_000);
        tar.append_data(&mut header, path, data).expect("entry");
    }
    tar.into_inner().expect("tar")
}

#[test]
fn save_load_import_round_trip() {
    let d = ImageDaemon::start();
    common::daemon::import_busybox(&d.root, IMAGE);
    let id = {
        let inspected: serde_json::Value =
            serde_json::from_str(&d.ok(&["image", "inspect", IMAGE])).expect("inspect");
        inspected[0]["Id"].as_str().expect("Id").to_string()
    };

    // save -o: a complete archive (docker-archive and OCI layout), nothing else beside it.
    let out = d.path().join("out");
    fs::create_dir_all(&out).expect("out dir");
    let file = out.join("busybox.tar");
    d.ok(&["image", "save", "-o", file.to_str().expect("path"), IMAGE]);
    let archive = fs::read(&file).expect("archive");
    let names = names_in_tar(&archive);
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    assert!(names.iter().any(|n| n == "index.json"), "{names:?}");
    assert_eq!(fs::read_dir(&out).expect("out").count(), 1);
    // Larger than a JSON body may be: the upload below must stream.
    assert!(archive.len() > 1 << 20, "{} bytes", archive.len());
    // To a pipe: the same bytes.
    let piped = d.run(&["image", "save", IMAGE]);
    assert!(piped.status.success(), "{piped:?}");
    assert_eq!(piped.stdout.len(), archive.len());

    // An unknown image: one line, and no file (not even a temporary one).
    let missing = out.join("missing.tar");
    let error = d.fails(&[
        "image",
        "save",
        "-o",
        missing.to_str().expect("path"),
        "nothing:1",
    ]);
    assert!(error.contains("no such image"), "{error}");
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert_eq!(fs::read_dir(&out).expect("out").count(), 1);

    // load -i, after the image is gone.
    d.ok(&["rmi", IMAGE]);
    assert_store_empty(&d);
    let loaded = d.ok(&["image", "load", "-i", file.to_str().expect("path")]);
    assert_eq!(loaded, format!("Loaded image: {IMAGE}\n"));
    let inspected: serde_json::Value =
        serde_json::from_str(&d.ok(&["image", "inspect", IMAGE])).expect("inspect");
    assert_eq!(inspected[0]["Id"], id.as_str());

    // load from stdin, quiet.
    d.ok(&["rmi", IMAGE]);
    let mut child = d
        .command(&["image", "load", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn load");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = archive.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().expect("load");
    writer.join().expect("writer").expect("write the archive");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"");
    assert!(d.ok(&["images"]).contains("flotilla.test/busybox"));

    // A truncated archive and a non-archive: one line each, and nothing stored.
    d.ok(&["rmi", IMAGE]);
    let cut = out.join("cut.tar");
    fs::write(&cut, &archive[..archive.len() / 2]).expect("cut");
    let error = d.fails(&["image", "load", "-i", cut.to_str().expect("path")]);
    assert!(error.starts_with("error: load: "), "{error}");
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert_store_empty(&d);
    let garbage = out.join("garbage.tar");
    fs::write(&garbage, "this is not an archive\n".repeat(100)).expect("garbage");
    let error = d.fails(&["image", "load", "-i", garbage.to_str().expect("path")]);
    assert!(error.starts_with("error: load: "), "{error}");
    assert_store_empty(&d);

    // import with changes, from a file and from stdin.
    let rootfs = out.join("rootfs.tar");
    fs::write(&rootfs, rootfs_tar()).expect("rootfs");
    let printed = d.ok(&[
        "image",
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "--change",
        "ENV A=1",
        rootfs.to_str().expect("path"),
        "flotilla.test/imported:1",
    ]);
    assert!(printed.starts_with("sha256:"), "{printed}");
    let inspected: serde_json::Value =
        serde_json::from_str(&d.ok(&["image", "inspect", "flotilla.test/imported:1"]))
            .expect("inspect");
    assert_eq!(inspected[0]["Id"], printed.trim());
    assert_eq!(inspected[0]["Config"]["Cmd"][0], "/bin/sh");
    assert!(
        inspected[0]["Config"]["Env"].to_string().contains("A=1"),
        "{inspected}"
    );
    let mut child = d
        .command(&["image", "import", "-", "flotilla.test/imported:2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&rootfs_tar())
        .expect("write rootfs");
    let output = child.wait_with_output().expect("import");
    assert!(output.status.success(), "{output:?}");
    // A bad change is refused before anything is stored.
    let error = d.fails(&[
        "image",
        "import",
        "-c",
        "BOGUS x",
        rootfs.to_str().expect("path"),
        "flotilla.test/imported:3",
    ]);
    assert!(error.starts_with("error: import: "), "{error}");
    assert!(!d.ok(&["images"]).contains(":3"));
}

#[test]
fn ctrl_c_of_load_exits_130_and_the_daemon_rolls_back() {
    let d = ImageDaemon::start();
    common::daemon::import_busybox(&d.root, IMAGE);
    let file = d.path().join("busybox.tar");
    d.ok(&["image", "save", "-o", file.to_str().expect("path"), IMAGE]);
    let archive = fs::read(&file).expect("archive");
    d.ok(&["rmi", IMAGE]);
    assert_store_empty(&d);

    // The first part of the archive arrives, then nothing: the daemon has staged blobs.
    let mut child = d
        .command(&["image", "load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn load");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&archive[..archive.len() * 3 / 4])
        .expect("write part of the archive");
    stdin.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.entries("tmp").is_empty() {
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "the load ended before Ctrl-C"
        );
        assert!(Instant::now() < deadline, "nothing was staged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the load did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let output = child.wait_with_output().expect("load output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    assert_eq!(stderr.trim(), "load: cancelled");
    assert_store_empty(&d);
    // The daemon is fine: a whole archive loads.
    let loaded = d.ok(&["image", "load", "-i", file.to_str().expect("path")]);
    assert_eq!(loaded, format!("Loaded image: {IMAGE}\n"));
}
