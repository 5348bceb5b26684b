//! The container lifecycle over state dirs, as plain blocking functions (the daemon wraps them
//! in `spawn_blocking`): [`Runtime::create`], [`Runtime::start`], [`Runtime::stop`],
//! [`Runtime::kill`], [`Runtime::pause`]/[`Runtime::unpause`], [`Runtime::wait`],
//! [`Runtime::state`], [`Runtime::list`], [`Runtime::logs`], [`Runtime::attach`] and
//! [`Runtime::rm`].
//!
//! A container lives in `<data root>/containers/<id>/`, which is both its OCI bundle and its
//! state dir: `config.json` (the rendered spec with flotilla's annotations, [`bundle`]),
//! `meta.json` (name, image, stop signal and timeout, labels), `state.json`
//! ([`crate::runtime::state`]), `upper/` and `work/` (the overlay's writable layer),
//! `rootfs/` (its mount point, used only inside the container's mount namespace),
//! `container.log*` ([`logs`]), `shim.sock` ([`control`]) and `shim.log`. Names are claimed
//! with `<data root>/containers/names/<name>` files created exclusively, so two creates cannot
//! take the same name. Nothing here keeps a handle: every call reads the state dir, so a new
//! process (a restarted daemon, another CLI) picks up where the last one left.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::image::record::{self, RecordError};
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::runtime::bundle::{self, Extras, LogConfig};
use crate::runtime::config::{self, ContainerConfig, ImageConfig};
use crate::runtime::control::{Client, Reply, Request};
use crate::runtime::logs::{self, Entry};
use crate::runtime::shim::StartReport;
use crate::runtime::spawner::Spawner;
use crate::runtime::state::{self, State, Status};
use crate::runtime::sys::cgroup::{Cgroup, Limits};
use crate::runtime::time;

/// Docker's default grace period of `stop`.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the lifecycle waits for a SIGKILLed container to be reported exited.
const KILL_WAIT: Duration = Duration::from_secs(30);
/// How long `rm` waits for a shim to go away.
const SHIM_EXIT_WAIT: Duration = Duration::from_secs(5);

/// Why a lifecycle operation failed; each variant names the container and the step.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container name {name:?} is already in use by container {id}")]
    NameConflict { name: String, id: String },
    #[error(
        "container name {name:?}: invalid (letters, digits, '_', '.', '-'; first a letter or digit)"
    )]
    InvalidName { name: String },
    #[error("container reference {query:?} is ambiguous: {ids}")]
    Ambiguous { query: String, ids: String },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("container {id}: render the runtime spec: {source}")]
    Config {
        id: String,
        source: config::ConfigError,
    },
    #[error("container {id}: {source}")]
    Bundle {
        id: String,
        source: bundle::BundleError,
    },
    #[error("container {id}: {step} {path}: {source}")]
    Io {
        id: String,
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("container {id}: {source}")]
    State {
        id: String,
        source: state::StateError,
    },
    #[error("container {id} is {status}: {action} needs a {needed} container")]
    WrongState {
        id: String,
        status: Status,
        action: &'static str,
        needed: &'static str,
    },
    #[error("container {id}: invalid signal {signal:?}")]
    InvalidSignal { id: String, signal: String },
    #[error("container {id}: start the shim: {reason}")]
    Shim { id: String, reason: String },
    #[error("container {id}: start failed: {message}")]
    StartFailed {
        id: String,
        status: u8,
        message: String,
    },
    #[error("container {id}: {step}: {source}")]
    Control {
        id: String,
        step: &'static str,
        source: io::Error,
    },
    #[error("container {id}: {step}: {message}")]
    Refused {
        id: String,
        step: &'static str,
        message: String,
    },
    #[error("container {id}: did not exit within {waited:?} after SIGKILL")]
    StillRunning { id: String, waited: Duration },
    #[error("container {id}: remove the cgroup: {reason}")]
    Cgroup { id: String, reason: String },
}

type Result<T, E = LifecycleError> = std::result::Result<T, E>;

