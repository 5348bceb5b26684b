//! Control groups: a container's resource limits (memory, swap, cpu quota and shares, cpuset, pids),
//! its freezer (pause/unpause), its statistics and OOM record, and the killing and removal of
//! everything left in it. Works on cgroup v1 (and hybrid hosts: the v1 controller hierarchies are
//! used, the controller-less unified hierarchy is left alone) and on pure cgroup v2, detected by
//! `/sys/fs/cgroup/cgroup.controllers`.
//!
//! Effects as data: [`render_v1`] and [`render_v2`] turn [`Limits`] into a list of [`Write`]s
//! (controller, file, value), unit-tested without root; [`Cgroup`] is the one place that applies
//! them to the kernel.
//!
//! Why direct file I/O and not the `cgroups-rs` crate: cgroupfs is plain files, so this module needs
//! no `unsafe` at all (it denies it), and everything a container engine needs beyond "write a file"
//! would have to be layered on top of the crate anyway: Docker's cpuset initialisation from the
//! parent on v1, the memory/memory+swap write order on v1 updates, enabling controllers in the
//! parents' `cgroup.subtree_control` on v2, a freeze that waits until the state has settled,
//! killing under a frozen cgroup, bounded waits before `rmdir`, and errors that name the
//! controller, the file and the value. The crate also creates groups in every mounted v1 hierarchy
//! (named ones too) and pulls in nix, regex and log; a few hundred lines of our own keep the exact
//! behaviour on v1, hybrid and v2 in view and testable.
//!
//! Paths are relative to each hierarchy's root, by convention `flotilla-<prefix>/<container-id>`
//! (see [`prefix_dir`]); [`cleanup_prefix`] removes every empty leftover under one prefix.
#![deny(unsafe_code)]

mod hierarchy;
mod limits;
mod v1;
mod v2;

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

pub use hierarchy::{Hierarchy, Mount, Version, parse_v1_mounts};
pub use limits::{DEFAULT_CPU_PERIOD, Limits, Write, cpus_to_quota, shares_to_weight};
pub use v1::render as render_v1;
pub use v2::render as render_v2;

/// Where the cgroup filesystems are mounted on a normal host.
pub const ROOT: &str = "/sys/fs/cgroup";

/// How long freeze, thaw and destroy wait for the kernel to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// `flotilla-<prefix>`: the top directory of one daemon's cgroups in every hierarchy.
pub fn prefix_dir(prefix: &str) -> String {
    format!("flotilla-{prefix}")
}

/// Errors of cgroup operations; each names the controller, the cgroup path and the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid cgroup prefix {0:?}")]
    InvalidPrefix(String),
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(#[source] io::Error),
    #[error("the {controller} controller is not available{detail}")]
    NoController {
        controller: String,
        detail: &'static str,
    },
    #[error("cannot create {controller}/{path}: {source}")]
    Create {
        controller: String,
        path: String,
        source: io::Error,
    },
    #[error("cannot write {value} to {controller}/{path}/{file}: {source}")]
    Write {
        controller: String,
        path: String,
        file: String,
        value: String,
        source: io::Error,
    },
    #[error("cannot read {controller}/{path}/{file}: {source}")]
    Read {
        controller: String,
        path: String,
        file: String,
        source: io::Error,
    },
    #[error("cannot parse {controller}/{path}/{file}: unexpected {content:?}")]
    Parse {
        controller: String,
        path: String,
        file: String,
        content: String,
    },
    #[error("cannot remove {controller}/{path}: {source}")]
    Remove {
        controller: String,
        path: String,
        source: io::Error,
    },
    #[error("cannot send signal {signal} to pid {pid} in {path}: {source}")]
    Signal {
        signal: i32,
        pid: i32,
        path: String,
        source: io::Error,
    },
    #[error("{controller}/{path} still holds processes {pids:?} after {waited:?}")]
    Busy {
        controller: String,
        path: String,
        pids: Vec<i32>,
        waited: Duration,
    },
    #[error("{controller}/{path} did not become {state} within {waited:?}")]
    Timeout {
        controller: String,
        path: String,
        state: &'static str,
        waited: Duration,
    },
}

/// v1 controllers a container gets a directory in, in the order they are created.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset", "cpu", "cpuacct", "memory", "pids", "freezer", "blkio", "devices",
];

