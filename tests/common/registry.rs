//! A real loopback registry for tests (Debian's `docker-registry`, listening on 127.0.0.1 at a
//! free port, storing in its own tempdir, no auth), and test images built from `busybox-static`.
//! The registry process is killed by its pid and its tempdir removed on drop, even when the test
//! fails.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use flotilla::image::record::{self, ImageRecord};
use flotilla::image::store::{Digest, Store};
use serde_json::json;

/// A running `docker-registry`.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/` answers.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// Starts a registry that asks for `user`/`password` (htpasswd, HTTP basic auth).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Registry {
        let mut dir = tempfile::tempdir().expect("registry tempdir");
        let mut last_error = String::new();
        for _ in 0..8 {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let config = dir.path().join("config.yml");
            let mut text = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            );
            if let Some((user, password)) = credentials {
                let htpasswd = dir.path().join("htpasswd");
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
                text.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            fs::write(&config, text).expect("write registry config");
            let log = fs::File::create(dir.path().join("registry.log")).expect("registry log");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .spawn()
                .expect("start docker-registry (apt-get install docker-registry)");
            let mut registry = Registry { child, dir, addr };
            match registry.wait_ready() {
                Ok(()) => return registry,
                Err(e) => {
                    last_error = e;
                    let _ = registry.child.kill();
                    let _ = registry.child.wait();
                    // Take the tempdir back for the next attempt; Drop kills nothing twice.
                    dir = std::mem::replace(
                        &mut registry.dir,
                        tempfile::tempdir().expect("registry tempdir"),
                    );
                }
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.log()));
            }
            if matches!(http_status(self.addr, "/v2/"), Some(200 | 401)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on {}: {}", self.addr, self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The registry's log (including its access log).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many blob GETs the registry has served so far (from its access log).
    pub fn blob_gets(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }

    /// The data file of a blob in the registry's storage.
    pub fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// One plain HTTP/1.0 GET on loopback; the status code, if any.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1)?.parse().ok()
}

// --- test images --------------------------------------------------------------------------

/// The busybox applets linked in test images.
pub const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "true", "wget", "httpd", "mkdir",
];

/// An image as blobs: gzip layers, config and manifest.
pub struct TestImage {
    pub layers: Vec<Vec<u8>>,
    pub diff_ids: Vec<Digest>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl TestImage {
    pub fn manifest_digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }

    pub fn layer_digests(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| Digest::sha256_of(l)).collect()
    }

    /// Writes the blobs into the store and records the image as `name`.
    pub fn import(&self, store: &Store, name: &str) -> ImageRecord {
        for blob in self.layers.iter().chain([&self.config, &self.manifest]) {
            store
                .write_blob(blob, &Digest::sha256_of(blob))
                .expect("write test blob");
        }
        let image = record::from_store(store, name, &self.manifest_digest()).expect("record");
        record::save(store, &image).expect("save record");
        image
    }
}

/// A one-layer busybox rootfs image (`/bin/busybox` plus applet links) for `architecture`.
pub fn busybox_image(architecture: &str) -> TestImage {
    let layer = busybox_layer();
    image_from_layers(architecture, vec![layer])
}

/// Which media types a test image's manifest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Oci,
    Docker,
}

impl Flavor {
    fn manifest(self) -> &'static str {
        match self {
            Flavor::Oci => record::OCI_MANIFEST,
            Flavor::Docker => record::DOCKER_MANIFEST,
        }
    }
    fn index(self) -> &'static str {
        match self {
            Flavor::Oci => record::OCI_INDEX,
            Flavor::Docker => record::DOCKER_MANIFEST_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            Flavor::Oci => record::OCI_CONFIG,
            Flavor::Docker => record::DOCKER_CONFIG,
        }
    }
    fn layer(self) -> &'static str {
        match self {
            Flavor::Oci => record::OCI_LAYER_GZIP,
            Flavor::Docker => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
}

/// How a test layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    Gzip,
    Zstd,
    None,
}

