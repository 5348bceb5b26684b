//! Root integration tests of pulls that go wrong: a registry answering 500 for the manifest, one
//! that accepts and never answers (the pull times out), 401 without credentials (tiny loopback
//! HTTP servers written here, 127.0.0.1 only, stopping by themselves), a disk that fills up
//! during download and during unpack (a small tmpfs as the data root: a clean error and nothing
//! half-stored), an interrupted pull (cancelled after its first layer) that the next pull
//! resumes from the complete blobs, and Ctrl-C (SIGINT) of a `flotilla image pull` client of a
//! test daemon, slowed down by a throttling loopback proxy: exit code 130, one line, and the
//! daemon (the client's disconnect cancels its pull) leaves nothing half-stored.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::image_daemon::ImageDaemon;
use common::images::{Tmpfs, big_image, compressible_image, push_test_image};
use common::registry::Registry;
use flotilla::image::pull::{Cancel, Progress, PullError, PullEvent, PullOptions, pull};
use flotilla::image::record;
use flotilla::image::reference::Reference;
use flotilla::image::registry::{RegistryOptions, Timeouts};
use flotilla::image::store::{Digest, Store};

/// What the fake registry does with requests other than `GET /v2/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// 500 with a short body.
    ServerError,
    /// Reads the request and never answers.
    Stall,
    /// 401 with a Basic challenge, for `/v2/` too.
    Unauthorized,
}

