//! The Compose commands of the CLI against a real daemon (root): each test starts `flotilla
//! daemon` on its own data root (holding a one-layer busybox image) and socket, runs the CLI in
//! a directory holding a two-service stack with a unique project name, and checks the effects
//! through `ps --format json`: `logs` (prefixes, services, merged order, `--no-log-prefix`),
//! `stop`, `start`, `restart`, `kill`, `pause`, `unpause`, `rm`, `wait`, `compose events`,
//! `compose images`, unknown services; attached `up` stopped by SIGINT, `--exit-code-from`,
//! and an attached `up` whose containers all exit by themselves; published ports in `ps`,
//! `port`, `scale` and `exec` (on a loopback port the test found free). Each test ends with
//! `down`, then kills its daemon by pid and checks that no container, netns file or link of its
//! network prefix is left; a drop guard cleans up the same way when a test fails.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::netdaemon::finish_output as finish;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const IMAGE: &str = "flotilla.test/busybox:latest";
const TIMEOUT: Duration = Duration::from_secs(60);

struct Daemon {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    socket: PathBuf,
    /// The cgroup prefix, and the network prefix (its first 4 characters).
    prefix: String,
    net: String,
    /// Stack directories whose project is taken down on drop.
    stacks: Vec<PathBuf>,
}