/// What a container is made from.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Unique among the data root's containers; default: the id's first 12 digits.
    pub name: Option<String>,
    /// An image reference in the image store: its layers make the root filesystem and its
    /// config is the base of the process (`config.image` and `config.layers` are replaced).
    /// None: `config.layers` and `config.image` are used as given.
    pub image: Option<String>,
    pub config: ContainerConfig,
    pub limits: Limits,
    /// `SIGTERM` when neither this nor the image says.
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<Duration>,
    pub log: LogConfig,
    /// Keep the container's stdin open as a pipe (`-i`).
    pub open_stdin: bool,
    pub labels: BTreeMap<String, String>,
}

/// What `meta.json` records at create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's id (config digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    pub created: String,
    pub stop_signal: String,
    pub stop_timeout_ms: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub command: Vec<String>,
}

/// A container as `inspect` and `ls` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    #[serde(flatten)]
    pub meta: Meta,
    pub state: State,
}

/// Options of [`Runtime::logs`].
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Only the last `n` lines (before following).
    pub tail: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// Keep reading until the container has exited (or the callback says stop).
    pub follow: bool,
    /// Prefix lines with their time in [`Runtime::logs_text`].
    pub timestamps: bool,
}

/// What an attached client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachEvent {
    Output(Entry),
    Exit(State),
}

/// A live connection to a container's output (and stdin, when asked and open).
#[derive(Debug)]
pub struct Attach {
    id: String,
    client: Client,
}

impl Attach {
    /// The next line or the exit; none when the connection ended or `timeout` passed.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<AttachEvent>> {
        let err = |source| LifecycleError::Control {
            id: self.id.clone(),
            step: "attach",
            source,
        };
        self.client.set_timeout(timeout).map_err(err)?;
        match self.client.read_reply() {
            Ok(Some(Reply::Output { entry })) => Ok(Some(AttachEvent::Output(entry))),
            Ok(Some(Reply::Exit { state })) => Ok(Some(AttachEvent::Exit(state))),
            Ok(Some(Reply::Error { message })) => Err(LifecycleError::Refused {
                id: self.id.clone(),
                step: "attach",
                message,
            }),
            Ok(Some(Reply::Ok { .. })) | Ok(None) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Sends text to the container's stdin.
    pub fn send_stdin(&mut self, data: &str) -> Result<()> {
        self.client
            .send(&Request::Stdin {
                data: data.into(),
                b64: None,
            })
            .map_err(|source| LifecycleError::Control {
                id: self.id.clone(),
                step: "write stdin",
                source,
            })
    }

    /// Closes the container's stdin (its reader sees end of file).
    pub fn close_stdin(&mut self) -> Result<()> {
        self.client
            .send(&Request::CloseStdin)
            .map_err(|source| LifecycleError::Control {
                id: self.id.clone(),
                step: "close stdin",
                source,
            })
    }
}

/// The lifecycle of the containers under one data root.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    prefix: String,
    exe: PathBuf,
    /// Runs `shim start` (through the fork server), shared by the clones of this runtime.
    spawner: Arc<Spawner>,
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A signal by name (`SIGTERM`, `TERM`) or number.
pub fn parse_signal(text: &str) -> Option<Signal> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).ok()
}

/// Whether `pid` has a handler for `signal` (`SigCgt` of `/proc/<pid>/status`). Unknown (the
/// file cannot be read): assume it does, so that the grace period is honoured.
pub fn catches_signal(pid: i32, signal: Signal) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    sig_caught(&status, signal).unwrap_or(true)
}

fn sig_caught(status: &str, signal: Signal) -> Option<bool> {
    let line = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
    let mask = u64::from_str_radix(line.trim(), 16).ok()?;
    let bit = (signal as i32) - 1;
    Some(mask & (1u64 << bit) != 0)
}

