//! `flotilla shim` (hidden): the small single-threaded process that creates one container and
//! supervises it. It never starts a thread (no tokio): namespace and mount work after `fork` is
//! only sound in a single-threaded process. Every process a container can reach runs from a
//! sealed memfd copy of the binary ([`crate::runtime::sys::exe`]): the foreground `shim run`
//! re-executes itself first; the daemon executes `shim start` from its shared sealed copy
//! ([`crate::runtime::sys::exe::sealed_command`]), so the supervisor's container child is
//! sealed from its fork on; a supervisor started from the flotilla file has its child
//! re-execute as the hidden `shim child`.
//!
//! - `flotilla shim run --bundle DIR --state DIR` creates the container from `DIR/config.json`
//!   in the foreground with the shim's own stdio, forwards signals to it, waits, and exits with
//!   its exit status (128 + signal when killed; 127/126/125 when it could not be started).
//! - `flotilla shim start --bundle DIR --state DIR` detaches (fork, `setsid`, fork: the
//!   supervisor is nobody's child but init's, so its caller may die), creates the container,
//!   and returns once the container's process has executed: it prints one JSON line,
//!   `{"pid":N}` or `{"error":"…","status":127}`, and exits 0 or with that status. The detached
//!   supervisor ([`supervisor`]) holds the container's output and writes the logs, keeps
//!   `state.json` up to date and answers on `shim.sock` ([`crate::runtime::control`]) until the
//!   container exits.
//! - `flotilla shim zygote --socket N`: the fork server of a launcher (the daemon), which forks
//!   instead of executing the binary for `start` and the netns helpers
//!   ([`crate::runtime::sys::zygote`], [`crate::runtime::spawner`]); its children run the
//!   same dispatch as this entry point.

mod supervisor;

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use nix::unistd::ForkResult;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::runtime::bundle;
use crate::runtime::sys::cgroup::Cgroup;
use crate::runtime::sys::container::{self, ContainerError, EXIT_SETUP_FAILED};
use crate::runtime::sys::exe::{self, ExeError};

/// Why the shim failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("usage: flotilla shim run|start --bundle DIR --state DIR ({reason})")]
    Usage { reason: String },
    #[error("{source}")]
    Exe { source: ExeError },
    #[error("load the runtime spec {path}: {reason}")]
    LoadSpec { path: PathBuf, reason: String },
    #[error("create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("create the cgroup {path}: {reason}")]
    Cgroup { path: String, reason: String },
    #[error("{source}")]
    Container { source: ContainerError },
    #[error("detach the shim: {step}: {source}")]
    Detach {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("the detached shim exited without reporting")]
    NoReport,
}

impl ShimError {
    fn exit_status(&self) -> u8 {
        match self {
            ShimError::Usage { .. } => 2,
            ShimError::Container { source } => source.exit_status(),
            _ => EXIT_SETUP_FAILED,
        }
    }
}

/// What `flotilla shim start` prints: the container's pid, or why it could not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The exit status of a failed start (127 not found, 126 not executable, 125 other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u8>,
}

struct Args {
    bundle: PathBuf,
    state: PathBuf,
}

fn parse_args(args: &[OsString]) -> Result<Args, ShimError> {
    let usage = |reason: &str| ShimError::Usage {
        reason: reason.to_string(),
    };
    let mut bundle = None;
    let mut state = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.to_str() {
            Some("--bundle") => &mut bundle,
            Some("--state") => &mut state,
            _ => return Err(usage(&format!("unexpected argument {a:?}"))),
        };
        let value = it
            .next()
            .ok_or_else(|| usage(&format!("{a:?} needs a value")))?;
        *slot = Some(PathBuf::from(value));
    }
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    Ok(Args {
        bundle: absolute(bundle.ok_or_else(|| usage("--bundle is required"))?),
        state: absolute(state.ok_or_else(|| usage("--state is required"))?),
    })
}

/// How `load` treats the binary the shim runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    /// Re-execute from a sealed copy first (the foreground `shim run`).
    Sealed,
    /// Stay on the flotilla file: the detached supervisor is outside the container's pid
    /// namespace, and the container's process re-executes from a sealed copy by itself.
    AsIs,
}

