//! A real daemon for the network, volume and disk-usage tests (root): its own data root,
//! socket and config (`[dns] upstreams = []`) in a temporary directory, the CLI run against it
//! as a subprocess (`-H unix://…`), the typed client over its socket, and host-global objects
//! found by the daemon's network prefix (`flt<prefix>-…` links, the `inet flt<prefix>` nftables
//! table). Dropping it takes its stacks down, stops the daemon by pid, kills what its
//! containers left by pid and removes every object of its prefixes, even when a test failed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla::api::client::Client;
use flotilla::api::host::Host;
use flotilla::runtime::lifecycle::Runtime;

pub const IMAGE: &str = "flotilla.test/busybox:latest";
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct NetDaemon {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub socket: PathBuf,
    /// The cgroup prefix, and the network prefix (its first 4 characters).
    prefix: String,
    pub net: String,
    /// Stack directories taken down on drop.
    stacks: Vec<PathBuf>,
}

/// A daemon just started on a fresh data root in a tempdir `flt-<short>-…`, with its own
/// socket, config (`[dns] upstreams = []`) and log there.
pub struct Fresh {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    /// The cgroup prefix, and the network prefix (its first 4 characters).
    pub prefix: String,
    pub net: String,
}

impl Fresh {
    /// For the `kind` tests (named in the root check); with `image`, the busybox test image
    /// is in its store.
    pub fn start(kind: &str, short: &str, image: bool) -> Fresh {
        assert!(
            rustix::process::geteuid().is_root(),
            "{kind} tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("flt-{short}-"))
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        if image {
            super::daemon::import_busybox(&root, IMAGE);
        }
        // Names that are not services get NXDOMAIN: nothing is forwarded off this machine.
        fs::write(dir.path().join("daemon.toml"), "[dns]\nupstreams = []\n").unwrap();
        let prefix = Runtime::new(&root).unwrap().prefix().to_string();
        let net = prefix.chars().take(4).collect();
        let socket = dir.path().join("run/flotilla.sock");
        let child = super::daemon::spawn(
            &root,
            &socket,
            &dir.path().join("daemon.toml"),
            &dir.path().join("daemon.log"),
            TIMEOUT,
        );
        Fresh {
            child,
            dir,
            root,
            socket,
            prefix,
            net,
        }
    }
}

/// Six random hexadecimal digits, for names no other test uses.
pub fn unique() -> String {
    let mut b = [0u8; 3];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    hex::encode(b)
}

/// A /24 inside 10.200.0.0–10.249.255.0 picked at random (a taken one is an error the
/// daemon reports, never a clash).
pub fn random_subnet() -> (u8, u8) {
    let mut b = [0u8; 2];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    (200 + b[0] % 50, b[1])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits (bounded) for a CLI child and collects its (piped) output; a child past the bound is
/// killed by its pid and the test fails naming `what`.
pub fn finish_output(mut child: Child, what: &[&str]) -> Output {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// SIGTERM to a test daemon by its pid, then SIGKILL if it lingers (20 s).
pub fn stop_child(child: Option<Child>) {
    let Some(mut child) = child else {
        return;
    };
    if let Some(p) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl NetDaemon {
    /// A daemon on a fresh data root; with `image`, the busybox test image is in its store.
    pub fn start(image: bool) -> NetDaemon {
        let f = Fresh::start("network", "nt", image);
        NetDaemon {
            child: Some(f.child),
            dir: Some(f.dir),
            root: f.root,
            socket: f.socket,
            prefix: f.prefix,
            net: f.net,
            stacks: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::new(Host::Unix(self.socket.clone()), None)
    }

    /// A directory holding `compose.yaml`, taken down (`down -v`) at the end.
    pub fn stack(&mut self, name: &str, yaml: &str) -> PathBuf {
        let dir = self.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("compose.yaml"), yaml).unwrap();
        self.stacks.push(dir.clone());
        dir
    }

    /// Runs the CLI against this daemon in `dir` (bounded); standard input is empty.
    pub fn cli_in(&self, dir: &Path, args: &[&str]) -> Output {
        let child = Command::new(super::daemon::BIN)
            .arg("--data-root")
            .arg(&self.root)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .current_dir(dir)
            .env_remove("FLOTILLA_HOST")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        finish_output(child, args)
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_in(self.path(), args)
    }

    /// Runs the CLI and expects success; its standard output.
    pub fn ok_in(&self, dir: &Path, args: &[&str]) -> String {
        let o = self.cli_in(dir, args);
        assert!(
            o.status.success(),
            "{args:?}: {}\nstdout:\n{}\nstderr:\n{}\ndaemon log:\n{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr),
            self.log()
        );
        text(&o.stdout)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in(self.path(), args)
    }

    /// Runs the CLI and expects exit code `code`; its standard error.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.cli(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}\nstdout:\n{}\nstderr:\n{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stderr)
    }

    /// Links of this daemon's network prefix.
    pub fn links(&self) -> Vec<String> {
        self.links_until(|_| true)
    }

    /// Links of this daemon's network prefix once `ok` holds for them (at most 10 s: removed
    /// containers' veths go with their namespaces, in the background).
    pub fn links_until(&self, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        super::links_until(&format!("flt{}-", self.net), ok)
    }

    /// `ip -o addr show dev <link>`.
    pub fn addresses(&self, link: &str) -> String {
        let o = Command::new("ip")
            .args(["-o", "-4", "addr", "show", "dev", link])
            .output()
            .unwrap();
        text(&o.stdout)
    }

    /// This daemon's nftables table (empty when there is none).
    pub fn nft_table(&self) -> String {
        let o = Command::new("nft")
            .args(["list", "table", "inet", &format!("flt{}", self.net)])
            .output()
            .unwrap();
        text(&o.stdout)
    }

    pub fn netns_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root.join("netns"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    pub fn state_dirs(&self) -> Vec<String> {
        fs::read_dir(self.root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    }

    /// SIGTERM to the daemon by pid, then SIGKILL if it lingers.
    fn stop_daemon(&mut self) {
        stop_child(self.child.take());
    }

    /// Stops the daemon (SIGTERM, its containers keep running) and starts another on the same
    /// data root, socket and config: live restore.
    pub fn restart(&mut self) {
        self.stop_daemon();
        let dir = self.path().to_path_buf();
        self.child = Some(super::daemon::spawn(
            &self.root,
            &self.socket,
            &dir.join("daemon.toml"),
            &dir.join("daemon.log"),
            TIMEOUT,
        ));
    }

    /// Stacks down, the daemon stopped, and nothing of it left on the host.
    pub fn finish(mut self) {
        for dir in std::mem::take(&mut self.stacks) {
            self.ok_in(&dir, &["down", "-v", "-t", "1"]);
        }
        self.stop_daemon();
        assert_eq!(self.state_dirs(), Vec::<String>::new(), "containers left");
        assert_eq!(self.netns_files(), Vec::<PathBuf>::new(), "netns left");
        // Veths of removed namespaces go asynchronously; bridges are removed synchronously
        // by the tests themselves before this.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.links().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(self.links(), Vec::<String>::new(), "links left");
    }
}

impl Drop for NetDaemon {
    fn drop(&mut self) {
        for dir in std::mem::take(&mut self.stacks) {
            if self.child.is_some() {
                let _ = self.cli_in(&dir, &["down", "-v", "-t", "1"]);
            }
        }
        self.stop_daemon();
        super::compose::remove_everything(&self.root, &self.prefix, &self.net);
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}
