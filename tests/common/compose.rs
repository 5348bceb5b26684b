//! One compose test daemon: `flotilla daemon` on its own tempdir data root, socket and config
//! (`[dns] upstreams = []`), its own cgroup and link prefixes, the busybox test image imported;
//! the real CLI run against it as a subprocess with bounded waits; what it left on the host
//! (`links`, `cgroups`, `leftovers`); and cleanup on drop, even on failure (`down -v` of every
//! stack written, then by pid, by prefix, unmounts). Used by tests/compose_up.rs and
//! tests/compose_watch.rs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla::api::client::{Client, block_on};
use flotilla::api::host::Host;
use flotilla::runtime::lifecycle::{self, Runtime};
use flotilla::runtime::state;
use flotilla::runtime::sys::cgroup::{self, Cgroup};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
pub const IMAGE: &str = "flotilla.test/busybox:1";
/// The longest any single step may take on a loaded machine.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What one CLI run printed.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn text(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

/// A CLI process under way.
pub struct Running {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub started: Instant,
}

impl Running {
    /// Waits for the process at most `limit`; kills it (by its pid) past that.
    pub fn finish(mut self, limit: Duration) -> Out {
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if self.started.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        Out {
            code,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
            took: self.started.elapsed(),
        }
    }
}

/// One daemon on its own data root and socket, with the busybox image imported.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub socket: PathBuf,
    /// The runtime's cgroup prefix (`flotilla-<prefix>`).
    pub cg_prefix: String,
    /// The network prefix: host links are `flt<net_prefix>-…`.
    pub net_prefix: String,
    /// (stack dir, project) of every stack written, for the cleanup's `down -v`.
    pub projects: Vec<(PathBuf, String)>,
    pub calls: std::cell::Cell<u32>,
    /// Extra environment of every CLI call.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon for the `kind` tests (named in the root check), in a tempdir
    /// `flt-<short>-<tag>-…`; `env` is added to every CLI call (the image import included).
    pub fn start_for(kind: &str, short: &str, tag: &str, env: &[(&str, &str)]) -> Daemon {
        assert!(
            rustix::process::geteuid().is_root(),
            "the {kind} tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("flt-{short}-{tag}-"))
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let runtime = Runtime::new(&root).unwrap();
        let cg_prefix = runtime.prefix().to_string();
        let net_prefix: String = cg_prefix.chars().take(4).collect();
        // Names that are not services get NXDOMAIN: nothing is forwarded off this machine.
        fs::write(dir.path().join("daemon.toml"), "[dns]\nupstreams = []\n").unwrap();
        let mut d = Daemon {
            child: None,
            socket: dir.path().join("run/flotilla.sock"),
            dir: Some(dir),
            root,
            cg_prefix,
            net_prefix,
            projects: Vec::new(),
            calls: std::cell::Cell::new(0),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let tar = d.path().join("busybox-rootfs.tar");
        fs::write(&tar, super::registry::busybox_layer()).unwrap();
        d.spawn();
        // Through the daemon, as every image command.
        let out = d.run_at(
            d.path(),
            &["image", "import", tar.to_str().unwrap(), IMAGE],
            TIMEOUT,
        );
        assert!(out.ok(), "image import:\n{}", out.text());
        d
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn spawn(&mut self) {
        self.child = Some(super::daemon::spawn(
            &self.root,
            &self.socket,
            &self.path().join("daemon.toml"),
            &self.path().join("daemon.log"),
            TIMEOUT,
        ));
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    /// `kill -9` of the daemon (by its pid).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to the daemon; waits for it to exit and returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = rustix::process::Pid::from_raw(child.id() as i32)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes `yaml` (with `IMG` replaced by the test image) as `<tmp>/<project>/<file>` and
    /// returns the stack dir. The stack file's `name:` must be `project`.
    pub fn stack(&mut self, project: &str, yaml: &str) -> PathBuf {
        self.stack_file(project, "compose.yaml", yaml)
    }

    pub fn stack_file(&mut self, project: &str, file: &str, yaml: &str) -> PathBuf {
        let dir = self.path().join(project);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(file), yaml.replace("IMG", IMAGE)).unwrap();
        if !self.projects.iter().any(|(_, p)| p == project) {
            self.projects.push((dir.clone(), project.to_string()));
        }
        dir
    }

    pub fn command(&self, cwd: &Path, args: &[&str]) -> Running {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        let stdout = self.path().join(format!("cli-{n}.out"));
        let stderr = self.path().join(format!("cli-{n}.err"));
        let child = Command::new(BIN)
            .arg("--data-root")
            .arg(&self.root)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .env_remove("FLOTILLA_HOST")
            .env_remove("FLOTILLA_ROOT")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .spawn()
            .unwrap();
        Running {
            child,
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    pub fn run_at(&self, cwd: &Path, args: &[&str], limit: Duration) -> Out {
        self.command(cwd, args).finish(limit)
    }

    /// Runs the CLI in `cwd`; it must succeed.
    pub fn ok(&self, cwd: &Path, args: &[&str]) -> Out {
        let out = self.run_at(cwd, args, TIMEOUT);
        assert!(
            out.ok(),
            "flotilla {args:?} failed:\n{}\n--- daemon log (tail)\n{}",
            out.text(),
            tail(&self.log(), 30)
        );
        out
    }

    /// Runs the CLI in `cwd`; it must fail (exit code ≠ 0, not killed by the deadline).
    pub fn fails(&self, cwd: &Path, args: &[&str]) -> Out {
        let out = self.run_at(cwd, args, TIMEOUT);
        assert!(
            out.code.is_some_and(|c| c != 0),
            "flotilla {args:?} should have failed:\n{}",
            out.text()
        );
        out
    }

    /// `ps -a --format json` in the stack dir, by container name.
    pub fn ps(&self, dir: &Path) -> BTreeMap<String, Row> {
        let out = self.ok(dir, &["ps", "-a", "--format", "json"]);
        let rows: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
        rows.iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                let row = Row {
                    id: s("ID"),
                    service: s("Service"),
                    state: s("State"),
                    health: s("Health"),
                    exit_code: r["ExitCode"].as_i64().unwrap_or(-1),
                };
                (s("Name"), row)
            })
            .collect()
    }

    /// All events of this daemon so far, in sequence order.
    pub fn events(&self) -> Vec<Ev> {
        let out = self.ok(
            self.path(),
            &[
                "events", "--since", "0", "--until", "0s", "--format", "json",
            ],
        );
        let mut list: Vec<Ev> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Ev {
                    seq: v["seq"].as_u64().unwrap(),
                    action: v["action"].as_str().unwrap_or_default().to_string(),
                    name: v["name"].as_str().unwrap_or_default().to_string(),
                    id: v["id"].as_str().unwrap_or_default().to_string(),
                    exit_code: v["attributes"]["exitCode"].as_str().map(String::from),
                }
            })
            .collect();
        list.sort_by_key(|e| e.seq);
        list
    }

    /// The nameserver of a container's resolv.conf: its first network's gateway.
    pub fn nameserver(&self, id: &str) -> std::net::Ipv4Addr {
        let text = fs::read_to_string(self.container_dir(id).join("resolv.conf")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("nameserver "))
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no IPv4 nameserver in {text}"))
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// The shim's record of container `id`.
    pub fn state(&self, id: &str) -> state::State {
        state::read(&self.container_dir(id)).unwrap()
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

    /// Names of the daemon's volumes (through the API).
    pub fn volumes(&self) -> Vec<String> {
        let client = Client::new(Host::Unix(self.socket.clone()), None);
        block_on(client.list_volumes(None))
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect()
    }

    /// Host links of this daemon's network prefix.
    pub fn links(&self) -> Vec<String> {
        self.links_until(|_| true)
    }

    /// Host links of this daemon's network prefix once `ok` holds for them (at most 10 s:
    /// removed containers' veths go with their namespaces, in the background).
    pub fn links_until(&self, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        super::links_until(&format!("flt{}-", self.net_prefix), ok)
    }

    /// Child cgroups under `flotilla-<prefix>`, in any hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let top = cgroup::prefix_dir(&self.cg_prefix);
        let bases = std::iter::once(PathBuf::from("/sys/fs/cgroup")).chain(
            fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
        let mut out = Vec::new();
        for base in bases {
            for e in fs::read_dir(base.join(&top))
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        out
    }

    /// Everything of this daemon still on the host (its own process aside).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        left.extend(
            self.links_until(|l| l.is_empty())
                .into_iter()
                .map(|l| format!("link {l}")),
        );
        for e in fs::read_dir(self.root.join("netns"))
            .into_iter()
            .flatten()
            .flatten()
        {
            left.push(format!("netns file {}", e.path().display()));
        }
        for m in lifecycle::mounts_under(&self.root) {
            left.push(format!("mount {}", m.display()));
        }
        for c in self.cgroups() {
            left.push(format!("cgroup {}", c.display()));
        }
        for pid in processes_naming(&self.root, self.daemon_pid()) {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            left.push(format!(
                "process {pid}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
        for id in self.state_dirs() {
            left.push(format!("container state dir {id}"));
        }
        let table = format!("flt{}", self.net_prefix);
        let gone = super::eventually(|| {
            !Command::new("nft")
                .args(["list", "table", "inet", &table])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !gone {
            left.push(format!("nftables table inet {table}"));
        }
        left
    }
}

/// Processes (other than `except`) whose command line names `root`: shims, helpers.
pub fn processes_naming(root: &Path, except: Option<u32>) -> Vec<u32> {
    let needle = root.display().to_string();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Some(*pid) != except)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

pub fn kill9_pid(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Removes from the host everything of a (stopped) test daemon on data root `root` with these
/// cgroup and network prefixes: its containers' shims and processes (by the pids in their state
/// files) and cgroups, helpers that outlived their shim (by pid), whatever else is under the
/// prefixes, and the mounts under `root`.
pub fn remove_everything(root: &Path, cg_prefix: &str, net_prefix: &str) {
    let containers = root.join("containers");
    let ids = fs::read_dir(&containers)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64);
    for id in ids {
        if let Ok(st) = state::read(&containers.join(&id)) {
            for pid in [st.shim_pid, st.pid].into_iter().flatten() {
                kill9_pid(pid);
            }
        }
        let path = format!("{}/{id}", cgroup::prefix_dir(cg_prefix));
        if let Ok(cg) = Cgroup::open(&path) {
            let _ = cg.destroy(true);
        }
    }
    // Helpers (health probes, netns setup) that outlived their shim.
    for pid in processes_naming(root, None) {
        kill9_pid(pid as i32);
    }
    let _ = cgroup::cleanup_prefix(cg_prefix);
    let _ = flotilla::network::cleanup_prefix(net_prefix, root);
    for m in lifecycle::mounts_under(root).iter().rev() {
        let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            for (dir, project) in self.projects.clone() {
                let _ = self
                    .command(&dir, &["-p", &project, "down", "-v", "-t", "0"])
                    .finish(Duration::from_secs(30));
            }
        }
        self.kill9();
        remove_everything(&self.root, &self.cg_prefix, &self.net_prefix);
        if std::thread::panicking() && self.dir.is_some() {
            eprintln!("--- daemon log (tail)\n{}", tail(&self.log(), 60));
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// One `ps --format json` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub service: String,
    pub state: String,
    pub health: String,
    pub exit_code: i64,
}

/// One event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub seq: u64,
    pub action: String,
    pub name: String,
    pub id: String,
    pub exit_code: Option<String>,
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `f` until it returns `Some`, at most `limit`.
pub fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