/// An OCI image from uncompressed layer tars (gzipped here).
pub fn image_from_layers(architecture: &str, tars: Vec<Vec<u8>>) -> TestImage {
    image_with(Flavor::Oci, architecture, tars)
}

/// An image of the given flavor from uncompressed layer tars (gzipped here).
pub fn image_with(flavor: Flavor, architecture: &str, tars: Vec<Vec<u8>>) -> TestImage {
    let tars = tars.into_iter().map(|t| (t, Compress::Gzip)).collect();
    image_compressed(flavor, architecture, tars)
}

/// An image whose layers are compressed as given (OCI media types say which).
pub fn image_compressed(
    flavor: Flavor,
    architecture: &str,
    tars: Vec<(Vec<u8>, Compress)>,
) -> TestImage {
    let diff_ids: Vec<Digest> = tars.iter().map(|(t, _)| Digest::sha256_of(t)).collect();
    let media_types: Vec<&str> = tars
        .iter()
        .map(|(_, c)| match (flavor, c) {
            (Flavor::Docker, _) | (_, Compress::Gzip) => flavor.layer(),
            (Flavor::Oci, Compress::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Flavor::Oci, Compress::None) => "application/vnd.oci.image.layer.v1.tar",
        })
        .collect();
    let layers: Vec<Vec<u8>> = tars
        .iter()
        .map(|(t, c)| match c {
            Compress::Gzip => gzip(t),
            Compress::Zstd => zstd::encode_all(t.as_slice(), 3).expect("zstd"),
            Compress::None => t.clone(),
        })
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": architecture,
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin", "FLOTILLA_TEST=1"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"org.flotilla.test": "busybox"},
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
    }))
    .expect("config json");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": flavor.manifest(),
        "config": {
            "mediaType": flavor.config(),
            "digest": Digest::sha256_of(&config).to_string(),
            "size": config.len(),
        },
        "layers": layers.iter().zip(&media_types).map(|(l, media_type)| json!({
            "mediaType": media_type,
            "digest": Digest::sha256_of(l).to_string(),
            "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .expect("manifest json");
    TestImage {
        layers,
        diff_ids,
        config,
        manifest,
    }
}

/// An OCI index over `(architecture, image)` pairs.
pub fn index_of(images: &[(&str, &TestImage)]) -> Vec<u8> {
    index_with(Flavor::Oci, images)
}

/// An OCI index or Docker manifest list over `(architecture, image)` pairs.
pub fn index_with(flavor: Flavor, images: &[(&str, &TestImage)]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": flavor.index(),
        "manifests": images.iter().map(|(arch, image)| json!({
            "mediaType": flavor.manifest(),
            "digest": image.manifest_digest().to_string(),
            "size": image.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .expect("index json")
}

/// The uncompressed rootfs tar: `bin/busybox` and applet symlinks.
pub fn busybox_layer() -> Vec<u8> {
    let busybox = fs::read(busybox_path()).expect("read busybox (apt-get install busybox-static)");
    let mut tar = tar::Builder::new(Vec::new());
    let dir = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut dir.clone(), "bin/", std::io::empty())
        .expect("tar bin");
    tar.append_data(&mut dir.clone(), "tmp/", std::io::empty())
        .expect("tar tmp");
    let mut file = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    tar.append_data(&mut file, "bin/busybox", busybox.as_slice())
        .expect("tar busybox");
    for applet in APPLETS {
        let mut link = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut link, format!("bin/{applet}"), "busybox")
            .expect("tar applet link");
    }
    tar.into_inner().expect("finish tar")
}

/// A small uncompressed layer tar of regular files `(path, content)`.
pub fn files_layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut file = header(tar::EntryType::Regular, 0o644, content.len() as u64);
        tar.append_data(&mut file, path, content.as_bytes())
            .expect("tar file");
    }
    tar.into_inner().expect("finish tar")
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    header
}

/// The host's static busybox (installed by busybox-static).
pub fn busybox_path() -> &'static Path {
    for candidate in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(candidate).is_file() {
            return Path::new(candidate);
        }
    }
    Path::new("/bin/busybox")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip finish")
}
