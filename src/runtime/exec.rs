//! `exec`: a new process in a running container, with the container's namespaces, cgroup,
//! user, capabilities, `no_new_privs` and environment (plus `-e`), its working directory
//! (or `-w`), and the exit status of the command propagated (127 not found, 126 not
//! executable). Docker's `exec -it/-e/-u/-w`.
//!
//! Per DESIGN.md's process model, joining namespaces never happens in the caller (possibly the
//! multi-threaded daemon): [`exec`] runs `flotilla shim exec --state DIR … -- CMD…`, a fresh,
//! single-threaded, sealed process ([`crate::runtime::sys::exec`]) that passes its standard
//! streams through (or relays a pseudo-terminal with `--tty`) and exits with the command's
//! status. [`subcommand`] is the hidden `shim exec` / `shim init` entry.
//!
//! What the exec needs comes from the container's state dir: `state.json` (its PID 1 and
//! status, [`crate::runtime::state`]) and `config.json` (the spec: capabilities, environment,
//! rlimits, user, working directory, and the cgroup named by the bundle annotations,
//! [`crate::runtime::bundle::cgroup_path`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::Spec;

use crate::runtime::bundle;
use crate::runtime::state::{self, Status};
use crate::runtime::sys::cgroup::Cgroup;
use crate::runtime::sys::container::EXIT_SETUP_FAILED;
use crate::runtime::sys::exe;
use crate::runtime::sys::exec::{Join, JoinError};

/// What to execute and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries over the container's environment (`-e`).
    pub env: Vec<String>,
    /// `-u`: `name`, `uid`, `name:group` or `uid:gid`, resolved in the container.
    pub user: Option<String>,
    /// `-w`: absolute working directory in the container.
    pub working_dir: Option<String>,
    /// `-t`: a pseudo-terminal.
    pub tty: bool,
    /// The flotilla binary to run `shim exec` from (default: this executable).
    pub exe: Option<PathBuf>,
}

/// Why an exec failed; each variant names the container and the step.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(
        "usage: flotilla shim exec --state DIR [--tty] [-e K=V]… [-u USER] [-w DIR] -- CMD… ({reason})"
    )]
    Usage { reason: String },
    #[error("container {id}: exec: no command")]
    NoCommand { id: String },
    #[error("container {id}: exec: environment entry {entry:?}: expected KEY=VALUE")]
    InvalidEnv { id: String, entry: String },
    #[error("container {id}: exec: working directory {path:?}: must be an absolute path")]
    RelativeWorkingDir { id: String, path: String },
    #[error("container {id}: exec: {source}")]
    State {
        id: String,
        source: state::StateError,
    },
    #[error("container {id} is {status}: exec needs a running container")]
    NotRunning { id: String, status: Status },
    #[error("container {id}: exec: load the runtime spec {path}: {reason}")]
    LoadSpec {
        id: String,
        path: PathBuf,
        reason: String,
    },
    #[error("container {id}: exec: open the cgroup {path}: {reason}")]
    Cgroup {
        id: String,
        path: String,
        reason: String,
    },
    #[error("container {id}: exec: run {exe}: {source}")]
    Spawn {
        id: String,
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: exec: {source}")]
    Exe { id: String, source: exe::ExeError },
    #[error("container {id}: exec: {source}")]
    Join { id: String, source: JoinError },
}

impl ExecError {
    /// The status `shim exec` exits with for this failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            ExecError::Usage { .. } => 2,
            ExecError::Join { source, .. } => source.exit_status(),
            _ => EXIT_SETUP_FAILED,
        }
    }
}

/// The container id of a state dir (its name).
fn id_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The checks both sides make before anything runs.
fn check(dir: &Path, options: &ExecOptions) -> Result<i32, ExecError> {
    let id = id_of(dir);
    if options.args.is_empty() || options.args[0].is_empty() {
        return Err(ExecError::NoCommand { id });
    }
    for entry in &options.env {
        if entry.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err(ExecError::InvalidEnv {
                id,
                entry: entry.clone(),
            });
        }
    }
    if let Some(w) = &options.working_dir
        && !w.starts_with('/')
    {
        return Err(ExecError::RelativeWorkingDir {
            id,
            path: w.clone(),
        });
    }
    let st = state::read(dir).map_err(|source| ExecError::State {
        id: id.clone(),
        source,
    })?;
    let alive = st
        .shim_pid
        .is_none_or(|pid| state::process_alive(pid, st.shim_start_time));
    match (st.status, st.pid) {
        (Status::Running, Some(pid)) if alive => Ok(pid),
        (Status::Running, _) => Err(ExecError::NotRunning {
            id,
            status: Status::Dead,
        }),
        (status, _) => Err(ExecError::NotRunning { id, status }),
    }
}

