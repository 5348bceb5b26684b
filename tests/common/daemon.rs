//! A real `flotilla daemon` for integration tests: spawned on the test's own data root, socket
//! and config file, its stderr appended to a log file, ready once its socket answers; and the
//! busybox test image put straight into a data root's store (record, blobs, unpacked layers).

use std::fs;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla::image::store::Store;
use flotilla::image::unpack::UnpackOptions;

/// The flotilla binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// Spawns `flotilla daemon` on `root`, `socket` and `config` (logging to `log`) and waits up to
/// `timeout` for its socket. Panics with the log when it exits or never answers (then it is
/// killed first, by its pid).
pub fn spawn(root: &Path, socket: &Path, config: &Path, log: &Path, timeout: Duration) -> Child {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the daemon log");
    let mut child = Command::new(BIN)
        .arg("daemon")
        .arg("--data-root")
        .arg(root)
        .arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .env_remove("FLOTILLA_HOST")
        .env_remove("FLOTILLA_ROOT")
        .env("RUST_LOG", "info")
        .spawn()
        .expect("spawn the daemon");
    let text = || fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + timeout;
    while UnixStream::connect(socket).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon exited ({status}):\n{}", text());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon's socket never answered:\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Imports the busybox test image as `reference` into the store of `root`, layers unpacked.
pub fn import_busybox(root: &Path, reference: &str) {
    let store = Store::open(root).expect("open the store");
    let image = super::registry::busybox_image("amd64");
    let record = image.import(&store, reference);
    let mut parent = None;
    for layer in &record.layers {
        let blob = store.open_blob(&layer.blob.digest).expect("open a blob");
        store
            .unpack_layer(
                parent.as_ref(),
                &layer.diff_id,
                BufReader::new(blob),
                &UnpackOptions::default(),
            )
            .expect("unpack a layer");
        parent = Some(layer.chain_id.clone());
    }
}
