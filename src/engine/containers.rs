//! The daemon's container service: the [`lifecycle::Runtime`] behind the API, with a lock per
//! container (operations on one container serialize, different containers run in parallel),
//! events for every change, and a watcher task per running container that notices its exit and
//! publishes `oom` and `die` (with the exit code).
//!
//! **Where container records live.** The per-container state dirs stay the single source of
//! truth (`meta.json` written by create, `state.json` by the shim from start on); the redb store
//! does *not* mirror containers. A mirror would need two writes per change (state dir and
//! database) that a `kill -9` could separate, and the shim, which records exits while no daemon
//! runs, cannot write the daemon's database. Listing reads the state dirs (a few small files per
//! container, well under a millisecond each); nothing the daemon acknowledged lives only in its
//! memory. The watcher set is rebuilt by live restore ([`super::restore`]).
//!
//! A watcher connects to the shim's control socket and sends `wait`; the shim answers when the
//! container has exited (or closes the socket as it exits). Watchers are async (one socket each,
//! no thread), so a thousand running containers cost a thousand idle sockets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::engine::events::{Event, EventBus};
use crate::engine::locks::{Guard, LockTable};
use crate::engine::restart;
use crate::runtime::control::{self, Reply, Request};
use crate::runtime::lifecycle::{Container, CreateOptions, LifecycleError, Meta, Runtime};
use crate::runtime::state::{self, State, Status};
use crate::runtime::time;

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("{what}: the worker task failed: {reason}")]
    Task { what: String, reason: String },
    /// A published port could not be bound: the container was not started.
    #[error("container {name}: {reason}")]
    Ports { name: String, reason: String },
}

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The label that marks a container the daemon removes once it has exited (`run --rm`).
pub const AUTO_REMOVE_LABEL: &str = "io.flotilla.auto-remove";

/// How many exits of auto-removed containers are remembered for a late `wait`.
const REMOVED_EXITS: usize = 256;

/// How long an auto-removal waits for the log readers of the container to finish.
const READERS_GRACE: Duration = Duration::from_secs(30);

/// Counts a reader of a container's logs while it lives (see [`Containers::reader`]).
#[derive(Debug)]
pub struct ReaderGuard {
    readers: Arc<Mutex<HashMap<String, usize>>>,
    done: Arc<tokio::sync::Notify>,
    id: String,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = r.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.remove(&self.id);
            }
        }
        drop(r);
        self.done.notify_waiters();
    }
}

/// The containers of one data root, as the daemon serves them.
#[derive(Debug)]
pub struct Containers {
    runtime: Runtime,
    locks: LockTable,
    events: EventBus,
    watched: Mutex<HashSet<String>>,
    records: Arc<RecordCache>,
    /// The exit (its `finished_at`) whose `die` was published, per container: the watcher and
    /// a removal racing it publish it once, and always before `destroy`.
    exits: Mutex<HashMap<String, Option<String>>>,
    /// DNS names and published ports, following starts and stops (none in library use).
    netsvc: std::sync::OnceLock<Arc<super::netsvc::NetServices>>,
    /// Releases what a removed container held (netns, anonymous volumes).
    project: std::sync::OnceLock<Arc<super::project::ProjectEngine>>,
    /// Log streams open per container: an auto-removal waits for them to finish reading.
    readers: Arc<Mutex<HashMap<String, usize>>>,
    /// Woken whenever a log stream ends.
    readers_done: Arc<tokio::sync::Notify>,
    /// The last states of auto-removed containers (id, name, state), newest last, so that a
    /// `wait` arriving after the removal still gets the exit code.
    removed: Mutex<VecDeque<(String, String, State)>>,
}

/// How recent a file's mtime may be for its `stat` key to be trusted: a write within the same
/// timestamp tick (the kernel's coarse clock, at most a few milliseconds) could leave it equal.
const RACY: Duration = Duration::from_millis(50);

/// What `stat` says about one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    /// The key of a regular file; none for anything else.
    fn of(md: &fs::Metadata) -> Option<FileKey> {
        md.is_file().then(|| FileKey {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        })
    }

    /// Whether the file was changed within [`RACY`] of `now` (or in the future of it).
    fn racy(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return true;
        };
        let changed = |(s, ns): (i64, i64)| {
            let (Ok(s), Ok(ns)) = (u64::try_from(s), u32::try_from(ns)) else {
                return true;
            };
            Duration::new(s, ns.min(999_999_999)) + RACY > now
        };
        changed(self.mtime) || changed(self.ctime)
    }
}

