//! Benchmark of a cold pull of the ~100 MB, four-layer image from a loopback registry: flotilla's
//! library pull (fresh data root each run, layers fetched, verified and unpacked), the
//! `flotilla image pull` command (a client of a daemon of its own per run, on a fresh data root)
//! when `FLOTILLA_BIN` names a built binary, and
//! `skopeo copy docker://… dir:…` as the baseline when skopeo is installed — all against the same
//! registry in the same run. Prints the median MB/s over `RUNS` runs (5 by default) for each.
//!
//! The registry is the test harness's (Debian's `docker-registry` on a free 127.0.0.1 port, its
//! own tempdir), and the image is the tests' big image with gzip layers, pushed with flotilla's
//! push. Run it with `benches/pull.sh` or `cargo bench --bench pull`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::images::{big_image_with, push_test_image};
use common::registry::{Compress, Registry};
use flotilla::image::pull::{PullOptions, pull};
use flotilla::image::reference::Reference;
use flotilla::image::store::Store;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

fn report(what: &str, bytes: u64, times: &[Duration]) -> f64 {
    let speeds: Vec<f64> = times.iter().map(|t| mb_per_s(bytes, *t)).collect();
    let secs: Vec<String> = times
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64()))
        .collect();
    let m = median(speeds);
    println!(
        "{what:<34} median {m:7.1} MB/s   runs (s): {}",
        secs.join(" ")
    );
    m
}

fn has_program(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn drop_caches_hint(dir: &Path) {
    // Keep the page cache honest between runs: flush what the previous run wrote.
    let _ = Command::new("sync").arg("-f").arg(dir).status();
}

/// One more cold pull, printing when each blob finished downloading and each layer unpacking.
fn trace(runtime: &tokio::runtime::Runtime, name: &Reference) {
    use flotilla::image::pull::{Progress, PullEvent};
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let start = Instant::now();
    let options = PullOptions {
        progress: Some(Progress(std::sync::Arc::new(move |event: &PullEvent| {
            let at = start.elapsed().as_secs_f64();
            match event {
                PullEvent::Downloaded { blob } => println!("  {at:6.3} s  downloaded {blob}"),
                PullEvent::Unpacking { blob } => println!("  {at:6.3} s  unpacking  {blob}"),
                PullEvent::Unpacked { blob } => println!("  {at:6.3} s  unpacked   {blob}"),
                _ => {}
            }
        }))),
        ..PullOptions::default()
    };
    runtime
        .block_on(pull(&store, name, &options))
        .expect("traced pull");
    println!("  {:6.3} s  done", start.elapsed().as_secs_f64());
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let registry = Registry::start();
    let name = Reference::parse(&format!("{}/bench/big:1", registry.host())).expect("reference");
    let started = Instant::now();
    let image = big_image_with(Compress::Gzip);
    let bytes: u64 = image.layers.iter().map(|l| l.len() as u64).sum::<u64>()
        + image.config.len() as u64
        + image.manifest.len() as u64;
    runtime.block_on(push_test_image(&image, &name));
    println!(
        "image {name}: {} layers, {:.1} MB of blobs (gzip, incompressible data); built and pushed in {:.1} s",
        image.layers.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    drop(image);
    println!("{runs} cold runs each (fresh data root / destination per run)");

    let mut times = Vec::new();
    for _ in 0..runs {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("store");
        let t = Instant::now();
        let pulled = runtime
            .block_on(pull(&store, &name, &PullOptions::default()))
            .expect("pull");
        times.push(t.elapsed());
        assert_eq!(pulled.unpacked_layers, 4);
        drop_caches_hint(root.path());
    }
    let library = report("flotilla pull (library)", bytes, &times);
    if std::env::var_os("TRACE").is_some() {
        trace(&runtime, &name);
    }

    if let Ok(bin) = std::env::var("FLOTILLA_BIN") {
        let mut times = Vec::new();
        for _ in 0..runs {
            // The CLI is a client: a daemon of its own per run (fresh data root), started
            // before the clock, stopped by its pid after.
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().join("root");
            let socket = dir.path().join("flotilla.sock");
            let config = dir.path().join("daemon.toml");
            std::fs::write(&config, "[dns]\nupstreams = []\n").expect("daemon.toml");
            let mut daemon = Command::new(&bin)
                .arg("daemon")
                .arg("--data-root")
                .arg(&root)
                .arg("--host")
                .arg(format!("unix://{}", socket.display()))
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the daemon");
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::os::unix::net::UnixStream::connect(&socket).is_err() {
                assert!(Instant::now() < deadline, "the daemon never answered");
                std::thread::sleep(Duration::from_millis(10));
            }
            let t = Instant::now();
            let output = Command::new(&bin)
                .arg("--host")
                .arg(format!("unix://{}", socket.display()))
                .args(["image", "pull", "-q"])
                .arg(name.to_string())
                .output()
                .expect("run flotilla");
            times.push(t.elapsed());
            if let Some(pid) = rustix::process::Pid::from_raw(daemon.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = daemon.wait();
            assert!(
                output.status.success(),
                "flotilla image pull: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            drop_caches_hint(&root);
        }
        report("flotilla image pull (CLI)", bytes, &times);
    }

    if has_program("skopeo") {
        let mut times = Vec::new();
        for _ in 0..runs {
            let dest = tempfile::tempdir().expect("tempdir");
            let t = Instant::now();
            let output = Command::new("skopeo")
                .args(["copy", "-q", "--src-tls-verify=false"])
                .arg(format!("docker://{name}"))
                .arg(format!("dir:{}", dest.path().join("image").display()))
                .output()
                .expect("run skopeo");
            times.push(t.elapsed());
            assert!(
                output.status.success(),
                "skopeo copy: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            drop_caches_hint(dest.path());
        }
        let skopeo = report("skopeo copy docker:// dir: (base)", bytes, &times);
        println!(
            "flotilla / skopeo: {:.2} (target >= 1.0: not slower than skopeo)",
            library / skopeo
        );
    } else {
        println!("skopeo not installed (apt-get install -y skopeo): no baseline");
    }
}
