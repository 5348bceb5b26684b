//! Root integration tests of the container lifecycle (`runtime::lifecycle`) with the real
//! `flotilla shim start`: detached containers, JSON-lines logs across a caller restart, attach,
//! stop (grace period, and at once for a PID 1 that cannot receive the stop signal), exit codes,
//! signals, OOM kill under a memory limit, and `rm` leaving nothing behind.
//!
//! Each test has its own data root (a tempdir holding a one-layer busybox image) and its own
//! cgroup prefix; a drop guard kills what the test's containers left running (by pid, from
//! their state files), removes their cgroups and mounts and the data root, even on failure.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flotilla::image::store::Store;
use flotilla::image::unpack::UnpackOptions;
use flotilla::runtime::config::ContainerConfig;
use flotilla::runtime::lifecycle::{self, AttachEvent, CreateOptions, LogsOptions, Runtime};
use flotilla::runtime::logs::Stream;
use flotilla::runtime::state::{self, Status};
use flotilla::runtime::sys::cgroup::{self, Cgroup, Limits};

const IMAGE: &str = "flotilla.test/busybox:latest";
const TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Fixture {
    dir: Option<tempfile::TempDir>,
    prefix: String,
    ids: BTreeSet<String>,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            rustix::process::geteuid().is_root(),
            "the lifecycle tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("flt-lc-")
            .tempdir()
            .expect("tempdir");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let f = Fixture {
            dir: Some(dir),
            prefix: format!("lctest-{}-{n}", std::process::id()),
            ids: BTreeSet::new(),
        };
        let store = Store::open(f.root()).unwrap();
        let image = common::registry::busybox_image("amd64");
        let record = image.import(&store, IMAGE);
        let mut parent = None;
        for layer in &record.layers {
            let blob = store.open_blob(&layer.blob.digest).unwrap();
            store
                .unpack_layer(
                    parent.as_ref(),
                    &layer.diff_id,
                    std::io::BufReader::new(blob),
                    &UnpackOptions::default(),
                )
                .unwrap();
            parent = Some(layer.chain_id.clone());
        }
        f
    }

    fn root(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// A fresh handle on the data root, as a restarted caller would make.
    fn runtime(&self) -> Runtime {
        Runtime::new(self.root())
            .unwrap()
            .with_prefix(&self.prefix)
            .with_exe(Path::new(env!("CARGO_BIN_EXE_flotilla")))
    }

    fn options(&self, name: &str, args: &[&str]) -> CreateOptions {
        CreateOptions {
            name: Some(name.into()),
            image: Some(IMAGE.into()),
            config: ContainerConfig {
                command: Some(args.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn create(&mut self, options: CreateOptions) -> String {
        let id = self.runtime().create(options).unwrap();
        self.ids.insert(id.clone());
        id
    }

    fn run(&mut self, options: CreateOptions) -> String {
        let id = self.create(options);
        self.runtime().start(&id).unwrap();
        id
    }

    fn cgroup_path(&self, id: &str) -> String {
        format!("{}/{id}", cgroup::prefix_dir(&self.prefix))
    }

    /// Polls (bounded) until the logs contain `needle`.
    fn wait_for_log(&self, id: &str, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = self
                .runtime()
                .logs_text(id, &LogsOptions::default())
                .unwrap();
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in logs: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    lifecycle::mounts_under(dir)
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let root = self.root().to_path_buf();
        for id in &self.ids {
            let dir = root.join("containers").join(id);
            if let Ok(st) = state::read(&dir) {
                if let Some(pid) = st.shim_pid
                    && state::process_alive(pid, st.shim_start_time)
                {
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::from_raw(pid).unwrap(),
                        rustix::process::Signal::KILL,
                    );
                }
                if matches!(st.status, Status::Running | Status::Paused)
                    && let Some(pid) = st.pid.and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            if let Ok(cg) = Cgroup::open(&self.cgroup_path(id)) {
                let _ = cg.destroy(true);
            }
        }
        let _ = cgroup::cleanup_prefix(&self.prefix);
        for m in mounts_under(&root).iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

#[test]
fn detached_container_logs_survive_a_caller_restart_and_attach_sees_new_lines() {
    let mut f = Fixture::new();
    let script = "echo out-one; echo err-one >&2; i=0; \
                  while true; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    let id = f.run(f.options("logger", &["sh", "-c", script]));
    let rt = f.runtime();
    let st = rt.state(&id).unwrap();
    assert_eq!(st.status, Status::Running);
    let (pid, shim) = (st.pid.unwrap(), st.shim_pid.unwrap());
    assert!(st.started_at.is_some());
    // The launching `flotilla shim start` has exited; the shim is not our child.
    assert!(alive(pid) && alive(shim));
    let stat = fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
    let ppid: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id() as i32);
    drop(rt);

    f.wait_for_log(&id, "tick 2");
    // A new caller: only the data root and the name.
    let rt = f.runtime();
    let id2 = rt.resolve("logger").unwrap();
    assert_eq!(id2, id);
    let mut entries = Vec::new();
    rt.logs(&id, &LogsOptions::default(), &mut |e| {
        entries.push(e.clone());
        true
    })
    .unwrap();
    assert_eq!(entries[0].log, "out-one\n");
    assert_eq!(entries[0].stream, Stream::Stdout);
    let err = entries.iter().find(|e| e.log == "err-one\n").unwrap();
    assert_eq!(err.stream, Stream::Stderr);
    assert!(flotilla::runtime::time::parse(&entries[0].time).is_some());
    let text = rt
        .logs_text(
            &id,
            &LogsOptions {
                tail: Some(1),
                timestamps: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains("Z tick "), "{text}");
    // The log file itself is JSON lines.
    let raw = fs::read_to_string(rt.dir(&id).join("container.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(first["stream"], "stdout");
    assert_eq!(first["log"], "out-one\n");

    // Attach: live lines arrive.
    let seen_before = entries.len();
    let mut attach = rt.attach(&id, false).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let line = loop {
        assert!(Instant::now() < deadline, "attach saw nothing");
        if let Some(AttachEvent::Output(e)) = attach.next(Some(Duration::from_secs(5))).unwrap() {
            break e;
        }
    };
    assert!(line.log.starts_with("tick "), "{line:?}");
    let n: usize = line.log.trim()[5..].parse().unwrap();
    assert!(n + 2 >= seen_before, "attach shows new lines, not old ones");

    // Follow ends when the container does.
    let rt2 = f.runtime();
    let id3 = id.clone();
    let follower = std::thread::spawn(move || {
        let mut count = 0;
        rt2.logs(
            &id3,
            &LogsOptions {
                follow: true,
                tail: Some(0),
                ..Default::default()
            },
            &mut |_| {
                count += 1;
                true
            },
        )
        .unwrap();
        count
    });
    std::thread::sleep(Duration::from_millis(300));
    rt.kill(&id, "KILL").unwrap();
    assert!(matches!(
        attach.next(Some(TIMEOUT)),
        Ok(Some(AttachEvent::Output(_)) | Some(AttachEvent::Exit(_)))
    ));
    assert_eq!(rt.wait(&id).unwrap(), 137);
    assert!(follower.join().unwrap() >= 1);
    // The shim exits right after recording the exit.
    let deadline = Instant::now() + TIMEOUT;
    while state::process_alive(shim, st.shim_start_time) {
        assert!(Instant::now() < deadline, "shim {shim} still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stop_waits_the_grace_period_for_a_trapping_pid1_then_kills() {
    let mut f = Fixture::new();
    let script = "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.05; done";
    let id = f.run(f.options("trapper", &["sh", "-c", script]));
    f.wait_for_log(&id, "ready");
    let rt = f.runtime();
    let begin = Instant::now();
    rt.stop(&id, Some(Duration::from_secs(1))).unwrap();
    let took = begin.elapsed();
    assert!(took >= Duration::from_secs(1), "took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let st = rt.state(&id).unwrap();
    assert_eq!(st.status, Status::Exited);
    assert_eq!(st.exit_code, Some(137));
    assert_eq!(st.signal, Some(9));
    assert!(!st.oom_killed);
    f.wait_for_log(&id, "got-term");
    // Stopping an exited container is a no-op.
    rt.stop(&id, Some(Duration::from_secs(1))).unwrap();
}

#[test]
fn stop_of_a_pid1_without_handler_returns_at_once() {
    let mut f = Fixture::new();
    let id = f.run(f.options("sleeper", &["sleep", "1000"]));
    let rt = f.runtime();
    let pid = rt.state(&id).unwrap().pid.unwrap();
    // The process has executed `sleep` (the shim reports after execve).
    assert!(!lifecycle::catches_signal(
        pid,
        nix::sys::signal::Signal::SIGTERM
    ));
    let begin = Instant::now();
    rt.stop(&id, Some(Duration::from_secs(10))).unwrap();
    let took = begin.elapsed();
    assert!(took < Duration::from_millis(500), "took {took:?}");
    let st = rt.state(&id).unwrap();
    assert_eq!((st.status, st.exit_code), (Status::Exited, Some(137)));
    assert!(!alive(pid));
}

#[test]
fn exit_codes_and_signals_are_recorded() {
    let mut f = Fixture::new();
    let rt = f.runtime();
    let three = f.run(f.options("three", &["sh", "-c", "exit 3"]));
    assert_eq!(rt.wait(&three).unwrap(), 3);
    let st = rt.state(&three).unwrap();
    assert_eq!(
        (st.status, st.exit_code, st.signal),
        (Status::Exited, Some(3), None)
    );
    assert!(st.finished_at.is_some());

    let killed = f.run(f.options("killed", &["sleep", "1000"]));
    rt.kill(&killed, "SIGKILL").unwrap();
    assert_eq!(rt.wait(&killed).unwrap(), 137);
    assert_eq!(rt.state(&killed).unwrap().signal, Some(9));

    // Wrong states and bad input.
    let err = rt.kill(&killed, "TERM").unwrap_err().to_string();
    assert!(
        err.contains("is exited: kill needs a running container"),
        "{err}"
    );
    let err = rt.unpause(&killed).unwrap_err().to_string();
    assert!(err.contains("unpause needs a paused container"), "{err}");
    let running = f.run(f.options("running", &["sleep", "1000"]));
    let err = rt.start(&running).unwrap_err().to_string();
    assert!(
        err.contains("is running: start needs a created or exited"),
        "{err}"
    );
    let err = rt.rm(&running, false).unwrap_err().to_string();
    assert!(err.contains("is running: rm needs a stopped"), "{err}");
    let err = f
        .runtime()
        .create(f.options("running", &["true"]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("container name \"running\" is already in use by container {running}")
    );
    let missing = f.create(f.options("missing", &["nosuchcmd"]));
    let err = rt.start(&missing).unwrap_err().to_string();
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    assert_eq!(rt.state(&missing).unwrap().exit_code, Some(127));
    let mut no_image = f.options("noimage", &["true"]);
    no_image.image = Some("flotilla.test/nothing:here".into());
    let err = rt.create(no_image).unwrap_err().to_string();
    assert!(err.contains("no such image"), "{err}");

    // Pause freezes, unpause resumes; a paused container stops too.
    rt.pause(&running).unwrap();
    assert_eq!(rt.state(&running).unwrap().status, Status::Paused);
    rt.unpause(&running).unwrap();
    assert_eq!(rt.state(&running).unwrap().status, Status::Running);
    rt.pause(&running).unwrap();
    rt.stop(&running, Some(Duration::from_secs(1))).unwrap();
    assert_eq!(rt.state(&running).unwrap().status, Status::Exited);
    // An exited container starts again.
    rt.start(&three).unwrap();
    assert_eq!(rt.wait(&three).unwrap(), 3);
    assert_eq!(rt.list().unwrap().len(), 4);
}

#[test]
fn memory_limit_ends_in_an_oom_kill() {
    let mut f = Fixture::new();
    let mut options = f.options(
        "hog",
        &[
            "sh",
            "-c",
            "busybox dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived",
        ],
    );
    options.limits = Limits {
        memory: Some(32 << 20),
        memory_swap: Some(32 << 20),
        ..Default::default()
    };
    // The shell is PID 1 and dd its child: make dd the only process by exec.
    options.config.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "exec busybox dd if=/dev/zero of=/dev/null bs=64M count=1".into(),
    ]);
    let id = f.run(options);
    let rt = f.runtime();
    assert_eq!(rt.wait(&id).unwrap(), 137);
    let st = rt.state(&id).unwrap();
    assert!(st.oom_killed, "{st:?}");
    assert_eq!(st.signal, Some(9));
}

#[test]
fn terminal_and_stdin() {
    let mut f = Fixture::new();
    let mut tty = f.options(
        "tty",
        &["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo is-a-tty"],
    );
    tty.config.tty = true;
    let id = f.run(tty);
    let rt = f.runtime();
    assert_eq!(rt.wait(&id).unwrap(), 0);
    let text = rt.logs_text(&id, &LogsOptions::default()).unwrap();
    assert!(text.contains("is-a-tty"), "{text:?}");

    let mut echo = f.options(
        "echo",
        &[
            "sh",
            "-c",
            "echo ready; while read l; do echo got $l; done; echo eof",
        ],
    );
    echo.open_stdin = true;
    let id = f.run(echo);
    f.wait_for_log(&id, "ready");
    let mut attach = rt.attach(&id, true).unwrap();
    attach.send_stdin("hello\n").unwrap();
    f.wait_for_log(&id, "got hello");
    attach.close_stdin().unwrap();
    assert_eq!(rt.wait(&id).unwrap(), 0);
    f.wait_for_log(&id, "eof");
}

#[test]
fn rm_leaves_nothing_behind() {
    let mut f = Fixture::new();
    let mut options = f.options("doomed", &["sleep", "1000"]);
    options.limits.pids_limit = Some(32);
    let id = f.run(options);
    let rt = f.runtime();
    let st = rt.state(&id).unwrap();
    let (pid, shim) = (st.pid.unwrap(), st.shim_pid.unwrap());
    let cg = Cgroup::open(&f.cgroup_path(&id)).unwrap();
    assert!(cg.exists());
    assert!(cg.pids().unwrap().contains(&pid));
    let dir = rt.dir(&id);
    rt.rm(&id, true).unwrap();
    assert!(!dir.exists());
    assert!(!cg.exists(), "cgroup left: {:?}", cg.dirs());
    assert!(!alive(pid));
    // The shim ends right after its post-exit work (cgroup removal, syncs), which `rm` of an
    // exited container does not wait for: bounded under load.
    let deadline = Instant::now() + TIMEOUT;
    while state::process_alive(shim, st.shim_start_time) {
        assert!(Instant::now() < deadline, "shim {shim} still running");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(mounts_under(f.root()).is_empty());
    assert!(matches!(
        rt.resolve("doomed"),
        Err(lifecycle::LifecycleError::NotFound(_))
    ));
    assert!(rt.list().unwrap().is_empty());
}

/// The detached supervisor's memory (`/proc/<shim>/status`, `smaps_rollup`), printed for
/// benches/README.md. The supervisor runs from the launcher's shared sealed copy of the binary
/// (so its forked child, the container's process, needs no re-exec): its text is the copy's
/// shared memfd pages (`RssShmem`, counted in `VmRSS`, not private), and the container's
/// process runs from no copy once it has executed its command. `FLOTILLA_SHIM_EXE` measures
/// another build (e.g. the release binary).
#[test]
fn shim_supervisor_memory() {
    let mut f = Fixture::new();
    let exe = std::env::var_os("FLOTILLA_SHIM_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flotilla")));
    let rt = f.runtime().with_exe(&exe);
    let id = rt.create(f.options("rss", &["sleep", "1000"])).unwrap();
    f.ids.insert(id.clone());
    rt.start(&id).unwrap();
    let shim = rt.state(&id).unwrap().shim_pid.unwrap();
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    // Let the supervisor settle into its poll loop.
    std::thread::sleep(Duration::from_millis(200));
    let status = fs::read_to_string(format!("/proc/{shim}/status")).unwrap();
    let smaps = fs::read_to_string(format!("/proc/{shim}/smaps_rollup")).unwrap_or_default();
    let kb = |name: &str| field(&status, name);
    let private = field(&smaps, "Private_Clean:") + field(&smaps, "Private_Dirty:");
    println!(
        "shim {} ({}): VmRSS {} kB (RssAnon {} kB, RssFile {} kB, RssShmem {} kB), Pss {} kB, \
         private {} kB",
        exe.display(),
        if cfg!(debug_assertions) {
            "test build: debug"
        } else {
            "test build: release"
        },
        kb("VmRSS:"),
        kb("RssAnon:"),
        kb("RssFile:"),
        kb("RssShmem:"),
        field(&smaps, "Pss:"),
        private,
    );
    if std::env::var_os("FLOTILLA_SHIM_EXE").is_none() {
        let link = fs::read_link(format!("/proc/{shim}/exe")).unwrap();
        assert!(link.to_string_lossy().contains("memfd:"), "{link:?}");
        // The binary's pages are the shared copy's (smaps counts them private while this
        // is the only shim mapping them); its own memory is the anonymous part.
        assert!(kb("RssAnon:") < 4096, "{status}");
        // The container's process ran from a sealed copy until its execve: the sleep is
        // busybox now, and no copy outlives it.
        let pid = rt.state(&id).unwrap().pid.unwrap();
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(!exe.to_string_lossy().contains("memfd:"), "{exe:?}");
    }
    rt.rm(&id, true).unwrap();
}

/// The zygote's state letter (`/proc/<pid>/stat`), None once it is gone (reaped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Starts go through the runtime's fork server (`flotilla shim zygote`, started from the
/// sealed copy of the binary on the first start): the container's process runs from a sealed,
/// unwritable memfd (with `init: true` it stays on it); a zygote killed with SIGKILL between
/// two starts fails nothing (that start runs the shim directly, the next one starts a new
/// zygote); ten concurrent starts all succeed through one zygote; and no zygote outlives the
/// runtime that started it.
#[test]
fn starts_go_through_the_fork_server() {
    let mut f = Fixture::new();
    let rt = f.runtime();
    assert_eq!(rt.spawner().zygote_pid(), None, "no zygote before a start");
    let make = |f: &mut Fixture, name: &str, init: bool| {
        let mut options = f.options(name, &["sleep", "1000"]);
        options.config.init = init;
        let id = rt.create(options).unwrap();
        f.ids.insert(id.clone());
        id
    };
    let first = make(&mut f, "z1", true);
    rt.start(&first).unwrap();
    let zygote = rt
        .spawner()
        .zygote_pid()
        .expect("a zygote after the first start");
    let zygote_exe = fs::read_link(format!("/proc/{zygote}/exe")).unwrap();
    assert!(
        zygote_exe.to_string_lossy().contains("memfd:"),
        "{zygote_exe:?}"
    );
    let pid1 = rt.state(&first).unwrap().pid.unwrap();
    let exe = format!("/proc/{pid1}/exe");
    let link = fs::read_link(&exe).unwrap();
    assert!(link.to_string_lossy().contains("memfd:"), "{link:?}");
    assert!(fs::OpenOptions::new().write(true).open(&exe).is_err());
    assert!(fs::OpenOptions::new().append(true).open(&exe).is_err());
    // The container's init runs from the zygote's own sealed copy.
    let ino = |p: String| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    assert_eq!(ino(exe.clone()), ino(format!("/proc/{zygote}/exe")));
    assert_eq!(rt.spawner().zygote_pid(), Some(zygote), "the zygote stays");
    // The supervisor's command line is the shim command's, as if executed (it names the
    // container's state dir), not the zygote's.
    let shim = rt.state(&first).unwrap().shim_pid.unwrap();
    let cmdline = fs::read(format!("/proc/{shim}/cmdline")).unwrap();
    let want = format!("\0shim\0start\0--bundle\0{}\0", rt.dir(&first).display());
    assert!(
        cmdline.windows(want.len()).any(|w| w == want.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );

    // Killed between two starts: the next start still works (directly), the dead zygote is
    // reaped, and the start after that has a new one.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(zygote as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while proc_state(zygote) != Some('Z') {
        assert!(Instant::now() < deadline, "zygote {zygote} not dead");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = make(&mut f, "z2", false);
    rt.start(&second).unwrap();
    assert_eq!(rt.state(&second).unwrap().status, Status::Running);
    assert_eq!(proc_state(zygote), None, "the killed zygote was reaped");
    let third = make(&mut f, "z3", false);
    rt.start(&third).unwrap();
    let zygote2 = rt.spawner().zygote_pid().expect("a new zygote");
    assert_ne!(zygote2, zygote);

    // Ten at once, through the same zygote.
    let ids: Vec<String> = (0..10)
        .map(|i| make(&mut f, &format!("c{i}"), false))
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = ids.iter().map(|id| s.spawn(|| rt.start(id))).collect();
        for h in handles {
            let pid = h.join().unwrap().unwrap();
            assert!(pid > 0);
        }
    });
    for id in &ids {
        assert_eq!(rt.state(id).unwrap().status, Status::Running, "{id}");
    }
    assert_eq!(rt.spawner().zygote_pid(), Some(zygote2));

    // Its children exited with statuses it reported: `rm -f` everything, then the runtime
    // goes and takes its zygote along.
    for id in ids.iter().chain([&first, &second, &third]) {
        rt.rm(id, true).unwrap();
    }
    let clone = rt.clone();
    drop(rt);
    assert_eq!(
        proc_state(zygote2).map(|_| ()),
        Some(()),
        "a clone still holds it"
    );
    drop(clone);
    assert_eq!(
        proc_state(zygote2),
        None,
        "zygote {zygote2} outlived its runtime"
    );
}
