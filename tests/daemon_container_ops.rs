//! The container endpoints beyond the lifecycle, through the real daemon's socket (root):
//! restart, top, stats (one sample and the stream), archive (GET and PUT tar streams, running
//! and stopped containers, a symlink planted in the container never leading out of it), commit
//! (the new image runs), and what create takes for `container run` (binds, tmpfs, capabilities,
//! host network, auto_remove with a late wait), each with its bad inputs and their stable codes.
//!
//! Each test starts `flotilla daemon` on its own data root (holding busybox), socket and config
//! (`[dns] upstreams = []`); the cgroup prefix is derived from the root. On drop the daemon is
//! killed by pid, then what its containers left (shims and processes by pid from their state
//! files, cgroups, mounts) before the root is removed.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla::api::client::{Client, ClientError, LogsQuery};
use flotilla::api::host::Host;
use flotilla::api::types::{
    Bind, ContainerCommit, ContainerCreate, ContainerStatus, ErrorCode, Tmpfs,
};
use flotilla::runtime::lifecycle::{self, Runtime};
use flotilla::runtime::state;
use flotilla::runtime::sys::cgroup::{self, Cgroup};
use http::{Method, StatusCode};

const IMAGE: &str = "flotilla.test/ops-busybox:1";
const TIMEOUT: Duration = Duration::from_secs(60);

struct Daemon {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    socket: PathBuf,
    prefix: String,
}

