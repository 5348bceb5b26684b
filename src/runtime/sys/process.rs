//! The end of every container-side process's setup, written once for the container's process
//! ([`super::container`]), the exec joiner ([`super::exec`]) and the built-in init
//! ([`super::init`]): the user resolved through the container's `/etc/passwd` and
//! `/etc/group`, rlimits, credentials (bounding set, groups, gid, uid, capability sets), the
//! `PATH` lookup and `execve` with Docker's exit statuses (127 not found, 126 not executable),
//! the signals forwarded to a container's process and the shell's convention for a wait status.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::WaitStatus;
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, PosixRlimitType, Spec};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::runtime::config::{ALL_CAPABILITIES, ANNOTATION_USER, DEFAULT_PATH};
use crate::runtime::user::{self, UserError};

/// Exit status of a process that could not be found (Docker's).
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit status of a process that was found but could not be executed (Docker's).
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit status when the container (or the exec) could not be set up.
pub const EXIT_SETUP_FAILED: u8 = 125;

/// The signals forwarded to a container's process (Docker's): by the shim, the exec joiner
/// and the init.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Why the last steps before `execve` failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{source}")]
    User { source: UserError },
    #[error("read {path}: {source}")]
    ReadUserDb { path: PathBuf, source: io::Error },
    #[error("rlimit {typ}: {source}")]
    Rlimit { typ: String, source: io::Error },
    #[error("capability {name}: {reason}")]
    Capability { name: String, reason: String },
    #[error("{step}: {source}")]
    Credentials {
        step: &'static str,
        source: io::Error,
    },
    #[error("exec: {message}")]
    Exec { status: u8, message: String },
}

impl ProcessError {
    /// 127 not found, 126 not executable, 125 for any other failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            ProcessError::Exec { status, .. } => *status,
            _ => EXIT_SETUP_FAILED,
        }
    }
}

type Result<T, E = ProcessError> = std::result::Result<T, E>;

/// The shell's convention for a wait status (the exit code, or 128 + the signal number), if
/// the process ended.
pub fn status_code(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some((code & 0xff) as u8),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32).clamp(0, 255) as u8),
        _ => None,
    }
}

/// The signal set of [`FORWARDED`] plus `SIGCHLD`, blocked in this process (to be read from a
/// signalfd or `sigwait`).
pub fn block_forwarded() -> nix::Result<SigSet> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    Ok(mask)
}

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// The user `user` (exec's `-u`), else the spec's (flotilla's user annotation as written, or
/// the numeric ids), resolved through the `/etc/passwd` and `/etc/group` this process sees (the
/// container's, once in its mount namespace). The spec's additional gids count only for the
/// spec's user.
pub fn resolve_user(spec: &Spec, user: Option<&str>) -> Result<Ids> {
    let u = spec.process().as_ref().map(|p| p.user().clone());
    let read = |path: &str| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ProcessError::ReadUserDb {
            path: path.into(),
            source,
        }),
    };
    let text = match user {
        Some(user) => user.to_string(),
        None => spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_USER).cloned())
            .unwrap_or_else(|| {
                u.as_ref()
                    .map(|u| format!("{}:{}", u.uid(), u.gid()))
                    .unwrap_or_default()
            }),
    };
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    let r =
        user::resolve(&text, &passwd, &group).map_err(|source| ProcessError::User { source })?;
    let mut groups: Vec<u32> = match user {
        None => u
            .and_then(|u| u.additional_gids().clone())
            .unwrap_or_default(),
        Some(_) => Vec::new(),
    };
    for g in r.additional_gids {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Ids {
        uid: r.uid,
        gid: r.gid,
        groups,
        home: r.home,
    })
}

