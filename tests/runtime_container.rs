//! Root integration tests of the container runtime: `flotilla shim run` (the real binary) on OCI
//! bundles rendered by `runtime::config::render` over a busybox-static image used as the single
//! overlay layer. Each test has its own tempdir and a unique marker in its containers'
//! environment; a drop guard kills marked processes, unmounts anything under the tempdir and
//! removes it even when the test fails, and (when the test did not fail) asserts there was
//! nothing left to clean.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla::runtime::config::{self, BindMount, ContainerConfig, TmpfsMount};

const BUSYBOX: &str = "/usr/bin/busybox";
const TIMEOUT: Duration = Duration::from_secs(60);

struct Fixture {
    dir: Option<tempfile::TempDir>,
    marker: String,
    next: usize,
    spawned: Vec<Child>,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            Path::new(BUSYBOX).exists(),
            "busybox-static is missing: apt-get install -y busybox-static (scripts/test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("flt-rt-")
            .tempdir()
            .expect("tempdir");
        let marker = format!(
            "FLT_TEST_MARK={}",
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let f = Fixture {
            dir: Some(dir),
            marker,
            next: 0,
            spawned: Vec::new(),
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

    /// The busybox image: `/bin/busybox`, its applets, users, and mount points.
    fn build_image(&self) {
        let image = self.image();
        for d in ["bin", "etc", "tmp", "mnt", "root", "home/app"] {
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
             app:x:1000:1000:app:/home/app:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        fs::write(
            image.join("etc/group"),
            "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n",
        )
        .unwrap();
    }

    /// A config running `sh -c script` on the busybox image.
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

    /// Writes the bundle of `config` and returns (bundle, state) dirs.
    fn bundle(&mut self, config: &ContainerConfig) -> (PathBuf, PathBuf) {
        self.next += 1;
        let bundle = self.path().join(format!("bundle{}", self.next));
        let state = self.path().join(format!("state{}", self.next));
        fs::create_dir_all(&bundle).unwrap();
        let host = flotilla::runtime::sys::container::host_hard_limits();
        let rendered = config::render(config, &host).unwrap();
        rendered.spec.save(bundle.join("config.json")).unwrap();
        (bundle, state)
    }

    fn spawn(&mut self, config: &ContainerConfig) -> u32 {
        let (bundle, state) = self.bundle(config);
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["shim", "run", "--bundle"])
            .arg(&bundle)
            .arg("--state")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.spawned.push(child);
        pid
    }

    /// Waits (bounded) for the shim `pid` started by [`Fixture::spawn`].
    fn wait(&mut self, pid: u32) -> Output {
        let i = self.spawned.iter().position(|c| c.id() == pid).unwrap();
        let mut child = self.spawned.remove(i);
        let deadline = Instant::now() + TIMEOUT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shim {pid} did not finish within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().unwrap()
    }

    fn run(&mut self, config: &ContainerConfig) -> Output {
        let pid = self.spawn(config);
        self.wait(pid)
    }

    /// Runs `script`, asserts success and returns its standard output.
    fn sh(&mut self, config: &ContainerConfig) -> String {
        let out = self.run(config);
        assert!(
            out.status.success(),
            "status {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
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

    /// Mount points under this test's tempdir, deepest last.
    fn mounts(&self) -> Vec<String> {
        let prefix = self.path().to_string_lossy().into_owned();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for mut child in self.spawned.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Container processes die with their shim (parent-death signal) and their PID 1;
        // give the kernel a moment, then kill what is left (only pids with our marker).
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut leftover = self.marked_processes();
        while !leftover.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            leftover = self.marked_processes();
        }
        for pid in &leftover {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(*pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        let mounts = self.mounts();
        for m in mounts.iter().rev() {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
        let dir = self.dir.take().unwrap();
        let path = dir.path().to_path_buf();
        let _ = dir.close();
        if !std::thread::panicking() {
            assert!(leftover.is_empty(), "leftover processes: {leftover:?}");
            assert!(mounts.is_empty(), "leftover mounts: {mounts:?}");
            assert!(!path.exists(), "leftover directory {}", path.display());
        }
    }
}

#[test]
fn pid_one_and_host_processes_invisible_and_hostname() {
    let mut f = Fixture::new();
    let mut c = f.config(
        "echo $$; for p in /proc/[0-9]*; do echo proc ${p#/proc/}; done; hostname; exit 42",
    );
    c.hostname = Some("box".into());
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\nproc 1\nbox\n");
}

#[test]
fn masked_and_read_only_paths() {
    let mut f = Fixture::new();
    let host_timer_list = fs::read("/proc/timer_list").map(|t| t.len()).unwrap_or(0);
    let c = f.config(
        "echo kcore $(cat /proc/kcore 2>/dev/null | wc -c); \
         echo timer_list $(cat /proc/timer_list | wc -c); \
         echo acpi $(ls -A /proc/acpi | wc -l); \
         touch /proc/acpi/x 2>/dev/null && echo acpi-writable; \
         echo x 2>/dev/null > /proc/sys/kernel/domainname && echo sys-writable; \
         echo done",
    );
    let out = f.sh(&c);
    assert_eq!(out, "kcore 0\ntimer_list 0\nacpi 0\ndone\n");
    // The mask hides something: the host's timer_list is not empty.
    assert!(host_timer_list > 0 || !Path::new("/proc/timer_list").exists());
}

#[test]
fn mount_fails_without_cap_sys_admin_and_default_caps() {
    let mut f = Fixture::new();
    let c = f.config(
        "mount -t tmpfs x /mnt 2>/dev/null; echo rc=$?; grep CapEff /proc/self/status; \
         grep CapBnd /proc/self/status; grep NoNewPrivs /proc/self/status",
    );
    let out = f.sh(&c);
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "rc=0", "{out}");
    // Docker's default set: chown dac_override fowner fsetid kill setgid setuid setpcap
    // net_bind_service net_raw sys_chroot mknod audit_write setfcap.
    assert_eq!(lines[1], "CapEff:\t00000000a80425fb");
    assert_eq!(lines[2], "CapBnd:\t00000000a80425fb");
    assert_eq!(lines[3], "NoNewPrivs:\t1");
}

#[test]
fn read_only_root_and_tmpfs() {
    let mut f = Fixture::new();
    let mut c = f.config(
        "touch /x 2>/dev/null; echo root=$?; touch /tmp/y && echo tmp=$?; \
         grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1",
    );
    c.read_only = true;
    c.tmpfs = vec![TmpfsMount {
        target: "/tmp".into(),
        size: Some(1 << 20),
        mode: None,
    }];
    let out = f.sh(&c);
    assert_eq!(out, "root=1\ntmp=0\nro\n");
    // The image itself is untouched.
    assert!(!f.image().join("x").exists());
}

#[test]
fn user_option_takes_effect() {
    let mut f = Fixture::new();
    let mut c = f.config("id; grep CapEff /proc/self/status; echo $HOME");
    c.user = Some("nobody".into());
    assert_eq!(
        f.sh(&c),
        "uid=65534(nobody) gid=65534(nogroup)\nCapEff:\t0000000000000000\n/nonexistent\n"
    );
    c.user = Some("1000:1000".into());
    assert_eq!(
        f.sh(&c),
        "uid=1000(app) gid=1000(app) groups=10(wheel)\nCapEff:\t0000000000000000\n/home/app\n"
    );
    c.user = Some("4321".into());
    assert_eq!(
        f.sh(&c),
        "uid=4321 gid=0(root)\nCapEff:\t0000000000000000\n/\n"
    );
    c.user = Some("ghost".into());
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unable to find user ghost: no matching entries in passwd file"),
        "{out:?}"
    );
}

#[test]
fn missing_entrypoint_exits_127() {
    let mut f = Fixture::new();
    let mut c = f.config("");
    c.command = Some(vec!["nosuchcmd".into(), "arg".into()]);
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"exec: "nosuchcmd": executable file not found in $PATH"#),
        "{stderr}"
    );
    c.command = Some(vec!["/no/such/file".into()]);
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    c.command = Some(vec!["/etc/passwd".into()]);
    let out = f.run(&c);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
}

#[test]
fn symlink_at_mount_destination_stays_inside() {
    let mut f = Fixture::new();
    let image = f.image();
    symlink("/etc", image.join("data")).unwrap();
    symlink("../../../../../../../../../etc", image.join("data2")).unwrap();
    let src = f.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("marker"), "confined\n").unwrap();
    let host_etc = fs::read_dir("/etc").unwrap().count();
    for target in ["/data", "/data2"] {
        let mut c = f.config("cat /etc/marker; ls /etc | wc -l");
        c.binds = vec![BindMount {
            source: src.clone(),
            target: target.into(),
            read_only: true,
        }];
        // Bound on the container's /etc (resolved in its root), not on the host's /etc.
        assert_eq!(f.sh(&c), "confined\n1\n", "{target}");
    }
    assert!(!Path::new("/etc/marker").exists());
    assert_eq!(fs::read_dir("/etc").unwrap().count(), host_etc);
}

#[test]
fn binary_cannot_be_overwritten_through_proc_exe() {
    let mut f = Fixture::new();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_flotilla"));
    let before = fs::metadata(&binary).unwrap();
    let c = f.config(
        "echo x 2>/dev/null > /proc/self/exe && echo self-writable; \
         echo x 2>/dev/null >> /proc/1/exe && echo pid1-writable; echo ready; sleep 60",
    );
    let pid = f.spawn(&c);
    // The shim runs from a sealed memfd: its exe is not the flotilla file and is not writable.
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let link = fs::read_link(&exe).unwrap_or_default();
        if link.to_string_lossy().contains("memfd:") {
            break;
        }
        assert!(Instant::now() < deadline, "shim still runs from {link:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(fs::OpenOptions::new().write(true).open(&exe).is_err());
    assert!(fs::OpenOptions::new().append(true).open(&exe).is_err());
    // The container reached its `sleep` (the shell may exec it in its place).
    let sleeping = |f: &Fixture| {
        f.marked_processes().iter().any(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
    };
    while !sleeping(&f) {
        assert!(Instant::now() < deadline, "container did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Killing the shim takes its container down.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let out = f.wait(pid);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
    let after = fs::metadata(&binary).unwrap();
    assert_eq!(before.len(), after.len());
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
}

#[test]
fn signals_are_forwarded_and_exit_codes_reported() {
    let mut f = Fixture::new();
    let c = f.config("trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done");
    let pid = f.spawn(&c);
    let deadline = Instant::now() + TIMEOUT;
    while f.marked_processes().len() < 2 {
        assert!(Instant::now() < deadline, "container did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = f.wait(pid);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn environment_cwd_and_sysctls() {
    let mut f = Fixture::new();
    let mut c = f.config(
        "pwd; echo $GREETING; cat /proc/sys/kernel/shmmni; cat /proc/sys/net/ipv4/ip_forward",
    );
    c.working_dir = Some("/srv/app".into());
    c.env.push("GREETING=hello".into());
    c.sysctls = BTreeMap::from([
        ("kernel.shmmni".to_string(), "1234".to_string()),
        ("net.ipv4.ip_forward".to_string(), "1".to_string()),
    ]);
    assert_eq!(f.sh(&c), "/srv/app\nhello\n1234\n1\n");
    // A ulimit above the host's hard limit is clamped to it, not refused by the kernel.
    let hard = flotilla::runtime::sys::container::host_hard_limits().hard["nofile"];
    let mut c = f.config("ulimit -Hn; ulimit -Sn");
    c.ulimits = vec![config::Ulimit {
        name: "nofile".into(),
        soft: 1000,
        hard: hard + 1000,
    }];
    assert_eq!(f.sh(&c), format!("{hard}\n1000\n"));
}
