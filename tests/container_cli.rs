//! Root integration tests of `flotilla container …` through the real binary against a real
//! daemon: run -d / ps / logs / stop / ps -a / inspect, `run --rm` exit codes and output
//! streams, PID 1, hostname, masked /proc/kcore, read-only root, memory (OOM kill, 137), pids
//! limit, stop grace period, restart, pause and unpause (a counter stops and goes on), exec,
//! top and stats, cp both ways (running and stopped containers), commit then run of the new
//! image (a file added, a file deleted through a whiteout), `image rm` refused while a
//! container uses the image, the bad inputs with Docker's exit codes, `rm` leaving nothing, and
//! `run -d --rm` removed by the daemon after the exit.
//!
//! Each test starts `flotilla daemon` on its own data root (holding busybox), socket and config
//! (`[dns] upstreams = []`), and passes `--host unix://…` to every command; its cgroup prefix is
//! the daemon's (derived from the root). A drop guard removes its containers, stops the daemon
//! by pid, kills what is left (by pid, from the state files), removes cgroups, mounts and the
//! data root.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla::runtime::lifecycle::{self, Runtime};
use flotilla::runtime::state::{self, Status};
use flotilla::runtime::sys::cgroup::{self, Cgroup};

const IMAGE: &str = "flotilla.test/cli-busybox:1";
const TIMEOUT: Duration = Duration::from_secs(60);

struct Fixture {
    dir: Option<tempfile::TempDir>,
    daemon: Option<Child>,
    root: PathBuf,
    socket: PathBuf,
    prefix: String,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            rustix::process::geteuid().is_root(),
            "the container CLI tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("flt-cc-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        common::daemon::import_busybox(&root, IMAGE);
        // Nothing is forwarded off this machine.
        fs::write(dir.path().join("daemon.toml"), "[dns]\nupstreams = []\n").unwrap();
        let prefix = Runtime::new(&root).unwrap().prefix().to_string();
        let socket = dir.path().join("run/flotilla.sock");
        let daemon = common::daemon::spawn(
            &root,
            &socket,
            &dir.path().join("daemon.toml"),
            &dir.path().join("daemon.log"),
            TIMEOUT,
        );
        Fixture {
            dir: Some(dir),
            daemon: Some(daemon),
            root,
            socket,
            prefix,
        }
    }

    fn root(&self) -> &Path {
        &self.root
    }

    /// A scratch directory of the test (beside the data root).
    fn scratch(&self) -> PathBuf {
        let d = self.dir.as_ref().unwrap().path().join("scratch");
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.as_ref().unwrap().path().join("daemon.log")).unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(common::daemon::BIN);
        c.arg("--data-root")
            .arg(&self.root)
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env_remove("FLOTILLA_HOST")
            .env_remove("FLOTILLA_CGROUP_PREFIX")
            .stdin(Stdio::null());
        c
    }

    /// Runs the CLI to its end (bounded: killed by its pid past [`TIMEOUT`]).
    fn run(&self, args: &[&str]) -> Output {
        let child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flotilla");
        finish(child, args)
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "flotilla {args:?}: {}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and asserts failure with `code`; returns stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(code), "flotilla {args:?}: {err}");
        err
    }

    fn containers_dir(&self) -> PathBuf {
        self.root().join("containers")
    }

    fn ids(&self) -> Vec<String> {
        fs::read_dir(self.containers_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let text = self.ok(&["container", "inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v[0].clone()
    }

    fn until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts that nothing of container `id` is left: dir, cgroup, mounts, processes.
    fn assert_gone(&self, id: &str, pids: &[i32]) {
        assert!(!self.containers_dir().join(id).exists(), "state dir left");
        let cg = Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&self.prefix)));
        assert!(cg.is_ok_and(|c| !c.exists()), "cgroup left");
        assert!(lifecycle::mounts_under(&self.containers_dir().join(id)).is_empty());
        for pid in pids {
            self.until("the container's processes to go", || {
                !Path::new(&format!("/proc/{pid}")).exists()
                    || fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
            });
        }
    }

    /// Stops the daemon (SIGTERM by pid, then SIGKILL past a bound).
    fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
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
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            for id in self.ids() {
                let _ = self.run(&["container", "rm", "--force", &id]);
            }
        }
        self.stop_daemon();
        for id in self.ids() {
            let dir = self.containers_dir().join(&id);
            if let Ok(st) = state::read(&dir) {
                for (pid, start) in [(st.shim_pid, st.shim_start_time), (st.pid, None)] {
                    if let Some(pid) = pid
                        && (start.is_none() || state::process_alive(pid, start))
                        && matches!(st.status, Status::Running | Status::Paused)
                        && let Some(p) = rustix::process::Pid::from_raw(pid)
                    {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    }
                }
            }
            if let Ok(cg) = Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&self.prefix))) {
                let _ = cg.destroy(true);
            }
        }
        let _ = cgroup::cleanup_prefix(&self.prefix);
        let net: String = self.prefix.chars().take(4).collect();
        let _ = flotilla::network::cleanup_prefix(&net, &self.root);
        for m in lifecycle::mounts_under(&self.root).iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Waits (bounded) for a child and collects its output; past the bound it is killed by pid.
