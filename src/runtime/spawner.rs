//! How the daemon (or any launcher) runs short `flotilla shim …` commands — `shim start`, the
//! netns helpers — with `output()` semantics: stdin bytes in, stdout and stderr captured, exit
//! status. Through a per-launcher fork server ([`crate::runtime::sys::zygote`]) started lazily
//! on first use from the launcher's sealed copy of the binary, which saves the ~4 ms `execve`
//! of the whole binary per command; the old path (an `execve` of the sealed copy,
//! [`exe::sealed_command`]) stays as the fallback whenever the zygote cannot be started or has
//! died, and a dead zygote is replaced on the next command. Nothing forks in the launcher.
//!
//! One [`Spawner`] is shared (an `Arc`) by the runtime and the networks of a daemon; the
//! zygote ends with the last handle (it is killed and reaped by pid) or with the launcher
//! (its socket closes), never later.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::runtime::sys::exe;
use crate::runtime::sys::zygote::{Zygote, ZygoteError};

/// Runs `flotilla shim …` commands of the binary at `exe`.
pub struct Spawner {
    exe: PathBuf,
    zygote: Mutex<Option<Arc<Server>>>,
    /// Set when a zygote went away before serving anything (a binary without `shim zygote`,
    /// say): no more are started, every command is executed.
    disabled: AtomicBool,
}

/// A running zygote and the sealed copy it was started from.
struct Server {
    zygote: Zygote,
    copy: Arc<OwnedFd>,
    /// The binary's identity when it started ([`version`]).
    version: Option<Version>,
    /// Whether it has run a command.
    served: AtomicBool,
}

/// What identifies a version of the binary's file: device, inode, size, mtime.
type Version = (u64, u64, u64, i64, i64);

/// The identity of the file at `exe` now (a copy made for it earlier may have been made again
/// when the launcher's single cached copy served another binary meanwhile: same file, same
/// zygote; an upgrade in place changes it and a new zygote starts).
fn version(exe: &Path) -> Option<Version> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(exe).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner")
            .field("exe", &self.exe)
            .field("zygote", &self.zygote_pid())
            .finish()
    }
}

impl Spawner {
    /// A spawner of the binary at `exe`; no process is started until the first command.
    pub fn new(exe: &Path) -> Spawner {
        Spawner {
            exe: exe.to_path_buf(),
            zygote: Mutex::new(None),
            disabled: AtomicBool::new(false),
        }
    }

    /// The binary the commands run.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The pid of the running zygote, if one is running.
    pub fn zygote_pid(&self) -> Option<u32> {
        self.slot().as_ref().map(|s| s.zygote.pid())
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Server>>> {
        self.zygote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The zygote for `copy`: the running one, or a new one (also when the binary changed
    /// since the running one started). None when it cannot be started.
    fn server(&self, copy: &Arc<OwnedFd>) -> Option<Arc<Server>> {
        if self.disabled.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = self.slot();
        let now = version(&self.exe);
        if let Some(s) = slot.as_ref()
            && (Arc::ptr_eq(&s.copy, copy) || (now.is_some() && s.version == now))
        {
            return Some(Arc::clone(s));
        }
        match Zygote::start(&self.exe, copy) {
            Ok(zygote) => {
                let server = Arc::new(Server {
                    zygote,
                    copy: Arc::clone(copy),
                    version: now,
                    served: AtomicBool::new(false),
                });
                *slot = Some(Arc::clone(&server));
                Some(server)
            }
            Err(e) => {
                tracing::warn!(exe = %self.exe.display(), "cannot start the fork server: {e}");
                *slot = None;
                None
            }
        }
    }

    /// Drops `server` from the slot (when it is still the current one): the next command
    /// starts a new zygote; this one is killed and reaped when its last user lets go.
    fn forget(&self, server: &Arc<Server>) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, server)) {
            *slot = None;
        }
    }

    /// Runs `flotilla shim ARGS` with `input` on its stdin; its output and exit status. An
    /// error means the command could not be run (or, rarely, that the zygote died while it
    /// ran, so its status is unknown).
    pub fn output(&self, args: &[OsString], input: &[u8]) -> io::Result<Output> {
        let copy = exe::shared_copy(&self.exe).map_err(|e| {
            io::Error::other(format!("a sealed copy of {}: {e}", self.exe.display()))
        })?;
        if let Some(server) = self.server(&copy) {
            match server.zygote.output(args, input) {
                Ok(out) => {
                    server.served.store(true, Ordering::Relaxed);
                    return Ok(out);
                }
                Err(ZygoteError::NotRun(e)) => {
                    tracing::warn!(
                        pid = server.zygote.pid(),
                        "the fork server is gone ({e}); running the command directly"
                    );
                    if !server.served.load(Ordering::Relaxed) {
                        self.disabled.store(true, Ordering::Relaxed);
                    }
                    self.forget(&server);
                }
                Err(e @ ZygoteError::Lost { .. }) => {
                    self.forget(&server);
                    return Err(io::Error::other(e.to_string()));
                }
            }
        }
        self.exec_output(&copy, args, input)
    }

    /// The fallback: an `execve` of the sealed copy.
    fn exec_output(
        &self,
        copy: &Arc<OwnedFd>,
        args: &[OsString],
        input: &[u8],
    ) -> io::Result<Output> {
        let mut cmd = exe::sealed_command(&self.exe, copy);
        cmd.args(args)
            .stdin(if input.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            // A small input (JSON settings) fits the pipe; a child that stops reading early
            // (EPIPE) is judged by its status.
            let _ = stdin.write_all(input);
        }
        child.wait_with_output()
    }
}
