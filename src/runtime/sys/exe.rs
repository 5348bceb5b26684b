//! Host safety against the runc CVE-2019-5736 class: a process of the container could open the
//! runtime's binary through `/proc/<pid>/exe` while the runtime joins the container, and write
//! into it. So no process a container can reach runs from the flotilla file: it re-executes
//! itself from a sealed memfd copy of its binary (`F_SEAL_WRITE | F_SEAL_GROW |
//! F_SEAL_SHRINK | F_SEAL_SEAL`). `/proc/<pid>/exe` then names that anonymous, immutable copy,
//! which nothing can write, and which disappears with the process.
//!
//! Which processes need it: those a container can reach. The exec joiner (`shim exec`, whose
//! child enters the container's pid namespace), the container's process from its fork to its
//! `execve` (it is PID 1 of the container and executes the container's command, which could
//! name `/proc/self/exe`), and the built-in init (that process, staying). The daemon starts
//! its shims (`shim start`, `shim exec`) straight from its shared sealed copy
//! ([`sealed_command`]): the supervisor, outside the container's pid namespace, needs no copy,
//! but running from one its forked child is already sealed and need not re-execute (an exec of
//! the whole binary, 3–6 ms, saved per start). A launcher without a copy at hand still works:
//! the child then re-executes from a copy ([`exec_sealed`], `flotilla shim child`), which goes
//! away when the container's command starts.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use rustix::fs::{MemfdFlags, SealFlags};

/// Why the sealed re-exec failed.
#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error("open /proc/self/exe: {source}")]
    Open { source: io::Error },
    #[error("create the memfd copy of the binary: {source}")]
    Memfd { source: io::Error },
    #[error("copy /proc/self/exe into the memfd: {source}")]
    Copy { source: io::Error },
    #[error("seal the memfd copy of the binary: {source}")]
    Seal { source: io::Error },
    #[error("argument or environment entry with a NUL byte: {entry:?}")]
    Nul { entry: OsString },
    #[error("re-execute from the sealed memfd: {source}")]
    Exec { source: io::Error },
}

const SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

/// Whether this process already runs from a sealed copy.
pub fn is_sealed() -> Result<bool, ExeError> {
    let exe = File::open("/proc/self/exe").map_err(|source| ExeError::Open { source })?;
    Ok(rustix::fs::fcntl_get_seals(&exe).is_ok_and(|s| s.contains(SEALS)))
}