fn load(args: &Args, binary: Binary) -> Result<Spec, ShimError> {
    if binary == Binary::Sealed {
        exe::ensure_sealed().map_err(|source| ShimError::Exe { source })?;
    }
    let path = args.bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|e| ShimError::LoadSpec {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::create_dir_all(&args.state).map_err(|source| ShimError::StateDir {
        path: args.state.clone(),
        source,
    })?;
    let spec = crate::runtime::etcfiles::install(spec, &args.state)?;
    Ok(spec)
}

/// Creates the bundle's cgroup (`flotilla-<prefix>/<id>`) when it names one.
fn create_cgroup(spec: &Spec) -> Result<Option<Cgroup>, ShimError> {
    let Some(path) = bundle::cgroup_path(spec) else {
        return Ok(None);
    };
    Cgroup::create(&path, &bundle::limits(spec))
        .map(Some)
        .map_err(|e| ShimError::Cgroup {
            path,
            reason: e.to_string(),
        })
}

/// The files the container's process writes `0` to, to join `cgroup` itself before it goes
/// on ([`container::spawn`]'s `join`; the shim places nothing by pid).
fn join_files(cgroup: &Option<Cgroup>) -> Vec<PathBuf> {
    cgroup.as_ref().map(Cgroup::join_files).unwrap_or_default()
}

/// The shim's placement hook: nothing, the child joins its cgroup itself ([`join_files`]).
fn no_placement(_: nix::unistd::Pid) -> Result<(), String> {
    Ok(())
}

fn run_foreground(args: &Args) -> Result<u8, ShimError> {
    let spec = load(args, Binary::Sealed)?;
    let cgroup = create_cgroup(&spec)?;
    let result = container::run(
        &spec,
        &args.bundle,
        &args.state,
        &join_files(&cgroup),
        &mut no_placement,
    );
    if let Some(cg) = &cgroup {
        let _ = cg.destroy(true);
    }
    let exit = result.map_err(|source| ShimError::Container { source })?;
    Ok(exit.status())
}

/// `shim start`: forks the detached supervisor and relays its report.
fn start(args: &Args) -> Result<u8, ShimError> {
    let spec = load(args, Binary::AsIs)?;
    let threads = container::thread_count();
    if threads != 1 {
        return Err(ShimError::Container {
            source: ContainerError::NotSingleThreaded { threads },
        });
    }
    let detach = |step| {
        move |e: nix::Error| ShimError::Detach {
            step,
            source: e.into(),
        }
    };
    let (report_read, report_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ShimError::Detach {
            step: "create the report pipe",
            source: e.into(),
        })?;
    match crate::runtime::sys::fork().map_err(detach("fork"))? {
        ForkResult::Child => {
            drop(report_read);
            let status = match detach_and_supervise(&spec, args, report_write) {
                Ok(status) => status,
                Err(_) => EXIT_SETUP_FAILED,
            };
            std::process::exit(i32::from(status));
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            let mut text = String::new();
            let _ = File::from(report_read).read_to_string(&mut text);
            // The intermediate process exits as soon as it has forked the supervisor.
            let _ = nix::sys::wait::waitpid(child, None);
            let report: StartReport =
                serde_json::from_str(text.trim()).map_err(|_| ShimError::NoReport)?;
            println!("{}", text.trim());
            Ok(report.status.unwrap_or(0))
        }
    }
}

/// In the first child: a new session, then the supervisor in a second child (so it is no
/// session leader and can never regain a controlling terminal); this one exits at once.
fn detach_and_supervise(
    spec: &Spec,
    args: &Args,
    report: std::os::fd::OwnedFd,
) -> Result<u8, ShimError> {
    let detach = |step| {
        move |e: nix::Error| ShimError::Detach {
            step,
            source: e.into(),
        }
    };
    nix::unistd::setsid().map_err(detach("setsid"))?;
    match crate::runtime::sys::fork().map_err(detach("fork"))? {
        ForkResult::Parent { .. } => Ok(0),
        ForkResult::Child => {
            redirect_stdio(&args.state).map_err(|source| ShimError::Detach {
                step: "redirect the standard streams",
                source,
            })?;
            let _ = std::env::set_current_dir("/");
            Ok(supervisor::run(spec, &args.bundle, &args.state, report))
        }
    }
}

/// stdin and stdout to `/dev/null`, stderr (the shim's own diagnostics) appended to
/// `<state>/shim.log`.
fn redirect_stdio(state: &std::path::Path) -> std::io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(state.join("shim.log"))?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&log)?;
    Ok(())
}

/// Writes the start report on the pipe the launcher reads.
fn send_report(report: std::os::fd::OwnedFd, r: &StartReport) {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    let _ = File::from(report).write_all(&line);
}