/// The parsed files of one container, with the keys they were read at (none: re-read).
#[derive(Debug)]
struct Record {
    meta_key: Option<FileKey>,
    meta: Meta,
    state_key: Option<FileKey>,
    state: State,
}

/// The last parsed `meta.json` and `state.json` of each container (see the module docs).
#[derive(Debug, Default)]
struct RecordCache {
    records: Mutex<HashMap<String, Record>>,
}

/// The keys of a container's `meta.json` and `state.json`; none while either is missing (a
/// container being created or removed).
fn record_keys(dir: &Path) -> Option<(FileKey, FileKey)> {
    let meta = fs::metadata(dir.join("meta.json")).ok()?;
    let state = fs::metadata(dir.join(state::STATE_FILE)).ok()?;
    Some((FileKey::of(&meta)?, FileKey::of(&state)?))
}

/// Whether the shim `pid` that started at `start_time` still runs (not a zombie, not a reuse of
/// its pid): [`state::process_alive`] with a single read of `/proc/<pid>/stat`.
fn shim_alive(pid: i32, start_time: Option<u64>) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let Some(rest) = text.rfind(')').and_then(|i| text.get(i + 1..)) else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X") | None) {
        return false;
    }
    // Field 22 (start time) is the 20th after the state (field 3).
    let now = fields.nth(18).and_then(|s| s.parse::<u64>().ok());
    match (now, start_time) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl RecordCache {
    /// Container `id` as [`Runtime::inspect`] reads it, from the cache where its files did not
    /// change. None when its `meta.json` or `state.json` is missing (not complete).
    fn load(&self, rt: &Runtime, id: &str) -> Result<Option<Container>, LifecycleError> {
        let dir = rt.dir(id);
        let now = SystemTime::now();
        let Some((meta_key, state_key)) = record_keys(&dir) else {
            self.forget(id);
            return Ok(None);
        };
        let cached = {
            let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            records.get(id).map(|r| {
                let meta = (r.meta_key == Some(meta_key)).then(|| r.meta.clone());
                let state = (r.state_key == Some(state_key)).then(|| r.state.clone());
                (meta, state)
            })
        };
        let (meta, state) = cached.unwrap_or((None, None));
        let changed = meta.is_none() || state.is_none();
        let meta = match meta {
            Some(m) => m,
            None => rt.meta(id)?,
        };
        let state = match state {
            Some(s) => s,
            None => state::read(&dir).map_err(|source| LifecycleError::State {
                id: id.to_string(),
                source,
            })?,
        };
        if changed {
            let trusted = |k: FileKey| (!k.racy(now)).then_some(k);
            let record = Record {
                meta_key: trusted(meta_key),
                meta: meta.clone(),
                state_key: trusted(state_key),
                state: state.clone(),
            };
            let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            records.insert(id.to_string(), record);
        }
        Ok(Some(Container {
            meta,
            state: settle(&dir, state),
        }))
    }

    fn forget(&self, id: &str) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.remove(id);
    }

    /// Drops the records of containers not in `ids`.
    fn retain(&self, ids: &HashSet<String>) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.retain(|id, _| ids.contains(id));
    }
}

/// The state as [`Runtime::state`] reports it: running or paused with the shim gone reads as
/// dead, unless the shim recorded its exit meanwhile.
fn settle(dir: &Path, mut st: State) -> State {
    if !matches!(st.status, Status::Running | Status::Paused) {
        return st;
    }
    if st
        .shim_pid
        .is_some_and(|pid| shim_alive(pid, st.shim_start_time))
    {
        return st;
    }
    // The shim may have just finished: its final state is written before it exits.
    if let Ok(again) = state::read(dir)
        && !matches!(again.status, Status::Running | Status::Paused)
    {
        return again;
    }
    st.status = Status::Dead;
    st
}

/// Runs a blocking runtime call on the blocking pool.
async fn blocking<T, F>(what: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LifecycleError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Task {
            what: what.to_string(),
            reason: e.to_string(),
        })?
        .map_err(EngineError::from)
}

