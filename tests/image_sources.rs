//! Root integration tests of where a pull goes and how it authenticates: Docker Hub images from
//! a mirror (a real loopback `docker-registry`) with the Docker Hub endpoint itself configured to
//! a closed 127.0.0.1 port, so no request can ever leave the machine; the fallback when the
//! mirror is down; and the bearer-token flow (a tiny registry + token server on 127.0.0.1 written
//! here, serving a small image from memory), anonymous and with Docker-config credentials.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::image_daemon::{ImageDaemon, QUIET_DNS};
use common::images::push_test_image;
use common::registry::{Registry, TestImage, files_layer, image_from_layers};
use flotilla::engine::config::DaemonConfig;
use flotilla::image::pull::{PullError, PullOptions, pull};
use flotilla::image::record;
use flotilla::image::reference::Reference;
use flotilla::image::registry::docker_config_auth;
use flotilla::image::store::Store;

/// A 127.0.0.1 port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn small_image() -> TestImage {
    image_from_layers("amd64", vec![files_layer(&[("hello", "from memory\n")])])
}

/// Runs the CLI against a fresh test daemon whose config is the file `config`; the daemon is
/// returned (it keeps its store until dropped).
fn flotilla(config: &Path, args: &[&str]) -> (ImageDaemon, Output) {
    let text = fs::read_to_string(config).expect("daemon.toml");
    let daemon = ImageDaemon::start_with(&format!("{QUIET_DNS}{text}"));
    let output = daemon.run(args);
    (daemon, output)
}

