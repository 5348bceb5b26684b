//! A container's runtime state, `<state dir>/state.json`: status, pids, times, exit code,
//! signal and OOM kill. The lifecycle writes it at create; from start on only the container's
//! shim writes it, each time atomically (a temporary file, synced, then renamed), so a reader
//! never sees half a file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name in the state dir.
pub const STATE_FILE: &str = "state.json";

/// A container's status, Docker's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Exited,
    /// The state says running or paused but its shim is gone (killed, host reboot).
    Dead,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited => "exited",
            Status::Dead => "dead",
        })
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct State {
    pub status: Status,
    /// The container's PID 1 as the host sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim_pid: Option<i32>,
    /// The shim's start time (field 22 of `/proc/<pid>/stat`), so that a reused pid is not
    /// taken for the shim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim_start_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Docker's convention: the exit status, or 128 + the signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the container could not be started (127: command not found, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Reads `<dir>/state.json`.
pub fn read(dir: &Path) -> Result<State, StateError> {
    let path = dir.join(STATE_FILE);
    let data = fs::read(&path).map_err(|source| StateError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|e| StateError::Parse {
        path,
        reason: e.to_string(),
    })
}

/// Writes `<dir>/state.json` atomically.
pub fn write(dir: &Path, state: &State) -> Result<(), StateError> {
    let data = serde_json::to_vec_pretty(state).map_err(|e| StateError::Write {
        path: dir.join(STATE_FILE),
        source: io::Error::other(e),
    })?;
    write_atomic(&dir.join(STATE_FILE), &data).map_err(|source| StateError::Write {
        path: dir.join(STATE_FILE),
        source,
    })
}

/// Writes `<dir>/state.json` atomically but without waiting for the disk (no fsync): for
/// states a crash makes moot anyway (running, paused: after a crash no process is left, and
/// live restore reads a dead shim's container as exited), and for the exit, which the shim
/// syncs with [`sync`] after reporting it.
pub fn write_volatile(dir: &Path, state: &State) -> Result<(), StateError> {
    let data = serde_json::to_vec_pretty(state).map_err(|e| StateError::Write {
        path: dir.join(STATE_FILE),
        source: io::Error::other(e),
    })?;
    write_replace(&dir.join(STATE_FILE), &data).map_err(|source| StateError::Write {
        path: dir.join(STATE_FILE),
        source,
    })
}

/// Flushes `<dir>/state.json` and the directory entry naming it to the disk (after
/// [`write_volatile`]). A state dir removed meanwhile is fine.
pub fn sync(dir: &Path) {
    if let Ok(f) = fs::File::open(dir.join(STATE_FILE)) {
        let _ = f.sync_all();
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `path` atomically: `.<name>.tmp-<pid>` in the same directory, synced, renamed.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, true)
}

/// Writes `path` atomically (readers see the old or the new file, never half of one) but not
/// durably: no fsync. For files rewritten from their sources before every use (a container's
/// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` at each start), where a crash can lose the
/// new content but nothing depends on it surviving one.
pub fn write_replace(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, false)
}

fn replace(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(data)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), or none when the
/// process does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` exists, is not a zombie (dead, waiting to be reaped by a parent
/// that does not reap, such as some containers' PID 1) and started at `start_time` (not a reuse
/// of its pid).
pub fn process_alive(pid: i32, start_time: Option<u64>) -> bool {
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| {
            let rest = t.get(t.rfind(')')? + 1..)?;
            rest.split_whitespace().next().map(|s| s == "Z" || s == "X")
        })
        .unwrap_or(false);
    if zombie {
        return false;
    }
    match (process_start_time(pid), start_time) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let state = State {
            status: Status::Exited,
            pid: Some(42),
            exit_code: Some(137),
            signal: Some(9),
            oom_killed: true,
            ..Default::default()
        };
        write(dir.path(), &state).unwrap();
        assert_eq!(read(dir.path()).unwrap(), state);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
        let text = fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(text.contains("\"status\": \"exited\""), "{text}");
    }

    #[test]
    fn own_start_time_is_known() {
        let me = std::process::id() as i32;
        let t = process_start_time(me);
        assert!(t.is_some());
        assert!(process_alive(me, t));
        assert!(!process_alive(me, t.map(|t| t + 1)));
    }
}
