//! Named network namespaces (`<data_root>/netns/<id>`, a bind mount of a namespace file) and
//! the hidden helper that makes and wires them.
//!
//! Namespace work happens in a single-threaded `flotilla shim netns …` process (forked by the
//! daemon's fork server, [`crate::runtime::spawner`], or freshly executed), never in the
//! (multi-threaded) daemon:
//! - `flotilla shim netns create PATH`: creates the empty file PATH, `unshare(CLONE_NEWNET)`,
//!   bind-mounts `/proc/self/ns/net` on PATH and sets `lo` up inside; the namespace lives on
//!   as long as the bind mount does.
//! - `flotilla shim netns setup PATH` (an [`IfaceSetup`] as JSON on stdin): `setns` into PATH,
//!   then with a netlink socket opened there: the moved-in veth end is renamed to the first
//!   free `ethN` and given its MAC, its address, set up, `lo` up, and the default route via
//!   the gateway added (none for internal networks). Prints `{"ifname":"ethN"}`.
//! - `flotilla shim netns create-wired PATH` (a list of [`Wire`]s as JSON on stdin): `create`
//!   and `setup` of a new container's namespace in one process: a netlink socket is opened in
//!   the host's namespace before the `unshare`, each veth pair is made from there with its
//!   host end on the bridge and its peer created directly inside the new namespace, where it
//!   is named as told (`eth0`, `eth1`, … of a fresh namespace) and set up as by `setup`. On
//!   failure the host ends are deleted and the namespace removed.
//!
//! Removal needs no helper: unmount (detached) and unlink.

use std::ffi::OsString;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::netlink::{Netlink, NetlinkError};
use crate::runtime::spawner::Spawner;

/// Why a namespace could not be made, wired or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("usage: flotilla shim netns create PATH | setup PATH | create-wired PATH ({reason})")]
    Usage { reason: String },
    #[error("the netns helper must run single-threaded (it has {threads} threads)")]
    NotSingleThreaded { threads: usize },
    #[error("create the netns file {}: {source}", path.display())]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unshare a new network namespace: {0}")]
    Unshare(nix::Error),
    #[error("bind-mount the network namespace on {}: {source}", path.display())]
    BindMount { path: PathBuf, source: nix::Error },
    #[error("enter the network namespace {}: {source}", path.display())]
    Enter {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unmount the network namespace {}: {source}", path.display())]
    Unmount { path: PathBuf, source: nix::Error },
    #[error("remove the netns file {}: {source}", path.display())]
    RemoveFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("read the interface settings: {0}")]
    Settings(String),
    #[error("no free interface name in the network namespace")]
    NoIfname,
    #[error("in the network namespace: {0}")]
    Netlink(#[from] NetlinkError),
    #[error("in the host's network namespace: {0}")]
    HostNetlink(NetlinkError),
    #[error("run the netns helper {}: {source}", exe.display())]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("netns helper `{op}` for {}: {reason}", path.display())]
    Helper {
        op: &'static str,
        path: PathBuf,
        reason: String,
    },
}

type Result<T, E = NetnsError> = std::result::Result<T, E>;

/// What `shim netns setup` does inside the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceSetup {
    /// The name the veth end had when it was moved in.
    pub link: String,
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// The default route's gateway; none for internal networks.
    pub gateway: Option<Ipv4Addr>,
}

/// What `shim netns setup` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupReport {
    pub ifname: String,
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(usize::MAX, |d| d.count())
}

fn single_threaded() -> Result<()> {
    match thread_count() {
        1 => Ok(()),
        threads => Err(NetnsError::NotSingleThreaded { threads }),
    }
}

/// In the helper: a new network namespace bind-mounted on `path`, `lo` up.
fn helper_create(path: &Path) -> Result<()> {
    single_threaded()?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|source| NetnsError::CreateFile {
            path: path.to_path_buf(),
            source,
        })?;
    let result = (|| {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(NetnsError::Unshare)?;
        nix::mount::mount(
            Some("/proc/self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NetnsError::BindMount {
            path: path.to_path_buf(),
            source,
        })?;
        let nl = Netlink::open()?;
        let lo = nl
            .index_of("lo")?
            .ok_or(NetlinkError::NoSuchLink { link: "lo".into() })?;
        nl.set_up("lo", lo)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = remove(path);
    }
    result
}

fn enter(path: &Path) -> Result<()> {
    let enter_err = |source| NetnsError::Enter {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(enter_err)?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| enter_err(e.into()))
}

/// In the helper: wires the moved-in veth end inside the namespace at `path`.
fn helper_setup(path: &Path, setup: &IfaceSetup) -> Result<SetupReport> {
    single_threaded()?;
    enter(path)?;
    let nl = Netlink::open()?;
    let links = nl.links()?;
    let ifname = (0..1000)
        .map(|n| format!("eth{n}"))
        .find(|name| !links.iter().any(|l| &l.name == name))
        .ok_or(NetnsError::NoIfname)?;
    configure(&nl, setup, ifname)
}

/// One link of `create-wired`: the veth pair `veth` (host end, on `bridge`) / `iface.link`
/// (made inside the new namespace, renamed `ifname` there and set up as `iface` says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wire {
    pub veth: String,
    pub bridge: String,
    pub ifname: String,
    pub iface: IfaceSetup,
}