// --- mirrors ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn docker_hub_image_comes_from_the_mirror() {
    let mirror = Registry::start();
    let image = small_image();
    let on_mirror = Reference::parse(&format!("{}/library/busybox:1", mirror.host()))
        .expect("mirror reference");
    push_test_image(&image, &on_mirror).await;

    // Through the command line and a daemon config file: the hub is a closed loopback port, so
    // a request that missed the mirror could only fail on this machine.
    let hub_port = closed_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("daemon.toml");
    fs::write(
        &config,
        format!(
            "[registries]\nmirrors = [\"http://{}\"]\nhub = \"127.0.0.1:{hub_port}\"\n\
             connect_timeout = \"5s\"\nread_timeout = \"20s\"\n",
            mirror.host()
        ),
    )
    .expect("daemon.toml");
    let gets_before = mirror.blob_gets();
    let (daemon, output) = flotilla(&config, &["image", "pull", "-q", "busybox:1"]);
    let root = daemon.root.clone();
    assert!(
        output.status.success(),
        "pull from the mirror: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "docker.io/library/busybox:1\n"
    );
    assert_eq!(
        mirror.blob_gets() - gets_before,
        2,
        "the config and the layer blob came from the mirror"
    );
    let log = mirror.log();
    assert!(
        log.contains("\"GET /v2/library/busybox/manifests/1"),
        "the manifest came from the mirror"
    );

    // Recorded under its Docker Hub name, with the mirror's content.
    let store = Store::open(&root).expect("store");
    let recorded = record::load(&store, "docker.io/library/busybox:1").expect("record");
    assert_eq!(recorded.manifest_digest, image.manifest_digest());
    let top = recorded.top_chain_id().expect("a layer");
    assert_eq!(
        fs::read_to_string(store.layer_path(top).join("hello")).expect("hello"),
        "from memory\n"
    );

    // The same through the library and the config's registry options.
    let options = PullOptions {
        registry: DaemonConfig::load(Some(&config))
            .expect("config")
            .registry_options(),
        ..PullOptions::default()
    };
    let other = tempfile::tempdir().expect("tempdir");
    let store = Store::open(other.path()).expect("store");
    let name = Reference::parse("docker.io/library/busybox:1").expect("reference");
    let report = pull(&store, &name, &options).await.expect("library pull");
    assert_eq!(report.record.name, "docker.io/library/busybox:1");
    assert_eq!(report.fetched_blobs, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_down_falls_back_to_the_configured_hub_only() {
    let (mirror_port, hub_port) = (closed_port(), closed_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("daemon.toml");
    fs::write(
        &config,
        format!(
            "[registries]\nmirrors = [\"http://127.0.0.1:{mirror_port}\"]\n\
             hub = \"127.0.0.1:{hub_port}\"\nconnect_timeout = \"2s\"\nread_timeout = \"2s\"\n"
        ),
    )
    .expect("daemon.toml");
    let options = PullOptions {
        registry: DaemonConfig::load(Some(&config))
            .expect("config")
            .registry_options(),
        ..PullOptions::default()
    };
    let name = Reference::parse("busybox:1").expect("reference");
    // Every place a request can go: the mirror, then the hub endpoint; both on loopback.
    let sources = options.registry.sources(&name);
    assert_eq!(sources.len(), 2);
    for source in &sources {
        assert!(source.registry_is_loopback(), "{source}");
    }

    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let started = Instant::now();
    let error = pull(&store, &name, &options)
        .await
        .expect_err("mirror and hub down");
    assert!(started.elapsed() < Duration::from_secs(30));
    let message = error.to_string();
    eprintln!("error: {message}");
    let PullError::Sources { attempts, .. } = &error else {
        panic!("both attempts reported: {message}");
    };
    assert_eq!(attempts.len(), 2, "{message}");
    assert!(
        message.starts_with("docker.io/library/busybox:1: every source failed: "),
        "{message}"
    );
    let mirror_at = message
        .find(&format!("mirror 127.0.0.1:{mirror_port}/library/busybox:1"))
        .expect("the mirror attempt is named");
    let hub_at = message
        .find(&format!(
            "docker hub 127.0.0.1:{hub_port}/library/busybox:1"
        ))
        .expect("the hub attempt is named");
    assert!(mirror_at < hub_at, "mirror first: {message}");
    assert!(message.contains("connect"), "{message}");
    assert!(!message.contains("docker.io/v2"), "{message}");

    // The command line says the same.
    let (_daemon, output) = flotilla(&config, &["image", "pull", "-q", "busybox:1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("every source failed"), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{mirror_port}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("127.0.0.1:{hub_port}")),
        "{stderr}"
    );
}

// --- bearer tokens ---------------------------------------------------------------------------

/// One request as the fake registry saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

/// A registry that wants bearer tokens (Docker Hub style) and its token endpoint, on one
/// 127.0.0.1 port: `GET /v2/` and unauthenticated requests get `401` with a Bearer challenge
/// whose realm is `/token` here; `/token` hands out `TOKEN` (only with the basic credentials
/// when `basic` is set); manifests and blobs of `a/b` are served from memory to requests that
/// carry the token. One connection at a time, each closed after one answer; stops on drop or
/// after 60 s by itself.
struct TokenRegistry {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const TOKEN: &str = "flotilla-test-token-0123";

struct Served {
    basic: Option<String>,
    manifest: Vec<u8>,
    blobs: HashMap<String, Vec<u8>>,
}

impl TokenRegistry {
    fn start(image: &TestImage, basic: Option<(&str, &str)>) -> TokenRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let mut blobs = HashMap::new();
        for blob in image.layers.iter().chain([&image.config]) {
            blobs.insert(
                flotilla::image::store::Digest::sha256_of(blob).to_string(),
                blob.clone(),
            );
        }
        let served = Served {
            basic: basic.map(|(user, password)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )
            }),
            manifest: image.manifest.clone(),
            blobs,
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_seen, thread_stop) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !thread_stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, addr, &served, &thread_seen),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TokenRegistry {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn reference(&self) -> Reference {
        Reference::parse(&format!("{}/a/b:1", self.addr)).expect("reference")
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut stream: TcpStream, addr: SocketAddr, served: &Served, seen: &Mutex<Vec<Seen>>) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .is_err()
    {
        return;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    if let Ok(mut seen) = seen.lock() {
        seen.push(Seen {
            path: path.clone(),
            authorization: authorization.clone(),
        });
    }
    let challenge = format!(
        "WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"flotilla-test\",\
         scope=\"repository:a/b:pull\"\r\n"
    );
    let unauthorized = (
        "401 Unauthorized",
        challenge.clone(),
        "application/json",
        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
    );
    let bearer = authorization.as_deref() == Some(&format!("Bearer {TOKEN}"));
    let (status, extra, content_type, body) = if path.starts_with("/token") {
        if served.basic.is_some() && authorization != served.basic {
            (
                "401 Unauthorized",
                String::new(),
                "application/json",
                br#"{"details":"bad credentials"}"#.to_vec(),
            )
        } else {
            (
                "200 OK",
                String::new(),
                "application/json",
                format!("{{\"token\":\"{TOKEN}\"}}").into_bytes(),
            )
        }
    } else if !bearer {
        unauthorized
    } else if path == "/v2/" {
        ("200 OK", String::new(), "application/json", b"{}".to_vec())
    } else if path == "/v2/a/b/manifests/1" {
        (
            "200 OK",
            String::new(),
            "application/vnd.oci.image.manifest.v1+json",
            served.manifest.clone(),
        )
    } else if let Some(blob) = path
        .strip_prefix("/v2/a/b/blobs/")
        .and_then(|digest| served.blobs.get(digest))
    {
        (
            "200 OK",
            String::new(),
            "application/octet-stream",
            blob.clone(),
        )
    } else {
        (
            "404 Not Found",
            String::new(),
            "application/json",
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}"#.to_vec(),
        )
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(&body);
}

/// The registry requests (not the token endpoint's) after the first `GET /v2/`.
fn registry_requests(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.path.starts_with("/v2/a/b/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_bearer_token_flow() {
    let image = small_image();
    let server = TokenRegistry::start(&image, None);
    let name = server.reference();
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");
    let report = pull(&store, &name, &PullOptions::default())
        .await
        .expect("pull with an anonymous token");
    assert_eq!(report.record.manifest_digest, image.manifest_digest());
    assert_eq!(report.fetched_blobs, 2);

    let seen = server.seen();
    let token_requests: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .collect();
    assert!(
        !token_requests.is_empty(),
        "the token endpoint was called: {seen:?}"
    );
    for request in &token_requests {
        assert!(
            request.path.contains("service=flotilla-test"),
            "{request:?}"
        );
        assert!(
            request.path.contains("scope=repository%3Aa%2Fb%3Apull"),
            "{request:?}"
        );
        assert_eq!(request.authorization, None, "anonymous: {request:?}");
    }
    let requests = registry_requests(&seen);
    assert_eq!(requests.len(), 3, "manifest, config, layer: {seen:?}");
    for request in requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{request:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_carries_docker_config_credentials() {
    let image = small_image();
    let server = TokenRegistry::start(&image, Some(("alice", "s3cret:x")));
    let name = server.reference();
    let root = tempfile::tempdir().expect("tempdir");
    let store = Store::open(root.path()).expect("store");

    // Without credentials the token endpoint refuses: a clear error naming the reference.
    let error = pull(&store, &name, &PullOptions::default())
        .await
        .expect_err("no credentials");
    let message = error.to_string();
    assert!(matches!(error, PullError::Unauthorized { .. }), "{message}");
    assert!(message.starts_with(&name.to_string()), "{message}");

    // With the Docker config's entry for the registry, the token request carries it.
    let docker = tempfile::tempdir().expect("docker config dir");
    let config = docker.path().join("config.json");
    fs::write(
        &config,
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{}\"}}}}}}",
            name.registry,
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x")
        ),
    )
    .expect("config.json");
    let mut options = PullOptions::default();
    options.registry.auth = docker_config_auth(&config, &name.registry).expect("read config");
    assert!(options.registry.auth.is_some());
    let before = server.seen().len();
    let report = pull(&store, &name, &options)
        .await
        .expect("pull with credentials");
    assert_eq!(report.record.manifest_digest, image.manifest_digest());

    let seen = server.seen();
    let seen = &seen[before..];
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x")
    );
    let token_requests: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .collect();
    assert!(!token_requests.is_empty(), "{seen:?}");
    for request in &token_requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(basic.as_str()),
            "{request:?}"
        );
    }
    let requests = registry_requests(seen);
    assert_eq!(requests.len(), 3, "{seen:?}");
    for request in requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "only the token goes to the registry: {request:?}"
        );
    }
}