fn run(args: &[OsString]) -> Result<u8, ShimError> {
    // `--exe-fd N`: the launcher's shared sealed copy of the binary ([`exe::pass_copy`]).
    let args = match args {
        [flag, raw, rest @ ..] if flag == "--exe-fd" => {
            let raw: i32 =
                raw.to_str()
                    .and_then(|r| r.parse().ok())
                    .ok_or_else(|| ShimError::Usage {
                        reason: format!("--exe-fd needs an fd number, not {raw:?}"),
                    })?;
            // A process re-executed from that copy ([`exe::ensure_sealed`]) keeps its
            // arguments, but the fd closed on the way; one executed from it directly
            // ([`exe::sealed_command`]) has it still. Either needs no copy any more.
            if exe::is_sealed().map_err(|source| ShimError::Exe { source })? {
                exe::discard_copy(raw);
                // Executed as /proc/self/fd/N, the kernel named the process "N".
                let _ = rustix::thread::set_name(c"flotilla");
            } else {
                exe::provide(raw).map_err(|source| ShimError::Exe { source })?;
            }
            rest
        }
        _ => args,
    };
    let Some((command, rest)) = args.split_first() else {
        return Err(ShimError::Usage {
            reason: "missing command".into(),
        });
    };
    match command.to_str() {
        Some("run") => run_foreground(&parse_args(rest)?),
        Some("start") => start(&parse_args(rest)?),
        Some("child") => child(rest),
        Some(sub @ ("exec" | "init")) => Ok(crate::runtime::exec::subcommand(sub, rest)),
        Some("netns") => Ok(crate::network::netns::subcommand(rest)),
        Some("cp") => Ok(crate::runtime::copy::subcommand(rest)),
        Some("zygote") => zygote(rest),
        _ => Err(ShimError::Usage {
            reason: format!("unknown command {command:?}"),
        }),
    }
}

/// `flotilla shim zygote --socket N [SPACES]` (started by [`crate::runtime::spawner::Spawner`] from
/// the launcher's sealed copy): the fork server, serving shim commands on the inherited socket
/// N until the launcher closes it ([`crate::runtime::sys::zygote`]).
fn zygote(args: &[OsString]) -> Result<u8, ShimError> {
    // An optional last argument of spaces is room for the children's command lines.
    let padding = |p: &OsString| p.to_str().is_some_and(|p| p.bytes().all(|b| b == b' '));
    let raw = match args {
        [flag, raw] | [flag, raw, _] if flag == "--socket" && args.get(2).is_none_or(padding) => {
            raw.to_str().and_then(|r| r.parse::<i32>().ok())
        }
        _ => None,
    }
    .ok_or_else(|| ShimError::Usage {
        reason: "zygote needs --socket FD".into(),
    })?;
    Ok(crate::runtime::sys::zygote::serve(raw, dispatch))
}

/// One shim command in a process forked by the zygote: what [`main`] does, as a status.
fn dispatch(args: &[OsString]) -> u8 {
    match run(args) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("flotilla: {e}");
            e.exit_status()
        }
    }
}

/// `flotilla shim child` (run by [`container::spawn`]'s child only): the container's process,
/// re-executed from a sealed copy of the binary, goes on with its setup. Returns only on a
/// usage error (the process cannot report on its pipe without it).
fn child(args: &[OsString]) -> Result<u8, ShimError> {
    let usage = |reason: String| ShimError::Usage { reason };
    let mut values = std::collections::BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let key = a.to_string_lossy().into_owned();
        let value = it
            .next()
            .ok_or_else(|| usage(format!("{key:?} needs a value")))?;
        values.insert(key, value.clone());
    }
    let mut take = |key: &str| {
        values
            .remove(key)
            .ok_or_else(|| usage(format!("{key} is required")))
    };
    let fd = |value: OsString| {
        value
            .to_str()
            .and_then(|v| v.parse::<i32>().ok())
            .ok_or_else(|| usage(format!("bad fd {value:?}")))
            .and_then(|raw| exe::inherited_fd(raw).map_err(|e| usage(format!("fd {raw}: {e}"))))
    };
    let bundle = PathBuf::from(take("--bundle")?);
    let state = PathBuf::from(take("--state")?);
    let release = fd(take("--release-fd")?)?;
    let report = fd(take("--report-fd")?)?;
    let spec_file = File::from(fd(take("--spec-fd")?)?);
    let streams = match take("--stdio")?.to_str() {
        Some("inherit") => container::Streams::Inherit,
        Some("pipes") => container::Streams::Pipes,
        Some("terminal") => container::Streams::Terminal {
            console: PathBuf::from(take("--console")?),
        },
        other => return Err(usage(format!("unknown --stdio {other:?}"))),
    };
    let join: Vec<PathBuf> = values
        .remove("--join")
        .map(|v| {
            use std::os::unix::ffi::OsStrExt;
            v.as_bytes()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)))
                .collect()
        })
        .unwrap_or_default();
    let spec: Spec = match serde_json::from_reader(std::io::BufReader::new(spec_file)) {
        Ok(spec) => spec,
        Err(e) => {
            let error = ContainerError::Carry {
                source: std::io::Error::other(e),
            };
            container::report_failure(report, &error)
        }
    };
    container::continue_child(&spec, &bundle, &state, &streams, &join, release, report)
}

/// Entry point of `flotilla shim <args>` (`args` without `flotilla shim`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    ExitCode::from(dispatch(&args))
}
