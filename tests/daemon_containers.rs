//! Containers and images through the real daemon (root): every test starts `flotilla daemon`
//! with its own data root (holding a one-layer busybox image), socket and cgroup prefix (derived
//! from the root), talks to it through the typed client, and on drop kills the daemon by pid
//! and then whatever its containers left (shims and processes by pid from their state files,
//! cgroups, mounts) before removing the root.
//!
//! Covered: the contract of every container endpoint and of the image endpoints; 100 concurrent
//! clients creating, starting, waiting for and removing containers, leaving nothing behind;
//! `kill -9` of the daemon with running containers, a container that exits while no daemon
//! runs, a container whose shim is killed, and a half-created container, then a restart: the
//! running ones still run and still log, the exited one reports its code (and its `die`
//! event), the shim-less one is exited 255, the half-made one is gone; events with exit codes.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use flotilla::api::client::{Autostart, Client, EventsQuery, LogsQuery, connect_or_start};
use flotilla::api::host::Host;
use flotilla::api::types::{ContainerCreate, ContainerStatus, ErrorCode, Event, ImagePull};
use flotilla::engine::events::EventFilter;
use flotilla::runtime::lifecycle::{self, Runtime};
use flotilla::runtime::state::{self, Status};
use flotilla::runtime::sys::cgroup::{self, Cgroup};
use http::Method;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const IMAGE: &str = "flotilla.test/busybox:latest";
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
            .prefix("flt-dc-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        common::daemon::import_busybox(&root, IMAGE);
        fs::write(dir.path().join("daemon.toml"), "").unwrap();
        let prefix = Runtime::new(&root).unwrap().prefix().to_string();
        let mut d = Daemon {
            child: None,
            socket: dir.path().join("run/flotilla.sock"),
            dir: Some(dir),
            root,
            prefix,
        };
        d.spawn();
        d
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn spawn(&mut self) {
        self.child = Some(common::daemon::spawn(
            &self.root,
            &self.socket,
            &self.path().join("daemon.toml"),
            &self.path().join("daemon.log"),
            TIMEOUT,
        ));
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::new(Host::Unix(self.socket.clone()), None)
    }

    /// `kill -9` of the daemon.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Container state dirs present.
    fn state_dirs(&self) -> Vec<String> {
        fs::read_dir(self.containers_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    }

    /// Child cgroups under this daemon's prefix, in any hierarchy.
    fn cgroups(&self) -> Vec<PathBuf> {
        let top = cgroup::prefix_dir(&self.prefix);
        let mut out = Vec::new();
        for base in ["/sys/fs/cgroup".to_string()].into_iter().chain(
            fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().display().to_string()),
        ) {
            let dir = Path::new(&base).join(&top);
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        out
    }
}

/// Processes (other than the daemon) whose command line names this data root: shims.
fn processes_of(root: &Path, except: Option<u32>) -> Vec<u32> {
    let needle = root.display().to_string();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Some(*pid) != except)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        for id in self.state_dirs() {
            let dir = self.containers_dir().join(&id);
            if let Ok(st) = state::read(&dir) {
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
        .worker_threads(4)
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

fn now_secs() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// The logged events of container `id` up to now.
async fn events_of(client: &Client, since: &str, id: &str) -> Vec<Event> {
    let mut filters = EventFilter::default();
    filters.add("id", id).unwrap();
    let q = EventsQuery {
        since: Some(since.into()),
        until: Some(now_secs()),
        filters,
    };
    let mut s = client.events_with(&q).await.unwrap();
    let mut out = Vec::new();
    while let Some(e) = s.next().await {
        out.push(e.unwrap());
    }
    out
}

async fn logs_text(client: &Client, id: &str, q: &LogsQuery) -> String {
    let mut s = client.container_logs(id, q).await.unwrap();
    let mut text = String::new();
    while let Some(l) = s.next().await {
        text.push_str(&l.unwrap().log);
    }
    text
}

async fn wait_for_log(client: &Client, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = logs_text(client, id, &LogsQuery::default()).await;
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn container_endpoints_follow_the_contract() {
    let d = Daemon::start();
    let since = now_secs();
    rt().block_on(async {
        let c = d.client();
        // create
        let web = c
            .create_container(&spec(
                "web",
                &["sh", "-c", "echo hello; echo oops >&2; sleep 1000"],
            ))
            .await
            .unwrap();
        assert_eq!(web.name, "web");
        assert_eq!(web.state.status, ContainerStatus::Created);
        assert_eq!(web.image.as_deref(), Some(IMAGE));
        let e = c
            .create_container(&spec("web", &["true"]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        let mut bad = spec("x", &["true"]);
        bad.image = "flotilla.test/nope:1".into();
        let e = c.create_container(&bad).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
        let e = c
            .create_container(&spec("-bad", &["true"]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
        let (status, body) = c
            .raw(
                Method::POST,
                "/v1/containers",
                Some(r#"{"image":"x","colour":"red"}"#.into()),
            )
            .await
            .unwrap();
        assert_eq!(status, 400);
        assert!(String::from_utf8_lossy(&body).contains("colour"));

        // list and inspect
        assert!(c.list_containers(false).await.unwrap().is_empty());
        assert_eq!(c.list_containers(true).await.unwrap().len(), 1);
        assert_eq!(c.inspect_container("web").await.unwrap().id, web.id);
        assert_eq!(
            c.inspect_container(&web.id[..10]).await.unwrap().name,
            "web"
        );
        let e = c.inspect_container("nothing").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound));

        // start, logs
        let started = c.start_container("web").await.unwrap();
        assert_eq!(started.state.status, ContainerStatus::Running);
        assert!(started.state.pid.is_some());
        let e = c.start_container("web").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        assert_eq!(c.list_containers(false).await.unwrap().len(), 1);
        let text = wait_for_log(&c, "web", "oops").await;
        assert!(text.contains("hello\n"), "{text}");
        let mut s = c
            .container_logs(
                "web",
                &LogsQuery {
                    tail: Some(1),
                    ..LogsQuery::default()
                },
            )
            .await
            .unwrap();
        let last = s.next().await.unwrap().unwrap();
        assert_eq!(
            (last.stream.as_str(), last.log.as_str()),
            ("stderr", "oops\n")
        );
        assert!(s.next().await.is_none());
        let e = c
            .container_logs("nothing", &LogsQuery::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound));

        // pause, unpause, kill
        let p = c.pause_container("web").await.unwrap();
        assert_eq!(p.state.status, ContainerStatus::Paused);
        let e = c.kill_container("web", Some("TERM")).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        let e = c.pause_container("web").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        let u = c.unpause_container("web").await.unwrap();
        assert_eq!(u.state.status, ContainerStatus::Running);
        let e = c.kill_container("web", Some("SIGNOPE")).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
        let e = c.remove_container("web", false).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        c.kill_container("web", None).await.unwrap();
        let exit = c.wait_container("web").await.unwrap();
        assert_eq!(exit.exit_code, 137);
        // stop of a stopped container does nothing
        let s = c.stop_container("web", Some(1)).await.unwrap();
        assert_eq!(s.state.status, ContainerStatus::Exited);
        assert_eq!(s.state.exit_code, Some(137));

        // follow: lines written later arrive, the stream ends at the exit
        let f = c
            .create_container(&spec(
                "follow",
                &["sh", "-c", "echo one; sleep 0.5; echo two; exit 3"],
            ))
            .await
            .unwrap();
        let mut stream = c
            .container_logs(
                "follow",
                &LogsQuery {
                    follow: true,
                    ..LogsQuery::default()
                },
            )
            .await
            .unwrap();
        c.start_container("follow").await.unwrap();
        let mut text = String::new();
        let read = tokio::time::timeout(TIMEOUT, async {
            while let Some(l) = stream.next().await {
                text.push_str(&l.unwrap().log);
            }
        });
        read.await
            .expect("the follow stream ends when the container exits");
        assert_eq!(text, "one\ntwo\n");
        assert_eq!(c.wait_container(&f.id).await.unwrap().exit_code, 3);

        // stop of a running container: SIGKILL at once for a PID 1 without a handler
        let s = c
            .create_container(&spec("sleeper", &["sleep", "1000"]))
            .await
            .unwrap();
        c.start_container("sleeper").await.unwrap();
        let t = Instant::now();
        let stopped = c.stop_container("sleeper", Some(20)).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(stopped.state.status, ContainerStatus::Exited);

        // remove
        for name in ["web", "follow", "sleeper"] {
            c.remove_container(name, false).await.unwrap();
        }
        let e = c.remove_container("web", false).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
        assert!(c.list_containers(true).await.unwrap().is_empty());
        // force removes a running one
        c.create_container(&spec("forced", &["sleep", "1000"]))
            .await
            .unwrap();
        c.start_container("forced").await.unwrap();
        c.remove_container("forced", true).await.unwrap();
        assert!(d.state_dirs().is_empty());

        // events: create, start, pause, unpause, kill, die (137), destroy
        let actions: Vec<String> = events_of(&c, &since, &web.id)
            .await
            .into_iter()
            .map(|e| match e.action.as_str() {
                "die" | "kill" => format!(
                    "{}:{}",
                    e.action,
                    e.attributes
                        .get("exitCode")
                        .or(e.attributes.get("signal"))
                        .cloned()
                        .unwrap_or_default()
                ),
                _ => e.action,
            })
            .collect();
        assert_eq!(
            actions,
            [
                "create",
                "start",
                "pause",
                "unpause",
                "kill:SIGKILL",
                "die:137",
                "stop",
                "destroy"
            ]
        );
        let follow = events_of(&c, &since, &f.id).await;
        let die = follow.iter().find(|e| e.action == "die").unwrap();
        assert_eq!(
            die.attributes.get("exitCode").map(String::as_str),
            Some("3")
        );
        assert_eq!(
            events_of(&c, &since, &s.id)
                .await
                .iter()
                .filter(|e| e.action == "die")
                .count(),
            1
        );

        // images
        let images = c.list_images().await.unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].name, IMAGE);
        assert!(images[0].size > 0);
        let inspected = c.inspect_image(IMAGE).await.unwrap();
        assert!(inspected.config.is_some());
        assert_eq!(
            c.inspect_image(&images[0].id[7..19]).await.unwrap().name,
            IMAGE
        );
        let e = c.inspect_image("flotilla.test/none:1").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
        let e = c
            .remove_image("flotilla.test/none:1", false)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
        // an image in use needs force
        c.create_container(&spec("user", &["true"])).await.unwrap();
        let e = c.remove_image(IMAGE, false).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        c.remove_container("user", false).await.unwrap();
        // a pull that cannot reach its registry ends with an error line
        let mut p = c
            .pull_image(&ImagePull {
                reference: "127.0.0.1:1/nothing:1".into(),
                platform: None,
            })
            .await
            .unwrap();
        let mut last = None;
        while let Some(line) = p.next().await {
            last = Some(line.unwrap());
        }
        let last = last.unwrap();
        assert_eq!(last.status, "error", "{last:?}");
        assert!(last.message.is_some());
        let e = c
            .pull_image(&ImagePull {
                reference: "not a reference!".into(),
                platform: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest));
        let removed = c.remove_image(IMAGE, false).await.unwrap();
        assert_eq!(removed.untagged, [IMAGE]);
        assert!(c.list_images().await.unwrap().is_empty());
        let info = c.info().await.unwrap();
        assert_eq!(info.cgroup_prefix, d.prefix);
    });
}

#[test]
fn hundred_concurrent_clients_create_start_and_remove() {
    let d = Daemon::start();
    let since = now_secs();
    const N: usize = 100;
    rt().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..N {
            let c = d.client();
            tasks.push(tokio::spawn(async move {
                let name = format!("c{i}");
                let created = c
                    .create_container(&spec(&name, &["sh", "-c", "exit 0"]))
                    .await
                    .map_err(|e| format!("create {name}: {e}"))?;
                c.start_container(&created.id)
                    .await
                    .map_err(|e| format!("start {name}: {e}"))?;
                let exit = c
                    .wait_container(&name)
                    .await
                    .map_err(|e| format!("wait {name}: {e}"))?;
                if exit.exit_code != 0 {
                    return Err(format!("{name}: exit {}", exit.exit_code));
                }
                let listed = c
                    .list_containers(true)
                    .await
                    .map_err(|e| format!("list: {e}"))?;
                if !listed.iter().any(|x| x.id == created.id) {
                    return Err(format!("{name} not listed"));
                }
                c.remove_container(&name, false)
                    .await
                    .map_err(|e| format!("remove {name}: {e}"))?;
                Ok::<String, String>(created.id)
            }));
        }
        let mut ids = Vec::new();
        let all = tokio::time::timeout(Duration::from_secs(240), async {
            for t in tasks {
                ids.push(t.await.unwrap());
            }
        });
        all.await.expect("100 clients finish in time");
        let failures: Vec<&String> = ids.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failures.is_empty(), "{failures:?}\n{}", d.log());
        let c = d.client();
        assert!(c.list_containers(true).await.unwrap().is_empty());
        assert!(d.state_dirs().is_empty(), "{:?}", d.state_dirs());
        let names: Vec<_> = fs::read_dir(d.containers_dir().join("names"))
            .unwrap()
            .flatten()
            .collect();
        assert!(names.is_empty(), "name claims left");
        assert!(d.cgroups().is_empty(), "cgroups left: {:?}", d.cgroups());
        let pid = d.child.as_ref().map(Child::id);
        assert!(processes_of(&d.root, pid).is_empty(), "processes left");
        // Every container had its create, start, die (0) and destroy.
        let mut filters = EventFilter::default();
        filters.add("type", "container").unwrap();
        let q = EventsQuery {
            since: Some(since.clone()),
            until: Some(now_secs()),
            filters,
        };
        let mut s = c.events_with(&q).await.unwrap();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        while let Some(e) = s.next().await {
            let e = e.unwrap();
            if e.action == "die" {
                assert_eq!(e.attributes.get("exitCode").map(String::as_str), Some("0"));
            }
            *counts.entry(e.action).or_default() += 1;
        }
        for action in ["create", "start", "die", "destroy"] {
            assert_eq!(counts.get(action), Some(&N), "{action}: {counts:?}");
        }
        let info = c.info().await.unwrap();
        assert_eq!(info.watching, 0);
    });
}

#[test]
fn kill_9_of_the_daemon_loses_nothing() {
    let mut d = Daemon::start();
    let since = now_secs();
    let runtime = rt();
    let (ticker, ender, orphan) = runtime.block_on(async {
        let c = d.client();
        let ticker = c
            .create_container(&spec(
                "ticker",
                &[
                    "sh",
                    "-c",
                    "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
                ],
            ))
            .await
            .unwrap();
        c.start_container("ticker").await.unwrap();
        let ender = c
            .create_container(&spec("ender", &["sh", "-c", "sleep 1; exit 7"]))
            .await
            .unwrap();
        c.start_container("ender").await.unwrap();
        let orphan = c
            .create_container(&spec("orphan", &["sleep", "1000"]))
            .await
            .unwrap();
        c.start_container("orphan").await.unwrap();
        wait_for_log(&c, "ticker", "tick 2").await;
        (ticker.id, ender.id, orphan.id)
    });
    d.kill9();
    // While no daemon runs: one container exits by itself, one loses its shim, and an
    // interrupted create leaves a half-made dir (config written, no meta.json) with its name
    // claimed; the image store has a half-written blob.
    let half = "f".repeat(64);
    let half_dir = d.containers_dir().join(&half);
    for sub in ["upper", "work", "rootfs"] {
        fs::create_dir_all(half_dir.join(sub)).unwrap();
    }
    fs::write(half_dir.join("config.json"), "{}").unwrap();
    fs::write(d.containers_dir().join("names/half"), &half).unwrap();
    let tmp = d.root.join("image/tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join("blob-partial"), "xx").unwrap();
    let orphan_state = state::read(&d.containers_dir().join(&orphan)).unwrap();
    let shim = rustix::process::Pid::from_raw(orphan_state.shim_pid.unwrap()).unwrap();
    rustix::process::kill_process(shim, rustix::process::Signal::KILL).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let rt_lib = Runtime::new(&d.root).unwrap();
    while rt_lib.state(&ender).unwrap().status != Status::Exited {
        assert!(Instant::now() < deadline, "ender did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ticker_pid = state::read(&d.containers_dir().join(&ticker))
        .unwrap()
        .pid
        .unwrap();

    let restarted = now_secs();
    std::thread::sleep(Duration::from_millis(20));
    d.spawn();
    runtime.block_on(async {
        let c = d.client();
        let list = c.list_containers(true).await.unwrap();
        let by_name: BTreeMap<&str, _> = list.iter().map(|x| (x.name.as_str(), x)).collect();
        assert_eq!(by_name.len(), 3, "{list:?}");
        assert_eq!(by_name["ticker"].state.status, ContainerStatus::Running);
        assert_eq!(by_name["ticker"].state.pid, Some(ticker_pid));
        assert_eq!(by_name["ender"].state.status, ContainerStatus::Exited);
        assert_eq!(by_name["ender"].state.exit_code, Some(7));
        assert_eq!(by_name["orphan"].state.status, ContainerStatus::Exited);
        assert_eq!(by_name["orphan"].state.exit_code, Some(255));
        assert!(!half_dir.exists(), "the half-made container is removed");
        assert!(!d.containers_dir().join("names/half").exists());
        assert!(!tmp.join("blob-partial").exists());
        assert!(
            !d.cgroups().iter().any(|p| p.ends_with(&orphan)),
            "the orphan's cgroup is gone"
        );
        // Still logging: lines written after the restart.
        let mut s = c
            .container_logs(
                "ticker",
                &LogsQuery {
                    follow: true,
                    since: Some(restarted.clone()),
                    ..LogsQuery::default()
                },
            )
            .await
            .unwrap();
        let line = tokio::time::timeout(TIMEOUT, s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(line.log.starts_with("tick "), "{line:?}");
        drop(s);
        // The exit nobody watched has its die event, with the code.
        let ender_events = events_of(&c, &since, &ender).await;
        let die = ender_events
            .iter()
            .find(|e| e.action == "die")
            .expect("die of ender");
        assert_eq!(
            die.attributes.get("exitCode").map(String::as_str),
            Some("7")
        );
        let orphan_die = events_of(&c, &since, &orphan).await;
        let die = orphan_die
            .iter()
            .find(|e| e.action == "die")
            .expect("die of orphan");
        assert_eq!(
            die.attributes.get("exitCode").map(String::as_str),
            Some("255")
        );
        // The new daemon watches the re-adopted container: its exit is a live die event.
        let mut filters = EventFilter::default();
        filters.add("container", "ticker").unwrap();
        filters.add("event", "die").unwrap();
        let mut live = c
            .events_with(&EventsQuery {
                filters,
                ..EventsQuery::default()
            })
            .await
            .unwrap();
        c.kill_container("ticker", Some("KILL")).await.unwrap();
        let e = tokio::time::timeout(TIMEOUT, live.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            e.attributes.get("exitCode").map(String::as_str),
            Some("137")
        );
        for name in ["ticker", "ender", "orphan"] {
            c.remove_container(name, true).await.unwrap();
        }
        assert!(d.state_dirs().is_empty());
    });
}

#[test]
fn autostart_starts_a_daemon_only_when_asked() {
    assert!(rustix::process::geteuid().is_root(), "needs root");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/auto.sock");
    let root = dir.path().join("root");
    let config = dir.path().join("daemon.toml");
    fs::write(&config, "").unwrap();
    let client = Client::new(Host::Unix(socket.clone()), None);
    rt().block_on(async {
        // Without autostart (an explicit host): the error says nothing runs.
        let e = connect_or_start(client.clone(), None).await.unwrap_err();
        assert!(e.is_not_running(), "{e}");
        let mut start = Autostart::new(&root, Some(&config));
        start.exe = Some(PathBuf::from(BIN));
        let c = connect_or_start(client.clone(), Some(&start))
            .await
            .unwrap();
        let info = c.info().await.unwrap();
        assert_eq!(info.data_root, root.display().to_string());
        // Its own session, not the test's.
        let pid = rustix::process::Pid::from_raw(info.pid as i32).unwrap();
        let sid = rustix::process::getsid(Some(pid)).unwrap();
        assert_eq!(sid, pid);
        // A second call finds it running.
        connect_or_start(client.clone(), Some(&start))
            .await
            .unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + TIMEOUT;
        while Path::new(&format!("/proc/{}", info.pid)).exists()
            && fs::read_to_string(format!("/proc/{}/stat", info.pid))
                .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(
                Instant::now() < deadline,
                "the autostarted daemon did not stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            fs::read_to_string(root.join("daemon.log"))
                .unwrap()
                .contains("daemon ready")
        );
    });
}

/// Restart policies, enforced by the daemon on every exit: `on-failure:3` restarts a crashing
/// container three times then leaves it exited; `always` brings back a container whose process
/// died, but not one the user stopped; an `always` container that died while no daemon ran is
/// brought back by the next daemon; a bad policy is refused before anything is created.
#[test]
fn restart_policies_are_enforced_by_the_daemon() {
    let mut d = Daemon::start();
    let since = now_secs();
    let runtime = rt();
    let starts = |events: &[Event]| events.iter().filter(|e| e.action == "start").count();
    let always_id = runtime.block_on(async {
        let c = d.client();
        let bad = ContainerCreate {
            restart: Some("sometimes".into()),
            ..spec("bad", &["true"])
        };
        let e = c.create_container(&bad).await.unwrap_err();
        assert!(e.to_string().contains("unknown restart policy"), "{e}");
        assert!(c.list_containers(true).await.unwrap().is_empty());

        let crash = c
            .create_container(&ContainerCreate {
                restart: Some("on-failure:3".into()),
                ..spec("crash", &["sh", "-c", "echo run; exit 3"])
            })
            .await
            .unwrap();
        c.start_container("crash").await.unwrap();
        // 1 + 3 runs, then it stays exited (back-off 100 + 200 + 400 ms).
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let events = events_of(&c, &since, &crash.id).await;
            let dies = events.iter().filter(|e| e.action == "die").count();
            if dies == 4 {
                break;
            }
            assert!(Instant::now() < deadline, "{events:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let events = events_of(&c, &since, &crash.id).await;
        assert_eq!(starts(&events), 4, "{events:?}");
        let info = c.inspect_container("crash").await.unwrap();
        assert_eq!(info.state.status, ContainerStatus::Exited);
        assert_eq!(info.state.exit_code, Some(3));

        let always = c
            .create_container(&ContainerCreate {
                restart: Some("always".into()),
                ..spec("always", &["sleep", "1000"])
            })
            .await
            .unwrap();
        c.start_container("always").await.unwrap();
        // Its process dies from outside: it comes back.
        let pid = c
            .inspect_container("always")
            .await
            .unwrap()
            .state
            .pid
            .unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let s = c.inspect_container("always").await.unwrap().state;
            if s.status == ContainerStatus::Running && s.pid != Some(pid) {
                break;
            }
            assert!(Instant::now() < deadline, "always did not come back: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The user stops it: it stays stopped.
        c.stop_container("always", Some(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let s = c.inspect_container("always").await.unwrap().state;
        assert_eq!(s.status, ContainerStatus::Exited);
        // The user starts it again; it runs.
        c.start_container("always").await.unwrap();
        always.id
    });
    // Dies while no daemon runs: the next daemon brings it back.
    d.kill9();
    let pid = state::read(&d.containers_dir().join(&always_id))
        .unwrap()
        .pid
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let rt_lib = Runtime::new(&d.root).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while rt_lib.state(&always_id).unwrap().status != Status::Exited {
        assert!(Instant::now() < deadline, "always did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.spawn();
    runtime.block_on(async {
        let c = d.client();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let s = c.inspect_container("always").await.unwrap().state;
            if s.status == ContainerStatus::Running {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "always not back after restart: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.remove_container("always", true).await.unwrap();
        c.remove_container("crash", false).await.unwrap();
    });
}
