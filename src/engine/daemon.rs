//! `flotilla daemon`: the long-running engine process. It takes an exclusive lock on
//! `<root>/daemon.lock` (holding its pid, so a second daemon on the same root names the holder),
//! writes `<root>/daemon.pid`, opens the state database, listens on every `--host` (unix sockets
//! mode 0660; TCP only with the config's `[api] token`) and serves [`crate::api::server`]. The
//! tokio multi-thread runtime is created here and only here. SIGTERM or SIGINT stops it
//! gracefully: listeners close, in-flight requests finish (streams end), the sockets and the pid
//! file are removed; containers are left running for the next daemon to re-adopt. Before it
//! listens, the daemon runs live restore ([`crate::engine::restore`]): running containers are
//! watched again, those whose shim died are marked exited, half-created ones are removed, and
//! containers that exited while no daemon ran get their `die` event. With
//! `FLOTILLA_DAEMON_SETSID=1` in its environment (set by the CLI's autostart) it first leaves
//! its caller's session.

use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::host::Host;
use crate::api::server::{ServerState, router};
use crate::engine::config::{ConfigError, DaemonConfig};
use crate::engine::containers::Containers;
use crate::engine::events::{EventBus, EventFilter};
use crate::engine::netsvc::NetServices;
use crate::engine::project::ProjectEngine;
use crate::engine::reconcile::Reconciler;
use crate::engine::restore;
use crate::network::Networks;
use crate::runtime::lifecycle::{LifecycleError, Runtime};
use crate::runtime::state::Status;
use crate::store::{Store, StoreError};
use crate::volume::Volumes;