/// In the helper: a new namespace on `path` (as `create`) with `wires` made and set up in it.
fn helper_create_wired(path: &Path, wires: &[Wire]) -> Result<Vec<SetupReport>> {
    single_threaded()?;
    // Opened before the unshare: this socket stays in the host's namespace.
    let host = Netlink::open().map_err(NetnsError::HostNetlink)?;
    helper_create(path)?;
    let mut made = Vec::new();
    let result = (|| {
        let ns = std::fs::File::open("/proc/self/ns/net").map_err(|source| NetnsError::Enter {
            path: path.to_path_buf(),
            source,
        })?;
        let nl = Netlink::open()?;
        let mut reports = Vec::new();
        for w in wires {
            host.create_veth(&w.veth, &w.iface.link, &w.bridge, ns.as_raw_fd())
                .map_err(NetnsError::HostNetlink)?;
            made.push(w.veth.clone());
            reports.push(configure(&nl, &w.iface, w.ifname.clone())?);
        }
        Ok(reports)
    })();
    if result.is_err() {
        for veth in &made {
            let _ = host.delete_link(veth);
        }
        let _ = remove(path);
    }
    result
}

/// Inside the namespace: the veth end `setup.link` renamed `ifname`, its MAC, address, up,
/// `lo` up, the default route.
fn configure(nl: &Netlink, setup: &IfaceSetup, ifname: String) -> Result<SetupReport> {
    let index = nl.rename(&setup.link, &ifname, setup.mac)?;
    nl.add_address(&ifname, index, setup.address, setup.prefix)?;
    nl.set_up(&ifname, index)?;
    if let Some(lo) = nl.index_of("lo")? {
        nl.set_up("lo", lo)?;
    }
    if let Some(gw) = setup.gateway {
        let _ = nl.add_default_route(gw)?;
    }
    Ok(SetupReport { ifname })
}

fn helper(args: &[OsString]) -> Result<()> {
    let usage = |reason: &str| NetnsError::Usage {
        reason: reason.to_string(),
    };
    let [op, path] = args else {
        return Err(usage("expected an operation and a path"));
    };
    let path = Path::new(path);
    match op.to_str() {
        Some("create") => helper_create(path),
        Some("create-wired") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| NetnsError::Settings(e.to_string()))?;
            let wires: Vec<Wire> =
                serde_json::from_str(&text).map_err(|e| NetnsError::Settings(e.to_string()))?;
            let reports = helper_create_wired(path, &wires)?;
            let line =
                serde_json::to_string(&reports).map_err(|e| NetnsError::Settings(e.to_string()))?;
            println!("{line}");
            Ok(())
        }
        Some("setup") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| NetnsError::Settings(e.to_string()))?;
            let setup: IfaceSetup =
                serde_json::from_str(&text).map_err(|e| NetnsError::Settings(e.to_string()))?;
            let report = helper_setup(path, &setup)?;
            let line =
                serde_json::to_string(&report).map_err(|e| NetnsError::Settings(e.to_string()))?;
            println!("{line}");
            Ok(())
        }
        _ => Err(usage(&format!("unknown operation {op:?}"))),
    }
}

/// Entry point of `flotilla shim netns <args>` (the shim dispatcher's `netns` arm).
/// Returns the exit status: 0, 1 on failure, 2 on a usage error.
pub fn subcommand(args: &[OsString]) -> u8 {
    match helper(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("flotilla: {e}");
            if matches!(e, NetnsError::Usage { .. }) {
                2
            } else {
                1
            }
        }
    }
}

/// Runs `flotilla shim netns OP PATH` with `input` on its stdin (through `spawner`'s fork
/// server); its stdout.
fn run_helper(spawner: &Spawner, op: &'static str, path: &Path, input: &[u8]) -> Result<String> {
    let args: Vec<OsString> = vec!["netns".into(), op.into(), path.into()];
    let out = spawner
        .output(&args, input)
        .map_err(|source| NetnsError::Spawn {
            exe: spawner.exe().to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let reason = text.trim().trim_start_matches("flotilla: ").to_string();
        return Err(NetnsError::Helper {
            op,
            path: path.to_path_buf(),
            reason: if reason.is_empty() {
                format!("exited with {}", out.status)
            } else {
                reason
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates a network namespace bound at `path` (whose directory must exist) through the helper.
pub fn create(exe: &Spawner, path: &Path) -> Result<()> {
    run_helper(exe, "create", path, b"").map(|_| ())
}

/// Creates a network namespace bound at `path` with `wires` made and set up in it, through one
/// helper; the interfaces' names inside.
pub fn create_wired(exe: &Spawner, path: &Path, wires: &[Wire]) -> Result<Vec<SetupReport>> {
    let input = serde_json::to_vec(wires).map_err(|e| NetnsError::Settings(e.to_string()))?;
    let out = run_helper(exe, "create-wired", path, &input)?;
    serde_json::from_str(out.trim()).map_err(|e| NetnsError::Helper {
        op: "create-wired",
        path: path.to_path_buf(),
        reason: format!("unreadable report {:?}: {e}", out.trim()),
    })
}

/// Wires an interface inside the namespace at `path` through the helper.
pub fn setup(exe: &Spawner, path: &Path, setup: &IfaceSetup) -> Result<SetupReport> {
    let input = serde_json::to_vec(setup).map_err(|e| NetnsError::Settings(e.to_string()))?;
    let out = run_helper(exe, "setup", path, &input)?;
    serde_json::from_str(out.trim()).map_err(|e| NetnsError::Helper {
        op: "setup",
        path: path.to_path_buf(),
        reason: format!("unreadable report {:?}: {e}", out.trim()),
    })
}

/// Unmounts (detached) and unlinks the namespace file at `path`; a missing file or a file that
/// is not mounted is fine.
pub fn remove(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(source) => {
            return Err(NetnsError::Unmount {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::RemoveFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}
