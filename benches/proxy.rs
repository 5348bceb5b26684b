//! Published-port benchmark (root): throughput of a 1 GiB transfer and the latency of 10 000
//! small request/response round trips, through a published port (host → the daemon's userland
//! proxy on 127.0.0.1 → the container) and, in the same run, straight to the container's
//! address on its bridge. Run with the release profile: `cargo bench --bench proxy`
//! (`RUNS`, default 5, transfers per path; the median is reported). Results go in
//! benches/README.md.
//!
//! The stack: `bulk` sends zeros forever to whoever connects (`nc -ll -e cat /dev/zero`; the
//! client reads exactly 1 GiB and closes); `echo` echoes (`nc -ll -e cat`; the client writes
//! 64 bytes and reads them back, 10 000 times on one connection). Both publish a random host
//! port. Traffic stays on loopback and the benchmark's own bridge.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla::runtime::lifecycle::Runtime;
use flotilla::runtime::sys::cgroup;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const IMAGE: &str = "flotilla.test/busybox:latest";
const GIB: u64 = 1 << 30;
const ROUND_TRIPS: usize = 10_000;

struct Bench {
    dir: tempfile::TempDir,
    root: PathBuf,
    socket: PathBuf,
    daemon: std::process::Child,
}

impl Bench {
    fn cli(&self, args: &[&str]) -> Output {
        let out = Command::new(BIN)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run flotilla");
        if !out.status.success() {
            panic!(
                "flotilla {args:?}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.cli(args).stdout)
            .trim()
            .to_string()
    }

    /// The host port `service`'s `port` is published on (`flotilla port`).
    fn published(&self, service: &str, port: &str) -> SocketAddr {
        let line = self.text(&["port", service, port]);
        let first = line.lines().next().unwrap_or_default();
        let port: u16 = first
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("port {service} {port}: {line:?}"));
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// The container's address on its bridge (`hostname -i` inside it).
    fn address(&self, service: &str, port: u16) -> SocketAddr {
        let ip: Ipv4Addr = self
            .text(&["exec", service, "busybox", "hostname", "-i"])
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address for {service}"));
        SocketAddr::from((ip, port))
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["down", "-v", "-t", "0"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        if let Ok(r) = Runtime::new(&self.root) {
            let _ = cgroup::cleanup_prefix(r.prefix());
            let net: String = r.prefix().chars().take(4).collect();
            let _ = flotilla::network::cleanup_prefix(&net, &self.root);
        }
        for m in flotilla::runtime::lifecycle::mounts_under(&self.root)
            .iter()
            .rev()
        {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// Reads exactly 1 GiB from `addr`; returns MB/s (10^6 bytes).
fn transfer(addr: SocketAddr) -> f64 {
    let mut s = connect(addr);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = GIB;
    let t = Instant::now();
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = s.read(&mut buf[..want]).expect("read");
        assert!(n > 0, "{addr}: closed after {} bytes", GIB - left);
        left -= n as u64;
    }
    GIB as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// 10 000 round trips of 64 bytes on one connection; returns each one's duration.
fn round_trips(addr: SocketAddr) -> Vec<Duration> {
    let mut s = connect(addr);
    s.set_nodelay(true).expect("nodelay");
    let msg = [b'x'; 64];
    let mut back = [0u8; 64];
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        s.write_all(&msg).expect("write");
        s.read_exact(&mut back).expect("read");
        times.push(t.elapsed());
    }
    times.sort();
    times
}

fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("connect {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the proxy benchmark needs root");
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::Builder::new()
        .prefix("flt-bench-proxy-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    common::daemon::import_busybox(&root, IMAGE);
    let socket = dir.path().join("api.sock");
    let config = dir.path().join("daemon.toml");
    std::fs::write(&config, "[dns]\nupstreams = []\n").expect("config");
    let daemon = common::daemon::spawn(
        &root,
        &socket,
        &config,
        &dir.path().join("daemon.log"),
        Duration::from_secs(30),
    );
    let b = Bench {
        root,
        socket,
        daemon,
        dir,
    };
    std::fs::write(
        b.dir.path().join("compose.yaml"),
        format!(
            "name: benchproxy\nservices:\n  bulk:\n    image: {IMAGE}\n    command: [busybox, nc, -ll, -p, '9000', -e, cat, /dev/zero]\n    ports: ['127.0.0.1::9000']\n  echo:\n    image: {IMAGE}\n    command: [busybox, nc, -ll, -p, '9001', -e, cat]\n    ports: ['127.0.0.1::9001']\n"
        ),
    )
    .expect("stack");
    b.cli(&["up", "-d", "--wait"]);
    let (bulk_proxy, bulk_direct) = (b.published("bulk", "9000"), b.address("bulk", 9000));
    let (echo_proxy, echo_direct) = (b.published("echo", "9001"), b.address("echo", 9001));
    println!(
        "bulk: proxy {bulk_proxy}, direct {bulk_direct}; echo: proxy {echo_proxy}, direct {echo_direct}"
    );

    // Warm-up, then alternate the two paths so both see the same machine.
    transfer(bulk_direct);
    transfer(bulk_proxy);
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        direct.push(transfer(bulk_direct));
        proxied.push(transfer(bulk_proxy));
    }
    let (d, p) = (median(direct.clone()), median(proxied.clone()));
    println!(
        "1 GiB transfer, median of {runs}: direct {d:.0} MB/s, through the published port {p:.0} MB/s ({:.0}% of direct; target >= 70%)",
        p / d * 100.0
    );
    println!("  direct runs: {direct:.0?}\n  proxied runs: {proxied:.0?}");

    round_trips(echo_direct);
    let direct = round_trips(echo_direct);
    let proxied = round_trips(echo_proxy);
    let total = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64() * 1000.0;
    for (what, v) in [("direct", &direct), ("proxied", &proxied)] {
        println!(
            "{ROUND_TRIPS} round trips of 64 bytes, {what}: total {:.0} ms, median {:.1} us, p99 {:.1} us",
            total(v),
            us(v[v.len() / 2]),
            us(v[v.len() * 99 / 100])
        );
    }
    let _ = Path::new(b.dir.path());
}