/// The lock file inside the data root; it holds the pid of the daemon that has it locked.
pub const LOCK_FILE: &str = "daemon.lock";
/// The pid file inside the data root, present while the daemon runs.
pub const PID_FILE: &str = "daemon.pid";
/// The mode of unix sockets: owner and group may connect.
pub const SOCKET_MODE: u32 = 0o660;
/// Set (to anything) in the environment of a daemon that must start its own session (autostart).
pub const SETSID_ENV: &str = "FLOTILLA_DAEMON_SETSID";
/// How long in-flight requests may take to finish after a stop signal.
pub const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("networks: {0}")]
    Network(String),
    #[error(
        "--host {host}: a TCP listener needs a bearer token; set `[api] token` in the daemon config"
    )]
    TcpWithoutToken { host: String },
    #[error("--host {host}: resolve the address: {source}")]
    Address {
        host: String,
        source: std::io::Error,
    },
    #[error("create the data root {}: {source}", path.display())]
    CreateRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("open the lock file {}: {source}", path.display())]
    LockOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the data root {} is in use by another daemon (pid {pid}, lock {})", root.display(), lock.display())]
    Locked {
        root: PathBuf,
        lock: PathBuf,
        pid: String,
    },
    #[error("lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write the pid file {}: {source}", path.display())]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("socket path {} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("socket {} is in use by a running daemon", path.display())]
    SocketInUse { path: PathBuf },
    #[error("inspect the socket path {}: {source}", path.display())]
    SocketStat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("remove the stale socket {}: {source}", path.display())]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("create the socket directory {}: {source}", path.display())]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listen on {host}: {source}")]
    Bind {
        host: String,
        source: std::io::Error,
    },
    #[error("set the mode of the socket {}: {source}", path.display())]
    Chmod {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("open the event log in {}: {source}", path.display())]
    Events {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container runtime: {0}")]
    Containers(#[from] LifecycleError),
    #[error("start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("install the signal handlers: {0}")]
    Signal(std::io::Error),
}

type Result<T, E = DaemonError> = std::result::Result<T, E>;

/// What `flotilla daemon` was asked to do.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub data_root: PathBuf,
    /// Where to listen; empty means the default socket.
    pub hosts: Vec<Host>,
    /// The daemon config file; `None` reads the default path if it exists.
    pub config: Option<PathBuf>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: &DaemonOptions) -> Result<()> {
    if std::env::var_os(SETSID_ENV).is_some() {
        // Fails only for a process group leader, which then already is detached enough.
        let _ = rustix::process::setsid();
    }
    init_tracing();
    let config = DaemonConfig::load(opts.config.as_deref())?;
    let hosts = if opts.hosts.is_empty() {
        vec![Host::default()]
    } else {
        opts.hosts.clone()
    };
    let token: Option<Arc<str>> = config.api.token.as_deref().map(Arc::from);
    let mut tcp = Vec::new();
    for host in &hosts {
        if let Host::Tcp(addr) = host {
            if token.is_none() {
                return Err(DaemonError::TcpWithoutToken {
                    host: host.to_string(),
                });
            }
            tcp.push(resolve(host, addr)?);
        }
    }

    create_root(&opts.data_root)?;
    let lock = DaemonLock::acquire(&opts.data_root)?;
    let store = Arc::new(Store::open(&opts.data_root)?);
    let events = EventBus::persistent(&opts.data_root).map_err(|source| DaemonError::Events {
        path: opts.data_root.clone(),
        source,
    })?;
    let runtime = Runtime::new(&opts.data_root)?;
    // Host-global network names carry 4 characters of the data root's hash (the runtime's
    // cgroup prefix): two daemons on two roots do not meet.
    let net_prefix: String = runtime.prefix().chars().take(4).collect();
    let networks = Arc::new(
        Networks::new(&opts.data_root, &net_prefix, store.clone())
            .map_err(|e| DaemonError::Network(e.to_string()))?
            // One fork server for shim starts and the netns helpers.
            .with_spawner(runtime.spawner()),
    );
    let volumes = Volumes::new(&opts.data_root, store.clone());
    let engine = Arc::new(
        ProjectEngine::new(&opts.data_root, runtime.clone(), networks.clone(), volumes)
            .with_gateway_dns(true),
    );
    let upstreams = match config.dns.upstream_addrs() {
        Ok(Some(list)) => list,
        _ => crate::network::dns::host_upstreams().unwrap_or_default(),
    };
    // A previous run killed while it deleted a network's bridge in the background.
    if let Err(e) = networks.prune_stale() {
        tracing::warn!(error = %e, "remove stale network links");
    }
    let netsvc = NetServices::new(networks.clone(), runtime.clone(), upstreams);
    let containers = Containers::new(runtime, events);
    containers.set_netsvc(netsvc);
    containers.set_project_engine(engine.clone());
    let config = Arc::new(config);
    let reconciler = Reconciler::new(
        engine,
        containers.clone(),
        opts.data_root.clone(),
        config.clone(),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flotilla-daemon")
        .build()
        .map_err(DaemonError::Runtime)?;
    let result = runtime.block_on(async {
        live_restore(&containers, &opts.data_root).await;
        let prefix = containers.runtime().prefix().to_string();
        let served = serve(
            opts, &hosts, tcp, token, store, containers, config, reconciler, &lock,
        )
        .await;
        // Empty cgroups of this daemon's prefix go; those of running containers stay.
        let _ = crate::runtime::sys::cgroup::cleanup_prefix(&prefix);
        // Removed networks' bridges still being deleted in the background.
        networks.settle();
        served
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    lock.release();
    result
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn resolve(host: &Host, addr: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let err = |source| DaemonError::Address {
        host: host.to_string(),
        source,
    };
    addr.to_socket_addrs().map_err(err)?.next().ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ))
    })
}

fn create_root(root: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .map_err(|source| DaemonError::CreateRoot {
            path: root.to_path_buf(),
            source,
        })
}

/// The exclusive lock on a data root, held for the daemon's lifetime, and its pid file.
#[derive(Debug)]
struct DaemonLock {
    file: std::fs::File,
    pid_file: PathBuf,
}

