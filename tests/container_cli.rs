//! Root integration tests of `flotilla container …` through the real binary: run -d / ps / logs /
//! stop / ps -a / inspect, `run --rm` exit codes, pause and unpause (a counter stops and goes on),
//! exec, top and stats, cp both ways (running and stopped containers), commit then run of the
//! new image (a file added, a file deleted through a whiteout), `image rm` refused while a
//! container uses the image, the bad inputs with Docker's exit codes, and `rm` leaving nothing.
//!
//! Each test has its own data root (a tempdir holding busybox imported with `image import`), its
//! own daemon on it (`container exec` goes through the API; FLOTILLA_HOST names its socket) and
//! its own cgroup prefix (`FLOTILLA_CGROUP_PREFIX`); a drop guard kills what the test left running
//! (by pid, from the state files), removes its containers, cgroups, mounts and the data root.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flotilla::runtime::lifecycle;
use flotilla::runtime::state::{self, Status};
use flotilla::runtime::sys::cgroup::{self, Cgroup};

const IMAGE: &str = "flotilla.test/cli-busybox:1";
const TIMEOUT: Duration = Duration::from_secs(60);

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Fixture {
    dir: Option<tempfile::TempDir>,
    prefix: String,
    /// The daemon `container exec` goes through (same data root), killed by pid on drop.
    daemon: Option<std::process::Child>,
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
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let mut f = Fixture {
            dir: Some(dir),
            prefix: format!("cctest-{}-{n}", std::process::id()),
            daemon: None,
        };
        let tar = f.root().join("busybox.tar");
        fs::write(&tar, common::registry::busybox_layer()).unwrap();
        f.ok(&["image", "import", tar.to_str().unwrap(), IMAGE]);
        fs::write(f.root().join("daemon.toml"), "[dns]\nupstreams = []\n").unwrap();
        f.daemon = Some(common::daemon::spawn(
            f.root(),
            &f.socket(),
            &f.root().join("daemon.toml"),
            &f.root().join("daemon.log"),
            TIMEOUT,
        ));
        f
    }

    fn socket(&self) -> PathBuf {
        self.root().join("run/flotilla.sock")
    }

    fn root(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        c.arg("--data-root")
            .arg(self.root())
            .args(args)
            .env("FLOTILLA_CGROUP_PREFIX", &self.prefix)
            .env(
                "FLOTILLA_HOST",
                format!("unix://{}", self.socket().display()),
            )
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run flotilla")
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "flotilla {args:?}: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
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
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let root = self.root().to_path_buf();
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
            let _ = self.run(&["container", "rm", "--force", &id]);
            if let Ok(cg) = Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&self.prefix))) {
                let _ = cg.destroy(true);
            }
        }
        let _ = cgroup::cleanup_prefix(&self.prefix);
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        if let Ok(rt) = lifecycle::Runtime::new(&root) {
            let _ = cgroup::cleanup_prefix(rt.prefix());
        }
        for m in lifecycle::mounts_under(&root).iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
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
    let host = f.root().join("host");
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
    let err = f.fails(
        125,
        &["container", "run", "--rm", "-p", "80:80", IMAGE, "true"],
    );
    assert!(err.contains("not yet supported"), "{err}");
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