impl Runtime {
    /// The runtime of `data_root`; the cgroup prefix is derived from the root's path (8 hex
    /// digits), the shim is started from this process's executable.
    pub fn new(data_root: &Path) -> Result<Runtime> {
        let root = std::path::absolute(data_root).unwrap_or_else(|_| data_root.to_path_buf());
        let hash = Sha256::digest(root.as_os_str().as_encoded_bytes());
        let prefix = hex::encode(&hash[..4]);
        let exe = std::env::current_exe().map_err(|source| LifecycleError::Io {
            id: String::new(),
            step: "find the flotilla executable",
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        let spawner = Arc::new(Spawner::new(&exe));
        Ok(Runtime {
            root,
            prefix,
            exe,
            spawner,
        })
    }

    /// Uses `prefix` for cgroup paths (`flotilla-<prefix>/<id>`).
    pub fn with_prefix(mut self, prefix: &str) -> Runtime {
        self.prefix = prefix.to_string();
        self
    }

    /// Starts shims from `exe` (tests: the built `flotilla` binary).
    pub fn with_exe(mut self, exe: &Path) -> Runtime {
        self.exe = exe.to_path_buf();
        self.spawner = Arc::new(Spawner::new(exe));
        self
    }

    /// The spawner of this runtime's shim commands (its fork server), to share with the
    /// networks' helpers.
    pub fn spawner(&self) -> Arc<Spawner> {
        Arc::clone(&self.spawner)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The flotilla binary shims (and execs) are started from.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    fn names_dir(&self) -> PathBuf {
        self.containers_dir().join("names")
    }

    /// The state dir (and bundle) of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    fn io(id: &str, step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LifecycleError {
        let id = id.to_string();
        let path = path.to_path_buf();
        move |source| LifecycleError::Io {
            id,
            step,
            path,
            source,
        }
    }

    /// A container's id from its name, its id, or an unambiguous id prefix.
    pub fn resolve(&self, query: &str) -> Result<String> {
        if is_id(query) && self.dir(query).join("meta.json").is_file() {
            return Ok(query.to_string());
        }
        if valid_name(query)
            && let Ok(id) = fs::read_to_string(self.names_dir().join(query))
            && self.dir(id.trim()).is_dir()
        {
            return Ok(id.trim().to_string());
        }
        if !query.is_empty() && query.bytes().all(|b| b.is_ascii_hexdigit()) {
            let ids: Vec<String> = self
                .ids()
                .into_iter()
                .filter(|id| id.starts_with(query))
                .collect();
            match ids.len() {
                1 => return Ok(ids[0].clone()),
                0 => {}
                _ => {
                    return Err(LifecycleError::Ambiguous {
                        query: query.into(),
                        ids: ids.join(", "),
                    });
                }
            }
        }
        Err(LifecycleError::NotFound(query.to_string()))
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.containers_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_id(n))
            .collect();
        ids.sort();
        ids
    }

    /// The image's layers and config from the image store.
    fn image(&self, image: &str) -> Result<(Vec<PathBuf>, ImageConfig, Option<String>, String)> {
        let fail = |reason: String| LifecycleError::Image {
            image: image.to_string(),
            reason,
        };
        let reference = Reference::parse(image).map_err(|e| fail(e.to_string()))?;
        let store = Store::open(&self.root).map_err(|e| fail(e.to_string()))?;
        let record = match record::load(&store, &reference.to_string()) {
            Ok(r) => r,
            Err(RecordError::NotFound { .. }) => {
                return Err(fail("no such image in the store (pull it first)".into()));
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let mut layers = Vec::new();
        for layer in &record.layers {
            if !store.has_layer(&layer.chain_id) {
                return Err(fail(format!("layer {} is not unpacked", layer.chain_id)));
            }
            layers.push(store.layer_path(&layer.chain_id));
        }
        let c = &record.config;
        let config = ImageConfig {
            env: c.env.clone().unwrap_or_default(),
            cmd: c.cmd.clone(),
            entrypoint: c.entrypoint.clone(),
            working_dir: c.working_dir.clone(),
            user: c.user.clone(),
        };
        Ok((
            layers,
            config,
            c.stop_signal.clone(),
            record.config_digest.to_string(),
        ))
    }

    /// Creates a container: claims its name, renders its spec, writes its state dir. Returns
    /// its id. On failure nothing is left behind.
    pub fn create(&self, options: CreateOptions) -> Result<String> {
        let id = new_id().map_err(Self::io("", "generate an id", Path::new("/dev/urandom")))?;
        let name = options.name.clone().unwrap_or_else(|| id[..12].to_string());
        if !valid_name(&name) || name == "names" {
            return Err(LifecycleError::InvalidName { name });
        }
        let mut config = options.config.clone();
        let mut image_stop_signal = None;
        let mut image_id = None;
        if let Some(image) = &options.image {
            let (layers, image_config, stop, digest) = self.image(image)?;
            config.layers = layers;
            config.image = image_config;
            image_stop_signal = stop;
            image_id = Some(digest);
        }
        let stop_signal = options
            .stop_signal
            .clone()
            .or(image_stop_signal)
            .unwrap_or_else(|| "SIGTERM".into());
        if parse_signal(&stop_signal).is_none() {
            return Err(LifecycleError::InvalidSignal {
                id,
                signal: stop_signal,
            });
        }
        options
            .limits
            .validate()
            .map_err(|e| LifecycleError::Cgroup {
                id: id.clone(),
                reason: e.to_string(),
            })?;
        let host = crate::runtime::sys::container::host_hard_limits();
        let rendered = config::render(&config, &host).map_err(|source| LifecycleError::Config {
            id: id.clone(),
            source,
        })?;
        let extras = Extras {
            id: id.clone(),
            cgroup_prefix: Some(self.prefix.clone()),
            log: options.log,
            open_stdin: options.open_stdin,
            limits: options.limits.clone(),
        };
        let spec =
            bundle::apply(rendered.spec, &extras).map_err(|source| LifecycleError::Bundle {
                id: id.clone(),
                source,
            })?;

        // Claim the name: the file is created exclusively.
        let names = self.names_dir();
        fs::create_dir_all(&names).map_err(Self::io(&id, "create", &names))?;
        let name_file = names.join(&name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name_file)
        {
            Ok(mut f) => {
                io::Write::write_all(&mut f, id.as_bytes()).map_err(Self::io(
                    &id,
                    "claim the name",
                    &name_file,
                ))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&name_file).unwrap_or_default();
                return Err(LifecycleError::NameConflict {
                    name,
                    id: owner.trim().to_string(),
                });
            }
            Err(e) => return Err(Self::io(&id, "claim the name", &name_file)(e)),
        }
        let dir = self.dir(&id);
        let result = (|| {
            for sub in ["upper", "work", "rootfs"] {
                let p = dir.join(sub);
                fs::create_dir_all(&p).map_err(Self::io(&id, "create", &p))?;
            }
            let config_path = dir.join("config.json");
            spec.save(&config_path)
                .map_err(|e| Self::io(&id, "write", &config_path)(io::Error::other(e)))?;
            let meta = Meta {
                id: id.clone(),
                name: name.clone(),
                image: options.image.clone(),
                image_id,
                created: time::now(),
                stop_signal: stop_signal.clone(),
                stop_timeout_ms: options
                    .stop_timeout
                    .unwrap_or(DEFAULT_STOP_TIMEOUT)
                    .as_millis() as u64,
                labels: options.labels.clone(),
                cgroup: bundle::cgroup_path(&spec),
                tty: config.tty,
                open_stdin: options.open_stdin,
                command: spec
                    .process()
                    .as_ref()
                    .and_then(|p| p.args().clone())
                    .unwrap_or_default(),
            };
            let meta_path = dir.join("meta.json");
            let data = serde_json::to_vec_pretty(&meta)
                .map_err(|e| Self::io(&id, "write", &meta_path)(io::Error::other(e)))?;
            // A container removed at its exit (volatile root) need not survive a crash: after
            // one, restore drops a dir whose records did not reach the disk.
            if config.volatile_rootfs {
                state::write_replace(&meta_path, &data)
                    .map_err(Self::io(&id, "write", &meta_path))?;
                state::write_volatile(&dir, &State::default())
            } else {
                state::write_atomic(&meta_path, &data)
                    .map_err(Self::io(&id, "write", &meta_path))?;
                state::write(&dir, &State::default())
            }
            .map_err(|source| LifecycleError::State {
                id: id.clone(),
                source,
            })
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::remove_file(&name_file);
            return Err(e);
        }
        Ok(id)
    }

    /// The container's record.
    pub fn meta(&self, id: &str) -> Result<Meta> {
        let path = self.dir(id).join("meta.json");
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LifecycleError::NotFound(id.to_string()));
            }
            Err(e) => return Err(Self::io(id, "read", &path)(e)),
        };
        serde_json::from_slice(&data).map_err(|e| Self::io(id, "parse", &path)(io::Error::other(e)))
    }