impl DaemonLock {
    fn acquire(root: &Path) -> Result<Self> {
        let path = root.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|source| DaemonError::LockOpen {
                path: path.clone(),
                source,
            })?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(DaemonError::Locked {
                    root: root.to_path_buf(),
                    lock: path,
                    pid: if pid.is_empty() {
                        "unknown".to_string()
                    } else {
                        pid.to_string()
                    },
                });
            }
            Err(e) => {
                return Err(DaemonError::Lock {
                    path,
                    source: e.into(),
                });
            }
        }
        let pid = format!("{}\n", std::process::id());
        let write = |file: &mut std::fs::File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(pid.as_bytes())?;
            file.sync_all()
        };
        write(&mut file).map_err(|source| DaemonError::Lock {
            path: path.clone(),
            source,
        })?;
        let pid_file = root.join(PID_FILE);
        write_atomically(&pid_file, pid.as_bytes()).map_err(|source| DaemonError::PidFile {
            path: pid_file.clone(),
            source,
        })?;
        Ok(DaemonLock { file, pid_file })
    }

    /// Removes the pid file and unlocks (the lock file stays, empty).
    fn release(self) {
        if let Err(e) = std::fs::remove_file(&self.pid_file) {
            tracing::warn!(path = %self.pid_file.display(), error = %e, "remove the pid file");
        }
        let _ = self.file.set_len(0);
        drop(self.file);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// A unix socket this daemon created, removed at shutdown only if it is still ours.
struct OwnedSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl OwnedSocket {
    fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "remove the socket");
                }
            }
            _ => tracing::warn!(path = %self.path.display(), "the socket was replaced; left alone"),
        }
    }
}