impl Daemon {
    fn start() -> Daemon {
        assert!(
            rustix::process::geteuid().is_root(),
            "the daemon container tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("flt-do-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        common::daemon::import_busybox(&root, IMAGE);
        fs::write(dir.path().join("daemon.toml"), "[dns]\nupstreams = []\n").unwrap();
        let prefix = Runtime::new(&root).unwrap().prefix().to_string();
        let socket = dir.path().join("run/flotilla.sock");
        let child = common::daemon::spawn(
            &root,
            &socket,
            &dir.path().join("daemon.toml"),
            &dir.path().join("daemon.log"),
            TIMEOUT,
        );
        Daemon {
            child: Some(child),
            dir: Some(dir),
            root,
            socket,
            prefix,
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn client(&self) -> Client {
        Client::new(Host::Unix(self.socket.clone()), None)
    }

    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    fn state_dirs(&self) -> Vec<String> {
        fs::read_dir(self.containers_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for id in self.state_dirs() {
            if let Ok(st) = state::read(&self.containers_dir().join(&id)) {
                for pid in [st.shim_pid, st.pid].into_iter().flatten() {
                    if let Some(p) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    }
                }
            }
            if let Ok(cg) = Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&self.prefix))) {
                let _ = cg.destroy(true);
            }
        }
        let _ = cgroup::cleanup_prefix(&self.prefix);
        for m in lifecycle::mounts_under(&self.root).iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spec(name: &str, args: &[&str]) -> ContainerCreate {
    ContainerCreate {
        name: Some(name.into()),
        image: IMAGE.into(),
        command: Some(args.iter().map(|s| s.to_string()).collect()),
        ..ContainerCreate::default()
    }
}

fn code(e: ClientError) -> ErrorCode {
    e.code().unwrap_or_else(|| panic!("not an API error: {e}"))
}

async fn logs(client: &Client, id: &str) -> String {
    let mut s = client
        .container_logs(id, &LogsQuery::default())
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(l) = s.next().await {
        text.push_str(&l.unwrap().log);
    }
    text
}

/// Waits until `cmd` in container `id` has made `path` (polled through the archive).
async fn until_exists(client: &Client, id: &str, path: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while client.archive_get(id, path).await.is_err() {
        assert!(Instant::now() < deadline, "{path} never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The entries (path → content) of a tar.
fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

fn tar_of(files: &[(&str, &[u8])]) -> Bytes {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    Bytes::from(b.into_inner().unwrap())
}

#[test]
fn restart_top_and_stats() {
    let d = Daemon::start();
    let client = d.client();
    rt().block_on(async {
        let mut s = spec("ticker", &["sh", "-c", "while true; do sleep 0.1; done"]);
        s.memory = Some(64 << 20);
        s.stop_timeout = Some(1);
        let c = client.create_container(&s).await.unwrap();
        // top and stats of a created container: 409 and zeros.
        assert_eq!(
            code(client.top_container("ticker").await.unwrap_err()),
            ErrorCode::Conflict
        );
        let st = client.container_stats("ticker").await.unwrap();
        assert_eq!((st.pids, st.memory_usage), (0, 0));
        let c1 = client.start_container(&c.id).await.unwrap();
        let pid1 = c1.state.pid.unwrap();

        let top = client.top_container("ticker").await.unwrap();
        assert_eq!(top.titles[1], "PID");
        assert!(
            top.processes.iter().any(|p| p[1] == pid1.to_string()),
            "{top:?}"
        );
        assert!(top.processes.iter().all(|p| p.len() == top.titles.len()));

        let st = client.container_stats("ticker").await.unwrap();
        assert_eq!(st.id, c.id);
        assert_eq!(st.name, "ticker");
        assert_eq!(st.memory_limit, 64 << 20);
        assert!(st.pids >= 1 && st.memory_usage > 0, "{st:?}");
        assert!(st.cpu_usage_ns > 0);
        // The stream: a sample a second, cpu counter never going back.
        let mut stream = client.container_stats_stream("ticker").await.unwrap();
        let a = stream.next().await.unwrap().unwrap();
        let b = stream.next().await.unwrap().unwrap();
        assert!(b.cpu_usage_ns >= a.cpu_usage_ns && b.read > a.read);
        drop(stream);
        let (status, body) = client
            .raw(Method::GET, "/v1/containers/ticker/stats?bogus=1", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");

        // restart: a new PID 1, running again.
        let c2 = client.restart_container("ticker", Some(1)).await.unwrap();
        assert_eq!(c2.state.status, ContainerStatus::Running);
        assert_ne!(c2.state.pid, Some(pid1));
        // Of a stopped container: it starts.
        client.stop_container("ticker", Some(0)).await.unwrap();
        let c3 = client.restart_container("ticker", None).await.unwrap();
        assert_eq!(c3.state.status, ContainerStatus::Running);
        for e in [
            client.restart_container("nosuch", None).await.unwrap_err(),
            client.top_container("nosuch").await.unwrap_err(),
            client.container_stats("nosuch").await.unwrap_err(),
        ] {
            assert_eq!(code(e), ErrorCode::NotFound);
        }
        client.remove_container(&c.id, true).await.unwrap();
    });
    assert!(d.state_dirs().is_empty());
}

#[test]
fn archive_out_and_in_running_and_stopped() {
    let d = Daemon::start();
    let client = d.client();
    rt().block_on(async {
        let c = client
            .create_container(&spec(
                "box",
                &[
                    "sh",
                    "-c",
                    "echo inside > /tmp/made; busybox mkdir -p /etc /tmp/dir/sub; \
                     echo deep > /tmp/dir/sub/f; busybox ln -s /etc /tmp/escape; sleep 1000",
                ],
            ))
            .await
            .unwrap();
        client.start_container(&c.id).await.unwrap();
        until_exists(&client, "box", "/tmp/escape").await;

        // Out: one top-level entry named as the path's last component.
        let tar = client.archive_get("box", "/tmp/made").await.unwrap();
        assert_eq!(entries(&tar), [("made".to_string(), b"inside\n".to_vec())]);
        let tar = client.archive_get("box", "/tmp/dir").await.unwrap();
        let e = entries(&tar);
        assert!(
            e.iter()
                .any(|(p, data)| p == "dir/sub/f" && data == b"deep\n"),
            "{:?}",
            e.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        // In: into an existing directory under the entry's own name.
        client
            .archive_put("box", "/tmp", tar_of(&[("up.txt", b"uploaded\n")]))
            .await
            .unwrap();
        let tar = client.archive_get("box", "/tmp/up.txt").await.unwrap();
        assert_eq!(entries(&tar)[0].1, b"uploaded\n");
        // A new name for a single entry.
        client
            .archive_put("box", "/tmp/renamed", tar_of(&[("x", b"renamed\n")]))
            .await
            .unwrap();
        let tar = client.archive_get("box", "/tmp/renamed").await.unwrap();
        assert_eq!(
            entries(&tar)[0],
            ("renamed".to_string(), b"renamed\n".to_vec())
        );
        // A symlink planted in the container resolves inside it.
        client
            .archive_put("box", "/tmp/escape", tar_of(&[("planted", b"p\n")]))
            .await
            .unwrap();
        assert!(!Path::new("/etc/planted").exists());
        let tar = client.archive_get("box", "/etc/planted").await.unwrap();
        assert_eq!(entries(&tar)[0].1, b"p\n");

        // Bad input: missing path, missing query, not a tar, missing parent, no container.
        assert_eq!(
            code(client.archive_get("box", "/nosuch").await.unwrap_err()),
            ErrorCode::NotFound
        );
        let (status, _) = client
            .raw(Method::GET, "/v1/containers/box/archive", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let e = client
            .archive_put("box", "/tmp", Bytes::from_static(b"not a tar at all"))
            .await
            .unwrap_err();
        assert_eq!(code(e), ErrorCode::BadRequest);
        let e = client
            .archive_put("box", "/no/such/dir/x", tar_of(&[("f", b"f")]))
            .await
            .unwrap_err();
        assert_eq!(code(e), ErrorCode::NotFound);
        assert_eq!(
            code(client.archive_get("nosuch", "/").await.unwrap_err()),
            ErrorCode::NotFound
        );

        // A streamed upload: whole, it lands; cut by an error, nothing is made.
        let tar = tar_of(&[("streamed.txt", &[b'x'; 200_000][..])]);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let chunks: Vec<Bytes> = tar.chunks(32 * 1024).map(Bytes::copy_from_slice).collect();
        tokio::spawn(async move {
            for c in chunks {
                tx.send(Ok(c)).await.unwrap();
            }
        });
        client.archive_put_stream("box", "/tmp", rx).await.unwrap();
        let got = client
            .archive_get("box", "/tmp/streamed.txt")
            .await
            .unwrap();
        assert_eq!(entries(&got)[0].1.len(), 200_000);
        let tar = tar_of(&[("cut.txt", &[b'y'; 200_000][..])]);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let half = Bytes::copy_from_slice(&tar[..100_000]);
        tokio::spawn(async move {
            tx.send(Ok(half)).await.unwrap();
            let _ = tx.send(Err(std::io::Error::other("cut"))).await;
        });
        assert!(client.archive_put_stream("box", "/tmp", rx).await.is_err());
        assert_eq!(
            code(client.archive_get("box", "/tmp/cut.txt").await.unwrap_err()),
            ErrorCode::NotFound
        );

        // Stopped: through its layers and upper dir.
        client.stop_container("box", Some(0)).await.unwrap();
        let tar = client.archive_get("box", "/tmp/up.txt").await.unwrap();
        assert_eq!(entries(&tar)[0].1, b"uploaded\n");
        let tar = client.archive_get("box", "/bin/busybox").await.unwrap();
        assert!(entries(&tar)[0].1.len() > 100_000);
        client
            .archive_put("box", "/stopped.txt", tar_of(&[("s", b"stopped\n")]))
            .await
            .unwrap();
        let tar = client.archive_get("box", "/stopped.txt").await.unwrap();
        assert_eq!(entries(&tar)[0].1, b"stopped\n");
        client.remove_container(&c.id, true).await.unwrap();
    });
    // No staging files and no mounts are left.
    let staged: Vec<_> = fs::read_dir(d.root.join("cp"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    assert!(lifecycle::mounts_under(&d.root).is_empty());
    assert!(d.state_dirs().is_empty());
}

#[test]
fn commit_makes_an_image() {
    let d = Daemon::start();
    let client = d.client();
    rt().block_on(async {
        let c = client
            .create_container(&spec(
                "src",
                &["sh", "-c", "echo committed > /hello; sleep 1000"],
            ))
            .await
            .unwrap();
        client.start_container(&c.id).await.unwrap();
        until_exists(&client, "src", "/hello").await;
        let bad = |reference: &str, changes: &[&str]| ContainerCommit {
            reference: reference.into(),
            changes: changes.iter().map(|c| c.to_string()).collect(),
            pause: true,
            ..ContainerCommit::default()
        };
        let e = client
            .commit_container("src", &bad("Not A Reference!", &[]))
            .await
            .unwrap_err();
        assert_eq!(code(e), ErrorCode::BadRequest);
        let e = client
            .commit_container("src", &bad("flotilla.test/x:1", &["FROBNICATE x"]))
            .await
            .unwrap_err();
        assert_eq!(code(e), ErrorCode::BadRequest);
        let e = client
            .commit_container("nosuch", &bad("flotilla.test/x:1", &[]))
            .await
            .unwrap_err();
        assert_eq!(code(e), ErrorCode::NotFound);

        let made = client
            .commit_container(
                "src",
                &bad("flotilla.test/committed:1", &["CMD [\"cat\", \"/hello\"]"]),
            )
            .await
            .unwrap();
        assert!(made.id.starts_with("sha256:"), "{made:?}");
        assert!(made.name.ends_with("flotilla.test/committed:1"), "{made:?}");
        // Still running: the pause of the commit was undone.
        let src = client.inspect_container("src").await.unwrap();
        assert_eq!(src.state.status, ContainerStatus::Running);
        assert_eq!(
            client
                .inspect_image("flotilla.test/committed:1")
                .await
                .unwrap()
                .id,
            made.id
        );
        let run = client
            .create_container(&ContainerCreate {
                name: Some("run".into()),
                image: "flotilla.test/committed:1".into(),
                ..ContainerCreate::default()
            })
            .await
            .unwrap();
        client.start_container(&run.id).await.unwrap();
        assert_eq!(client.wait_container(&run.id).await.unwrap().exit_code, 0);
        assert_eq!(logs(&client, &run.id).await, "committed\n");
        client.remove_container(&run.id, true).await.unwrap();
        client.remove_container(&c.id, true).await.unwrap();
    });
}

#[test]
fn create_takes_mounts_caps_host_network_and_auto_remove() {
    let d = Daemon::start();
    let client = d.client();
    let shared = d.path().join("shared");
    fs::create_dir_all(&shared).unwrap();
    fs::write(shared.join("in.txt"), "from host\n").unwrap();
    rt().block_on(async {
        let mut s = spec(
            "mounts",
            &[
                "sh",
                "-c",
                "cat /data/in.txt; echo out > /data/out.txt; grep -c ' /scratch tmpfs' \
                 /proc/mounts; grep CapBnd /proc/self/status",
            ],
        );
        s.binds = vec![Bind {
            source: shared.display().to_string(),
            target: "/data".into(),
            read_only: false,
        }];
        s.tmpfs = vec![Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
            mode: None,
        }];
        s.cap_drop = vec!["ALL".into()];
        let c = client.create_container(&s).await.unwrap();
        client.start_container(&c.id).await.unwrap();
        assert_eq!(client.wait_container(&c.id).await.unwrap().exit_code, 0);
        let text = logs(&client, &c.id).await;
        assert!(text.starts_with("from host\n1\n"), "{text}");
        assert!(text.contains("CapBnd:\t0000000000000000"), "{text}");
        assert_eq!(fs::read_to_string(shared.join("out.txt")).unwrap(), "out\n");
        let doc = client
            .inspect_container("mounts")
            .await
            .unwrap()
            .details
            .unwrap();
        assert_eq!(doc["Mounts"][0]["Destination"], "/data");
        assert!(doc["HostConfig"]["Tmpfs"]["/scratch"].is_string(), "{doc}");
        client.remove_container(&c.id, false).await.unwrap();

        // The host's network namespace.
        let mut s = spec("hostnet", &["sh", "-c", "readlink /proc/1/ns/net"]);
        s.network = Some("host".into());
        let c = client.create_container(&s).await.unwrap();
        client.start_container(&c.id).await.unwrap();
        client.wait_container(&c.id).await.unwrap();
        let mine = fs::read_link("/proc/self/ns/net").unwrap();
        assert_eq!(logs(&client, &c.id).await.trim(), mine.to_string_lossy());
        client.remove_container(&c.id, false).await.unwrap();

        // Bad mounts and networks: 400 naming the field, nothing created.
        for (what, s) in [
            ("relative bind", {
                let mut s = spec("bad", &["true"]);
                s.binds = vec![Bind {
                    source: "rel/dir".into(),
                    target: "/x".into(),
                    read_only: false,
                }];
                s
            }),
            ("missing bind", {
                let mut s = spec("bad", &["true"]);
                s.binds = vec![Bind {
                    source: "/nonexistent/flotilla/dir".into(),
                    target: "/x".into(),
                    read_only: false,
                }];
                s
            }),
            ("relative tmpfs", {
                let mut s = spec("bad", &["true"]);
                s.tmpfs = vec![Tmpfs {
                    target: "x".into(),
                    ..Tmpfs::default()
                }];
                s
            }),
        ] {
            let e = client.create_container(&s).await.unwrap_err();
            assert_eq!(code(e), ErrorCode::BadRequest, "{what}");
        }
        // A network that does not exist (bridge networks are containers' to join now).
        let mut s = spec("bad", &["true"]);
        s.network = Some("bridge0".into());
        let e = client.create_container(&s).await.unwrap_err();
        assert_eq!(code(e), ErrorCode::NotFound, "network");
        assert!(d.state_dirs().is_empty());

        // auto_remove: gone after its exit, its exit code still told to a late wait.
        let mut s = spec("auto", &["sh", "-c", "echo bye; exit 3"]);
        s.auto_remove = true;
        let c = client.create_container(&s).await.unwrap();
        client.start_container(&c.id).await.unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while client.inspect_container(&c.id).await.is_ok() {
            assert!(Instant::now() < deadline, "never removed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(client.wait_container(&c.id).await.unwrap().exit_code, 3);
        assert_eq!(client.wait_container("auto").await.unwrap().exit_code, 3);
        // A failed start of an auto-remove container removes it too.
        let mut s = spec("auto2", &["no-such-command"]);
        s.auto_remove = true;
        let c = client.create_container(&s).await.unwrap();
        let e = client.start_container(&c.id).await.unwrap_err();
        assert_eq!(code(e), ErrorCode::BadRequest);
        assert_eq!(client.wait_container(&c.id).await.unwrap().exit_code, 127);
        assert!(client.inspect_container(&c.id).await.is_err());
        // An auto-remove container's root is a volatile overlay (no sync of the host
        // filesystem when it is unmounted at exit); any other's is not.
        for (name, auto) in [("vol1", true), ("vol2", false)] {
            let mut s = spec(name, &["true"]);
            s.auto_remove = auto;
            let c = client.create_container(&s).await.unwrap();
            let text =
                fs::read_to_string(d.containers_dir().join(&c.id).join("config.json")).unwrap();
            let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
            let volatile = &spec["annotations"][flotilla::runtime::config::ANNOTATION_VOLATILE];
            assert_eq!(
                volatile.as_str() == Some("true"),
                auto,
                "{name}: {volatile}"
            );
            client.remove_container(&c.id, true).await.unwrap();
        }
    });
    assert!(d.state_dirs().is_empty());
}