fn check_path(path: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidPath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.starts_with('/') {
        return bad("must be relative to the hierarchy root");
    }
    if path.contains('\0') {
        return bad("contains a nul byte");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("empty, `.` or `..` component");
    }
    Ok(())
}

/// One directory of a cgroup: in one v1 hierarchy, or the v2 one.
#[derive(Debug, Clone)]
struct Dir {
    /// Controllers of the hierarchy (empty on v2).
    controllers: Vec<String>,
    /// Used in messages: `cpu,cpuacct`, `memory`, … or `cgroup` on v2.
    label: String,
    path: PathBuf,
}

impl Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Resource usage of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Total cpu time consumed, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory charged (including page cache), in bytes.
    pub memory_usage: u64,
    /// Memory limit in bytes; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Tasks in the cgroup.
    pub pids_current: u64,
    /// Task limit; `None` when unlimited.
    pub pids_limit: Option<u64>,
}

/// A container's cgroup: one directory per v1 hierarchy, or one v2 directory.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: String,
    version: Version,
    dirs: Vec<Dir>,
}

impl Cgroup {
    /// Creates the cgroup at `path` (e.g. `flotilla-<prefix>/<container-id>`) in every needed
    /// hierarchy and applies `limits`. Existing directories are reused, so a retried create works.
    pub fn create(path: &str, limits: &Limits) -> Result<Cgroup, Error> {
        Cgroup::create_in(Hierarchy::host()?, path, limits)
    }

    /// [`Cgroup::create`] on a given layout.
    pub fn create_in(hierarchy: &Hierarchy, path: &str, limits: &Limits) -> Result<Cgroup, Error> {
        let cgroup = Cgroup::open_in(hierarchy, path)?;
        match cgroup.version {
            Version::V1 => {
                let writes = v1::render(limits)?;
                cgroup.require_v1(&writes)?;
                for dir in &cgroup.dirs {
                    v1::create_dir(&cgroup.path, dir)?;
                }
                cgroup.apply(writes)?;
            }
            Version::V2 => {
                let writes = v2::render(limits)?;
                v2::create_dir(&cgroup.path, &cgroup.dirs[0], &writes)?;
                cgroup.apply(writes)?;
            }
        }
        Ok(cgroup)
    }

    /// The cgroup at `path` as it exists (or not) on the host: for re-adopting a container.
    pub fn open(path: &str) -> Result<Cgroup, Error> {
        Cgroup::open_in(Hierarchy::host()?, path)
    }

    /// [`Cgroup::open`] on a given layout.
    pub fn open_in(hierarchy: &Hierarchy, path: &str) -> Result<Cgroup, Error> {
        check_path(path)?;
        let dirs = match hierarchy.version {
            Version::V1 => {
                let mut dirs: Vec<Dir> = Vec::new();
                for controller in V1_CONTROLLERS {
                    let Some(mount) = hierarchy.v1_mount(controller) else {
                        continue;
                    };
                    let dir = mount.dir.join(path);
                    if dirs.iter().any(|d| d.path == dir) {
                        continue;
                    }
                    dirs.push(Dir {
                        controllers: mount.controllers.clone(),
                        label: mount.controllers.join(","),
                        path: dir,
                    });
                }
                if dirs.is_empty() {
                    return Err(Error::NoController {
                        controller: "memory".into(),
                        detail: ": no cgroup v1 hierarchy is mounted",
                    });
                }
                dirs
            }
            Version::V2 => {
                let Some(mount) = hierarchy.mounts.first() else {
                    return Err(Error::NoController {
                        controller: "cgroup2".into(),
                        detail: ": no cgroup2 mount",
                    });
                };
                vec![Dir {
                    controllers: Vec::new(),
                    label: "cgroup".into(),
                    path: mount.dir.join(path),
                }]
            }
        };
        Ok(Cgroup {
            path: path.to_owned(),
            version: hierarchy.version,
            dirs,
        })
    }