impl Daemon {
    fn start() -> Daemon {
        let f = common::netdaemon::Fresh::start("the compose CLI", "cc", true);
        Daemon {
            child: Some(f.child),
            dir: Some(f.dir),
            root: f.root,
            socket: f.socket,
            prefix: f.prefix,
            net: f.net,
            stacks: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    /// A directory holding `compose.yaml` for project `name`.
    fn stack(&mut self, name: &str, yaml: &str) -> PathBuf {
        let dir = self.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("compose.yaml"), yaml).unwrap();
        self.stacks.push(dir.clone());
        dir
    }

    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-root")
            .arg(&self.root)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .current_dir(dir)
            .env_remove("FLOTILLA_HOST")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES")
            .env_remove("COMPOSE_PROJECT_NAME")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the CLI to its end (bounded).
    fn cli(&self, dir: &Path, args: &[&str]) -> Output {
        let child = self
            .command(dir, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        finish(child, args)
    }

    /// Runs the CLI and expects success; its standard output.
    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let o = self.cli(dir, args);
        assert!(
            o.status.success(),
            "{args:?}: {}\nstdout:\n{}\nstderr:\n{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// `ps -a --format json`: service → (state, exit code) for each container.
    fn states(&self, dir: &Path) -> Vec<(String, String, i64)> {
        let out = self.ok(dir, &["ps", "-a", "--format", "json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        rows.iter()
            .map(|r| {
                (
                    r["Service"].as_str().unwrap().to_string(),
                    r["State"].as_str().unwrap().to_string(),
                    r["ExitCode"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    fn state_of(&self, dir: &Path, service: &str) -> Option<String> {
        self.states(dir)
            .into_iter()
            .find(|(s, _, _)| s == service)
            .map(|(_, st, _)| st)
    }

    /// Polls until `service`'s container is in `want` (bounded).
    fn wait_state(&self, dir: &Path, service: &str, want: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let now = self.state_of(dir, service);
            if now.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{service}: {now:?}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn state_dirs(&self) -> Vec<String> {
        fs::read_dir(self.root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    }

    fn links(&self) -> Vec<String> {
        let start = format!("flt{}-", self.net);
        fs::read_dir("/sys/class/net")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&start))
            .collect()
    }

    fn netns_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root.join("netns"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// SIGTERM to the daemon by pid, then SIGKILL if it lingers.
    fn stop_daemon(&mut self) {
        common::netdaemon::stop_child(self.child.take());
    }

    /// `down` of every stack, the daemon stopped, and nothing of it left on the host.
    fn finish(mut self) {
        for dir in std::mem::take(&mut self.stacks) {
            self.ok(&dir, &["down"]);
        }
        self.stop_daemon();
        assert_eq!(self.state_dirs(), Vec::<String>::new(), "containers left");
        assert_eq!(
            self.netns_files(),
            Vec::<PathBuf>::new(),
            "netns files left"
        );
        // A removed network namespace is torn down by the kernel asynchronously (its veths
        // with it): give it a moment before calling what is left a leak.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.links().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let links = self.links();
        if !links.is_empty() {
            let detail = Command::new("ip")
                .args(["-d", "link", "show"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            eprintln!("--- links\n{detail}\n--- daemon log\n{}", self.log());
        }
        assert_eq!(links, Vec::<String>::new(), "links left");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for dir in std::mem::take(&mut self.stacks) {
            if self.child.is_some() {
                let _ = self.cli(&dir, &["down", "-t", "1"]);
            }
        }
        self.stop_daemon();
        common::compose::remove_everything(&self.root, &self.prefix, &self.net);
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A CLI left running (attached `up`, `logs -f`, `events`), its standard output read line by
/// line on a thread.
struct Running {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    fn spawn(d: &Daemon, dir: &Path, args: &[&str]) -> Running {
        let mut child = d
            .command(dir, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = stderr.read_to_end(&mut b);
            b
        });
        Running {
            child: Some(child),
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Reads lines until one contains `needle` (bounded).
    fn expect(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; got:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let p = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(p, sig).unwrap();
    }

    /// Waits (bounded) for the end: exit code, all of standard output, standard error.
    fn wait(mut self) -> (Option<i32>, String, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("did not exit; output:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        let err = self.stderr.take().unwrap().join().unwrap();
        (status.code(), self.seen.join("\n"), text(&err))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A unique project name.
fn project(tag: &str) -> String {
    let mut b = [0u8; 3];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    format!("cc{tag}{}", hex::encode(b))
}

/// web prints to both streams and stops on SIGTERM; db is a plain `sleep` as PID 1.
fn two_services(name: &str) -> String {
    format!(
        r#"name: {name}
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "echo web says hello; echo web complains >&2; trap 'echo web bye; exit 0' TERM; while true; do sleep 0.1; done"]
  db:
    image: {IMAGE}
    command: ["sh", "-c", "echo db ready; exec sleep 1000"]
"#
    )
}

#[test]
fn lifecycle_commands_act_on_the_selected_services() {
    let mut d = Daemon::start();
    let name = project("l");
    let dir = d.stack(&name, &two_services(&name));
    d.ok(&dir, &["up", "-d"]);
    let web = format!("{name}-web-1");
    let db = format!("{name}-db-1");

    // logs: every container, merged, with Compose's padded prefixes; stderr lines on stderr.
    let deadline = Instant::now() + TIMEOUT;
    let out = loop {
        let o = d.cli(&dir, &["logs"]);
        let out = text(&o.stdout);
        if out.contains("web says hello") && out.contains("db ready") {
            assert!(text(&o.stderr).contains("web-1  | web complains"), "{o:?}");
            break out;
        }
        assert!(Instant::now() < deadline, "logs: {o:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(out.contains("web-1  | web says hello\n"), "{out}");
    assert!(out.contains("db-1   | db ready\n"), "{out}");
    assert!(!out.contains('\x1b'), "no colours off a terminal: {out:?}");
    let out = d.ok(&dir, &["logs", "--no-log-prefix", "web"]);
    assert_eq!(out, "web says hello\n");
    let out = d.ok(&dir, &["logs", "-t", "--index", "1", "db"]);
    assert!(
        out.starts_with("db-1  | 20") && out.ends_with("Z db ready\n"),
        "{out:?}"
    );
    let out = d.ok(&dir, &["compose", "logs", "--tail", "1", "db"]);
    assert_eq!(out, "db-1  | db ready\n");

    // Unknown services: exit 1, naming the service and the project.
    for args in [
        &["logs", "nope"][..],
        &["stop", "web", "nope"],
        &["start", "nope"],
        &["rm", "-f", "nope"],
        &["up", "-d", "nope"],
    ] {
        let o = d.cli(&dir, args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("no such service: nope") && err.contains(&name),
            "{args:?}: {err}"
        );
    }
    // A project known by nothing: Compose's message.
    let empty = d.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let o = d.cli(&empty, &["-p", "ccnothinghere", "stop"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no container found for project \"ccnothinghere\""),
        "{o:?}"
    );

    // stop / start one service.
    let out = d.ok(&dir, &["stop", "-t", "5", "web"]);
    assert!(
        out.contains(&format!(" Container {web}  Stopping")),
        "{out}"
    );
    assert!(out.contains(&format!(" Container {web}  Stopped")), "{out}");
    assert_eq!(d.state_of(&dir, "web").as_deref(), Some("exited"));
    assert_eq!(d.state_of(&dir, "db").as_deref(), Some("running"));
    let out = d.ok(&dir, &["start"]);
    assert!(out.contains(&format!(" Container {web}  Started")), "{out}");
    assert!(!out.contains(&db), "db already runs: {out}");
    assert_eq!(d.state_of(&dir, "web").as_deref(), Some("running"));

    // restart: both, running again.
    let out = d.ok(&dir, &["restart", "-t", "5"]);
    for c in [&web, &db] {
        assert!(
            out.contains(&format!(" Container {c}  Restarting")),
            "{out}"
        );
        assert!(out.contains(&format!(" Container {c}  Started")), "{out}");
    }
    assert!(d.states(&dir).iter().all(|(_, st, _)| st == "running"));

    // pause / unpause.
    let out = d.ok(&dir, &["pause", "db"]);
    assert!(out.contains(&format!(" Container {db}  Paused")), "{out}");
    assert_eq!(d.state_of(&dir, "db").as_deref(), Some("paused"));
    let out = d.ok(&dir, &["unpause"]);
    assert!(out.contains(&format!(" Container {db}  Unpaused")), "{out}");
    assert_eq!(d.state_of(&dir, "db").as_deref(), Some("running"));

    // events of the project, while kill -s TERM stops web.
    let mut events = Running::spawn(&d, &dir, &["compose", "events", "--json"]);
    std::thread::sleep(Duration::from_millis(300));
    let out = d.ok(&dir, &["kill", "-s", "SIGTERM", "web"]);
    assert!(out.contains(&format!(" Container {web}  Killed")), "{out}");
    d.wait_state(&dir, "web", "exited");
    let line = events.expect("\"action\":\"die\"");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["service"], "web", "{line}");
    assert_eq!(v["attributes"]["name"], web.as_str(), "{line}");
    drop(events);
    let o = d.cli(&dir, &["kill", "web"]);
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("no container to kill"), "{o:?}");

    // images of the project.
    let out = d.ok(&dir, &["compose", "images"]);
    assert!(out.starts_with("CONTAINER"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&web) && l.contains("flotilla.test/busybox")),
        "{out}"
    );

    // rm: only stopped containers, asking nothing.
    let o = d.cli(&dir, &["rm", "-f", "db"]);
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("No stopped containers"), "{o:?}");
    assert_eq!(d.state_of(&dir, "db").as_deref(), Some("running"));

    // wait: the first container's exit code (a killed sleep: 137).
    let waiting = Running::spawn(&d, &dir, &["wait", "db"]);
    std::thread::sleep(Duration::from_millis(300));
    d.ok(&dir, &["kill", "db"]);
    let (code, _, err) = waiting.wait();
    let exit = d
        .states(&dir)
        .into_iter()
        .find(|(s, _, _)| s == "db")
        .map(|(_, _, c)| c)
        .unwrap();
    assert_eq!(code, Some(exit as i32), "{err}");
    assert_eq!(exit, 137);
    d.finish();
}

/// `rm` removes only stopped containers, and with `-s` stops the others first; the removed
/// containers' network endpoints are released (`down` then removes the network).
#[test]
fn rm_removes_stopped_containers_and_their_endpoints() {
    let mut d = Daemon::start();
    let name = project("r");
    let dir = d.stack(&name, &two_services(&name));
    d.ok(&dir, &["up", "-d"]);
    let (web, db) = (format!("{name}-web-1"), format!("{name}-db-1"));
    d.ok(&dir, &["stop", "web"]);
    let out = d.ok(&dir, &["rm"]);
    assert!(out.contains(&format!(" Container {web}  Removed")), "{out}");
    assert!(!out.contains(&db), "{out}");
    assert_eq!(d.state_of(&dir, "web"), None);
    assert_eq!(d.state_of(&dir, "db").as_deref(), Some("running"));
    let out = d.ok(&dir, &["rm", "-s", "-v"]);
    assert!(out.contains(&format!(" Container {db}  Stopped")), "{out}");
    assert!(out.contains(&format!(" Container {db}  Removed")), "{out}");
    assert_eq!(d.states(&dir), Vec::new());
    assert_eq!(d.netns_files(), Vec::<PathBuf>::new(), "netns files left");
    d.finish();
}

#[test]
fn attached_up_follows_logs_and_stops_on_ctrl_c() {
    let mut d = Daemon::start();

    // Ctrl-C: graceful stop of every container, exit 130.
    let name = project("a");
    let dir = d.stack(&name, &two_services(&name));
    let mut up = Running::spawn(&d, &dir, &["up"]);
    up.expect("Attaching to ");
    up.expect("web-1  | web says hello");
    up.expect("db-1   | db ready");
    up.signal(rustix::process::Signal::INT);
    let (code, out, err) = up.wait();
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert!(
        err.contains("Gracefully stopping... (press Ctrl+C again to force)"),
        "{err}"
    );
    assert!(out.contains("web-1  | web bye"), "{out}");
    assert!(
        out.contains(&format!(" Container {name}-web-1  Stopped")),
        "{out}"
    );
    assert!(out.contains("web-1 exited with code 0"), "{out}");
    let states = d.states(&dir);
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|(_, st, _)| st == "exited"), "{states:?}");

    // --exit-code-from: the job's code; the other service is stopped.
    let job = project("j");
    let jdir = d.stack(
        &job,
        &format!(
            r#"name: {job}
services:
  job:
    image: {IMAGE}
    command: ["sh", "-c", "sleep 0.5; echo job done; exit 3"]
  web:
    image: {IMAGE}
    command: ["sh", "-c", "echo serving; exec sleep 1000"]
"#
        ),
    );
    let o = d.cli(&jdir, &["up", "--exit-code-from", "job"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "{out}\n{err}");
    assert!(out.contains("job-1  | job done"), "{out}");
    assert!(out.contains("job-1 exited with code 3"), "{out}");
    assert!(out.contains("Aborting on container exit..."), "{out}");
    assert!(
        out.contains(&format!(" Container {job}-web-1  Stopped")),
        "{out}"
    );
    assert_eq!(d.state_of(&jdir, "web").as_deref(), Some("exited"));
    let o = d.cli(&jdir, &["up", "--exit-code-from", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no such service: nope"), "{o:?}");

    // Every container exits by itself: `up` returns 0, without colours, or with
    // --no-log-prefix none of the prefixes.
    let done = project("d");
    let ddir = d.stack(
        &done,
        &format!(
            r#"name: {done}
services:
  one:
    image: {IMAGE}
    command: ["echo", "one here"]
  two:
    image: {IMAGE}
    command: ["sh", "-c", "sleep 0.3; echo two here"]
"#
        ),
    );
    let o = d.cli(&ddir, &["up", "--no-log-prefix"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("\none here\n"), "{out}");
    assert!(out.contains("\ntwo here\n"), "{out}");
    assert!(out.contains("two-1 exited with code 0"), "{out}");
    assert!(!out.contains('\x1b'), "{out:?}");
    d.finish();
}

/// A loopback port free right now (bound, read, released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `ps` shows the published ports (table and json), `port` prints where a private port is
/// published, `scale` sets the replicas (3 then 1), and `exec` runs in a service's container
/// with the command's exit code; unknown services, unpublished ports and missing replicas fail.
#[test]
fn ports_scale_and_exec() {
    let mut d = Daemon::start();
    let name = project("p");
    let port = free_port();
    let dir = d.stack(
        &name,
        &format!(
            r#"name: {name}
services:
  front:
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    ports: ["127.0.0.1:{port}:80"]
  web:
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
"#
        ),
    );
    d.ok(&dir, &["up", "-d"]);
    let published = format!("127.0.0.1:{port}->80/tcp");

    // ps: the PORTS column and the Publishers.
    let out = d.ok(&dir, &["ps"]);
    let header = out.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"
        ],
        "{out}"
    );
    let front_row = out.lines().find(|l| l.contains("-front-1")).unwrap();
    assert!(front_row.ends_with(&published), "{out}");
    let web_row = out.lines().find(|l| l.contains("-web-1")).unwrap();
    assert!(!web_row.contains("->"), "{out}");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&dir, &["ps", "--format", "json"])).unwrap();
    let front = rows.iter().find(|r| r["Service"] == "front").unwrap();
    assert_eq!(front["Ports"], published.as_str());
    assert_eq!(
        front["Publishers"],
        serde_json::json!([{"URL": "127.0.0.1", "TargetPort": 80, "PublishedPort": port,
            "Protocol": "tcp"}])
    );
    let web = rows.iter().find(|r| r["Service"] == "web").unwrap();
    assert_eq!(web["Publishers"], serde_json::json!([]));

    // port: the host address; unpublished ports, other protocols and unknown services fail.
    assert_eq!(
        d.ok(&dir, &["port", "front", "80"]),
        format!("127.0.0.1:{port}\n")
    );
    for (args, want) in [
        (&["port", "front", "81"][..], "port 81/tcp is not published"),
        (&["port", "--protocol", "udp", "front", "80"], "port 80/udp"),
        (&["port", "web", "80"], "port 80/tcp is not published"),
        (&["port", "nope", "80"], "no such service: nope"),
        (
            &["port", "--index", "2", "front", "80"],
            "no container with index 2",
        ),
    ] {
        let o = d.cli(&dir, args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}: {o:?}");
    }

    // scale: 3 replicas of web, then 1; front is left alone.
    let ids = |service: &str| -> Vec<(String, String)> {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&d.ok(&dir, &["ps", "--format", "json"])).unwrap();
        rows.iter()
            .filter(|r| r["Service"] == service)
            .map(|r| {
                (
                    r["Name"].as_str().unwrap().to_string(),
                    r["ID"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let front_before = ids("front");
    d.ok(&dir, &["scale", "web=3"]);
    let names: Vec<String> = ids("web").into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        (1..=3)
            .map(|i| format!("{name}-web-{i}"))
            .collect::<Vec<_>>()
    );
    d.ok(&dir, &["scale", "web=1"]);
    let names: Vec<String> = ids("web").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec![format!("{name}-web-1")]);
    assert_eq!(ids("front"), front_before);
    let o = d.cli(&dir, &["scale", "nope=2"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o.stderr).contains("no such service: nope"), "{o:?}");

    // exec: output, the command's exit code, -e and -w; hyphenated words are the command's.
    let o = d.cli(&dir, &["exec", "web", "sh", "-c", "echo in web; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(text(&o.stdout), "in web\n");
    let out = d.ok(
        &dir,
        &[
            "exec",
            "-T",
            "-e",
            "GREETING=hi",
            "-w",
            "/tmp",
            "web",
            "sh",
            "-c",
            "echo $GREETING $(pwd)",
        ],
    );
    assert_eq!(out, "hi /tmp\n");
    let out = d.ok(&dir, &["compose", "exec", "front", "cat", "/etc/hostname"]);
    assert!(!out.trim().is_empty(), "{out:?}");
    d.ok(
        &dir,
        &["exec", "-d", "web", "sh", "-c", "echo detached > /tmp/mark"],
    );
    let deadline = Instant::now() + TIMEOUT;
    while d.cli(&dir, &["exec", "web", "cat", "/tmp/mark"]).stdout != b"detached\n" {
        assert!(Instant::now() < deadline, "exec -d did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = d.cli(&dir, &["exec", "web", "nonexistent-command"]);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    for (args, want) in [
        (&["exec", "nope", "true"][..], "no such service: nope"),
        (
            &["exec", "--index", "2", "web", "true"],
            "no container with index 2",
        ),
    ] {
        let o = d.cli(&dir, args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    d.ok(&dir, &["stop", "web"]);
    let o = d.cli(&dir, &["exec", "web", "true"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o.stderr).contains("is not running"), "{o:?}");
    d.finish();
}

/// `post_start` runs right after the start, with its environment; `pre_stop` runs before the
/// stop signal on `stop`, a recreate and `down` (the order the writers leave in a bind-mounted
/// file); a failing `post_start` fails `up` for its service, naming the hook and its output.
#[test]
fn lifecycle_hooks_run_in_the_container() {
    let mut d = Daemon::start();
    let name = project("h");
    let dir = d.stack(
        &name,
        &format!(
            r#"name: {name}
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "trap 'echo term >> /out/log; exit 0' TERM; while true; do sleep 0.1; done"]
    volumes: ["./out:/out"]
    post_start:
      - command: ["sh", "-c", "echo post_start $$HOOKVAR $$(id -u) >> /out/log"]
        environment:
          HOOKVAR: set
    pre_stop:
      - command: "sh -c 'echo pre_stop >> /out/log'"
        user: "0"
"#
        ),
    );
    fs::create_dir_all(dir.join("out")).unwrap();
    let log = dir.join("out/log");
    d.ok(&dir, &["up", "-d"]);
    assert_eq!(fs::read_to_string(&log).unwrap(), "post_start set 0\n");
    d.ok(&dir, &["stop"]);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "post_start set 0\npre_stop\nterm\n"
    );
    // `start` and `restart` (through the container API) run them too.
    fs::write(&log, "").unwrap();
    d.ok(&dir, &["start"]);
    assert_eq!(fs::read_to_string(&log).unwrap(), "post_start set 0\n");
    d.ok(&dir, &["restart"]);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "post_start set 0\npre_stop\nterm\npost_start set 0\n"
    );
    d.ok(&dir, &["stop"]);
    fs::write(&log, "").unwrap();
    d.ok(&dir, &["up", "-d"]);
    // A recreate (its environment edited) stops the old container with its pre_stop first.
    let yaml = fs::read_to_string(dir.join("compose.yaml")).unwrap();
    fs::write(
        dir.join("compose.yaml"),
        yaml.replace(
            "    volumes:",
            "    environment:\n      EDITED: \"1\"\n    volumes:",
        ),
    )
    .unwrap();
    let out = d.ok(&dir, &["up", "-d"]);
    assert!(out.contains("Recreate"), "{out}");
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "post_start set 0\npre_stop\nterm\npost_start set 0\n"
    );
    fs::write(&log, "").unwrap();
    d.ok(&dir, &["down"]);
    assert_eq!(fs::read_to_string(&log).unwrap(), "pre_stop\nterm\n");

    let bad = project("hb");
    let bad_dir = d.stack(
        &bad,
        &format!(
            r#"name: {bad}
services:
  bad:
    image: {IMAGE}
    command: ["sleep", "1000"]
    post_start:
      - command: ["sh", "-c", "echo hook broke; exit 3"]
"#
        ),
    );
    let o = d.cli(&bad_dir, &["up", "-d"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("service bad")
            && err.contains("post_start hook 1: exited with code 3: hook broke"),
        "{err}"
    );
    let o = d.cli(&bad_dir, &["restart"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("post_start hook 1: exited with code 3: hook broke"),
        "{err}"
    );
    d.finish();
}

/// A `pre_stop` hook that hangs is killed at the stop's grace period (`-t`, else the
/// service's `stop_grace_period`): the stop, and `down`, go on instead of waiting for it.
#[test]
fn hung_pre_stop_hook_is_bounded_by_the_grace_period() {
    let mut d = Daemon::start();
    let name = project("hh");
    let dir = d.stack(
        &name,
        &format!(
            r#"name: {name}
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait $$!; done"]
    stop_grace_period: 1s
    pre_stop:
      - command: ["sleep", "1000"]
"#
        ),
    );
    d.ok(&dir, &["up", "-d"]);
    let t = std::time::Instant::now();
    d.ok(&dir, &["stop", "-t", "1"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "stop -t 1 took {:?}",
        t.elapsed()
    );
    d.ok(&dir, &["up", "-d"]);
    let t = std::time::Instant::now();
    d.ok(&dir, &["down"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "down with stop_grace_period 1s took {:?}",
        t.elapsed()
    );
    d.finish();
}

/// `compose top` (each running container's name, then its process table), `compose stats
/// --no-stream` (table and JSON lines), `compose push` to a loopback registry (a missing image
/// fails it, unless `--ignore-push-failures`), `down --rmi local` (keeps named images) and
/// `down --rmi all` (removes them).
#[test]
fn top_stats_push_and_down_rmi() {
    let registry = common::registry::Registry::start();
    let mut d = Daemon::start();
    let name = project("t");
    let pushed = format!("{}/cc/{name}:1", registry.host());
    d.ok(d.path(), &["tag", IMAGE, &pushed]);
    let dir = d.stack(
        &name,
        &format!(
            r#"name: {name}
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
  pushed:
    image: {pushed}
    command: ["sleep", "1000"]
"#
        ),
    );
    d.ok(&dir, &["up", "-d"]);

    let top = d.ok(&dir, &["compose", "top"]);
    let blocks: Vec<&str> = top.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{top}");
    assert!(
        blocks[0].starts_with(&format!("{name}-app-1\nUID")),
        "{top}"
    );
    assert!(
        blocks[0].contains("sleep 0.1") || blocks[0].contains("sh -c"),
        "{top}"
    );
    assert!(
        blocks[1].starts_with(&format!("{name}-pushed-1\nUID")),
        "{top}"
    );
    assert!(blocks[1].contains("sleep 1000"), "{top}");
    let only = d.ok(&dir, &["compose", "top", "pushed"]);
    assert!(!only.contains("-app-1"), "{only}");
    let o = d.cli(&dir, &["compose", "top", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no such service: nope"));

    let table = d.ok(&dir, &["compose", "stats", "--no-stream"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    let json = d.ok(
        &dir,
        &["compose", "stats", "--no-stream", "--format", "json", "app"],
    );
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["Name"], format!("{name}-app-1"));
    assert!(rows[0]["MemUsage"].as_str().unwrap().contains(" / "));
    assert!(rows[0]["PIDs"].as_str().unwrap().parse::<u64>().unwrap() >= 1);

    // push: only `pushed` has a registry name; busybox's own name is not pushable.
    let out = d.ok(&dir, &["compose", "push", "pushed"]);
    assert_eq!(
        out,
        format!(" Image {pushed}  Pushing\n Image {pushed}  Pushed\n")
    );
    assert!(
        registry
            .log()
            .contains(&format!("PUT /v2/cc/{name}/manifests/1")),
        "{}",
        registry.log()
    );
    let missing_dir = d.path().join("missing");
    fs::create_dir_all(&missing_dir).unwrap();
    let missing = format!("{}/cc/{name}-missing:1", registry.host());
    fs::write(
        missing_dir.join("compose.yaml"),
        format!("name: {name}-m\nservices:\n  gone:\n    image: {missing}\n"),
    )
    .unwrap();
    let o = d.cli(&missing_dir, &["compose", "push"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!(" Image {missing}  Error")), "{err}");
    assert!(err.contains("1 image(s) could not be pushed"), "{err}");
    let o = d.cli(&missing_dir, &["compose", "push", "--ignore-push-failures"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    // down --rmi local keeps images named by `image`; --rmi all removes them.
    let out = d.ok(&dir, &["down", "--rmi", "local"]);
    assert!(!out.contains(" Image "), "{out}");
    d.ok(d.path(), &["image", "inspect", &pushed]);
    d.ok(&dir, &["up", "-d"]);
    let out = d.ok(&dir, &["down", "--rmi", "all"]);
    assert!(out.contains(&format!(" Image {pushed}  Removed")), "{out}");
    assert!(out.contains(&format!(" Image {IMAGE}  Removed")), "{out}");
    for image in [&pushed, IMAGE] {
        let o = d.cli(d.path(), &["image", "inspect", image]);
        assert!(!o.status.success(), "{image} is still there");
    }
    let o = d.cli(&dir, &["down", "--rmi", "some"]);
    assert_eq!(o.status.code(), Some(2));
    d.finish();
}

/// Services with `build:` (a multi-stage Dockerfile): `up` builds a missing image (a `build:`-only service's image is
/// `<project>-<service>`), `run` of such a service builds it too, `up --build` builds again
/// (cached) and recreates when the image changed, `--no-build` refuses a missing image,
/// `pull_policy: build` without `build:` is a one-line error before anything is made.
#[test]
fn build_paths_build_the_images() {
    let mut d = Daemon::start();
    let name = project("b");
    let dir = d.stack(
        &name,
        &format!(
            r#"name: {name}
services:
  ok:
    image: {IMAGE}
    command: ["sleep", "1000"]
  built:
    build: ./ctx
"#
        ),
    );
    fs::create_dir_all(dir.join("ctx")).unwrap();
    fs::write(
        dir.join("ctx/Dockerfile"),
        // Multi-stage: a builder stage makes the file, the final stage copies it.
        format!(
            "FROM {IMAGE} AS gen\nRUN echo v1 > /v\nFROM {IMAGE}\nCOPY --from=gen /v /v\n\
             CMD [\"sleep\", \"1000\"]\n"
        ),
    )
    .unwrap();
    // --no-build: the missing image is an error, nothing is made.
    let o = d.cli(&dir, &["up", "-d", "--no-build"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--no-build forbids it"), "{err}");
    assert_eq!(d.ok(&dir, &["ps", "-a", "-q"]), "");

    d.ok(&dir, &["up", "-d"]);
    assert_eq!(d.state_of(&dir, "built").as_deref(), Some("running"));
    let built = format!("{name}-built");
    d.ok(d.path(), &["image", "inspect", &built]);
    let o = d.cli(&dir, &["run", "--rm", "built", "cat", "/v"]);
    assert_eq!(text(&o.stdout), "v1\n", "{}", text(&o.stderr));

    // --build: built again; unchanged (all cached) keeps the container, a change recreates it.
    let id = d.ok(&dir, &["ps", "-q", "built"]);
    d.ok(&dir, &["up", "-d", "--build"]);
    assert_eq!(d.ok(&dir, &["ps", "-q", "built"]), id);
    fs::write(
        dir.join("ctx/Dockerfile"),
        format!(
            "FROM {IMAGE} AS gen\nRUN echo v2 > /v\nFROM {IMAGE}\nCOPY --from=gen /v /v\n\
             CMD [\"sleep\", \"1000\"]\n"
        ),
    )
    .unwrap();
    d.ok(&dir, &["up", "-d", "--build"]);
    assert_ne!(d.ok(&dir, &["ps", "-q", "built"]), id);
    let o = d.cli(&dir, &["exec", "built", "cat", "/v"]);
    assert_eq!(text(&o.stdout), "v2\n", "{}", text(&o.stderr));
    d.ok(&dir, &["down", "-t", "0"]);

    fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"name: {name}
services:
  ok:
    image: {IMAGE}
    command: ["sleep", "1000"]
    pull_policy: build
"#
        ),
    )
    .unwrap();
    let o = d.cli(&dir, &["up", "-d"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("service ok: pull_policy: build needs a build: section"),
        "{err}"
    );
    assert_eq!(d.ok(&dir, &["ps", "-a", "-q"]), "");
    d.finish();
}

/// `--progress`: `json` is one JSON object per event (the last `done`), `quiet` prints
/// nothing, `plain` Compose's lines (also from $COMPOSE_PROGRESS); on a terminal the default
/// is the live view, redrawn in place, whose final screen shows every container Started; a
/// bad value is a usage error.
#[test]
fn progress_modes() {
    let mut d = Daemon::start();
    let name = project("g");
    let dir = d.stack(&name, &two_services(&name));

    let out = d.ok(&dir, &["--progress", "json", "up", "-d"]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for svc in ["web", "db"] {
        let c = format!("{name}-{svc}-1");
        assert!(
            events.iter().any(|e| e["kind"] == "container"
                && e["name"] == c.as_str()
                && e["status"] == "Started"),
            "{out}"
        );
    }
    let last = events.last().unwrap();
    assert_eq!(
        (&last["kind"], &last["status"]),
        (&"done".into(), &"ok".into())
    );

    let o = d.cli(&dir, &["--progress", "quiet", "down"]);
    assert!(o.status.success());
    assert_eq!(
        (text(&o.stdout), text(&o.stderr)),
        (String::new(), String::new())
    );
    assert_eq!(d.ok(&dir, &["ps", "-a", "-q"]), "");

    let out = d.ok(&dir, &["up", "-d", "--progress", "plain"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!(" Container {name}-web-1  Started  "))),
        "{out}"
    );
    let o = d
        .command(&dir, &["down"])
        .env("COMPOSE_PROGRESS", "quiet")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(text(&o.stdout), "");

    let o = d.cli(&dir, &["--progress", "fancy", "up", "-d"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("fancy"));

    // The live view under a pseudo-terminal.
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(&size, None).unwrap();
    let slave = fs::File::from(pty.slave);
    let mut cmd = d.command(&dir, &["up", "-d"]);
    cmd.stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    drop(slave);
    let mut master = fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("up under a terminal did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seen = text(&reader.join().unwrap());
    assert!(status.success(), "{seen}");
    // Redrawn in place: the final screen is what follows the last "up N lines, clear".
    assert!(seen.contains("\x1b[J"), "{seen:?}");
    let screen = seen.rsplit("\x1b[J").next().unwrap();
    assert!(screen.starts_with("[+] Running 3/3"), "{screen:?}");
    assert!(
        screen.contains(&format!("Network {name}_default")),
        "{screen:?}"
    );
    for svc in ["web", "db"] {
        assert!(
            screen
                .lines()
                .any(|l| l.contains(&format!("✔ Container {name}-{svc}-1"))
                    && l.contains("  Started  ")),
            "{screen:?}"
        );
    }
    d.finish();
}