/// Makes `path` free for a new socket: a stale socket is removed, a live one or anything that is
/// not a socket is an error (and left untouched).
fn prepare_socket(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(DaemonError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
            tracing::info!(path = %path.display(), "removing a stale socket");
            std::fs::remove_file(path).map_err(|source| DaemonError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(_) => Err(DaemonError::NotASocket {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|source| DaemonError::SocketDir {
                        path: dir.to_path_buf(),
                        source,
                    })?;
            }
            Ok(())
        }
        Err(source) => Err(DaemonError::SocketStat {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn bind_unix(host: &Host, path: &Path) -> Result<(tokio::net::UnixListener, OwnedSocket)> {
    prepare_socket(path)?;
    let bind_err = |source| DaemonError::Bind {
        host: host.to_string(),
        source,
    };
    let std_listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_err)?;
    let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
    let owned = OwnedSocket {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    if let Err(source) =
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
    {
        owned.remove();
        return Err(DaemonError::Chmod {
            path: path.to_path_buf(),
            source,
        });
    }
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let listener = tokio::net::UnixListener::from_std(std_listener).map_err(bind_err)?;
    Ok((listener, owned))
}

/// Live restore (see [`crate::engine::restore`]), then watchers for the running containers and
/// `die` events for the containers that exited while no daemon watched them.
async fn live_restore(containers: &Arc<Containers>, data_root: &Path) {
    let rt = containers.runtime().clone();
    let root = data_root.to_path_buf();
    let bus = containers.events().clone();
    let found = tokio::task::spawn_blocking(move || {
        let report = restore::restore(&rt, &root);
        // The last start/die logged per container: a `start` without a `die` after it is an
        // exit no daemon saw.
        let mut filter = EventFilter::default();
        let _ = filter.add("type", "container");
        let mut last = std::collections::HashMap::new();
        for e in bus.replay(None, None, &filter).unwrap_or_default() {
            if matches!(e.action.as_str(), "start" | "die" | "destroy") {
                last.insert(e.id.clone(), e.action.clone());
            }
        }
        let mut unseen = Vec::new();
        for (id, action) in last {
            if action != "start" {
                continue;
            }
            if let Ok(c) = rt.inspect(&id)
                && matches!(c.state.status, Status::Exited)
            {
                unseen.push(c);
            }
        }
        (report, unseen)
    })
    .await;
    let (report, unseen) = match found {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "live restore failed");
            return;
        }
    };
    for c in &unseen {
        containers.publish_exit(&c.meta.id, &c.meta.name, c.meta.image.as_deref(), &c.state);
        // Exits nobody saw are judged by the restart policy now.
        let (me, id) = (containers.clone(), c.meta.id.clone());
        tokio::spawn(async move { me.after_exit(&id).await });
    }
    for (id, name, image) in &report.running {
        containers.adopt(id).await;
        containers.watch(id, name, image.as_deref());
    }
    // Builds do not survive a daemon: their step containers and staging dirs go.
    crate::engine::build::cleanup(containers, data_root).await;
    tracing::info!(
        running = report.running.len(),
        settled = report.settled.len(),
        exited_unseen = unseen.len(),
        removed_partial = report.removed_partial.len(),
        removed_names = report.removed_names.len(),
        image_tmp = report.image_tmp,
        cgroups = report.cgroups,
        "live restore"
    );
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    opts: &DaemonOptions,
    hosts: &[Host],
    tcp: Vec<SocketAddr>,
    token: Option<Arc<str>>,
    store: Arc<Store>,
    containers: Arc<Containers>,
    config: Arc<DaemonConfig>,
    reconciler: Arc<Reconciler>,
    lock: &DaemonLock,
) -> Result<()> {
    let signals = StopSignals::install()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = ServerState {
        store,
        events: containers.events().clone(),
        containers,
        config,
        reconciler,
        data_root: opts.data_root.clone(),
        shutdown: stop_rx.clone(),
    };
    let mut sockets: Vec<OwnedSocket> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut tcp = tcp.into_iter();
    // TCP first: once a unix socket appears, every listener is ready.
    let tcp_hosts = hosts.iter().filter(|h| matches!(h, Host::Tcp(_)));
    let ordered = tcp_hosts.chain(hosts.iter().filter(|h| matches!(h, Host::Unix(_))));
    let bound = async {
        for host in ordered {
            let mut stop = stop_rx.clone();
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            match host {
                Host::Unix(path) => {
                    let (listener, owned) = bind_unix(host, path)?;
                    sockets.push(owned);
                    let app = router(state.clone(), None);
                    tracing::info!(%host, "listening");
                    tasks.spawn(async move {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stopped)
                            .await
                    });
                }
                Host::Tcp(_) => {
                    let Some(addr) = tcp.next() else { continue };
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|source| DaemonError::Bind {
                            host: host.to_string(),
                            source,
                        })?;
                    let app = router(state.clone(), token.clone());
                    tracing::info!(%host, "listening (bearer token required)");
                    tasks.spawn(async move {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stopped)
                            .await
                    });
                }
            }
        }
        Ok::<(), DaemonError>(())
    }
    .await;
    if let Err(e) = bound {
        let _ = stop_tx.send(true);
        for s in &sockets {
            s.remove();
        }
        return Err(e);
    }
    tracing::info!(
        pid = std::process::id(),
        data_root = %opts.data_root.display(),
        pid_file = %lock.pid_file.display(),
        "daemon ready"
    );

    let signal = signals.wait().await;
    tracing::info!(signal, "stopping: finishing in-flight requests");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "listener ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "in-flight requests still running after {}s; stopping anyway",
            DRAIN.as_secs()
        );
        tasks.abort_all();
    }
    for s in &sockets {
        s.remove();
    }
    tracing::info!("daemon stopped; containers left running");
    Ok(())
}

/// SIGTERM and SIGINT caught from now on (installed before the first socket appears: a
/// client that sees the socket may stop the daemon at once).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).map_err(DaemonError::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?,
        })
    }

    /// Waits for SIGTERM or SIGINT; returns which.
    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DaemonLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(dir.path().join(PID_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process.
        let err = DaemonLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "in use by another daemon (pid {},",
                std::process::id()
            )),
            "{err}"
        );
        lock.release();
        assert!(!dir.path().join(PID_FILE).exists());
        DaemonLock::acquire(dir.path()).unwrap().release();
    }

    #[test]
    fn socket_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep me").unwrap();
        let err = prepare_socket(&file).unwrap_err();
        assert!(matches!(err, DaemonError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        prepare_socket(&stale).unwrap();
        assert!(!stale.exists());

        let live = dir.path().join("live.sock");
        let _l = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let err = prepare_socket(&live).unwrap_err();
        assert!(matches!(err, DaemonError::SocketInUse { .. }), "{err}");

        let nested = dir.path().join("a/b/c.sock");
        prepare_socket(&nested).unwrap();
        assert!(nested.parent().unwrap().is_dir());
    }
}
