//! Named network namespaces (`<data_root>/netns/<id>`, a bind mount of a namespace file) and
//! the hidden helper that makes and wires them.
//!
//! Namespace work happens in a freshly executed, single-threaded `flotilla shim netns …`
//! process, never in the (multi-threaded) daemon:
//! - `flotilla shim netns create PATH`: creates the empty file PATH, `unshare(CLONE_NEWNET)`,
//!   bind-mounts `/proc/self/ns/net` on PATH and sets `lo` up inside; the namespace lives on
//!   as long as the bind mount does.
//! - `flotilla shim netns setup PATH` (an [`IfaceSetup`] as JSON on stdin): `setns` into PATH,
//!   then with a netlink socket opened there: the moved-in veth end is renamed to the first
//!   free `ethN` and given its MAC, its address, set up, `lo` up, and the default route via
//!   the gateway added (none for internal networks). Prints `{"ifname":"ethN"}`.
//!
//! Removal needs no helper: unmount (detached) and unlink.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::netlink::{Netlink, NetlinkError};

/// Why a namespace could not be made, wired or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("usage: flotilla shim netns create PATH | setup PATH ({reason})")]
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

/// Runs `exe shim netns OP PATH` with `input` on its stdin; its stdout.
fn run_helper(exe: &Path, op: &'static str, path: &Path, input: &[u8]) -> Result<String> {
    let mut child = Command::new(exe)
        .args(["shim", "netns", op])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetnsError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NetnsError::Spawn {
            exe: exe.to_path_buf(),
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
pub fn create(exe: &Path, path: &Path) -> Result<()> {
    run_helper(exe, "create", path, b"").map(|_| ())
}

/// Wires an interface inside the namespace at `path` through the helper.
pub fn setup(exe: &Path, path: &Path, setup: &IfaceSetup) -> Result<SetupReport> {
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
