//! Root integration tests of `exec` (`runtime::exec` through the real `flotilla shim exec`),
//! the built-in init (`init: true`), the container's `/etc/hostname`, `/etc/hosts` and
//! `/etc/resolv.conf`, and `lo` up in its fresh network namespace. Containers are started
//! detached through the lifecycle (`flotilla shim start`), on a busybox-static image directory
//! used as the single overlay layer (as in tests/runtime_container.rs).
//!
//! Each test has its own tempdir (data root and image), its own cgroup prefix and a marker in
//! its containers' environment; a drop guard removes its containers, kills what is left (by pid:
//! shims and PID 1s from the state files, then marked processes), removes its cgroups, unmounts
//! what is under the tempdir and removes it, even when the test fails.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flotilla::runtime::config::{self, ContainerConfig};
use flotilla::runtime::exec::{self, ExecOptions};
use flotilla::runtime::lifecycle::{self, CreateOptions, Runtime};
use flotilla::runtime::state::{self, Status};
use flotilla::runtime::sys::cgroup::{self, Cgroup};

const BUSYBOX: &str = "/usr/bin/busybox";
const TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Fixture {
    dir: Option<tempfile::TempDir>,
    prefix: String,
    marker: String,
    ids: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            rustix::process::geteuid().is_root(),
            "the exec tests need root (CI runs them as root)"
        );
        assert!(
            Path::new(BUSYBOX).exists(),
            "busybox-static is missing: apt-get install -y busybox-static (scripts/test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("flt-ex-")
            .tempdir()
            .expect("tempdir");
        let marker = format!(
            "FLT_TEST_MARK={}",
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let f = Fixture {
            dir: Some(dir),
            prefix: format!("extest-{}-{n}", std::process::id()),
            marker,
            ids: Vec::new(),
        };
        f.build_image();
        f
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn image(&self) -> PathBuf {
        self.path().join("image")
    }

    /// The busybox image: `/bin/busybox`, its applets, users and groups.
    fn build_image(&self) {
        let image = self.image();
        for d in ["bin", "etc", "tmp", "root"] {
            fs::create_dir_all(image.join(d)).unwrap();
        }
        fs::copy(BUSYBOX, image.join("bin/busybox")).unwrap();
        let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.contains('/') {
                let _ = symlink("busybox", image.join("bin").join(applet));
            }
        }
        fs::write(
            image.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        fs::write(image.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        // The image's own files, which the container's must hide.
        fs::write(image.join("etc/hosts"), "10.9.9.9 image-hosts\n").unwrap();
        fs::write(image.join("etc/hostname"), "image-hostname\n").unwrap();
    }

    fn runtime(&self) -> Runtime {
        Runtime::new(&self.path().join("root"))
            .unwrap()
            .with_prefix(&self.prefix)
            .with_exe(Path::new(env!("CARGO_BIN_EXE_flotilla")))
    }

    fn config(&self, script: &str) -> ContainerConfig {
        ContainerConfig {
            image: config::ImageConfig {
                env: vec!["PATH=/bin".into()],
                ..Default::default()
            },
            layers: vec![self.image()],
            command: Some(vec!["sh".into(), "-c".into(), script.into()]),
            env: vec![self.marker.clone()],
            ..Default::default()
        }
    }

    /// Creates and starts a container; returns its id.
    fn run(&mut self, config: ContainerConfig) -> String {
        let rt = self.runtime();
        let id = rt
            .create(CreateOptions {
                config,
                ..Default::default()
            })
            .unwrap();
        self.ids.push(id.clone());
        rt.start(&id).unwrap();
        id
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        self.runtime().dir(id)
    }

    /// Runs `args` in the container, capturing its output (bounded).
    fn exec_with(&self, id: &str, options: ExecOptions) -> Output {
        let options = ExecOptions {
            exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))),
            ..options
        };
        let mut child = exec::command(&self.dir_of(id), &options)
            .unwrap()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("exec {options:?} did not finish within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait_with_output().unwrap()
    }

    fn exec_sh(&self, id: &str, script: &str) -> Output {
        self.exec_with(
            id,
            ExecOptions {
                args: vec!["sh".into(), "-c".into(), script.into()],
                ..Default::default()
            },
        )
    }

    /// Runs `script` with `sh -c` in the container, asserts success, returns its stdout.
    fn sh(&self, id: &str, script: &str) -> String {
        ok(self.exec_sh(id, script))
    }

    /// Waits (bounded) until `path` exists in the container's upper dir: its PID 1 is past the
    /// point that wrote it.
    fn wait_for_file(&self, id: &str, path: &str) {
        let file = self.dir_of(id).join("upper").join(path);
        let deadline = Instant::now() + TIMEOUT;
        while !file.exists() {
            assert!(
                Instant::now() < deadline,
                "{} did not appear; state {:?}",
                file.display(),
                state::read(&self.dir_of(id))
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until the container has exited; returns its exit code.
    fn wait_exit(&self, id: &str) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let st = self.runtime().state(id).unwrap();
            if matches!(st.status, Status::Exited | Status::Dead) {
                return st.exit_code.unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "container {id} still {st:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Pids of processes carrying this test's marker in their environment.
    fn marked_processes(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(env) = fs::read(entry.path().join("environ"))
                && env.split(|b| *b == 0).any(|e| e == self.marker.as_bytes())
            {
                out.push(pid);
            }
        }
        out
    }
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kill(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let rt = self.runtime();
        let root = self.path().to_path_buf();
        for id in &self.ids {
            let dir = rt.dir(id);
            if let Ok(st) = state::read(&dir)
                && matches!(st.status, Status::Running | Status::Paused)
            {
                if let Some(pid) = st.shim_pid
                    && state::process_alive(pid, st.shim_start_time)
                {
                    kill(pid);
                }
                if let Some(pid) = st.pid {
                    kill(pid);
                }
            }
            let _ = rt.rm(id, true);
            if let Ok(cg) = Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&self.prefix))) {
                let _ = cg.destroy(true);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut leftover = self.marked_processes();
        while !leftover.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            leftover = self.marked_processes();
        }
        for pid in &leftover {
            kill(*pid);
        }
        let _ = cgroup::cleanup_prefix(&self.prefix);
        let mounts = lifecycle::mounts_under(&root);
        for m in mounts.iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
        if !std::thread::panicking() {
            assert!(leftover.is_empty(), "leftover processes: {leftover:?}");
            assert!(mounts.is_empty(), "leftover mounts: {mounts:?}");
            assert!(!root.exists(), "leftover directory {}", root.display());
        }
    }
}

const LONG_RUNNING: &str = "echo from-pid1 > /tmp/written; while :; do sleep 1; done";

#[test]
fn exec_sees_the_container_filesystem_pid_namespace_and_cgroup() {
    let mut f = Fixture::new();
    let id = f.run(f.config(LONG_RUNNING));
    f.wait_for_file(&id, "tmp/written");
    // The file the container wrote.
    assert_eq!(f.sh(&id, "cat /tmp/written"), "from-pid1\n");
    // Its pid namespace: PID 1 is the container's shell, the exec'd shell is another pid, and
    // nothing of the host is visible.
    let out = f.sh(
        &id,
        "echo self $$; for p in /proc/[0-9]*; do echo $(cat $p/comm); done | sort | uniq -c",
    );
    let mut lines = out.lines();
    let me: i32 = lines
        .next()
        .and_then(|l| l.strip_prefix("self "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(me > 1, "{out}");
    let names: Vec<String> = lines.map(|l| l.split_whitespace().collect()).collect();
    for name in &names {
        assert!(
            ["sh", "sleep", "sort", "uniq", "cat"]
                .iter()
                .any(|n| name.ends_with(n)),
            "unexpected process {name:?} (host processes visible?)\n{out}"
        );
    }
    assert_eq!(
        f.sh(&id, "cat /proc/1/cmdline | tr '\\0' ' '"),
        format!("sh -c {LONG_RUNNING} ")
    );
    let ps = f.sh(&id, "ps -o pid,args");
    assert!(
        ps.lines().any(|l| l.trim_start().starts_with("1 sh -c")),
        "{ps}"
    );
    assert!(ps.lines().any(|l| l.contains("ps -o pid,args")), "{ps}");
    // The container's namespaces, cgroup (a process outside the container's cgroup would see
    // `/..` paths through the cgroup namespace) and capabilities.
    let st = state::read(&f.dir_of(&id)).unwrap();
    let pid1 = st.pid.unwrap();
    let out = f.sh(
        &id,
        "for n in ipc uts net pid mnt cgroup; do echo $n $(readlink /proc/self/ns/$n); done; \
         cat /proc/self/cgroup; grep -E 'CapEff|NoNewPrivs' /proc/self/status; hostname",
    );
    for n in ["ipc", "uts", "net", "pid", "mnt", "cgroup"] {
        let theirs = fs::read_link(format!("/proc/{pid1}/ns/{n}")).unwrap();
        assert!(
            out.contains(&format!("{n} {}\n", theirs.display())),
            "{n}: {theirs:?}\n{out}"
        );
    }
    for line in out.lines().filter(|l| l.contains(":/")) {
        assert!(
            !line.contains("/.."),
            "outside the container's cgroup: {out}"
        );
    }
    let cg = Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&f.prefix))).unwrap();
    assert!(cg.pids().unwrap().len() >= 2, "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb\n"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1\n"), "{out}");
    assert!(out.ends_with(&format!("{}\n", &id[..12])), "{out}");
}

#[test]
fn exec_options_and_exit_codes() {
    let mut f = Fixture::new();
    let id = f.run(f.config(LONG_RUNNING));
    f.wait_for_file(&id, "tmp/written");
    let out = f.exec_sh(&id, "exit 5");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let nobody = f.exec_with(
        &id,
        ExecOptions {
            args: vec![
                "sh".into(),
                "-c".into(),
                "id -u; id -g; echo $HOME; grep CapEff /proc/self/status".into(),
            ],
            user: Some("nobody".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        ok(nobody),
        "65534\n65534\n/nonexistent\nCapEff:\t0000000000000000\n"
    );
    let env = f.exec_with(
        &id,
        ExecOptions {
            args: vec![
                "sh".into(),
                "-c".into(),
                "echo X=$X; echo $FLT_TEST_MARK; pwd".into(),
            ],
            env: vec!["X=1".into()],
            working_dir: Some("/tmp".into()),
            ..Default::default()
        },
    );
    let marker = f.marker.split_once('=').unwrap().1.to_string();
    assert_eq!(ok(env), format!("X=1\n{marker}\n/tmp\n"));
    let missing = f.exec_with(
        &id,
        ExecOptions {
            args: vec!["nosuchcmd".into()],
            ..Default::default()
        },
    );
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains(r#""nosuchcmd": executable file not found in $PATH"#),
        "{missing:?}"
    );
    let not_executable = f.exec_with(
        &id,
        ExecOptions {
            args: vec!["/etc/passwd".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        not_executable.status.code(),
        Some(126),
        "{not_executable:?}"
    );
    let bad_user = f.exec_with(
        &id,
        ExecOptions {
            args: vec!["true".into()],
            user: Some("ghost".into()),
            ..Default::default()
        },
    );
    assert_ne!(bad_user.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&bad_user.stderr).contains("unable to find user ghost"),
        "{bad_user:?}"
    );
    // A pseudo-terminal: stdin, stdout and stderr are a terminal; the status still comes back.
    let tty = f.exec_with(
        &id,
        ExecOptions {
            args: vec![
                "sh".into(),
                "-c".into(),
                "test -t 0 && test -t 1 && echo tty $TERM; exit 9".into(),
            ],
            tty: true,
            ..Default::default()
        },
    );
    assert_eq!(tty.status.code(), Some(9), "{tty:?}");
    assert_eq!(String::from_utf8_lossy(&tty.stdout), "tty xterm\r\n");
    // The library call returns the exit code (its streams are this test's).
    let code = exec::exec(
        &f.dir_of(&id),
        &ExecOptions {
            args: vec!["sh".into(), "-c".into(), "exit 7".into()],
            exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(code, 7);
    // Once the container has stopped, exec is refused with a clear error.
    f.runtime().kill(&id, "KILL").unwrap();
    f.wait_exit(&id);
    let err = exec::command(
        &f.dir_of(&id),
        &ExecOptions {
            args: vec!["true".into()],
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        format!("container {id} is exited: exec needs a running container")
    );
}

#[test]
fn init_forwards_sigterm_to_a_trapping_child() {
    let mut f = Fixture::new();
    let mut c = f.config("trap 'exit 3' TERM; touch /tmp/ready; while :; do sleep 0.05; done");
    c.init = true;
    let id = f.run(c);
    f.wait_for_file(&id, "tmp/ready");
    // PID 1 is the init, run from the sealed memfd, without the shim's command line (host
    // paths); the command is its child.
    let out = f.sh(
        &id,
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /proc/1/comm; readlink /proc/1/exe; \
         ps -o ppid,args | grep -v grep | grep 'sh -c trap'",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim_end(), "flotilla-init", "{out}");
    assert_eq!(lines[1], "flotilla-init", "{out}");
    assert!(lines[2].contains("memfd:"), "{out}");
    assert!(lines[3].trim_start().starts_with("1 sh -c trap"), "{out}");
    let pid1 = state::read(&f.dir_of(&id)).unwrap().pid.unwrap();
    assert!(
        fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid1}/exe"))
            .is_err()
    );
    // The init catches the stop signal (so `stop` does not skip the grace period).
    assert!(lifecycle::catches_signal(
        pid1,
        nix::sys::signal::Signal::SIGTERM
    ));
    let started = Instant::now();
    f.runtime().kill(&id, "TERM").unwrap();
    assert_eq!(f.wait_exit(&id), 3);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// One sealed copy of the binary per launching process, shared by every container it starts:
/// two inits run from the same memfd (same inode), not from a copy each. (A copy per start
/// of the 80 MB debug binary filled 24 GB of shmem with a hundred concurrent starts.)
#[test]
fn containers_share_one_sealed_copy_of_the_binary() {
    let mut f = Fixture::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut c = f.config("touch /tmp/ready; while :; do sleep 0.05; done");
        c.init = true;
        let id = f.run(c);
        f.wait_for_file(&id, "tmp/ready");
        ids.push(id);
    }
    let inode = |id: &str| {
        let pid1 = state::read(&f.dir_of(id)).unwrap().pid.unwrap();
        let link = fs::read_link(format!("/proc/{pid1}/exe")).unwrap();
        assert!(link.to_string_lossy().contains("memfd:"), "{link:?}");
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(format!("/proc/{pid1}/exe")).unwrap())
    };
    assert_eq!(inode(&ids[0]), inode(&ids[1]));
    for id in &ids {
        f.runtime().kill(id, "KILL").unwrap();
        f.wait_exit(id);
    }
}

/// Healthchecks run through exec (the daemon's monitor): failures past `retries` make the
/// container unhealthy, a passing probe healthy again, each change reported once; a probe that
/// outlives its timeout is killed, with what it started in the container.
#[test]
fn healthchecks_run_through_exec_and_a_slow_probe_is_killed() {
    use flotilla::engine::health::{self, HealthConfig, HealthStatus};
    use std::sync::{Arc, Mutex};
    let mut f = Fixture::new();
    let c = f.config("touch /tmp/ready; while :; do sleep 0.05; done");
    let id = f.run(c);
    f.wait_for_file(&id, "tmp/ready");
    let dir = f.dir_of(&id);
    let exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_flotilla")));
    let config = HealthConfig {
        command: vec!["sh".into(), "-c".into(), "test -f /tmp/ok".into()],
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        start_period: Duration::ZERO,
        start_interval: Duration::from_millis(100),
        retries: 2,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&changes);
    let monitor = rt.spawn(health::monitor(
        dir.clone(),
        config.clone(),
        exe.clone(),
        move |s| seen.lock().unwrap().push(s),
    ));
    let wait_for = |want: HealthStatus| {
        let deadline = Instant::now() + TIMEOUT;
        while health::read(&dir).map(|h| h.status) != Some(want) {
            assert!(
                Instant::now() < deadline,
                "never {want}: {:?}",
                health::read(&dir)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(HealthStatus::Unhealthy);
    let h = health::read(&dir).unwrap();
    assert!(h.failing_streak >= 2, "{h:?}");
    assert!(h.log.iter().all(|p| p.exit_code == 1), "{h:?}");
    f.sh(&id, "touch /tmp/ok");
    wait_for(HealthStatus::Healthy);
    assert_eq!(
        *changes.lock().unwrap(),
        [HealthStatus::Unhealthy, HealthStatus::Healthy]
    );

    // A probe past its timeout: -1, said so, and its process in the container is gone.
    let slow = HealthConfig {
        command: vec!["sleep".into(), "37".into()],
        timeout: Duration::from_millis(300),
        ..config
    };
    let started = Instant::now();
    let probe = rt.block_on(health::run_probe(&dir, &slow, exe));
    assert_eq!(probe.exit_code, -1, "{probe:?}");
    assert!(probe.output.contains("exceeded timeout"), "{probe:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let deadline = Instant::now() + TIMEOUT;
    while f.sh(&id, "ps -o args").contains("sleep 37") {
        assert!(Instant::now() < deadline, "the timed-out probe still runs");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The monitor ends with the container.
    f.runtime().kill(&id, "KILL").unwrap();
    f.wait_exit(&id);
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), monitor)
            .await
            .expect("the monitor outlived its container")
            .unwrap();
    });
}

#[test]
fn init_with_a_missing_command_fails_the_start_with_127() {
    let mut f = Fixture::new();
    let mut c = f.config("");
    c.command = Some(vec!["nosuchcmd".into()]);
    c.init = true;
    let rt = f.runtime();
    let id = rt
        .create(CreateOptions {
            config: c,
            ..Default::default()
        })
        .unwrap();
    f.ids.push(id.clone());
    match rt.start(&id) {
        Err(lifecycle::LifecycleError::StartFailed {
            status, message, ..
        }) => {
            assert_eq!(status, 127);
            assert!(
                message.contains(r#""nosuchcmd": executable file not found in $PATH"#),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Counts zombie processes in the container (state `Z` in `/proc/<pid>/stat`).
const COUNT_ZOMBIES: &str = "n=0; for s in /proc/[0-9]*/stat; do read -r a b c rest < $s \
                             2>/dev/null && [ \"$c\" = Z ] && n=$((n+1)); done; echo $n";

#[test]
fn init_reaps_orphaned_zombies() {
    let mut f = Fixture::new();
    // Two grandchildren are orphaned (their parent subshell exits at once) and end shortly;
    // then PID 1's command becomes `sleep`, which reaps nothing.
    let script = "(sleep 0.2 &); (sleep 0.2 &); touch /tmp/ready; exec sleep 1000";
    // Without init the orphans stay zombies: the check below can see them.
    let id = f.run(f.config(script));
    f.wait_for_file(&id, "tmp/ready");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n: u32 = f.sh(&id, COUNT_ZOMBIES).trim().parse().unwrap();
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no zombies without init");
        std::thread::sleep(Duration::from_millis(50));
    }
    // With init: they are reaped.
    let mut c = f.config(script);
    c.init = true;
    let id = f.run(c);
    f.wait_for_file(&id, "tmp/ready");
    // The orphans end 0.2 s after they started: then only the command sleeps, and nothing
    // stays a zombie.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n: u32 = f.sh(&id, COUNT_ZOMBIES).trim().parse().unwrap();
        let sleeping = f.sh(&id, "pidof sleep | wc -w").trim().to_string();
        if n == 0 && sleeping == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} zombies, {sleeping} sleeps with init: {}",
            f.sh(&id, "ps -o pid,ppid,stat,args")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // PID 1 is still the init, its child the command.
    assert!(
        f.sh(&id, "cat /proc/1/comm").starts_with("flotilla-init")
            || f.sh(&id, "cat /proc/1/cmdline")
                .starts_with("flotilla-init")
    );
}

#[test]
fn etc_files_are_provided() {
    let mut f = Fixture::new();
    let mut c = f.config(LONG_RUNNING);
    c.hostname = Some("box.example".into());
    c.extra_hosts = vec!["db:10.1.2.3".into(), "v6=fd00::7".into()];
    c.dns = vec!["9.9.9.9".into()];
    c.dns_search = vec!["corp.example".into()];
    c.dns_opt = vec!["ndots:2".into()];
    let id = f.run(c);
    f.wait_for_file(&id, "tmp/written");
    assert_eq!(
        f.sh(&id, "cat /etc/hostname; hostname"),
        "box.example\nbox.example\n"
    );
    assert_eq!(
        f.sh(&id, "cat /etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n10.1.2.3\tdb\nfd00::7\tv6\n"
    );
    assert_eq!(
        f.sh(&id, "cat /etc/resolv.conf"),
        "nameserver 9.9.9.9\nsearch corp.example\noptions ndots:2\n"
    );
    // The image's own files are untouched.
    assert_eq!(
        fs::read_to_string(f.image().join("etc/hosts")).unwrap(),
        "10.9.9.9 image-hosts\n"
    );

    // Defaults: the short id as hostname, the host's non-loopback nameservers.
    let id = f.run(f.config(LONG_RUNNING));
    f.wait_for_file(&id, "tmp/written");
    let short = &id[..12];
    assert_eq!(
        f.sh(&id, "cat /etc/hostname; hostname; echo $HOSTNAME"),
        format!("{short}\n{short}\n{short}\n")
    );
    let hosts = f.sh(&id, "cat /etc/hosts");
    assert!(
        hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost"),
        "{hosts}"
    );
    assert!(!hosts.contains("image-hosts"), "{hosts}");
    let resolv = f.sh(&id, "cat /etc/resolv.conf");
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let expected: Vec<String> = flotilla::runtime::etcfiles::nameservers(&host)
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .map(|ip| format!("nameserver {ip}"))
        .collect();
    let got: Vec<&str> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver "))
        .collect();
    if expected.is_empty() {
        assert!(!got.is_empty(), "{resolv}");
    } else {
        assert_eq!(got, expected, "{resolv}");
    }
    assert!(!resolv.contains("127."), "{resolv}");
}

#[test]
fn loopback_is_up_in_the_new_network_namespace() {
    let mut f = Fixture::new();
    let id = f.run(f.config(
        "mkdir -p /tmp/www && echo hello-lo > /tmp/www/index.html && \
         httpd -p 127.0.0.1:8080 -h /tmp/www && touch /tmp/written; \
         while :; do sleep 1; done",
    ));
    f.wait_for_file(&id, "tmp/written");
    let flags = f.sh(&id, "cat /sys/class/net/lo/flags");
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {flags:#x}");
    // Only lo exists: the namespace is the container's own.
    assert_eq!(f.sh(&id, "ls /sys/class/net"), "lo\n");
    assert_eq!(
        f.sh(&id, "ping -c 1 -W 2 127.0.0.1 >/dev/null && echo pong"),
        "pong\n"
    );
    // `localhost` resolves through the container's /etc/hosts and answers on lo.
    assert_eq!(
        f.sh(&id, "wget -q -O - http://localhost:8080/index.html"),
        "hello-lo\n"
    );
}