    /// The container's state; running or paused with its shim gone reads as dead.
    pub fn state(&self, id: &str) -> Result<State> {
        let dir = self.dir(id);
        if !dir.join("meta.json").is_file() {
            return Err(LifecycleError::NotFound(id.to_string()));
        }
        let mut st = state::read(&dir).map_err(|source| LifecycleError::State {
            id: id.to_string(),
            source,
        })?;
        if matches!(st.status, Status::Running | Status::Paused) {
            let alive = st
                .shim_pid
                .is_some_and(|pid| state::process_alive(pid, st.shim_start_time));
            if !alive {
                // The shim may have just finished: its final state is written before it exits.
                if let Ok(again) = state::read(&dir)
                    && !matches!(again.status, Status::Running | Status::Paused)
                {
                    return Ok(again);
                }
                st.status = Status::Dead;
            }
        }
        Ok(st)
    }

    /// Meta and state.
    pub fn inspect(&self, id: &str) -> Result<Container> {
        Ok(Container {
            meta: self.meta(id)?,
            state: self.state(id)?,
        })
    }

    /// Every container of the data root, by creation time.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for id in self.ids() {
            match self.inspect(&id) {
                Ok(c) => out.push(c),
                // Removed meanwhile, or half created (its meta.json written, its first
                // state.json not yet): not listed.
                Err(LifecycleError::NotFound(_)) => {}
                Err(LifecycleError::State {
                    source: state::StateError::Read { source, .. },
                    ..
                }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.meta.created.cmp(&b.meta.created));
        Ok(out)
    }