    /// The path relative to the hierarchy roots.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether any of its directories still exists.
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.path.is_dir())
    }

    /// The directories, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Every `cgroup.procs` file a process must be written to to join (for a child that adds
    /// itself with `echo $$ > …` before exec).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.path.join("cgroup.procs"))
            .collect()
    }

    /// The files a single-threaded process writes `0` to, to move itself into the cgroup:
    /// `tasks` on v1 (a thread moving itself there skips the kernel's global threadgroup lock
    /// and its RCU grace period, which `cgroup.procs` waits out), `cgroup.procs` on v2.
    pub fn join_files(&self) -> Vec<PathBuf> {
        let file = match self.version {
            Version::V1 => "tasks",
            Version::V2 => "cgroup.procs",
        };
        self.dirs.iter().map(|d| d.path.join(file)).collect()
    }

    /// Moves a process (with its threads) into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), Error> {
        let value = pid.to_string();
        for dir in &self.dirs {
            self.write_dir(dir, &dir.label, "cgroup.procs", &value)?;
        }
        Ok(())
    }

    /// Moves the calling process into the cgroup (the kernel reads `0` as "the writer"), for a
    /// child between fork and exec. It allocates (paths, errors), so call it only in the child of
    /// a single-threaded parent such as the shim.
    pub fn add_self(&self) -> Result<(), Error> {
        for dir in &self.dirs {
            self.write_dir(dir, &dir.label, "cgroup.procs", "0")?;
        }
        Ok(())
    }

    /// Applies new limits to an existing cgroup (settings left `None` stay as they are).
    pub fn update(&self, limits: &Limits) -> Result<(), Error> {
        let writes = match self.version {
            Version::V1 => {
                let writes = v1::render(limits)?;
                self.require_v1(&writes)?;
                writes
            }
            Version::V2 => v2::render(limits)?,
        };
        self.apply(writes)
    }

    /// Freezes every process in it and waits until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), Error> {
        match self.version {
            Version::V1 => v1::set_frozen(self, true),
            Version::V2 => v2::set_frozen(self, true),
        }
    }

    /// Thaws it and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<(), Error> {
        match self.version {
            Version::V1 => v1::set_frozen(self, false),
            Version::V2 => v2::set_frozen(self, false),
        }
    }

    /// Whether it is frozen (or freezing).
    pub fn is_frozen(&self) -> Result<bool, Error> {
        match self.version {
            Version::V1 => v1::is_frozen(self),
            Version::V2 => v2::is_frozen(self),
        }
    }

    /// Current usage and limits. A controller that is not there reads as zero / unlimited.
    pub fn stats(&self) -> Result<Stats, Error> {
        match self.version {
            Version::V1 => v1::stats(self),
            Version::V2 => v2::stats(self),
        }
    }

    /// Whether the kernel's OOM killer has killed a process of this cgroup.
    pub fn oom_killed(&self) -> Result<bool, Error> {
        match self.version {
            Version::V1 => v1::oom_killed(self),
            Version::V2 => v2::oom_killed(self),
        }
    }

    /// The processes in it and in the groups nested below it (pids as seen from the caller's pid
    /// namespace), sorted. A cgroup that does not exist holds none.
    ///
    /// On v1 this is the union over its hierarchies, so that a process that joined only some of
    /// them is not missed by [`Cgroup::kill_all`] and [`Cgroup::destroy`].
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            self.collect_pids(&dir.label, &dir.path, &self.path, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn collect_pids(
        &self,
        label: &str,
        dir: &Path,
        rel: &str,
        pids: &mut Vec<i32>,
    ) -> Result<(), Error> {
        let read_error = |file: &str, source| Error::Read {
            controller: label.to_owned(),
            path: rel.to_owned(),
            file: file.to_owned(),
            source,
        };
        let text = match fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(text) => text,
            // Removed meanwhile (ENODEV: while its removal is under way).
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) =>
            {
                return Ok(());
            }
            Err(e) => return Err(read_error("cgroup.procs", e)),
        };
        for p in text.split_whitespace() {
            let pid = p.parse::<i32>().map_err(|_| Error::Parse {
                controller: label.to_owned(),
                path: rel.to_owned(),
                file: "cgroup.procs".into(),
                content: text.clone(),
            })?;
            pids.push(pid);
        }
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(read_error(".", e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| read_error(".", e))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
                self.collect_pids(label, &entry.path(), &child, pids)?;
            }
        }
        Ok(())
    }

    /// Sends `signal` to every process in it. The cgroup is frozen meanwhile, so nothing forks
    /// past the signal; a SIGKILL leaves it thawed, so that the killed processes can die. On v2,
    /// SIGKILL uses `cgroup.kill` when the kernel has it.
    pub fn kill_all(&self, signal: Signal) -> Result<(), Error> {
        if !self.exists() {
            return Ok(());
        }
        if self.version == Version::V2 && signal == Signal::KILL && v2::kill(self)? {
            return Ok(());
        }
        let was_frozen = self.is_frozen().unwrap_or(false);
        let froze = !was_frozen && self.can_freeze() && self.freeze().is_ok();
        let sent = self.signal_each(signal);
        if froze || (was_frozen && signal == Signal::KILL) {
            self.thaw()?;
        }
        sent
    }

    fn signal_each(&self, signal: Signal) -> Result<(), Error> {
        for pid in self.pids()? {
            let Some(target) = Pid::from_raw(pid) else {
                continue;
            };
            match rustix::process::kill_process(target, signal) {
                Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                Err(e) => {
                    return Err(Error::Signal {
                        signal: signal.as_raw(),
                        pid,
                        path: self.path.clone(),
                        source: e.into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes the cgroup from every hierarchy. With `kill`, SIGKILLs what is left first; then
    /// waits (bounded) until no process remains and removes the directories bottom-up (nested
    /// groups a container made first). Idempotent: a missing directory is fine.
    pub fn destroy(&self, kill: bool) -> Result<(), Error> {
        if !self.exists() {
            return Ok(());
        }
        if kill {
            self.kill_all(Signal::KILL)?;
        }
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            if start.elapsed() >= SETTLE_TIMEOUT {
                let dir = self.primary();
                return Err(Error::Busy {
                    controller: dir.label.clone(),
                    path: self.path.clone(),
                    pids,
                    waited: start.elapsed(),
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        if self.version == Version::V1 && self.can_freeze() && self.is_frozen().unwrap_or(false) {
            // An empty frozen group can be removed, but thaw so nothing is left half-done.
            let _ = self.thaw();
        }
        for dir in &self.dirs {
            remove_tree(&dir.label, &self.path, &dir.path, true)?;
        }
        Ok(())
    }

    fn can_freeze(&self) -> bool {
        match self.version {
            Version::V1 => self.dirs.iter().any(|d| d.has("freezer")),
            Version::V2 => true,
        }
    }

    /// The directory named in messages about the whole group: pids, else memory, else the first.
    fn primary(&self) -> &Dir {
        self.dirs
            .iter()
            .find(|d| d.has("pids"))
            .or_else(|| self.dirs.iter().find(|d| d.has("memory")))
            .unwrap_or(&self.dirs[0])
    }

    /// The directory holding `controller`'s files.
    fn dir_for(&self, controller: &str) -> Option<&Dir> {
        match self.version {
            Version::V1 => self.dirs.iter().find(|d| d.has(controller)),
            Version::V2 => self.dirs.first(),
        }
    }

    fn require_v1(&self, writes: &[Write]) -> Result<(), Error> {
        for w in writes {
            if self.dir_for(w.controller).is_none() {
                return Err(Error::NoController {
                    controller: w.controller.into(),
                    detail: ": its cgroup v1 hierarchy is not mounted",
                });
            }
        }
        Ok(())
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), Error> {
        let writes = match self.version {
            Version::V1 if writes.iter().any(|w| is_swap_file(w.file)) => {
                let current = self.read_memsw_limit()?;
                v1::order_memory(writes, current)
            }
            Version::V1 => writes,
            Version::V2 => writes,
        };
        for w in &writes {
            let Some(dir) = self.dir_for(w.controller) else {
                return Err(Error::NoController {
                    controller: w.controller.into(),
                    detail: "",
                });
            };
            let result = self.write_dir(dir, w.controller, w.file, &w.value);
            match result {
                // Without swap accounting the swap files are absent: unlimited swap is then
                // what the kernel does anyway, a swap limit cannot be honoured.
                Err(Error::Write { ref source, .. })
                    if source.kind() == io::ErrorKind::NotFound
                        && is_swap_file(w.file)
                        && (w.value == "-1" || w.value == "max")
                        && dir.path.is_dir() => {}
                Err(Error::Write { ref source, .. })
                    if source.kind() == io::ErrorKind::NotFound
                        && is_swap_file(w.file)
                        && dir.path.is_dir() =>
                {
                    return Err(Error::NoController {
                        controller: "swap".into(),
                        detail: ": the kernel does not account swap, so memory_swap cannot be set",
                    });
                }
                other => other?,
            }
        }
        Ok(())
    }

    fn read_memsw_limit(&self) -> Result<Option<i64>, Error> {
        let Some(dir) = self.dir_for("memory") else {
            return Ok(None);
        };
        match self.read_dir_opt(dir, "memory", "memory.memsw.limit_in_bytes")? {
            Some(text) => Ok(text.trim().parse::<i64>().ok()),
            None => Ok(None),
        }
    }

    fn write_dir(&self, dir: &Dir, controller: &str, file: &str, value: &str) -> Result<(), Error> {
        write_file(&dir.path.join(file), value).map_err(|source| Error::Write {
            controller: controller.to_owned(),
            path: self.path.clone(),
            file: file.to_owned(),
            value: value.to_owned(),
            source,
        })
    }

    fn read_dir(&self, dir: &Dir, controller: &str, file: &str) -> Result<String, Error> {
        fs::read_to_string(dir.path.join(file)).map_err(|source| Error::Read {
            controller: controller.to_owned(),
            path: self.path.clone(),
            file: file.to_owned(),
            source,
        })
    }

    /// Like `read_dir`, but a missing file is `None`.
    fn read_dir_opt(
        &self,
        dir: &Dir,
        controller: &str,
        file: &str,
    ) -> Result<Option<String>, Error> {
        match self.read_dir(dir, controller, file) {
            Ok(text) => Ok(Some(text)),
            Err(Error::Read { ref source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads `controller`'s `file`; `None` when the controller or the file is not there.
    fn read_opt(&self, controller: &str, file: &str) -> Result<Option<String>, Error> {
        match self.dir_for(controller) {
            Some(dir) => self.read_dir_opt(dir, controller, file),
            None => Ok(None),
        }
    }

    /// Reads a limit file: `max`, v1's "unlimited" sentinel and a missing file are `None`.
    fn read_limit(&self, controller: &str, file: &str) -> Result<Option<u64>, Error> {
        let Some(text) = self.read_opt(controller, file)? else {
            return Ok(None);
        };
        let t = text.trim();
        if t == "max" {
            return Ok(None);
        }
        match t.parse::<u64>() {
            // v1 reports "unlimited" as PAGE_COUNTER_MAX pages (about 2^63).
            Ok(v) if v >= 1 << 62 => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(self.parse_error(controller, file, &text)),
        }
    }

    /// Reads a single-number file; a missing one is 0.
    fn read_u64(&self, controller: &str, file: &str) -> Result<u64, Error> {
        let Some(text) = self.read_opt(controller, file)? else {
            return Ok(0);
        };
        text.trim()
            .parse::<u64>()
            .map_err(|_| self.parse_error(controller, file, &text))
    }

    fn parse_error(&self, controller: &str, file: &str, content: &str) -> Error {
        Error::Parse {
            controller: controller.to_owned(),
            path: self.path.clone(),
            file: file.to_owned(),
            content: content.to_owned(),
        }
    }

    /// Polls `done` with a growing pause until it holds or [`SETTLE_TIMEOUT`] passes.
    fn wait_until(
        &self,
        controller: &str,
        state: &'static str,
        mut done: impl FnMut() -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            if done()? {
                return Ok(());
            }
            if start.elapsed() >= SETTLE_TIMEOUT {
                return Err(Error::Timeout {
                    controller: controller.to_owned(),
                    path: self.path.clone(),
                    state,
                    waited: start.elapsed(),
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

fn is_swap_file(file: &str) -> bool {
    file == "memory.memsw.limit_in_bytes" || file == "memory.swap.max"
}

/// One `write(2)` of the whole value to an existing file (cgroupfs takes a value per write; no
/// `O_CREAT`, so a missing file is `NotFound`, not a confusing permission error).
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(value.as_bytes())
}

/// The value of `key` in a flat keyed file (`key value` per line), e.g. `memory.events`.
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Removes `dir` and the cgroups below it, deepest first. A missing directory is fine. With
/// `strict`, a busy one is an error (after a bounded retry); without, it is left in place.
/// Returns how many directories were removed.
fn remove_tree(label: &str, path: &str, dir: &Path, strict: bool) -> Result<usize, Error> {
    let remove_error = |source: io::Error| Error::Remove {
        controller: label.to_owned(),
        path: path.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(remove_error(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(remove_error)?;
        if entry.file_type().map_err(remove_error)?.is_dir() {
            let child = format!("{path}/{}", entry.file_name().to_string_lossy());
            removed += remove_tree(label, &child, &entry.path(), strict)?;
        }
    }
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(removed + 1),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
                    || e.kind() == io::ErrorKind::DirectoryNotEmpty =>
            {
                if !strict {
                    return Ok(removed);
                }
                // A process that just left may still pin the group for a moment.
                if start.elapsed() >= SETTLE_TIMEOUT {
                    return Err(remove_error(e));
                }
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(remove_error(e)),
        }
    }
}

/// Removes every empty cgroup left under `flotilla-<prefix>` in every hierarchy (and that
/// directory itself when it ends up empty). Groups that still hold processes are left alone.
/// Returns how many directories were removed.
pub fn cleanup_prefix(prefix: &str) -> Result<usize, Error> {
    cleanup_prefix_in(Hierarchy::host()?, prefix)
}

/// [`cleanup_prefix`] on a given layout.
pub fn cleanup_prefix_in(hierarchy: &Hierarchy, prefix: &str) -> Result<usize, Error> {
    if prefix.is_empty() || prefix.contains('/') || prefix.contains('\0') || prefix == ".." {
        return Err(Error::InvalidPrefix(prefix.to_owned()));
    }
    let top = prefix_dir(prefix);
    let mut removed = 0;
    for mount in &hierarchy.mounts {
        let label = if mount.controllers.is_empty() {
            "cgroup".to_owned()
        } else {
            mount.controllers.join(",")
        };
        removed += remove_tree(&label, &top, &mount.dir.join(&top), false)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn co_mounted_controllers_share_one_directory() {
        let h = Hierarchy {
            version: Version::V1,
            mounts: parse_v1_mounts(hierarchy::tests::MOUNTINFO),
        };
        let cg = Cgroup::open_in(&h, "flotilla-x/abc").unwrap();
        assert_eq!(
            cg.dirs(),
            [
                "/sys/fs/cgroup/cpu,cpuacct/flotilla-x/abc",
                "/sys/fs/cgroup/memory/flotilla-x/abc",
                "/sys/fs/cgroup/pids/flotilla-x/abc",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            cg.dir_for("cpuacct").map(|d| d.label.as_str()),
            Some("cpu,cpuacct")
        );
        let needs_cpuset = Limits {
            cpuset_cpus: Some("0".into()),
            ..Limits::default()
        };
        let err = Cgroup::create_in(&h, "flotilla-x/abc", &needs_cpuset).unwrap_err();
        assert!(
            err.to_string()
                .contains("cpuset controller is not available")
        );
    }

    #[test]
    fn paths_and_prefixes_are_checked() {
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/\0"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path("flotilla-t1/abc").is_ok());
        let h = Hierarchy {
            version: Version::V2,
            mounts: vec![],
        };
        for bad in ["", "a/b", ".."] {
            assert!(cleanup_prefix_in(&h, bad).is_err(), "{bad:?}");
        }
        assert_eq!(cleanup_prefix_in(&h, "ok").unwrap(), 0);
    }

    #[test]
    fn keyed_files_parse() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_value(events, "oom_kill"), Some(2));
        assert_eq!(keyed_value(events, "oom"), Some(3));
        assert_eq!(keyed_value(events, "nope"), None);
    }

    #[test]
    fn errors_name_controller_path_file_and_value() {
        let e = Error::Write {
            controller: "memory".into(),
            path: "flotilla-t1/abc".into(),
            file: "memory.limit_in_bytes".into(),
            value: "536870912".into(),
            source: io::Error::from_raw_os_error(16),
        };
        assert!(e.to_string().starts_with(
            "cannot write 536870912 to memory/flotilla-t1/abc/memory.limit_in_bytes: "
        ));
    }
}
