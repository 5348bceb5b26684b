//! `flotilla watch` and `flotilla up --watch` end to end (root): each test starts its own
//! `flotilla daemon` on its own tempdir data root and socket (its own cgroup and link prefixes,
//! `[dns] upstreams = []`), imports the busybox test image, writes a stack into the tempdir and
//! runs the real CLI as a subprocess, reading its watch lines as they come. What the containers
//! see is read from the host through `/proc/<pid>/root` and `/proc/<pid>/environ` of their
//! processes (the pids from their state files). Every wait is a bounded poll; everything is
//! removed on the way out, even on failure (`down -v`, then by pid and by prefix).
//!
//! Covered: an env edit of the stack file recreates only that service and it runs with the new
//! value; a broken edit is reported located and leaves the stack running; the next good edit
//! applies; `sync` copies into every replica without a restart, propagates deletions, ignores
//! `ignore`d paths, editor temp files and `.git/`, and a save that changes nothing; a burst of
//! 100 writes within 100 ms is one action; `sync+restart` restarts (under `up --watch`, logs
//! and watch lines interleaved, Ctrl-C stops the stack); `sync+exec` runs its command;
//! `rebuild` says building is missing; bad rules are located errors.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::compose::{BIN, Daemon, Running, TIMEOUT};
use flotilla::api::client::{Client, block_on};
use flotilla::api::host::Host;
use flotilla::runtime::state;
use serde_json::Value;

/// Exits 0 on SIGTERM (quick stops), otherwise runs forever.
const SERVE: &str = "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done";