/// The `flotilla shim exec` command line for `options` in the container of state dir `dir`.
/// Its standard streams are the caller's to set (default: inherited).
pub fn command(dir: &Path, options: &ExecOptions) -> Result<Command, ExecError> {
    check(dir, options)?;
    let id = id_of(dir);
    let exe = match &options.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().map_err(|source| ExecError::Spawn {
            id: id.clone(),
            exe: PathBuf::from("/proc/self/exe"),
            source,
        })?,
    };
    let copy = exe::shared_copy(&exe).map_err(|source| ExecError::Exe { id, source })?;
    let mut cmd = exe::sealed_command(&exe, &copy);
    cmd.args(["exec", "--state"]).arg(dir);
    if options.tty {
        cmd.arg("--tty");
    }
    for e in &options.env {
        cmd.arg("-e").arg(e);
    }
    if let Some(u) = &options.user {
        cmd.arg("-u").arg(u);
    }
    if let Some(w) = &options.working_dir {
        cmd.arg("-w").arg(w);
    }
    cmd.arg("--").args(&options.args);
    Ok(cmd)
}

/// Runs `options.args` in the running container of state dir `dir` with this process's
/// standard streams, and returns its exit status (128 + signal when it was killed; 126/127
/// when it could not be executed or found).
pub fn exec(dir: &Path, options: &ExecOptions) -> Result<i32, ExecError> {
    let mut cmd = command(dir, options)?;
    let status = cmd.status().map_err(|source| ExecError::Spawn {
        id: id_of(dir),
        exe: PathBuf::from(cmd.get_program()),
        source,
    })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => i32::from(EXIT_SETUP_FAILED),
    })
}

/// The live descendants of `pid` (children first found through `/proc/*/stat`'s parent pid).
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parents.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Ends an exec: the `shim exec` joiner `pid` and every process it started in the container,
/// however deep. They are stopped first (a stopped process cannot fork, and its children keep
/// it as their parent instead of moving to the container's init), then killed.
pub fn kill_tree(pid: u32) {
    use rustix::process::{Pid, Signal, kill_process};
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let send = |p: i32, sig: Signal| {
        if let Some(p) = Pid::from_raw(p) {
            let _ = kill_process(p, sig);
        }
    };
    send(pid, Signal::STOP);
    let mut all: Vec<i32> = Vec::new();
    for _ in 0..8 {
        let now = descendants(pid);
        let fresh: Vec<i32> = now.iter().copied().filter(|p| !all.contains(p)).collect();
        if fresh.is_empty() {
            break;
        }
        for p in &fresh {
            send(*p, Signal::STOP);
        }
        all.extend(fresh);
    }
    for p in all.iter().chain(std::iter::once(&pid)) {
        send(*p, Signal::KILL);
    }
}

// --- the hidden subcommands ----------------------------------------------------------------

/// `flotilla shim exec …` and `flotilla shim init …` (`sub`), `args` after the subcommand;
/// returns the exit status.
pub fn subcommand(sub: &str, args: &[OsString]) -> u8 {
    if sub == "init" {
        return crate::runtime::init::main(args);
    }
    match shim_exec(args) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("flotilla: {e}");
            e.exit_status()
        }
    }
}

struct Parsed {
    state: PathBuf,
    options: ExecOptions,
}