fn container_event(action: &str, c: &Container) -> Event {
    let mut e = Event::now("container", action, &c.meta.id, &c.meta.name);
    if let Some(image) = &c.meta.image {
        e = e.with("image", image);
    }
    e
}

impl Containers {
    pub fn new(runtime: Runtime, events: EventBus) -> Arc<Self> {
        Arc::new(Containers {
            runtime,
            locks: LockTable::new(),
            events,
            watched: Mutex::new(HashSet::new()),
            records: Arc::new(RecordCache::default()),
            exits: Mutex::new(HashMap::new()),
            netsvc: std::sync::OnceLock::new(),
            project: std::sync::OnceLock::new(),
            readers: Arc::new(Mutex::new(HashMap::new())),
            readers_done: Arc::new(tokio::sync::Notify::new()),
            removed: Mutex::new(VecDeque::new()),
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Drops what is cached about a container removed by someone else (the reconciler).
    pub fn forget(&self, id: &str) {
        self.records.forget(id);
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The state dir of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.runtime.dir(id)
    }

    /// Takes the lock of container `id`.
    pub async fn lock(&self, id: &str) -> Guard {
        self.locks.lock(&format!("container:{id}")).await
    }

    /// The id of the container named by `query` (name, id or unambiguous id prefix).
    pub async fn resolve(&self, query: &str) -> Result<String> {
        let rt = self.runtime.clone();
        let q = query.to_string();
        blocking("resolve", move || rt.resolve(&q)).await
    }

    pub async fn inspect(&self, query: &str) -> Result<Container> {
        let rt = self.runtime.clone();
        let records = self.records.clone();
        let q = query.to_string();
        blocking("inspect", move || {
            let id = rt.resolve(&q)?;
            match records.load(&rt, &id)? {
                Some(c) => Ok(c),
                // Not complete: the runtime says why (not found, no state yet).
                None => rt.inspect(&id),
            }
        })
        .await
    }

    /// Every complete container, oldest first. Containers being created or removed right now
    /// (their dir without `meta.json` and `state.json`, see [`super::restore::is_complete`])
    /// are not listed, so a list never fails because of a concurrent create or remove. Files
    /// that did not change since the last list are not read again (see the module docs).
    pub async fn list(&self) -> Result<Vec<Container>> {
        let rt = self.runtime.clone();
        let records = self.records.clone();
        blocking("list", move || {
            let dir = rt.dir("");
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                match records.load(&rt, &id) {
                    Ok(Some(c)) => out.push(c),
                    Ok(None) => {}
                    Err(_) if !super::restore::is_complete(&entry.path()) => {}
                    Err(LifecycleError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                seen.insert(id);
            }
            records.retain(&seen);
            out.sort_by(|a, b| a.meta.created.cmp(&b.meta.created));
            Ok(out)
        })
        .await
    }

    pub async fn create(&self, options: CreateOptions) -> Result<Container> {
        let rt = self.runtime.clone();
        let c = blocking("create", move || {
            let id = rt.create(options)?;
            rt.inspect(&id)
        })
        .await?;
        self.events.publish(container_event("create", &c));
        Ok(c)
    }

    /// Runs `op` on the resolved container under its lock, then publishes `action`.
    async fn locked<T, F>(&self, query: &str, what: &'static str, op: F) -> Result<(T, Container)>
    where
        T: Send + 'static,
        F: FnOnce(&Runtime, &str) -> Result<T, LifecycleError> + Send + 'static,
    {
        let id = self.resolve(query).await?;
        let _guard = self.lock(&id).await;
        let rt = self.runtime.clone();
        blocking(what, move || {
            let out = op(&rt, &id)?;
            let c = rt.inspect(&id)?;
            Ok((out, c))
        })
        .await
    }

    /// Lets removals release a container's network namespace and anonymous volumes.
    pub fn set_project_engine(&self, engine: Arc<super::project::ProjectEngine>) {
        let _ = self.project.set(engine);
    }

    /// Gives the containers their network services (DNS names, published ports).
    pub fn set_netsvc(&self, netsvc: Arc<super::netsvc::NetServices>) {
        let _ = self.netsvc.set(netsvc);
    }

    /// Starts the container for the user: its restart counters start over.
    pub async fn start(self: &Arc<Self>, query: &str) -> Result<Container> {
        let id = self.resolve(query).await?;
        let _guard = self.lock(&id).await;
        let dir = self.dir(&id);
        let _ = restart::update(&dir, restart::Record::started_by_user);
        let started = self.start_locked(&id).await;
        drop(_guard);
        // Nothing ran: no reader has output to wait for (a reader waiting for the start must
        // not hold up its failure).
        if started.is_err() && self.auto_removes(&id).await {
            self.auto_remove(&id, false).await;
        }
        started
    }

    /// Stops then starts the container (`restart`), publishing `restart`.
    pub async fn restart(
        self: &Arc<Self>,
        query: &str,
        timeout: Option<Duration>,
    ) -> Result<Container> {
        let id = self.resolve(query).await?;
        self.stop(&id, timeout).await?;
        let c = self.start(&id).await?;
        self.events.publish(container_event("restart", &c));
        Ok(c)
    }

    /// Registers a reader of container `id`'s logs until the guard is dropped.
    pub fn reader(&self, id: &str) -> ReaderGuard {
        let mut r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry(id.to_string()).or_insert(0) += 1;
        ReaderGuard {
            readers: self.readers.clone(),
            done: self.readers_done.clone(),
            id: id.to_string(),
        }
    }

    fn has_readers(&self, id: &str) -> bool {
        let r = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        r.get(id).is_some_and(|n| *n > 0)
    }

    /// Whether container `id` carries [`AUTO_REMOVE_LABEL`].
    async fn auto_removes(&self, id: &str) -> bool {
        let rt = self.runtime.clone();
        let i = id.to_string();
        blocking("read meta.json", move || rt.meta(&i))
            .await
            .is_ok_and(|m| m.labels.get(AUTO_REMOVE_LABEL).is_some_and(|v| v == "true"))
    }

    /// Removes an exited auto-remove container, with `wait_readers` once its log readers are
    /// done (bounded), remembering its last state for a late `wait`.
    async fn auto_remove(&self, id: &str, wait_readers: bool) {
        let deadline = tokio::time::Instant::now() + READERS_GRACE;
        if wait_readers {
            loop {
                // Registered before the check, so a reader ending in between still wakes it.
                let notified = self.readers_done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !self.has_readers(id) || tokio::time::Instant::now() >= deadline {
                    break;
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
        let (rt, i) = (self.runtime.clone(), id.to_string());
        if let Ok(c) = blocking("inspect", move || rt.inspect(&i)).await {
            let mut removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
            if removed.len() >= REMOVED_EXITS {
                removed.pop_front();
            }
            removed.push_back((c.meta.id, c.meta.name, c.state));
        }
        if let Err(e) = self.remove(id, true, true).await {
            tracing::warn!(id, error = %e, "auto-remove an exited container");
        }
    }

    /// The last state of an auto-removed container, by id or name.
    fn removed_exit(&self, query: &str) -> Option<State> {
        let removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        removed
            .iter()
            .rev()
            .find(|(id, name, _)| id == query || name == query)
            .map(|(_, _, st)| st.clone())
    }

    /// Starts container `id` (its lock held): published ports bound first, then the process,
    /// then its names in the DNS; the `start` event, and the exit watcher.
    async fn start_locked(self: &Arc<Self>, id: &str) -> Result<Container> {
        let netsvc = self.netsvc.get().cloned();
        if let Some(ns) = &netsvc
            && let Err(reason) = ns.publish(id).await
        {
            let name = self
                .runtime
                .meta(id)
                .map(|m| m.name)
                .unwrap_or_else(|_| id.to_string());
            return Err(EngineError::Ports { name, reason });
        }
        let rt = self.runtime.clone();
        let i = id.to_string();
        let started = blocking("start", move || {
            rt.start(&i)?;
            rt.inspect(&i)
        })
        .await;
        let c = match started {
            Ok(c) => c,
            Err(e) => {
                if let Some(ns) = &netsvc {
                    ns.unregister(id).await;
                }
                return Err(e);
            }
        };
        if let Some(ns) = &netsvc {
            ns.register(id).await;
        }
        self.events.publish(container_event("start", &c));
        self.watch(&c.meta.id, &c.meta.name, c.meta.image.as_deref());
        Ok(c)
    }

    /// Re-adopts a container found running at daemon start: its ports and DNS names again.
    pub async fn adopt(&self, id: &str) {
        if let Some(ns) = self.netsvc.get() {
            if let Err(e) = ns.publish(id).await {
                tracing::warn!(id, error = %e, "publish the ports of a running container");
            }
            ns.register(id).await;
        }
    }

    /// Releases a container's ports and DNS names (before someone else removes it).
    pub async fn release(&self, id: &str) {
        if let Some(ns) = self.netsvc.get() {
            ns.unregister(id).await;
        }
    }

    /// After container `id` (its lock held) was connected to a network: when it runs, its
    /// names join that network's DNS (starting the network's server if needed).
    pub async fn network_connected(&self, id: &str) {
        let (rt, i) = (self.runtime.clone(), id.to_string());
        let running = blocking("state", move || rt.state(&i))
            .await
            .is_ok_and(|s| matches!(s.status, Status::Running | Status::Paused));
        if running && let Some(ns) = self.netsvc.get() {
            ns.register(id).await;
        }
    }

    /// After container `id` was disconnected from `network`: its names leave that network's
    /// DNS.
    pub fn network_disconnected(&self, id: &str, network: &str) {
        if let Some(ns) = self.netsvc.get() {
            ns.disconnected(id, network);
        }
    }

    /// Stops the DNS server of a network about to be removed.
    pub async fn network_removed(&self, name: &str) {
        if let Some(ns) = self.netsvc.get() {
            ns.network_removed(name).await;
        }
    }

    /// The published ports of a container as bound.
    pub fn ports(&self, id: &str) -> Vec<crate::network::proxy::PortBinding> {
        self.netsvc.get().map(|ns| ns.ports(id)).unwrap_or_default()
    }

    /// Stores `policy` as the container's restart policy (after create).
    pub async fn set_restart_policy(&self, id: &str, policy: restart::Policy) -> Result<()> {
        let dir = self.dir(id);
        let record = restart::Record {
            policy,
            ..restart::Record::default()
        };
        blocking("store the restart policy", move || {
            restart::write(&dir, &record).map_err(|source| LifecycleError::Io {
                id: String::new(),
                step: "write restart.json",
                path: dir.join(restart::FILE),
                source,
            })
        })
        .await
    }

    /// After an exit: applies the container's restart policy (a delay, then a start, unless
    /// the user stopped, started or removed it meanwhile).
    pub async fn after_exit(self: &Arc<Self>, id: &str) {
        if self.auto_removes(id).await {
            let exited = self
                .state(id)
                .await
                .is_ok_and(|st| matches!(st.status, Status::Exited | Status::Dead));
            if exited {
                self.auto_remove(id, true).await;
            }
            return;
        }
        let dir = self.dir(id);
        // Decided and recorded under the container's lock: a removal is never raced (a write
        // into a directory being deleted would keep it).
        let (st, delay) = {
            let _guard = self.lock(id).await;
            let Ok(st) = self.state(id).await else {
                return;
            };
            if st.status != Status::Exited || !dir.join("meta.json").exists() {
                return;
            }
            let Some(mut record) = restart::read(&dir) else {
                return;
            };
            let ran = match (
                st.started_at.as_deref().and_then(time::parse),
                st.finished_at.as_deref().and_then(time::parse),
            ) {
                (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default(),
                _ => Duration::ZERO,
            };
            let decision = record.decide(st.exit_code.unwrap_or(-1), ran);
            if let Err(e) = restart::write(&dir, &record) {
                tracing::warn!(id, error = %e, "record a restart decision");
                return;
            }
            let restart::Decision::Restart(delay) = decision else {
                return;
            };
            (st, delay)
        };
        tokio::time::sleep(delay).await;
        let _guard = self.lock(id).await;
        let still = self.state(id).await.ok().map(|s| (s.status, s.finished_at));
        if still != Some((Status::Exited, st.finished_at.clone()))
            || restart::read(&dir).is_none_or(|r| r.manually_stopped)
        {
            return;
        }
        if let Err(e) = self.start_locked(id).await {
            tracing::warn!(id, error = %e, "restart by policy");
        }
    }

    /// Stops the container for the user: its restart policy leaves it stopped.
    /// A Compose container's `pre_stop` hooks run first (a failing one is logged and the
    /// stop goes on).
    pub async fn stop(&self, query: &str, timeout: Option<Duration>) -> Result<Container> {
        self.pre_stop(query, timeout).await;
        let (_, c) = self
            .locked(query, "stop", move |rt, id| {
                let _ = restart::update(&rt.dir(id), |r| r.manually_stopped = true);
                rt.stop(id, timeout)
            })
            .await?;
        self.events.publish(container_event("stop", &c));
        Ok(c)
    }

    /// Runs the `pre_stop` hooks of the running container `query` (from the configuration
    /// it was created with), within the stop's grace period (`timeout`, else the
    /// container's own).
    pub async fn pre_stop(&self, query: &str, timeout: Option<Duration>) {
        let Ok(c) = self.inspect(query).await else {
            return;
        };
        let hooks = super::hooks::from_labels(&c.meta.labels, "pre_stop");
        if hooks.is_empty() || !matches!(c.state.status, Status::Running) {
            return;
        }
        let dir = self.dir(&c.meta.id);
        let exe = self.runtime.exe().to_path_buf();
        let limit = timeout.unwrap_or(Duration::from_millis(c.meta.stop_timeout_ms));
        if let Err(e) = super::hooks::run(&dir, &exe, "pre_stop", &hooks, limit).await {
            tracing::warn!(container = c.meta.name, error = %e, "pre_stop hook failed");
        }
    }

    /// Runs the `post_start` hooks of the just started container `id` (from the configuration
    /// it was created with): the API's start and restart of a Compose container (`compose
    /// start`/`restart`); the reconciler runs its own.
    pub async fn post_start(&self, c: &Container) -> std::result::Result<(), String> {
        let hooks = super::hooks::from_labels(&c.meta.labels, "post_start");
        if hooks.is_empty() {
            return Ok(());
        }
        let dir = self.dir(&c.meta.id);
        let exe = self.runtime.exe().to_path_buf();
        super::hooks::run(
            &dir,
            &exe,
            "post_start",
            &hooks,
            super::hooks::POST_START_LIMIT,
        )
        .await
        .map_err(|e| format!("container {}: {e}", c.meta.name))
    }

    pub async fn kill(&self, query: &str, signal: &str) -> Result<Container> {
        let sig = signal.to_string();
        let (_, c) = self
            .locked(query, "kill", move |rt, id| {
                let _ = restart::update(&rt.dir(id), |r| r.manually_stopped = true);
                rt.kill(id, &sig)
            })
            .await?;
        self.events
            .publish(container_event("kill", &c).with("signal", signal));
        Ok(c)
    }

    pub async fn pause(&self, query: &str) -> Result<Container> {
        let (_, c) = self.locked(query, "pause", |rt, id| rt.pause(id)).await?;
        self.events.publish(container_event("pause", &c));
        Ok(c)
    }

    pub async fn unpause(&self, query: &str) -> Result<Container> {
        let (_, c) = self
            .locked(query, "unpause", |rt, id| rt.unpause(id))
            .await?;
        self.events.publish(container_event("unpause", &c));
        Ok(c)
    }

    /// Removes the container (a running one only with `force`, which kills it first), its
    /// network namespace, and with `volumes` its anonymous volumes.
    pub async fn remove(&self, query: &str, force: bool, volumes: bool) -> Result<Container> {
        let id = self.resolve(query).await?;
        let _guard = self.lock(&id).await;
        let rt = self.runtime.clone();
        let c = {
            let (rt, id) = (rt.clone(), id.clone());
            blocking("inspect", move || rt.inspect(&id)).await?
        };
        if let Some(ns) = self.netsvc.get() {
            ns.unregister(&c.meta.id).await;
        }
        // An exit the watcher has not reported yet is reported before the removal.
        if matches!(c.state.status, Status::Exited) {
            self.publish_exit(&c.meta.id, &c.meta.name, c.meta.image.as_deref(), &c.state);
        }
        let project = self.project.get().cloned();
        let c = blocking("remove", move || {
            let c = rt.inspect(&id)?;
            rt.rm(&id, force)?;
            if let Some(engine) = project
                && let Err(e) = engine.release(&c.meta, volumes)
            {
                tracing::warn!(id, error = %e, "release what a removed container held");
            }
            Ok(c)
        })
        .await?;
        // A removed container is no longer watched, whatever its watcher task is still doing
        // (it may be sleeping before a retry; it finds the container gone and ends).
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&c.meta.id);
        // The entry stays (a watcher that read the exit before the removal must not publish
        // it again); entries of removed containers are dropped in bulk now and then.
        let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        if exits.len() > 4096 {
            exits.retain(|id, _| self.runtime.dir(id).exists());
        }
        drop(exits);
        if matches!(c.state.status, Status::Running | Status::Paused) {
            self.events
                .publish(container_event("kill", &c).with("signal", "SIGKILL"));
        }
        self.records.forget(&c.meta.id);
        self.events.publish(container_event("destroy", &c));
        Ok(c)
    }

    /// Waits until the container has exited (without holding its lock); returns its state.
    /// Dropping the future (a client that went away) stops waiting.
    pub async fn wait(&self, query: &str) -> Result<State> {
        let id = match self.resolve(query).await {
            Ok(id) => id,
            Err(e) => return self.removed_exit(query).ok_or(e),
        };
        loop {
            let st = match self.state(&id).await {
                Ok(st) => st,
                Err(e) => return self.removed_exit(&id).ok_or(e),
            };
            match st.status {
                Status::Exited | Status::Dead => return Ok(st),
                Status::Created => tokio::time::sleep(Duration::from_millis(50)).await,
                Status::Running | Status::Paused => {
                    if shim_wait(&self.dir(&id)).await.is_err() && !self.ended(&id).await {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }

    /// Whether container `id` is recorded as exited (or its shim is gone) now.
    async fn ended(&self, id: &str) -> bool {
        self.state(id)
            .await
            .is_ok_and(|st| matches!(st.status, Status::Exited | Status::Dead))
    }

    async fn state(&self, id: &str) -> Result<State> {
        let rt = self.runtime.clone();
        let id = id.to_string();
        blocking("state", move || rt.state(&id)).await
    }

    /// Starts watching container `id` for its exit (once; a second call does nothing).
    pub fn watch(self: &Arc<Self>, id: &str, name: &str, image: Option<&str>) {
        {
            let mut w = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            if !w.insert(id.to_string()) {
                return;
            }
        }
        if let Some(config) = super::health::read_config(&self.dir(id)) {
            let events = self.events.clone();
            let (i, n) = (id.to_string(), name.to_string());
            tokio::spawn(super::health::monitor(
                self.dir(id),
                config,
                Some(self.runtime.exe().to_path_buf()),
                move |status| {
                    events.publish(Event::now(
                        "container",
                        &format!("health_status: {status}"),
                        &i,
                        &n,
                    ));
                },
            ));
        }
        let me = self.clone();
        let (id, name, image) = (id.to_string(), name.to_string(), image.map(String::from));
        tokio::spawn(async move {
            me.watch_exit(&id, &name, image.as_deref()).await;
            me.watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if let Some(ns) = me.netsvc.get() {
                ns.unregister(&id).await;
            }
            me.after_exit(&id).await;
        });
    }

    /// How many containers are being watched.
    pub fn watching(&self) -> usize {
        self.watched.lock().map(|w| w.len()).unwrap_or(0)
    }

    async fn watch_exit(&self, id: &str, name: &str, image: Option<&str>) {
        loop {
            let st = match self.state(id).await {
                Ok(st) => st,
                // Removed: `destroy` said it.
                Err(EngineError::Lifecycle(LifecycleError::NotFound(_))) => return,
                Err(e) => {
                    tracing::warn!(id, error = %e, "watch a container: read its state");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match st.status {
                Status::Running | Status::Paused => {
                    // The shim is finishing (socket gone) or still starting. Gone already (a
                    // short-lived container exits before its watch begins): no pause.
                    if shim_wait(&self.dir(id)).await.is_err() && !self.ended(id).await {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                Status::Created => return,
                Status::Exited => {
                    self.publish_exit(id, name, image, &st);
                    return;
                }
                Status::Dead => {
                    let rt = self.runtime.clone();
                    let i = id.to_string();
                    match blocking("settle", move || super::restore::settle_dead(&rt, &i)).await {
                        Ok(st) => self.publish_exit(id, name, image, &st),
                        Err(e) => tracing::warn!(id, error = %e, "record the exit of a dead shim"),
                    }
                    return;
                }
            }
        }
    }

    /// Publishes `oom` (when the kernel killed it for memory) and `die` with the exit code.
    pub fn publish_exit(&self, id: &str, name: &str, image: Option<&str>, st: &State) {
        {
            let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
            if exits.get(id) == Some(&st.finished_at) {
                return;
            }
            exits.insert(id.to_string(), st.finished_at.clone());
        }
        let base = |action: &str| {
            let e = Event::now("container", action, id, name);
            match image {
                Some(i) => e.with("image", i),
                None => e,
            }
        };
        if st.oom_killed {
            self.events.publish(base("oom"));
        }
        let mut die = base("die").with("exitCode", st.exit_code.unwrap_or(-1));
        if let Some(sig) = st.signal {
            die = die.with("signal", sig);
        }
        if st.oom_killed {
            die = die.with("oomKilled", true);
        }
        self.events.publish(die);
    }
}

/// Asks the shim of state dir `dir` to answer when its container has exited; returns when it
/// has (or when the shim closed the connection, exiting).
pub async fn shim_wait(dir: &Path) -> std::io::Result<()> {
    let std_stream = control::with_socket_path(dir, control::SOCKET, |p| {
        std::os::unix::net::UnixStream::connect(p)
    })?;
    std_stream.set_nonblocking(true)?;
    let mut stream = tokio::net::UnixStream::from_std(std_stream)?;
    let mut line = serde_json::to_vec(&Request::Wait).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut reader = BufReader::new(stream);
    let mut text = String::new();
    loop {
        text.clear();
        if reader.read_line(&mut text).await? == 0 {
            return Ok(());
        }
        match serde_json::from_str::<Reply>(&text) {
            Ok(Reply::Exit { .. }) => return Ok(()),
            Ok(Reply::Error { message }) => return Err(std::io::Error::other(message)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::ContainerConfig;

    #[test]
    fn shim_liveness_from_one_read() {
        let me = std::process::id() as i32;
        let start = state::process_start_time(me);
        assert!(start.is_some());
        assert!(shim_alive(me, start));
        assert!(shim_alive(me, None));
        assert!(!shim_alive(me, start.map(|s| s + 1)));
        assert!(!shim_alive(i32::MAX, None));
    }

    #[test]
    fn the_cache_follows_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(dir.path()).unwrap();
        let id = rt
            .create(CreateOptions {
                name: Some("web".into()),
                config: ContainerConfig {
                    command: Some(vec!["true".into()]),
                    layers: vec![PathBuf::from("/nonexistent-layer")],
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap();
        let cache = RecordCache::default();
        let c = cache.load(&rt, &id).unwrap().unwrap();
        assert_eq!(c, rt.inspect(&id).unwrap());
        assert_eq!(c.state.status, Status::Created);
        // Each write is seen at once, however soon after the last one.
        for code in [1, 2, 3] {
            let st = State {
                status: Status::Exited,
                exit_code: Some(code),
                ..State::default()
            };
            state::write(&rt.dir(&id), &st).unwrap();
            assert_eq!(cache.load(&rt, &id).unwrap().unwrap().state, st);
        }
        // Recorded running with its shim gone: dead.
        let st = State {
            status: Status::Running,
            shim_pid: Some(i32::MAX),
            ..State::default()
        };
        state::write(&rt.dir(&id), &st).unwrap();
        let c = cache.load(&rt, &id).unwrap().unwrap();
        assert_eq!(c.state.status, Status::Dead);
        assert_eq!(c, rt.inspect(&id).unwrap());
        // Once old enough, the key is trusted and the record served from memory.
        std::thread::sleep(RACY * 2);
        cache.load(&rt, &id).unwrap();
        assert!(cache.records.lock().unwrap()[&id].state_key.is_some());
        assert_eq!(cache.load(&rt, &id).unwrap().unwrap(), c);
        rt.rm(&id, false).unwrap();
        assert!(cache.load(&rt, &id).unwrap().is_none());
        assert!(cache.records.lock().unwrap().is_empty());
    }
}