fn finish(mut child: Child, what: &[&str]) -> Output {
    let reader = |s: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut s) = s {
                let _ = s.read_to_end(&mut b);
            }
            b
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
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
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

const COUNTER: &str = "trap 'exit 0' TERM; i=0; \
                       while true; do i=$((i+1)); echo $i > /tmp/count; echo tick $i; sleep 0.1; done";

fn counter(pid: i64) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/root/tmp/count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn run_detached_ps_logs_pause_stop_inspect_and_rm() {
    let f = Fixture::new();
    let id = f
        .ok(&[
            "container",
            "run",
            "-d",
            "--name",
            "counter",
            "-m",
            "64m",
            "--pids-limit",
            "50",
            IMAGE,
            "sh",
            "-c",
            COUNTER,
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = f.ok(&["container", "ps"]);
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    let row = ps.lines().find(|l| l.contains("counter")).expect(&ps);
    assert!(row.contains(&id[..12]) && row.contains(" Up "), "{row}");
    f.until("a log line", || {
        f.ok(&["container", "logs", "counter"]).contains("tick 2")
    });
    let tail = f.ok(&["container", "logs", "--tail", "1", "counter"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");

    let doc = f.inspect("counter");
    let pid = doc["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(doc["State"]["Running"], true);
    assert_eq!(doc["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(doc["HostConfig"]["PidsLimit"], 50);

    // top and stats.
    let top = f.ok(&["container", "top", "counter"]);
    assert!(
        top.starts_with("UID") && top.contains(&pid.to_string()),
        "{top}"
    );
    let stats = f.ok(&["container", "stats", "--no-stream", "counter"]);
    assert!(stats.contains("MEM USAGE / LIMIT"), "{stats}");
    assert!(stats.contains("/ 64MiB"), "{stats}");

    // exec sees the same filesystem; its status is propagated.
    let o = f.run(&[
        "container",
        "exec",
        "counter",
        "sh",
        "-c",
        "cat /tmp/count; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5));
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());

    // pause freezes the counter, unpause lets it go on.
    f.ok(&["container", "pause", "counter"]);
    assert!(f.ok(&["container", "ps"]).contains("(Paused)"));
    let frozen = counter(pid);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(counter(pid), frozen, "the counter advanced while paused");
    f.ok(&["container", "unpause", "counter"]);
    f.until("the counter to advance", || counter(pid) > frozen);

    // stop: the trap exits 0.
    f.ok(&["container", "stop", "counter"]);
    assert!(f.ok(&["container", "ps"]).lines().count() == 1);
    let all = f.ok(&["container", "ps", "-a"]);
    assert!(all.contains("Exited (0)"), "{all}");
    let doc = f.inspect("counter");
    assert_eq!(doc["State"]["Status"], "exited");
    assert_eq!(doc["State"]["ExitCode"], 0);
    assert_eq!(doc["State"]["OOMKilled"], false);
    assert_eq!(doc["Name"], "/counter");
    assert_eq!(doc["Config"]["Image"], IMAGE);
    assert!(
        doc["State"]["FinishedAt"].as_str().unwrap() > doc["State"]["StartedAt"].as_str().unwrap()
    );
    let json = f.ok(&["container", "ls", "-a", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(row["State"], "exited");
    assert_eq!(f.ok(&["container", "ls", "-aq"]).trim(), &id[..12]);

    f.ok(&["container", "rm", "counter"]);
    f.assert_gone(&id, &[pid as i32]);
    assert!(f.ok(&["container", "ps", "-a"]).lines().count() == 1);
}

#[test]
fn run_rm_propagates_the_exit_code_and_leaves_nothing() {
    let f = Fixture::new();
    let o = f.run(&[
        "container",
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "to-err\n");
    assert!(f.ids().is_empty(), "--rm left {:?}", f.ids());
    // stdin with -i.
    let mut child = f
        .cmd(&["container", "run", "--rm", "-i", IMAGE, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through stdin\n");
    // A kept container records its exit.
    let o = f.run(&[
        "container",
        "run",
        "--name",
        "kept",
        IMAGE,
        "sh",
        "-c",
        "exit 1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(f.ok(&["container", "ps", "-a"]).contains("Exited (1)"));
    assert_eq!(f.ok(&["container", "wait", "kept"]).trim(), "1");
}

#[test]
fn cp_both_ways_running_and_stopped() {
    let f = Fixture::new();
    let host = f.scratch().join("host");
    fs::create_dir_all(host.join("tree/sub")).unwrap();
    fs::write(host.join("file.txt"), "from host\n").unwrap();
    fs::write(host.join("tree/sub/deep"), "deep\n").unwrap();
    f.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "box",
        IMAGE,
        "sh",
        "-c",
        "echo inside > /tmp/made; busybox mkdir /etc; busybox ln -s /etc /tmp/escape; sleep 1000",
    ]);
    f.until("the file in the container", || {
        f.run(&[
            "container",
            "exec",
            "box",
            "sh",
            "-c",
            "test -L /tmp/escape",
        ])
        .status
        .success()
    });
    let file = host.join("file.txt");
    f.ok(&["container", "cp", file.to_str().unwrap(), "box:/tmp/"]);
    f.ok(&[
        "container",
        "cp",
        host.join("tree").to_str().unwrap(),
        "box:/tmp/tree",
    ]);
    let o = f.ok(&[
        "container",
        "exec",
        "box",
        "cat",
        "/tmp/file.txt",
        "/tmp/tree/sub/deep",
    ]);
    assert_eq!(o, "from host\ndeep\n");
    let out = host.join("made.out");
    f.ok(&["container", "cp", "box:/tmp/made", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&out).unwrap(), "inside\n");
    // A symlink planted in the container resolves inside it, never to the host's /etc.
    f.ok(&[
        "container",
        "cp",
        file.to_str().unwrap(),
        "box:/tmp/escape/planted",
    ]);
    assert!(!Path::new("/etc/planted").exists());
    let o = f.ok(&["container", "exec", "box", "cat", "/etc/planted"]);
    assert_eq!(o, "from host\n");

    // Stopped: through the layers and the upper dir.
    f.ok(&["container", "stop", "-t", "0", "box"]);
    let back = host.join("back");
    f.ok(&["container", "cp", "box:/tmp/tree", back.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(back.join("sub/deep")).unwrap(), "deep\n");
    f.ok(&[
        "container",
        "cp",
        "box:/bin/busybox",
        host.to_str().unwrap(),
    ]);
    assert!(host.join("busybox").metadata().unwrap().len() > 100_000);
    f.ok(&[
        "container",
        "cp",
        file.to_str().unwrap(),
        "box:/stopped.txt",
    ]);
    f.ok(&["container", "start", "box"]);
    let o = f.ok(&["container", "exec", "box", "cat", "/stopped.txt"]);
    assert_eq!(o, "from host\n");
    // A missing container path: one clear line, nothing made on the host.
    let missing = host.join("never");
    let err = f.fails(
        1,
        &[
            "container",
            "cp",
            "box:/no/such/file",
            missing.to_str().unwrap(),
        ],
    );
    assert!(err.contains("/no/such/file"), "{err}");
    assert!(!missing.exists());
    assert!(
        fs::read_dir(&host)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".flotilla-cp")),
        "staging left"
    );
    let err = f.fails(
        1,
        &["container", "cp", file.to_str().unwrap(), "nosuch:/tmp"],
    );
    assert!(err.contains("no such container: nosuch"), "{err}");
    let err = f.fails(1, &["container", "cp", "/no/such/host/file", "box:/tmp"]);
    assert!(err.contains("/no/such/host/file"), "{err}");
    // The stopped copies left no mount behind.
    assert!(lifecycle::mounts_under(&f.containers_dir()).is_empty());
    f.ok(&["container", "rm", "-f", "box"]);
}

#[test]
fn commit_makes_an_image_that_runs_and_image_rm_refuses_an_image_in_use() {
    let f = Fixture::new();
    f.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "src",
        IMAGE,
        "sh",
        "-c",
        "echo committed > /hello; busybox rm /bin/true; busybox mkdir -p /data/d; sleep 1000",
    ]);
    f.until("the file", || {
        f.run(&["container", "exec", "src", "sh", "-c", "test -d /data/d"])
            .status
            .success()
    });
    let image_id = f.ok(&[
        "container",
        "commit",
        "-m",
        "snapshot",
        "--change",
        "CMD [\"cat\", \"/hello\"]",
        "src",
        "flotilla.test/committed:1",
    ]);
    assert!(image_id.trim().starts_with("sha256:"), "{image_id}");
    // Still running after the pause of the commit.
    assert!(f.ok(&["container", "ps"]).contains(" Up "));
    let o = f.run(&["container", "run", "--rm", "flotilla.test/committed:1"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "committed\n");
    assert!(o.status.success());
    // The deletion travelled as a whiteout.
    let o = f.run(&[
        "container",
        "run",
        "--rm",
        "flotilla.test/committed:1",
        "sh",
        "-c",
        "test -e /bin/true || echo gone; test -d /data/d && echo dir",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "gone\ndir\n");

    // The base image is in use by `src`.
    let err = f.fails(1, &["image", "rm", IMAGE]);
    assert!(err.contains("in use by container(s) src"), "{err}");
    f.ok(&["container", "rm", "-f", "src"]);
    f.ok(&["image", "rm", "flotilla.test/committed:1"]);
    f.ok(&["image", "rm", IMAGE]);
}

#[test]
fn bad_input_is_refused_with_dockers_exit_codes_and_leaves_nothing() {
    let f = Fixture::new();
    let err = f.fails(125, &["container", "run", "--rm", "nosuch/image:1", "true"]);
    assert!(err.contains("no such image"), "{err}");
    let err = f.fails(127, &["container", "run", "--rm", IMAGE, "no-such-command"]);
    assert!(
        err.contains("\"no-such-command\": executable file not found in $PATH"),
        "{err}"
    );
    let err = f.fails(
        125,
        &["container", "run", "--rm", "-m", "12zb", IMAGE, "true"],
    );
    assert!(err.contains("--memory") && err.contains("12zb"), "{err}");
    let err = f.run(&[
        "container",
        "run",
        "--rm",
        "-u",
        "nosuchuser",
        IMAGE,
        "true",
    ]);
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("nosuchuser"),
        "{err:?}"
    );
    // A port published without a bridge network: tests/container_networks.rs.
    assert!(f.ids().is_empty(), "bad runs left {:?}", f.ids());
    assert!(lifecycle::mounts_under(f.root()).is_empty());

    f.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "taken",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let err = f.fails(125, &["container", "run", "--name", "taken", IMAGE, "true"]);
    assert!(err.contains("already in use"), "{err}");
    let err = f.fails(1, &["container", "unpause", "taken"]);
    assert!(
        err.contains("is running: unpause needs a paused container"),
        "{err}"
    );
    let err = f.fails(1, &["container", "start", "taken"]);
    assert!(err.contains("is running: start needs"), "{err}");
    let err = f.fails(1, &["container", "rm", "taken"]);
    assert!(err.contains("is running: rm needs"), "{err}");
    let err = f.fails(1, &["container", "stop", "nosuch"]);
    assert!(err.contains("no such container: nosuch"), "{err}");
    assert_eq!(f.ids().len(), 1);
    f.ok(&["container", "rm", "-f", "taken"]);
    assert!(f.ids().is_empty());
}

#[test]
fn isolation_limits_and_the_stop_grace_period() {
    let f = Fixture::new();
    // PID 1, its own hostname, /proc/kcore masked, a read-only root.
    assert_eq!(
        f.ok(&["container", "run", "--rm", IMAGE, "sh", "-c", "echo $$"]),
        "1\n"
    );
    assert_eq!(
        f.ok(&[
            "container",
            "run",
            "--rm",
            "--hostname",
            "box",
            IMAGE,
            "busybox",
            "hostname"
        ]),
        "box\n"
    );
    // /proc/kcore is masked (an empty file); kernels without it have /proc/timer_list.
    let masked = ["/proc/kcore", "/proc/timer_list"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a masked /proc file on this host");
    let script = format!("wc -c < {masked}");
    assert_eq!(
        f.ok(&["container", "run", "--rm", IMAGE, "sh", "-c", &script])
            .trim(),
        "0"
    );
    let o = f.run(&[
        "container",
        "run",
        "--rm",
        "--read-only",
        IMAGE,
        "sh",
        "-c",
        "touch /made",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{o:?}"
    );
    // The memory limit: the kernel kills the process, Docker's 137, OOMKilled.
    let o = f.run(&[
        "container",
        "run",
        "--name",
        "oom",
        "-m",
        "16m",
        IMAGE,
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    assert_eq!(f.inspect("oom")["State"]["OOMKilled"], true);
    f.ok(&["container", "rm", "oom"]);
    // The pids limit: forks beyond it fail.
    let o = f.run(&[
        "container",
        "run",
        "--rm",
        "--pids-limit",
        "8",
        IMAGE,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done; wait",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("can't fork"),
        "{o:?}"
    );
    // A PID 1 that catches SIGTERM and goes on is killed once the grace period is over.
    f.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "grace",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo term' TERM; while true; do sleep 0.1; done",
    ]);
    let t = Instant::now();
    f.ok(&["container", "stop", "-t", "1", "grace"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(f.inspect("grace")["State"]["ExitCode"], 137);
    // restart runs it again; the trap is back in place.
    f.ok(&["container", "restart", "-t", "1", "grace"]);
    assert_eq!(f.inspect("grace")["State"]["Running"], true);
    f.ok(&["container", "rm", "-f", "grace"]);
    assert!(f.ids().is_empty(), "left {:?}", f.ids());
}

#[test]
fn detached_rm_is_removed_by_the_daemon_and_logs_take_options() {
    let f = Fixture::new();
    let id = f
        .ok(&[
            "container",
            "run",
            "-d",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "echo one; echo two; sleep 0.5",
        ])
        .trim()
        .to_string();
    // The CLI is gone: the daemon removes the container after its exit.
    f.until("the daemon to remove the container", || {
        !f.containers_dir().join(&id).exists()
    });
    f.assert_gone(&id, &[]);
    // logs: -t prefixes the time, --since in the future shows nothing, -f ends at the exit.
    f.ok(&[
        "container",
        "run",
        "--name",
        "talk",
        IMAGE,
        "sh",
        "-c",
        "echo a; echo b >&2",
    ]);
    let o = f.run(&["container", "logs", "-t", "talk"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.ends_with(" a\n") && out.starts_with("20"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).ends_with(" b\n"));
    assert_eq!(
        f.ok(&[
            "container",
            "logs",
            "--since",
            "2999-01-01T00:00:00Z",
            "talk"
        ]),
        ""
    );
    assert_eq!(f.ok(&["container", "logs", "-f", "talk"]), "a\n");
    let err = f.fails(1, &["container", "logs", "--tail", "x", "talk"]);
    assert!(err.contains("--tail"), "{err}");
    let err = f.fails(1, &["container", "top", "talk"]);
    assert!(err.contains("top needs a running container"), "{err}");
    f.ok(&["container", "rm", "talk"]);
    assert!(f.ids().is_empty());
}

#[test]
fn attached_run_forwards_signals_to_the_container() {
    let f = Fixture::new();
    let child = f
        .cmd(&[
            "container",
            "run",
            "--rm",
            "--name",
            "proxy",
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Polled with run: the container may not exist yet.
    f.until("the container to run", || {
        String::from_utf8_lossy(&f.run(&["container", "logs", "proxy"]).stdout).contains("ready")
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let o = finish(child, &["run", "proxy"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ready\ngot term\n");
    assert!(f.ids().is_empty(), "--rm left {:?}", f.ids());
}

/// The daemon's children running `flotilla shim … zygote …` (its fork server).
fn zygotes_of(daemon: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(daemon) && cmdline.windows(8).any(|w| w == b"\0zygote\0") {
            found.push(pid);
        }
    }
    found
}

/// Starts (network none, and the default bridge network's netns helper) go through one fork
/// server of the daemon's, started on the first start from the daemon's sealed copy; several
/// runs at once all succeed; the fork server goes with the daemon.
#[test]
fn the_daemons_fork_server_serves_starts_and_goes_with_the_daemon() {
    let mut f = Fixture::new();
    let daemon = f.daemon.as_ref().unwrap().id();
    assert!(zygotes_of(daemon).is_empty(), "a zygote before any start");
    f.ok(&[
        "container",
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "true",
    ]);
    let zygotes = zygotes_of(daemon);
    assert_eq!(zygotes.len(), 1, "{zygotes:?}");
    let exe = fs::read_link(format!("/proc/{}/exe", zygotes[0])).unwrap();
    assert!(exe.to_string_lossy().contains("memfd:"), "{exe:?}");
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let f = &f;
                s.spawn(move || {
                    let out = f.ok(&["container", "run", "--rm", IMAGE, "echo", &format!("n{i}")]);
                    assert_eq!(out, format!("n{i}\n"));
                })
            })
            .collect();
        for r in runs {
            r.join().unwrap();
        }
    });
    assert_eq!(
        zygotes_of(daemon),
        zygotes,
        "the same fork server served them"
    );
    f.stop_daemon();
    for z in &zygotes {
        f.until("the fork server to go with the daemon", || {
            !Path::new(&format!("/proc/{z}")).exists()
        });
    }
}