fn parse(args: &[OsString]) -> Result<Parsed, ExecError> {
    let usage = |reason: String| ExecError::Usage { reason };
    let mut state = None;
    let mut options = ExecOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let text = a
            .to_str()
            .ok_or_else(|| usage(format!("argument {a:?} is not UTF-8")))?;
        if text == "--" {
            break;
        }
        if text == "--tty" || text == "-t" {
            options.tty = true;
            continue;
        }
        let mut value = || {
            it.next()
                .and_then(|v| v.to_str())
                .map(str::to_string)
                .ok_or_else(|| usage(format!("{text} needs a value")))
        };
        match text {
            "--state" => state = Some(PathBuf::from(value()?)),
            "-e" | "--env" => options.env.push(value()?),
            "-u" | "--user" => options.user = Some(value()?),
            "-w" | "--workdir" => options.working_dir = Some(value()?),
            other => return Err(usage(format!("unexpected argument {other:?}"))),
        }
    }
    options.args = it
        .map(|a| {
            a.to_str()
                .map(str::to_string)
                .ok_or_else(|| usage(format!("argument {a:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    let state = state.ok_or_else(|| usage("--state is required".into()))?;
    let state = std::path::absolute(&state).unwrap_or(state);
    Ok(Parsed { state, options })
}

fn shim_exec(args: &[OsString]) -> Result<u8, ExecError> {
    let Parsed { state, options } = parse(args)?;
    let id = id_of(&state);
    // Joining a container from the flotilla file would expose it through /proc/<pid>/exe.
    exe::ensure_sealed().map_err(|source| ExecError::Exe {
        id: id.clone(),
        source,
    })?;
    let pid = check(&state, &options)?;
    let path = state.join("config.json");
    let spec = Spec::load(&path).map_err(|e| ExecError::LoadSpec {
        id: id.clone(),
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let cgroup = match bundle::cgroup_path(&spec) {
        Some(path) => Some(Cgroup::open(&path).map_err(|e| ExecError::Cgroup {
            id: id.clone(),
            path: path.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let join = Join {
        pid,
        spec: &spec,
        cgroup: cgroup.as_ref(),
        args: options.args,
        env: options.env,
        user: options.user,
        cwd: options.working_dir,
        tty: options.tty,
    };
    crate::runtime::sys::exec::run(&join).map_err(|source| ExecError::Join { id, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_the_command_line() {
        let p = parse(&os(&[
            "--state", "/s/abc", "--tty", "-e", "A=1", "-e", "B=2", "-u", "nobody", "-w", "/tmp",
            "--", "sh", "-c", "id -u",
        ]))
        .unwrap();
        assert_eq!(p.state, PathBuf::from("/s/abc"));
        assert_eq!(
            p.options,
            ExecOptions {
                args: vec!["sh".into(), "-c".into(), "id -u".into()],
                env: vec!["A=1".into(), "B=2".into()],
                user: Some("nobody".into()),
                working_dir: Some("/tmp".into()),
                tty: true,
                exe: None,
            }
        );
        assert!(matches!(
            parse(&os(&["--", "true"])),
            Err(ExecError::Usage { .. })
        ));
        assert!(matches!(
            parse(&os(&["--state", "/s", "--bogus"])),
            Err(ExecError::Usage { .. })
        ));
        assert!(matches!(
            parse(&os(&["--state"])),
            Err(ExecError::Usage { .. })
        ));
    }

    #[test]
    fn command_line_round_trips_and_checks_state() {
        let dir = tempfile::tempdir().unwrap();
        let sdir = dir.path().join("c1");
        std::fs::create_dir(&sdir).unwrap();
        let options = ExecOptions {
            args: vec!["ls".into(), "-l".into()],
            env: vec!["X=1".into()],
            working_dir: Some("/tmp".into()),
            // Any readable file stands for the binary: it is only copied, never run here.
            exe: Some("/bin/true".into()),
            ..Default::default()
        };
        // No state file: a clear error naming the container.
        let err = command(&sdir, &options).unwrap_err().to_string();
        assert!(err.starts_with("container c1: exec: read "), "{err}");
        state::write(&sdir, &state::State::default()).unwrap();
        let err = command(&sdir, &options).unwrap_err().to_string();
        assert_eq!(
            err,
            "container c1 is created: exec needs a running container"
        );
        let me = std::process::id() as i32;
        state::write(
            &sdir,
            &state::State {
                status: Status::Running,
                pid: Some(me),
                ..Default::default()
            },
        )
        .unwrap();
        let cmd = command(&sdir, &options).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let parsed = parse(
            &cmd.get_args()
                .skip(4)
                .map(OsString::from)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(args[..2], ["shim", "--exe-fd"]);
        assert_eq!(args[3..5], ["exec", "--state"]);
        assert_eq!(parsed.state, sdir);
        assert_eq!(parsed.options.args, options.args);
        assert_eq!(parsed.options.env, options.env);
        assert_eq!(parsed.options.working_dir, options.working_dir);
        let bad = ExecOptions {
            env: vec!["NOVALUE".into()],
            ..options.clone()
        };
        assert!(matches!(
            command(&sdir, &bad),
            Err(ExecError::InvalidEnv { .. })
        ));
        let bad = ExecOptions {
            working_dir: Some("rel".into()),
            ..options
        };
        assert!(matches!(
            command(&sdir, &bad),
            Err(ExecError::RelativeWorkingDir { .. })
        ));
    }
}
