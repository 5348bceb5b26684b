//! Daemon benchmark (root): idle RSS of `flotilla daemon` and the round trip of
//! `GET /v1/containers?all=true` with 100 containers, through the unix socket with the typed
//! client (a fresh connection per request, as the CLI does). Run it with the release profile:
//! `cargo bench --bench api`. Results go in benches/README.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla::api::client::Client;
use flotilla::api::host::Host;
use flotilla::api::types::ContainerCreate;
use flotilla::image::store::Store;
use flotilla::image::unpack::UnpackOptions;
use flotilla::runtime::lifecycle::Runtime;
use flotilla::runtime::sys::cgroup;

const IMAGE: &str = "flotilla.test/busybox:latest";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the api benchmark needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let store = Store::open(&root).expect("store");
    let record = common::registry::busybox_image("amd64").import(&store, IMAGE);
    let mut parent = None;
    for layer in &record.layers {
        let blob = store.open_blob(&layer.blob.digest).expect("blob");
        store
            .unpack_layer(
                parent.as_ref(),
                &layer.diff_id,
                std::io::BufReader::new(blob),
                &UnpackOptions::default(),
            )
            .expect("unpack");
        parent = Some(layer.chain_id.clone());
    }
    let socket = dir.path().join("api.sock");
    std::fs::write(dir.path().join("daemon.toml"), "").expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("daemon")
        .arg("--data-root")
        .arg(&root)
        .arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .arg("--config")
        .arg(dir.path().join("daemon.toml"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the daemon");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Host::Unix(socket.clone()), None);
    rt.block_on(async {
        client.version().await.expect("version");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = rss_kib(child.id());
        for i in 0..100 {
            client
                .create_container(&ContainerCreate {
                    name: Some(format!("bench{i}")),
                    image: IMAGE.into(),
                    command: Some(vec!["true".into()]),
                    ..ContainerCreate::default()
                })
                .await
                .expect("create");
        }
        for _ in 0..50 {
            client.list_containers(true).await.expect("list");
        }
        let mut times = Vec::new();
        for _ in 0..1000 {
            let t = Instant::now();
            let list = client.list_containers(true).await.expect("list");
            times.push(t.elapsed());
            assert_eq!(list.len(), 100);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "daemon idle RSS: {:.1} MB (target < 20 MB)",
            idle as f64 / 1024.0
        );
        println!(
            "GET /v1/containers?all=true, 100 containers, 1000 requests: median {:.3} ms, \
             p99 {:.3} ms, max {:.3} ms (target median < 2 ms)",
            ms(times[500]),
            ms(times[990]),
            ms(times[999])
        );
        println!(
            "daemon RSS after: {:.1} MB",
            rss_kib(child.id()) as f64 / 1024.0
        );
        for i in 0..100 {
            let _ = client.remove_container(&format!("bench{i}"), true).await;
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Ok(r) = Runtime::new(&root) {
        let _ = cgroup::cleanup_prefix(r.prefix());
    }
    let _ = Path::new(&root);
}
