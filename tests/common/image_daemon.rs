//! A real `flotilla daemon` for the image CLI tests: its own data root, socket, config file
//! (`[dns] upstreams = []`: nothing forwarded off the machine) and an empty Docker config dir
//! of its own (never root's ~/.docker), plus a Docker config dir for the CLI. The CLI runs with
//! `--host unix://…` (no autostart, no --data-root). Stopped by pid on drop (SIGTERM, then
//! SIGKILL after a bounded wait); its cgroup prefix is cleaned and the tempdir removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla::runtime::lifecycle::{self, Runtime};
use flotilla::runtime::sys::cgroup;

use super::daemon::BIN;

/// The config every test daemon gets unless a test says otherwise.
pub const QUIET_DNS: &str = "[dns]\nupstreams = []\n";

const START: Duration = Duration::from_secs(30);
const STOP: Duration = Duration::from_secs(15);

pub struct ImageDaemon {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// `DOCKER_CONFIG` of the CLI (where `login` writes).
    pub docker: PathBuf,
    prefix: String,
}

/// The daemon command for `root`, `socket` and `config`, stderr into `log`.
fn daemon_command(dir: &Path, root: &Path, socket: &Path, config: &Path) -> Command {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .expect("daemon log");
    let mut cmd = Command::new(BIN);
    cmd.arg("daemon")
        .arg("--data-root")
        .arg(root)
        .arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .env("DOCKER_CONFIG", dir.join("daemon-docker"))
        .env_remove("FLOTILLA_HOST")
        .env_remove("FLOTILLA_ROOT")
        .env_remove("FLOTILLA_CONFIG")
        .env("RUST_LOG", "info");
    cmd
}

impl ImageDaemon {
    /// A daemon with [`QUIET_DNS`] as its config.
    pub fn start() -> ImageDaemon {
        Self::start_with(QUIET_DNS)
    }

    /// A daemon with `config` as its daemon.toml.
    pub fn start_with(config: &str) -> ImageDaemon {
        match Self::try_start(config) {
            Ok(d) => d,
            Err(log) => panic!("the daemon did not start:\n{log}"),
        }
    }

    /// Starts a daemon; its log when it exits before its socket answers.
    pub fn try_start(config_text: &str) -> Result<ImageDaemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("flt-img-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        fs::create_dir_all(&root).expect("root");
        fs::create_dir_all(dir.path().join("daemon-docker")).expect("daemon docker dir");
        let docker = dir.path().join("docker");
        fs::create_dir_all(&docker).expect("docker dir");
        let config = dir.path().join("daemon.toml");
        fs::write(&config, config_text).expect("daemon.toml");
        let socket = dir.path().join("run/flotilla.sock");
        let prefix = Runtime::new(&root).expect("runtime").prefix().to_string();
        let mut d = ImageDaemon {
            child: None,
            dir: Some(dir),
            root,
            socket,
            config,
            docker,
            prefix,
        };
        d.spawn()?;
        Ok(d)
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("tempdir").path()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = daemon_command(self.path(), &self.root, &self.socket, &self.config)
            .spawn()
            .expect("spawn the daemon");
        let deadline = Instant::now() + START;
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(self.log());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the socket never answered:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops the daemon (SIGTERM, bounded wait, then SIGKILL), by its pid.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + STOP;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the daemon and starts another on the same root and socket with `config`.
    pub fn restart_with(&mut self, config: &str) -> Result<(), String> {
        self.stop();
        fs::write(&self.config, config).expect("daemon.toml");
        self.spawn()
    }

    /// `flotilla --host unix://… ARGS` with the CLI's own Docker config dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env("DOCKER_CONFIG", &self.docker)
            .env_remove("FLOTILLA_HOST")
            .env_remove("FLOTILLA_ROOT")
            .env_remove("FLOTILLA_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run flotilla")
    }

    /// Runs and expects success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "flotilla {args:?} failed ({}):\n{}{}\ndaemon log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs and expects exit code 1 and one-line-per-problem stderr; returns standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "flotilla {args:?} should fail:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// A directory of the image store.
    pub fn store_dir(&self, part: &str) -> PathBuf {
        self.root.join("image").join(part)
    }

    /// The entries of a store directory (hidden ones left out), sorted.
    pub fn entries(&self, part: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.store_dir(part))
            .map(|entries| {
                entries
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Waits (bounded) until the store's tmp/ is empty (a cancelled operation's daemon-side
    /// cleanup); panics with what is left.
    pub fn wait_tmp_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = self.entries("tmp");
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tmp/ left: {left:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ImageDaemon {
    fn drop(&mut self) {
        self.stop();
        let _ = cgroup::cleanup_prefix(&self.prefix);
        for m in lifecycle::mounts_under(&self.root).iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}