/// Re-executes the current process, same arguments and environment, from a sealed memfd copy
/// of its binary, unless it already runs from one. Returns only when already sealed.
pub fn ensure_sealed() -> Result<(), ExeError> {
    if is_sealed()? {
        return Ok(());
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    Err(exec_sealed(&args))
}

/// Executes a sealed memfd copy of this process's binary with `args` (`args[0]` first) and
/// this process's environment. Returns only on failure. The copy lives as long as a process
/// runs from it: it disappears when that process executes something else or exits.
pub fn exec_sealed(args: &[OsString]) -> ExeError {
    match try_exec_sealed(args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn try_exec_sealed(args: &[OsString]) -> Result<Never, ExeError> {
    let copy = sealed_copy()?;
    try_exec_fd(&copy, args)
}

/// A sealed memfd copy of this process's binary (close-on-exec). Made by a process outside the
/// container (the supervisor) before it forks the container's process, so the copy's pages are
/// charged to the supervisor, never to the container's memory limit. When the process that
/// started this one handed it a shared copy ([`provide`]), that copy is taken instead: no
/// bytes are copied, and the process keeps no reference to it afterwards.
pub fn sealed_copy() -> Result<OwnedFd, ExeError> {
    if let Some(fd) = take_provided() {
        return Ok(fd);
    }
    copy_of(Path::new("/proc/self/exe"))
}

/// A sealed memfd copy of the file at `path`.
fn copy_of(path: &Path) -> Result<OwnedFd, ExeError> {
    let mut exe = File::open(path).map_err(|source| ExeError::Open { source })?;
    let memfd = rustix::fs::memfd_create(
        "flotilla-shim",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| ExeError::Memfd { source: e.into() })?;
    let mut copy = File::from(memfd);
    io::copy(&mut exe, &mut copy).map_err(|source| ExeError::Copy { source })?;
    rustix::fs::fcntl_add_seals(&copy, SEALS).map_err(|e| ExeError::Seal { source: e.into() })?;
    Ok(OwnedFd::from(copy))
}

/// Executes the sealed copy `copy` (from [`sealed_copy`]) with `args` and this process's
/// environment. Returns only on failure.
pub fn exec_fd(copy: &OwnedFd, args: &[OsString]) -> ExeError {
    match try_exec_fd(copy, args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_exec_fd(copy: &OwnedFd, args: &[OsString]) -> Result<Never, ExeError> {
    let cstring =
        |s: OsString| CString::new(s.clone().into_vec()).map_err(|_| ExeError::Nul { entry: s });
    let args: Vec<CString> = args
        .iter()
        .cloned()
        .map(cstring)
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut e = k;
            e.push("=");
            e.push(v);
            cstring(e)
        })
        .collect::<Result<_, _>>()?;
    // fexecve uses execveat(fd, "", AT_EMPTY_PATH), which works on a close-on-exec fd for an
    // ELF binary; the fd closes as the new image starts.
    let err = nix::unistd::fexecve(copy, &args, &env)
        .map(|never| match never {})
        .unwrap_or_else(|e| e);
    Err(ExeError::Exec {
        source: io::Error::from_raw_os_error(err as i32),
    })
}

/// The sealed copy the launching process handed over (`flotilla shim --exe-fd N …`).
static PROVIDED: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Adopts the inherited fd `raw` as this process's sealed copy of its binary, for the next
/// [`sealed_copy`] (and so [`ensure_sealed`]) to use. Refused unless `raw` is a memfd with
/// every seal: an unsealed file would defeat the purpose.
pub fn provide(raw: i32) -> Result<(), ExeError> {
    let fd = inherited_fd(raw).map_err(|source| ExeError::Open { source })?;
    let seals =
        rustix::fs::fcntl_get_seals(&fd).map_err(|e| ExeError::Seal { source: e.into() })?;
    if !seals.contains(SEALS) {
        return Err(ExeError::Seal {
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {raw} is not sealed"),
            ),
        });
    }
    if let Ok(mut slot) = PROVIDED.lock() {
        *slot = Some(fd);
    }
    Ok(())
}

fn take_provided() -> Option<OwnedFd> {
    PROVIDED.lock().ok().and_then(|mut slot| slot.take())
}

/// One sealed copy of the binary at `path` per launching process (the daemon, a CLI run),
/// shared by every shim it starts ([`pass_copy`]): a container start then copies no bytes,
/// and a hundred containers hold one copy, not a hundred. Made again when the file at `path`
/// changes (an upgrade in place), so a shim and its copy always agree.
pub fn shared_copy(path: &Path) -> Result<Arc<OwnedFd>, ExeError> {
    let meta = std::fs::metadata(path).map_err(|source| ExeError::Open { source })?;
    let key = (
        path.to_path_buf(),
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    );
    let mut cache = SHARED.lock().map_err(|_| ExeError::Open {
        source: io::Error::other("the sealed-copy cache is poisoned"),
    })?;
    if let Some((k, fd)) = cache.as_ref()
        && *k == key
    {
        return Ok(Arc::clone(fd));
    }
    let fd = Arc::new(copy_of(path)?);
    *cache = Some((key, Arc::clone(&fd)));
    Ok(fd)
}

type CopyKey = (PathBuf, u64, u64, u64, i64, i64);
static SHARED: Mutex<Option<(CopyKey, Arc<OwnedFd>)>> = Mutex::new(None);

/// Lets the child that `cmd` spawns inherit `copy` and tells it so: `flotilla shim --exe-fd N`
/// must be the start of `cmd`'s arguments, which this adds (call it before any other `arg`).
pub fn pass_copy(cmd: &mut Command, copy: &Arc<OwnedFd>) {
    let raw = copy.as_raw_fd();
    cmd.arg("shim").arg("--exe-fd").arg(raw.to_string());
    let keep = Arc::clone(copy);
    // SAFETY: the closure runs in the forked child before `execve`, where only
    // async-signal-safe calls are allowed: it makes one `fcntl(F_SETFD, 0)` on an fd that
    // `keep` holds open in the parent (so the same number is open in the child), allocates
    // nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(keep.as_raw_fd(), libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A command that executes `copy` (the sealed copy of the binary at `exe`, which names it in
/// `argv[0]`) through `/proc/self/fd/N`, with `flotilla shim --exe-fd N` as its first
/// arguments ([`pass_copy`]): the process runs sealed from its first instruction.
pub fn sealed_command(exe: &Path, copy: &Arc<OwnedFd>) -> Command {
    let mut cmd = Command::new(format!("/proc/self/fd/{}", copy.as_raw_fd()));
    cmd.arg0(exe);
    pass_copy(&mut cmd, copy);
    cmd
}

/// Closes the inherited fd `raw` when it is a sealed copy this process, already running
/// sealed, does not need (left open by [`sealed_command`]'s launcher: it must not reach the
/// container). Anything else under that number is left alone.
pub fn discard_copy(raw: i32) {
    let Ok(fd) = inherited_fd(raw) else {
        return;
    };
    if rustix::fs::fcntl_get_seals(&fd).is_ok_and(|s| s.contains(SEALS)) {
        drop(fd);
    } else {
        // Not ours to close: give the number back as it was (close-on-exec set is harmless).
        std::mem::forget(fd);
    }
}

/// Takes ownership of fd `raw`, which the process that executed this one left open for it
/// (`flotilla shim child`'s pipes and spec). Fails when `raw` is not an open fd or is one of
/// the standard streams, and marks it close-on-exec.
pub fn inherited_fd(raw: i32) -> io::Result<OwnedFd> {
    if raw < 3 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: F_GETFD only reads the flags of the fd number; it touches no memory.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is open (checked above) and was passed across `execve` for this process to
    // own; nothing else in this freshly executed process refers to it, and the caller takes it
    // once (its number comes from this process's arguments, each read once).
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(fd)
}