/// A tiny HTTP/1.1 server on 127.0.0.1: serves one connection at a time, closes each after one
/// answer, stops on drop or after 60 s by itself.
struct FakeRegistry {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeRegistry {
    fn start(behaviour: Behaviour) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (thread_stop, thread_requests) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut stalled = Vec::new();
            while !thread_stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread_requests.fetch_add(1, Ordering::SeqCst);
                        if let Some(held) = answer(stream, behaviour) {
                            stalled.push(held);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(stalled);
        });
        FakeRegistry {
            addr,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    fn reference(&self, rest: &str) -> Reference {
        Reference::parse(&format!("{}/{rest}", self.addr)).expect("reference")
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head and answers it; returns the stream when it is to be held unanswered.
fn answer(mut stream: TcpStream, behaviour: Behaviour) -> Option<TcpStream> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, extra, body) = match (behaviour, path) {
        (Behaviour::Unauthorized, _) => (
            "401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"flotilla-test\"\r\n",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        ),
        (_, "/v2/" | "/v2") => ("200 OK", "", "{}"),
        (Behaviour::Stall, _) => return Some(stream),
        (Behaviour::ServerError, _) => ("500 Internal Server Error", "", "boom: storage on fire"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    None
}

fn new_store() -> (tempfile::TempDir, Store) {
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    (root, store)
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(read) => read
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `tmp/` empties once the pull's background writers have cleaned up (bounded wait).
fn wait_tmp_empty(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = entries(&store.root().join("tmp"));
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "tmp/ not empty: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every blob under its final name is complete: its content hashes to its name.
fn assert_blobs_complete(store: &Store) -> Vec<Digest> {
    let mut found = Vec::new();
    for name in entries(&store.root().join("blobs/sha256")) {
        let digest = Digest::parse(&format!("sha256:{name}")).expect("blob name is a digest");
        let data = store.read_blob(&digest).expect("read blob");
        assert_eq!(
            Digest::sha256_of(&data),
            digest,
            "blob {digest} is complete"
        );
        found.push(digest);
    }
    found
}

/// No layer, no record, no temporary file; the blobs there are complete.
fn assert_nothing_half_stored(store: &Store, name: &Reference) -> Vec<Digest> {
    wait_tmp_empty(store);
    let layers = entries(&store.root().join("layers"));
    assert!(layers.is_empty(), "no layer: {layers:?}");
    assert!(matches!(
        record::load(store, &name.to_string()),
        Err(record::RecordError::NotFound { .. })
    ));
    assert_blobs_complete(store)
}

#[tokio::test(flavor = "multi_thread")]
async fn server_error_for_the_manifest_is_a_clear_error() {
    let server = FakeRegistry::start(Behaviour::ServerError);
    let name = server.reference("test/broken:1");
    let (_root, store) = new_store();
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("500");
    let message = error.to_string();
    eprintln!("error: {message}");
    assert!(matches!(error, PullError::Manifest { .. }), "{message}");
    assert!(message.starts_with(&name.to_string()), "{message}");
    assert!(
        message.contains("500"),
        "the status is in the message: {message}"
    );
    assert!(server.requests.load(Ordering::SeqCst) >= 1);
    assert!(assert_nothing_half_stored(&store, &name).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_registry_times_out() {
    let server = FakeRegistry::start(Behaviour::Stall);
    let name = server.reference("test/slow:1");
    let (_root, store) = new_store();
    let options = PullOptions {
        registry: RegistryOptions {
            timeouts: Timeouts {
                connect: Duration::from_secs(2),
                read: Duration::from_secs(1),
            },
            ..RegistryOptions::default()
        },
        ..PullOptions::default()
    };
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(30), pull(&store, &name, &options))
        .await
        .expect("the pull gives up by itself, well within 30 s")
        .expect_err("stalled registry");
    let elapsed = started.elapsed();
    let message = error.to_string();
    eprintln!("error: {message}");
    assert!(
        elapsed < Duration::from_secs(15),
        "took {elapsed:?}: {message}"
    );
    assert!(message.starts_with(&name.to_string()), "{message}");
    assert!(
        message.contains("timed out") || message.contains("timeout"),
        "{message}"
    );
    assert!(assert_nothing_half_stored(&store, &name).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_without_credentials_is_a_clear_error() {
    let server = FakeRegistry::start(Behaviour::Unauthorized);
    let name = server.reference("test/private:1");
    let (_root, store) = new_store();
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("401");
    let message = error.to_string();
    eprintln!("error: {message}");
    assert!(matches!(error, PullError::Unauthorized { .. }), "{message}");
    assert!(message.starts_with(&name.to_string()), "{message}");
    assert!(message.contains("unauthorized"), "{message}");
    assert!(assert_nothing_half_stored(&store, &name).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_during_download_stores_nothing_half() {
    let registry = Registry::start();
    let name = Reference::parse(&format!("{}/test/big:1", registry.host())).expect("reference");
    push_test_image(big_image(), &name).await;
    let tmpfs = Tmpfs::mount("8m");
    let store = Store::open(tmpfs.path()).expect("store on tmpfs");
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("8 MiB cannot hold 100 MB");
    let message = error.to_string();
    eprintln!("error: {message}");
    assert!(
        message.to_lowercase().contains("no space left on device"),
        "{message}"
    );
    assert!(
        message.starts_with("blob sha256:"),
        "names the blob: {message}"
    );
    let blob = message
        .split_whitespace()
        .nth(1)
        .map(|d| d.trim_end_matches(':'))
        .unwrap_or_default();
    assert_eq!(
        message.matches(blob).count(),
        1,
        "names the blob once: {message}"
    );
    let blobs = assert_nothing_half_stored(&store, &name);
    let layers = big_image().layer_digests();
    assert!(
        blobs.iter().all(|b| !layers.contains(b)),
        "no layer blob fits: {blobs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_during_unpack_stores_nothing_half() {
    let registry = Registry::start();
    let name = Reference::parse(&format!("{}/test/fill:1", registry.host())).expect("reference");
    // ~0.1 MB as a gzip blob, 32 MB unpacked.
    let image = compressible_image(32 << 20);
    assert!(image.layers[0].len() < 1 << 20);
    push_test_image(&image, &name).await;
    let tmpfs = Tmpfs::mount("8m");
    let store = Store::open(tmpfs.path()).expect("store on tmpfs");
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("8 MiB cannot hold 32 MB unpacked");
    let message = error.to_string();
    eprintln!("error: {message}");
    assert!(matches!(error, PullError::Unpack { .. }), "{message}");
    assert_eq!(
        message.matches(&image.diff_ids[0].to_string()).count(),
        1,
        "names the layer once: {message}"
    );
    assert!(message.starts_with("layer sha256:"), "{message}");
    assert!(
        message.to_lowercase().contains("no space left on device"),
        "{message}"
    );
    let blobs = assert_nothing_half_stored(&store, &name);
    // The complete layer blob stays (a later pull on a larger disk does not fetch it again).
    assert!(blobs.contains(&image.layer_digests()[0]), "{blobs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_pull_resumes_from_complete_blobs() {
    let registry = Registry::start();
    let image = big_image();
    let name =
        Reference::parse(&format!("{}/test/resume-big:1", registry.host())).expect("reference");
    push_test_image(image, &name).await;
    let layers = image.layer_digests();
    let (_root, store) = new_store();

    // Cancel (as Ctrl-C would) as soon as the first layer blob is complete.
    let cancel = Cancel::new();
    let trigger = cancel.clone();
    let watched = layers.clone();
    let options = PullOptions {
        concurrency: 1,
        cancel: Some(cancel),
        progress: Some(Progress(Arc::new(move |event: &PullEvent| {
            if let PullEvent::Downloaded { blob } = event
                && watched.contains(blob)
            {
                trigger.cancel();
            }
        }))),
        ..PullOptions::default()
    };
    let gets_before = registry.blob_gets();
    let error = pull(&store, &name, &options).await.expect_err("cancelled");
    assert!(matches!(error, PullError::Cancelled { .. }), "{error}");
    assert!(error.to_string().contains("cancelled"), "{error}");
    let first_gets = registry.blob_gets() - gets_before;
    assert_eq!(first_gets, 2, "the config and the first layer");
    // The first layer was unpacked while it downloaded: complete, it stays, like its blob.
    wait_tmp_empty(&store);
    let kept_layers = entries(&store.root().join("layers"));
    assert!(
        kept_layers.len() <= 1,
        "only the complete layer: {kept_layers:?}"
    );
    assert!(matches!(
        record::load(&store, &name.to_string()),
        Err(record::RecordError::NotFound { .. })
    ));
    let blobs = assert_blobs_complete(&store);
    assert!(blobs.contains(&layers[0]), "the complete layer blob stays");
    assert_eq!(blobs.len(), 3, "manifest, config and one layer: {blobs:?}");

    // Pull again: only the missing layer blobs are fetched.
    let gets_before = registry.blob_gets();
    let report = pull(&store, &name, &PullOptions::default())
        .await
        .expect("pull again");
    assert_eq!(registry.blob_gets() - gets_before, layers.len() - 1);
    assert_eq!(report.fetched_blobs, layers.len() - 1);
    assert_eq!(report.unpacked_layers, layers.len() - kept_layers.len());
    assert_eq!(report.record.manifest_digest, image.manifest_digest());
    wait_tmp_empty(&store);
}

/// A loopback TCP proxy in front of `target` that passes the answers on slowly (16 KiB every
/// 5 ms per connection, about 3 MB/s), so a pull of the big image is still running when the
/// test interrupts it. Requests pass at full speed. Stops on drop (relays end at their next
/// tick; the accept loop polls), and after 120 s by itself.
struct SlowProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowProxy {
    fn start(target: SocketAddr) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !thread_stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => relay(client, target, thread_stop.clone()),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SlowProxy {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Relays one connection: requests as they come, answers throttled.
fn relay(client: TcpStream, target: SocketAddr, stop: Arc<AtomicBool>) {
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    let _ = client.set_nonblocking(false);
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
        let (mut upstream, mut client) = (upstream, client);
        let mut buf = vec![0u8; 16 * 1024];
        while !stop.load(Ordering::SeqCst) {
            match upstream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = upstream.shutdown(std::net::Shutdown::Both);
    });
}

/// A child process killed (by its pid, through its handle) if the test ends before it does.
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The size of the largest blob being written in `tmp/`, and whether a layer is being unpacked
/// there.
fn in_flight(store: &Store) -> (u64, bool) {
    let tmp = store.root().join("tmp");
    let names = entries(&tmp);
    let largest_blob = names
        .iter()
        .filter(|n| n.starts_with("blob-"))
        .filter_map(|n| fs::metadata(tmp.join(n)).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    (largest_blob, names.iter().any(|n| n.starts_with("layer-")))
}

#[test]
fn ctrl_c_of_cli_pull_exits_130_and_leaves_nothing_half_stored() {
    let registry = Registry::start();
    let image = big_image();
    let direct =
        Reference::parse(&format!("{}/test/ctrl-c-big:1", registry.host())).expect("reference");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(push_test_image(image, &direct));
    let proxy = SlowProxy::start(registry.host().parse().expect("registry address"));
    let slow = format!("{}/test/ctrl-c-big:1", proxy.addr);

    let daemon = ImageDaemon::start();
    let store = Store::open(&daemon.root).expect("store");
    let flotilla = |args: &[&str]| {
        let mut command = daemon.command(args);
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let mut child = ChildGuard(Some(
        flotilla(&["image", "pull", &slow])
            .spawn()
            .expect("start flotilla image pull"),
    ));
    let pid = child.0.as_ref().expect("child").id();

    // Interrupt mid-pull: a blob half downloaded and a layer half unpacked.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (blob_bytes, unpacking) = in_flight(&store);
        if blob_bytes >= 1 << 20 && unpacking {
            break;
        }
        let running = matches!(child.0.as_mut().expect("child").try_wait(), Ok(None));
        assert!(running, "the pull ended before it could be interrupted");
        assert!(Instant::now() < deadline, "the pull never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = rustix::process::Pid::from_raw(pid as i32).expect("child pid");
    rustix::process::kill_process(target, rustix::process::Signal::INT).expect("SIGINT");

    let deadline = Instant::now() + Duration::from_secs(30);
    let child_ref = child.0.as_mut().expect("child");
    while matches!(child_ref.try_wait(), Ok(None)) {
        assert!(
            Instant::now() < deadline,
            "the pull did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child
        .0
        .take()
        .expect("child")
        .wait_with_output()
        .expect("pull output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("stderr: {stderr}");
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert_eq!(stderr.trim(), format!("pull {slow}: cancelled"));

    // Nothing half-stored: tmp/ is empty once the daemon has seen the client go (bounded
    // wait), no record, every snapshot complete, every blob complete.
    daemon.wait_tmp_empty();
    assert!(
        daemon.log().contains("cancelled"),
        "the daemon's pull was not cancelled:\n{}",
        daemon.log()
    );
    let slow_ref = Reference::parse(&slow).expect("reference");
    assert!(matches!(
        record::load(&store, &slow_ref.to_string()),
        Err(record::RecordError::NotFound { .. })
    ));
    for layer in entries(&store.root().join("layers")) {
        let chain_id = Digest::parse(&format!("sha256:{layer}")).expect("chain id");
        assert!(store.has_layer(&chain_id), "half snapshot {layer}");
    }
    // A complete snapshot never stays without its verified blob.
    let blobs = assert_blobs_complete(&store);
    let mut parent = None;
    for (diff_id, blob) in image.diff_ids.iter().zip(image.layer_digests()) {
        let chain_id = flotilla::image::store::chain_id_next(parent.as_ref(), diff_id);
        if store.has_layer(&chain_id) {
            assert!(
                blobs.contains(&blob),
                "layer {chain_id} without blob {blob}"
            );
        }
        parent = Some(chain_id);
    }

    // Pulling again (at full speed) completes the image.
    drop(proxy);
    let again = flotilla(&["image", "pull", "-q", &direct.to_string()])
        .output()
        .expect("pull again");
    assert!(again.status.success(), "{again:?}");
    assert!(record::load(&store, &direct.to_string()).is_ok());
    assert!(entries(&store.root().join("tmp")).is_empty());
}
