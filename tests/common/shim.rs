//! A fixture for tests that run `flotilla shim run` (the real binary) on OCI bundles rendered
//! by `runtime::config::render` over a busybox-static image used as the single overlay layer.
//! Each fixture has its own tempdir and a unique marker in its containers' environment; on drop
//! it kills marked processes, unmounts anything under the tempdir and removes it even when the
//! test fails, and (when the test did not fail) asserts there was nothing left to clean.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla::runtime::config::{self, ContainerConfig};

pub const BUSYBOX: &str = "/usr/bin/busybox";
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Fixture {
    pub dir: Option<tempfile::TempDir>,
    pub marker: String,
    pub next: usize,
    pub spawned: Vec<Child>,
}

impl Fixture {
    pub fn new() -> Fixture {
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

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn image(&self) -> PathBuf {
        self.path().join("image")
    }

    /// The busybox image: `/bin/busybox`, its applets, users, and mount points.
    pub fn build_image(&self) {
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
    pub fn config(&self, script: &str) -> ContainerConfig {
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
    pub fn bundle(&mut self, config: &ContainerConfig) -> (PathBuf, PathBuf) {
        self.next += 1;
        let bundle = self.path().join(format!("bundle{}", self.next));
        let state = self.path().join(format!("state{}", self.next));
        fs::create_dir_all(&bundle).unwrap();
        let host = flotilla::runtime::sys::container::host_hard_limits();
        let rendered = config::render(config, &host).unwrap();
        rendered.spec.save(bundle.join("config.json")).unwrap();
        (bundle, state)
    }

    pub fn spawn(&mut self, config: &ContainerConfig) -> u32 {
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
    pub fn wait(&mut self, pid: u32) -> Output {
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

    pub fn run(&mut self, config: &ContainerConfig) -> Output {
        let pid = self.spawn(config);
        self.wait(pid)
    }

    /// Runs `script`, asserts success and returns its standard output.
    pub fn sh(&mut self, config: &ContainerConfig) -> String {
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
    pub fn marked_processes(&self) -> Vec<i32> {
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
    pub fn mounts(&self) -> Vec<String> {
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