    fn lock(&self, id: &str) -> Result<File> {
        let path = self.dir(id).join(".lock");
        let file = File::create(&path).map_err(Self::io(id, "lock", &path))?;
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Self::io(id, "lock", &path)(e.into()))?;
        Ok(file)
    }

    fn wrong(
        id: &str,
        status: Status,
        action: &'static str,
        needed: &'static str,
    ) -> LifecycleError {
        LifecycleError::WrongState {
            id: id.to_string(),
            status,
            action,
            needed,
        }
    }

    /// Starts a created (or exited) container: runs `flotilla shim start`, which returns once
    /// the container's process exists. Returns its pid.
    pub fn start(&self, id: &str) -> Result<i32> {
        let _lock = self.lock(id)?;
        let st = self.state(id)?;
        if matches!(st.status, Status::Running | Status::Paused) {
            return Err(Self::wrong(id, st.status, "start", "created or exited"));
        }
        // A previous run's shim may still be removing its cgroup (it does so after reporting
        // the exit): the new one's is the same group.
        wait_shim_gone(&st, false);
        let dir = self.dir(id);
        let args: Vec<std::ffi::OsString> = vec![
            "start".into(),
            "--bundle".into(),
            dir.clone().into(),
            "--state".into(),
            dir.into(),
        ];
        let output = self
            .spawner
            .output(&args, b"")
            .map_err(|e| LifecycleError::Shim {
                id: id.to_string(),
                reason: format!("run {}: {e}", self.exe.display()),
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let report: Option<StartReport> = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok());
        match report {
            Some(StartReport { pid: Some(pid), .. }) => Ok(pid),
            Some(StartReport {
                error: Some(message),
                status,
                ..
            }) => Err(LifecycleError::StartFailed {
                id: id.to_string(),
                status: status.unwrap_or(125),
                message,
            }),
            _ => Err(LifecycleError::Shim {
                id: id.to_string(),
                reason: format!(
                    "{} ({})",
                    String::from_utf8_lossy(&output.stderr).trim(),
                    output.status
                ),
            }),
        }
    }

    fn connect(&self, id: &str, step: &'static str) -> Result<Client> {
        Client::connect(&self.dir(id)).map_err(|source| LifecycleError::Control {
            id: id.to_string(),
            step,
            source,
        })
    }

    fn call(&self, id: &str, step: &'static str, request: &Request) -> Result<Option<State>> {
        let mut client = self.connect(id, step)?;
        let reply = client
            .call(request)
            .map_err(|source| LifecycleError::Control {
                id: id.to_string(),
                step,
                source,
            })?;
        match reply {
            Reply::Ok { state } => Ok(state),
            Reply::Error { message } => Err(LifecycleError::Refused {
                id: id.to_string(),
                step,
                message,
            }),
            other => Err(LifecycleError::Refused {
                id: id.to_string(),
                step,
                message: format!("unexpected reply {other:?}"),
            }),
        }
    }

    /// Sends `signal` to the container's PID 1.
    pub fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let sig = parse_signal(signal).ok_or_else(|| LifecycleError::InvalidSignal {
            id: id.to_string(),
            signal: signal.to_string(),
        })?;
        let st = self.state(id)?;
        match st.status {
            Status::Running => {}
            Status::Paused => {
                return Err(Self::wrong(id, st.status, "kill", "running (unpause it)"));
            }
            s => return Err(Self::wrong(id, s, "kill", "running")),
        }
        self.call(id, "send a signal", &Request::Signal { signal: sig as i32 })?;
        Ok(())
    }

    /// Freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let st = self.state(id)?;
        if st.status != Status::Running {
            return Err(Self::wrong(id, st.status, "pause", "running"));
        }
        self.call(id, "pause", &Request::Pause).map(|_| ())
    }

    /// Thaws a paused container.
    pub fn unpause(&self, id: &str) -> Result<()> {
        let st = self.state(id)?;
        if st.status != Status::Paused {
            return Err(Self::wrong(id, st.status, "unpause", "paused"));
        }
        self.call(id, "unpause", &Request::Resume).map(|_| ())
    }

    /// Waits until the container has exited, at most `timeout`; returns whether it has.
    fn wait_exit(&self, id: &str, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let st = self.state(id)?;
            match st.status {
                Status::Exited | Status::Dead => return Ok(true),
                Status::Created => return Ok(false),
                Status::Running | Status::Paused => {}
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(false);
            }
            match Client::connect(&self.dir(id)) {
                Ok(mut client) => {
                    let _ = client.set_timeout(left.map(|l| l.max(Duration::from_millis(1))));
                    if client.send(&Request::Wait).is_ok() {
                        // Ends with the exit reply, the shim closing, or the timeout.
                        while let Ok(Some(reply)) = client.read_reply() {
                            if matches!(reply, Reply::Exit { .. }) {
                                break;
                            }
                        }
                    }
                }
                // The shim is finishing (socket gone) or starting: look again shortly.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Blocks until the container has exited; returns its exit code.
    pub fn wait(&self, id: &str) -> Result<i32> {
        loop {
            let st = self.state(id)?;
            match st.status {
                Status::Exited | Status::Dead => return Ok(st.exit_code.unwrap_or(-1)),
                Status::Created => std::thread::sleep(Duration::from_millis(50)),
                Status::Running | Status::Paused => {
                    self.wait_exit(id, None)?;
                }
            }
        }
    }

    /// Stops the container: its stop signal, up to `timeout` (default: its stop timeout) to
    /// exit, then SIGKILL. A PID 1 that has no handler for the stop signal cannot receive it
    /// (the kernel drops default-action signals sent to a pid namespace's init), so it is
    /// SIGKILLed at once instead of waiting out a grace period that cannot help. Stopping a
    /// container that is not running does nothing, as in Docker.
    pub fn stop(&self, id: &str, timeout: Option<Duration>) -> Result<()> {
        let meta = self.meta(id)?;
        let st = self.state(id)?;
        if !matches!(st.status, Status::Running | Status::Paused) {
            return Ok(());
        }
        if st.status == Status::Paused {
            self.unpause(id)?;
        }
        let signal = parse_signal(&meta.stop_signal).unwrap_or(Signal::SIGTERM);
        let grace = timeout.unwrap_or(Duration::from_millis(meta.stop_timeout_ms));
        let catches = st.pid.is_some_and(|pid| catches_signal(pid, signal));
        if catches && signal != Signal::SIGKILL && !grace.is_zero() {
            match self.call(
                id,
                "send the stop signal",
                &Request::Signal {
                    signal: signal as i32,
                },
            ) {
                Ok(_) => {}
                Err(e) => {
                    if self.wait_exit(id, Some(Duration::ZERO))? {
                        return Ok(());
                    }
                    return Err(e);
                }
            }
            if self.wait_exit(id, Some(grace))? {
                return Ok(());
            }
        }
        self.force_kill(id)
    }

    /// SIGKILL and wait (bounded) until the exit is recorded.
    fn force_kill(&self, id: &str) -> Result<()> {
        let meta = self.meta(id)?;
        // Through the cgroup first: it also reaches a frozen container.
        if let Some(path) = &meta.cgroup
            && let Ok(cg) = Cgroup::open(path)
        {
            let _ = cg.kill_all(rustix::process::Signal::KILL);
        }
        let _ = self.call(
            id,
            "send SIGKILL",
            &Request::Signal {
                signal: Signal::SIGKILL as i32,
            },
        );
        if self.wait_exit(id, Some(KILL_WAIT))? {
            return Ok(());
        }
        Err(LifecycleError::StillRunning {
            id: id.to_string(),
            waited: KILL_WAIT,
        })
    }

    /// Reads the logs: entries go to `out` (which returns false to stop), oldest first, across
    /// rotations; with `follow`, until the container has exited.
    pub fn logs(
        &self,
        id: &str,
        options: &LogsOptions,
        out: &mut dyn FnMut(&Entry) -> bool,
    ) -> Result<()> {
        let dir = self.dir(id);
        self.meta(id)?;
        let mut follower = if options.follow {
            Some(logs::Follower::at_end(&dir).map_err(Self::io(id, "follow the logs", &dir))?)
        } else {
            None
        };
        let since = options.since.map(time::format);
        let keep = |e: &Entry| since.as_ref().is_none_or(|s| e.time.as_str() >= s.as_str());
        let mut entries: Vec<Entry> = logs::read_all(&dir)
            .map_err(Self::io(id, "read the logs", &dir))?
            .into_iter()
            .filter(|e| keep(e))
            .collect();
        if let Some(n) = options.tail {
            let skip = entries.len().saturating_sub(n);
            entries.drain(..skip);
        }
        let mut last = String::new();
        for e in &entries {
            if !out(e) {
                return Ok(());
            }
        }
        if let Some(e) = entries.last() {
            last = e.time.clone();
        }
        let Some(follower) = follower.as_mut() else {
            return Ok(());
        };
        loop {
            let done = !matches!(self.state(id)?.status, Status::Running | Status::Paused);
            for e in follower
                .poll()
                .map_err(Self::io(id, "follow the logs", &dir))?
            {
                // Lines already read from the files before following began.
                if e.time <= last || !keep(&e) {
                    continue;
                }
                if !out(&e) {
                    return Ok(());
                }
            }
            if done {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The logs as text (without following), rendered with or without timestamps.
    pub fn logs_text(&self, id: &str, options: &LogsOptions) -> Result<String> {
        let mut text = String::new();
        let options = LogsOptions {
            follow: false,
            ..options.clone()
        };
        self.logs(id, &options, &mut |e| {
            text.push_str(&e.render(options.timestamps));
            true
        })?;
        Ok(text)
    }

    /// Attaches to the running container's output (and its stdin with `stdin`).
    pub fn attach(&self, id: &str, stdin: bool) -> Result<Attach> {
        let st = self.state(id)?;
        if !matches!(st.status, Status::Running | Status::Paused) {
            return Err(Self::wrong(id, st.status, "attach", "running"));
        }
        let mut client = self.connect(id, "attach")?;
        let reply =
            client
                .call(&Request::Attach { stdin })
                .map_err(|source| LifecycleError::Control {
                    id: id.to_string(),
                    step: "attach",
                    source,
                })?;
        if let Reply::Error { message } = reply {
            return Err(LifecycleError::Refused {
                id: id.to_string(),
                step: "attach",
                message,
            });
        }
        Ok(Attach {
            id: id.to_string(),
            client,
        })
    }

    /// Removes the container: refuses a running one unless `force` (then kills it), then
    /// waits for its shim to go, removes its cgroup, checks that no mount is left under its
    /// dir (unmounting any), releases its name and removes its dir.
    pub fn rm(&self, id: &str, force: bool) -> Result<()> {
        let meta = self.meta(id)?;
        let _lock = self.lock(id)?;
        let st = self.state(id)?;
        if matches!(st.status, Status::Running | Status::Paused) {
            if !force {
                return Err(Self::wrong(id, st.status, "rm", "stopped (or use force)"));
            }
            self.force_kill(id)?;
        }
        // The shim's last write into the state dir is the exit in state.json; what it does
        // after (removing the cgroup, syncing) does not touch the dir, so a recorded exit need
        // not wait for the shim to end. Otherwise it ends right after recording the exit, and
        // a dead one's container died with it.
        let st = state::read(&self.dir(id)).unwrap_or_default();
        if st.status != Status::Exited {
            wait_shim_gone(&st, true);
        }
        if let Some(path) = &meta.cgroup
            && let Ok(cg) = Cgroup::open(path)
            && cg.destroy(true).is_err()
        {
            // The shim may be removing it at the same moment (a group half gone reads as
            // ENODEV): let it finish, then once more.
            wait_shim_gone(&st, true);
            cg.destroy(true).map_err(|e| LifecycleError::Cgroup {
                id: id.to_string(),
                reason: e.to_string(),
            })?;
        }
        let dir = self.dir(id);
        for mount in mounts_under(&dir).iter().rev() {
            let _ = rustix::mount::unmount(mount.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        let name_file = self.names_dir().join(&meta.name);
        if fs::read_to_string(&name_file).is_ok_and(|owner| owner.trim() == id) {
            let _ = fs::remove_file(&name_file);
        }
        fs::remove_dir_all(&dir).map_err(Self::io(id, "remove", &dir))
    }
}

/// Waits (bounded by [`SHIM_EXIT_WAIT`]) until the shim recorded in `st` has ended; with
/// `kill`, one still there then is killed.
fn wait_shim_gone(st: &State, kill: bool) {
    let Some(pid) = st.shim_pid else {
        return;
    };
    let deadline = Instant::now() + SHIM_EXIT_WAIT;
    while state::process_alive(pid, st.shim_start_time) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if kill
        && state::process_alive(pid, st.shim_start_time)
        && let Some(p) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Mount points at or below `dir` in this process's mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }

    #[test]
    fn sigcgt_decides_whether_the_signal_is_caught() {
        // SIGTERM (15) is bit 14; SIGINT (2) bit 1.
        let status = "Name:\tsh\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000004002\n";
        assert_eq!(sig_caught(status, Signal::SIGTERM), Some(true));
        assert_eq!(sig_caught(status, Signal::SIGINT), Some(true));
        assert_eq!(sig_caught(status, Signal::SIGHUP), Some(false));
        assert_eq!(sig_caught("Name:\tx\n", Signal::SIGTERM), None);
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "a-b_c.d", "x1", "1x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a/b", "a b", ".x", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_refuses_a_taken_name_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(dir.path()).unwrap();
        let options = CreateOptions {
            name: Some("web".into()),
            config: ContainerConfig {
                command: Some(vec!["true".into()]),
                layers: vec![PathBuf::from("/nonexistent-layer")],
                ..Default::default()
            },
            ..Default::default()
        };
        let id = rt.create(options.clone()).unwrap();
        assert_eq!(rt.resolve("web").unwrap(), id);
        assert_eq!(rt.resolve(&id[..8]).unwrap(), id);
        assert_eq!(rt.state(&id).unwrap().status, Status::Created);
        let err = rt.create(options.clone()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("container name \"web\" is already in use by container {id}")
        );
        assert_eq!(rt.list().unwrap().len(), 1);
        // Wrong states: stop of a created container is a no-op; kill is refused.
        rt.stop(&id, None).unwrap();
        let err = rt.kill(&id, "TERM").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("container {id} is created: kill needs a running container")
        );
        rt.rm(&id, false).unwrap();
        assert!(!rt.dir(&id).exists());
        assert!(matches!(
            rt.resolve("web"),
            Err(LifecycleError::NotFound(_))
        ));
        // The name is free again.
        let again = rt.create(options).unwrap();
        rt.rm(&again, false).unwrap();
        // A bad config leaves nothing.
        let bad = CreateOptions {
            name: Some("bad".into()),
            config: ContainerConfig::default(),
            ..Default::default()
        };
        assert!(rt.create(bad).is_err());
        assert!(rt.list().unwrap().is_empty());
        assert!(!rt.names_dir().join("bad").exists());
    }
}