/// A CLI process whose output is read while it runs.
struct Cli {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Cli {
    fn out(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn text(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            self.out(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// The watch lines printed so far.
    fn watch_lines(&self) -> Vec<String> {
        self.out()
            .lines()
            .filter(|l| l.starts_with("watch: "))
            .map(str::to_string)
            .collect()
    }

    /// Waits for a watch line (after the first `skip`) containing `needle`; returns it.
    fn wait_line(&mut self, skip: usize, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(l) = self
                .watch_lines()
                .into_iter()
                .skip(skip)
                .find(|l| l.contains(needle))
            {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the CLI exited ({status}) before {needle:?}:\n{}",
                    self.text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no watch line with {needle:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGINT (Ctrl-C) by pid; waits for the exit code.
    fn interrupt(&mut self) -> Option<i32> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A watcher still running when a test fails is killed (by its pid), before the daemon's
/// cleanup (it is declared after the daemon, so dropped first).
impl Drop for Cli {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// This file's daemon: `flt-cw-<tag>-…`, its CLI calls without colours.
    fn start(tag: &str) -> Daemon {
        Daemon::start_for("watch", "cw", tag, &[("NO_COLOR", "1")])
    }

    /// Starts `flotilla <args>` in `cwd`; its output is read while it runs.
    fn cli(&self, cwd: &Path, args: &[&str]) -> Cli {
        let Running {
            child,
            stdout,
            stderr,
            ..
        } = self.command(cwd, args);
        Cli {
            child,
            stdout,
            stderr,
        }
    }

    /// Runs the CLI to its end (at most [`TIMEOUT`]); exit code and output.
    fn run(&self, cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
        let out = self.run_at(cwd, args, TIMEOUT);
        let text = format!("--- stdout\n{}--- stderr\n{}", out.stdout, out.stderr);
        (out.code, text)
    }

    /// Starts `flotilla <args>` (a watcher) in `cwd` and waits until it watches.
    fn watch(&mut self, cwd: &Path, args: &[&str]) -> Cli {
        let mut cli = self.cli(cwd, args);
        cli.wait_line(0, "watch: watching");
        cli
    }

    /// The running containers of `service` in `dir`'s project: (name, id, pid), by name.
    fn running(&self, dir: &Path, service: &str) -> Vec<(String, String, i32)> {
        // By name: the stack file may be broken at the time.
        let project = dir.file_name().unwrap().to_str().unwrap();
        let (code, text) = self.run(dir, &["-p", project, "ps", "--format", "json"]);
        assert_eq!(code, Some(0), "ps:\n{text}");
        let json = text
            .strip_prefix("--- stdout\n")
            .and_then(|t| t.split("--- stderr\n").next())
            .unwrap_or("[]");
        let rows: Vec<Value> = serde_json::from_str(json).unwrap();
        let mut out: Vec<(String, String, i32)> = rows
            .iter()
            .filter(|r| r["Service"] == service && r["State"] == "running")
            .map(|r| {
                let id = r["ID"].as_str().unwrap().to_string();
                let full = fs::read_dir(self.root.join("containers"))
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|n| n.starts_with(&id))
                    .unwrap();
                let pid = state::read(&self.root.join("containers").join(&full))
                    .unwrap()
                    .pid
                    .unwrap();
                (r["Name"].as_str().unwrap().to_string(), full, pid)
            })
            .collect();
        out.sort();
        out
    }
}

/// A file as the container of process `pid` sees it.
fn in_container(pid: i32, path: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/root{path}")).ok()
}

/// `KEY`'s value in the environment of process `pid`.
fn env_of(pid: i32, key: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|e| {
        let e = String::from_utf8_lossy(e);
        e.strip_prefix(&format!("{key}=")).map(str::to_string)
    })
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stack_file_edits_recreate_only_what_changed_and_broken_edits_change_nothing() {
    let mut d = Daemon::start("stack");
    let project = "cwstack";
    let yaml = |x: &str| {
        format!(
            "name: {project}\nservices:\n  a:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n    \
             environment:\n      X: \"{x}\"\n  b:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n"
        )
    };
    let dir = d.stack(project, &yaml("1"));
    let mut cli = d.watch(&dir, &["watch"]);
    let a1 = d.running(&dir, "a");
    let b1 = d.running(&dir, "b");
    assert_eq!((a1.len(), b1.len()), (1, 1), "{}", cli.text());
    assert_eq!(env_of(a1[0].2, "X").as_deref(), Some("1"));

    // An env edit: only `a` is recreated, and runs with the new value.
    let n = cli.watch_lines().len();
    d.stack(project, &yaml("2"));
    let line = cli.wait_line(n, "compose.yaml changed");
    assert!(line.contains("redeployed"), "{line}\n{}", cli.text());
    assert!(line.contains("cwstack-a-1 recreated"), "{line}");
    assert!(!line.contains("cwstack-b-1"), "{line}");
    let a2 = d.running(&dir, "a");
    assert_ne!(a2[0].1, a1[0].1, "a was not recreated");
    assert_eq!(env_of(a2[0].2, "X").as_deref(), Some("2"));
    assert_eq!(d.running(&dir, "b"), b1, "b must not change");

    // A save that changes nothing does nothing.
    let n = cli.watch_lines().len();
    d.stack(project, &yaml("2"));

    // A broken edit: reported, located; nothing that runs changes.
    let broken = yaml("3").replace("    environment:", "    enviroment:");
    d.stack(project, &broken);
    let line = cli.wait_line(n, "compose.yaml changed");
    assert!(line.contains("not applied"), "{line}");
    let out = cli.out();
    assert!(
        out.contains("compose.yaml:6:5: services.a: unknown key `enviroment`"),
        "the error is not located:\n{out}"
    );
    assert_eq!(
        cli.watch_lines().len(),
        n + 1,
        "the unchanged save acted:\n{out}"
    );
    assert_eq!(d.running(&dir, "a"), a2);
    assert_eq!(d.running(&dir, "b"), b1);

    // The next good edit is applied.
    let n = cli.watch_lines().len();
    d.stack(project, &yaml("4"));
    let line = cli.wait_line(n, "compose.yaml changed");
    assert!(line.contains("redeployed"), "{line}");
    let a3 = d.running(&dir, "a");
    assert_eq!(env_of(a3[0].2, "X").as_deref(), Some("4"));
    assert_eq!(d.running(&dir, "b"), b1);

    assert_eq!(cli.interrupt(), Some(0), "{}", cli.text());
    // The containers keep running after `watch` ends.
    assert_eq!(d.running(&dir, "b"), b1);
}

/// A stack whose `web` (two replicas) syncs `./www` to `/www` with `action`.
fn sync_stack(project: &str, action: &str, extra: &str) -> String {
    format!(
        "name: {project}\nservices:\n  web:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n    \
         deploy:\n      replicas: 2\n    develop:\n      watch:\n        - path: ./www\n          \
         action: {action}\n          target: /www\n          ignore: [\"*.tmp\", \"cache/\"]\n          \
         initial_sync: true\n{extra}"
    )
}

#[test]
fn sync_copies_into_every_replica_deletes_and_ignores() {
    let mut d = Daemon::start("sync");
    let project = "cwsync";
    // The image's user is replaced by the service's: synced files get it.
    let dir = d.stack(
        project,
        &sync_stack(project, "sync", "    user: \"1234:1235\"\n"),
    );
    fs::create_dir_all(dir.join("www")).unwrap();
    fs::write(dir.join("www/index.html"), "v1").unwrap();
    let mut cli = d.watch(&dir, &["watch"]);
    let before = d.running(&dir, "web");
    assert_eq!(before.len(), 2, "{}", cli.text());
    // initial_sync: the tree is in both replicas before the watch starts.
    let line = cli.wait_line(0, "web: initial sync");
    assert!(line.contains("www/index.html → 2 containers"), "{line}");
    for (_, _, pid) in &before {
        assert_eq!(in_container(*pid, "/www/index.html").as_deref(), Some("v1"));
    }

    // A change: copied into both replicas, no restart.
    let n = cli.watch_lines().len();
    fs::write(dir.join("www/index.html"), "v2").unwrap();
    let line = cli.wait_line(n, "web: sync");
    assert!(line.contains("www/index.html"), "{line}");
    assert!(line.contains("2 containers"), "{line}");
    assert!(!line.contains("restarted"), "{line}");
    for (_, _, pid) in &before {
        assert_eq!(in_container(*pid, "/www/index.html").as_deref(), Some("v2"));
        use std::os::unix::fs::MetadataExt;
        for p in ["/www", "/www/index.html"] {
            let m = fs::metadata(format!("/proc/{pid}/root{p}")).unwrap();
            assert_eq!((m.uid(), m.gid()), (1234, 1235), "owner of {p}");
        }
    }
    assert_eq!(d.running(&dir, "web"), before, "a sync must not restart");

    // The sync endpoint on bad input: clear errors with stable codes, nothing written.
    let client = Client::new(Host::Unix(d.socket.clone()), None);
    let post = |path: &str, body: &str| {
        let (status, bytes) = block_on(client.raw(
            http::Method::POST,
            path,
            Some(bytes::Bytes::from(body.to_string())),
        ))
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        (
            status.as_u16(),
            v["code"].as_str().unwrap_or("").to_string(),
            v["message"].to_string(),
        )
    };
    let (st, code, msg) = post(
        "/v1/projects/cwsync/sync",
        r#"{"service":"web","files":[{"path":"www/x","content":"eA=="}]}"#,
    );
    assert_eq!((st, code.as_str()), (400, "bad_request"), "{msg}");
    assert!(msg.contains("files[0].path"), "{msg}");
    let (st, _, msg) = post(
        "/v1/projects/cwsync/sync",
        r#"{"service":"web","files":[{"path":"/www/../x","content":"eA=="}]}"#,
    );
    assert_eq!(st, 400, "{msg}");
    let (st, _, msg) = post(
        "/v1/projects/cwsync/sync",
        r#"{"service":"web","files":[{"path":"/www/x","content":"not base64!"}]}"#,
    );
    assert_eq!(st, 400, "{msg}");
    let (st, _, msg) = post("/v1/projects/cwsync/sync", r#"{"service":"web","bogus":1}"#);
    assert!(st == 400 && msg.contains("bogus"), "{msg}");
    let (st, code, msg) = post("/v1/projects/cwsync/sync", r#"{"service":"nope"}"#);
    assert_eq!((st, code.as_str()), (404, "not_found"), "{msg}");
    let (st, _, msg) = post("/v1/projects/Bad%20Name/sync", r#"{"service":"web"}"#);
    assert_eq!(st, 400, "{msg}");
    for (_, _, pid) in &before {
        assert!(in_container(*pid, "/www/x").is_none());
        assert!(in_container(*pid, "/x").is_none());
    }

    // A new file in a new directory.
    let n = cli.watch_lines().len();
    fs::create_dir_all(dir.join("www/sub")).unwrap();
    fs::write(dir.join("www/sub/new.txt"), "new").unwrap();
    cli.wait_line(n, "www/sub/new.txt");
    for (_, _, pid) in &before {
        assert_eq!(
            in_container(*pid, "/www/sub/new.txt").as_deref(),
            Some("new")
        );
    }

    // A deletion is propagated.
    let n = cli.watch_lines().len();
    fs::remove_file(dir.join("www/index.html")).unwrap();
    let line = cli.wait_line(n, "web: sync");
    assert!(line.contains("(deleted)"), "{line}");
    for (_, _, pid) in &before {
        until("the deletion in the container", || {
            in_container(*pid, "/www/index.html")
                .is_none()
                .then_some(())
        });
    }

    // Ignored paths, editor temp files, .git/ and a save that changes nothing: no action.
    let n = cli.watch_lines().len();
    fs::write(dir.join("www/x.tmp"), "t").unwrap();
    fs::create_dir_all(dir.join("www/cache")).unwrap();
    fs::write(dir.join("www/cache/c"), "c").unwrap();
    fs::create_dir_all(dir.join("www/.git")).unwrap();
    fs::write(dir.join("www/.git/HEAD"), "ref").unwrap();
    fs::write(dir.join("www/.new.txt.swp"), "swap").unwrap();
    fs::write(dir.join("www/new.txt~"), "backup").unwrap();
    fs::write(dir.join("www/sub/new.txt"), "new").unwrap();
    // A marker written last: once it is synced, everything before it was seen.
    fs::write(dir.join("www/marker"), "m").unwrap();
    let line = cli.wait_line(n, "web: sync");
    assert!(line.contains("www/marker"), "{line}");
    assert_eq!(cli.watch_lines().len(), n + 1, "{}", cli.text());
    for ignored in [
        "x.tmp",
        "cache",
        "cache/c",
        ".git",
        "new.txt~",
        "sub/new.txt",
    ] {
        assert!(!line.contains(ignored), "{ignored} acted: {line}");
    }
    for (_, _, pid) in &before {
        assert!(in_container(*pid, "/www/x.tmp").is_none());
        assert!(in_container(*pid, "/www/.git/HEAD").is_none());
        assert!(in_container(*pid, "/www/.new.txt.swp").is_none());
    }

    // A burst: 100 files written within 100 ms are one action.
    let n = cli.watch_lines().len();
    let t0 = Instant::now();
    // Back to back (a few ms in all): a writer spread over the window could be descheduled
    // for longer than the batch's quiet time on a loaded machine and honestly make two batches.
    for i in 0..100u32 {
        fs::write(dir.join(format!("www/burst-{i:03}.txt")), format!("{i}")).unwrap();
    }
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "the burst was slow"
    );
    let line = cli.wait_line(n, "web: sync");
    assert!(line.contains("(+97 more)"), "{line}");
    // The batch window is long gone once every file is there: still one line.
    for (_, _, pid) in &before {
        until("the burst in the container", || {
            (0..100)
                .all(|i| in_container(*pid, &format!("/www/burst-{i:03}.txt")).is_some())
                .then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cli.watch_lines().len(), n + 1, "{}", cli.text());
    assert_eq!(d.running(&dir, "web"), before);
    assert_eq!(cli.interrupt(), Some(0), "{}", cli.text());
}

#[test]
fn sync_restart_under_up_watch_restarts_and_interleaves_logs() {
    let mut d = Daemon::start("restart");
    let project = "cwrestart";
    // Its post_start hook runs after `up`'s start and again after the restart.
    let hook = "    post_start:\n      - command: [\"sh\", \"-c\", \"echo hooked >> /hooklog\"]\n";
    let dir = d.stack(project, &sync_stack(project, "sync+restart", hook));
    fs::create_dir_all(dir.join("www")).unwrap();
    fs::write(dir.join("www/conf"), "a").unwrap();
    let mut cli = d.watch(&dir, &["up", "--watch"]);
    let before = until("two replicas", || {
        let r = d.running(&dir, "web");
        (r.len() == 2).then_some(r)
    });
    until("the logs attached", || {
        cli.out().contains("| started").then_some(())
    });
    let n = cli.watch_lines().len();
    fs::write(dir.join("www/conf"), "b").unwrap();
    let line = cli.wait_line(n, "web: sync+restart");
    assert!(line.contains("2 containers restarted"), "{line}");
    let after = d.running(&dir, "web");
    assert_eq!(after.len(), 2);
    for ((name, id, pid), (name0, id0, pid0)) in after.iter().zip(&before) {
        assert_eq!((name, id), (name0, id0), "same containers");
        assert_ne!(pid, pid0, "{name} was not restarted");
        assert_eq!(in_container(*pid, "/www/conf").as_deref(), Some("b"));
        assert_eq!(
            in_container(*pid, "/hooklog").as_deref(),
            Some("hooked\nhooked\n"),
            "{name}: post_start after up and after the restart"
        );
    }
    // The restarted containers' logs are followed again: a second `started` per replica.
    until("the restarted containers' logs", || {
        (cli.out().matches("| started").count() >= 4).then_some(())
    });
    // Ctrl-C stops the stack, exit 130.
    assert_eq!(cli.interrupt(), Some(130), "{}", cli.text());
    assert!(d.running(&dir, "web").is_empty(), "{}", cli.text());
}

#[test]
fn sync_exec_runs_the_command_and_rebuild_builds_and_recreates() {
    let mut d = Daemon::start("exec");
    let project = "cwexec";
    let yaml = format!(
        "name: {project}\nservices:\n  web:\n    image: IMG\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n    \
         develop:\n      watch:\n        - path: ./app\n          action: sync+exec\n          \
         target: /app\n          exec:\n            command: sh -c 'cat /app/f > /app/f.copy'\n  \
         built:\n    image: IMG\n    build: ./ctx\n    develop:\n      watch:\n        - path: ./ctx\n          \
         action: rebuild\n"
    );
    let dir = d.stack(project, &yaml);
    fs::create_dir_all(dir.join("app")).unwrap();
    fs::create_dir_all(dir.join("ctx")).unwrap();
    let dockerfile = |v: &str| {
        format!(
            "FROM {}\nRUN echo {v} > /v\nCMD [\"sh\", \"-c\", \"{SERVE}\"]\n",
            common::compose::IMAGE
        )
    };
    fs::write(dir.join("ctx/Dockerfile"), dockerfile("v1")).unwrap();
    let mut cli = d.watch(&dir, &["watch", "--no-up", "web", "built"]);
    // Up (web only; `built` comes with its first rebuild).
    let (code, text) = d.run(&dir, &["up", "-d", "web"]);
    assert_eq!(code, Some(0), "{text}");
    let web = d.running(&dir, "web");
    let n = cli.watch_lines().len();
    fs::write(dir.join("app/f"), "payload").unwrap();
    let line = cli.wait_line(n, "web: sync+exec");
    assert!(line.contains("1 container"), "{line}");
    assert!(!line.contains("exec failed"), "{line}");
    assert_eq!(
        in_container(web[0].2, "/app/f.copy").as_deref(),
        Some("payload")
    );

    let n = cli.watch_lines().len();
    fs::write(dir.join("ctx/Dockerfile"), dockerfile("v2")).unwrap();
    let line = cli.wait_line(n, "built: rebuild");
    assert!(line.contains("rebuilt"), "{line}");
    let built = d.running(&dir, "built");
    assert_eq!(built.len(), 1, "{line}");
    assert_eq!(in_container(built[0].2, "/v").as_deref(), Some("v2\n"));
    assert_eq!(cli.interrupt(), Some(0), "{}", cli.text());
}

#[test]
fn bad_watch_rules_are_located_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    fs::write(
        dir.join("compose.yaml"),
        "services:\n  web:\n    image: x\n    develop:\n      watch:\n        - path: ./src\n          \
         action: sync\n        - path: .\n          action: sync+exec\n          target: rel\n        \
         - path: .\n          action: rebuild\n        - action: restart\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("config")
        .current_dir(&dir)
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let d = dir.display().to_string();
    let err = String::from_utf8_lossy(&out.stderr).replace(&d, "$DIR");
    for want in [
        "$DIR/compose.yaml:7:19: services.web.develop.watch[0].action: action `sync` needs `target`",
        "$DIR/compose.yaml:8:11: services.web.develop.watch[1].exec.command: action `sync+exec` needs `exec.command`",
        "$DIR/compose.yaml:10:19: services.web.develop.watch[1].target: `rel` is not an absolute path in the container",
        "$DIR/compose.yaml:12:19: services.web.develop.watch[2].action: action `rebuild` needs the service to have `build`",
        "$DIR/compose.yaml:13:11: services.web.develop.watch[3]: a watch rule needs `path`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