/// Sets each of `rlimits` on this process.
pub fn apply_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    use rustix::process::Resource;
    for r in rlimits {
        let resource = match r.typ() {
            PosixRlimitType::RlimitCpu => Resource::Cpu,
            PosixRlimitType::RlimitFsize => Resource::Fsize,
            PosixRlimitType::RlimitData => Resource::Data,
            PosixRlimitType::RlimitStack => Resource::Stack,
            PosixRlimitType::RlimitCore => Resource::Core,
            PosixRlimitType::RlimitRss => Resource::Rss,
            PosixRlimitType::RlimitNproc => Resource::Nproc,
            PosixRlimitType::RlimitNofile => Resource::Nofile,
            PosixRlimitType::RlimitMemlock => Resource::Memlock,
            PosixRlimitType::RlimitAs => Resource::As,
            PosixRlimitType::RlimitLocks => Resource::Locks,
            PosixRlimitType::RlimitSigpending => Resource::Sigpending,
            PosixRlimitType::RlimitMsgqueue => Resource::Msgqueue,
            PosixRlimitType::RlimitNice => Resource::Nice,
            PosixRlimitType::RlimitRtprio => Resource::Rtprio,
            PosixRlimitType::RlimitRttime => Resource::Rttime,
        };
        let limit = |v: u64| if v == u64::MAX { None } else { Some(v) };
        rustix::process::setrlimit(
            resource,
            rustix::process::Rlimit {
                current: limit(r.soft()),
                maximum: limit(r.hard()),
            },
        )
        .map_err(|e| ProcessError::Rlimit {
            typ: r.typ().to_string(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// A capability set of the spec as kernel bits (bit n: capability n of [`ALL_CAPABILITIES`]).
pub fn cap_bits(set: Option<&oci_spec::runtime::Capabilities>) -> Result<u64> {
    let mut bits = 0u64;
    for cap in set.into_iter().flatten() {
        let name = serde_json::to_value(cap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let index = ALL_CAPABILITIES
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| ProcessError::Capability {
                name: name.clone(),
                reason: "unknown to this runtime".into(),
            })?;
        bits |= 1 << index;
    }
    Ok(bits)
}

/// Whether a capability is missing from the runtime: said on stderr (the container's start) or
/// left unsaid (an exec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Warn,
    Quiet,
}

/// Bounding set, groups, gid, uid, then the effective, permitted, inheritable and ambient sets
/// of `caps`. Capabilities the runtime itself does not hold cannot be granted: they are left
/// out (with a warning on stderr for [`Missing::Warn`]). Sets the parent-death signal (SIGKILL)
/// again, which the change of credentials cleared.
pub fn apply_credentials(
    caps: Option<&LinuxCapabilities>,
    ids: &Ids,
    missing: Missing,
) -> Result<()> {
    let cred = |step: &'static str| {
        move |e: rustix::io::Errno| ProcessError::Credentials {
            step,
            source: e.into(),
        }
    };
    let held = rustix::thread::capabilities(None)
        .map_err(cred("read capabilities"))?
        .permitted
        .bits();
    let want = |set| -> Result<u64> {
        let bits = cap_bits(set)?;
        let lacking = bits & !held;
        if lacking != 0 && missing == Missing::Warn {
            let names: Vec<&str> = (0..ALL_CAPABILITIES.len())
                .filter(|i| lacking & (1 << i) != 0)
                .map(|i| ALL_CAPABILITIES[i])
                .collect();
            eprintln!(
                "flotilla: warning: capabilities {} are not held by the runtime; not granted",
                names.join(", ")
            );
        }
        Ok(bits & held)
    };
    let bounding = want(caps.and_then(|c| c.bounding().as_ref()))?;
    let effective = want(caps.and_then(|c| c.effective().as_ref()))?;
    let permitted = want(caps.and_then(|c| c.permitted().as_ref()))?;
    let inheritable = want(caps.and_then(|c| c.inheritable().as_ref()))?;
    let ambient = want(caps.and_then(|c| c.ambient().as_ref()))?;

    for bit in 0..64u32 {
        if bounding & (1 << bit) != 0 {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << bit,
        )) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => return Err(cred("drop from the bounding set")(e)),
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(cred("keep capabilities"))?;
    let groups: Vec<rustix::process::Gid> = ids
        .groups
        .iter()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();
    rustix::thread::set_thread_groups(&groups).map_err(cred("setgroups"))?;
    let gid = rustix::process::Gid::from_raw(ids.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(cred("setgid"))?;
    let uid = rustix::process::Uid::from_raw(ids.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(cred("setuid"))?;
    rustix::thread::set_keep_capabilities(false).map_err(cred("keep capabilities"))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(effective),
            permitted: CapabilitySet::from_bits_retain(permitted),
            inheritable: CapabilitySet::from_bits_retain(inheritable | ambient),
        },
    )
    .map_err(cred("set capabilities"))?;
    for bit in 0..64u32 {
        if ambient & (1 << bit) != 0 {
            rustix::thread::configure_capability_in_ambient_set(
                CapabilitySet::from_bits_retain(1 << bit),
                true,
            )
            .map_err(cred("raise an ambient capability"))?;
        }
    }
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(cred("set the parent-death signal"))?;
    Ok(())
}

/// An OS error's message, lower-case and without the "(os error N)" suffix.
fn lower(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Finds `name` as execvp does, through `PATH` of `env` (Docker's default without one).
/// Failure: [`ProcessError::Exec`] with 127 and Docker's message.
pub fn find_executable(name: &str, env: &[String]) -> Result<PathBuf> {
    let not_found = |message: String| ProcessError::Exec {
        status: EXIT_NOT_FOUND,
        message,
    };
    if name.contains('/') {
        return match std::fs::metadata(name) {
            Ok(_) => Ok(PathBuf::from(name)),
            Err(e) => Err(not_found(format!("{name:?}: stat {name}: {}", lower(&e)))),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(not_found(format!(
        "{name:?}: executable file not found in $PATH"
    )))
}

/// Gives the signal state a freshly executed program expects: nothing blocked, `SIGPIPE` (which
/// the Rust runtime ignores, and ignored signals survive `execve`) back to its default.
pub fn reset_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: SIG_DFL installs no handler, so no Rust code can run in signal context; callers
    // are single-threaded processes about to execute a program.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
}

fn cstrings(items: &[String]) -> Option<Vec<CString>> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).ok())
        .collect()
}

/// Executes `args` (looked up through `env`'s `PATH`) with environment `env`, only the standard
/// streams inherited and signals reset. Returns only on failure: [`ProcessError::Exec`] with
/// 127 (not found) or 126 (not executable) and the message.
pub fn execute(args: &[String], env: &[String]) -> ProcessError {
    let fail = |status, message| ProcessError::Exec { status, message };
    let Some(name) = args.first() else {
        return fail(EXIT_NOT_FOUND, "no command".into());
    };
    let path = match find_executable(name, env) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let nul = || {
        fail(
            EXIT_CANNOT_EXECUTE,
            format!("{name:?}: NUL byte in an argument or the environment"),
        )
    };
    let Ok(path_c) = CString::new(path.as_os_str().as_bytes()) else {
        return nul();
    };
    let (Some(argv), Some(envp)) = (cstrings(args), cstrings(env)) else {
        return nul();
    };
    reset_signals();
    super::close_range_cloexec(3);
    let err = nix::unistd::execve(&path_c, &argv, &envp)
        .map(|never| match never {})
        .unwrap_or_else(|e| e);
    let status = if err == nix::Error::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    };
    fail(
        status,
        format!(
            "{name:?}: {}",
            lower(&io::Error::from_raw_os_error(err as i32))
        ),
    )
}

/// This process's argument area `[arg_start, arg_end)` (what `/proc/<pid>/cmdline` shows),
/// from `/proc/self/stat`; a forked child has the same.
pub(crate) fn arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rfind(')').map(|i| &stat[i + 1..])?;
    // Fields 48 and 49 (arg_start, arg_end); `rest` begins with field 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start = fields.get(45)?.parse::<usize>().ok()?;
    let end = fields.get(46)?.parse::<usize>().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

/// Overwrites this process's argument area (`area`, from [`arg_area`] in this process or the
/// one it was forked from; looked up when None) with `text` (arguments separated by NUL
/// bytes), cut to fit and NUL-filled after. Nothing is written when the area is unknown or
/// shorter than `min` bytes. `std::env::args` reads the same area: call it before, not after.
pub(crate) fn overwrite_cmdline(area: Option<(usize, usize)>, text: &[u8], min: usize) -> bool {
    let Some((start, end)) = area.or_else(arg_area) else {
        return false;
    };
    if end < start + min.max(1) {
        return false;
    }
    // SAFETY: [arg_start, arg_end) is this process's argument strings area on its initial
    // stack (inherited unchanged through fork), mapped writable for the whole life of the
    // process; the kernel reported it. Callers are single-threaded and hold no Rust reference
    // into it (the standard library only reads it when `std::env::args` is called). The write
    // stays within the area and leaves its last byte NUL.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        let n = text.len().min(area.len() - 1);
        area.fill(0);
        area[..n].copy_from_slice(&text[..n]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_found_through_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_executable("sh", &env).is_ok());
        let err = find_executable("no-such-command-here", &env).unwrap_err();
        assert_eq!(err.exit_status(), 127);
        assert_eq!(
            err.to_string(),
            "exec: \"no-such-command-here\": executable file not found in $PATH"
        );
        assert_eq!(
            find_executable("/no/such", &env).unwrap_err().exit_status(),
            127
        );
    }

    #[test]
    fn wait_statuses_follow_the_shell() {
        let pid = nix::unistd::Pid::from_raw(1);
        assert_eq!(status_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            status_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(status_code(WaitStatus::StillAlive), None);
    }
}
